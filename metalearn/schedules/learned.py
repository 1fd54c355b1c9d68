"""The learned schedule: a batch size chosen from the loop's "has the model settled" signals.

At each call the schedule records the loop in its multi-loop metadata history
(:class:`~metalearn.schedules.features.ScheduleFeatures`), computes the loop's features and
asks the file's chooser for a score per size of its fixed set; the best-scored size, capped by
the budget left and the unlabeled records, is the answer. Small batches while each label moves
the model, large ones once it has settled: what the trainer taught it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metalearn.schedules.base import BatchSchedule
from metalearn.schedules.features import ScheduleFeatures
from metalearn.schedules.file import ScheduleFile, read_schedule
from metalearn.strategies.base import QueryContext

__all__ = ["LearnedSchedule"]


class LearnedSchedule(BatchSchedule):
    """A batch schedule read from a schedule file.

    Parameters
    ----------
    schedule_file : str, path-like or ScheduleFile
        A released schedule name, a file, or a schedule already read.
    missing_label : scalar, default=np.nan

    Attributes
    ----------
    scores_ : dict of int to float
        The chooser's score of each size at the latest call.
    """

    name = "learned"
    requires_classifier = True
    keeps_pool_history = True

    def __init__(self, schedule_file: Any, *, missing_label: Any = np.nan) -> None:
        super().__init__(missing_label=missing_label)
        self.schedule_file = schedule_file

    @property
    def file(self) -> ScheduleFile:
        """The schedule file (read once, at first use)."""
        cached = getattr(self, "_file_cache", None)
        if cached is None or cached[0] is not self.schedule_file:
            loaded = self.schedule_file if isinstance(self.schedule_file, ScheduleFile) else read_schedule(self.schedule_file)
            self._file_cache = (self.schedule_file, loaded)
            cached = self._file_cache
        return cached[1]

    def _validate_params(self) -> None:
        self.file  # noqa: B018 - read and check the file now, before any work

    def describe(self) -> str:
        where = self.file.path.stem if self.file.path is not None else "in memory"
        return f"learned ({where})"

    def explain(self, size: int) -> str:
        scores = getattr(self, "scores_", None)
        if not scores:
            return super().explain(size)
        best = max(scores, key=lambda s: scores[s])
        capped = "" if best == size else f", capped from {best} by the budget left"
        return (f"schedule {self.describe()}: buy {size} record(s) before the next retrain (loop {self.n_calls_}; "
                f"best-scored size among {list(self.file.sizes)}{capped})")

    def _on_new_pool(self, X: np.ndarray) -> None:
        # The reference samples of the features are seeded from the pool's shape: one pool, one answer.
        self.features_ = ScheduleFeatures(X, window=self.file.window, seed=int(X.shape[0]))

    def _choose(self, ctx: QueryContext, cap: int) -> tuple[int, dict[str, Any]]:
        budget_left = int(cap)
        vector = self.features_.schedule_vector(ctx.proba, ctx.classes, ctx.labeled, ctx.label_indices(), budget_left)
        scores = np.asarray(self.file.model(vector), dtype=np.float64)
        sizes = self.file.sizes
        self.scores_ = {int(s): float(v) for s, v in zip(sizes, scores)}
        chosen = sizes[int(np.argmax(scores))]
        return min(chosen, cap), {"chosen": int(chosen)}

    # -- state -------------------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        exported = self.features_.state() if hasattr(self, "features_") else None
        if exported is None:
            return {}, {}
        arrays, meta = exported
        return arrays, {"features": meta}

    def _load_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any], old_positions: np.ndarray | None) -> None:
        if "features" in meta:
            self.features_.load_state(arrays, meta["features"], old_positions)
