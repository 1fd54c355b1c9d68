"""Fixed switches between two strategies: representative records first, then uncertain ones.

The hand-made baselines of the "when to move from representative to uncertain records"
question a learned policy answers per task: a fixed rule, the same on every task. Issue 20's
fair baseline tunes their switch point on the held-in problems (5, 10, 20 or 40 labels).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np

from metalearn.common.uncertainty import check_uninformative_model_rule, margins, same_for_every_row
from metalearn.common.validation import check_positive_int
from metalearn.strategies.base import QueryContext, QueryStrategy, select_top
from metalearn.strategies.probcover import ProbCover
from metalearn.strategies.registry import register_strategy
from metalearn.strategies.typiclust import typiclust_picks

__all__ = ["RepresentativeThenMargin", "TypiClustThenMargin", "ProbCoverThenMargin", "SWITCH_POINTS"]

#: Switch points a fixed rule is tuned over on the held-in problems (labels bought).
SWITCH_POINTS: tuple[int, ...] = (5, 10, 20, 40)


class RepresentativeThenMargin(QueryStrategy):
    """A representative strategy for the first ``switch_after`` bought labels, margin sampling after.

    The labels counted are those bought through this strategy's queries (the labeled records
    of the first query are the initial set); a batch is filled by one rule. Subclasses name the
    representative phase in :meth:`_representative`.

    Parameters
    ----------
    switch_after : int
        Labels bought with the representative strategy before switching to margin sampling.
    uninformative_model : {"random", "score"}
        While the classifier gives every unlabeled record the same probabilities (gradient
        boosting at scikit-learn's defaults below about 40 labels): ``"random"`` picks uniformly
        at random instead of representative records, keeping the labeled classes in the pool's
        proportions, which is all such a model's predictions rest on; ``"score"`` keeps the
        representative phase. (Margin sampling breaks its ties at random anyway.)
    missing_label, random_state
        See :class:`~metalearn.strategies.base.QueryStrategy`.

    Attributes
    ----------
    n_initial_labeled_ : int
        Labeled records at the first query.
    last_uninformative_ : bool
        Whether the last query found the classifier's probabilities the same for every
        unlabeled record.
    """

    shorthand_parameter = "switch_after"

    def __init__(
        self,
        switch_after: int = 10,
        uninformative_model: str = "random",
        *,
        missing_label: Any = np.nan,
        random_state: int | np.random.Generator | None = None,
    ) -> None:
        super().__init__(missing_label=missing_label, random_state=random_state)
        self.switch_after = switch_after
        self.uninformative_model = uninformative_model

    def _validate_params(self) -> None:
        check_positive_int(self.switch_after, "switch_after", minimum=0)
        check_uninformative_model_rule(self.uninformative_model)

    @abstractmethod
    def _representative(self, ctx: QueryContext, batch_size: int) -> np.ndarray:
        """Pool indices of ``batch_size`` distinct unlabeled records of the representative phase."""

    def _select(self, ctx: QueryContext, batch_size: int) -> np.ndarray:
        switch_after = int(self.switch_after)
        # The classifier is checked in every loop, also before the switch (its probabilities
        # are validated here, so a broken classifier fails at the first query, not later).
        proba = ctx.proba_unlabeled
        n_labeled = int(ctx.labeled.sum())
        if not hasattr(self, "n_initial_labeled_"):
            self.n_initial_labeled_ = n_labeled
        self.last_uninformative_ = same_for_every_row(proba)
        if n_labeled - self.n_initial_labeled_ < switch_after:
            if self.uninformative_model == "random" and self.last_uninformative_:
                return ctx.rng.choice(ctx.unlabeled_indices, size=batch_size, replace=False)
            return self._representative(ctx, batch_size)
        scores = -margins(proba)
        return ctx.unlabeled_indices[select_top(scores, batch_size, ctx.rng)]


@register_strategy
class TypiClustThenMargin(RepresentativeThenMargin):
    """TypiClust for the first ``switch_after`` bought labels, margin sampling after that.

    Parameters
    ----------
    switch_after : int
        Labels bought with TypiClust before switching to margin sampling.
    uninformative_model : {"random", "score"}
        See :class:`RepresentativeThenMargin`.
    missing_label, random_state
        See :class:`~metalearn.strategies.base.QueryStrategy`.
    """

    name = "typiclust_margin"

    def _representative(self, ctx: QueryContext, batch_size: int) -> np.ndarray:
        return typiclust_picks(ctx.X, ctx.labeled, batch_size, ctx.rng)


@register_strategy
class ProbCoverThenMargin(RepresentativeThenMargin):
    """ProbCover for the first ``switch_after`` bought labels, margin sampling after that.

    The ProbCover phase is :class:`~metalearn.strategies.probcover.ProbCover` at its defaults,
    drawing from this strategy's generator (its radius and ball graph are computed once per pool).

    Parameters
    ----------
    switch_after : int
        Labels bought with ProbCover before switching to margin sampling.
    uninformative_model : {"random", "score"}
        See :class:`RepresentativeThenMargin`.
    missing_label, random_state
        See :class:`~metalearn.strategies.base.QueryStrategy`.

    Attributes
    ----------
    probcover_ : ProbCover
        The representative phase's strategy for this pool.
    """

    name = "probcover_margin"

    def _on_new_pool(self, X: np.ndarray) -> None:
        self.probcover_ = ProbCover(missing_label=self.missing_label)
        self.probcover_.rng_ = self.rng_

    def _representative(self, ctx: QueryContext, batch_size: int) -> np.ndarray:
        return self.probcover_._select(ctx, batch_size)
