"""Learning-curve metrics shared by the simulator, the environments and the benchmark."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

__all__ = ["test_scores", "score_predictions", "area_under_learning_curve", "segment_area"]


def test_scores(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> tuple[float, float]:
    """Accuracy and macro-F1 over all ``n_classes`` classes (a never-predicted class scores 0).

    Class-index labels (integers in ``[0, n_classes)``, as every task model predicts) take
    a bincount path (:func:`score_predictions`) that gives exactly scikit-learn's floats in
    ~15 us instead of ~1.5 ms of input checks, a quarter of an environment step with
    logistic regression; anything else goes to scikit-learn's ``accuracy_score`` and
    ``f1_score``.
    """
    y_true_arr, y_pred_arr = np.asarray(y_true), np.asarray(y_pred)
    if _are_class_indices(y_true_arr, y_pred_arr, n_classes):
        return (
            score_predictions(y_true_arr, y_pred_arr, n_classes, "accuracy"),
            score_predictions(y_true_arr, y_pred_arr, n_classes, "macro_f1"),
        )
    return _sklearn_test_scores(y_true, y_pred, n_classes)


def _sklearn_test_scores(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> tuple[float, float]:
    """:func:`test_scores` through scikit-learn's metric functions (any label type)."""
    accuracy = float(accuracy_score(y_true, y_pred))
    macro_f1 = float(f1_score(y_true, y_pred, labels=np.arange(n_classes), average="macro", zero_division=0))
    return accuracy, macro_f1


def _are_class_indices(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> bool:
    """Whether both are equally long 1-D integer arrays of values in ``[0, n_classes)``."""
    if y_true.ndim != 1 or y_pred.shape != y_true.shape or y_true.size == 0:
        return False
    if y_true.dtype.kind not in "iu" or y_pred.dtype.kind not in "iu":
        return False
    return bool(
        min(y_true.min(), y_pred.min()) >= 0 and max(y_true.max(), y_pred.max()) < n_classes
    )


def score_predictions(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, metric: str) -> float:
    """Accuracy or macro-F1 over all classes of class-index labels, with one bincount.

    ``y_true`` and ``y_pred`` are integer arrays of values in ``[0, n_classes)`` (not
    checked). Same definitions and the same floating-point operations as scikit-learn's
    ``accuracy_score`` and ``f1_score(average="macro", zero_division=0)`` (a class never
    predicted nor present scores F1 = 0), without their ~1 ms of input checks per call.
    """
    if metric == "accuracy":
        return float(np.mean(y_true == y_pred))
    confusion = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    tp = np.diag(confusion).astype(float)
    denominator = confusion.sum(axis=0) + confusion.sum(axis=1)  # 2 tp + fp + fn
    f1 = np.divide(2.0 * tp, denominator, out=np.zeros(n_classes), where=denominator > 0)
    return float(f1.mean())


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
    return float(np.trapezoid(s, x) / label_budget) if hasattr(np, "trapezoid") else float(np.trapz(s, x) / label_budget)  # type: ignore[attr-defined]  # numpy < 2.0
