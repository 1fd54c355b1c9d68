"""A metalearn policy as a scikit-activeml query strategy.

:class:`PolicyQueryStrategy` is a ``skactiveml.base.SingleAnnotatorPoolQueryStrategy`` and
follows that library's conventions:

- ``query(X, y, clf, fit_clf=True, sample_weight=None, candidates=None, batch_size=1,
  return_utilities=False)``; ``y`` marks unlabeled samples with ``missing_label`` (scikit-
  activeml's ``MISSING_LABEL``, NaN, by default), and ``clf`` is a ``SkactivemlClassifier``
  (e.g. ``SklearnClassifier(LogisticRegression(), classes=...)``) with the same marker;
- ``fit_clf=True`` fits a clone of ``clf`` on ``(X, y)``; the given ``clf`` is never changed;
- ``candidates``: None (every unlabeled sample), an index array into ``X`` (labeled indices
  are refused), or a feature array of candidate samples (returned indices then refer to the
  rows of ``candidates``);
- ``return_utilities=True`` also returns utilities of shape ``(batch_size, n_samples)`` (or
  ``(batch_size, n_candidates)``): row ``i`` holds the policy's scores before the ``i``-th pick,
  NaN for labeled samples, non-candidates and the earlier picks of the batch, as scikit-activeml's
  ``simple_batch`` does.

Unlike scikit-activeml's stateless strategies, the object keeps the policy's multi-loop
metadata history between calls (one call per loop), following records across calls.

Example
-------
>>> from skactiveml.classifier import SklearnClassifier
>>> from skactiveml.utils import MISSING_LABEL
>>> from metalearn.integrations.skactiveml import PolicyQueryStrategy
>>> clf = SklearnClassifier(LogisticRegression(), classes=np.unique(y_true))
>>> qs = PolicyQueryStrategy("default", random_state=0)
>>> y = np.full(len(X), MISSING_LABEL)
>>> for cycle in range(10):                                    # doctest: +SKIP
...     idx = qs.query(X, y, clf, batch_size=5)
...     y[idx] = y_true[idx]
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

import numpy as np

from metalearn.common.text import printable
from metalearn.integrations import missing_dependency

try:
    from skactiveml.base import SingleAnnotatorPoolQueryStrategy, SkactivemlClassifier
    from skactiveml.utils import MISSING_LABEL, check_equal_missing_label, check_type, is_labeled
except ImportError as _exc:  # pragma: no cover - exercised only without the library
    raise missing_dependency("scikit-activeml", "skactiveml") from _exc

from sklearn.base import clone

from metalearn.exceptions import InvalidInputError, InvalidTypeError, MetalearnError
from metalearn.policies.file import PolicyFile
from metalearn.common.record_identity import match_records, row_keys
from metalearn.policies.strategy import PolicyStrategy

__all__ = ["PolicyQueryStrategy"]


@contextlib.contextmanager
def _errors_as_ours(what: str) -> Iterator[None]:
    """Turn a foreign ``ValueError``/``TypeError`` raised inside into metalearn's, one line."""
    try:
        yield
    except MetalearnError:
        raise
    except TypeError as exc:
        raise InvalidTypeError(f"{what}: {printable(' '.join(str(exc).split()))[:500]}") from exc
    except ValueError as exc:
        raise InvalidInputError(f"{what}: {printable(' '.join(str(exc).split()))[:500]}") from exc


