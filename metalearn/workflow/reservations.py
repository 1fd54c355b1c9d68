"""Reservations of the ``next-batch`` workflow: which records handed out earlier stay pending.

A record handed out and not yet labeled is reserved (pending) until its label comes in, it
leaves the records, or it is released; the next run does not hand it out again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from metalearn.common.text import printable


def _still_pending(
    pending: list[dict[str, Any]], ids: np.ndarray, labeled: np.ndarray, release_all: bool,
    release: Sequence[str] | None, notes: list[str],
) -> list[dict[str, Any]]:
    """The reserved records of earlier loops that stay reserved: unlabeled, still in the records, not released."""
    unlabeled = set(ids[~labeled].tolist())
    all_ids = set(ids.tolist())
    to_release = set(release or [])
    kept: list[dict[str, Any]] = []
    released: list[str] = []
    n_gone = 0
    for group in pending:
        still: list[str] = []
        for i in group["ids"]:
            if i not in all_ids:
                n_gone += 1
            elif i not in unlabeled:
                continue  # its label came in: no longer pending
            elif release_all or i in to_release:
                released.append(i)
            else:
                still.append(i)
        if still:
            kept.append({"loop": int(group["loop"]), "ids": still})
    if n_gone:
        notes.append(f"{n_gone} record(s) handed out earlier are no longer in the records: no longer pending")
    if released:
        notes.append(f"released {len(released)} pending record(s) handed out earlier: they may be picked again")
    unknown = sorted(to_release - set(released))
    if unknown:
        shown = ", ".join(printable(i) for i in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        notes.append(f"--release: {len(unknown)} id(s) are not pending (labeled, released or never handed out): {shown}")
    if kept:
        notes.append(
            f"{sum(len(g['ids']) for g in kept)} record(s) handed out earlier are still unlabeled and reserved "
            f"({_pending_summary(kept)}): they are not handed out again; --release-pending hands them out again"
        )
    return kept


def _pending_summary(pending: list[dict[str, Any]]) -> str:
    """``loop 2: 5, loop 3: 10`` (or ``none pending``)."""
    if not pending:
        return "none pending"
    return ", ".join(f"loop {group['loop']}: {len(group['ids'])}" for group in pending)
