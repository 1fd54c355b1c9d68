"""The one interface every querying strategy implements.

Follows the public contract of the design brief: ``query(X, y, clf, batch_size)`` receives
the whole pool, labels with unlabeled entries marked ``missing_label``, and a fitted
classifier; it returns ``batch_size`` distinct indices of unlabeled rows. Strategies are
stateful across calls (one call per loop), which is what lets them keep a metadata history.

Subclasses implement :meth:`QueryStrategy._select`; validation, seeding, state bookkeeping and
the checks on the returned indices live here once.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from metalearn.common.blocks import map_row_blocks
from metalearn.common.params import ParamsMixin
from metalearn.common.validation import (
    check_batch_size,
    check_classifier,
    check_labels,
    check_pool_features,
    check_probabilities,
    check_random_state,
)
from metalearn.exceptions import InvalidInputError, InvalidTypeError, PoolChangedWarning

__all__ = ["QueryStrategy", "QueryContext", "select_top"]


def select_top(scores: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Positions of the ``k`` largest scores, best first, ties broken at random; O(n).

    NaN scores rank last.

    Parameters
    ----------
    scores : ndarray of shape (n,)
    k : int
        1 <= k <= n.
    rng : numpy Generator
        Breaks ties among equal scores.

    Returns
    -------
    ndarray of int, shape (k,)
    """
    scores = np.where(np.isnan(scores), -np.inf, scores)
    n: int = scores.shape[0]
    if k >= n:
        order = np.lexsort((rng.random(n), -scores))
        return order[:k]
    kth = np.partition(scores, n - k)[n - k]
    above = np.flatnonzero(scores > kth)
    above = above[np.argsort(-scores[above], kind="stable")]
    ties = np.flatnonzero(scores == kth)
    chosen = rng.choice(ties, size=k - above.size, replace=False)
    return np.concatenate([above, chosen]).astype(np.int64)