class PolicyQueryStrategy(SingleAnnotatorPoolQueryStrategy):
    """Query with a learned metalearn policy, scikit-activeml style.

    Parameters
    ----------
    policy : str, path-like or PolicyFile, default="default"
        A released policy name, a policy file, or a policy already read.
    n_candidates : int or None
        Candidates the policy scores per query (None: the policy's recorded value).
    label_budget : int
        Labels the loop intends to buy (scales the policy's ``budget_used`` feature).
    candidate_selection : {"mixed", "random", "all"}
        How the scored candidates are pre-selected among the query candidates (as in
        training: ``"mixed"``). With ``"all"`` every candidate gets a utility; otherwise the
        candidates the policy did not score get utility ``-inf``.
    missing_label : scalar, default=MISSING_LABEL
        Marker of unlabeled samples in ``y`` (must equal the classifier's).
    random_state : int, RandomState or None
        Seeds candidate sampling and tie-breaking (drawn once, at the first query).

    Attributes
    ----------
    policy_strategy_ : PolicyStrategy
        The stateful metalearn strategy doing the work (its ``extractor_`` holds the history).
    """

    def __init__(
        self,
        policy: str | os.PathLike[str] | PolicyFile = "default",
        n_candidates: int | None = None,
        label_budget: int = 100,
        candidate_selection: str = "mixed",
        missing_label: Any = MISSING_LABEL,
        random_state: Any = None,
    ) -> None:
        super().__init__(missing_label=missing_label, random_state=random_state)
        self.policy = policy
        self.n_candidates = n_candidates
        self.label_budget = label_budget
        self.candidate_selection = candidate_selection

    def _strategy(self) -> PolicyStrategy:
        if not hasattr(self, "policy_strategy_"):
            seed = self.random_state
            if isinstance(seed, np.random.RandomState):
                seed = int(seed.randint(0, 2**31 - 1))
            self.policy_strategy_ = PolicyStrategy(
                self.policy,
                n_candidates=self.n_candidates,
                label_budget=self.label_budget,
                candidate_selection=self.candidate_selection,
                missing_label=self.missing_label_,
                random_state=seed,
            )
        return self.policy_strategy_

    def query(
        self,
        X: Any,
        y: Any,
        clf: Any,
        fit_clf: bool = True,
        sample_weight: Any = None,
        candidates: Any = None,
        batch_size: int = 1,
        return_utilities: bool = False,
    ) -> Any:
        """Determine which candidate samples to label next.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            All samples, labeled and unlabeled.
        y : array-like of shape (n_samples,)
            Labels, ``missing_label`` where unlabeled.
        clf : skactiveml.base.SkactivemlClassifier
            With ``predict_proba``; fitted on ``(X, y)`` if ``fit_clf=False``.
        fit_clf : bool, default=True
            Fit a clone of ``clf`` on ``(X, y)`` first.
        sample_weight : array-like of shape (n_samples,), optional
            Passed to the classifier's ``fit`` when ``fit_clf=True``.
        candidates : None, array-like of int of shape (n_candidates,), or array-like of shape (n_candidates, n_features)
            See the module documentation.
        batch_size : int, default=1
            Samples to select (reduced, with a warning, to the number of candidates).
        return_utilities : bool, default=False
            Also return the utilities.

        Returns
        -------
        query_indices : ndarray of int, shape (batch_size,)
            Into ``X`` (candidates None or indices) or into ``candidates`` (feature array).
        utilities : ndarray of shape (batch_size, n_samples) or (batch_size, n_candidates)
            Only with ``return_utilities=True``.
        """
        # The adapter's boundary: scikit-activeml's and scikit-learn's own ValueError/TypeError
        # for bad input (its checks, the classifier's fit) become metalearn's errors (still a
        # ValueError/TypeError, as scikit-activeml users catch).
        with _errors_as_ours("scikit-activeml query"):
            X, y, candidates, batch_size, return_utilities = self._validate_data(
                X, y, candidates, batch_size, return_utilities, reset=True
            )
            check_type(clf, "clf", SkactivemlClassifier)
            check_equal_missing_label(clf.missing_label, self.missing_label_)
            check_type(fit_clf, "fit_clf", bool)
            if fit_clf:
                clf = clone(clf).fit(X, y) if sample_weight is None else clone(clf).fit(X, y, sample_weight)

            labeled = is_labeled(y, self.missing_label_)
            n_samples = X.shape[0]
            X_pool, y_pool = X, y
            if candidates is None:
                eligible = np.flatnonzero(~labeled)
                n_out, to_out = n_samples, None
            elif candidates.ndim == 1:
                if labeled[candidates].any():
                    raise InvalidInputError("Candidates must not contain labeled samples.")
                eligible = np.unique(candidates)
                n_out, to_out = n_samples, None
            else:
                # Candidate samples given as features: a candidate equal to an unlabeled sample of X
                # is that record; the others join the pool as extra unlabeled records.
                cand = np.asarray(candidates, dtype=np.float64)
                position = match_records(row_keys(X), row_keys(cand))
                matched = position >= 0
                matched[matched] = ~labeled[position[matched]]
                extra = np.flatnonzero(~matched)
                if extra.size:
                    X_pool = np.vstack([np.asarray(X, dtype=np.float64), cand[extra]])
                    y_pool = np.concatenate([y, np.full(extra.size, self.missing_label_, dtype=y.dtype)])
                eligible = np.where(matched, position, -1)
                eligible[extra] = n_samples + np.arange(extra.size)
                n_out, to_out = cand.shape[0], eligible

        utilities = np.full((batch_size, n_out), np.nan)
        if batch_size == 0:
            picks = np.empty(0, dtype=int)
            return (picks, utilities) if return_utilities else picks

        strategy = self._strategy()
        strategy.missing_label = self.missing_label_
        picks = strategy.query(
            X_pool, y_pool, clf, batch_size=batch_size, candidates=eligible, step_scores=return_utilities
        )
        if to_out is not None:  # pool index -> position in `candidates`
            lookup = np.full(X_pool.shape[0], -1, dtype=np.int64)
            lookup[to_out] = np.arange(to_out.shape[0])
            picks = lookup[picks]
        if not return_utilities:
            return picks.astype(int)

        scored, _ = strategy.last_scores_
        steps = strategy.last_step_scores_.astype(np.float64)
        if to_out is not None:
            lookup_out = lookup
            eligible_out = np.arange(n_out)
            scored_out = lookup_out[scored]
        else:
            eligible_out = eligible
            scored_out = scored
        utilities[:, eligible_out] = -np.inf  # candidates outside the policy's pre-selection
        utilities[:, scored_out] = steps
        for i in range(1, batch_size):  # earlier picks of the batch: NaN, as simple_batch does
            utilities[i, picks[:i]] = np.nan
        return picks.astype(int), utilities
