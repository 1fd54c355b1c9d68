"""Random sampling: the floor every strategy must clear."""

from __future__ import annotations

import numpy as np

from metalearn.strategies.base import QueryContext, QueryStrategy
from metalearn.strategies.registry import register_strategy

__all__ = ["RandomSampling"]


@register_strategy
class RandomSampling(QueryStrategy):
    """Pick unlabeled records uniformly at random. Needs no classifier (``clf`` may be None).

    Parameters
    ----------
    missing_label, random_state
        See :class:`~metalearn.strategies.base.QueryStrategy`.
    """

    name = "random"
    requires_classifier = False
    keeps_float32 = True  # X is never read

    def _select(self, ctx: QueryContext, batch_size: int) -> np.ndarray:
        return ctx.rng.choice(ctx.unlabeled_indices, size=batch_size, replace=False)
