"""Scorers of a small reference pool: how a pool strategy rates an arriving record.

A streaming decision asks "how worth labeling is this record compared with the records that
arrived recently?". Each scorer here answers it with any pool strategy: it receives the
*mini-pool* of one decision (the kept records as labeled rows, the recent arrivals and the
arriving record as unlabeled rows) and returns one score per unlabeled row, higher = more
worth labeling. :class:`~metalearn.streaming.stream_policy.StreamingPolicy` turns the
arriving record's score into a quantile among the recent arrivals' scores.

- :class:`UncertaintyScorer`: a classic uncertainty strategy (margin, least confidence,
  entropy): its ``uncertainty`` of the classifier's probabilities, exact and cheap.
- :class:`PolicyScorer`: a learned policy file: its schema's features (a schema the registry
  marks ``streaming``) from the schema's extractor kept across decisions (the
  mini-pool's records are followed by id, as :class:`~metalearn.policies.strategy.PolicyStrategy`
  follows a changing pool) and one pass of the policy's numpy scorer.
- :class:`RankingScorer`: any other :class:`~metalearn.strategies.base.QueryStrategy`: the
  strategy ranks every unlabeled row (a query of all of them) and the score is minus the rank.

:func:`make_scorer` picks the right one for a strategy name, a policy (file, path or name) or
a strategy object.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from metalearn.exceptions import FeatureSchemaError, InvalidTypeError, UnknownNameError
from metalearn.features.pool_features import PoolFeatureExtractor
from metalearn.features.registry import registered_schemas, schema_entry
from metalearn.policies.file import PolicyFile, read_policy
from metalearn.common.record_identity import match_records, record_keys
from metalearn.common.uncertainty import check_uninformative_model_rule, same_for_every_row
from metalearn.policies.strategy import PolicyStrategy
from metalearn.strategies.base import QueryContext, QueryStrategy
from metalearn.strategies.registry import get_strategy_class, strategy_names
from metalearn.strategies.uncertainty import UncertaintySampling

__all__ = ["MiniPool", "UncertaintyScorer", "PolicyScorer", "RankingScorer", "make_scorer"]

class MiniPool:
    """The records one streaming decision looks at.

    Parameters
    ----------
    X : ndarray of shape (m, d)
        Rows: the labeled memory first, then the unlabeled rows (recent arrivals, then the
        arriving record last).
    ids : ndarray of int64, shape (m,)
        A stable id per row (the same record keeps its id across decisions).
    n_labeled : int
        Number of leading labeled rows (kept records).
    ctx : QueryContext
        Classifier calls on ``X`` (probabilities computed once, checked).
    budget_used : float
        Labels spent over the label budget, in [0, 1].

    Attributes
    ----------
    labeled : ndarray of bool, shape (m,)
    """

    def __init__(self, X: np.ndarray, ids: np.ndarray, n_labeled: int, ctx: QueryContext, budget_used: float) -> None:
        self.X = X
        self.ids = ids
        self.n_labeled = int(n_labeled)
        self.ctx = ctx
        self.budget_used = float(budget_used)
        self.labeled = np.zeros(X.shape[0], dtype=bool)
        self.labeled[: self.n_labeled] = True

    @property
    def n_unlabeled(self) -> int:
        return int(self.X.shape[0] - self.n_labeled)

    def pseudo_label_indices(self) -> np.ndarray:
        """Index into ``ctx.classes`` per row: the predicted class of labeled rows, -1 elsewhere.

        The stream's true labels are the caller's; the kept records stand in with the model's
        prediction (used only by class-balance features and by strategies that need labels).
        """
        out = np.full(self.X.shape[0], -1, dtype=np.int64)
        if self.n_labeled:
            out[: self.n_labeled] = np.argmax(self.ctx.proba[: self.n_labeled], axis=1)
        return out


class UncertaintyScorer:
    """Scores by a classic uncertainty measure (``UncertaintySampling.uncertainty``)."""

    def __init__(self, strategy: type[UncertaintySampling] | UncertaintySampling) -> None:
        self.strategy = strategy
        self.name = strategy.name

    def scores(self, pool: MiniPool) -> np.ndarray:
        """Scores of the unlabeled rows, shape (pool.n_unlabeled,)."""
        return np.asarray(self.strategy.uncertainty(pool.ctx.proba_unlabeled), dtype=np.float64)


class RankingScorer:
    """Scores by the rank a pool strategy gives each unlabeled row (any ``QueryStrategy``).

    A fresh copy of the strategy (same parameters, labels marked ``None``, a seed from the
    stream's generator) queries all unlabeled rows at once; the score is minus the position
    in its answer, so the strategy's first choice scores highest.
    """

    def __init__(self, strategy: QueryStrategy | type[QueryStrategy]) -> None:
        self.strategy = strategy
        self.name = strategy.name

    def scores(self, pool: MiniPool, rng: np.random.Generator) -> np.ndarray:
        """Scores of the unlabeled rows, shape (pool.n_unlabeled,)."""
        params: dict[str, Any] = {} if isinstance(self.strategy, type) else dict(self.strategy.get_params(deep=False))
        params.update(missing_label=None, random_state=int(rng.integers(0, 2**31 - 1)))
        cls = self.strategy if isinstance(self.strategy, type) else type(self.strategy)
        strategy = cls(**params)
        y = np.full(pool.X.shape[0], None, dtype=object)
        if pool.n_labeled:
            y[: pool.n_labeled] = pool.ctx.classes[pool.pseudo_label_indices()[: pool.n_labeled]]
        n = pool.n_unlabeled
        order = np.asarray(strategy.query(pool.X, y, pool.ctx.clf, batch_size=n), dtype=np.int64)
        scores = np.empty(n, dtype=np.float64)
        scores[order - pool.n_labeled] = -np.arange(n, dtype=np.float64)
        return scores


class PolicyScorer:
    """Scores by a learned policy: ``pool``-schema features and one pass of its numpy scorer.

    Policies of the schemas the registry marks ``streaming`` (``pool@1`` and ``pool@2``) stream;
    for ``pool@2`` the clusters are those of the current mini-pool (recomputed when the window
    slides) and the margin column is the exact float64 margin (the schema's ``exact_margins``),
    as :class:`~metalearn.policies.strategy.PolicyStrategy` computes it.

    The feature extractor lives across decisions: its history window holds the models'
    predictions of the last H decisions on each record still in the mini-pool (records are
    followed by id as the window slides). The ``budget_used`` context feature is the stream's
    (labels spent over the label budget).

    While the classifier gives every unlabeled record of the mini-pool the same probabilities
    (gradient boosting at scikit-learn's defaults on few labels), every record scores the same
    with ``uninformative_model="random"`` (the default, as
    :class:`~metalearn.policies.strategy.PolicyStrategy`): the randomized quantile then keeps
    records at random at the paced rate, which keeps the labeled classes in the stream's
    proportions; ``"score"`` scores as usual.

    Parameters
    ----------
    policy : PolicyFile
    label_budget : int
    uninformative_model : {"random", "score"}

    Attributes
    ----------
    last_uninformative : bool
        Whether the last scoring found the classifier's probabilities the same for every record.
    """

    def __init__(self, policy: PolicyFile, label_budget: int, uninformative_model: str = "random") -> None:
        try:
            entry = schema_entry(policy.schema)
        except FeatureSchemaError:
            entry = None
        if entry is None or not entry.streaming:
            streamed = ", ".join(e.id for e in registered_schemas(streaming=True))
            raise FeatureSchemaError(f"{policy!r} uses feature schema {policy.schema.id}; streaming computes {streamed} only")
        self.registered_schema = entry
        # The stream's budget replaces the extractor's (a streaming schema has this context feature).
        self._budget_used = entry.schema.context_features.index("budget_used")
        self.policy = policy
        self.label_budget = int(label_budget)
        self.uninformative_model = check_uninformative_model_rule(uninformative_model)
        self.last_uninformative = False
        self.name = "policy"
        self.extractor: PoolFeatureExtractor | None = None
        self._keys: np.ndarray | None = None
        self._built_on = 0

    def scores(self, pool: MiniPool, rng: np.random.Generator, *, rebuild: bool = False) -> np.ndarray:
        """Scores of the unlabeled rows, shape (pool.n_unlabeled,).

        ``rebuild`` starts a fresh extractor (its distance scale and density reference come
        from the current mini-pool; used once the reference window is first full).
        """
        keys = record_keys(pool.ids, pool.X.shape[0])
        if self.extractor is None or rebuild:
            self.extractor = self.registered_schema.build_extractor(
                pool.X,
                window=self.policy.window,
                label_budget=self.label_budget,
                batch_size=1,
                seed=int(rng.integers(0, 2**31 - 1)),
            )
        else:
            assert self._keys is not None
            self.extractor.reindex(match_records(self._keys, keys), pool.X)
        self._keys = keys
        extractor = self.extractor
        extractor.update(pool.ctx.proba, pool.ctx.classes, pool.labeled, pool.pseudo_label_indices())
        candidates = np.flatnonzero(~pool.labeled)
        self.last_uninformative = same_for_every_row(pool.ctx.proba[candidates])
        if self.last_uninformative and self.uninformative_model == "random":
            return np.zeros(candidates.size, dtype=np.float64)
        # Features are defined in [-1, 1]; training clipped them the same way.
        features = np.clip(extractor.candidate_features(candidates), -1.0, 1.0)
        features = self.registered_schema.exact(extractor, features, pool.ctx.proba[candidates])
        context = extractor.context_features()
        context[self._budget_used] = pool.budget_used
        context = np.clip(context, -1.0, 1.0)
        return np.asarray(self.policy.scorer.scores(features, context), dtype=np.float64)


def make_scorer(policy: Any, label_budget: int) -> UncertaintyScorer | RankingScorer | PolicyScorer:
    """The scorer for a ``StreamingPolicy``'s ``policy`` argument.

    Parameters
    ----------
    policy : str, path-like, PolicyFile, PolicyStrategy, QueryStrategy or QueryStrategy class
        A string is a registered strategy name (e.g. ``"margin"``) if one matches, else a
        released policy name or a policy file path.
    label_budget : int

    Raises
    ------
    InvalidTypeError
        For any other type.
    PolicyFileError, UnknownNameError
        For a policy that cannot be read, or a name that is neither a strategy nor a policy.
    """
    if isinstance(policy, str):
        try:
            strategy_cls = get_strategy_class(policy)
        except UnknownNameError:
            strategy_cls = None
        if strategy_cls is not None:
            policy = strategy_cls
    if isinstance(policy, PolicyStrategy):
        return PolicyScorer(policy.policy_file, label_budget, policy.uninformative_model)
    if isinstance(policy, type) and issubclass(policy, PolicyStrategy):
        raise InvalidTypeError("pass a policy file, path or name (or a PolicyStrategy object), not the PolicyStrategy class")
    if isinstance(policy, type) and issubclass(policy, UncertaintySampling) or isinstance(policy, UncertaintySampling):
        return UncertaintyScorer(policy)
    if isinstance(policy, type) and issubclass(policy, QueryStrategy) or isinstance(policy, QueryStrategy):
        return RankingScorer(policy)
    if isinstance(policy, PolicyFile):
        return PolicyScorer(policy, label_budget)
    if isinstance(policy, (str, os.PathLike)):
        try:
            policy_file = read_policy(policy)
        except UnknownNameError as exc:
            raise UnknownNameError(f"{exc}; strategy names work too: {', '.join(strategy_names())}") from None
        return PolicyScorer(policy_file, label_budget)
    raise InvalidTypeError(
        f"policy must be a strategy name (e.g. 'margin'), a policy file, path or released name, "
        f"a PolicyFile, or a QueryStrategy; got {type(policy).__name__}"
    )