class QueryContext:
    """Everything a strategy may look at in one loop, with predictions computed lazily and once.

    Attributes
    ----------
    X : ndarray of shape (n_pool, n_features)
    y : ndarray of shape (n_pool,)
        Labels as given, missing entries included.
    labeled : ndarray of bool, shape (n_pool,)
    unlabeled_indices : ndarray of int, shape (n_unlabeled,)
    clf : classifier
    rng : numpy Generator
        The strategy's generator; every random choice draws from it.
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, labeled: np.ndarray, clf: Any, rng: np.random.Generator) -> None:
        self.X = X
        self.y = y
        self.labeled = labeled
        self.unlabeled_indices = np.flatnonzero(~labeled)
        self.clf = clf
        self.rng = rng
        self._proba: np.ndarray | None = None
        self._proba_unlabeled: np.ndarray | None = None

    def call_classifier(self, method: str, X: np.ndarray) -> Any:
        """Call the classifier's ``method`` (``"predict_proba"``, ``"predict"``) on rows ``X``.

        The classifier is the user's: when it cannot predict rows of a valid pool (e.g. a
        decision tree casts to float32, where finite values past 3.4e38 become infinite), its
        exception becomes an :class:`InvalidInputError` that says so.
        """
        try:
            return getattr(self.clf, method)(X)
        except (InvalidInputError, InvalidTypeError):
            raise
        except (ValueError, TypeError, ArithmeticError) as exc:
            raise InvalidInputError(
                f"the classifier's {method} failed on the pool: {type(exc).__name__}: {exc}"
            ) from exc

    def predict_rows(self, method: str, rows: np.ndarray | None = None) -> Any:
        """The classifier's ``method`` on pool rows ``rows`` (default: all), as float64 rows.

        A float64 pool is predicted in one call, as the rows are; a float32 pool (kept so by
        validation) a block of rows at a time, each converted to float64, so the classifier
        sees the values it would see in a float64 copy of the pool and no such copy is made.
        """
        return map_row_blocks(lambda X: self.call_classifier(method, X), self.X, rows=rows)

    def _checked_proba(self, proba: Any, n_rows: int) -> np.ndarray:
        classes = self._declared_classes()
        return check_probabilities(proba, n_rows, None if classes is None else classes.size)

    def _declared_classes(self) -> np.ndarray | None:
        """The classifier's ``classes_`` as a 1-D array, None without it; refuses another shape."""
        classes = getattr(self.clf, "classes_", None)
        if classes is None:
            return None
        try:
            classes = np.asarray(classes)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"the classifier's classes_ is not an array of class labels ({exc})") from None
        if classes.ndim != 1 or classes.size == 0:
            raise InvalidInputError(
                f"the classifier's classes_ must be a non-empty 1-D array of class labels, got shape {classes.shape} "
                "(multi-output classifiers are not supported)"
            )
        return classes

    @property
    def proba(self) -> np.ndarray:
        """Class probabilities on the whole pool, shape (n_pool, n_classes)."""
        if self._proba is None:
            self._proba = self._checked_proba(self.predict_rows("predict_proba"), self.X.shape[0])
        return self._proba

    @property
    def proba_unlabeled(self) -> np.ndarray:
        """Class probabilities on the unlabeled rows only, shape (n_unlabeled, n_classes).

        Cheaper than :attr:`proba` when a strategy needs nothing else: margin sampling at
        its best predicts the unlabeled rows only.
        """
        if self._proba is not None:
            return self._proba[self.unlabeled_indices]
        if self._proba_unlabeled is None:
            rows = self.unlabeled_indices
            self._proba_unlabeled = self._checked_proba(self.predict_rows("predict_proba", rows), rows.size)
        return self._proba_unlabeled

    def proba_of_unlabeled(self, rows: np.ndarray) -> np.ndarray:
        """Class probabilities of the unlabeled pool rows ``rows`` (sorted), shape (len(rows), n_classes).

        From :attr:`proba` when it is already computed, else from :attr:`proba_unlabeled`, so
        the labeled rows are not predicted for this alone.
        """
        if self._proba is not None:
            return self._proba[rows]
        return self.proba_unlabeled[np.searchsorted(self.unlabeled_indices, rows)]

    @property
    def classes(self) -> np.ndarray:
        """The classifier's classes, in the column order of the probabilities."""
        classes = self._declared_classes()
        if classes is None:
            return np.arange(self.proba_unlabeled.shape[1])
        return classes

    def label_indices(self) -> np.ndarray:
        """Index into :attr:`classes` of each labeled row's label, -1 elsewhere; shape (n_pool,).

        Raises :class:`InvalidInputError` when a label is unknown to the classifier.
        """
        classes = self.classes
        out = np.full(self.X.shape[0], -1, dtype=np.int64)
        rows = np.flatnonzero(self.labeled)
        if rows.size == 0:
            return out
        values = self.y[rows]
        try:
            order = np.argsort(classes)
            pos = np.searchsorted(classes[order], values)
            pos = np.clip(pos, 0, classes.size - 1)
            found = np.asarray(classes[order][pos] == values, dtype=bool)
            if found.shape != values.shape:
                raise TypeError("labels and classes cannot be compared element by element")
        except TypeError:
            raise InvalidInputError(
                f"labels of type {type(values[0]).__name__} cannot be compared with the classifier's classes "
                f"{classes[:5].tolist()}; fit the classifier on the same labels"
            ) from None
        if not np.all(found):
            unknown = np.unique(values[~found])[:5].tolist()
            raise InvalidInputError(
                f"labeled rows carry class(es) {unknown} the classifier does not know (classes_={classes.tolist()[:10]}); "
                "refit the classifier on all labeled rows before querying"
            )
        out[rows] = order[pos]
        return out


