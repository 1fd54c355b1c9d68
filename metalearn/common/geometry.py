"""Distances in feature space that stay affordable on large pools.

The features of :mod:`metalearn.features` never expose raw coordinates: they use distances
only, scaled by a typical distance of the same pool so that they mean the same thing on every
dataset. Everything here is chunked so memory stays linear in the pool size, and a float32 pool
is read a block of rows at a time as float64 (:mod:`metalearn.common.blocks`): the same values
as a float64 copy of it would give, without that copy.
"""

from __future__ import annotations

from typing import Literal, overload

import numpy as np

from metalearn.common.blocks import float64_rows, map_row_blocks

__all__ = [
    "squared_norms",
    "min_sq_distances",
    "typical_distance",
    "knn_reference_distance",
    "knn_distance_to",
    "NearestLabeledDistance",
]

# Rows per chunk: at least this many, and as many as keep a (chunk, m) block near 32 MiB.
_CHUNK = 4096
_BLOCK_ENTRIES = 2**22


def _chunk_rows(m: int) -> int:
    return max(_CHUNK, _BLOCK_ENTRIES // max(m, 1))


def squared_norms(X: np.ndarray) -> np.ndarray:
    """Row-wise squared Euclidean norms in float64, shape (n,)."""
    norms = map_row_blocks(lambda rows: np.einsum("ij,ij->i", rows, rows), X)
    assert norms is not None  # the function never declines
    return norms


def min_sq_distances(
    X: np.ndarray, Y: np.ndarray, X_sq: np.ndarray | None = None, Y_sq: np.ndarray | None = None
) -> np.ndarray:
    """Squared distance from each row of ``X`` (n, d) to its nearest row of ``Y`` (m, d); shape (n,)."""
    Y = np.asarray(Y, dtype=np.float64)
    X_sq = squared_norms(X) if X_sq is None else X_sq
    Y_sq = squared_norms(Y) if Y_sq is None else Y_sq
    out = np.empty(X.shape[0])
    chunk = _chunk_rows(Y.shape[0])
    for start in range(0, X.shape[0], chunk):
        stop = min(start + chunk, X.shape[0])
        # (m, chunk) orientation: the minimum over axis 0 is an elementwise pass over rows,
        # several times faster than a reduction along a short last axis.
        block = Y @ float64_rows(X, slice(start, stop)).T
        block *= -2.0
        block += Y_sq[:, None]
        block += X_sq[None, start:stop]
        out[start:stop] = block.min(axis=0)
    return np.maximum(out, 0.0)


def typical_distance(X: np.ndarray, rng: np.random.Generator, n_pairs: int = 2000) -> float:
    """Median Euclidean distance between random pairs of distinct rows (a scale for the pool).

    Falls back to 1.0 when every sampled pair coincides (duplicate-only pools).
    """
    n = X.shape[0]
    if n < 2:
        return 1.0
    a = rng.integers(0, n, size=n_pairs)
    b = rng.integers(0, n - 1, size=n_pairs)
    b = b + (b >= a)  # distinct partner
    X_a, X_b = float64_rows(X, a), float64_rows(X, b)
    d = np.sqrt(np.einsum("ij,ij->i", X_a - X_b, X_a - X_b))
    scale = float(np.median(d))
    return scale if scale > 0 else (float(d.max()) if d.max() > 0 else 1.0)


@overload
def knn_reference_distance(
    X: np.ndarray,
    rng: np.random.Generator,
    *,
    n_reference: int = ...,
    n_neighbors: int = ...,
    return_reference: Literal[False] = ...,
) -> np.ndarray: ...


@overload
def knn_reference_distance(
    X: np.ndarray,
    rng: np.random.Generator,
    *,
    n_reference: int = ...,
    n_neighbors: int = ...,
    return_reference: Literal[True],
) -> tuple[np.ndarray, np.ndarray]: ...


def knn_reference_distance(
    X: np.ndarray,
    rng: np.random.Generator,
    *,
    n_reference: int = 512,
    n_neighbors: int = 10,
    return_reference: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Mean distance from each row to its ``n_neighbors`` nearest rows of a random reference sample.

    A cheap, linear-time proxy of local density (small = dense): exact k-NN over the pool
    would be quadratic. The row itself is excluded when it is part of the reference sample.

    Parameters
    ----------
    return_reference : bool
        Also return the positions of the reference rows (sorted), so that records added to
        the pool later can be measured against the same sample (:func:`knn_distance_to`).

    Returns
    -------
    ndarray of shape (n,), or (that, ndarray of int of shape (m,)) with ``return_reference``
    """
    n = X.shape[0]
    m = min(n_reference, n)
    ref_idx = np.sort(rng.choice(n, size=m, replace=False))
    ref = float64_rows(X, ref_idx)
    k = max(1, min(n_neighbors, m - 1)) if m > 1 else 1
    X_sq, R_sq = squared_norms(X), squared_norms(ref)
    out = np.empty(n)
    is_ref = np.zeros(n, dtype=bool)
    is_ref[ref_idx] = True
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        block = np.maximum(X_sq[start:stop, None] - 2.0 * (float64_rows(X, slice(start, stop)) @ ref.T) + R_sq[None, :], 0.0)
        # A reference row's zero distance to itself is not a neighbour.
        rows = np.flatnonzero(is_ref[start:stop])
        if rows.size:
            cols = np.searchsorted(ref_idx, rows + start)
            block[rows, cols] = np.inf
        kk = min(k, block.shape[1])
        part = np.partition(block, kk - 1, axis=1)[:, :kk]
        part = np.where(np.isfinite(part), part, np.nan)
        out[start:stop] = np.sqrt(np.nanmean(part, axis=1)) if kk else 0.0
    out = np.nan_to_num(out, nan=0.0)
    return (out, ref_idx) if return_reference else out


def knn_distance_to(X: np.ndarray, reference: np.ndarray, n_neighbors: int) -> np.ndarray:
    """Mean distance from each row of ``X`` (n, d) to its ``n_neighbors`` nearest rows of ``reference`` (m, d).

    The counterpart of :func:`knn_reference_distance` for rows that are not part of the
    reference sample (records added to a pool after the sample was drawn). Shape (n,).
    """
    n, m = X.shape[0], reference.shape[0]
    out = np.zeros(n)
    if n == 0 or m == 0:
        return out
    k = max(1, min(n_neighbors, m))
    reference = np.asarray(reference, dtype=np.float64)
    X_sq, R_sq = squared_norms(X), squared_norms(reference)
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        block = np.maximum(
            X_sq[start:stop, None] - 2.0 * (float64_rows(X, slice(start, stop)) @ reference.T) + R_sq[None, :], 0.0
        )
        part = np.partition(block, k - 1, axis=1)[:, :k]
        out[start:stop] = np.sqrt(part.mean(axis=1))
    return out


class NearestLabeledDistance:
    """Distance from every pool record to its nearest labeled record, updated incrementally.

    Each update costs O(n_pool * n_new * d) for the newly labeled rows only, instead of
    recomputing against the whole labeled set.

    Parameters
    ----------
    X : ndarray of shape (n_pool, n_features)
        The pool.
    """

    def __init__(self, X: np.ndarray) -> None:
        self.X = X
        self._X_sq = squared_norms(X)
        self.sq_distance = np.full(X.shape[0], np.inf)
        self.labeled = np.zeros(X.shape[0], dtype=bool)

    def add(self, new_labeled: np.ndarray) -> None:
        """Account for newly labeled pool indices, shape (k,)."""
        new_labeled = np.asarray(new_labeled, dtype=np.int64)
        new_labeled = new_labeled[~self.labeled[new_labeled]]
        if new_labeled.size == 0:
            return
        self.labeled[new_labeled] = True
        d = min_sq_distances(self.X, self.X[new_labeled], self._X_sq, self._X_sq[new_labeled])
        d[new_labeled] = 0.0  # exact zero for the labeled rows themselves, whatever the round-off
        np.minimum(self.sq_distance, d, out=self.sq_distance)

    def sync(self, labeled_mask: np.ndarray) -> None:
        """Bring the tracker to ``labeled_mask`` (n_pool,); labels may only be added, not removed."""
        if np.any(self.labeled & ~labeled_mask):
            # A label was withdrawn: the minimum cannot be "un-taken", so recompute once.
            self.sq_distance.fill(np.inf)
            self.labeled[:] = False
        self.add(np.flatnonzero(labeled_mask & ~self.labeled))

    def reindex(self, old_positions: np.ndarray, X: np.ndarray) -> None:
        """Follow records when the pool changes: rows moved, removed or added.

        Parameters
        ----------
        old_positions : ndarray of int, shape (n_new,)
            For each row of the new pool, its row in the old pool, or -1 for a record that is
            new. Old rows not listed have left the pool.
        X : ndarray of shape (n_new, n_features)
            The new pool; kept records must have the same feature values as before.

        Notes
        -----
        New records get their distance to the current labeled set; if a labeled record left
        the pool the minimum cannot be un-taken, so the tracker starts over and the next
        :meth:`sync` recomputes it.
        """
        old_positions = np.asarray(old_positions, dtype=np.int64)
        kept = old_positions >= 0
        source = np.where(kept, old_positions, 0)
        remaining = np.zeros(self.labeled.shape[0], dtype=bool)
        remaining[old_positions[kept]] = True
        lost_labeled = bool(np.any(self.labeled & ~remaining))
        self.X = X
        self._X_sq = squared_norms(X)
        if lost_labeled:
            self.sq_distance = np.full(X.shape[0], np.inf)
            self.labeled = np.zeros(X.shape[0], dtype=bool)
            return
        self.labeled = self.labeled[source] & kept
        self.sq_distance = np.where(kept, self.sq_distance[source], np.inf)
        new_rows = np.flatnonzero(~kept)
        labeled_rows = np.flatnonzero(self.labeled)
        if new_rows.size and labeled_rows.size:
            self.sq_distance[new_rows] = min_sq_distances(
                X[new_rows], X[labeled_rows], self._X_sq[new_rows], self._X_sq[labeled_rows]
            )

    @property
    def distance(self) -> np.ndarray:
        """Euclidean distances, shape (n_pool,); ``inf`` while nothing is labeled."""
        return np.sqrt(self.sq_distance)
