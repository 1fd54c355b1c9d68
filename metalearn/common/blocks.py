"""A float32 pool worked on a block of rows at a time, never through a float64 copy of it.

Validation keeps a float32 pool as it is for the strategies and stopping rules that ask
(``keeps_float32``), so one query needs little memory beyond the pool itself. Their arithmetic
still runs in float64, one block of rows at a time: a float32 value converts to float64
exactly, and every function applied here treats rows independently, so the results are those
of a whole float64 copy, bit for bit. A float64 pool goes through unchanged, in one piece.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np

__all__ = ["BLOCK_ROWS", "row_blocks", "float64_rows", "map_row_blocks"]

#: Rows per block of a float32 pool (about 25 MiB in float64 at 50 features; the last block up
#: to twice that). A multiple of 256, scikit-learn's k-means assignment chunk, so blocks split
#: the rows where it does.
BLOCK_ROWS = 65536


def row_blocks(n_rows: int, block_rows: int = BLOCK_ROWS) -> Iterator[slice]:
    """Consecutive slices covering ``range(n_rows)``: ``block_rows`` rows each, the last one more.

    The last block takes the remainder (up to ``2 * block_rows - 1`` rows; all rows when there
    are fewer than ``2 * block_rows``), so no block is small: BLAS chooses its kernel by matrix
    size, and rows multiplied in a small product may differ in the last bit from the same rows
    in a large one.
    """
    n_blocks = max(n_rows // block_rows, 1)
    for i in range(n_blocks):
        yield slice(i * block_rows, n_rows if i == n_blocks - 1 else (i + 1) * block_rows)


def float64_rows(X: np.ndarray, rows: slice | np.ndarray) -> np.ndarray:
    """``X[rows]`` as float64: a view of a float64 ``X`` for a slice, a small converted copy otherwise."""
    return np.asarray(X[rows], dtype=np.float64)


def map_row_blocks(
    func: Callable[[np.ndarray], Any],
    X: np.ndarray,
    *,
    rows: np.ndarray | None = None,
    block_rows: int = BLOCK_ROWS,
) -> np.ndarray | None:
    """``func(X[rows] as float64)``, computed a block of rows at a time unless ``X`` is float64.

    Parameters
    ----------
    func : callable
        Maps rows (m, d) float64 to an array whose first axis has the m rows (a classifier's
        ``predict_proba``, squared norms...). It must treat rows independently. It may return
        None (it declines these rows); then the result is None.
    X : ndarray of shape (n, d)
    rows : ndarray of int, optional
        Pool rows to apply ``func`` to, in this order; default: every row.
    block_rows : int
        Rows per block when ``X`` is not float64.

    Returns
    -------
    ndarray with first axis ``len(rows)`` (or n), or None
        A float64 ``X`` gives ``func(X[rows])`` exactly as one call; otherwise the blocks'
        results, written into one array (never a list of blocks concatenated, which would
        hold the result twice).
    """
    if X.dtype == np.float64:
        return func(X if rows is None else X[rows])
    n = X.shape[0] if rows is None else rows.shape[0]
    out: np.ndarray | None = None
    for block in row_blocks(n, block_rows):
        part = func(float64_rows(X, block if rows is None else rows[block]))
        if part is None:
            return None
        part = np.asarray(part)
        if out is None:
            out = np.empty((n, *part.shape[1:]), dtype=part.dtype)
        out[block] = part
    return out
