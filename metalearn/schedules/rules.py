"""The simple batch-size rules: a fixed size, and geometric growth.

They are the baselines a learned schedule must beat (issue 21): a fixed size is what every
library does; geometric growth (``geometric:2:2``: 1, 1, 2, 2, 4, 4, ...) is cheap where the
model settles early and costly where it does not. Neither looks at the data or the model.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from metalearn.common.validation import check_positive_int, check_real
from metalearn.exceptions import InvalidInputError
from metalearn.schedules.base import MAX_BATCH_SIZE, BatchSchedule
from metalearn.strategies.base import QueryContext

__all__ = ["FixedSchedule", "GeometricSchedule"]


class FixedSchedule(BatchSchedule):
    """Always the same batch size (capped by the budget left): the spec ``fixed:N``.

    Parameters
    ----------
    batch_size : int, default=10
        Records bought before each retrain.
    missing_label : scalar, default=np.nan
    """

    name = "fixed"
    #: Constructor parameters a spec gives by position (``fixed:N``).
    spec_parameters: ClassVar[tuple[str, ...]] = ("batch_size",)

    def __init__(self, batch_size: int = 10, *, missing_label: Any = np.nan) -> None:
        super().__init__(missing_label=missing_label)
        self.batch_size = batch_size

    def _validate_params(self) -> None:
        check_positive_int(self.batch_size, "batch_size", maximum=MAX_BATCH_SIZE)

    def describe(self) -> str:
        return f"fixed:{self.batch_size}"

    def _choose(self, ctx: QueryContext, cap: int) -> tuple[int, dict[str, Any]]:
        return min(int(self.batch_size), cap), {}


class GeometricSchedule(BatchSchedule):
    """Geometric growth: ``start``, multiplied by ``ratio`` every ``every`` loops, capped by the budget.

    The size at loop ``k`` (0-based) is ``floor(start * ratio ** (k // every))``: the spec
    ``geometric:2:2`` gives 1, 1, 2, 2, 4, 4, 8, ...; ``geometric:2`` doubles every loop.

    Parameters
    ----------
    ratio : float, default=2.0
        Growth factor, >= 1 (1 is a fixed size).
    every : int, default=1
        Loops between two growth steps.
    start : int, default=1
        Size of the first batch.
    missing_label : scalar, default=np.nan
    """

    name = "geometric"
    spec_parameters: ClassVar[tuple[str, ...]] = ("ratio", "every", "start")

    def __init__(self, ratio: float = 2.0, every: int = 1, start: int = 1, *, missing_label: Any = np.nan) -> None:
        super().__init__(missing_label=missing_label)
        self.ratio = ratio
        self.every = every
        self.start = start

    def _validate_params(self) -> None:
        ratio = check_real(self.ratio, "ratio")
        if not (math.isfinite(ratio) and 1.0 <= ratio <= 1000.0):
            raise InvalidInputError(f"ratio must be a growth factor in [1, 1000], got {self.ratio!r}"[:300])
        check_positive_int(self.every, "every", maximum=MAX_BATCH_SIZE)
        check_positive_int(self.start, "start", maximum=MAX_BATCH_SIZE)

    def describe(self) -> str:
        ratio = float(self.ratio)
        text = f"geometric:{ratio:g}" if ratio != int(ratio) else f"geometric:{int(ratio)}"
        if self.every != 1 or self.start != 1:
            text += f":{self.every}"
        if self.start != 1:
            text += f":start={self.start}"
        return text

    def size_at(self, loop: int) -> int:
        """The uncapped size of loop ``loop`` (0-based), at most :data:`MAX_BATCH_SIZE`."""
        steps = loop // int(self.every)
        ratio, start = float(self.ratio), int(self.start)
        # Compared in logs: ratio ** steps overflows a float long before a run ends.
        if ratio > 1.0 and steps * math.log(ratio) >= math.log(MAX_BATCH_SIZE / start):
            return MAX_BATCH_SIZE
        return max(1, min(int(start * ratio**steps + 1e-9), MAX_BATCH_SIZE))

    def _choose(self, ctx: QueryContext, cap: int) -> tuple[int, dict[str, Any]]:
        return min(self.size_at(self.n_calls_), cap), {}
