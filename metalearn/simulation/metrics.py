"""Learning-curve metrics shared by the simulator, the environments and the benchmark."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

__all__ = ["test_scores", "area_under_learning_curve", "segment_area"]


def test_scores(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> tuple[float, float]:
    """Accuracy and macro-F1 over all ``n_classes`` classes (a never-predicted class scores 0)."""
    accuracy = float(accuracy_score(y_true, y_pred))
    macro_f1 = float(f1_score(y_true, y_pred, labels=np.arange(n_classes), average="macro", zero_division=0))
    return accuracy, macro_f1


def segment_area(previous_score: float, score: float, n_new_labels: int, label_budget: int) -> float:
    """Area of one learning-curve segment (trapezoid) as a fraction of the whole budget.

    The environments pay this as the reward of a loop, so that an episode's return equals
    :func:`area_under_learning_curve`.
    """
    return 0.5 * (previous_score + score) * n_new_labels / label_budget


def area_under_learning_curve(n_bought: np.ndarray, scores: np.ndarray, label_budget: int) -> float:
    """Normalised area under a learning curve, in [0, 1].

    Trapezoidal area of ``scores`` against the number of labels bought, over [0,
    ``label_budget``], divided by the budget. A curve that stops early (pool exhausted) is
    extended flat at its last score; points past the budget are ignored.

    Parameters
    ----------
    n_bought : ndarray of shape (n_points,)
        Labels bought at each point, increasing, starting at 0.
    scores : ndarray of shape (n_points,)
        Test score at each point, in [0, 1].
    label_budget : int
    """
    x = np.asarray(n_bought, dtype=float)
    s = np.asarray(scores, dtype=float)
    keep = x <= label_budget
    x, s = x[keep], s[keep]
    if x.size == 0:
        return float("nan")
    if x[-1] < label_budget:
        x, s = np.append(x, label_budget), np.append(s, s[-1])
    if x.size == 1:
        return float(s[0])
    return float(np.trapezoid(s, x) / label_budget) if hasattr(np, "trapezoid") else float(np.trapz(s, x) / label_budget)
