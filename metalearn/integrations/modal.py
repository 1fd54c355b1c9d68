"""A metalearn policy as a modAL query strategy.

modAL calls ``query_strategy(learner, X_pool, *args, **kwargs)`` and expects the indices of
the chosen rows of ``X_pool`` together with a metric of each (``(query_idx, metrics)``, as its
``uncertainty_sampling`` returns); ``learner.query`` returns ``(query_idx, X_pool[query_idx])``.

:func:`policy_query_strategy` builds such a callable around a stateful
:class:`~metalearn.policies.strategy.PolicyStrategy`:

- the policy sees the whole labeled set: the learner's training data (``learner.X_training``,
  ``learner.y_training``) are stacked with the pool, so features such as the distance to the
  labeled set and the labeled class balance are right;
- modAL pools shrink (``X_pool = np.delete(X_pool, idx, axis=0)``) and the training set
  grows: the metadata history follows records (by a hash of their feature values), not row
  positions, so every record keeps its own window from loop to loop;
- it always returns a ``(indices, scores)`` tuple, so modAL's ``query`` (which calls the
  strategy again when the result does not unpack into two values) runs it exactly once per
  query; if the strategy raises, modAL's immediate retry gets the same error without a second run.

Example
-------
>>> from modAL.models import ActiveLearner
>>> from metalearn.integrations.modal import policy_query_strategy
>>> learner = ActiveLearner(estimator=RandomForestClassifier(), X_training=X0, y_training=y0,
...                         query_strategy=policy_query_strategy("default", random_state=0))
>>> for loop in range(10):                                    # doctest: +SKIP
...     idx, _ = learner.query(X_pool, n_instances=5)
...     learner.teach(X_pool[idx], y_pool[idx])
...     X_pool, y_pool = np.delete(X_pool, idx, axis=0), np.delete(y_pool, idx)
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

from metalearn.integrations import missing_dependency

try:
    import modAL  # noqa: F401  (the adapter follows its calling convention)
except ImportError as _exc:  # pragma: no cover - exercised only without the library
    raise missing_dependency("modAL-python", "modal") from _exc

from metalearn.common.validation import check_pool_features
from metalearn.exceptions import InvalidInputError, InvalidTypeError
from metalearn.policies.file import PolicyFile, read_policy
from metalearn.policies.strategy import PolicyStrategy

__all__ = ["policy_query_strategy", "PolicyQuery"]


class _LearnerModel:
    """The learner seen as a fitted classifier: modAL's ``predict_proba`` and the estimator's classes."""

    def __init__(self, learner: Any) -> None:
        self.learner = learner

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.learner.predict_proba(X)

    @property
    def classes_(self) -> Any:
        estimator = getattr(self.learner, "estimator", self.learner)
        return getattr(estimator, "classes_", None)


class PolicyQuery:
    """A modAL ``query_strategy``: ``(learner, X_pool, n_instances=1) -> (indices, scores)``.

    Build it with :func:`policy_query_strategy`. Use one object per active-learning process:
    it keeps the policy's history.

    Attributes
    ----------
    strategy : PolicyStrategy
        The policy strategy; ``strategy.extractor_.history`` is the metadata history.
    n_runs : int
        Times the policy ran (one per successful ``learner.query``).
    """

    def __init__(self, strategy: PolicyStrategy) -> None:
        self.strategy = strategy
        self.n_runs = 0
        self._failure: tuple[tuple[int, ...], BaseException] | None = None

    def __call__(self, classifier: Any, X_pool: Any, n_instances: int = 1, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
        """Choose ``n_instances`` rows of ``X_pool``.

        Parameters
        ----------
        classifier : modAL learner
            With ``predict_proba`` and the training data ``X_training`` / ``y_training``.
        X_pool : array-like of shape (n_pool, n_features)
            The unlabeled pool (labeled records belong in the learner's training data).
        n_instances : int
            Rows to choose.

        Returns
        -------
        indices : ndarray of int, shape (n_instances,)
            Distinct rows of ``X_pool``, best first.
        scores : ndarray of float32, shape (n_instances,)
            The policy's score of each pick when it was chosen.
        """
        token = (id(classifier), id(X_pool), int(n_instances) if isinstance(n_instances, (int, np.integer)) else -1)
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if self._failure is not None:
            failed_token, error = self._failure
            self._failure = None
            if failed_token == token and caller.startswith("modAL"):
                raise error  # modAL's retry of a failed query: the same error, nothing run twice
        try:
            return self._query(classifier, X_pool, n_instances, kwargs)
        except Exception as error:
            self._failure = (token, error)
            raise

    def _query(self, classifier: Any, X_pool: Any, n_instances: Any, kwargs: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        if kwargs:
            raise InvalidTypeError(
                f"the metalearn policy strategy takes n_instances only; unexpected argument(s) {sorted(kwargs)}"
            )
        pool = check_pool_features(X_pool, name="X_pool")
        X_training = getattr(classifier, "X_training", None)
        y_training = getattr(classifier, "y_training", None)
        if X_training is None or y_training is None:
            raise InvalidInputError(
                "the learner has no training data (X_training is None): give ActiveLearner X_training and "
                "y_training (a policy queries with a fitted model)"
            )
        train = check_pool_features(X_training, name="X_training")
        if train.shape[1] != pool.shape[1]:
            raise InvalidInputError(
                f"X_pool has {pool.shape[1]} features but the learner's X_training has {train.shape[1]}"
            )
        labels = np.asarray(y_training)
        if labels.ndim != 1 or labels.shape[0] != train.shape[0]:
            raise InvalidInputError(
                f"the learner's y_training must be 1-D with one label per row of X_training, got shape {labels.shape}"
            )
        n_train, n_pool = train.shape[0], pool.shape[0]
        if labels.dtype.kind in "iufb":
            y = np.concatenate([labels.astype(np.float64), np.full(n_pool, np.nan)])
            self.strategy.missing_label = np.nan
        else:
            y = np.empty(n_train + n_pool, dtype=object)
            y[:n_train] = labels
            y[n_train:] = None
            self.strategy.missing_label = None
        X = np.vstack([train, pool])
        picks = self.strategy.query(
            X, y, _LearnerModel(classifier), batch_size=n_instances,
            candidates=np.arange(n_train, n_train + n_pool), step_scores=True,
        )
        self.n_runs += 1
        return picks - n_train, self.strategy.last_pick_scores_.copy()


def policy_query_strategy(
    policy: str | os.PathLike[str] | PolicyFile = "default",
    *,
    n_candidates: int | None = None,
    label_budget: int = 100,
    candidate_selection: str = "mixed",
    random_state: int | np.random.Generator | None = None,
) -> PolicyQuery:
    """A modAL query strategy that queries with a learned metalearn policy.

    Parameters
    ----------
    policy : str, path-like or PolicyFile, default="default"
        A released policy name, a policy file, or a policy already read.
    n_candidates, label_budget, candidate_selection, random_state
        As :class:`~metalearn.policies.strategy.PolicyStrategy`.

    Returns
    -------
    PolicyQuery
        Pass it as ``ActiveLearner(..., query_strategy=...)``; ``learner.query(X_pool,
        n_instances=k)`` then returns ``(indices, X_pool[indices])``.

    Raises
    ------
    PolicyFileError, FeatureSchemaError, UnknownNameError
        The policy cannot be read (checked here, not at the first query).
    """
    strategy = PolicyStrategy(
        policy if isinstance(policy, PolicyFile) else read_policy(policy),
        n_candidates=n_candidates,
        label_budget=label_budget,
        candidate_selection=candidate_selection,
        random_state=random_state,
    )
    return PolicyQuery(strategy)
