"""k-center greedy (core-set) selection, Sener & Savarese 2018."""

from __future__ import annotations

import numpy as np

from metalearn.common.geometry import NearestLabeledDistance, min_sq_distances
from metalearn.strategies.base import QueryContext, QueryStrategy, select_top
from metalearn.strategies.registry import register_strategy

__all__ = ["KCenterGreedy"]


@register_strategy
class KCenterGreedy(QueryStrategy):
    """Repeatedly pick the unlabeled record farthest from the labeled set and earlier picks.

    Pure diversity: it ignores the classifier's uncertainty (``clf`` is not called). The
    distance to the labeled set is kept across loops and updated with the new labels only,
    so a loop costs O(n_pool * (n_new_labels + batch_size) * n_features).

    Parameters
    ----------
    missing_label, random_state
        See :class:`~metalearn.strategies.base.QueryStrategy`.
    """

    name = "kcenter_greedy"
    requires_classifier = False

    def _on_new_pool(self, X: np.ndarray) -> None:
        self.nearest_labeled_ = NearestLabeledDistance(X)

    def _select(self, ctx: QueryContext, batch_size: int) -> np.ndarray:
        tracker = self.nearest_labeled_
        tracker.sync(ctx.labeled)
        sq = tracker.sq_distance.copy()
        X = ctx.X
        picks: list[int] = []
        candidates = ctx.unlabeled_indices
        available = np.ones(candidates.size, dtype=bool)
        for _ in range(batch_size):
            # Choose among the records not picked yet: masking picks with -inf is not enough
            # when distances are NaN (squares of huge finite values overflow), which select_top
            # also ranks last, so a pick could repeat.
            positions = np.flatnonzero(available)
            # With nothing labeled every distance is inf: the tie-break makes the first pick random.
            position = int(positions[select_top(sq[candidates[positions]], 1, ctx.rng)[0]])
            available[position] = False
            pick = int(candidates[position])
            picks.append(pick)
            np.minimum(sq, min_sq_distances(X, X[[pick]]), out=sq)
        return np.asarray(picks, dtype=np.int64)
