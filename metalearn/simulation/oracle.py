"""The greedy look-ahead oracle: the benchmark's upper reference and the imitation expert.

The oracle cheats on purpose: it knows the hidden pool labels (``task.y_pool``) and the test
split. For each candidate record it trains the task model on the labeled records plus that
candidate with its true label, scores the model on the test split, and reports the gain over
the model trained on the labeled records alone. The candidate with the largest gain is the
greedy look-ahead choice.

With ``horizon=h > 1`` the oracle looks further ahead: after the candidate, it labels h-1
more records picked by margin sampling under the successively retrained model (a cheap,
fixed continuation policy), and a candidate's gain is the mean test score of those h models
minus the base score (a truncated learning-curve area, the quantity AULC rewards). One-step
gains are nearly unpredictable from candidate features; the multi-step target was meant to
capture effects that only show after a few more labels, but measured on logistic-regression
synthetic tasks it is no more predictable (``scripts/oracle_horizon_signal.py``): its
within-state order stays close to the one-step order (Spearman 0.55 to 0.7 with h = 5 and 3).

- :class:`LookaheadOracle` computes candidate sets and gains (:class:`OracleGains`); the
  imitation-learning trainer calls it once per decision.
- :class:`OracleStrategy` wraps it behind the ordinary ``query(X, y, clf, batch_size)``
  interface, so :func:`~metalearn.simulation.loop.simulate` and the benchmark can run it like
  any strategy. It is not in the strategy registry: it needs the task (hidden labels), so
  :func:`~metalearn.strategies.registry.make_strategy` cannot build it.

Cost: one model fit and one prediction on the test split per candidate, plus one of each for
the base model (skipped when the caller hands over the current model). With ``horizon=h``:
K*h fits and test predictions per decision of K candidates, plus K*(h-1) predictions on the
unlabeled pool (the continuation's margins). With ``warm_start``,
logistic regression and MLP candidates start from the fitted base model's weights, which
makes lbfgs converge in a few iterations; random forests and the other models always train
from scratch.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn import config_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.ensemble import ExtraTreesClassifier, HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier

from metalearn.common.candidates import mixed_candidates
from metalearn.common.uncertainty import margins
from metalearn.common.validation import check_positive_int
from metalearn.common.threads import limited_threads
from metalearn.exceptions import InvalidInputError
from metalearn.simulation.metrics import score_predictions
from metalearn.strategies.base import QueryContext, QueryStrategy, select_top
from metalearn.tasks.models import PlattSVC
from metalearn.tasks.task import Task

__all__ = [
    "LookaheadOracle",
    "OracleGains",
    "OracleStrategy",
    "ORACLE_METRICS",
    "ORACLE_CANDIDATE_SELECTIONS",
    "TIE_BREAK_SCALE",
]

#: Scores the oracle can maximise (as in :func:`~metalearn.simulation.metrics.test_scores`).
ORACLE_METRICS: tuple[str, ...] = ("accuracy", "macro_f1")
#: How the candidate subsample is drawn (as in the PoolAL environment).
ORACLE_CANDIDATE_SELECTIONS: tuple[str, ...] = ("mixed", "random")
#: Weight of the log-loss tie-break in :meth:`OracleGains.ranking_score`.
TIE_BREAK_SCALE: float = 1e-6

# Models whose warm start means "start the optimiser from the previous weights". Random
# forests and histogram gradient boosting also have ``warm_start``, but it means "add more
# trees/iterations" (with the same n_estimators it would fit nothing new): never used.
_WARM_STARTABLE: tuple[type, ...] = (LogisticRegression, MLPClassifier)
# Models whose ``predict`` is exactly ``classes_[argmax(predict_proba)]``: one prediction call
# serves both the score and the log-loss. Others call ``predict`` as the simulator does.
_PREDICT_IS_ARGMAX_PROBA: tuple[type, ...] = (
    RandomForestClassifier,
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    PlattSVC,
)
# Probabilities are clipped here before the log, as scikit-learn's log_loss does; a class
# the model does not know gets this probability.
_PROBA_EPS = float(np.finfo(np.float64).eps)


@dataclass
class OracleGains:
    """Look-ahead gains of a set of candidates.

    Attributes
    ----------
    candidates : ndarray of int, shape (k,)
        Pool indices evaluated.
    gain : ndarray of float, shape (k,)
        Test score (the oracle's metric) of the model trained with each candidate minus
        ``base_score``; with ``horizon > 1``, the mean test score of the ``horizon`` models
        along the candidate's continuation (see :class:`LookaheadOracle`) minus ``base_score``.
    log_loss_gain : ndarray of float, shape (k,)
        Decrease of the test log-loss (base log-loss minus the candidate model's log-loss, or
        minus the mean log-loss along the continuation; positive is better). The secondary
        criterion that breaks the many ties of ``gain`` on small test sets.
    base_score : float
        Test score of the model trained on the labeled records alone.
    base_log_loss : float
        Test log-loss of that model.
    metric : str
        ``"accuracy"`` or ``"macro_f1"``.
    horizon : int
        Models averaged per candidate (1: the one-step gain).
    """

    candidates: np.ndarray
    gain: np.ndarray
    log_loss_gain: np.ndarray
    base_score: float
    base_log_loss: float = float("nan")
    metric: str = "accuracy"
    horizon: int = 1

    def ranking_score(self) -> np.ndarray:
        """One score per candidate, larger is better, ordering by ``gain`` then ``log_loss_gain``.

        ``gain + TIE_BREAK_SCALE * tanh(log_loss_gain)`` with ``TIE_BREAK_SCALE = 1e-6``: tanh
        bounds the tie-break in (-1e-6, 1e-6), so it only reorders candidates whose gains
        differ by less than 1e-6, i.e. equal gains. For accuracy the order is exactly
        lexicographic on test splits of fewer than a million records (gains are multiples of
        1/n_test); macro-F1 gains closer than 1e-6 are treated as ties. Equal gains with
        equal log-loss gains stay exact ties (break them at random).
        """
        return self.gain + TIE_BREAK_SCALE * np.tanh(self.log_loss_gain)

    def order(self) -> np.ndarray:
        """Positions into ``candidates``, best first: exactly lexicographic (gain, log-loss gain)."""
        return np.lexsort((-self.log_loss_gain, -self.gain)).astype(np.int64)

    @property
    def best(self) -> int:
        """Pool index of the best candidate (first in :meth:`order`)."""
        return int(self.candidates[self.order()[0]])

    def __len__(self) -> int:
        return int(self.candidates.shape[0])


class _ConstantClassifier:
    """What any model learns from a single class: that class, with certainty."""

    def __init__(self, label: int) -> None:
        self.classes_ = np.array([label])

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.full(X.shape[0], self.classes_[0])

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return np.ones((X.shape[0], 1))


class LookaheadOracle:
    """Greedy look-ahead with the true labels: which record helps the test score most?

    Parameters
    ----------
    task : Task
        The simulated task; the oracle reads its hidden ``y_pool`` and its test split.
    n_candidates : int, default=20
        Candidates evaluated per decision (one model fit each).
    metric : {"accuracy", "macro_f1"}, default="accuracy"
        Test score whose gain is maximised; macro-F1 is over all task classes.
    candidate_selection : {"mixed", "random"}, default="mixed"
        ``"mixed"``: ceil(k/2) unlabeled records with the smallest margin under the current
        model (ties at random) plus records drawn uniformly from the rest, as in the PoolAL
        environment; ``"random"``: k uniform records.
    warm_start : bool, default=True
        For logistic regression and MLP, start each candidate's fit from the fitted base
        model's weights (only when the candidate's label is a class the base model knows;
        otherwise the weight shapes change and the candidate is fitted from scratch). The
        gains are then close to, not identical with, those of fresh fits.
    random_state : int, numpy Generator or None
        Seed of the generator used when :meth:`candidates` or :meth:`gains` gets no ``rng``.
    horizon : int, default=1
        Look-ahead depth h. 1: a candidate's gain is the test score of the model trained with
        it minus the base score (the greedy one-step oracle). h > 1: after the candidate,
        h-1 further records are labeled by margin sampling (smallest margin under the model
        retrained at each step, ties broken by one random priority per pool record drawn
        from the generator once per :meth:`gains` call, so every candidate of a decision
        shares the tie-breaks); the gain is the mean test score of the h models (candidate
        alone, then with 1, ..., h-1 continuation records) minus the base score, and the
        log-loss gain is the base log-loss minus their mean log-loss. The baseline is the
        state's base score, as for h = 1: constant within a decision, so the order of the
        candidates (and the listwise trainer's standardised targets) do not depend on it; the
        gain's level includes the continuation's own progress, common to all candidates.
        The continuation ignores the label budget and stops early when the pool runs out
        (every candidate of a decision then averages the same number of models). Cost:
        K*h fits per decision of K candidates (warm-started from the previous step's model
        for logistic regression and MLP). Validated at call time.
    """

    def __init__(
        self,
        task: Task,
        n_candidates: int = 20,
        metric: str = "accuracy",
        candidate_selection: str = "mixed",
        warm_start: bool = True,
        random_state: int | np.random.Generator | None = None,
        horizon: int = 1,
    ) -> None:
        self.task = task
        self.n_candidates = n_candidates
        self.metric = metric
        self.candidate_selection = candidate_selection
        self.warm_start = warm_start
        self.random_state = random_state
        self.horizon = horizon

    def __repr__(self) -> str:
        return (
            f"LookaheadOracle(task={getattr(self.task, 'name', '?')!r}, n_candidates={self.n_candidates!r}, "
            f"metric={self.metric!r}, candidate_selection={self.candidate_selection!r}, "
            f"warm_start={self.warm_start!r}, random_state={self.random_state!r}, horizon={self.horizon!r})"
        )

    # -- public API ------------------------------------------------------------------------
    def candidates(
        self,
        labeled: Any,
        proba: np.ndarray | None = None,
        rng: np.random.Generator | None = None,
        *,
        n_candidates: int | None = None,
    ) -> np.ndarray:
        """Draw the candidate subsample of unlabeled pool indices the oracle evaluates.

        Parameters
        ----------
        labeled : ndarray of bool, shape (n_pool,), or ndarray of int
            Labeled mask or labeled pool indices.
        proba : ndarray of shape (n_pool, c) or (n_unlabeled, c), or None
            The current model's class probabilities on the whole pool or on the unlabeled
            rows (in pool order). Needed by ``"mixed"`` selection; when None, the base model
            is fitted on the labeled records to compute them.
        rng : numpy Generator or None
            Source of randomness; None uses the oracle's own generator (``random_state``).
        n_candidates : int or None
            Overrides the oracle's ``n_candidates`` for this call.

        Returns
        -------
        ndarray of int64, shape (min(k, n_unlabeled),)
            Distinct unlabeled indices: with ``"mixed"`` the smallest-margin ones first, then
            the uniform ones; all unlabeled indices (ascending) when there are at most k.
        """
        self._check_params()
        k = check_positive_int(self.n_candidates if n_candidates is None else n_candidates, "n_candidates")
        mask = self._labeled_mask(labeled)
        rng = self._rng() if rng is None else rng
        available = np.flatnonzero(~mask)
        if available.size <= k:
            return available.astype(np.int64)
        if self.candidate_selection == "random":
            return np.sort(rng.choice(available, size=k, replace=False)).astype(np.int64)
        if proba is None:
            with _small_fits():
                proba = self._base_model(mask)[0].predict_proba(self.task.X_pool[available])
        proba = np.asarray(proba, dtype=float)
        if proba.ndim != 2 or proba.shape[0] not in (self.task.n_pool, available.size):
            raise InvalidInputError(
                f"proba has shape {proba.shape}; expected ({self.task.n_pool}, n_classes) for the whole pool "
                f"or ({available.size}, n_classes) for the unlabeled rows"
            )
        if proba.shape[0] == self.task.n_pool and proba.shape[0] != available.size:
            proba = proba[available]
        return mixed_candidates(available, margins(proba), k, rng)

    def gains(
        self,
        labeled: Any,
        candidates: Any,
        current_model: Any = None,
        *,
        rng: np.random.Generator | None = None,
    ) -> OracleGains:
        """Test-score gain of labeling each candidate, with its true label.

        Parameters
        ----------
        labeled : ndarray of bool, shape (n_pool,), or ndarray of int
            Labeled mask or labeled pool indices (at least one).
        candidates : array-like of int, shape (k,)
            Unlabeled pool indices to evaluate.
        current_model : classifier or None
            The task model already fitted on exactly the labeled records (what the simulator
            holds). Reused for the base score and as the warm start; it is ignored (and the
            base model refitted) unless it is of the task model's type with the same
            hyper-parameters. Passing a model fitted on other records gives wrong gains.
        rng : numpy Generator or None
            Breaks the margin ties of the continuation (``horizon > 1`` only; one draw of
            ``n_pool`` priorities per call); None uses the oracle's own generator
            (``random_state``). Unused when ``horizon == 1``.

        Returns
        -------
        OracleGains
        """
        self._check_params()
        mask = self._labeled_mask(labeled)
        cand = np.asarray(candidates)
        if cand.ndim != 1 or (cand.size and cand.dtype.kind not in "iu"):
            raise InvalidInputError(f"candidates must be a 1-D array of pool indices, got shape {cand.shape}")
        cand = cand.astype(np.int64)
        if cand.size and (cand.min() < 0 or cand.max() >= self.task.n_pool):
            raise InvalidInputError(f"candidates must be pool indices in [0, {self.task.n_pool})")
        if mask[cand].any():
            raise InvalidInputError(f"candidates {cand[mask[cand]].tolist()[:5]} are already labeled")

        horizon = int(self.horizon)
        priority = None
        if horizon > 1:
            priority = (self._rng() if rng is None else rng).random(self.task.n_pool)
        with _small_fits():
            return self._gains(mask, cand, current_model, horizon, priority)

    def _gains(
        self, mask: np.ndarray, cand: np.ndarray, current_model: Any, horizon: int = 1, priority: np.ndarray | None = None
    ) -> OracleGains:
        task = self.task
        base, base_reusable = self._base_model(mask, current_model)
        base_score, base_loss = self._score(base)
        rows = np.flatnonzero(mask)
        X_lab, y_lab = task.X_pool[rows], task.y_pool[rows]
        known = set(np.asarray(getattr(base, "classes_", []), dtype=np.int64).tolist())
        warm = bool(self.warm_start) and base_reusable and isinstance(base, _WARM_STARTABLE)

        gain = np.empty(cand.size)
        loss_gain = np.empty(cand.size)
        X_plus = np.empty((rows.size + 1, task.n_features))
        X_plus[:-1] = X_lab
        y_plus = np.empty(rows.size + 1, dtype=task.y_pool.dtype)
        y_plus[:-1] = y_lab
        with warnings.catch_warnings():
            # Few labels: lbfgs/adam often stop at max_iter; the simulator tolerates it too.
            warnings.simplefilter("ignore", ConvergenceWarning)
            for j, idx in enumerate(cand):
                X_plus[-1] = task.X_pool[idx]
                y_plus[-1] = task.y_pool[idx]
                if warm and int(task.y_pool[idx]) in known:
                    model = _warm_copy(base)
                else:
                    model = task.model()
                model.fit(X_plus, y_plus)
                score, loss = self._score(model)
                if horizon > 1:
                    assert priority is not None
                    score, loss = self._continuation(mask, int(idx), model, score, loss, horizon, priority)
                gain[j] = score - base_score
                loss_gain[j] = base_loss - loss
        return OracleGains(
            candidates=cand,
            gain=gain,
            log_loss_gain=loss_gain,
            base_score=float(base_score),
            base_log_loss=float(base_loss),
            metric=self.metric,
            horizon=horizon,
        )

    def _continuation(
        self,
        mask: np.ndarray,
        first: int,
        model: Any,
        score: float,
        loss: float,
        horizon: int,
        priority: np.ndarray,
    ) -> tuple[float, float]:
        """Mean (score, log-loss) of the ``horizon`` models along margin sampling after ``first``.

        ``model`` is the task model fitted on the labeled records plus ``first`` and
        ``score``/``loss`` its test figures (the first of the h models). Each further step
        labels the unlabeled record with the smallest margin under the latest model (ties: the
        smallest ``priority``), refits (warm from the latest model when possible) and scores.
        Called inside :func:`_small_fits` with convergence warnings silenced.
        """
        task = self.task
        labeled = mask.copy()
        labeled[first] = True
        scores, losses = [score], [loss]
        for _ in range(horizon - 1):
            available = np.flatnonzero(~labeled)
            if available.size == 0:
                break
            m = margins(np.asarray(model.predict_proba(task.X_pool[available]), dtype=float))
            ties = available[m == m.min()]
            pick = int(ties[np.argmin(priority[ties])]) if ties.size > 1 else int(ties[0])
            labeled[pick] = True
            rows = np.flatnonzero(labeled)
            y_rows = task.y_pool[rows]
            if np.unique(y_rows).size < 2:
                model = _ConstantClassifier(int(y_rows[0]))
            else:
                known = np.asarray(getattr(model, "classes_", []), dtype=np.int64)
                if self.warm_start and isinstance(model, _WARM_STARTABLE) and int(task.y_pool[pick]) in set(known.tolist()):
                    model = _warm_copy(model)
                else:
                    model = task.model()
                model.fit(task.X_pool[rows], y_rows)
            s, l = self._score(model)
            scores.append(s)
            losses.append(l)
        return float(np.mean(scores)), float(np.mean(losses))

    def evaluate(
        self,
        labeled: Any,
        current_model: Any = None,
        rng: np.random.Generator | None = None,
        *,
        n_candidates: int | None = None,
    ) -> OracleGains:
        """One decision: draw candidates and compute their gains.

        Margins for ``"mixed"`` selection come from ``current_model`` when it is the task
        model (see :meth:`gains`), else from a base model fitted on the labeled records.
        """
        mask = self._labeled_mask(labeled)
        # The base fit is as small as the candidates' fits: without the thread limit it took
        # 110 ms instead of 4 ms (logistic regression, 20 labels, busy 2-core machine).
        with _small_fits():
            model, reusable = self._base_model(mask, current_model)
            proba = None
            if self.candidate_selection == "mixed":
                proba = model.predict_proba(self.task.X_pool[~mask])
        cand = self.candidates(mask, proba, rng, n_candidates=n_candidates)
        return self.gains(mask, cand, model if reusable else None, rng=rng)

    # -- internals -------------------------------------------------------------------------
    def _check_params(self) -> None:
        if self.metric not in ORACLE_METRICS:
            raise InvalidInputError(f"unknown metric {self.metric!r}; valid metrics: {', '.join(ORACLE_METRICS)}")
        if self.candidate_selection not in ORACLE_CANDIDATE_SELECTIONS:
            raise InvalidInputError(
                f"unknown candidate_selection {self.candidate_selection!r}; "
                f"valid values: {', '.join(ORACLE_CANDIDATE_SELECTIONS)}"
            )
        check_positive_int(self.n_candidates, "n_candidates")
        check_positive_int(self.horizon, "horizon")

    def _rng(self) -> np.random.Generator:
        if not hasattr(self, "rng_"):
            self.rng_ = np.random.default_rng(self.random_state)
        return self.rng_

    def _labeled_mask(self, labeled: Any) -> np.ndarray:
        n = self.task.n_pool
        arr = np.asarray(labeled)
        if arr.dtype == bool:
            if arr.shape != (n,):
                raise InvalidInputError(f"a labeled mask must have shape ({n},), got {arr.shape}")
            return arr
        if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
            raise InvalidInputError("labeled must be a boolean mask over the pool or an array of pool indices")
        if arr.size and (arr.min() < 0 or arr.max() >= n):
            raise InvalidInputError(f"labeled indices must lie in [0, {n})")
        mask = np.zeros(n, dtype=bool)
        mask[arr.astype(np.int64)] = True
        return mask

    def _base_model(self, mask: np.ndarray, current_model: Any = None) -> tuple[Any, bool]:
        """The model trained on the labeled records alone, and whether it is the task model."""
        if not mask.any():
            raise InvalidInputError("the oracle needs at least one labeled record")
        if current_model is not None and self._is_task_model(current_model):
            return current_model, True
        y_lab = self.task.y_pool[mask]
        if np.unique(y_lab).size < 2:
            # Some models (logistic regression) refuse one class; every model would
            # predict it anyway. Never warm-started from: the coef shape is not the task's.
            return _ConstantClassifier(int(y_lab[0])), False
        model = self.task.model()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(self.task.X_pool[mask], y_lab)
        return model, True

    def _is_task_model(self, model: Any) -> bool:
        reference = self.task.model()
        if type(model) is not type(reference) or not hasattr(model, "classes_"):
            return False
        try:
            return bool(model.get_params(deep=False) == reference.get_params(deep=False))
        except Exception:  # exotic parameter types that cannot be compared
            return False

    def _score(self, model: Any) -> tuple[float, float]:
        """(metric score, log-loss) of a fitted model on the task's test split."""
        task = self.task
        proba = np.asarray(model.predict_proba(task.X_test), dtype=float)
        classes = np.asarray(model.classes_, dtype=np.int64)
        if isinstance(model, _PREDICT_IS_ARGMAX_PROBA):
            y_pred = classes[np.argmax(proba, axis=1)]
        else:
            y_pred = model.predict(task.X_test)
        score = score_predictions(task.y_test, np.asarray(y_pred, dtype=np.int64), task.n_classes, self.metric)
        # Map the model's columns into all task classes: a class it never saw has p = 0.
        lookup = np.full(task.n_classes, -1, dtype=np.int64)
        lookup[classes] = np.arange(classes.size)
        col = lookup[task.y_test]
        p_true = np.where(col >= 0, proba[np.arange(task.y_test.size), np.maximum(col, 0)], 0.0)
        loss = float(-np.mean(np.log(np.clip(p_true, _PROBA_EPS, 1.0))))
        return score, loss


@contextlib.contextmanager
def _small_fits() -> Iterator[None]:
    """One BLAS/OpenMP thread and no scikit-learn input checks around the oracle's fits.

    Models on a few hundred labels are far too small to gain from multi-threaded BLAS, and
    its threads spin against each other (and against the trainer's worker processes): one
    thread makes a logistic-regression fit up to 40x faster on a busy 2-core machine.
    Inputs come from the task (finite, validated), so scikit-learn's per-call checks are
    skipped as well. Results are identical.
    """
    with limited_threads(), config_context(assume_finite=True, skip_parameter_validation=True):
        yield


def _warm_copy(base: Any) -> Any:
    """An unfitted-in-spirit copy of a fitted model that continues from its weights on the next fit."""
    model = copy.deepcopy(base)
    model.set_params(warm_start=True)
    if isinstance(model, MLPClassifier):
        # The base fit stopped because the loss had not improved for n_iter_no_change epochs;
        # carried over, that counter would stop the new fit after one epoch and the new
        # record would barely count. Start the stopping rule afresh.
        model._no_improvement_count = 0
        model.best_loss_ = np.inf
    return model


class OracleStrategy(QueryStrategy):
    """The look-ahead oracle as a querying strategy (upper reference of the benchmark).

    It reads the labeled mask from ``y`` (unlabeled = ``missing_label``), draws ``"mixed"``
    candidates with its generator (margins from ``clf.predict_proba``), computes each
    candidate's look-ahead gain with the task's hidden labels, and returns the
    ``batch_size`` best by :meth:`OracleGains.ranking_score` (exact ties at random).

    Batches (``batch_mode``): ``"sequential"`` (default) builds a batch greedily, adding the
    best record with its true label and re-evaluating the remaining candidates given it, so
    the batch is not redundant; a loop costs about ``batch_size * n_candidates`` fits, and a
    whole run about as many as a run with batches of one. ``"top_k"`` takes the top-k of
    single-record gains (one evaluation per loop, but the picks may be redundant). If
    ``batch_size`` exceeds ``n_candidates``, ``batch_size`` candidates are evaluated.

    Parameters
    ----------
    task : Task
        The task whose pool is queried; ``X`` passed to :meth:`query` must be ``task.X_pool``.
    n_candidates : int, default=20
    metric : {"accuracy", "macro_f1"}, default="accuracy"
    random_state : int, numpy Generator or None
    warm_start : bool, default=True
        See :class:`LookaheadOracle`.
    candidate_selection : {"mixed", "random"}, default="mixed"
    batch_mode : {"sequential", "top_k"}, default="sequential"
        How a batch of more than one record is built (see above).
    missing_label : scalar, default=np.nan

    Notes
    -----
    Not registered in the strategy registry: it needs the hidden labels, so
    :func:`~metalearn.strategies.registry.make_strategy` cannot build it. Build it with the
    task and pass it to :func:`~metalearn.simulation.loop.simulate`.
    """

    name = "oracle"

    def __init__(
        self,
        task: Task,
        n_candidates: int = 20,
        metric: str = "accuracy",
        random_state: int | np.random.Generator | None = None,
        *,
        warm_start: bool = True,
        candidate_selection: str = "mixed",
        batch_mode: str = "sequential",
        missing_label: Any = np.nan,
    ) -> None:
        super().__init__(missing_label=missing_label, random_state=random_state)
        self.task = task
        self.n_candidates = n_candidates
        self.metric = metric
        self.warm_start = warm_start
        self.candidate_selection = candidate_selection
        self.batch_mode = batch_mode

    def __repr__(self) -> str:
        params = {k: v for k, v in self.get_params(deep=False).items() if k != "task"}
        inner = ", ".join(f"{k}={v!r}" for k, v in params.items())
        return f"OracleStrategy(task={getattr(self.task, 'name', '?')!r}, {inner})"

    def query(self, X: Any, y: Any, clf: Any = None, batch_size: int = 1) -> np.ndarray:
        shape = getattr(X, "shape", None)
        expected = self.task.X_pool.shape
        if shape is None or tuple(shape) != expected:
            raise InvalidInputError(
                f"OracleStrategy queries its task's pool of shape {expected}; X has shape {shape}"
            )
        # Cheap identity check on a few rows: the oracle's labels are those of task.X_pool.
        rows = np.unique(np.linspace(0, expected[0] - 1, num=min(50, expected[0])).astype(np.int64))
        try:
            sample = X.iloc[rows] if hasattr(X, "iloc") else X[rows]
            sample = np.asarray(sample.toarray() if hasattr(sample, "toarray") else sample, dtype=float)
        except (TypeError, ValueError, IndexError):
            sample = None  # left to the base class's validation, which names the problem
        if sample is not None and not np.allclose(sample, self.task.X_pool[rows], rtol=1e-5, atol=1e-6, equal_nan=True):
            raise InvalidInputError("X is not the task's pool (its rows differ from task.X_pool)")
        return super().query(X, y, clf, batch_size)

    def _on_new_pool(self, X: np.ndarray) -> None:
        self.oracle_ = LookaheadOracle(
            self.task,
            n_candidates=self.n_candidates,
            metric=self.metric,
            candidate_selection=self.candidate_selection,
            warm_start=self.warm_start,
        )
        self.last_gains_: OracleGains | None = None

    def _select(self, ctx: QueryContext, batch_size: int) -> np.ndarray:
        oracle: LookaheadOracle = self.oracle_
        k = max(check_positive_int(self.n_candidates, "n_candidates"), batch_size)
        proba = ctx.proba_unlabeled if self.candidate_selection == "mixed" else None
        cand = oracle.candidates(ctx.labeled, proba, ctx.rng, n_candidates=k)
        result = oracle.gains(ctx.labeled, cand, current_model=ctx.clf)
        self.last_gains_ = result
        if self.batch_mode == "top_k" or batch_size == 1:
            return cand[select_top(result.ranking_score(), batch_size, ctx.rng)]
        if self.batch_mode != "sequential":
            raise InvalidInputError(f"batch_mode must be 'sequential' or 'top_k', got {self.batch_mode!r}")
        labeled = ctx.labeled.copy()
        remaining = cand
        picks: list[int] = []
        while True:
            best = int(remaining[select_top(result.ranking_score(), 1, ctx.rng)[0]])
            picks.append(best)
            if len(picks) == batch_size:
                return np.asarray(picks, dtype=np.int64)
            labeled[best] = True  # the oracle knows its label: evaluate the rest given it
            remaining = remaining[remaining != best]
            result = oracle.gains(labeled, remaining)
