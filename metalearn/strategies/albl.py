"""Active learning by learning (ALBL, Hsu & Lin 2015): a bandit that picks among strategies.

Each loop, every expert strategy advises its top record (one-hot advice) and a uniform expert
advises every record equally; EXP4.P (Beygelzimer et al. 2011) mixes the advice by the
experts' weights into a distribution over the unlabeled records and samples the query from
it. The reward is the importance-weighted accuracy (IW-ACC) of the retrained model on the
records ALBL queried, each weighted by the inverse of the probability it was queried with: an
unbiased estimate of test accuracy. As in libact, the reward of a loop is observed in the
next call, once the classifier has been retrained with the new labels.

For ``batch_size > 1`` the batch is drawn without replacement from the same distribution and
each drawn record updates the weights with its own probability.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metalearn.common.validation import check_positive_int, check_real
from metalearn.exceptions import InvalidInputError, InvalidTypeError
from metalearn.strategies.base import QueryContext, QueryStrategy
from metalearn.strategies.registry import get_strategy_class, register_strategy

__all__ = ["ALBL"]


@register_strategy
class ALBL(QueryStrategy):
    """Bandit over querying strategies with EXP4.P and importance-weighted accuracy reward.

    Parameters
    ----------
    experts : tuple of str
        Registered strategy names whose top pick is each expert's advice.
    uniform_expert : bool
        Add an expert that advises all unlabeled records uniformly (guarantees exploration).
    n_queries : int
        Expected number of queried records (T in EXP4.P), used for p_min and the confidence
        term. Set it to your label budget.
    delta : float
        Confidence parameter of EXP4.P, in (0, 1).
    p_min : float or None
        Minimum probability of any record; default ``sqrt(log(N) / (K * T))`` as in libact,
        with N experts and K unlabeled records.
    missing_label, random_state
        See :class:`~metalearn.strategies.base.QueryStrategy`.

    Attributes
    ----------
    log_weights_ : ndarray of shape (n_experts,)
        Log of the EXP4.P weights, in the order of ``expert_names_``.
    """

    name = "albl"
    label_budget_parameter = "n_queries"

    def __init__(
        self,
        experts: tuple[str, ...] = ("least_confidence", "density_weighted", "kcenter_greedy"),
        uniform_expert: bool = True,
        n_queries: int = 100,
        delta: float = 0.1,
        p_min: float | None = None,
        *,
        missing_label: Any = np.nan,
        random_state: Any = None,
    ) -> None:
        super().__init__(missing_label=missing_label, random_state=random_state)
        self.experts = experts
        self.uniform_expert = uniform_expert
        self.n_queries = n_queries
        self.delta = delta
        self.p_min = p_min

    def _validate_params(self) -> None:
        experts = self.experts
        if isinstance(experts, str) or not isinstance(experts, (tuple, list)) or not all(isinstance(e, str) for e in experts):
            raise InvalidTypeError(f"experts must be a tuple of strategy names, got {experts!r}"[:300])
        for name in experts:
            get_strategy_class(name)  # UnknownNameError lists the valid names
        if not isinstance(self.uniform_expert, (bool, np.bool_)):
            raise InvalidTypeError(f"uniform_expert must be True or False, got {self.uniform_expert!r}"[:300])
        if not experts and not self.uniform_expert:
            raise InvalidInputError("ALBL needs at least one expert")
        if "albl" in experts:
            raise InvalidInputError("ALBL cannot be its own expert")
        check_positive_int(self.n_queries, "n_queries")
        delta = check_real(self.delta, "delta")
        if not 0.0 < delta < 1.0:
            raise InvalidInputError(f"delta must be in (0, 1), got {self.delta}")
        if self.p_min is not None:
            p_min = check_real(self.p_min, "p_min")
            if not 0.0 < p_min <= 1.0:
                raise InvalidInputError(f"p_min must be in (0, 1] or None (the libact default), got {self.p_min}")

    def _on_new_pool(self, X: np.ndarray) -> None:
        seeds = self.rng_.integers(0, 2**31 - 1, size=len(self.experts))
        self.expert_strategies_ = [
            get_strategy_class(name)(missing_label=self.missing_label, random_state=int(seed))
            for name, seed in zip(self.experts, seeds)
        ]
        self.expert_names_ = list(self.experts) + (["uniform"] if self.uniform_expert else [])
        self.log_weights_ = np.zeros(len(self.expert_names_))
        self.queried_: list[int] = []  # pool indices queried by ALBL
        self.inverse_probability_: list[float] = []  # 1 / probability each was queried with
        self.pending_: list[tuple[np.ndarray, float, np.ndarray]] = []  # (advice column, prob, v_hat) per pick

    def _reward(self, ctx: QueryContext) -> float:
        """Importance-weighted accuracy of the current classifier on ALBL's queried records."""
        rows = [i for i in self.queried_ if ctx.labeled[i]]
        if not rows:
            return 0.0
        weights = np.asarray([w for i, w in zip(self.queried_, self.inverse_probability_) if ctx.labeled[i]])
        correct = np.asarray(ctx.call_classifier("predict", ctx.X[rows])) == ctx.y[rows]
        return float((weights * correct).sum() / ctx.X.shape[0] / self.n_queries)

    def _update_weights(self, reward: float, n_arms: int) -> None:
        n_experts = len(self.expert_names_)
        p_min = self._p_min(n_arms)
        confidence = np.sqrt(np.log(n_experts / self.delta) / (n_arms * self.n_queries))
        for advice, prob, v_hat in self.pending_:
            y_hat = advice * reward / prob
            self.log_weights_ += p_min / 2.0 * (y_hat + v_hat * confidence)
        self.log_weights_ -= self.log_weights_.max()  # keep exp() in range; only ratios matter
        self.pending_ = []

    def _p_min(self, n_arms: int) -> float:
        if self.p_min is not None:
            return float(min(self.p_min, 1.0 / n_arms))
        n_experts = len(self.expert_names_)
        return float(min(np.sqrt(np.log(max(n_experts, 2)) / (n_arms * self.n_queries)), 1.0 / n_arms))

    def _select(self, ctx: QueryContext, batch_size: int) -> np.ndarray:
        unlabeled = ctx.unlabeled_indices
        n_arms = unlabeled.size
        if self.pending_:
            self._update_weights(self._reward(ctx), n_arms)
        position = np.full(ctx.X.shape[0], -1, dtype=np.int64)
        position[unlabeled] = np.arange(n_arms)
        advice = np.zeros((len(self.expert_names_), n_arms))
        for row, expert in enumerate(self.expert_strategies_):
            expert._check_state(ctx.X)
            pick = expert._select(ctx, 1)
            advice[row, position[int(pick[0])]] = 1.0
        if self.uniform_expert:
            advice[-1, :] = 1.0 / n_arms
        weights = np.exp(self.log_weights_)
        p_min = self._p_min(n_arms)
        prob = (1.0 - n_arms * p_min) * (weights / weights.sum()) @ advice + p_min
        prob = prob / prob.sum()
        v_hat = advice @ (1.0 / prob)
        picks = ctx.rng.choice(n_arms, size=batch_size, replace=False, p=prob)
        for arm in picks:
            self.pending_.append((advice[:, arm].copy(), float(prob[arm]), v_hat))
            self.queried_.append(int(unlabeled[arm]))
            self.inverse_probability_.append(1.0 / float(prob[arm]))
        return unlabeled[picks]
