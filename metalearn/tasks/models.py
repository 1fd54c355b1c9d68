"""The task-model zoo: fresh scikit-learn classifiers by name.

Every model has ``predict_proba`` and is seeded where it has randomness, so a simulation
with the same seed trains the same models. Models are small on purpose: an active-learning
simulation retrains them after every batch, thousands of times during meta-training.

``warm_start=True`` (opt-in; off by default) wraps a model whose refits can continue from the last
solution (logistic regression, MLP, SGD, histogram gradient boosting) in a
:class:`~metalearn.tasks.warm_start.WarmStartClassifier`; :func:`warm_started` does the same for
an estimator of your own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.model_selection import StratifiedKFold
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.svm import SVC

from metalearn.exceptions import InvalidInputError, UnknownNameError
from metalearn.tasks.warm_start import WarmStartClassifier, warm_started

__all__ = [
    "MODEL_NAMES",
    "WARM_STARTABLE_MODELS",
    "ModelFactory",
    "make_model",
    "canonical_model_name",
    "PlattSVC",
    "WarmStartClassifier",
    "warm_started",
]


def _logreg(seed: int | None, **params: Any) -> ClassifierMixin:
    return LogisticRegression(**{"C": 1.0, "max_iter": 1000, "random_state": seed, **params})


def _random_forest(seed: int | None, **params: Any) -> ClassifierMixin:
    return RandomForestClassifier(**{"n_estimators": 100, "n_jobs": 1, "random_state": seed, **params})


def _gradient_boosting(seed: int | None, **params: Any) -> ClassifierMixin:
    # Few labels in AL: a small min_samples_leaf keeps the model from predicting a constant.
    defaults = {"max_iter": 100, "min_samples_leaf": 2, "early_stopping": False, "random_state": seed}
    return HistGradientBoostingClassifier(**{**defaults, **params})


class PlattSVC(ClassifierMixin, BaseEstimator):
    """RBF support-vector classifier with Platt-scaled probabilities that works from one label per class.

    scikit-learn deprecated ``SVC(probability=True)`` (removed in 1.11) in favour of
    ``CalibratedClassifierCV(SVC(), ensemble=False)``, whose cross-validation needs at least
    two records per class. An active-learning process starts with one: then the sigmoid
    cannot be fitted and the probabilities are the softmax of the one-vs-rest decision
    values; from two records per class on, sigmoid calibration with up to 5 stratified folds.

    Parameters
    ----------
    C : float
        Regularisation of the SVC.
    gamma : {"scale", "auto"} or float
        RBF kernel width.
    random_state : int or None
        Seed of the calibration folds.
    """

    def __init__(self, C: float = 1.0, gamma: str | float = "scale", random_state: int | None = None) -> None:
        self.C = C
        self.gamma = gamma
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> "PlattSVC":
        X = np.asarray(X, dtype=float)
        self.classes_, y_index = np.unique(y, return_inverse=True)
        counts = np.bincount(y_index)
        svc = SVC(kernel="rbf", C=self.C, gamma=self.gamma, decision_function_shape="ovr")
        if self.classes_.size < 2:
            self.model_ = None  # a single class: certain everywhere
        elif counts.min() >= 2:
            folds = StratifiedKFold(n_splits=min(5, int(counts.min())), shuffle=True, random_state=self.random_state)
            self.model_ = CalibratedClassifierCV(svc, method="sigmoid", cv=folds, ensemble=False).fit(X, y_index)
        else:
            self.model_ = svc.fit(X, y_index)
        self.n_features_in_ = X.shape[1]
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        if self.model_ is None:
            return np.ones((X.shape[0], 1))
        if isinstance(self.model_, CalibratedClassifierCV):
            return self.model_.predict_proba(X)
        scores = self.model_.decision_function(X)
        if scores.ndim == 1:  # binary: one signed distance
            scores = np.stack([-scores, scores], axis=1)
        scores = scores - scores.max(axis=1, keepdims=True)
        exp = np.exp(scores)
        return exp / exp.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


def _svm(seed: int | None, **params: Any) -> ClassifierMixin:
    return PlattSVC(**{"C": 1.0, "gamma": "scale", "random_state": seed, **params})


class _FewLabelKNeighborsClassifier(KNeighborsClassifier):
    """k-nearest neighbours that uses at most as many neighbours as it has training records.

    An AL process starts with one label per class, fewer than k; scikit-learn's estimator
    would then refuse to predict. Predictions use ``min(n_neighbors, n_samples_fit_)``.
    """

    n_neighbors: int

    def _query(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        # n_neighbors is read deep inside scikit-learn (including a fast path that bypasses
        # kneighbors), so it is capped for the duration of the call and restored after.
        k = self.n_neighbors
        self.n_neighbors = min(k, self.n_samples_fit_)
        try:
            return method(*args, **kwargs)
        finally:
            self.n_neighbors = k

    def predict(self, X: Any) -> Any:
        return self._query(super().predict, X)

    def predict_proba(self, X: Any) -> Any:
        return self._query(super().predict_proba, X)


def _knn(seed: int | None, **params: Any) -> ClassifierMixin:
    return _FewLabelKNeighborsClassifier(**{"n_neighbors": 5, "weights": "distance", **params})


def _mlp(seed: int | None, **params: Any) -> ClassifierMixin:
    defaults = {"hidden_layer_sizes": (32,), "max_iter": 300, "alpha": 1e-3, "random_state": seed}
    return MLPClassifier(**{**defaults, **params})


def _sgd(seed: int | None, **params: Any) -> ClassifierMixin:
    # Logistic regression trained by stochastic gradient descent: its refits can be one more
    # epoch (partial_fit) instead of a solve from scratch.
    return SGDClassifier(**{"loss": "log_loss", "alpha": 1e-3, "max_iter": 1000, "random_state": seed, **params})


def _naive_bayes(seed: int | None, **params: Any) -> ClassifierMixin:
    return GaussianNB(**params)


# -- as users configure them: scikit-learn's own defaults ------------------------------------
# A strategy meets the models users pass, not only the zoo's few-label settings above. At its
# defaults HistGradientBoosting needs 20 records per leaf, so below about 40 labels it gives every
# record the same probabilities; the default MLP is larger and stops earlier; the default kNN
# weighs its neighbours uniformly, so its probabilities move in steps of 1/k.
def _gradient_boosting_sklearn(seed: int | None, **params: Any) -> ClassifierMixin:
    return HistGradientBoostingClassifier(**{"random_state": seed, **params})


def _mlp_sklearn(seed: int | None, **params: Any) -> ClassifierMixin:
    return MLPClassifier(**{"random_state": seed, **params})


def _knn_sklearn(seed: int | None, **params: Any) -> ClassifierMixin:
    return _FewLabelKNeighborsClassifier(**params)


_MODELS: dict[str, Callable[..., ClassifierMixin]] = {
    "logreg": _logreg,
    "rf": _random_forest,
    "hgb": _gradient_boosting,
    "svm": _svm,
    "knn": _knn,
    "mlp": _mlp,
    "nb": _naive_bayes,
    "hgb_sklearn": _gradient_boosting_sklearn,
    "mlp_sklearn": _mlp_sklearn,
    "knn_sklearn": _knn_sklearn,
    "sgd": _sgd,
}
_ALIASES = {
    "logistic_regression": "logreg",
    "lr": "logreg",
    "random_forest": "rf",
    "gradient_boosting": "hgb",
    "hist_gradient_boosting": "hgb",
    "rbf_svm": "svm",
    "kneighbors": "knn",
    "naive_bayes": "nb",
    "gaussian_nb": "nb",
    "sgd_logreg": "sgd",
}

#: Canonical model names, in the order they are documented.
MODEL_NAMES: tuple[str, ...] = tuple(_MODELS)
#: Models whose refits ``warm_start=True`` continues from the last solution.
WARM_STARTABLE_MODELS: tuple[str, ...] = ("logreg", "hgb", "mlp", "hgb_sklearn", "mlp_sklearn", "sgd")


def canonical_model_name(name: str) -> str:
    """Return the canonical name of a model given a name or alias (case-insensitive)."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _MODELS:
        raise UnknownNameError(
            f"unknown task model {name!r}; valid names: {', '.join(MODEL_NAMES)} "
            f"(aliases: {', '.join(sorted(_ALIASES))})"
        )
    return key


