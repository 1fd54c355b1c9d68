"""A fixed switch between two strategies: representative records first, then uncertain ones."""

from __future__ import annotations

from typing import Any

import numpy as np

from metalearn.common.uncertainty import margins
from metalearn.common.validation import check_positive_int
from metalearn.strategies.base import QueryContext, QueryStrategy, select_top
from metalearn.strategies.registry import register_strategy
from metalearn.strategies.typiclust import typiclust_picks

__all__ = ["TypiClustThenMargin"]


@register_strategy
class TypiClustThenMargin(QueryStrategy):
    """TypiClust for the first ``switch_after`` bought labels, margin sampling after that.

    The hand-made baseline of the "when to move from representative to uncertain records"
    question a learned policy answers per task: a fixed rule, the same on every task. The
    labels counted are those bought through this strategy's queries (the labeled records of
    the first query are the initial set); a batch is filled by one rule.

    Parameters
    ----------
    switch_after : int
        Labels bought with TypiClust before switching to margin sampling.
    missing_label, random_state
        See :class:`~metalearn.strategies.base.QueryStrategy`.

    Attributes
    ----------
    n_initial_labeled_ : int
        Labeled records at the first query.
    """

    name = "typiclust_margin"

    def __init__(
        self,
        switch_after: int = 10,
        *,
        missing_label: Any = np.nan,
        random_state: int | np.random.Generator | None = None,
    ) -> None:
        super().__init__(missing_label=missing_label, random_state=random_state)
        self.switch_after = switch_after

    def _validate_params(self) -> None:
        check_positive_int(self.switch_after, "switch_after", minimum=0)

    def _select(self, ctx: QueryContext, batch_size: int) -> np.ndarray:
        switch_after = int(self.switch_after)
        # The classifier is checked in every loop, also before the switch (its probabilities
        # are validated here, so a broken classifier fails at the first query, not later).
        proba = ctx.proba_unlabeled
        n_labeled = int(ctx.labeled.sum())
        if not hasattr(self, "n_initial_labeled_"):
            self.n_initial_labeled_ = n_labeled
        if n_labeled - self.n_initial_labeled_ < switch_after:
            return typiclust_picks(ctx.X, ctx.labeled, batch_size, ctx.rng)
        scores = -margins(proba)
        return ctx.unlabeled_indices[select_top(scores, batch_size, ctx.rng)]
