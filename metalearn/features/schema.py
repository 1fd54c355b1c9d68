"""Named, versioned feature schemas.

A policy file records the schema it was trained with (name, version and the ordered list of
feature names); :func:`get_schema` refuses a schema this release cannot compute, so a policy
never runs on features it was not trained with. Changing what a feature means, or the order,
requires a new version.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from metalearn.exceptions import FeatureSchemaError

__all__ = ["FeatureSchema", "POOL_SCHEMA", "get_schema", "SCHEMAS"]


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
    """

    name: str
    version: int
    candidate_features: tuple[str, ...]
    context_features: tuple[str, ...]
    descriptions: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

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
)

#: Every schema this release can compute, by name, then version.
SCHEMAS: dict[str, dict[int, FeatureSchema]] = {POOL_SCHEMA.name: {POOL_SCHEMA.version: POOL_SCHEMA}}


def get_schema(name: str, version: int | None = None) -> FeatureSchema:
    """Look up a schema; ``version=None`` gives the newest. Raises :class:`FeatureSchemaError`."""
    if name not in SCHEMAS:
        raise FeatureSchemaError(f"unknown feature schema {name!r}; this release computes: {', '.join(SCHEMAS)}")
    versions = SCHEMAS[name]
    if version is None:
        return versions[max(versions)]
    if version not in versions:
        newest = max(versions)
        hint = " (it was written by a newer metalearn: upgrade the package)" if version > newest else ""
        raise FeatureSchemaError(
            f"feature schema {name!r} version {version} cannot be computed by this release, which knows "
            f"version(s) {sorted(versions)}{hint}"
        )
    return versions[version]
