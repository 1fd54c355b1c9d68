"""Named, versioned feature schemas.

A policy file records the schema it was trained with (name, version and the ordered list of
feature names); :func:`get_schema` refuses a schema this release cannot compute, so a policy
never runs on features it was not trained with. What computes each schema and where it can be
used is in the one registry, :mod:`metalearn.features.registry`. Changing what a feature means, or the order,
requires a new version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["FeatureSchema", "POOL_SCHEMA", "POOL_SCHEMA_V2", "PROBA_SCHEMA", "get_schema", "SCHEMAS"]


@dataclass(frozen=True)
class FeatureSchema:
    """An ordered list of per-candidate and per-loop (context) features.

    Attributes
    ----------
    name : str
        Schema name, e.g. ``"pool"``.
    version : int
        Incremented whenever a feature's definition or the order changes.
    candidate_features : tuple of str
        Names of the per-candidate features, in column order.
    context_features : tuple of str
        Names of the per-loop context features, in order.
    descriptions : dict
        One sentence per feature: what it measures and how it is scaled.
    probabilities_only : bool
        True when every feature is computed from the model's class probabilities on the
        unlabeled records alone (no feature values, labels or record identities), so a policy
        of this schema can serve libraries that hand a strategy predictions only (baal).
    summary : str
        One line: what the schema needs and what it is for (``metalearn features`` prints it).
    """

    name: str
    version: int
    candidate_features: tuple[str, ...]
    context_features: tuple[str, ...]
    descriptions: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    probabilities_only: bool = field(default=False, compare=False)
    summary: str = field(default="", compare=False)

    @property
    def n_candidate_features(self) -> int:
        return len(self.candidate_features)

    @property
    def n_context_features(self) -> int:
        return len(self.context_features)

    @property
    def id(self) -> str:
        """``name@version``, as written into policy files."""
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "version": self.version,
            "candidate_features": list(self.candidate_features),
            "context_features": list(self.context_features),
        }


_CANDIDATE = {
    "margin": "Top-1 minus top-2 class probability now; 0 = undecided, 1 = certain.",
    "least_confidence": "1 - max probability, times C/(C-1) so it spans [0, 1] for any number of classes C.",
    "entropy": "Entropy of the class probabilities divided by log C, in [0, 1].",
    "margin_rank": "Rank of the margin among unlabeled records, scaled to [0, 1]; 0 = smallest margin in the pool.",
    "margin_mean": "Mean margin over the history window (the last H loops).",
    "margin_std": "Standard deviation of the margin over the window, times 2, in [0, 1].",
    "margin_trend": "Least-squares slope of the margin per loop over the window, clipped to [-1, 1]; 0 with one loop.",
    "entropy_trend": "Least-squares slope of the normalised entropy per loop over the window, clipped to [-1, 1].",
    "prediction_flips": "Fraction of consecutive loop pairs in the window whose predicted label differs, in [0, 1].",
    "probability_variance": "Variance of each class probability across the window, averaged over classes, times 4, in [0, 1].",
    "probability_change": "Total-variation distance between this loop's and the previous loop's probabilities, in [0, 1].",
    "distance_to_labeled": "Distance to the nearest labeled record over the pool's median pairwise distance r, as r/(1+r).",
    "distance_to_labeled_rank": "Rank of that distance among unlabeled records, in [0, 1]; 1 = farthest from the labeled set.",
    "density": "Local density: mean distance to the nearest pool records over its pool median r, as 1/(1+r); 0.5 is typical.",
    "density_rank": "Rank of the density among all pool records, in [0, 1]; 1 = densest.",
    "predicted_class_labeled_share": (
        "Share of labeled records of the candidate's predicted class times C, as x/(1+x): "
        "0.5 = balanced, 0 = that class has no label yet."
    ),
}

_CONTEXT = {
    "budget_used": "Labels bought so far over the label budget, in [0, 1].",
    "labeled_per_class": "log(1 + labeled records per class) / log(1 + 200), clipped to [0, 1].",
    "class_balance": "Entropy of the labeled class counts over log C, in [0, 1]; 1 = perfectly balanced.",
    "missing_classes": "Fraction of the model's classes without any labeled record.",
    "inverse_n_classes": "1 / C, the number of classes as a bounded value.",
    "mean_margin": "Mean margin over the unlabeled pool.",
    "mean_entropy": "Mean normalised entropy over the unlabeled pool.",
    "mean_margin_trend": "Slope per loop of the mean unlabeled margin over the window, clipped to [-1, 1].",
    "mean_entropy_trend": "Slope per loop of the mean unlabeled entropy over the window, clipped to [-1, 1].",
    "prediction_change_rate": "Fraction of unlabeled predictions that changed since the previous loop.",
    "prediction_change_trend": "Slope per loop of the prediction change rate over the window, clipped to [-1, 1].",
    "labeled_accuracy": "Accuracy of the model on its own labeled records (how well it fits them).",
    "low_margin_fraction": "Fraction of unlabeled records with margin below 0.2.",
    "predicted_class_balance": "Entropy of the predicted class distribution on the unlabeled pool over log C.",
    "history_fill": "Loops in the history window over the window length H, in (0, 1].",
    "batch_size_log": "log(1 + batch size) / log(1 + 100), clipped to [0, 1].",
}

#: The pool schema, version 1: 16 candidate features and 16 context features.
POOL_SCHEMA = FeatureSchema(
    name="pool",
    version=1,
    candidate_features=tuple(_CANDIDATE),
    context_features=tuple(_CONTEXT),
    descriptions={**_CANDIDATE, **_CONTEXT},
    summary=(
        "the pool's feature values, the labels and the multi-loop history of every record "
        "(metalearn.features.PoolFeatureExtractor)"
    ),
)

# -- pool@2: pool@1 plus the low-budget (representativeness) and within-batch signals ----------
# A partition of the pool by k-means into about as many clusters as there will be labels after
# this batch (TypiClust's rule, at the power of two at or above n_labeled + batch size, so a pool
# is clustered at most log2(n) times) says which regions have no label yet. The two "selected"
# features are updated after every pick of a batch, so later picks avoid the regions of earlier
# ones (the signals that keep a batch from being redundant).
_CANDIDATE_V2 = {
    **_CANDIDATE,
    "cluster_unlabeled": (
        "1 when the candidate's k-means cluster holds no labeled record and no earlier pick of this batch, else 0 "
        "(updated after each pick)."
    ),
    "cluster_size": "Share of the pool in the candidate's cluster times the number of clusters m, as x/(1+x): 0.5 = average.",
    "typicality_in_cluster": "Rank of the candidate's density among the records of its cluster, in [0, 1]; 1 = most typical.",
    "distance_to_selected": (
        "Distance to the nearest labeled record or earlier pick of this batch over the pool's median pairwise "
        "distance r, as r/(1+r) (updated after each pick)."
    ),
}
_CONTEXT_V2 = {
    **_CONTEXT,
    "uncovered_clusters": "Fraction of the k-means clusters without any labeled record, in [0, 1].",
    # Saturating phase signals: a weight gated by them can be large in the first loops and
    # vanish later (a linear function of budget_used cannot switch a signal off and keep it off).
    "bought_decay_10": "exp(-labels bought / 10): 1 before the first purchase, 0.37 after 10 labels, near 0 after 50.",
    "bought_decay_30": "exp(-labels bought / 30): 1 before the first purchase, 0.37 after 30 labels, 0.04 after 100.",
}

#: The pool schema, version 2: pool@1's features plus 4 candidate features (cluster coverage,
#: cluster size, typicality, batch-aware distance) and 3 context features (uncovered clusters, two
#: decaying functions of the labels bought).
POOL_SCHEMA_V2 = FeatureSchema(
    name="pool",
    version=2,
    candidate_features=tuple(_CANDIDATE_V2),
    context_features=tuple(_CONTEXT_V2),
    descriptions={**_CANDIDATE_V2, **_CONTEXT_V2},
    summary=(
        "pool@1 plus k-means cluster coverage, typicality and within-batch distance "
        "(metalearn.features.ClusterPoolFeatureExtractor)"
    ),
)

# -- proba@1: class probabilities of the unlabeled records only -------------------------------
# "Predictions" have shape (n, C) or (n, C, T): T stochastic passes (MC dropout), ensemble or
# committee members. The probabilities p are their mean over T (as baal's heuristics take it).
_PROBA_CANDIDATE = {
    "margin": "Top-1 minus top-2 of the mean class probabilities p; 0 = undecided, 1 = certain.",
    "least_confidence": "1 - max p, times C/(C-1) so it spans [0, 1] for any number of classes C.",
    "entropy": "Entropy of p divided by log C, in [0, 1].",
    "margin_rank": "Rank of the margin among the scored records (the pool), in [0, 1]; 0 = smallest margin.",
    "entropy_rank": "Rank of the entropy among the pool, in [0, 1]; 1 = highest entropy.",
    "predicted_class_share": (
        "Share of the pool predicted as this record's predicted class (argmax p) times C, as x/(1+x): "
        "0.5 = as common as under a balanced prediction, near 0 = a rarely predicted class."
    ),
    "bald": (
        "Mutual information between the prediction and the pass (entropy of p minus the mean entropy "
        "of the T passes, BALD) over log C, in [0, 1]; 0 with one pass."
    ),
    "bald_rank": "Rank of BALD among the pool, in [0, 1]; 1 = most disagreement; 0 with one pass.",
    "variation_ratio": (
        "1 - share of the T passes whose argmax is the most frequent one, over its maximum 1 - 1/min(T, C), "
        "in [0, 1]; 0 with one pass."
    ),
    "top_class_std": (
        "Standard deviation over the T passes of the probability of the predicted class, times 2, "
        "in [0, 1]; 0 with one pass."
    ),
}

_PROBA_CONTEXT = {
    "inverse_n_classes": "1 / C, the number of classes as a bounded value.",
    "pool_size_log": "log(1 + unlabeled records) / log(1 + 10^6), clipped to [0, 1].",
    "mean_margin": "Mean margin over the pool.",
    "margin_std": "Standard deviation of the margin over the pool, times 2, in [0, 1].",
    "mean_entropy": "Mean normalised entropy over the pool.",
    "low_margin_fraction": "Fraction of the pool with margin below 0.2.",
    "predicted_class_balance": "Entropy of the predicted class distribution on the pool over log C; 1 = balanced.",
    "mean_bald": "Mean normalised BALD over the pool; 0 with one pass.",
    "disagreement_available": (
        "1 when the predictions hold at least two passes (the four disagreement features are defined), else 0."
    ),
    "labeled_known": "1 when the caller gave the number of labeled records, else 0 (baal heuristics get none).",
    "labeled_per_class": "log(1 + labeled records per class) / log(1 + 200), clipped to [0, 1]; 0 when unknown.",
    "labeled_fraction": "Labeled records over labeled plus unlabeled records, in [0, 1]; 0 when unknown.",
}

#: The probabilities-only schema, version 1: 10 candidate and 12 context features computed from
#: the predictions on the unlabeled records alone, for one loop (no history: baal gives no
#: record ids to follow records across loops).
PROBA_SCHEMA = FeatureSchema(
    name="proba",
    version=1,
    candidate_features=tuple(_PROBA_CANDIDATE),
    context_features=tuple(_PROBA_CONTEXT),
    descriptions={**_PROBA_CANDIDATE, **_PROBA_CONTEXT},
    probabilities_only=True,
    summary=(
        "class probabilities of the unlabeled records only, shape (n, C) or (n, C, T passes), one loop, no "
        "history (metalearn.features.ProbaFeatureExtractor; for baal: metalearn.integrations.baal)"
    ),
)

def get_schema(name: str, version: int | None = None) -> FeatureSchema:
    """Look up a registered schema; ``version=None`` gives the newest. Raises :class:`FeatureSchemaError`.

    See :func:`metalearn.features.registry.get_schema` (the registry lives there).
    """
    from metalearn.features.registry import get_schema as registry_get_schema

    return registry_get_schema(name, version)


def __getattr__(name: str) -> Any:
    # SCHEMAS is derived from the registry, which imports the extractors (which import this module).
    if name == "SCHEMAS":
        from metalearn.features.registry import SCHEMAS

        return SCHEMAS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
