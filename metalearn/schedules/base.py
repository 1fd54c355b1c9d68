"""The one interface every batch schedule implements: ``next_batch_size(X, y, clf, budget_left=...)``.

Same conventions as a querying strategy's ``query`` (:mod:`metalearn.strategies.base`): the
whole pool ``X``, labels ``y`` with ``missing_label`` (NaN by default) for unlabeled rows, and
a classifier fitted on the labeled rows. Call it once per loop, after fitting and before
querying; it answers how many records to buy before the next retrain, between 1 and
``budget_left`` (and never more than the unlabeled records left). The schedule keeps its own
history across calls (the loop count, the learned schedule's multi-loop metadata).

Subclasses implement :meth:`BatchSchedule._choose`; validation, state bookkeeping, the per-call
log and the state export for ``metalearn next-batch`` live here once.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from metalearn.common.params import ParamsMixin
from metalearn.common.validation import (
    check_classifier, check_labels, check_missing_label, check_pool_features, check_positive_int,
)
from metalearn.exceptions import InvalidInputError, PoolChangedWarning
from metalearn.strategies.base import QueryContext

__all__ = ["BatchSchedule", "MAX_BATCH_SIZE"]

#: Largest batch a schedule proposes or a rule is set to (far above any useful value; a file or
#: a spec asking for more is refused instead of overflowing).
MAX_BATCH_SIZE = 10_000_000


class BatchSchedule(ParamsMixin, ABC):
    """Base class of batch schedules.

    Parameters
    ----------
    missing_label : scalar, default=np.nan
        Marker of unlabeled entries in ``y`` (as for strategies).

    Attributes
    ----------
    log_ : list of dict
        One entry per call: ``call``, ``n_labeled``, ``budget_left`` and ``batch_size`` (the answer).
    n_calls_ : int
        Calls since the first one (or :meth:`reset`): the loop number of the next answer is
        ``n_calls_ + 1``.

    Notes
    -----
    ``__init__`` only stores parameters, checked at every call (scikit-learn style); state is
    created at the first call and :meth:`reset` forgets it. A pool of another size keeps the
    loop count (records may arrive between loops) but starts a fresh metadata history, with a
    :class:`~metalearn.exceptions.PoolChangedWarning` when the schedule keeps one; another
    number of features raises.
    """

    #: Rule name: the first part of a spec (``fixed`` in ``fixed:10``).
    name: ClassVar[str] = ""
    #: Whether the schedule calls the classifier (the fixed and geometric rules do not).
    requires_classifier: ClassVar[bool] = False
    #: Whether the schedule keeps a per-pool metadata history (a pool change then warns).
    keeps_pool_history: ClassVar[bool] = False

    def __init__(self, *, missing_label: Any = np.nan) -> None:
        self.missing_label = missing_label

    # -- public API ----------------------------------------------------------------------
    def next_batch_size(self, X: Any, y: Any, clf: Any = None, *, budget_left: int) -> int:
        """How many records to buy before the next retrain.

        Parameters
        ----------
        X : array-like of shape (n_pool, n_features)
            The whole pool, labeled and unlabeled rows (the same ``X`` as ``query``).
        y : array-like of shape (n_pool,)
            Labels; unlabeled rows hold ``missing_label``.
        clf : classifier or None
            Fitted on the labeled rows, with ``predict_proba``; needed by schedules that look at
            the model (the learned one), checked when given.
        budget_left : int
            Labels the run may still buy (>= 1).

        Returns
        -------
        int
            Between 1 and ``min(budget_left, unlabeled records)``.
        """
        self.check_params()
        X_arr = check_pool_features(X, keep_float32=True)
        labeled, y_arr = check_labels(y, X_arr.shape[0], self.missing_label)
        budget = check_positive_int(budget_left, "budget_left")
        n_unlabeled = int((~labeled).sum())
        if n_unlabeled == 0:
            raise InvalidInputError("every row of the pool is labeled: there is nothing left to buy")
        if self.requires_classifier or clf is not None:
            check_classifier(clf, n_features=X_arr.shape[1])
        self._check_state(X_arr)
        cap = min(budget, n_unlabeled)
        ctx = QueryContext(X_arr, y_arr, labeled, clf, np.random.default_rng(0))
        size, values = self._choose(ctx, cap)
        size = int(size)
        if not 1 <= size <= cap:
            raise RuntimeError(f"{type(self).__name__} proposed {size} records outside [1, {cap}]; this is a metalearn bug")
        self.n_calls_ += 1
        self.log_.append({"call": self.n_calls_, "n_labeled": int(labeled.sum()), "budget_left": budget,
                          "batch_size": size, **values})
        return size

    def reset(self) -> "BatchSchedule":
        """Forget the state of earlier calls."""
        for attr in [a for a in vars(self) if a.endswith("_") and not a.startswith("__")]:
            delattr(self, attr)
        return self

    def check_params(self) -> None:
        """Check every constructor parameter (at load and at every call); raises metalearn's errors."""
        check_missing_label(self.missing_label)
        self._validate_params()

    @abstractmethod
    def describe(self) -> str:
        """The schedule as a user names it (``fixed:10``, ``geometric:2:2``, ``learned (NAME)``)."""

    def explain(self, size: int) -> str:
        """One line: the last answer and why (``metalearn next-batch --schedule`` prints it)."""
        loop = getattr(self, "n_calls_", 0)
        return f"schedule {self.describe()}: buy {size} record(s) before the next retrain (loop {loop})"

    # -- state export (metalearn next-batch keeps it between runs) -------------------------
    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        """The history as arrays and JSON-able metadata (None before the first call)."""
        if not hasattr(self, "n_features_in_"):
            return None
        arrays, meta = self._state()
        meta = {"schedule": self.describe(), "n_features": self.n_features_in_, "n_pool": self.n_pool_,
                "n_calls": self.n_calls_, "log": list(self.log_), **meta}
        return arrays, meta

    def load_history(self, X: np.ndarray, arrays: dict[str, np.ndarray], meta: dict[str, Any],
                     old_positions: np.ndarray | None = None) -> "BatchSchedule":
        """Restore what :meth:`get_state` returned, on pool ``X`` (validated, as the next call's).

        Parameters
        ----------
        X : ndarray of shape (n_pool, n_features)
        arrays, meta
            From :meth:`get_state` (read back from a state file).
        old_positions : ndarray of int, shape (n_pool,), optional
            For each row of ``X``, its row in the saved state, or -1 for a new record (for a
            schedule with a metadata history).

        Raises
        ------
        InvalidInputError
            A state of another schedule or with malformed entries.
        """
        if meta.get("schedule") != self.describe():
            raise InvalidInputError(
                f"the saved state is of schedule {str(meta.get('schedule'))[:100]!r}, not {self.describe()!r}"
            )
        n_calls, log = meta.get("n_calls"), meta.get("log")
        if isinstance(n_calls, bool) or not isinstance(n_calls, int) or n_calls < 0 or not isinstance(log, list):
            raise InvalidInputError("the saved schedule state has a malformed call count or log")
        self._fresh(X)
        self.n_calls_ = n_calls
        self.log_: list[dict[str, Any]] = [dict(entry) for entry in log if isinstance(entry, dict)]
        self._load_state(arrays, meta, old_positions)
        return self

    # -- for subclasses --------------------------------------------------------------------
    @abstractmethod
    def _choose(self, ctx: QueryContext, cap: int) -> tuple[int, dict[str, Any]]:
        """Return the batch size in [1, ``cap``] and the JSON-able values behind it (logged)."""

    def _validate_params(self) -> None:
        """Check the schedule's own constructor parameters."""

    def _on_new_pool(self, X: np.ndarray) -> None:
        """Hook: create per-pool state."""

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return {}, {}

    def _load_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any], old_positions: np.ndarray | None) -> None:
        """Restore the subclass's state."""

    # -- bookkeeping ---------------------------------------------------------------------
    def _fresh(self, X: np.ndarray) -> None:
        self.reset()
        self.n_features_in_ = X.shape[1]
        self.n_pool_ = X.shape[0]
        self.n_calls_ = 0
        self.log_ = []
        self._on_new_pool(X)

    def _check_state(self, X: np.ndarray) -> None:
        if not hasattr(self, "n_features_in_"):
            self._fresh(X)
            return
        if X.shape[1] != self.n_features_in_:
            raise InvalidInputError(
                f"the pool now has {X.shape[1]} features but had {self.n_features_in_} in earlier calls; "
                "a schedule follows one pool: call reset() (or use a new schedule) for a different dataset"
            )
        if X.shape[0] != self.n_pool_:
            if self.keeps_pool_history:
                warnings.warn(
                    f"the pool changed size ({self.n_pool_} -> {X.shape[0]} records); the schedule starts a fresh "
                    "metadata history (its loop count goes on)",
                    PoolChangedWarning,
                    stacklevel=3,
                )
            self.n_pool_ = X.shape[0]
            self._on_new_pool(X)
