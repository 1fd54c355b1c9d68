"""ProbCover: greedy maximum coverage of the pool by balls of a pure radius (Yehuda et al. 2022).

Like TypiClust a low-budget strategy: each pick is the unlabeled record whose ball of radius
delta covers the most records not yet covered by the balls of the labeled records and the
earlier picks. delta is the largest radius at which at least ``alpha`` of the balls are *pure*
(all records of a ball share one k-means cluster, with as many clusters as classes).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse
from sklearn.neighbors import NearestNeighbors

from metalearn.common.clustering import kmeans_partition
from metalearn.common.threads import limited_threads
from metalearn.common.validation import check_positive_int
from metalearn.exceptions import InvalidInputError
from metalearn.strategies.base import QueryContext, QueryStrategy, select_top
from metalearn.strategies.registry import register_strategy

__all__ = ["ProbCover", "pure_radius"]

#: Candidate radii, as quantiles of the pairwise distances of the pool.
_DELTA_QUANTILES = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3)


#: Largest feature magnitude used as is: beyond it, squared distances could overflow to inf
#: (and the radius become NaN), so the pool is scaled down first. Coverage and purity do not
#: depend on the scale; pools below it are left exactly as they are.
_SAFE_MAGNITUDE = 1e100


def _geometry_scale(X: np.ndarray) -> float:
    """The factor the pool is multiplied by before distances are taken: 1, or 1/max|X| for huge values."""
    largest = float(np.max(np.abs(X))) if X.size else 0.0
    return 1.0 if largest <= _SAFE_MAGNITUDE else 1.0 / largest


def _ball_graph(X: np.ndarray, delta: float) -> sparse.csr_matrix:
    with limited_threads(1):
        graph = NearestNeighbors(radius=delta).fit(X).radius_neighbors_graph(X, mode="connectivity")
    return sparse.csr_matrix(graph, dtype=bool)


def pure_radius(X: np.ndarray, clusters: np.ndarray, alpha: float, rng: np.random.Generator) -> float:
    """The largest candidate radius whose balls are pure for at least ``alpha`` of the records.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    clusters : ndarray of int, shape (n,)
        A k-means partition (one cluster per class).
    alpha : float
        Required share of pure balls, in (0, 1].
    rng : numpy Generator
        Draws the pairs whose distance quantiles are the candidate radii.

    Returns
    -------
    float
        The radius; the smallest candidate when none reaches ``alpha``.
    """
    n = X.shape[0]
    pairs = rng.integers(0, n, size=(4000, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    distances = np.linalg.norm(X[pairs[:, 0]] - X[pairs[:, 1]], axis=1)
    distances = distances[distances > 0]
    if distances.size == 0:
        return 1.0  # every record identical: any radius covers everything
    deltas = np.unique(np.quantile(distances, _DELTA_QUANTILES))
    best = float(deltas[0])
    for delta in deltas:
        graph = _ball_graph(X, float(delta)).tocoo()
        impure = np.zeros(n, dtype=bool)
        np.logical_or.at(impure, graph.row, clusters[graph.row] != clusters[graph.col])
        if 1.0 - impure.mean() >= alpha:
            best = float(delta)
        else:
            break  # purity only falls as the radius grows
    return best


@register_strategy
class ProbCover(QueryStrategy):
    """Pick the records whose delta-balls cover the most uncovered records (max coverage).

    The low-budget strategy of Yehuda, Dekel, Hacohen & Weinshall (NeurIPS 2022), on the pool's
    own (standardised) features. The radius and the ball graph are computed once per pool, on
    at most ``max_graph`` records (a seeded subsample of larger pools, which are also the only
    records picked from); the classifier is not called.

    Parameters
    ----------
    alpha : float
        Purity threshold of the radius choice (the paper's 0.95).
    n_classes : int or None
        Clusters of the purity partition; None: the number of distinct labels seen at the first
        query (at least 2).
    max_graph : int
        Records of the ball graph at most.
    missing_label, random_state
        See :class:`~metalearn.strategies.base.QueryStrategy`.

    Attributes
    ----------
    delta_ : float
        The radius, chosen at the first query.
    """

    name = "probcover"
    requires_classifier = False

    def __init__(
        self,
        alpha: float = 0.95,
        n_classes: int | None = None,
        max_graph: int = 3000,
        *,
        missing_label: Any = np.nan,
        random_state: int | np.random.Generator | None = None,
    ) -> None:
        super().__init__(missing_label=missing_label, random_state=random_state)
        self.alpha = alpha
        self.n_classes = n_classes
        self.max_graph = max_graph

    def _validate_params(self) -> None:
        alpha = self.alpha
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating)) or not 0.0 < alpha <= 1.0:
            raise InvalidInputError(f"alpha must be a number in (0, 1], got {alpha!r}"[:300])
        check_positive_int(self.max_graph, "max_graph", minimum=2)
        if self.n_classes is not None:
            check_positive_int(self.n_classes, "n_classes")

    def _prepare(self, ctx: QueryContext) -> None:
        alpha = float(self.alpha)
        max_graph = int(self.max_graph)
        if self.n_classes is None:
            n_classes = max(2, int(np.unique(ctx.y[ctx.labeled]).size)) if ctx.labeled.any() else 2
        else:
            n_classes = int(self.n_classes)
        self.scale_ = _geometry_scale(ctx.X)
        X = ctx.X if self.scale_ == 1.0 else ctx.X * self.scale_
        n = X.shape[0]
        rows = np.sort(self.rng_.choice(n, size=max_graph, replace=False)) if n > max_graph else np.arange(n)
        sub = X[rows]
        clusters = kmeans_partition(sub, n_classes, seed=int(self.rng_.integers(0, 2**31 - 1)))
        self.delta_ = pure_radius(sub, clusters, alpha, self.rng_)
        self.graph_rows_ = rows
        self.graph_ = _ball_graph(sub, self.delta_)
        self.neighbors_ = NearestNeighbors(radius=self.delta_).fit(sub)

    def _select(self, ctx: QueryContext, batch_size: int) -> np.ndarray:
        if not hasattr(self, "graph_"):
            self._prepare(ctx)
        rows = self.graph_rows_
        graph = self.graph_
        covered = np.zeros(rows.size, dtype=bool)
        labeled_rows = np.flatnonzero(ctx.labeled)
        if labeled_rows.size:
            with limited_threads(1):
                labeled_X = ctx.X[labeled_rows] if getattr(self, "scale_", 1.0) == 1.0 else ctx.X[labeled_rows] * self.scale_
                balls = self.neighbors_.radius_neighbors(labeled_X, return_distance=False)
            for ball in balls:
                covered[ball] = True
        free = ~ctx.labeled[rows]
        picks: list[int] = []
        for _ in range(batch_size):
            if free.any():
                gain = np.asarray(graph[:, ~covered].sum(axis=1)).ravel().astype(np.float64)
                if gain[free].max() > 0:
                    position = int(select_top(np.where(free, gain, -np.inf), 1, ctx.rng)[0])
                    pick = int(rows[position])
                    covered[graph[position].indices] = True
                    free[position] = False
                    picks.append(pick)
                    continue
            break
        if len(picks) < batch_size:
            # Everything is covered (or the graph has no free record left): the paper falls back
            # to random picks among the remaining unlabeled records.
            rest = np.setdiff1d(ctx.unlabeled_indices, np.asarray(picks, dtype=np.int64))
            extra = ctx.rng.choice(rest, size=batch_size - len(picks), replace=False)
            picks.extend(int(i) for i in extra)
        return np.asarray(picks, dtype=np.int64)
