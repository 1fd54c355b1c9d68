"""The learned schedule's inputs: the stopping rule's per-loop features plus the budget left.

The stopping rule's features (:mod:`metalearn.stopping.features`) are the loop-level signals
of "has the model settled": the prediction change rate and its trend, the agreement of
consecutive models (kappa), margin and entropy trends, the run's feedback on the labels just
bought. A schedule also knows how many labels are left, which bounds what a large batch can
waste. The same code computes them in simulation and at inference.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metalearn.stopping.features import FEATURE_DESCRIPTIONS, STOPPING_FEATURE_SET, STOPPING_FEATURES, StoppingFeatures

__all__ = ["ScheduleFeatures", "SCHEDULE_FEATURES", "SCHEDULE_FEATURE_SET", "SCHEDULE_FEATURE_DESCRIPTIONS"]

_EXTRA = {"budget_left_log": "log(1 + labels left in the budget) / log(1 + 2000), clipped to [0, 1]."}

#: Names of the features, in column order.
SCHEDULE_FEATURES: tuple[str, ...] = (*STOPPING_FEATURES, *_EXTRA)
#: One sentence per feature.
SCHEDULE_FEATURE_DESCRIPTIONS: dict[str, str] = {**FEATURE_DESCRIPTIONS, **_EXTRA}
#: What a schedule file records (and what :func:`~metalearn.schedules.file.read_schedule` checks).
SCHEDULE_FEATURE_SET: dict[str, Any] = {
    "name": "schedule",
    "version": 1,
    "base": f"{STOPPING_FEATURE_SET['name']}@{STOPPING_FEATURE_SET['version']}",
    "features": list(SCHEDULE_FEATURES),
}


class ScheduleFeatures(StoppingFeatures):
    """Per-loop features of the learned schedule for one pool (see :class:`StoppingFeatures`)."""

    def schedule_vector(self, proba: np.ndarray, classes: np.ndarray, labeled: np.ndarray, y_index: np.ndarray,
                        budget_left: int) -> np.ndarray:
        """Record one loop and return its feature vector, shape (len(SCHEDULE_FEATURES),), float32."""
        base = self.update(proba, classes, labeled, y_index)
        extra = np.array([min(np.log1p(budget_left) / np.log1p(2000.0), 1.0)], dtype=np.float32)
        return np.concatenate([base, extra])
