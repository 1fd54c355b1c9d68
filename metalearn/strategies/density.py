"""Density-weighted uncertainty sampling (information density, Settles & Craven 2008)."""

from __future__ import annotations

import numpy as np

from metalearn.common.geometry import knn_reference_distance
from metalearn.common.validation import check_positive_int, check_real
from metalearn.exceptions import InvalidInputError
from metalearn.common.uncertainty import margins, normalized_entropy
from metalearn.strategies.base import QueryContext, QueryStrategy, select_top
from metalearn.strategies.registry import register_strategy

__all__ = ["DensityWeightedSampling"]

_UNCERTAINTIES = ("entropy", "margin", "least_confidence")


@register_strategy
class DensityWeightedSampling(QueryStrategy):
    """Uncertainty times local density to the power ``beta``: avoids querying outliers.

    Density is ``1 / (1 + r)`` where ``r`` is a record's mean distance to its nearest
    records of a random reference sample, over the pool median; it is computed once per pool
    in linear time (an exact all-pairs similarity would be quadratic).

    Parameters
    ----------
    uncertainty : {"entropy", "margin", "least_confidence"}
        Uncertainty measure, scaled to [0, 1].
    beta : float
        Weight of the density term; 0 gives plain uncertainty sampling.
    n_reference : int
        Size of the reference sample of the density estimate.
    n_neighbors : int
        Neighbours averaged in the density estimate.
    missing_label, random_state
        See :class:`~metalearn.strategies.base.QueryStrategy`.
    """

    name = "density_weighted"

    def __init__(
        self,
        uncertainty: str = "entropy",
        beta: float = 1.0,
        n_reference: int = 512,
        n_neighbors: int = 10,
        *,
        missing_label=np.nan,
        random_state=None,
    ) -> None:
        super().__init__(missing_label=missing_label, random_state=random_state)
        self.uncertainty = uncertainty
        self.beta = beta
        self.n_reference = n_reference
        self.n_neighbors = n_neighbors

    def _validate_params(self) -> None:
        if not isinstance(self.uncertainty, str) or self.uncertainty not in _UNCERTAINTIES:
            raise InvalidInputError(f"uncertainty must be one of {_UNCERTAINTIES}, got {self.uncertainty!r}"[:300])
        if not np.isfinite(check_real(self.beta, "beta")) or self.beta < 0:
            raise InvalidInputError(f"beta must be a finite number >= 0, got {self.beta!r}")
        check_positive_int(self.n_reference, "n_reference")
        check_positive_int(self.n_neighbors, "n_neighbors")

    def _on_new_pool(self, X: np.ndarray) -> None:
        knn = knn_reference_distance(
            X,
            self.rng_,
            n_reference=check_positive_int(self.n_reference, "n_reference"),
            n_neighbors=check_positive_int(self.n_neighbors, "n_neighbors"),
        )
        median = float(np.median(knn))
        self.density_ = 1.0 / (1.0 + (knn / median if median > 0 else np.zeros_like(knn)))

    def _select(self, ctx: QueryContext, batch_size: int) -> np.ndarray:
        proba = ctx.proba_unlabeled
        if self.uncertainty == "entropy":
            unc = normalized_entropy(proba)
        elif self.uncertainty == "margin":
            unc = 1.0 - margins(proba)
        else:
            n_classes = proba.shape[1]
            unc = (1.0 - proba.max(axis=1)) * n_classes / max(n_classes - 1, 1)
        scores = unc * self.density_[ctx.unlabeled_indices] ** self.beta
        return ctx.unlabeled_indices[select_top(scores, batch_size, ctx.rng)]
