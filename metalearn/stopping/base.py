"""The one interface every stopping rule implements: ``should_stop(X, y, clf)``.

Same conventions as a querying strategy's ``query`` (:mod:`metalearn.strategies.base`): the
whole pool ``X``, labels ``y`` with ``missing_label`` (NaN by default) for unlabeled rows, and
a classifier fitted on the labeled rows with ``predict_proba``. Call it once per loop, after
fitting and before querying; the rule keeps its own history across calls (the previous
predictions, its statistics, the learned rule's multi-loop metadata).

Subclasses implement :meth:`StoppingRule._decide`; validation, state bookkeeping, the
per-call log and state export for ``metalearn next-batch`` live here once.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from metalearn.common.params import ParamsMixin
from metalearn.common.validation import (
    check_classifier, check_labels, check_missing_label, check_pool_features, check_random_state,
)
from metalearn.exceptions import InvalidInputError, PoolChangedWarning
from metalearn.strategies.base import QueryContext

__all__ = ["StoppingRule", "cohen_kappa"]


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's kappa between two label vectors, 1.0 when they agree everywhere.

    Identical predictions make the chance agreement 1 when a single class is predicted
    (0/0 in the formula); like small-text's ``KappaAverage``, perfect agreement is 1.0.

    Parameters
    ----------
    a, b : ndarray of shape (n,)
        Labels (any comparable type), same length.

    Returns
    -------
    float
        In [-1, 1].
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise InvalidInputError(f"kappa needs two label vectors of the same length, got {a.shape} and {b.shape}")
    if a.size == 0 or np.array_equal(a, b):
        return 1.0
    classes, codes = np.unique(np.concatenate([a, b]), return_inverse=True)
    k = classes.size
    ca, cb = codes[: a.size], codes[a.size :]
    confusion = np.bincount(ca * k + cb, minlength=k * k).reshape(k, k).astype(np.float64)
    n = float(a.size)
    observed = np.trace(confusion) / n
    expected = float(confusion.sum(axis=1) @ confusion.sum(axis=0)) / (n * n)
    if expected >= 1.0:  # both constant but different: no agreement beyond chance is possible
        return 0.0
    return float((observed - expected) / (1.0 - expected))


class StoppingRule(ParamsMixin, ABC):
    """Base class of stopping rules.

    Parameters
    ----------
    missing_label : scalar, default=np.nan
        Marker of unlabeled entries in ``y`` (as for strategies).
    random_state : int, numpy Generator or None
        Seed of every random choice (the stop set of stabilizing predictions).

    Attributes
    ----------
    log_ : list of dict
        One entry per call: ``call``, ``n_labeled``, ``stop`` and the rule's statistic(s).
    n_calls_ : int

    Notes
    -----
    ``__init__`` only stores parameters; state is created at the first call and
    :meth:`reset` forgets it. A pool of another size starts a fresh history with a
    :class:`~metalearn.exceptions.PoolChangedWarning`; another number of features raises.
    """

    #: Name under which :func:`~metalearn.stopping.load_stopping_rule` finds the rule.
    name: ClassVar[str] = ""
    #: Whether a float32 pool reaches :meth:`_decide` as it is, as for querying strategies
    #: (:attr:`~metalearn.strategies.base.QueryStrategy.keeps_float32`).
    keeps_float32: ClassVar[bool] = False

    def __init__(self, *, missing_label: Any = np.nan, random_state: int | np.random.Generator | None = None) -> None:
        self.missing_label = missing_label
        self.random_state = random_state

    # -- public API ----------------------------------------------------------------------
    def should_stop(self, X: Any, y: Any, clf: Any) -> bool:
        """Whether to stop buying labels now.

        Parameters
        ----------
        X : array-like of shape (n_pool, n_features)
            The whole pool, labeled and unlabeled rows (the same ``X`` as ``query``).
        y : array-like of shape (n_pool,)
            Labels; unlabeled rows hold ``missing_label``.
        clf : classifier
            Fitted on the labeled rows, with ``predict_proba``.

        Returns
        -------
        bool
            True once the rule recommends stopping (in this loop); always True once every
            row of the pool is labeled (nothing is left to buy).
        """
        self.check_params()
        X_arr = check_pool_features(X, keep_float32=self.keeps_float32)
        labeled, y_arr = check_labels(y, X_arr.shape[0], self.missing_label)
        if not labeled.any():
            raise InvalidInputError("y has no labeled row: fit the classifier on some labels before asking whether to stop")
        check_classifier(clf, n_features=X_arr.shape[1])
        self._check_state(X_arr)
        if labeled.all():
            # Nothing is left to buy: every rule's answer is "stop" (a loop that labels the
            # whole pool and then asks is an ordinary loop, not an error).
            stop, values = True, self._on_pool_exhausted()
        else:
            ctx = QueryContext(X_arr, y_arr, labeled, clf, self.rng_)
            stop, values = self._decide(ctx)
        self.n_calls_ += 1
        self.log_.append({"call": self.n_calls_, "n_labeled": int(labeled.sum()), "stop": bool(stop), **values})
        return bool(stop)

    def reset(self) -> "StoppingRule":
        """Forget the state of earlier calls."""
        for attr in [a for a in vars(self) if a.endswith("_") and not a.startswith("__")]:
            delattr(self, attr)
        return self

    def _unknown_param_error(self, name: str, valid: list[str]) -> InvalidInputError:
        # The stopping rules' own wording, kept from before the parameters were shared.
        return InvalidInputError(f"{type(self).__name__} has no parameter {name!r}; parameters: {', '.join(valid)}")

    def describe(self) -> str:
        """One line: the rule and its setting."""
        shared = ("missing_label", "random_state")
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params(deep=False).items() if k not in shared)
        return f"{self.name} ({params})"

    # -- state export (metalearn next-batch keeps it between runs) -------------------------
    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        """The history as arrays and JSON-able metadata (None before the first call)."""
        if not hasattr(self, "n_features_in_"):
            return None
        arrays, meta = self._state()
        meta = {"rule": self.name, "n_features": self.n_features_in_, "n_pool": self.n_pool_,
                "n_calls": self.n_calls_, "log": list(self.log_), **meta}
        return arrays, meta

    def set_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> "StoppingRule":
        """Restore what :meth:`get_state` returned (same pool, same rows)."""
        if meta.get("rule") != self.name:
            raise InvalidInputError(f"the saved state is of stopping rule {meta.get('rule')!r}, not {self.name!r}")
        self.reset()
        self.rng_ = np.random.default_rng(self.random_state)
        self.n_features_in_ = int(meta["n_features"])
        self.n_pool_ = int(meta["n_pool"])
        self.n_calls_ = int(meta["n_calls"])
        self.log_ = list(meta.get("log", []))
        self._load_state(arrays, meta)
        return self

    # -- for subclasses --------------------------------------------------------------------
    @abstractmethod
    def _decide(self, ctx: QueryContext) -> tuple[bool, dict[str, Any]]:
        """Return the decision and the statistics behind it (JSON-able scalars)."""

    def check_params(self) -> None:
        """Check every constructor parameter, the shared ones and the rule's own (at load and
        at every call, scikit-learn style); raises metalearn's errors."""
        check_random_state(self.random_state)
        check_missing_label(self.missing_label)
        self._validate_params()

    def _validate_params(self) -> None:
        """Check the constructor parameters (called at every call, scikit-learn style)."""

    def _on_new_pool(self, X: np.ndarray) -> None:
        """Hook: create per-pool state."""

    def _on_pool_exhausted(self) -> dict[str, Any]:
        """Hook: the statistics logged at a call where every row is labeled (the answer is "stop";
        :meth:`_decide` is not called, there being no unlabeled row to compute them on)."""
        return {"pool_exhausted": True}

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return {}, {}

    def _load_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Restore the subclass's state."""

    # -- bookkeeping ---------------------------------------------------------------------
    def _fresh(self, X: np.ndarray) -> None:
        self.reset()
        self.rng_ = np.random.default_rng(self.random_state)
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
                "a stopping rule follows one pool: call reset() (or use a new rule) for a different dataset"
            )
        if X.shape[0] != self.n_pool_:
            warnings.warn(
                f"the pool changed size ({self.n_pool_} -> {X.shape[0]} records); the stopping rule starts a fresh history",
                PoolChangedWarning,
                stacklevel=3,
            )
            self._fresh(X)
