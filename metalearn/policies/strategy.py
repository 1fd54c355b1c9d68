"""A learned policy as a querying strategy: the public ``load_policy(...).query(...)`` contract.

Each call to :meth:`PolicyStrategy.query` is one active-learning loop: the classifier's
probabilities on the whole pool are appended to the metadata history (kept across calls),
candidates are pre-selected among the unlabeled records as during training, their features
and the loop's context features are computed (the policy's feature schema), and the policy's
scorer ranks them. numpy only: no torch.

The schema recorded in the policy file is looked up in the schema registry
(:func:`~metalearn.features.registry.schema_entry`), which gives its extractor, pre-selection
and batch pick loop: ``pool`` policies use
:class:`~metalearn.features.pool_features.PoolFeatureExtractor` (feature values, labels,
multi-loop history; ``pool@2`` its cluster subclass); ``proba`` policies use
:class:`~metalearn.features.proba_features.ProbaPoolFeatures` (the classifier's probabilities on
the unlabeled rows, per tree for a random forest, as in their training; no history).
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Callable, ClassVar

import numpy as np

from metalearn.common.blocks import map_row_blocks
from metalearn.common.record_identity import match_records, record_keys, row_keys
from metalearn.common.uncertainty import check_uninformative_model_rule, margins, same_for_every_row
from metalearn.common.validation import check_pool_features, check_positive_int
from metalearn.exceptions import InvalidInputError, InvalidTypeError, PoolChangedWarning
from metalearn.features.pool_features import PoolFeatureExtractor
from metalearn.features.proba_features import ProbaPoolFeatures, ensemble_predictions
from metalearn.features.registry import schema_entry
from metalearn.policies.file import PolicyFile, read_policy
from metalearn.strategies.base import QueryContext, QueryStrategy, select_top

__all__ = [
    "PolicyStrategy",
    "CANDIDATE_SELECTIONS",
    "DEFAULT_N_CANDIDATES",
    # Record identity lives in metalearn.common.record_identity; re-exported for old imports.
    "row_keys",
    "record_keys",
    "match_records",
]

#: How candidates are pre-selected from the unlabeled records.
CANDIDATE_SELECTIONS: tuple[str, ...] = ("mixed", "random", "all")
#: Candidates per query when neither the caller nor the policy file says.
DEFAULT_N_CANDIDATES = 256


class PolicyStrategy(QueryStrategy):
    """Query with a learned policy read from a policy file.

    Parameters
    ----------
    policy : PolicyFile, str or path-like
        A policy read with :func:`~metalearn.policies.file.read_policy`, or a path or released
        name, read at the first query.
    n_candidates : int or None
        Candidates scored per query (K). None: the policy's recorded ``n_candidates``, else
        256. At least ``batch_size`` candidates are always scored.
    label_budget : int
        Labels the loop intends to buy; scales the ``budget_used`` context feature, as the
        task's budget did in training.
    candidate_selection : {"mixed", "random", "all"}
        ``"mixed"`` (as in training): ceil(K/2) unlabeled records with the smallest margin
        (random tie-break) plus uniform random ones; ``"random"``: K uniform; ``"all"``:
        every unlabeled record (slower on large pools).
    missing_label : scalar, default=np.nan
        Marker of unlabeled entries in ``y``.
    uninformative_model : {"random", "score"}
        What a query does while the classifier gives every eligible record the same
        probabilities (scikit-learn's gradient boosting at its defaults below about 40 labels,
        kNN with fewer labels than neighbours): ``"random"`` picks uniformly at random, which
        keeps the labeled classes in the pool's proportions, the one thing such a model's
        predictions rest on (it predicts the labeled majority); ``"score"`` lets the policy score
        as at any other loop. The history is updated either way.
    random_state : int, numpy Generator or None
        Seeds candidate sampling, tie-breaking and the feature extractor's reference samples.

    Attributes
    ----------
    extractor_ : PoolFeatureExtractor
        The pool's metadata history and distance trackers, created at the first query
        (``pool`` policies).
    proba_features_ : ProbaPoolFeatures
        The last loop's probabilities-only features (``proba`` policies, which keep no history).
    last_scores_ : tuple of (ndarray of int, shape (k,), ndarray of float32, shape (k,))
        The candidates of the last query (pool indices) and their scores.

    last_pick_scores_ : ndarray of float32, shape (batch_size,)
        The score of each pick of the last query, when it was chosen (picks are re-scored
        one at a time); only after a query with ``step_scores=True``.
    last_step_scores_ : ndarray of float32, shape (batch_size, k)
        The candidates' scores before each pick of the last query (``-inf`` for the earlier
        picks); only after a query with ``step_scores=True``.
    record_keys_ : ndarray of uint64, shape (n_pool,)
        Identity of each row of the last pool (from ``record_ids`` or the row's bytes).
    last_uninformative_ : bool
        Whether the last query found the classifier's probabilities the same for every
        eligible record (and, with ``uninformative_model="random"``, picked at random).

    Notes
    -----
    The batch is the top-``batch_size`` candidates of one scoring pass. X is used as given
    for the distance features (distance to the labeled set, density); standardise it as the
    task model does.

    The history follows *records*, not row positions: when the pool changes between calls
    (records removed, added or reordered, as modAL's shrinking pools do), each record is
    recognised by its ``record_ids`` entry or, without ids, by a 64-bit hash of its feature
    values, and keeps its own window; new records start with an empty history. Unlike the
    classic strategies, a change of pool size therefore does not reset the policy. Only when
    no record of the earlier pool remains does the history start over (with a
    :class:`~metalearn.exceptions.PoolChangedWarning`).
    """

    name: ClassVar[str] = "policy"
    keeps_float32: ClassVar[bool] = True  # the features' distances read X a block of rows at a time

    def __init__(
        self,
        policy: PolicyFile | str | os.PathLike[str],
        n_candidates: int | None = None,
        label_budget: int = 100,
        candidate_selection: str = "mixed",
        uninformative_model: str = "random",
        *,
        missing_label: Any = np.nan,
        random_state: int | np.random.Generator | None = None,
    ) -> None:
        super().__init__(missing_label=missing_label, random_state=random_state)
        self.policy = policy
        self.n_candidates = n_candidates
        self.label_budget = label_budget
        self.candidate_selection = candidate_selection
        self.uninformative_model = uninformative_model
        # Read once, kept across reset(): it is the constructor argument, not per-pool state.
        self._policy_file: PolicyFile | None = policy if isinstance(policy, PolicyFile) else None

    # -- public API ----------------------------------------------------------------------
    def query(
        self,
        X: Any,
        y: Any,
        clf: Any = None,
        batch_size: int = 1,
        *,
        record_ids: Any = None,
        candidates: Any = None,
        step_scores: bool = False,
    ) -> np.ndarray:
        """Choose the next records to label (one call per loop).

        Parameters
        ----------
        X, y, clf, batch_size
            As :meth:`QueryStrategy.query`.
        record_ids : array-like of shape (n_pool,), optional
            A unique id per row (ints or strings). The history is matched to records by these
            ids across calls; without them, by a hash of each row's feature values.
        candidates : array-like of int, optional
            Pool indices the picks must come from (all unlabeled); default: every unlabeled
            row. The rest of the pool still shapes the features (ranks, distances).
        step_scores : bool
            Also record :attr:`last_step_scores_` and :attr:`last_pick_scores_`.

        Returns
        -------
        ndarray of int64, shape (batch_size,)
        """
        self._pending = {"record_ids": record_ids, "candidates": candidates, "step_scores": bool(step_scores)}
        try:
            return super().query(X, y, clf, batch_size)
        finally:
            self._pending = {}

    def history_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        """The multi-loop history and record identities as arrays + JSON-able metadata.

        None before the first query. :meth:`load_history_state` restores it into a fresh
        strategy (e.g. in another process), following records by their keys.
        """
        extractor = getattr(self, "extractor_", None)
        state = None if extractor is None else extractor.history_state()
        if state is None:
            return None
        arrays, meta = state
        arrays = {**arrays, "record_keys": self.record_keys_}
        meta = {**meta, "n_queries": int(self.n_queries_), "label_budget": int(self.label_budget)}
        return arrays, meta

    def load_history_state(
        self, X: Any, arrays: dict[str, np.ndarray], meta: dict[str, Any], *, record_ids: Any = None
    ) -> int:
        """Start from a saved history on the pool ``X`` (before the first query of this object).

        Parameters
        ----------
        X : array-like of shape (n_pool, n_features)
            The pool the next :meth:`query` will receive.
        arrays, meta
            From :meth:`history_state`.
        record_ids : array-like, optional
            The ids of X's rows; must be given if the history was recorded with ids.

        Returns
        -------
        int
            How many records of the saved history are in ``X`` (the others are dropped; new
            records start with an empty history); 0 for a probabilities-only (``proba``)
            policy, which keeps no history.
        """
        X_arr = check_pool_features(X, keep_float32=self.keeps_float32)
        policy, _ = self._check_params()
        if schema_entry(policy.schema).probabilities_only:
            return 0  # a probabilities-only policy keeps no multi-loop history: nothing to restore
        self._pending = {"record_ids": record_ids}
        try:
            self.reset()
            self._check_state(X_arr)
        finally:
            self._pending = {}
        try:
            saved_keys = np.asarray(arrays["record_keys"]).astype(np.uint64)
        except KeyError:
            raise InvalidInputError("the saved history has no record keys") from None
        old_positions = match_records(saved_keys, self.record_keys_)
        extractor = self._extractor(X_arr, policy)
        extractor.load_history(arrays, meta, old_positions)
        self.n_queries_ = int(meta.get("n_queries", 0))
        return int((old_positions >= 0).sum())

    @property
    def policy_file(self) -> PolicyFile:
        """The policy, read from disk at first use when ``policy`` is a path or name."""
        if self._policy_file is None:
            if not isinstance(self.policy, (str, os.PathLike)):
                raise InvalidTypeError(
                    f"policy must be a PolicyFile, a path or a released policy name, got {type(self.policy).__name__}"
                )
            self._policy_file = read_policy(self.policy)
        return self._policy_file

    def _check_params(self) -> tuple[PolicyFile, int]:
        policy = self.policy_file
        if self.candidate_selection not in CANDIDATE_SELECTIONS:
            raise InvalidInputError(
                f"unknown candidate_selection {self.candidate_selection!r}; valid values: {', '.join(CANDIDATE_SELECTIONS)}"
            )
        if self.n_candidates is not None:
            k = check_positive_int(self.n_candidates, "n_candidates")
        else:
            k = policy.n_candidates or DEFAULT_N_CANDIDATES
        check_positive_int(self.label_budget, "label_budget")
        check_uninformative_model_rule(self.uninformative_model)
        return policy, k

    # -- records, not rows ----------------------------------------------------------------
    def _keys(self, X: np.ndarray) -> np.ndarray:
        ids = getattr(self, "_pending", {}).get("record_ids")
        if ids is not None:
            return record_keys(ids, X.shape[0])
        cached = getattr(self, "_row_key_cache", None)
        # The same array object of the same shape as last time: the same records (hashing a
        # large pool costs about as much as one predict_proba of a linear model).
        if cached is not None and cached[0] is X and cached[1] == X.shape and cached[2].shape[0] == X.shape[0]:
            return cached[2]
        keys = row_keys(X)
        self._row_key_cache = (X, X.shape, keys)
        return keys

    def _check_state(self, X: np.ndarray) -> None:
        keys = self._keys(X)
        if not hasattr(self, "n_features_in_"):
            super()._check_state(X)
            self.record_keys_ = keys
            return
        if X.shape[1] != self.n_features_in_:
            super()._check_state(X)  # raises: a different dataset
        previous = self.record_keys_
        if previous.shape == keys.shape and np.array_equal(previous, keys):
            if hasattr(self, "extractor_") and self.extractor_.X is not X:
                self.extractor_.X = X  # same records; keep the tracker's reference current
                self.extractor_.nearest_labeled.X = X
            return
        old_positions = match_records(previous, keys)
        self.record_keys_ = keys
        self.n_pool_ = X.shape[0]
        extractor = getattr(self, "extractor_", None)
        if extractor is None:
            return
        if not np.any(old_positions >= 0):
            warnings.warn(
                f"none of the {previous.shape[0]} records of the earlier pool is in this one ({X.shape[0]} records); "
                "starting a fresh metadata history",
                PoolChangedWarning,
                stacklevel=4,
            )
            del self.extractor_
            return
        extractor.reindex(old_positions, X)

    def _extractor(self, X: np.ndarray, policy: PolicyFile) -> PoolFeatureExtractor:
        if not hasattr(self, "extractor_"):
            self.extractor_ = schema_entry(policy.schema).build_extractor(
                X,
                window=policy.window,
                label_budget=self.label_budget,
                batch_size=1,
                seed=int(self.rng_.integers(0, 2**31 - 1)),
            )
        return self.extractor_

    def _candidates(
        self, extractor: Any, unlabeled: np.ndarray, margin: np.ndarray, k: int, rng: np.random.Generator
    ) -> np.ndarray:
        """Pool indices of the candidates among ``unlabeled`` (margins aligned), shape (min(k, n),)."""
        if self.candidate_selection == "all" or unlabeled.size <= k:
            return unlabeled
        if self.candidate_selection == "random":
            return np.sort(rng.choice(unlabeled, size=k, replace=False))
        # The rule the policy was trained with: its schema's pre-selection.
        return schema_entry(self.policy_file.schema).preselect(extractor, unlabeled, margin, k, rng)

    def _eligible(self, ctx: QueryContext, batch_size: int) -> np.ndarray:
        """Pool indices the picks may come from: the given candidates, else every unlabeled row."""
        given = getattr(self, "_pending", {}).get("candidates")
        if given is None:
            return ctx.unlabeled_indices
        eligible = np.asarray(given)
        if eligible.ndim != 1 or (eligible.size and eligible.dtype.kind not in "iu"):
            raise InvalidInputError(f"candidates must be a 1-D array of pool indices, got shape {eligible.shape}")
        eligible = np.unique(eligible.astype(np.int64))
        n = ctx.X.shape[0]
        if eligible.size and (eligible[0] < 0 or eligible[-1] >= n):
            raise InvalidInputError(f"candidates must be pool indices in [0, {n - 1}]")
        if ctx.labeled[eligible].any():
            raise InvalidInputError(
                f"candidates include labeled rows {eligible[ctx.labeled[eligible]][:5].tolist()}; only unlabeled rows can be queried"
            )
        if eligible.size < batch_size:
            raise InvalidInputError(
                f"batch_size={batch_size} is larger than the {eligible.size} candidate(s); ask for at most {eligible.size}"
            )
        return eligible

    def _proba_update(self, ctx: QueryContext) -> ProbaPoolFeatures:
        """The ``proba`` features of this loop: the classifier's predictions on the unlabeled rows."""
        features = getattr(self, "proba_features_", None)
        if features is None:
            features = self.proba_features_ = ProbaPoolFeatures(reveal_labeled=True)
        rows = ctx.unlabeled_indices
        try:
            # Per tree for a forest, as in training; float64 rows, a block at a time for a float32 pool.
            predictions = map_row_blocks(lambda X: ensemble_predictions(ctx.clf, X), ctx.X, rows=rows)
        except (ValueError, TypeError, ArithmeticError) as exc:
            raise InvalidInputError(f"the classifier's members failed to predict the pool: {type(exc).__name__}: {exc}") from exc
        if predictions is None:
            predictions = ctx.proba_unlabeled
        if predictions.shape[1] == 1:
            # A model fitted on one class is certain everywhere: probability 0 for any other class.
            predictions = np.concatenate([predictions, np.zeros_like(predictions)], axis=1)
        features.update(predictions, ctx.labeled)
        return features

    def _select(self, ctx: QueryContext, batch_size: int) -> np.ndarray:
        policy, k = self._check_params()
        entry = schema_entry(policy.schema)
        eligible = self._eligible(ctx, batch_size)
        if entry.probabilities_only:
            proba_features = self._proba_update(ctx)
            # The members' mean probabilities: predicting the pool again would double a forest's cost.
            mean_proba = lambda rows: proba_features.extractor.proba[proba_features.positions(rows)]  # noqa: E731
            if self._random_while_uninformative(mean_proba, eligible):
                return self._random_picks(eligible, k, batch_size, ctx)
            margin = proba_features.margin_of(eligible)
            candidates = self._candidates(proba_features, eligible, margin, max(k, batch_size), ctx.rng)
            features = np.clip(proba_features.candidate_features(candidates), -1.0, 1.0)
            context = np.clip(proba_features.context_features(), -1.0, 1.0)
            return self._pick(policy, proba_features, candidates, features, context, batch_size, ctx)
        extractor = self._extractor(ctx.X, policy)
        extractor.batch_size = batch_size
        extractor.update(ctx.proba, ctx.classes, ctx.labeled, ctx.label_indices())
        history = extractor.history
        assert history is not None  # update() created it
        if self._random_while_uninformative(ctx.proba_of_unlabeled, eligible):
            return self._random_picks(eligible, k, batch_size, ctx)
        if entry.exact_margins:
            # The margins in float64, as margin sampling computes them, so a policy whose
            # correction is zero ranks (and pre-selects) exactly as margin sampling does; the
            # history's float32 copies would turn near-ties into ties broken at random.
            margin = margins(ctx.proba[eligible])
        else:
            margin = history.latest(history.margin)[eligible].astype(np.float64)
        candidates = self._candidates(extractor, eligible, margin, max(k, batch_size), ctx.rng)
        # Features are defined in [-1, 1]; training clipped them the same way.
        features = np.clip(extractor.candidate_features(candidates), -1.0, 1.0)
        features = entry.exact(extractor, features, ctx.proba[candidates])
        context = np.clip(extractor.context_features(), -1.0, 1.0)
        return self._pick(policy, extractor, candidates, features, context, batch_size, ctx)

    def _random_while_uninformative(self, proba_of: Callable[[np.ndarray], np.ndarray], eligible: np.ndarray) -> bool:
        """Whether this query picks at random: the classifier gives every eligible record the same probabilities.

        ``proba_of(rows)``: the probabilities of unlabeled pool rows ``rows`` (sorted).
        """
        # The first rows decide for almost every model, without copying the pool's probabilities.
        self.last_uninformative_ = same_for_every_row(proba_of(eligible[:64])) and same_for_every_row(proba_of(eligible))
        return self.last_uninformative_ and self.uninformative_model == "random"

    def _random_picks(self, eligible: np.ndarray, k: int, batch_size: int, ctx: QueryContext) -> np.ndarray:
        """``batch_size`` eligible records drawn uniformly at random.

        Recorded as a query in which ``max(k, batch_size)`` uniformly drawn candidates all
        score 0 and ties are broken at random, which is what it is.
        """
        n = min(max(k, batch_size), eligible.size)
        candidates = np.sort(ctx.rng.choice(eligible, size=n, replace=False)).astype(np.int64)
        order = ctx.rng.permutation(n)[:batch_size]
        self.last_scores_ = (candidates, np.zeros(n, dtype=np.float32))
        if getattr(self, "_pending", {}).get("step_scores"):
            steps = np.zeros((batch_size, n), dtype=np.float32)
            for i in range(1, batch_size):
                steps[i, order[:i]] = -np.inf
            self.last_step_scores_ = steps
            self.last_pick_scores_ = np.zeros(batch_size, dtype=np.float32)
        return candidates[order]

    def _pick(
        self,
        policy: PolicyFile,
        extractor: Any,
        candidates: np.ndarray,
        features: np.ndarray,
        context: np.ndarray,
        batch_size: int,
        ctx: QueryContext,
    ) -> np.ndarray:
        """Score the candidates and fill the batch with the schema's pick loop; pool indices of the picks."""
        # One pick at a time, each re-scored without the earlier picks: the way the policy
        # filled batches in training (PoolAL-v0 masks a picked slot and asks again); a
        # batch-aware schema (pool@2) also updates the features after every pick.
        choose = lambda s: int(select_top(s.astype(np.float64), 1, ctx.rng)[0])  # noqa: E731
        record_steps = bool(getattr(self, "_pending", {}).get("step_scores"))
        picks, scores, steps = schema_entry(policy.schema).pick_batch(
            policy.scorer, extractor, features, context, batch_size, choose, record_steps=record_steps
        )
        self.last_scores_ = (candidates, scores)
        if record_steps:
            assert steps is not None  # record_steps asked for them
            self.last_step_scores_ = steps
            self.last_pick_scores_ = steps[np.arange(batch_size), picks]
        return candidates[picks]
