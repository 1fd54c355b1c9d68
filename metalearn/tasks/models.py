"""The task-model zoo: fresh scikit-learn classifiers by name.

Every model has ``predict_proba`` and is seeded where it has randomness, so a simulation
with the same seed trains the same models. Models are small on purpose: an active-learning
simulation retrains them after every batch, thousands of times during meta-training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from sklearn.base import ClassifierMixin
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.svm import SVC

from metalearn.exceptions import UnknownNameError

__all__ = ["MODEL_NAMES", "ModelFactory", "make_model"]


def _logreg(seed: int | None, **params: Any) -> ClassifierMixin:
    return LogisticRegression(**{"C": 1.0, "max_iter": 1000, "random_state": seed, **params})


def _random_forest(seed: int | None, **params: Any) -> ClassifierMixin:
    return RandomForestClassifier(**{"n_estimators": 100, "n_jobs": 1, "random_state": seed, **params})


def _gradient_boosting(seed: int | None, **params: Any) -> ClassifierMixin:
    # Few labels in AL: a small min_samples_leaf keeps the model from predicting a constant.
    defaults = {"max_iter": 100, "min_samples_leaf": 2, "early_stopping": False, "random_state": seed}
    return HistGradientBoostingClassifier(**{**defaults, **params})


def _svm(seed: int | None, **params: Any) -> ClassifierMixin:
    return SVC(**{"kernel": "rbf", "C": 1.0, "gamma": "scale", "probability": True, "random_state": seed, **params})


def _knn(seed: int | None, **params: Any) -> ClassifierMixin:
    return KNeighborsClassifier(**{"n_neighbors": 5, "weights": "distance", **params})


def _mlp(seed: int | None, **params: Any) -> ClassifierMixin:
    defaults = {"hidden_layer_sizes": (32,), "max_iter": 300, "alpha": 1e-3, "random_state": seed}
    return MLPClassifier(**{**defaults, **params})


def _naive_bayes(seed: int | None, **params: Any) -> ClassifierMixin:
    return GaussianNB(**params)


_MODELS: dict[str, Callable[..., ClassifierMixin]] = {
    "logreg": _logreg,
    "rf": _random_forest,
    "hgb": _gradient_boosting,
    "svm": _svm,
    "knn": _knn,
    "mlp": _mlp,
    "nb": _naive_bayes,
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
}

#: Canonical model names, in the order they are documented.
MODEL_NAMES: tuple[str, ...] = tuple(_MODELS)


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


def make_model(name: str, random_state: int | None = None, **params: Any) -> ClassifierMixin:
    """Build a fresh, unfitted classifier of the zoo.

    Parameters
    ----------
    name : str
        One of :data:`MODEL_NAMES` (``logreg``, ``rf``, ``hgb``, ``svm``, ``knn``, ``mlp``,
        ``nb``) or an alias such as ``random_forest``.
    random_state : int or None
        Seed of the model's own randomness (ignored by deterministic models).
    **params
        Overrides of the model's default hyper-parameters.
    """
    return _MODELS[canonical_model_name(name)](random_state, **params)


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
    """

    name: str
    random_state: int | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", canonical_model_name(self.name))

    def __call__(self) -> ClassifierMixin:
        return make_model(self.name, self.random_state, **self.params)