def make_model(
    name: str, random_state: int | None = None, *, warm_start: bool = False, **params: Any
) -> ClassifierMixin:
    """Build a fresh, unfitted classifier of the zoo.

    Parameters
    ----------
    name : str
        One of :data:`MODEL_NAMES` (``logreg``, ``rf``, ``hgb``, ``svm``, ``knn``, ``mlp``,
        ``nb``, and ``hgb_sklearn``, ``mlp_sklearn``, ``knn_sklearn``: those three at
        scikit-learn's own defaults, as users configure them; ``sgd``, logistic regression
        trained by SGD) or an alias such as ``random_forest``.
    random_state : int or None
        Seed of the model's own randomness (ignored by deterministic models).
    warm_start : bool, default=False
        Return the model wrapped in a :class:`~metalearn.tasks.warm_start.WarmStartClassifier`,
        whose refits on the same classes continue from the last solution. Only for
        :data:`WARM_STARTABLE_MODELS`. Measured on the validation split
        (benchmarks/warm-start/README.md): neutral for ``logreg``, close to neutral for
        ``mlp`` (a third less fit time), but gradient boosting (``hgb``) loses 12 to 17 AULC
        points on average (up to 38 on multi-class data) for 86% less fit time, and ``sgd``
        up to 2.7: do not warm-start those in an active-learning loop.
    **params
        Overrides of the model's default hyper-parameters.

    Raises
    ------
    InvalidInputError
        If ``warm_start`` is asked of a model outside :data:`WARM_STARTABLE_MODELS`.
    """
    key = canonical_model_name(name)
    _check_warm_startable(key, warm_start)
    model = _MODELS[key](random_state, **params)
    return WarmStartClassifier(model) if warm_start else model


