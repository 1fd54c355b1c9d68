"""k-means partitions and typicality of a pool, affordable on large pools.

TypiClust (Hacohen et al. 2022), ProbCover (Yehuda et al. 2022) and the ``pool@2`` cluster
features all need a partition of the pool into about as many clusters as there will be labels,
and the typicality of each record (inverse mean distance to its nearest neighbours). Both are
computed here once: k-means is fitted on at most ``max_fit`` records (a seeded subsample on large
pools) and every record is assigned to its nearest centre.
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.neighbors import NearestNeighbors

from metalearn.common.blocks import map_row_blocks
from metalearn.common.threads import limited_threads

__all__ = ["kmeans_partition", "typicality", "cluster_sizes", "DEFAULT_MAX_FIT"]

#: Records k-means is fitted on at most; larger pools are subsampled (assignment covers all).
DEFAULT_MAX_FIT = 5000
# Above this many clusters MiniBatchKMeans is several times faster than Lloyd's k-means with
# the same quality at the granularity the strategies use (one cluster per label).
_MINIBATCH_FROM = 50


def kmeans_partition(X: np.ndarray, n_clusters: int, seed: int, max_fit: int = DEFAULT_MAX_FIT) -> np.ndarray:
    """Cluster index of every row of ``X`` under a seeded k-means with ``n_clusters`` clusters.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    n_clusters : int
        Clipped to [1, n].
    seed : int
        Seeds the subsample and k-means.
    max_fit : int
        k-means is fitted on at most this many rows (a uniform subsample), then every row is
        assigned to its nearest centre.

    Returns
    -------
    ndarray of int64, shape (n,)
        Cluster ids in [0, n_clusters); some ids may be empty.
    """
    n = X.shape[0]
    n_clusters = int(min(max(n_clusters, 1), n))
    if n_clusters == 1:
        return np.zeros(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    fit_rows = np.sort(rng.choice(n, size=max_fit, replace=False)) if n > max_fit else np.arange(n)
    n_clusters = min(n_clusters, fit_rows.size)
    model: KMeans | MiniBatchKMeans
    if n_clusters >= _MINIBATCH_FROM:
        model = MiniBatchKMeans(n_clusters=n_clusters, n_init=1, random_state=seed, batch_size=1024)
    else:
        model = KMeans(n_clusters=n_clusters, n_init=1, random_state=seed)
    # One thread: the strategies run inside simulations that are parallel over processes.
    with limited_threads(1):
        # float64 as a float64 pool is (a float32 pool is assigned a block of rows at a time).
        model.fit(np.asarray(X[fit_rows], dtype=np.float64))
        labels = map_row_blocks(model.predict, X)
    assert labels is not None  # predict never declines
    return labels.astype(np.int64)


def cluster_sizes(labels: np.ndarray, n_clusters: int) -> np.ndarray:
    """Records per cluster id, shape (n_clusters,)."""
    return np.bincount(labels, minlength=n_clusters).astype(np.int64)


def typicality(X: np.ndarray, n_neighbors: int = 20) -> np.ndarray:
    """TypiClust's typicality of each row among the rows of ``X``: 1 / mean distance to its k NN.

    Parameters
    ----------
    X : ndarray of shape (n, d)
        The records compared with each other (one cluster, or a whole pool).
    n_neighbors : int
        k, clipped to n - 1. With a single row the typicality is 1.

    Returns
    -------
    ndarray of float64, shape (n,)
        Larger = more typical (denser neighbourhood); finite (duplicates give 1e12).
    """
    n = X.shape[0]
    if n <= 1:
        return np.ones(n)
    k = int(min(max(n_neighbors, 1), n - 1))
    with limited_threads(1):
        distances, _ = NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X)
    mean = distances[:, 1:].mean(axis=1)  # column 0 is the record itself
    return 1.0 / np.maximum(mean, 1e-12)
