"""Uncertainty sampling: least confidence, margin and entropy.

Margin sampling with the query model equal to the task model is the baseline the field's
benchmarks found hardest to beat on tabular data, so it is implemented at its best: it
predicts the unlabeled rows only, selects the top-k in linear time and breaks ties at random.
"""

from __future__ import annotations

import numpy as np

from metalearn.common.uncertainty import margins, normalized_entropy
from metalearn.strategies.base import QueryContext, QueryStrategy, select_top
from metalearn.strategies.registry import register_strategy

__all__ = ["UncertaintySampling", "LeastConfidence", "MarginSampling", "EntropySampling"]


class UncertaintySampling(QueryStrategy):
    """Base of the strategies that rank unlabeled records by one uncertainty score."""

    keeps_float32 = True  # X only reaches the classifier, a block of rows at a time

    @staticmethod
    def uncertainty(proba: np.ndarray) -> np.ndarray:
        """Uncertainty of each row of ``proba`` (n, n_classes); larger = more worth labeling."""
        raise NotImplementedError

    def _select(self, ctx: QueryContext, batch_size: int) -> np.ndarray:
        scores = self.uncertainty(ctx.proba_unlabeled)
        return ctx.unlabeled_indices[select_top(scores, batch_size, ctx.rng)]


@register_strategy
class LeastConfidence(UncertaintySampling):
    """Pick the records whose most likely class has the lowest probability."""

    name = "least_confidence"

    @staticmethod
    def uncertainty(proba: np.ndarray) -> np.ndarray:
        return 1.0 - proba.max(axis=1)


@register_strategy
class MarginSampling(UncertaintySampling):
    """Pick the records with the smallest gap between the two most likely classes."""

    name = "margin"

    @staticmethod
    def uncertainty(proba: np.ndarray) -> np.ndarray:
        return -margins(proba)


@register_strategy
class EntropySampling(UncertaintySampling):
    """Pick the records whose predicted class distribution has the highest entropy."""

    name = "entropy"

    @staticmethod
    def uncertainty(proba: np.ndarray) -> np.ndarray:
        return normalized_entropy(proba)
