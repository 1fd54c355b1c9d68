"""The family of a user's classifier, for calibrating the stopping rule per kind of model.

The learned stopping rule predicts how much the next labels will raise test accuracy. How
fast a model keeps learning depends on its kind (a random forest keeps gaining long after a
logistic regression has settled), so a rule file may hold calibration shifts per model family
(``quantile_shifts_by_family``) beside the pooled ones. This module names the family of the
fitted classifier a loop passes, looking through the wrappers users put around a model
(a scikit-learn ``Pipeline``, ``CalibratedClassifierCV``, our ``WarmStartClassifier``).

Families: ``linear`` (logistic regression, linear SGD, linear SVM, ridge), ``forest`` (decision trees and
bagged/randomised tree ensembles), ``boosting`` (gradient boosting, AdaBoost, XGBoost,
LightGBM, CatBoost), ``svm``, ``knn``, ``mlp``, ``nb`` (naive Bayes) and ``other``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sklearn.ensemble import (
    AdaBoostClassifier,
    BaggingClassifier,
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV, RidgeClassifier, SGDClassifier
from sklearn.naive_bayes import _BaseNB
from sklearn.neighbors import KNeighborsClassifier, RadiusNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.svm import SVC, LinearSVC, NuSVC
from sklearn.tree import BaseDecisionTree

from metalearn.tasks.models import PlattSVC, canonical_model_name, make_model

__all__ = ["MODEL_FAMILIES", "model_family", "zoo_model_family"]

#: Every family :func:`model_family` returns.
MODEL_FAMILIES: tuple[str, ...] = ("linear", "forest", "boosting", "svm", "knn", "mlp", "nb", "other")

_BY_CLASS: tuple[tuple[tuple[type, ...], str], ...] = (
    ((LogisticRegression, LogisticRegressionCV, SGDClassifier, LinearSVC, RidgeClassifier), "linear"),
    ((HistGradientBoostingClassifier, GradientBoostingClassifier, AdaBoostClassifier), "boosting"),
    ((RandomForestClassifier, ExtraTreesClassifier, BaggingClassifier, BaseDecisionTree), "forest"),
    ((SVC, NuSVC, PlattSVC), "svm"),
    ((KNeighborsClassifier, RadiusNeighborsClassifier), "knn"),
    ((MLPClassifier,), "mlp"),
    ((_BaseNB,), "nb"),
)

# Third-party boosting libraries, recognised by the module their class comes from (not imported).
_BOOSTING_MODULES = ("xgboost", "lightgbm", "catboost")

#: Attributes through which a wrapper exposes the model it wraps, fitted ones first.
_WRAPPED = ("estimator_", "estimator", "base_estimator")


def _unwrap(clf: Any) -> Any:
    """The innermost model of a Pipeline / calibration / warm-start wrapper (at most 8 levels)."""
    for _ in range(8):
        steps = getattr(clf, "steps", None)
        if isinstance(steps, list) and steps:
            clf = steps[-1][1]
            continue
        calibrated = getattr(clf, "calibrated_classifiers_", None)
        if calibrated:
            clf = getattr(calibrated[0], "estimator", clf)
            continue
        inner = next((getattr(clf, name) for name in _WRAPPED if getattr(clf, name, None) is not None), None)
        if inner is None or inner is clf or isinstance(clf, BaggingClassifier):
            return clf
        clf = inner
    return clf


def model_family(clf: Any) -> str:
    """The family of a classifier (fitted or not), one of :data:`MODEL_FAMILIES`.

    Parameters
    ----------
    clf : classifier
        A scikit-learn-style classifier, possibly inside a ``Pipeline``,
        ``CalibratedClassifierCV`` or ``WarmStartClassifier``.

    Returns
    -------
    str
        ``"other"`` for a model of a kind this release does not know.
    """
    model = _unwrap(clf)
    for classes, family in _BY_CLASS:
        if isinstance(model, classes):
            return family
    module = type(model).__module__.split(".")[0]
    return "boosting" if module in _BOOSTING_MODULES else "other"


@lru_cache(maxsize=None)
def zoo_model_family(name: str) -> str:
    """The family of a model of the simulator's zoo by its name (``"logreg"`` -> ``"linear"``).

    Cached: tables of runs ask it once per row, and the answer depends on the name only.
    """
    return model_family(make_model(canonical_model_name(name), random_state=0))
