"""A metalearn policy as a small-text query strategy.

:class:`PolicyQueryStrategy` subclasses ``small_text.QueryStrategy``:
``query(clf, dataset, indices_unlabeled, indices_labeled, y, n=10)`` returns ``n`` indices
(relative to ``dataset``) drawn from ``indices_unlabeled``, and, like small-text's
confidence-based strategies, leaves the scores of the last query in ``scores_`` (one value per
record of the dataset; higher = more worth labeling; NaN for the records the policy did not
score: labeled ones and unlabeled ones outside its candidate pre-selection).

The policy needs class probabilities (``clf.predict_proba(dataset)``) and a numeric
representation of the records for its distance features (distance to the labeled set,
density). By default that is ``dataset.x``: a dense matrix as is, a sparse one (TF-IDF,
bag of words) densified when it has at most ``max_dense_features`` columns, otherwise
reduced to ``n_components`` dimensions by a truncated SVD fitted once. For datasets whose
``x`` is not a feature matrix (token ids of transformer datasets) pass
``features=lambda clf, dataset: clf.embed(dataset)`` or any callable returning an
``(n_records, d)`` array. Single-label classification only.

Example
-------
>>> from small_text import PoolBasedActiveLearner, SklearnClassifierFactory, SklearnDataset
>>> from metalearn.integrations.small_text import PolicyQueryStrategy
>>> factory = SklearnClassifierFactory(LogisticRegression(), num_classes)
>>> learner = PoolBasedActiveLearner(factory, PolicyQueryStrategy("default", random_state=0), train)
>>> learner.initialize_data(indices_initial, y_initial)         # doctest: +SKIP
>>> for loop in range(10):                                      # doctest: +SKIP
...     indices = learner.query(num_samples=10)
...     learner.update(train.y[indices])
"""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp

from metalearn.integrations import missing_dependency

try:
    from small_text.query_strategies import QueryStrategy
except ImportError as _exc:  # pragma: no cover - exercised only without the library
    raise missing_dependency("small-text", "small_text") from _exc

from metalearn.common.validation import check_pool_features
from metalearn.exceptions import InvalidInputError
from metalearn.policies.file import PolicyFile, read_policy
from metalearn.policies.strategy import PolicyStrategy

__all__ = ["PolicyQueryStrategy"]


class _Precomputed:
    """A fitted classifier stand-in that returns probabilities computed once for the whole pool."""

    def __init__(self, proba: np.ndarray, classes: np.ndarray) -> None:
        self.proba = proba
        self.classes_ = classes

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if X.shape[0] != self.proba.shape[0]:  # pragma: no cover - the policy asks for the whole pool only
            raise InvalidInputError("probabilities were computed for the whole dataset only")
        return self.proba


