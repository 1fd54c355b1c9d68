"""Candidate pre-selection shared by the environments, the trainers, the oracle and the policy.

A policy is trained on candidate sets drawn by one rule and must be queried with the same
rule, so the rule lives here once.
"""

from __future__ import annotations

import math

import numpy as np

from metalearn.strategies.base import select_top

__all__ = ["mixed_candidates", "mixed_representative_candidates"]


def mixed_candidates(available: np.ndarray, margin: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """ceil(k/2) smallest-margin records plus uniformly random ones from the rest.

    Linear time (a partition, not a sort), so it stays cheap on pools of millions.

    Parameters
    ----------
    available : ndarray of int, shape (n,)
        Pool indices to choose from (the unlabeled records).
    margin : ndarray of shape (n,)
        Their current margins, aligned with ``available``.
    k : int
        Candidates wanted; all of ``available`` when ``n <= k``.
    rng : numpy Generator
        Breaks margin ties at random (many records share margin 0 early on) and draws the
        random half.

    Returns
    -------
    ndarray of int64, shape (min(k, n),)
        The smallest-margin half first, then the random half.
    """
    available = np.asarray(available, dtype=np.int64)
    if available.size <= k:
        return available
    n_uncertain = math.ceil(k / 2)
    top = select_top(-np.asarray(margin, dtype=np.float64), n_uncertain, rng)
    rest = np.delete(available, top)
    return np.concatenate([available[top], rng.choice(rest, size=k - n_uncertain, replace=False)]).astype(np.int64)


def mixed_representative_candidates(
    available: np.ndarray,
    margin: np.ndarray,
    representative: np.ndarray,
    k: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """A third smallest-margin, a third representative and the rest uniformly random records.

    The pre-selection of ``pool@2`` policies: besides the uncertain records of
    :func:`mixed_candidates` they are offered the records the low-budget strategies would pick
    (the most typical record of each cluster without a label), so the policy can choose either.

    Parameters
    ----------
    available : ndarray of int, shape (n,)
        Pool indices to choose from (the unlabeled records).
    margin : ndarray of shape (n,)
        Their current margins, aligned with ``available``.
    representative : ndarray of int
        Pool indices (a subset of ``available``), best first; the first ones not already
        chosen by margin fill the representative third.
    k : int
        Candidates wanted; all of ``available`` when ``n <= k``.
    rng : numpy Generator
        Breaks margin ties and draws the random rest.

    Returns
    -------
    ndarray of int64, shape (min(k, n),)
        Smallest-margin records first, then representative ones, then random ones; distinct.
    """
    available = np.asarray(available, dtype=np.int64)
    if available.size <= k:
        return available
    n_uncertain = math.ceil(k / 3)
    top = select_top(-np.asarray(margin, dtype=np.float64), n_uncertain, rng)
    chosen = available[top]
    taken = np.isin(available, chosen)
    extra = np.asarray(representative, dtype=np.int64)
    extra = extra[~np.isin(extra, chosen)][: math.ceil(k / 3)]
    taken |= np.isin(available, extra)
    rest = available[~taken]
    n_random = k - chosen.size - extra.size
    return np.concatenate([chosen, extra, rng.choice(rest, size=n_random, replace=False)]).astype(np.int64)
