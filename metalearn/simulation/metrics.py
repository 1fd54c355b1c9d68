"""Learning-curve metrics shared by the simulator, the environments and the benchmark."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from metalearn.exceptions import InvalidInputError

__all__ = [
    "test_scores",
    "score_predictions",
    "area_under_learning_curve",
    "step_area_under_learning_curve",
    "segment_area",
]


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


def step_area_under_learning_curve(n_bought: np.ndarray, scores: np.ndarray, label_budget: int) -> float:
    """Normalised area under the step learning curve (the score a user has), in [0, 1].

    The step curve is what a user holds while buying labels: at ``n`` labels bought, the test
    score of the last model trained on at most ``n`` labels,
    ``step(n) = scores[k]`` for the last point ``k`` with ``n_bought[k] <= n``. It is
    integrated over the same label range [0, ``label_budget``] as
    :func:`area_under_learning_curve` and divided by the budget::

        step_aulc = sum_k scores[k] * (n_bought[k + 1] - n_bought[k]) / label_budget

    (the last point reaching to the budget), i.e. the mean of ``step(n)`` over
    ``n = 0, ..., label_budget - 1``. A strategy that buys ``b`` labels per retrain keeps the
    previous model's score over those ``b`` labels, so it is charged for the labels it bought
    before its model caught up. The model trained on the whole budget adds no area (it is
    held over no further label). With one label per retrain the step curve is the left
    Riemann sum of the plain curve: ``area_under_learning_curve - (scores[B] - scores[0]) /
    (2 B)`` for a curve with a point at every label count up to the budget ``B``.

    Same conventions as :func:`area_under_learning_curve`: a curve that stops early (pool
    exhausted) keeps its last score up to the budget, points past the budget are ignored,
    and a curve whose first point is past 0 covers the range from that point only.

    Parameters
    ----------
    n_bought : ndarray of shape (n_points,)
        Labels bought at each point, non-decreasing, starting at 0 (of two points at the same
        count, the later one is the model the user holds).
    scores : ndarray of shape (n_points,)
        Test score at each point, in [0, 1].
    label_budget : int
        Positive.

    Returns
    -------
    float
        The normalised area; NaN for a curve with no point within the budget.
    """
    if label_budget <= 0:
        raise InvalidInputError(f"label_budget must be positive, got {label_budget}")
    x = np.asarray(n_bought, dtype=float)
    s = np.asarray(scores, dtype=float)
    if x.shape != s.shape:
        raise InvalidInputError(f"n_bought and scores must have the same length, got {x.size} and {s.size}")
    keep = x <= label_budget
    x, s = x[keep], s[keep]
    if x.size == 0:
        return float("nan")
    held = np.diff(np.append(x, float(label_budget)))  # labels over which each model is the user's
    return float(np.dot(s, held) / label_budget)