def _check_warm_startable(key: str, warm_start: Any) -> None:
    if not isinstance(warm_start, (bool, np.bool_)):
        raise InvalidInputError(f"warm_start must be True or False, got {warm_start!r}"[:300])
    if warm_start and key not in WARM_STARTABLE_MODELS:
        raise InvalidInputError(
            f"task model {key!r} has no warm-started refits; models that do: {', '.join(WARM_STARTABLE_MODELS)}"
        )


@dataclass(frozen=True)
class ModelFactory:
    """A named recipe for fresh task models: calling it returns a new unfitted classifier.

    Attributes
    ----------
    name : str
        Canonical model name (see :data:`MODEL_NAMES`).
    random_state : int or None
        Seed passed to every model built, so retraining on the same labels is reproducible.
    params : dict
        Hyper-parameter overrides.
    warm_start : bool
        Build :class:`~metalearn.tasks.warm_start.WarmStartClassifier` models, and let a
        simulation keep one model across loops, refitting it in place (see
        :meth:`~metalearn.simulation.process.ActiveLearningProcess.fit`). Only for
        :data:`WARM_STARTABLE_MODELS`; off by default (every refit from scratch).
    """

    name: str
    random_state: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    warm_start: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", canonical_model_name(self.name))
        _check_warm_startable(self.name, self.warm_start)

    def __call__(self) -> ClassifierMixin:
        return make_model(self.name, self.random_state, warm_start=self.warm_start, **self.params)
