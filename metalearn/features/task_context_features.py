"""The ``pool@3`` features: ``pool@2`` plus a loop context that describes the task as the run reveals it.

``pool@2``'s context says how many labels were bought; it says nothing about the task, so a
policy of that schema behaves the same on every dataset and with every model (issue 20). The
context features added here are computed from what every loop already has (the labels bought
so far and the model's predictions over the window), are dataset-agnostic and bounded, and fall
into four groups, each of which an ablation can remove (:data:`CONTEXT_GROUPS`):

- ``feedback``: the run's own feedback on the labels just bought. How often the previous loop's
  model was wrong on the records labeled since (its *surprise*), pooled over the window, its
  trend, and separately for the records it was unsure about (margin below the pool's median)
  and those it was sure about. The honest signal of whether the last picks taught the model
  anything: on ``ring`` the typical records are no surprise; with a model whose probabilities
  say nothing, low- and high-margin picks surprise it alike.
- ``geometry``: agreement between the data's clusters and its labels. Purity of the labeled
  records within a coarse k-means partition (about four labels a cluster), and the share of the
  pool whose predicted class disagrees with its cluster's labeled majority.
- ``classes``: class structure as the run sees it: the smallest class's share of the labels and
  the smallest predicted class's share of the pool.
- ``model``: how the task model shows in its predictions: the resolution of its probabilities
  (a forest votes in steps, gradient boosting below its leaf size gives one value to every
  record, a linear model is smooth) and the share of confident predictions (kNN and naive Bayes
  are overconfident).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import pandas as pd

from metalearn.common.clustering import kmeans_partition
from metalearn.features.cluster_features import ClusterPoolFeatureExtractor
from metalearn.features.pool_features import window_slope
from metalearn.features.schema import POOL_SCHEMA_V2, FeatureSchema
from metalearn.features.schema_spec import BatchAwareSchema

__all__ = ["TaskContextFeatureExtractor", "POOL_SCHEMA_V3", "CONTEXT_GROUPS", "REGISTRATION"]

_CONTEXT_V3 = {
    "surprise": (
        "Share of the records labeled since the previous loop whose label the previous loop's model predicted wrongly; "
        "0 before the first purchase."
    ),
    "surprise_window": "The same share over every record bought in the history window (pooled).",
    "surprise_trend": "Least-squares slope per loop of the surprise over the window, clipped to [-1, 1].",
    "surprise_unsure": (
        "Surprise over the window on the bought records whose margin under the previous model was below that "
        "loop's median unlabeled margin; the pooled surprise when there is none."
    ),
    "surprise_sure": (
        "Surprise over the window on the bought records whose margin was at or above that median; the pooled "
        "surprise when there is none."
    ),
    "cluster_purity": (
        "Share of the labeled records that belong to their cluster's majority class, over the clusters of a coarse "
        "k-means partition (a power of two near labels / 4) holding two or more labels, rescaled so that 0 = as "
        "mixed as C balanced classes and 1 = pure; 0.5 while no cluster holds two labels."
    ),
    "cluster_disagreement": (
        "Share of the unlabeled records in a cluster of that partition with labels whose predicted class differs "
        "from the cluster's labeled majority."
    ),
    "smallest_class_share": "Labels of the least labeled class over the mean labels per class, clipped to [0, 1].",
    "smallest_predicted_share": (
        "Unlabeled records predicted as the least predicted class over the mean per class, clipped to [0, 1]."
    ),
    "probability_resolution": (
        "log(1 + distinct values of the top-class probability over the unlabeled records) / log(1 + unlabeled "
        "records): 0 when the model gives every record the same probabilities, near 1 for a smooth model."
    ),
    "confident_fraction": "Share of the unlabeled records whose top-class probability is at least 0.99.",
}

#: The context features of each signal group added by ``pool@3`` (the ablations remove one group).
CONTEXT_GROUPS: dict[str, tuple[str, ...]] = {
    "feedback": ("surprise", "surprise_window", "surprise_trend", "surprise_unsure", "surprise_sure"),
    "geometry": ("cluster_purity", "cluster_disagreement"),
    "classes": ("smallest_class_share", "smallest_predicted_share"),
    "model": ("probability_resolution", "confident_fraction"),
}

#: The pool schema, version 3: pool@2's features plus 11 context features that describe the task
#: (the run's feedback, cluster-label agreement, class structure, the model's signature).
POOL_SCHEMA_V3 = FeatureSchema(
    name="pool",
    version=3,
    candidate_features=POOL_SCHEMA_V2.candidate_features,
    context_features=POOL_SCHEMA_V2.context_features + tuple(_CONTEXT_V3),
    descriptions={**POOL_SCHEMA_V2.descriptions, **_CONTEXT_V3},
    summary=(
        "pool@2 plus a task-describing loop context: surprise of the model on the labels just bought, cluster-label "
        "agreement, class structure and the model's probability resolution (metalearn.features.TaskContextFeatureExtractor)"
    ),
)

#: Labels per cluster the coarse partition of ``cluster_purity`` aims at.
_LABELS_PER_COARSE_CLUSTER = 4
#: Top-class probabilities closer than this count as one value (``probability_resolution``).
_RESOLUTION_DECIMALS = 6


def _coarse_level(n_labeled: int, n_pool: int) -> int:
    target = max(n_labeled // _LABELS_PER_COARSE_CLUSTER, 2)
    level = 1 << int(np.ceil(np.log2(target)))
    return int(max(2, min(level, n_pool)))


class TaskContextFeatureExtractor(ClusterPoolFeatureExtractor):
    """Computes the ``pool@3`` schema's features for one pool across loops.

    The candidate features and the pick loop are ``pool@2``'s; the context adds the groups of
    :data:`CONTEXT_GROUPS`. The run's feedback needs the previous loop's predictions of the
    records labeled since, so it is recorded at every :meth:`update` (one row per loop, kept for
    the history window, saved with :meth:`history_state`).

    Parameters
    ----------
    X, window, label_budget, batch_size, n_density_reference, n_density_neighbors, seed
        See :class:`~metalearn.features.cluster_features.ClusterPoolFeatureExtractor`.

    Attributes
    ----------
    label_index : ndarray of int64, shape (n_pool,)
        Index into the model's classes of each labeled record's label in the latest loop, -1
        for unlabeled records and labels the model does not know.
    feedback : deque of tuple of int
        Per loop, oldest first, at most ``window`` rows: records bought since the previous loop,
        how many of them its model predicted wrongly, and the same two counts for the records it
        was unsure about (margin below the median) and sure about.
    """

    schema: FeatureSchema = POOL_SCHEMA_V3

    def __init__(self, X: np.ndarray, **kwargs: Any) -> None:
        super().__init__(X, **kwargs)
        self.feedback: deque[tuple[int, int, int, int, int, int]] = deque(maxlen=self.window)
        self.coarse_partitions: dict[int, np.ndarray] = {}
        self.label_index = np.full(self.n_pool, -1, dtype=np.int64)

    def update(self, proba: np.ndarray, classes: np.ndarray, labeled: np.ndarray, y_index: np.ndarray) -> None:
        """Record one loop; see :meth:`PoolFeatureExtractor.update`. Also records the run's feedback."""
        hist = self.history
        row = (0, 0, 0, 0, 0, 0)
        if hist is not None and hist.n_loops:
            bought = np.flatnonzero(np.asarray(labeled, dtype=bool) & ~self.labeled)
            y_index = np.asarray(y_index)
            known = bought[y_index[bought] >= 0]
            if known.size:
                # Compare class labels, not indices: the model may have learned a class since.
                previous_label = hist.classes[hist.latest(hist.predicted)[known]]
                true_label = np.asarray(classes)[y_index[known]]
                wrong = previous_label != true_label
                previous_margin = hist.latest(hist.margin)
                unlabeled_before = ~self.labeled
                median = float(np.median(previous_margin[unlabeled_before])) if unlabeled_before.any() else 0.0
                unsure = previous_margin[known] < median
                row = (
                    int(known.size), int(wrong.sum()),
                    int(unsure.sum()), int(wrong[unsure].sum()),
                    int((~unsure).sum()), int(wrong[~unsure].sum()),
                )
        super().update(proba, classes, labeled, y_index)
        self.label_index = np.where(self.labeled, np.asarray(y_index, dtype=np.int64), -1)
        if hist is not None:  # the first loop has nothing bought to be surprised by
            self.feedback.append(row)

    def reindex(self, old_positions: np.ndarray, X: np.ndarray) -> None:
        old_positions = np.asarray(old_positions, dtype=np.int64)
        kept = old_positions >= 0
        label_index = np.where(kept, self.label_index[np.where(kept, old_positions, 0)], -1)
        super().reindex(old_positions, X)
        self.label_index = np.where(self.labeled, label_index, -1)
        self.coarse_partitions = {}

    def history_state(self) -> tuple[dict[str, np.ndarray], dict[str, object]] | None:
        state = super().history_state()
        if state is None:
            return None
        arrays, meta = state
        return arrays, {**meta, "feedback": [list(row) for row in self.feedback]}

    def load_history(self, arrays: dict[str, np.ndarray], meta: dict[str, object], old_positions: np.ndarray | None = None) -> None:
        super().load_history(arrays, meta, old_positions)
        rows = meta.get("feedback", [])
        self.feedback = deque(maxlen=self.window)
        if isinstance(rows, list):
            for row in rows[-self.window:]:
                if isinstance(row, list) and len(row) == 6 and all(isinstance(v, int) and v >= 0 for v in row):
                    self.feedback.append(tuple(row))

    # -- the four groups ------------------------------------------------------------------------
    def _feedback_context(self) -> list[float]:
        rows = np.asarray(self.feedback, dtype=np.float64).reshape(-1, 6)
        if rows.shape[0] == 0 or rows[:, 0].sum() == 0:
            return [0.0, 0.0, 0.0, 0.0, 0.0]
        last = rows[-1]
        surprise = last[1] / last[0] if last[0] else 0.0
        pooled = rows[:, 1].sum() / rows[:, 0].sum()
        per_loop = np.where(rows[:, 0] > 0, rows[:, 1] / np.maximum(rows[:, 0], 1), pooled)
        unsure = rows[:, 3].sum() / rows[:, 2].sum() if rows[:, 2].sum() else pooled
        sure = rows[:, 5].sum() / rows[:, 4].sum() if rows[:, 4].sum() else pooled
        trend = float(np.clip(window_slope(per_loop), -1.0, 1.0))
        return [float(surprise), float(pooled), trend, float(unsure), float(sure)]

    def _coarse_partition(self) -> np.ndarray:
        m = _coarse_level(int(self.labeled.sum()), self.n_pool)
        if m not in self.coarse_partitions:
            self.coarse_partitions[m] = kmeans_partition(self.X, m, seed=self._cluster_seed + 7919 * m)
        return self.coarse_partitions[m]

    def _geometry_context(self) -> list[float]:
        hist = self._require_history()
        n_classes = hist.classes.shape[0]
        clusters = self._coarse_partition()
        labeled = np.flatnonzero(self.labeled)
        label_index = self.label_index
        labeled = labeled[label_index[labeled] >= 0]
        if labeled.size == 0 or n_classes < 2:
            return [0.5, 0.0]
        m = int(clusters.max()) + 1
        counts = np.zeros((m, n_classes), dtype=np.int64)
        np.add.at(counts, (clusters[labeled], label_index[labeled]), 1)
        per_cluster = counts.sum(axis=1)
        several = per_cluster >= 2
        if several.any():
            purity = counts[several].max(axis=1).sum() / per_cluster[several].sum()
            chance = 1.0 / n_classes
            purity_scaled = float(np.clip((purity - chance) / (1.0 - chance), 0.0, 1.0))
        else:
            purity_scaled = 0.5
        majority = counts.argmax(axis=1)
        unlabeled = ~self.labeled
        in_labeled_cluster = unlabeled & (per_cluster[clusters] > 0)
        if in_labeled_cluster.any():
            predicted = hist.latest(hist.predicted)
            disagreement = float((predicted[in_labeled_cluster] != majority[clusters[in_labeled_cluster]]).mean())
        else:
            disagreement = 0.0
        return [purity_scaled, disagreement]

    def _classes_context(self) -> list[float]:
        hist = self._require_history()
        n_classes = hist.classes.shape[0]
        counts = self.label_counts.astype(np.float64)
        labeled_share = float(min(counts.min() / (counts.sum() / n_classes), 1.0)) if counts.sum() > 0 else 0.0
        predicted = hist.latest(hist.predicted)[~self.labeled]
        if predicted.size:
            per_class = np.bincount(predicted, minlength=n_classes).astype(np.float64)
            predicted_share = float(min(per_class.min() / (predicted.size / n_classes), 1.0))
        else:
            predicted_share = 0.0
        return [labeled_share, predicted_share]

    def _model_context(self) -> list[float]:
        hist = self._require_history()
        unlabeled = ~self.labeled
        # The top class of every row first (n values), then the unlabeled ones: no copy of the
        # (n, n_classes) probabilities. Distinct values by hashing (pandas.unique), not sorting.
        top = hist.latest(hist.proba).max(axis=1)[unlabeled] if unlabeled.any() else np.zeros(0)
        if top.size == 0:
            return [0.0, 0.0]
        distinct = pd.unique(np.round(top.astype(np.float64), _RESOLUTION_DECIMALS)).size
        resolution = float(np.log1p(distinct - 1) / np.log1p(max(top.size - 1, 1))) if top.size > 1 else 0.0
        return [min(max(resolution, 0.0), 1.0), float((top >= 0.99).mean())]

    def context_features(self) -> np.ndarray:
        """Per-loop context features, shape (30,), float32: ``pool@2``'s 19, then the groups' 11."""
        base = super().context_features()
        extra = self._feedback_context() + self._geometry_context() + self._classes_context() + self._model_context()
        return np.concatenate([base, np.asarray(extra, dtype=np.float32)])


#: pool@3 in the schema registry: pool@2's pre-selection and batch-aware pick loop, every trainer.
REGISTRATION = BatchAwareSchema(
    schema=POOL_SCHEMA_V3,
    extractor_class=TaskContextFeatureExtractor,
    trainers=frozenset({"imitation", "lal", "ppo", "es"}),
    pool_al=True,
    streaming=True,
    exact_margins=True,
)
