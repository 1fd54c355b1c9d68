"""Stream-based active learning with a pool strategy and a paced, adaptive threshold.

:class:`StreamingPolicy` decides record by record whether to buy a label. The arriving
record is scored by a pool strategy (a learned policy file or a classic one such as margin)
together with the last ``window`` arrivals, rescored with the current classifier; its
*quantile* among them says how it compares with what the stream brings. It is kept when the
quantile clears a threshold set by the label budget:

- **pacing**: the target keep rate is ``labels left / records left`` of the expected stream
  (the arriving one included), re-planned at every record, so spending that ran ahead or
  behind is spread over the rest of the stream; the quantile threshold is ``1 - rate``;
- **adaptation**: the arriving record is not exchangeable with the window in general (the
  model drifts, a learned policy sees a fresh record differently), so an offset on the
  threshold tracks the realised keep rate, as the variable-uncertainty strategy of Žliobaitė
  et al. (2014) adapts its uncertainty threshold: it rises by ``adaptation * (1 - rate)``
  after a keep and falls by ``adaptation * rate`` after a skip;
- **never over budget**: once ``label_budget`` labels are spent, every record is skipped.
  Past ``expected_length`` the stream is assumed to last as long again as it has so far, so
  what is left of the budget is spent at a decreasing rate, never all at once.

Example
-------
>>> import numpy as np
>>> from sklearn.base import clone
>>> from sklearn.datasets import make_classification
>>> from sklearn.linear_model import LogisticRegression
>>> from metalearn.streaming import StreamingPolicy
>>> X, y = make_classification(n_samples=520, n_features=5, random_state=0)
>>> X_lab, y_lab = list(X[:20]), list(y[:20])         # a few labeled records to start from
>>> model = LogisticRegression().fit(X_lab, y_lab)
>>> stream = StreamingPolicy("margin", label_budget=50, expected_length=500, random_state=0)
>>> for record, label in zip(X[20:], y[20:]):         # records arrive one at a time
...     if stream.decide(record, model):              # buy this label?
...         X_lab.append(record); y_lab.append(label) # ask the oracle
...         model = clone(model).fit(X_lab, y_lab)    # refit when a label arrives
>>> stream.n_spent_ <= 50
True

A learned policy is used the same way: ``StreamingPolicy("path/to/policy.safetensors", ...)``
(or a released policy's name).
"""

from __future__ import annotations

import os
from collections import deque
from typing import Any

import numpy as np
import scipy.sparse as sp

from metalearn.common.validation import check_classifier, check_positive_int, check_random_state
from metalearn.exceptions import InvalidInputError, InvalidTypeError
from metalearn.policies.file import PolicyFile
from metalearn.strategies.base import QueryContext, QueryStrategy
from metalearn.streaming.scorers import MiniPool, PolicyScorer, RankingScorer, UncertaintyScorer, make_scorer

__all__ = ["StreamingPolicy", "check_record", "randomized_quantile", "MAX_WINDOW", "MAX_MEMORY", "MAX_STREAM_LENGTH"]

#: Largest reference window (each decision rescores the whole window with the classifier).
MAX_WINDOW = 100_000
#: Most kept records remembered as the mini-pool's labeled part.
MAX_MEMORY = 100_000
#: Largest label budget and expected stream length (counts stay exact in float arithmetic).
MAX_STREAM_LENGTH = 2**53