class QueryStrategy(ParamsMixin, ABC):
    """Base class of all querying strategies.

    Parameters
    ----------
    missing_label : scalar, default=np.nan
        Marker of unlabeled entries in ``y``. NaN works for float labels; use e.g. ``None``
        or ``-1`` or ``""`` for other label types.
    random_state : int, numpy Generator or None
        Seed of every random choice (tie-breaking included). The same seed on the same
        inputs gives the same queries.

    Notes
    -----
    ``__init__`` only stores parameters. Fitted state carries a trailing underscore and is
    created at the first :meth:`query`; :meth:`reset` forgets it. If the pool changes size
    between calls, the state is reset with a :class:`~metalearn.exceptions.PoolChangedWarning`;
    if the number of features changes, :class:`~metalearn.exceptions.InvalidInputError` is raised
    (it means a different dataset, or a preprocessing mistake).
    """

    #: Name in the strategy registry.
    name: ClassVar[str] = ""
    #: Whether the strategy calls the classifier (random sampling does not).
    requires_classifier: ClassVar[bool] = True
    #: Classes the labeled records must cover before the strategy can query (query by committee
    #: fits copies of the classifier on them: 2); a stream scores with it only once they do.
    min_labeled_classes: ClassVar[int] = 0
    #: Constructor parameter that takes the run's label budget (ALBL's horizon), or None when
    #: the strategy does not depend on it; :func:`~metalearn.strategies.resolve.resolve_strategy`
    #: sets it.
    label_budget_parameter: ClassVar[str | None] = None
    #: Constructor parameter a name may set as ``NAME:VALUE`` (``typiclust_margin:20``), or None;
    #: see :func:`~metalearn.strategies.resolve.classic_strategy_spec`.
    shorthand_parameter: ClassVar[str | None] = None
    #: Whether a float32 pool reaches :meth:`_select` as it is (``ctx.X`` float32, its arithmetic
    #: converting a block of rows at a time: :mod:`metalearn.common.blocks`) instead of as a float64
    #: copy twice its size. Results are the same either way; only memory differs.
    keeps_float32: ClassVar[bool] = False

    def __init__(self, *, missing_label: Any = np.nan, random_state: int | np.random.Generator | None = None) -> None:
        self.missing_label = missing_label
        self.random_state = random_state

    # -- public API ----------------------------------------------------------------------
    def query(self, X: Any, y: Any, clf: Any = None, batch_size: int = 1) -> np.ndarray:
        """Choose the next records to label.

        Parameters
        ----------
        X : array-like of shape (n_pool, n_features)
            The whole pool, labeled and unlabeled rows.
        y : array-like of shape (n_pool,)
            Labels; unlabeled rows hold ``missing_label``.
        clf : classifier
            Fitted on the labeled rows, with ``predict_proba`` (the query model should be
            the task model).
        batch_size : int
            Number of records to return.

        Returns
        -------
        ndarray of int64, shape (batch_size,)
            Distinct indices of unlabeled rows, best first where the strategy ranks.
        """
        check_random_state(self.random_state)
        self._validate_params()
        X_arr = check_pool_features(X, keep_float32=self.keeps_float32)
        labeled, y_arr = check_labels(y, X_arr.shape[0], self.missing_label)
        batch_size = check_batch_size(batch_size, int((~labeled).sum()))
        if self.requires_classifier:
            check_classifier(clf, n_features=X_arr.shape[1])
        self._check_state(X_arr)
        ctx = QueryContext(X_arr, y_arr, labeled, clf, self.rng_)
        if self.requires_classifier and getattr(clf, "classes_", None) is not None:
            ctx.label_indices()  # every strategy refuses labels its classifier does not know
        picks = np.asarray(self._select(ctx, batch_size), dtype=np.int64)
        self.n_queries_ += 1
        self._check_picks(picks, labeled, batch_size)
        return picks

    def reset(self) -> "QueryStrategy":
        """Forget the state of earlier loops (history, bandit weights, generator)."""
        for attr in [a for a in vars(self) if a.endswith("_") and not a.startswith("__")]:
            delattr(self, attr)
        return self

    # -- for subclasses --------------------------------------------------------------------
    @abstractmethod
    def _select(self, ctx: QueryContext, batch_size: int) -> np.ndarray:
        """Return ``batch_size`` distinct indices into the pool, all unlabeled."""

    def _validate_params(self) -> None:
        """Hook: check the constructor parameters (called by every :meth:`query`, as scikit-learn
        validates at call time); raise :class:`InvalidInputError` / :class:`InvalidTypeError`."""

    def _on_new_pool(self, X: np.ndarray) -> None:
        """Hook: create per-pool state (called at the first query and after a pool change)."""

    # -- bookkeeping ---------------------------------------------------------------------
    def _check_state(self, X: np.ndarray) -> None:
        if not hasattr(self, "n_features_in_"):
            self.reset()
            self.rng_ = np.random.default_rng(self.random_state)
            self.n_features_in_ = X.shape[1]
            self.n_pool_ = X.shape[0]
            self.n_queries_ = 0
            self._on_new_pool(X)
            return
        if X.shape[1] != self.n_features_in_:
            raise InvalidInputError(
                f"the pool now has {X.shape[1]} features but had {self.n_features_in_} in earlier calls; "
                "a strategy follows one pool: call reset() (or use a new strategy) for a different dataset"
            )
        if X.shape[0] != self.n_pool_:
            warnings.warn(
                f"the pool changed size ({self.n_pool_} -> {X.shape[0]} records); starting a fresh metadata history",
                PoolChangedWarning,
                stacklevel=3,
            )
            rng = self.rng_
            n_queries = self.n_queries_
            self.reset()
            self.rng_, self.n_queries_ = rng, n_queries
            self.n_features_in_, self.n_pool_ = X.shape[1], X.shape[0]
            self._on_new_pool(X)

    def _check_picks(self, picks: np.ndarray, labeled: np.ndarray, batch_size: int) -> None:
        # A strategy bug must never hand a user a labeled or duplicate record.
        if picks.shape != (batch_size,) or np.unique(picks).size != batch_size or labeled[picks].any():
            raise RuntimeError(f"{type(self).__name__} returned invalid picks {picks[:10]}; this is a metalearn bug")
