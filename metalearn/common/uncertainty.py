"""Uncertainty measures of class-probability rows, shared by strategies and features."""

from __future__ import annotations

import numpy as np

from metalearn.exceptions import InvalidInputError

__all__ = ["margins", "normalized_entropy", "UNINFORMATIVE_MODEL_RULES", "same_for_every_row", "check_uninformative_model_rule"]

#: What a strategy does while its classifier gives every record the same probabilities:
#: ``"random"`` picks uniformly at random; ``"score"`` scores as at any other loop.
UNINFORMATIVE_MODEL_RULES: tuple[str, ...] = ("random", "score")


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


def same_for_every_row(proba: np.ndarray, atol: float = 1e-9) -> bool:
    """Whether every row has the same class probabilities (to ``atol``): the model ranks no record above another.

    scikit-learn's ``HistGradientBoostingClassifier`` at its defaults (20 records per leaf)
    predicts the labeled class shares for every record below about 40 labels; kNN does the
    same with fewer labels than neighbours. Margins and prediction flips then say nothing.

    Parameters
    ----------
    proba : ndarray of shape (n, n_classes)

    Returns
    -------
    bool
        True for fewer than two rows as well.
    """
    if proba.shape[0] < 2:
        return True
    # An informative model almost always differs within the first rows: decide there first.
    head = proba[:64]
    if np.any(np.abs(head - head[0]) > atol):
        return False
    spread = proba.max(axis=0) - proba.min(axis=0)
    return bool(np.all(spread <= atol))


def check_uninformative_model_rule(value: object) -> str:
    """``value`` as a rule of :data:`UNINFORMATIVE_MODEL_RULES`; :class:`InvalidInputError` otherwise."""
    if not isinstance(value, str) or value not in UNINFORMATIVE_MODEL_RULES:
        raise InvalidInputError(
            f"unknown uninformative_model {value!r}; valid values: {', '.join(UNINFORMATIVE_MODEL_RULES)}"
        )
    return value
