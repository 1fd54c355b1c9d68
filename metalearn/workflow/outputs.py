"""Writing the outputs of one ``next-batch`` run: the state file and the table to label, all or none."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metalearn.common import container
from metalearn.common.atomic import AtomicGroup
from metalearn.common.text import printable
from metalearn.exceptions import OutputFileError
from metalearn.workflow.state import STATE_KIND, StateFileError
from metalearn.workflow.tables import _table_writer


def _write_outputs(
    table: pd.DataFrame, out_path: Path | None, state_path: Path | None, meta: dict[str, Any],
    arrays: dict[str, np.ndarray],
) -> None:
    """Write the state and the table to label all or none (:class:`~metalearn.common.atomic.AtomicGroup`).

    Both are written to temporaries first (a full disk fails before anything changes), then
    renamed: the state first, the table second, and the state is restored if the table's rename
    fails. The state first because it is the ledger of what was handed out: a process killed
    between the two renames leaves a state that reserves records the table does not show yet
    (they stay pending and ``--release-pending`` frees them), never a table handing out records
    that the state does not reserve (the next person would get them too).
    """
    outputs = " and ".join(name for name, path in (("the state file", state_path), ("--out", out_path)) if path)
    unchanged = f"nothing was written ({outputs} as before)"
    with AtomicGroup() as group:
        if state_path is not None:
            payload = container.encode({k: np.ascontiguousarray(v) for k, v in arrays.items()}, meta, STATE_KIND, state_path)
            try:
                state_path.parent.mkdir(parents=True, exist_ok=True)
                group.add(state_path, lambda tmp: _write_bytes(tmp, payload))
            except OSError as exc:
                raise StateFileError(
                    f"cannot write {STATE_KIND.where(state_path)}: {_reason(exc)}{STATE_KIND.write_advice}; {unchanged}"
                ) from None
        if out_path is not None:
            try:
                out_path.parent.mkdir(parents=True, exist_ok=True)
                group.add(out_path, _table_writer(table, out_path))
            except OSError as exc:
                raise OutputFileError(
                    f"cannot write the records to label to {str(out_path)!r}: {_reason(exc)}; choose another --out; "
                    f"{unchanged}"
                ) from None
        try:
            group.commit()
        except OSError as exc:
            raise OutputFileError(f"{printable(exc)}; {unchanged}") from None


def _reason(exc: OSError) -> str:
    """Why a write failed, in a few words (``No space left on device``)."""
    return printable(exc.strerror or " ".join(str(exc).split()))


def _write_bytes(path: str, payload: bytes) -> None:
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_TRUNC), "wb") as out:
        out.write(payload)
