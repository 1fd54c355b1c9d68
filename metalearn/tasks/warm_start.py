"""Warm-started refits: a classifier refitted on a growing labeled set continues from its last solution.

An active-learning loop refits its model on the labeled set after every batch; the new set is
the old one plus a few records, so the previous solution is a good starting point. What
"continue" means depends on the model:

- :class:`~sklearn.linear_model.LogisticRegression`: the solver starts from the previous
  coefficients (``warm_start=True``); the problem is convex, so it converges to the same
  optimum as a cold fit, up to the solver's tolerance.
- :class:`~sklearn.neural_network.MLPClassifier`: training continues from the previous weights
  (``warm_start=True``), with the early-stopping counter started afresh (carried over, the
  previous fit's best loss would end the new fit after a few epochs and the new records would
  barely count).
- :class:`~sklearn.linear_model.SGDClassifier`: one more epoch over the labeled set
  (``partial_fit``), the learning-rate schedule continuing where it was.
- :class:`~sklearn.ensemble.HistGradientBoostingClassifier`: ``extra_iter`` more boosting
  iterations on top of the previous trees (``warm_start=True`` with ``max_iter`` increased).
  scikit-learn bins the features again on each fit, and the earlier trees' split bins are read
  on the new binning while boosting, so the continuation is an approximation: measure it
  (``benchmarks/warm-start``) before relying on it.

A refit is warm only when the labels have exactly the classes of the previous fit and the
features have the same width; otherwise the coefficient shapes change, and the model is fitted
from scratch (a *fallback*, counted). The first fit is always cold.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.utils.metaestimators import available_if

from metalearn.common.validation import check_positive_int
from metalearn.exceptions import InvalidInputError

__all__ = ["WARM_STARTABLE_TYPES", "WarmStartClassifier", "supports_warm_start", "warm_started"]

#: Estimator types whose refits :class:`WarmStartClassifier` can continue from the last solution.
WARM_STARTABLE_TYPES: tuple[type, ...] = (
    LogisticRegression,
    MLPClassifier,
    SGDClassifier,
    HistGradientBoostingClassifier,
)


def supports_warm_start(estimator: Any) -> bool:
    """Whether :class:`WarmStartClassifier` can warm-start refits of ``estimator``.

    SGD qualifies only with a probabilistic loss (``log_loss`` or ``modified_huber``), which
    active learning needs for ``predict_proba``.
    """
    if isinstance(estimator, SGDClassifier):
        return estimator.loss in ("log_loss", "modified_huber")
    return isinstance(estimator, WARM_STARTABLE_TYPES)


def _check_supported(estimator: Any) -> None:
    if not supports_warm_start(estimator):
        raise InvalidInputError(
            f"{type(estimator).__name__} cannot be warm-started here; supported: "
            f"{', '.join(t.__name__ for t in WARM_STARTABLE_TYPES)} (SGD with log_loss or modified_huber)"
        )


def _has_method(name: str) -> Any:
    def check(self: "WarmStartClassifier") -> bool:
        return hasattr(self.estimator, name)

    return check


class WarmStartClassifier(ClassifierMixin, BaseEstimator):
    """A classifier whose refits on a superset of the same classes continue from its last solution.

    Fit it again and again as labels arrive, as an active-learning loop does; every fit after
    the first starts from the previous solution when the labels have the same classes and the
    features the same width, and is a fresh (cold) fit of a clone of ``estimator`` otherwise.

    Parameters
    ----------
    estimator : classifier
        An unfitted :class:`~sklearn.linear_model.LogisticRegression`,
        :class:`~sklearn.neural_network.MLPClassifier`,
        :class:`~sklearn.linear_model.SGDClassifier` (log or modified-Huber loss) or
        :class:`~sklearn.ensemble.HistGradientBoostingClassifier` (see
        :func:`supports_warm_start`); it is cloned, never modified.
    extra_iter : int, default=10
        Boosting iterations a warm refit of histogram gradient boosting adds; unused by the
        other models.

    Attributes
    ----------
    estimator_ : classifier
        The fitted model; the same object across warm refits.
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    n_cold_fits_ : int
        Fits from scratch (the first fit and every fallback).
    n_warm_fits_ : int
        Refits that continued from the previous solution.
    n_fallbacks_ : int
        Refits that had to start from scratch because the classes or the feature width changed.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from metalearn.tasks.models import warm_started
    >>> clf = warm_started(LogisticRegression(max_iter=1000))
    >>> # in the loop: clf.fit(X[labeled], y[labeled]); idx = strategy.query(X, y_obs, clf, batch_size=10)
    """

    # Fitted attributes (declared for the type checker; set by fit, so hasattr says "fitted").
    estimator_: Any
    classes_: np.ndarray
    n_features_in_: int
    n_cold_fits_: int
    n_warm_fits_: int
    n_fallbacks_: int

    def __init__(self, estimator: Any, *, extra_iter: int = 10) -> None:
        self.estimator = estimator
        self.extra_iter = extra_iter

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> "WarmStartClassifier":
        """Fit on the labeled records, continuing from the last solution when the classes are unchanged.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,) or None
            Passed to the estimator's ``fit`` / ``partial_fit``.
        """
        _check_supported(self.estimator)
        extra_iter = check_positive_int(self.extra_iter, "extra_iter")
        classes = np.unique(np.asarray(y))
        n_features = int(np.shape(X)[1]) if np.ndim(X) == 2 else -1
        fitted = hasattr(self, "estimator_")
        kwargs = {} if sample_weight is None else {"sample_weight": sample_weight}
        if fitted and n_features == self.n_features_in_ and np.array_equal(classes, self.classes_):
            self._continue(X, y, extra_iter, kwargs)
            self.n_warm_fits_ += 1
        else:
            if not fitted:
                self.n_cold_fits_, self.n_warm_fits_, self.n_fallbacks_ = 0, 0, 0
            else:
                self.n_fallbacks_ += 1
            self.estimator_ = clone(self.estimator).fit(X, y, **kwargs)
            self.n_cold_fits_ += 1
        self.classes_ = self.estimator_.classes_
        self.n_features_in_ = int(self.estimator_.n_features_in_)
        return self

    def _continue(self, X: Any, y: Any, extra_iter: int, kwargs: dict[str, Any]) -> None:
        model = self.estimator_
        if isinstance(model, SGDClassifier):
            model.partial_fit(X, y, **kwargs)
            return
        if isinstance(model, HistGradientBoostingClassifier):
            model.set_params(warm_start=True, max_iter=int(model.n_iter_) + extra_iter)
        else:
            model.set_params(warm_start=True)
        if isinstance(model, MLPClassifier):
            # scikit-learn keeps the early-stopping state across warm fits; the previous fit
            # ended because its loss stopped improving, so the new one would stop after a few
            # epochs. Start the stopping rule afresh (as the look-ahead oracle does).
            model._no_improvement_count = 0
            model.best_loss_ = np.inf
        model.fit(X, y, **kwargs)

    @available_if(_has_method("predict_proba"))
    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities of the last fitted model, columns in ``classes_`` order."""
        return self.estimator_.predict_proba(X)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels of the last fitted model."""
        return self.estimator_.predict(X)

    @available_if(_has_method("decision_function"))
    def decision_function(self, X: Any) -> np.ndarray:
        """Decision values of the last fitted model."""
        return self.estimator_.decision_function(X)


def warm_started(estimator: Any, *, extra_iter: int = 10) -> WarmStartClassifier:
    """Wrap ``estimator`` so that refitting it on a growing labeled set warm-starts (checked now).

    Use it in your own loop in place of the estimator: fit it on the labeled records each
    loop and hand it to ``strategy.query`` as usual.

    Parameters
    ----------
    estimator : classifier
        See :class:`WarmStartClassifier`.
    extra_iter : int, default=10
        Boosting iterations added per warm refit of histogram gradient boosting.

    Raises
    ------
    InvalidInputError
        If the estimator's refits cannot be warm-started (see :func:`supports_warm_start`).
    """
    _check_supported(estimator)
    check_positive_int(extra_iter, "extra_iter")
    return WarmStartClassifier(estimator, extra_iter=extra_iter)
