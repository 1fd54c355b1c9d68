"""The training progress log (one CSV row per iteration, consistent across resumes) and the
stopping rule of an iteration budget or a time budget."""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from metalearn.common.atomic import atomic_write
from metalearn.common.jsonable import json_safe
from metalearn.exceptions import InvalidInputError

__all__ = ["should_stop", "ProgressLog"]


def should_stop(iteration: int, elapsed: float, durations: Sequence[float], iterations: int | None, time_budget: float | None) -> bool:
    """Whether a trainer stops before starting ``iteration`` (0-based; checked at boundaries).

    Stops when ``iterations`` are done, or when the time budget is spent or the next iteration
    (estimated as the mean of the earlier ones) would not finish within it. At least one
    iteration always runs.
    """
    if iterations is not None and iteration >= iterations:
        return True
    if time_budget is not None and iteration > 0:
        estimate = float(np.mean(durations)) if durations else 0.0
        return elapsed + estimate > time_budget
    return False


# =============================================================================================
# Progress log and result
# =============================================================================================
class ProgressLog:
    """A CSV file with one row per iteration, appended as training goes.

    On resume, :meth:`truncate` drops rows of iterations the checkpoint does not hold (written
    after the last checkpoint, before a crash), so rerunning them adds no duplicate.

    Parameters
    ----------
    path : path
    fields : sequence of str
        Column names; must include ``iteration``.
    """

    def __init__(self, path: str | os.PathLike[str], fields: Sequence[str]) -> None:
        self.path = Path(path)
        self.fields = list(fields)
        if "iteration" not in self.fields:
            raise InvalidInputError("a progress log needs an 'iteration' column")

    def rows(self) -> list[dict[str, str]]:
        if not self.path.is_file():
            return []
        with open(self.path, newline="") as handle:
            return list(csv.DictReader(handle))

    def records(self) -> list[dict[str, Any]]:
        """The rows with numbers parsed (integers where integral, empty cells as None)."""
        out = []
        for row in self.rows():
            parsed: dict[str, Any] = {}
            for key, value in row.items():
                if value in ("", None):
                    parsed[key] = None
                    continue
                try:
                    number = float(value)
                except ValueError:
                    parsed[key] = value
                else:
                    parsed[key] = int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number
            out.append(parsed)
        return out

    def truncate(self, next_iteration: int) -> None:
        """Keep only rows with ``iteration < next_iteration`` (rewritten atomically when some are dropped)."""
        rows = self.rows()
        kept = [r for r in rows if int(r["iteration"]) < next_iteration]
        if len(kept) == len(rows) and self.path.is_file():
            return  # nothing to drop: a finished run resumed leaves its log untouched
        self.path.parent.mkdir(parents=True, exist_ok=True)

        def write(tmp: str) -> None:
            with open(tmp, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=self.fields, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(kept)

        atomic_write(self.path, write)

    def append(self, row: Mapping[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.is_file()
        with open(self.path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({k: ("" if v is None else v) for k, v in json_safe(dict(row), strict=False).items()})