class PolicyQueryStrategy(QueryStrategy):
    """Query with a learned metalearn policy, small-text style.

    Parameters
    ----------
    policy : str, path-like or PolicyFile, default="default"
        A released policy name, a policy file, or a policy already read (read here).
    features : callable, array or None
        The records' numeric representation for the distance features: ``features(clf,
        dataset) -> (n_records, d)``, a fixed array, or None for ``dataset.x`` (see the module).
    n_candidates, label_budget, candidate_selection, random_state
        As :class:`~metalearn.policies.strategy.PolicyStrategy`.
    max_dense_features : int
        A sparse ``dataset.x`` with at most this many columns is densified.
    n_components : int
        Dimensions of the truncated SVD used for wider sparse matrices.

    Attributes
    ----------
    scores_ : ndarray of float, shape (n_records,)
        The policy's scores of the last query (NaN where not scored).
    strategy : PolicyStrategy
        The stateful policy strategy (its ``extractor_.history`` is the metadata history).
    """

    def __init__(
        self,
        policy: str | os.PathLike[str] | PolicyFile = "default",
        *,
        features: Callable[[Any, Any], Any] | np.ndarray | None = None,
        n_candidates: int | None = None,
        label_budget: int = 100,
        candidate_selection: str = "mixed",
        random_state: int | np.random.Generator | None = None,
        max_dense_features: int = 2048,
        n_components: int = 100,
    ) -> None:
        self.policy = policy if isinstance(policy, PolicyFile) else read_policy(policy)
        self.features = features
        self.max_dense_features = max_dense_features
        self.n_components = n_components
        self.strategy = PolicyStrategy(
            self.policy,
            n_candidates=n_candidates,
            label_budget=label_budget,
            candidate_selection=candidate_selection,
            random_state=random_state,
        )
        self.scores_: np.ndarray | None = None
        self._svd: tuple[int, tuple[int, ...], np.ndarray] | None = None

    def _representation(self, clf: Any, dataset: Any, n_records: int) -> np.ndarray:
        if self.features is not None:
            raw = self.features(clf, dataset) if callable(self.features) else self.features
            X = check_pool_features(raw, name="features")
        else:
            x: Any = getattr(dataset, "x", None)
            if sp.issparse(x):
                if x.shape[1] <= self.max_dense_features:
                    X = check_pool_features(x, name="dataset.x")
                else:
                    key = (id(x), x.shape)
                    if self._svd is None or self._svd[:2] != key:
                        from sklearn.decomposition import TruncatedSVD

                        k = max(1, min(self.n_components, min(x.shape) - 1))
                        reduced = TruncatedSVD(n_components=k, random_state=0).fit_transform(x)
                        self._svd = (key[0], key[1], check_pool_features(reduced, name="dataset.x (SVD)"))
                    X = self._svd[2]
            elif isinstance(x, np.ndarray) and x.ndim == 2 and x.dtype.kind in "iufb":
                X = check_pool_features(x, name="dataset.x")
            else:
                raise InvalidInputError(
                    f"dataset.x is not a numeric feature matrix ({type(x).__name__}); pass "
                    "PolicyQueryStrategy(features=...) a callable (clf, dataset) -> (n_records, d) array, "
                    "e.g. lambda clf, dataset: clf.embed(dataset)"
                )
        if X.shape[0] != n_records:
            raise InvalidInputError(f"the representation has {X.shape[0]} rows but the dataset {n_records} records")
        return X

    @staticmethod
    def _classes(clf: Any, proba: np.ndarray) -> np.ndarray:
        model_classes = getattr(getattr(clf, "model", None), "classes_", None)
        if model_classes is not None and len(model_classes) == proba.shape[1]:
            return np.asarray(model_classes)
        num_classes = getattr(clf, "num_classes", None)
        if num_classes is None or num_classes == proba.shape[1]:
            return np.arange(proba.shape[1])
        raise InvalidInputError(
            f"predict_proba returned {proba.shape[1]} columns for a classifier of {num_classes} classes; "
            "cannot tell which classes they are"
        )

    def query(self, clf: Any, dataset: Any, indices_unlabeled: Any, indices_labeled: Any, y: Any, n: int = 10) -> np.ndarray:
        """Query ``n`` records from ``indices_unlabeled`` (indices relative to ``dataset``)."""
        self._validate_query_input(indices_unlabeled, n)
        if sp.issparse(y):
            raise InvalidInputError("the metalearn policy supports single-label classification only (y is multi-label)")
        if isinstance(dataset, np.ndarray):
            raise InvalidInputError(
                "PolicyQueryStrategy needs the dataset itself to predict class probabilities; instead of "
                "learner.query(representation=...), give the representation as PolicyQueryStrategy(features=...)"
            )
        n_records = len(dataset)
        proba = np.asarray(clf.predict_proba(dataset), dtype=np.float64)
        if proba.ndim != 2 or proba.shape[0] != n_records:
            raise InvalidInputError(f"clf.predict_proba(dataset) returned shape {proba.shape}, expected ({n_records}, n_classes)")
        X = self._representation(clf, dataset, n_records)
        labeled = np.asarray(indices_labeled, dtype=np.int64)
        labels = np.asarray(y)
        if labels.shape != labeled.shape:
            raise InvalidInputError(f"y has shape {labels.shape} but indices_labeled {labeled.shape}")
        y_pool = np.full(n_records, np.nan)
        y_pool[labeled] = labels
        picks = self.strategy.query(
            X, y_pool, _Precomputed(proba, self._classes(clf, proba)), batch_size=int(n),
            candidates=np.asarray(indices_unlabeled, dtype=np.int64),
        )
        scored, scores = self.strategy.last_scores_
        self.scores_ = np.full(n_records, np.nan)
        self.scores_[scored] = scores
        return picks

    def __str__(self) -> str:
        path = getattr(self.policy, "path", None)
        return f"PolicyQueryStrategy(policy={str(path) if path else 'in memory'!r})"
