"""Record identity: a 64-bit key per record, so a history follows records, not row positions.

A pool's rows may be reordered, added or removed between loops (and between runs of
``metalearn next-batch``); the metadata history follows each record by its key:
:func:`record_keys` from user-given ids, :func:`row_keys` from a row's values when there are
no ids, and :func:`match_records` maps new keys to old positions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metalearn.common.blocks import BLOCK_ROWS, row_blocks
from metalearn.exceptions import InvalidInputError

__all__ = ["row_keys", "record_keys", "match_records"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
# Entries of one (rows, columns) block of row hashing: bounds the temporary memory (32 MiB).
_HASH_BLOCK = 2**22


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on a uint64 array (returns a new array; wraps modulo 2**64)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _MIX1
    x ^= x >> np.uint64(27)
    x *= _MIX2
    x ^= x >> np.uint64(31)
    return x


def _disambiguate(keys: np.ndarray) -> np.ndarray:
    """Make repeated keys distinct: the k-th occurrence (k >= 1) of a key is mixed with k.

    Identical records (same bytes) are interchangeable for the metadata history (same
    predictions, same distances), so matching the k-th copy to the k-th copy is exact.
    """
    n = keys.shape[0]
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    starts = np.ones(n, dtype=bool)
    starts[1:] = ordered[1:] != ordered[:-1]
    if starts.all():
        return keys
    position = np.arange(n)
    occurrence = position - np.maximum.accumulate(np.where(starts, position, 0))
    occ = np.empty(n, dtype=np.uint64)
    occ[order] = occurrence.astype(np.uint64)
    return np.where(occ > 0, _mix64(keys ^ (occ * _GOLDEN)), keys)


def row_keys(X: np.ndarray) -> np.ndarray:
    """A 64-bit key per row of ``X`` from the bytes of its values, distinct for every row.

    Vectorised (loops over blocks of rows and columns, never over single rows). ``-0.0`` and ``0.0`` hash alike.
    Rows with identical values get distinct keys by order of appearance (the first copy keeps
    the plain hash), so each record of a pool has its own identity.

    Parameters
    ----------
    X : ndarray of shape (n, d)
        Hashed as float64 values, a block of rows at a time (never a float64 copy of all of X).

    Returns
    -------
    ndarray of uint64, shape (n,)
    """
    X = np.asarray(X)
    n, d = X.shape
    salts = _mix64(np.arange(1, d + 1, dtype=np.uint64) * _GOLDEN)
    h = np.zeros(n, dtype=np.uint64)
    # Sums modulo 2**64 do not depend on how rows and columns are blocked: the keys are the same
    # for any block sizes, which only bound the temporary memory.
    step = max(1, _HASH_BLOCK // min(max(n, 1), BLOCK_ROWS))
    for rows in row_blocks(n):
        words = (np.ascontiguousarray(X[rows], dtype=np.float64) + 0.0).view(np.uint64)  # a fresh copy, -0.0 -> 0.0
        for start in range(0, d, step):
            stop = min(start + step, d)
            block = words[:, start:stop] ^ salts[start:stop]  # a new array: mixed in place below
            block *= _MIX1
            block ^= block >> np.uint64(32)
            block *= _MIX2
            h[rows] += block.sum(axis=1, dtype=np.uint64)
    return _disambiguate(_mix64(h ^ np.uint64(d)))


def record_keys(record_ids: Any, n_rows: int) -> np.ndarray:
    """64-bit keys of user-given record ids (ints, strings or any hashable values), shape (n_rows,).

    Raises :class:`InvalidInputError` for a wrong length or repeated ids.
    """
    if hasattr(record_ids, "to_numpy"):
        record_ids = record_ids.to_numpy()
    try:
        ids = np.asarray(record_ids)
    except (TypeError, ValueError) as exc:  # ragged lists
        raise InvalidInputError(f"record_ids must be 1-D with one id per row of X ({n_rows}): {exc}") from None
    if ids.ndim != 1 or ids.shape[0] != n_rows:
        raise InvalidInputError(f"record_ids must be 1-D with one id per row of X ({n_rows}), got shape {ids.shape}")
    if ids.dtype.kind in "iub":
        keys = _mix64(ids.astype(np.int64).view(np.uint64) ^ _GOLDEN)
    elif ids.dtype.kind in "fcmMV":
        raise InvalidInputError(f"record_ids must be ints or strings, got dtype {ids.dtype}")
    else:
        import pandas as pd

        if ids.dtype.kind == "O":
            bad = next((v for v in ids if v is None or isinstance(v, (list, tuple, dict, set, np.ndarray, float))), "ok")
            if not isinstance(bad, str) or bad != "ok":
                raise InvalidInputError(
                    f"record_ids must hold one int or string per row, got a {type(bad).__name__} ({bad!r})"[:300]
                )
        try:
            keys = pd.util.hash_array(np.asarray(ids, dtype=object), categorize=False).astype(np.uint64)
        except TypeError as exc:
            raise InvalidInputError(f"record_ids must hold one int or string per row ({exc})") from None
    if np.unique(keys).size != n_rows:
        values, counts = np.unique(ids.astype(str), return_counts=True)
        repeated = values[counts > 1][:5].tolist()
        raise InvalidInputError(f"record_ids must be unique; repeated: {repeated or '(hash collision)'}")
    return keys


def match_records(old_keys: np.ndarray, new_keys: np.ndarray) -> np.ndarray:
    """For each new key, the position of the same key among ``old_keys``, or -1; shape (n_new,)."""
    order = np.argsort(old_keys, kind="stable")
    ordered = old_keys[order]
    position = np.searchsorted(ordered, new_keys)
    position = np.minimum(position, max(ordered.shape[0] - 1, 0))
    found = (ordered[position] == new_keys) if ordered.size else np.zeros(new_keys.shape[0], dtype=bool)
    return np.where(found, order[position] if ordered.size else -1, -1).astype(np.int64)
