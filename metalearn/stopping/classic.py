"""The established stopping criteria, as baselines of the learned rule.

- :class:`StabilizingPredictions`: Cohen's kappa between consecutive models' predictions on
  a fixed stop set (Bloodgood & Vijay-Shanker 2009, "A method for stopping active learning
  based on stabilizing predictions and the need for user-adjustable stopping"): stop once the
  mean kappa of the last ``window`` pairs of consecutive models reaches ``kappa`` (paper: a
  stop set of unlabeled records, window 3, kappa 0.99).
- :class:`OverallUncertainty`: the mean normalised entropy of the unlabeled records falls
  below a threshold (Zhu, Wang & Hovy 2008).
- :class:`MaxConfidence`: the most uncertain unlabeled record, the one uncertainty sampling
  would buy next, has a normalised entropy below a threshold (Zhu, Wang & Hovy 2008).
- :class:`ClassificationChange`: no prediction of the unlabeled records changed since the
  previous loop (Zhu, Wang & Hovy 2008), or at most a fraction ``threshold`` of them.
- :class:`FixedBudget`: stop once ``max_labeled`` records are labeled.

Defaults are the papers' (and small-text's, where it ships the criterion).
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from metalearn.common.uncertainty import normalized_entropy
from metalearn.common.validation import check_positive_int, check_real
from metalearn.exceptions import InvalidInputError
from metalearn.stopping.base import StoppingRule, cohen_kappa
from metalearn.stopping.limits import MAX_STOP_SET_SIZE, MAX_WINDOW
from metalearn.strategies.base import QueryContext

__all__ = [
    "StabilizingPredictions",
    "OverallUncertainty",
    "MaxConfidence",
    "ClassificationChange",
    "FixedBudget",
    "CLASSIC_RULES",
]


def _check_fraction(value: Any, name: str, *, low: float = 0.0, high: float = 1.0) -> float:
    number = check_real(value, name)  # a bool, text or 10**400 is our error, not float()'s
    if not (low <= number <= high):
        raise InvalidInputError(f"{name} must lie in [{low}, {high}], got {number}")
    return number


def _labels_to_json(values: np.ndarray) -> list[Any]:
    """Predicted labels as JSON values: numbers stay numbers (so restored labels compare equal), others text."""
    out: list[Any] = []
    for v in np.asarray(values, dtype=object):
        if v is None or isinstance(v, (bool, np.bool_)):
            out.append(None if v is None else bool(v))
        elif isinstance(v, (numbers.Integral, np.integer)):
            out.append(int(v))
        elif isinstance(v, (numbers.Real, np.floating)):
            out.append(float(v))
        else:
            out.append(str(v))
    return out


def _predicted_labels(ctx: QueryContext, rows: np.ndarray) -> np.ndarray:
    """The classifier's predicted labels (its ``classes_``) of some pool rows, from ``predict_proba``."""
    proba = ctx._checked_proba(ctx.predict_rows("predict_proba", rows), rows.size)
    return np.asarray(ctx.classes)[proba.argmax(axis=1)]


class StabilizingPredictions(StoppingRule):
    """Stop when consecutive models agree on a stop set (Bloodgood & Vijay-Shanker 2009).

    Parameters
    ----------
    stop_set_size : int, default=2000
        Records of the stop set, drawn once (seeded) among the rows unlabeled at the first
        call; the whole pool when it has fewer. The stop set needs no labels.
    window : int, default=3
        Kappas (pairs of consecutive models) averaged.
    kappa : float, default=0.99
        Stop once the mean of the last ``window`` kappas is at least this.
    missing_label, random_state
        See :class:`~metalearn.stopping.base.StoppingRule`.
    """

    name = "stabilizing_predictions"
    keeps_float32 = True  # X only reaches the classifier, a block of rows at a time

    def __init__(
        self,
        *,
        stop_set_size: int = 2000,
        window: int = 3,
        kappa: float = 0.99,
        missing_label: Any = np.nan,
        random_state: int | np.random.Generator | None = None,
    ) -> None:
        super().__init__(missing_label=missing_label, random_state=random_state)
        self.stop_set_size = stop_set_size
        self.window = window
        self.kappa = kappa

    def _validate_params(self) -> None:
        check_positive_int(self.stop_set_size, "stop_set_size", maximum=MAX_STOP_SET_SIZE)
        check_positive_int(self.window, "window", maximum=MAX_WINDOW)
        _check_fraction(self.kappa, "kappa", low=-1.0)

    def _decide(self, ctx: QueryContext) -> tuple[bool, dict[str, Any]]:
        if not hasattr(self, "stop_set_"):
            unlabeled = ctx.unlabeled_indices
            size = min(int(self.stop_set_size), unlabeled.size)
            self.stop_set_ = np.sort(self.rng_.choice(unlabeled, size=size, replace=False))
            self.kappas_: list[float] = []
        predictions = _predicted_labels(ctx, self.stop_set_)
        previous = getattr(self, "last_predictions_", None)
        self.last_predictions_ = predictions
        if previous is None:
            return False, {"kappa": None, "mean_kappa": None}
        self.kappas_.append(cohen_kappa(predictions, previous))
        self.kappas_ = self.kappas_[-int(self.window):]
        if len(self.kappas_) < int(self.window):
            return False, {"kappa": self.kappas_[-1], "mean_kappa": None}
        mean = float(np.mean(self.kappas_))
        return mean >= float(self.kappa), {"kappa": self.kappas_[-1], "mean_kappa": mean}

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays: dict[str, np.ndarray] = {}
        meta: dict[str, Any] = {"kappas": list(getattr(self, "kappas_", []))}
        if hasattr(self, "stop_set_"):
            arrays["stop_set"] = self.stop_set_.astype(np.int64)
        if getattr(self, "last_predictions_", None) is not None:
            meta["last_predictions"] = _labels_to_json(self.last_predictions_)
        return arrays, meta

    def _load_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        if "stop_set" in arrays:
            self.stop_set_ = np.asarray(arrays["stop_set"], dtype=np.int64)
            self.kappas_ = [float(k) for k in meta.get("kappas", [])]
        if "last_predictions" in meta:
            self.last_predictions_ = np.asarray(meta["last_predictions"])


