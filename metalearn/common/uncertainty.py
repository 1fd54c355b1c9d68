"""Uncertainty measures of class-probability rows, shared by strategies and features."""

from __future__ import annotations

import numpy as np

__all__ = ["margins", "normalized_entropy"]


def margins(proba: np.ndarray) -> np.ndarray:
    """Difference between the two largest class probabilities, shape (n,), in [0, 1]."""
    if proba.shape[1] == 1:
        return np.ones(proba.shape[0], dtype=proba.dtype)
    if proba.shape[1] == 2:  # the common binary case, without a partition
        return np.abs(proba[:, 0] - proba[:, 1])
    top2 = np.partition(proba, proba.shape[1] - 2, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def normalized_entropy(proba: np.ndarray) -> np.ndarray:
    """Shannon entropy divided by log(n_classes), shape (n,), in [0, 1]."""
    n_classes = proba.shape[1]
    if n_classes < 2:
        return np.zeros(proba.shape[0], dtype=proba.dtype)
    p = np.clip(proba, 1e-12, 1.0)
    return -(proba * np.log(p)).sum(axis=1) / np.log(n_classes)
