"""A learned policy as a querying strategy: the public ``load_policy(...).query(...)`` contract.

Each call to :meth:`PolicyStrategy.query` is one active-learning loop: the classifier's
probabilities on the whole pool are appended to the metadata history (kept across calls),
candidates are pre-selected among the unlabeled records as during training, their features
and the loop's context features are computed (the policy's feature schema), and the policy's
scorer ranks them. numpy only: no torch.
"""

from __future__ import annotations

import math
import os
from typing import Any, ClassVar

import numpy as np

from metalearn.common.validation import check_positive_int
from metalearn.exceptions import InvalidInputError, InvalidTypeError
from metalearn.features.pool_features import PoolFeatureExtractor
from metalearn.policies.file import PolicyFile, read_policy
from metalearn.strategies.base import QueryContext, QueryStrategy, select_top

__all__ = ["PolicyStrategy", "CANDIDATE_SELECTIONS", "DEFAULT_N_CANDIDATES"]

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
    random_state : int, numpy Generator or None
        Seeds candidate sampling, tie-breaking and the feature extractor's reference samples.

    Attributes
    ----------
    extractor_ : PoolFeatureExtractor
        The pool's metadata history and distance trackers, created at the first query.
    last_scores_ : tuple of (ndarray of int, shape (k,), ndarray of float32, shape (k,))
        The candidates of the last query (pool indices) and their scores.

    Notes
    -----
    The batch is the top-``batch_size`` candidates of one scoring pass. X is used as given
    for the distance features (distance to the labeled set, density); standardise it as the
    task model does.
    """

    name: ClassVar[str] = "policy"

    def __init__(
        self,
        policy: PolicyFile | str | os.PathLike[str],
        n_candidates: int | None = None,
        label_budget: int = 100,
        candidate_selection: str = "mixed",
        *,
        missing_label: Any = np.nan,
        random_state: int | np.random.Generator | None = None,
    ) -> None:
        super().__init__(missing_label=missing_label, random_state=random_state)
        self.policy = policy
        self.n_candidates = n_candidates
        self.label_budget = label_budget
        self.candidate_selection = candidate_selection
        # Read once, kept across reset(): it is the constructor argument, not per-pool state.
        self._policy_file: PolicyFile | None = policy if isinstance(policy, PolicyFile) else None

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
        return policy, k

    def _extractor(self, X: np.ndarray, policy: PolicyFile) -> PoolFeatureExtractor:
        if not hasattr(self, "extractor_"):
            self.extractor_ = PoolFeatureExtractor(
                X,
                window=policy.window,
                label_budget=self.label_budget,
                batch_size=1,
                seed=int(self.rng_.integers(0, 2**31 - 1)),
            )
        return self.extractor_

    def _candidates(self, unlabeled: np.ndarray, margin: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        """Pool indices of the candidates among ``unlabeled`` (margins aligned), shape (min(k, n),)."""
        if self.candidate_selection == "all" or unlabeled.size <= k:
            return unlabeled
        if self.candidate_selection == "random":
            return np.sort(rng.choice(unlabeled, size=k, replace=False))
        n_uncertain = math.ceil(k / 2)
        top = np.lexsort((rng.random(unlabeled.size), margin))[:n_uncertain]
        rest = np.delete(unlabeled, top)
        return np.concatenate([unlabeled[top], rng.choice(rest, size=k - n_uncertain, replace=False)])

    def _select(self, ctx: QueryContext, batch_size: int) -> np.ndarray:
        policy, k = self._check_params()
        extractor = self._extractor(ctx.X, policy)
        extractor.batch_size = batch_size
        extractor.update(ctx.proba, ctx.classes, ctx.labeled, ctx.label_indices())
        history = extractor.history
        assert history is not None  # update() created it
        unlabeled = ctx.unlabeled_indices
        margin = history.latest(history.margin)[unlabeled].astype(np.float64)
        candidates = self._candidates(unlabeled, margin, max(k, batch_size), ctx.rng)
        # Features are defined in [-1, 1]; training clipped them the same way.
        features = np.clip(extractor.candidate_features(candidates), -1.0, 1.0)
        context = np.clip(extractor.context_features(), -1.0, 1.0)
        # One pick at a time, each re-scored without the earlier picks: the way the policy
        # filled batches in training (PoolAL-v0 masks a picked slot and asks again).
        picks, scores = policy.scorer.pick_sequentially(
            features, context, batch_size, lambda s: int(select_top(s.astype(np.float64), 1, ctx.rng)[0])
        )
        self.last_scores_ = (candidates, scores)
        return candidates[picks]
