"""TypiClust: the most typical record of each large cluster without a label (Hacohen et al. 2022).

At small budgets, typical and representative records teach a model more than uncertain ones
("cold start" of active learning); TypiClust is the field's standard low-budget strategy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metalearn.common.clustering import cluster_sizes, kmeans_partition, typicality
from metalearn.common.validation import check_positive_int
from metalearn.strategies.base import QueryContext, QueryStrategy, select_top
from metalearn.strategies.registry import register_strategy

__all__ = ["TypiClust", "typiclust_picks"]


def typiclust_picks(
    X: np.ndarray,
    labeled: np.ndarray,
    batch_size: int,
    rng: np.random.Generator,
    *,
    max_clusters: int = 500,
    min_cluster_size: int = 5,
    n_neighbors: int = 20,
    max_fit: int = 5000,
) -> np.ndarray:
    """TypiClust's batch: pool indices of ``batch_size`` distinct unlabeled records.

    The pool is partitioned by k-means into ``min(n_labeled + batch_size, max_clusters)``
    clusters. Each pick takes the largest cluster that holds neither a labeled record nor an
    earlier pick of this batch (clusters smaller than ``min_cluster_size`` only when no larger
    one is left; ties at random) and its most typical unlabeled record: typicality is the
    inverse mean distance to the ``n_neighbors`` nearest records of the same cluster. When
    every cluster is covered, the most typical unlabeled records of the largest clusters
    fill the batch.

    Parameters
    ----------
    X : ndarray of shape (n_pool, n_features)
    labeled : ndarray of bool, shape (n_pool,)
    batch_size : int
        At most the number of unlabeled records.
    rng : numpy Generator
        Seeds k-means and breaks ties.
    max_clusters, min_cluster_size, n_neighbors, max_fit
        See above; ``max_fit`` bounds the records k-means is fitted on (large pools).

    Returns
    -------
    ndarray of int64, shape (batch_size,)
    """
    n_clusters = int(min(int(labeled.sum()) + batch_size, max_clusters, X.shape[0]))
    labels = kmeans_partition(X, n_clusters, seed=int(rng.integers(0, 2**31 - 1)), max_fit=max_fit)
    sizes = cluster_sizes(labels, n_clusters).astype(np.float64)
    covered = np.zeros(n_clusters, dtype=bool)
    covered[np.unique(labels[labeled])] = True
    has_unlabeled = np.bincount(labels[~labeled], minlength=n_clusters) > 0
    picks: list[int] = []
    taken = labeled.copy()
    for _ in range(batch_size):
        open_ = ~covered & has_unlabeled
        large = open_ & (sizes >= min_cluster_size)
        pool_of_clusters = large if large.any() else open_
        if not pool_of_clusters.any():
            # Every cluster holds a label or a pick: restart coverage from the largest clusters.
            covered[:] = False
            pool_of_clusters = np.bincount(labels[~taken], minlength=n_clusters) > 0
        cluster = int(select_top(np.where(pool_of_clusters, sizes, -np.inf), 1, rng)[0])
        members = np.flatnonzero(labels == cluster)
        typical = typicality(X[members], n_neighbors)
        free = ~taken[members]
        pick = int(members[select_top(np.where(free, typical, -np.inf), 1, rng)[0]])
        picks.append(pick)
        taken[pick] = True
        covered[cluster] = True
        has_unlabeled[cluster] = bool((~taken[members]).any())
    return np.asarray(picks, dtype=np.int64)


@register_strategy
class TypiClust(QueryStrategy):
    """Pick the most typical record of each of the largest clusters that hold no label yet.

    The low-budget strategy of Hacohen, Dekel & Weinshall (ICML 2022), on the pool's own
    features (standardise them, as the task model's input): k-means with as many clusters as
    labels after this batch (at most ``max_clusters``), then for each pick the largest
    uncovered cluster and its record with the densest neighbourhood. It ignores the classifier
    (``clf`` is not called), so it is meant for the first loops (see
    :class:`~metalearn.strategies.switch.TypiClustThenMargin`).

    Parameters
    ----------
    max_clusters : int
        Upper bound on the number of clusters (the paper's 500).
    min_cluster_size : int
        Clusters smaller than this are used only when no larger uncovered one is left (the
        paper's 5).
    n_neighbors : int
        Neighbours of the typicality estimate (the paper's 20).
    max_fit : int
        k-means is fitted on at most this many records (a seeded subsample of larger pools);
        every record is then assigned to its nearest centre.
    missing_label, random_state
        See :class:`~metalearn.strategies.base.QueryStrategy`.
    """

    name = "typiclust"
    requires_classifier = False

    def __init__(
        self,
        max_clusters: int = 500,
        min_cluster_size: int = 5,
        n_neighbors: int = 20,
        max_fit: int = 5000,
        *,
        missing_label: Any = np.nan,
        random_state: int | np.random.Generator | None = None,
    ) -> None:
        super().__init__(missing_label=missing_label, random_state=random_state)
        self.max_clusters = max_clusters
        self.min_cluster_size = min_cluster_size
        self.n_neighbors = n_neighbors
        self.max_fit = max_fit

    def _validate_params(self) -> None:
        check_positive_int(self.max_clusters, "max_clusters")
        check_positive_int(self.min_cluster_size, "min_cluster_size")
        check_positive_int(self.n_neighbors, "n_neighbors")
        check_positive_int(self.max_fit, "max_fit", minimum=2)

    def _select(self, ctx: QueryContext, batch_size: int) -> np.ndarray:
        return typiclust_picks(
            ctx.X,
            ctx.labeled,
            batch_size,
            ctx.rng,
            max_clusters=int(self.max_clusters),
            min_cluster_size=int(self.min_cluster_size),
            n_neighbors=int(self.n_neighbors),
            max_fit=int(self.max_fit),
        )