class OverallUncertainty(StoppingRule):
    """Stop when the mean normalised entropy of the unlabeled records is below ``threshold``.

    Parameters
    ----------
    threshold : float, default=0.05
        In [0, 1); small-text's default.
    missing_label, random_state
        See :class:`~metalearn.stopping.base.StoppingRule`.
    """

    name = "overall_uncertainty"
    keeps_float32 = True  # X only reaches the classifier, a block of rows at a time

    def __init__(self, *, threshold: float = 0.05, missing_label: Any = np.nan,
                 random_state: int | np.random.Generator | None = None) -> None:
        super().__init__(missing_label=missing_label, random_state=random_state)
        self.threshold = threshold

    def _validate_params(self) -> None:
        _check_fraction(self.threshold, "threshold")

    def _decide(self, ctx: QueryContext) -> tuple[bool, dict[str, Any]]:
        value = float(normalized_entropy(ctx.proba_unlabeled).mean())
        return value < float(self.threshold), {"mean_entropy": value}


class MaxConfidence(StoppingRule):
    """Stop when even the most uncertain unlabeled record is nearly certain.

    Parameters
    ----------
    threshold : float, default=0.001
        Normalised entropy of the most uncertain unlabeled record below which to stop
        (Zhu, Wang & Hovy 2008 use 0.001).
    missing_label, random_state
        See :class:`~metalearn.stopping.base.StoppingRule`.
    """

    name = "max_confidence"
    keeps_float32 = True  # X only reaches the classifier, a block of rows at a time

    def __init__(self, *, threshold: float = 0.001, missing_label: Any = np.nan,
                 random_state: int | np.random.Generator | None = None) -> None:
        super().__init__(missing_label=missing_label, random_state=random_state)
        self.threshold = threshold

    def _validate_params(self) -> None:
        _check_fraction(self.threshold, "threshold")

    def _decide(self, ctx: QueryContext) -> tuple[bool, dict[str, Any]]:
        value = float(normalized_entropy(ctx.proba_unlabeled).max())
        return value < float(self.threshold), {"max_entropy": value}


class ClassificationChange(StoppingRule):
    """Stop when the predictions of the unlabeled records stop changing between loops.

    Parameters
    ----------
    threshold : float, default=0.0
        Fraction of the unlabeled records (those unlabeled in both loops) allowed to change;
        0 is the original criterion (small-text's default).
    missing_label, random_state
        See :class:`~metalearn.stopping.base.StoppingRule`.
    """

    name = "classification_change"
    keeps_float32 = True  # X only reaches the classifier, a block of rows at a time

    def __init__(self, *, threshold: float = 0.0, missing_label: Any = np.nan,
                 random_state: int | np.random.Generator | None = None) -> None:
        super().__init__(missing_label=missing_label, random_state=random_state)
        self.threshold = threshold

    def _validate_params(self) -> None:
        _check_fraction(self.threshold, "threshold")

    def _decide(self, ctx: QueryContext) -> tuple[bool, dict[str, Any]]:
        rows = ctx.unlabeled_indices
        predictions = np.asarray(ctx.classes)[ctx.proba_unlabeled.argmax(axis=1)]
        previous = getattr(self, "last_predictions_", None)
        current = np.full(ctx.X.shape[0], None, dtype=object)
        current[rows] = predictions
        self.last_predictions_ = current
        if previous is None:
            return False, {"changed_fraction": None}
        common = rows[np.array([previous[r] is not None for r in rows], dtype=bool)] if rows.size else rows
        if common.size == 0:
            return False, {"changed_fraction": None}
        unchanged = int(np.sum(current[common] == previous[common]))
        changed = 1.0 - unchanged / common.size
        return unchanged >= common.size * (1.0 - float(self.threshold)), {"changed_fraction": changed}

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        previous = getattr(self, "last_predictions_", None)
        if previous is None:
            return {}, {}
        return {}, {"last_predictions": _labels_to_json(previous)}

    def _load_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        if "last_predictions" in meta:
            self.last_predictions_ = np.asarray(meta["last_predictions"], dtype=object)


class FixedBudget(StoppingRule):
    """Stop once ``max_labeled`` records are labeled (the usual fixed label budget).

    Parameters
    ----------
    max_labeled : int, default=100
        Labeled records (initial ones included) at which to stop.
    missing_label, random_state
        See :class:`~metalearn.stopping.base.StoppingRule`.
    """

    name = "fixed_budget"
    keeps_float32 = True  # X is never read

    def __init__(self, *, max_labeled: int = 100, missing_label: Any = np.nan,
                 random_state: int | np.random.Generator | None = None) -> None:
        super().__init__(missing_label=missing_label, random_state=random_state)
        self.max_labeled = max_labeled

    def _validate_params(self) -> None:
        check_positive_int(self.max_labeled, "max_labeled")

    def _decide(self, ctx: QueryContext) -> tuple[bool, dict[str, Any]]:
        n_labeled = int(ctx.labeled.sum())
        return n_labeled >= int(self.max_labeled), {}


#: The classic criteria by name.
CLASSIC_RULES: dict[str, type[StoppingRule]] = {
    cls.name: cls
    for cls in (StabilizingPredictions, OverallUncertainty, MaxConfidence, ClassificationChange, FixedBudget)
}