def check_record(record: Any, *, name: str = "record") -> np.ndarray:
    """Return one record as a finite 1-D float array of shape (n_features,).

    Accepts a 1-D array-like, a 2-D array-like or sparse matrix with one row, a pandas
    Series (a row) or a one-row DataFrame (numeric columns). Raises
    :class:`~metalearn.exceptions.InvalidInputError` otherwise.
    """
    if sp.issparse(record):
        record = record.toarray()
    elif hasattr(record, "to_numpy"):  # pandas Series / DataFrame
        from pandas.api.types import is_bool_dtype, is_numeric_dtype

        dtypes = record.dtypes.tolist() if hasattr(record.dtypes, "tolist") else [record.dtypes]
        if hasattr(record, "columns"):
            bad = [str(c) for c, t in record.dtypes.items() if not (is_numeric_dtype(t) or is_bool_dtype(t))]
        else:
            bad = [] if all(is_numeric_dtype(t) or is_bool_dtype(t) for t in dtypes) else [str(record.name)]
        if bad:
            raise InvalidInputError(f"{name} has non-numeric values ({bad[:5]}); encode them as the pool's features were")
        try:
            record = record.to_numpy(dtype=float)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"{name} must be numeric; could not convert it: {exc}") from None
    try:
        arr = np.asarray(record, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"{name} must be numeric, one row of features (n_features,); could not convert it: {exc}"
        ) from None
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 1:
        raise InvalidInputError(
            f"{name} must be one row of features, shape (n_features,) or (1, n_features), got shape {arr.shape}; "
            "call decide() once per record"
        )
    if arr.shape[0] == 0:
        raise InvalidInputError(f"{name} has no features")
    if not np.all(np.isfinite(arr)):
        bad_cols = np.flatnonzero(~np.isfinite(arr))
        raise InvalidInputError(
            f"{name} contains NaN or infinite values in feature(s) {bad_cols[:5].tolist()}; impute them first "
            "(metalearn.tasks.preprocessing.TabularPreprocessor imputes), as for the records the model was fitted on"
        )
    return arr


def randomized_quantile(score: float, reference: np.ndarray, u: float) -> float:
    """Quantile of ``score`` among ``reference`` scores, ties placed at random; in [0, 1).

    ``(below + u * (ties + 1)) / (n + 1)`` with ``below`` the reference scores strictly lower,
    ``ties`` those equal and ``u`` uniform in [0, 1): if the score and the ``n`` reference
    scores are exchangeable, the result is exactly uniform on [0, 1), so "quantile above
    ``1 - rate``" keeps a fraction ``rate`` of the records. NaN scores count as lowest.

    Parameters
    ----------
    score : float
    reference : ndarray of shape (n,)
    u : float
        A uniform draw in [0, 1).
    """
    ref = np.where(np.isnan(reference), -np.inf, reference)
    s = -np.inf if np.isnan(score) else score
    below = int(np.count_nonzero(ref < s))
    ties = int(np.count_nonzero(ref == s))
    return float((below + u * (ties + 1)) / (ref.shape[0] + 1))


class StreamingPolicy:
    """Decide record by record whether to label it, under a label budget paced over the stream.

    Parameters
    ----------
    policy : str, path-like, PolicyFile, PolicyStrategy or QueryStrategy, default="default"
        What scores records: a registered strategy name (``"margin"``, ``"entropy"``,
        ``"least_confidence"``, ``"density_weighted"``...; see
        :func:`~metalearn.strategies.registry.strategy_names`), a released policy's name or
        a policy file's path (read at the first decision), a
        :class:`~metalearn.policies.file.PolicyFile`, a loaded
        :class:`~metalearn.policies.strategy.PolicyStrategy`, or a
        :class:`~metalearn.strategies.base.QueryStrategy` (object or class). A registered
        strategy name takes precedence over a policy of the same name.
    label_budget : int, default=100
        Labels that may be bought over the stream; never exceeded.
    expected_length : int, default=1000
        Records the stream is expected to bring (the budget is paced over them).
    window : int, default=100
        Recent arrivals kept as the reference the arriving record is compared with (at least
        2). Not the policy's history length H, which comes from the policy file.
    min_reference : int, default=10
        Reference records needed before records are scored; the first arrivals are kept at
        random with the target rate. Between 1 and ``window``.
    memory : int, default=100
        Most recent kept records remembered as the labeled part of the mini-pool (the policy's
        distance-to-labeled and class-balance features use them; their labels are stood in
        for by the model's current predictions). 0 remembers none.
    adaptation : float, default=0.02
        Step of the threshold offset that tracks the realised keep rate (0 disables it).
    random_state : int, numpy Generator or None
        Seeds every random choice (warm-up keeps, tie placement, the policy's reference
        samples). The same seed on the same stream and classifiers gives the same decisions.

    Attributes
    ----------
    n_seen_ : int
        Records decided on so far.
    n_spent_ : int
        Labels bought so far (``decide`` returned True).
    rate_ : float
        Target keep rate of the last decision.
    threshold_ : float
        Quantile threshold of the last decision (nan in warm-up or once the budget is spent).
    quantile_ : float
        The last record's quantile among the reference (nan when it was not scored).
    offset_ : float
        Current threshold offset of the adaptation.
    n_features_in_ : int
        Features per record (fixed by the first record).
    scorer_ : object
        What scores the mini-pool (built at the first decision).

    Notes
    -----
    ``__init__`` only stores parameters; they are validated at the first :meth:`decide`.
    Each decision predicts the reference window, the arriving record and (for a learned
    policy) the remembered kept records with the classifier given, so a refit classifier is
    taken into account at once. With a learned policy, each decision is one loop of the
    policy's metadata history (the window holds the last H decisions' predictions).
    """

    def __init__(
        self,
        policy: str | os.PathLike[str] | PolicyFile | QueryStrategy | type[QueryStrategy] = "default",
        label_budget: int = 100,
        expected_length: int = 1000,
        *,
        window: int = 100,
        min_reference: int = 10,
        memory: int = 100,
        adaptation: float = 0.02,
        random_state: int | np.random.Generator | None = None,
    ) -> None:
        self.policy = policy
        self.label_budget = label_budget
        self.expected_length = expected_length
        self.window = window
        self.min_reference = min_reference
        self.memory = memory
        self.adaptation = adaptation
        self.random_state = random_state

    # -- public API ----------------------------------------------------------------------
    def decide(self, record: Any, clf: Any) -> bool:
        """Whether to buy the label of the arriving record.

        Parameters
        ----------
        record : array-like of shape (n_features,) or (1, n_features)
            The arriving record (a pandas row or one-row DataFrame works too), with the
            features the classifier was fitted on.
        clf : classifier
            Fitted on the labeled records so far, with ``predict_proba``.

        Returns
        -------
        bool
            True: label this record (it counts against the budget). Always False once
            ``label_budget`` labels are spent.
        """
        x = check_record(record)
        if not hasattr(self, "n_seen_"):
            self._start(x)
        elif x.shape[0] != self.n_features_in_:
            raise InvalidInputError(
                f"record has {x.shape[0]} features but earlier records had {self.n_features_in_}; "
                "give every record the same features in the same order (or call reset() for a new stream)"
            )
        check_classifier(clf, n_features=x.shape[0])
        index = self.n_seen_
        self.n_seen_ += 1
        labels_left = self.label_budget - self.n_spent_
        self.quantile_ = float("nan")
        self.threshold_ = float("nan")
        if labels_left <= 0:
            self.rate_ = 0.0
            self._remember(index, x, keep=False)
            return False
        records_left = self.expected_length - index  # the arriving record included
        if records_left < 1:
            records_left = self.n_seen_  # past the expected end: assume it lasts as long again
        rate = min(1.0, labels_left / records_left)
        self.rate_ = rate
        if len(self.reference_) < self.min_reference or not self._labeled_classes_suffice(clf):
            keep = bool(self.rng_.random() < rate)  # warm-up: too little to compare with
        else:
            scores = self._scores(index, x, clf)
            self.quantile_ = randomized_quantile(scores[-1], scores[:-1], float(self.rng_.random()))
            self.threshold_ = float(np.clip(1.0 - rate + self.offset_, 0.0, 1.0))
            keep = self.quantile_ >= self.threshold_ if self.threshold_ > 0 else True
            self.offset_: float = float(np.clip(self.offset_ + self.adaptation * (float(keep) - rate), -1.0, 1.0))
        if keep:
            self.n_spent_ += 1
        self._remember(index, x, keep=keep)
        return bool(keep)

    @property
    def labels_left(self) -> int:
        """Labels not yet spent (the whole budget before the first decision)."""
        return int(self.label_budget) - int(getattr(self, "n_spent_", 0))

    def reset(self) -> "StreamingPolicy":
        """Forget the stream (counts, reference window, memory, generator); keep the parameters."""
        for attr in [a for a in vars(self) if a.endswith("_") and not a.startswith("__")]:
            delattr(self, attr)
        return self

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters."""
        names = ("policy", "label_budget", "expected_length", "window", "min_reference", "memory", "adaptation", "random_state")
        return {n: getattr(self, n) for n in names}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    # -- internals ------------------------------------------------------------------------
    def _check_params(self) -> None:
        check_positive_int(self.label_budget, "label_budget", maximum=MAX_STREAM_LENGTH)
        check_positive_int(self.expected_length, "expected_length", maximum=MAX_STREAM_LENGTH)
        check_positive_int(self.window, "window", minimum=2, maximum=MAX_WINDOW)
        check_positive_int(self.min_reference, "min_reference", maximum=MAX_WINDOW)
        if self.min_reference > self.window:
            raise InvalidInputError(
                f"min_reference ({self.min_reference}) must be at most window ({self.window}); lower it or widen the window"
            )
        check_positive_int(self.memory, "memory", minimum=0, maximum=MAX_MEMORY)
        if isinstance(self.adaptation, bool) or not isinstance(self.adaptation, (int, float, np.integer, np.floating)):
            raise InvalidTypeError(f"adaptation must be a number, got {type(self.adaptation).__name__}")
        if not (np.isfinite(self.adaptation) and 0.0 <= self.adaptation <= 1.0):
            raise InvalidInputError(f"adaptation must lie in [0, 1] (0 disables it), got {self.adaptation}")
        check_random_state(self.random_state)

    def _start(self, x: np.ndarray) -> None:
        self._check_params()
        scorer = make_scorer(self.policy, int(self.label_budget))
        self.rng_ = np.random.default_rng(self.random_state)
        self.scorer_ = scorer
        self.n_features_in_ = int(x.shape[0])
        self.n_seen_ = 0
        self.n_spent_ = 0
        self.offset_ = 0.0
        self.rate_ = float("nan")
        self.threshold_ = float("nan")
        self.quantile_ = float("nan")
        self.reference_: deque[tuple[int, np.ndarray]] = deque(maxlen=int(self.window))
        self.memory_: deque[tuple[int, np.ndarray]] = deque(maxlen=int(self.memory)) if self.memory else deque(maxlen=0)
        self._full_scored = False

    def _labeled_classes_suffice(self, clf: Any) -> bool:
        """Whether the remembered kept records cover the classes the strategy needs.

        A strategy such as query by committee fits copies of the classifier on the labeled
        rows of the mini-pool: the remembered kept records, labeled by the classifier's
        predictions. Until they cover ``min_labeled_classes`` classes it cannot score, and the
        stream keeps records at random as in its warm-up.
        """
        scorer = self.scorer_
        if not isinstance(scorer, RankingScorer):
            return True
        needed = int(getattr(scorer.strategy, "min_labeled_classes", 0))
        if needed == 0:
            return True
        if len(self.memory_) < needed:
            return False
        proba = np.asarray(clf.predict_proba(np.vstack([r for _, r in self.memory_])))
        return bool(proba.ndim == 2 and np.unique(proba.argmax(axis=1)).size >= needed)

    def _remember(self, index: int, x: np.ndarray, *, keep: bool) -> None:
        self.reference_.append((index, x))
        if keep and self.memory_.maxlen:
            self.memory_.append((index, x))

    def _scores(self, index: int, x: np.ndarray, clf: Any) -> np.ndarray:
        """Scores of the reference rows then the arriving record, shape (len(reference) + 1,)."""
        scorer = self.scorer_
        memory = list(self.memory_) if isinstance(scorer, (PolicyScorer, RankingScorer)) else []
        rows = [r for _, r in memory] + [r for _, r in self.reference_] + [x]
        # Kept records appear twice (labeled memory and reference): distinct ids keep them apart.
        ids = np.asarray([-(i + 1) for i, _ in memory] + [i for i, _ in self.reference_] + [index], dtype=np.int64)
        X = np.vstack(rows)
        labeled = np.zeros(X.shape[0], dtype=bool)
        labeled[: len(memory)] = True
        ctx = QueryContext(X, np.full(X.shape[0], None, dtype=object), labeled, clf, self.rng_)
        pool = MiniPool(X, ids, len(memory), ctx, min(self.n_spent_ / self.label_budget, 1.0))
        if isinstance(scorer, UncertaintyScorer):
            return scorer.scores(pool)
        if isinstance(scorer, RankingScorer):
            return scorer.scores(pool, self.rng_)
        # The first pool the policy sees fixes its distance scale and density reference:
        # measure them again once the reference window is full.
        full = len(self.reference_) == self.reference_.maxlen
        rebuild = full and not self._full_scored
        self._full_scored = self._full_scored or full
        return scorer.scores(pool, self.rng_, rebuild=rebuild)
