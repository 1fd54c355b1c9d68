"""Per-candidate and per-loop features of the ``pool`` schema, computed from the history.

:class:`PoolFeatureExtractor` owns the :class:`~metalearn.simulation.history.MetadataHistory`
of one pool and the distance trackers. Each loop calls :meth:`~PoolFeatureExtractor.update`
once with the model's probabilities (cost O(n_pool * n_classes) plus the newly labeled rows'
distances); features are then computed only for the candidates asked for.
"""

from __future__ import annotations

import numpy as np

from metalearn.common.candidates import mixed_candidates
from metalearn.common.geometry import NearestLabeledDistance, knn_distance_to, knn_reference_distance, typical_distance
from metalearn.common.validation import check_positive_int
from metalearn.exceptions import InvalidInputError
from metalearn.features.schema import POOL_SCHEMA, FeatureSchema
from metalearn.features.schema_spec import RegisteredSchema
from metalearn.simulation.history import MetadataHistory

__all__ = ["PoolFeatureExtractor", "window_slope", "REGISTRATION"]


def window_slope(values: np.ndarray) -> np.ndarray:
    """Least-squares slope per step of each column of ``values`` (h, ...) ordered oldest first.

    Returns zeros when fewer than two loops are available.
    """
    h = values.shape[0]
    if h < 2:
        return np.zeros(values.shape[1:], dtype=np.float64)
    t = np.arange(h, dtype=np.float64) - (h - 1) / 2.0
    return np.tensordot(t, values, axes=(0, 0)) / float(np.dot(t, t))


def _rank_in(sorted_reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Fraction of ``sorted_reference`` strictly below each value, in [0, 1]."""
    n = sorted_reference.shape[0]
    if n <= 1:
        return np.zeros(values.shape[0])
    if values.shape[0] < 4096:
        return np.searchsorted(sorted_reference, values, side="left") / (n - 1)
    # Many queries: searching them in sorted order walks the reference sequentially, which is
    # several times faster than random access on large pools.
    order = np.argsort(values, kind="stable")
    ranks = np.empty(values.shape[0], dtype=np.int64)
    ranks[order] = np.searchsorted(sorted_reference, values[order], side="left")
    return ranks / (n - 1)


class PoolFeatureExtractor:
    """Computes the ``pool`` schema's features for one pool across loops.

    Parameters
    ----------
    X : ndarray of shape (n_pool, n_features)
        The pool, already validated and preferably standardised (distances use it).
    window : int
        History length H, in loops.
    label_budget : int
        Labels the loop intends to buy; scales ``budget_used``.
    batch_size : int
        Records per loop; scales ``batch_size_log``.
    n_density_reference : int
        Size of the random reference sample for the density estimate.
    n_density_neighbors : int
        Neighbours averaged in the density estimate.
    seed : int or None
        Seed of the reference samples (density and distance scale).

    Attributes
    ----------
    history : MetadataHistory or None
        Created at the first :meth:`update`.
    schema : FeatureSchema
    """

    schema: FeatureSchema = POOL_SCHEMA

    def __init__(
        self,
        X: np.ndarray,
        *,
        window: int = 5,
        label_budget: int = 100,
        batch_size: int = 1,
        n_density_reference: int = 512,
        n_density_neighbors: int = 10,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        self.X = X
        self.window = check_positive_int(window, "window", minimum=2)
        self.label_budget = check_positive_int(label_budget, "label_budget")
        self.batch_size = check_positive_int(batch_size, "batch_size")
        rng = np.random.default_rng(seed)
        self.distance_scale = typical_distance(X, rng)
        knn, reference = knn_reference_distance(
            X, rng, n_reference=n_density_reference, n_neighbors=n_density_neighbors, return_reference=True
        )
        median = float(np.median(knn))
        # Kept so records that join the pool later (reindex) are measured on the same scale.
        self._density_reference = X[reference]
        self._density_median = median
        m = reference.shape[0]
        self._density_neighbors = max(1, min(n_density_neighbors, m - 1)) if m > 1 else 1
        ratio = knn / median if median > 0 else np.zeros_like(knn)
        self.density = 1.0 / (1.0 + ratio)
        self._density_sorted = np.sort(self.density)
        self.nearest_labeled = NearestLabeledDistance(X)
        self.history: MetadataHistory | None = None
        self.labeled = np.zeros(X.shape[0], dtype=bool)
        self.label_counts = np.zeros(0, dtype=np.int64)
        self.n_initial_labeled: int | None = None
        self._cache: dict[str, np.ndarray] = {}

    @property
    def n_pool(self) -> int:
        return int(self.X.shape[0])

    def update(self, proba: np.ndarray, classes: np.ndarray, labeled: np.ndarray, y_index: np.ndarray) -> None:
        """Record one loop.

        Parameters
        ----------
        proba : ndarray of shape (n_pool, n_classes)
            Class probabilities of the current model on the whole pool.
        classes : ndarray of shape (n_classes,)
            The model's classes, in the column order of ``proba``.
        labeled : ndarray of bool, shape (n_pool,)
            Labeled records in this loop.
        y_index : ndarray of int, shape (n_pool,)
            Index into ``classes`` of each labeled record's label (-1 if unknown to the model;
            ignored for unlabeled records).
        """
        proba = np.asarray(proba)
        if proba.ndim != 2 or proba.shape[0] != self.n_pool:
            raise InvalidInputError(f"proba must have shape ({self.n_pool}, n_classes), got {proba.shape}")
        if not np.all(np.isfinite(proba)):
            raise InvalidInputError("predict_proba returned NaN or infinite probabilities; check the classifier")
        if self.history is None:
            self.history = MetadataHistory(self.n_pool, np.asarray(classes), window=self.window)
            self.n_initial_labeled = int(labeled.sum())
        self.history.record(proba, labeled, y_index, classes)
        self.nearest_labeled.sync(labeled)
        self.labeled = labeled.copy()
        n_classes = self.history.classes.shape[0]
        known = y_index[labeled]
        self.label_counts = np.bincount(known[known >= 0], minlength=n_classes)
        self._cache = {}

    def reindex(self, old_positions: np.ndarray, X: np.ndarray) -> None:
        """Follow records, not rows, when the pool changes between loops.

        Parameters
        ----------
        old_positions : ndarray of int, shape (n_new,)
            For each row of the new pool, its row in the old pool, or -1 for a record that is
            new. Old rows not listed have left the pool (e.g. modAL removes labeled records).
        X : ndarray of shape (n_new, n_features)
            The new pool. Kept records must hold the same feature values as before.

        Notes
        -----
        Each kept record keeps its metadata window, density and distance to the labeled set;
        a new record gets an empty history (see :meth:`MetadataHistory.reindex`), its density
        against the original reference sample and its distance to the labeled records. The
        distance scale and the reference sample stay those of the first pool, so features keep
        their meaning from loop to loop.
        """
        old_positions = np.asarray(old_positions, dtype=np.int64)
        X = np.asarray(X)
        if old_positions.ndim != 1 or old_positions.shape[0] != X.shape[0]:
            raise InvalidInputError(
                f"old_positions must have one entry per row of the new pool ({X.shape[0]}), got shape {old_positions.shape}"
            )
        if X.ndim != 2 or X.shape[1] != self.X.shape[1]:
            raise InvalidInputError(f"the new pool must have {self.X.shape[1]} features, got shape {X.shape}")
        kept = old_positions >= 0
        if old_positions.size and (old_positions.max() >= self.n_pool or old_positions.min() < -1):
            raise InvalidInputError(f"old_positions must lie in [-1, {self.n_pool - 1}]")
        source = np.where(kept, old_positions, 0)
        density = self.density[source].copy()
        new_rows = np.flatnonzero(~kept)
        if new_rows.size:
            knn = knn_distance_to(X[new_rows], self._density_reference, self._density_neighbors)
            ratio = knn / self._density_median if self._density_median > 0 else np.zeros_like(knn)
            density[new_rows] = 1.0 / (1.0 + ratio)
        self.density = density
        self._density_sorted = np.sort(density)
        self.nearest_labeled.reindex(old_positions, X)
        if self.history is not None:
            self.history.reindex(old_positions)
        self.labeled = self.labeled[source] & kept
        self.X = X
        self._cache = {}

    def history_state(self) -> tuple[dict[str, np.ndarray], dict[str, object]] | None:
        """The multi-loop history as arrays and JSON-able metadata (None before the first loop)."""
        if self.history is None:
            return None
        arrays, meta = self.history.state()
        meta = {**meta, "n_initial_labeled": self.n_initial_labeled}
        return arrays, meta

    def load_history(self, arrays: dict[str, np.ndarray], meta: dict[str, object], old_positions: np.ndarray | None = None) -> None:
        """Restore a history written by :meth:`history_state`, optionally following records.

        Parameters
        ----------
        arrays, meta
            As returned by :meth:`history_state`.
        old_positions : ndarray of int, shape (n_pool,), optional
            For each row of this pool, its row in the saved history, or -1 for a new record.
            None: the saved history has exactly this pool's rows in this order.
        """
        history = MetadataHistory.from_state(arrays, meta)
        if history.window != self.window:
            raise InvalidInputError(f"the saved history has a window of {history.window} loops, this extractor {self.window}")
        if old_positions is not None:
            history.reindex(old_positions)
        if history.n_records != self.n_pool:
            raise InvalidInputError(f"the saved history holds {history.n_records} records but the pool has {self.n_pool}")
        self.history = history
        n_initial = meta.get("n_initial_labeled")
        self.n_initial_labeled = None if n_initial is None else int(n_initial)  # type: ignore[call-overload]
        self._cache = {}

    # -- pool-wide arrays of the current loop, computed once per loop on first use ------------
    def _cached(self, key: str) -> np.ndarray:
        if key not in self._cache:
            hist = self._require_history()
            unlabeled = ~self.labeled
            if key == "margin_sorted":
                self._cache[key] = np.sort(hist.latest(hist.margin)[unlabeled])
            elif key == "distance_ratio":
                d = self.nearest_labeled.distance / self.distance_scale
                self._cache[key] = np.where(np.isfinite(d), d, 1e6)
            elif key == "distance_sorted":
                self._cache[key] = np.sort(self._cached("distance_ratio")[unlabeled])
            else:  # pragma: no cover - internal keys only
                raise KeyError(key)
        return self._cache[key]

    def _require_history(self) -> MetadataHistory:
        if self.history is None:
            raise InvalidInputError("no loop recorded yet: call update() with the model's probabilities first")
        return self.history

    def preselect(self, available: np.ndarray, margin: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        """Up to ``k`` of ``available`` to score: the pre-selection policies of this schema use.

        ``pool@1``: :func:`~metalearn.common.candidates.mixed_candidates` (half smallest
        margin, half random). Training and querying both call this, so the rule they share
        lives with the schema.

        Parameters
        ----------
        available : ndarray of int, shape (n,)
            Pool indices of the unlabeled records to choose from.
        margin : ndarray of shape (n,)
            Their current margins, aligned with ``available``.
        k : int
        rng : numpy Generator

        Returns
        -------
        ndarray of int64, shape (min(k, n),)
        """
        return mixed_candidates(available, margin, k, rng)

    def candidate_features(self, candidates: np.ndarray) -> np.ndarray:
        """Features of the given pool records.

        Parameters
        ----------
        candidates : ndarray of int, shape (k,)
            Pool indices (normally unlabeled).

        Returns
        -------
        ndarray of float32, shape (k, schema.n_candidate_features)
            Columns in the order of ``schema.candidate_features``.
        """
        hist = self._require_history()
        idx = np.asarray(candidates, dtype=np.int64)
        n_classes = hist.classes.shape[0]
        proba = hist.latest(hist.proba)[idx].astype(np.float64)
        margin = hist.latest(hist.margin)[idx].astype(np.float64)
        entropy = hist.latest(hist.entropy)[idx].astype(np.float64)
        least_conf = (1.0 - proba.max(axis=1)) * (n_classes / max(n_classes - 1, 1))

        margin_window = hist.ordered(hist.margin, idx).astype(np.float64)  # (h, k)
        entropy_window = hist.ordered(hist.entropy, idx).astype(np.float64)
        predicted_window = hist.ordered(hist.predicted, idx)
        proba_window = hist.ordered(hist.proba, idx).astype(np.float64)  # (h, k, C)
        h = margin_window.shape[0]
        flips = (
            (predicted_window[1:] != predicted_window[:-1]).mean(axis=0) if h >= 2 else np.zeros(idx.size)
        )
        previous = proba_window[-2] if h >= 2 else proba_window[-1]
        change = 0.5 * np.abs(proba_window[-1] - previous).sum(axis=1)

        distance_ratio = self._cached("distance_ratio")[idx]
        predicted_now = predicted_window[-1]
        n_labeled = max(int(self.label_counts.sum()), 1)
        share = self.label_counts[predicted_now] / n_labeled * n_classes

        columns = [
            margin,
            least_conf,
            entropy,
            _rank_in(self._cached("margin_sorted"), margin),
            margin_window.mean(axis=0),
            np.minimum(2.0 * margin_window.std(axis=0), 1.0),
            np.clip(window_slope(margin_window), -1.0, 1.0),
            np.clip(window_slope(entropy_window), -1.0, 1.0),
            flips,
            np.minimum(4.0 * proba_window.var(axis=0).mean(axis=1), 1.0),
            change,
            distance_ratio / (1.0 + distance_ratio),
            _rank_in(self._cached("distance_sorted"), distance_ratio),
            self.density[idx],
            _rank_in(self._density_sorted, self.density[idx]),
            share / (1.0 + share),
        ]
        return np.stack(columns, axis=1).astype(np.float32)

    def context_features(self) -> np.ndarray:
        """Per-loop context features, shape (schema.n_context_features,), float32."""
        hist = self._require_history()
        n_classes = hist.classes.shape[0]
        counts = self.label_counts.astype(np.float64)
        n_labeled = counts.sum()
        n_bought = max(int(self.labeled.sum()) - int(self.n_initial_labeled or 0), 0)
        if n_labeled > 0 and n_classes > 1:
            p = counts[counts > 0] / n_labeled
            balance = float(-(p * np.log(p)).sum() / np.log(n_classes))
        else:
            balance = 0.0
        unlabeled = ~self.labeled
        margin_now = hist.latest(hist.margin)[unlabeled]
        predicted_now = hist.latest(hist.predicted)[unlabeled]
        if predicted_now.size and n_classes > 1:
            pc = np.bincount(predicted_now, minlength=n_classes) / predicted_now.size
            pc = pc[pc > 0]
            predicted_balance = float(-(pc * np.log(pc)).sum() / np.log(n_classes))
        else:
            predicted_balance = 0.0
        mean_margin = hist.statistic("mean_margin")
        mean_entropy = hist.statistic("mean_entropy")
        change_rate = hist.statistic("prediction_change_rate")
        values = [
            min(n_bought / self.label_budget, 1.0),
            min(np.log1p(n_labeled / n_classes) / np.log1p(200.0), 1.0),
            balance,
            float((counts == 0).mean()),
            1.0 / n_classes,
            mean_margin[-1],
            mean_entropy[-1],
            float(np.clip(window_slope(mean_margin), -1.0, 1.0)),
            float(np.clip(window_slope(mean_entropy), -1.0, 1.0)),
            change_rate[-1],
            float(np.clip(window_slope(change_rate), -1.0, 1.0)),
            hist.statistic("labeled_accuracy")[-1],
            float((margin_now < 0.2).mean()) if margin_now.size else 0.0,
            predicted_balance,
            hist.n_filled / hist.window,
            min(np.log1p(self.batch_size) / np.log1p(100.0), 1.0),
        ]
        return np.asarray(values, dtype=np.float32)

    @property
    def nbytes(self) -> int:
        """Memory held by the history and the distance/density arrays, in bytes."""
        hist = 0 if self.history is None else self.history.nbytes
        return hist + self.density.nbytes * 2 + self.nearest_labeled.sq_distance.nbytes + self.labeled.nbytes


#: ``pool@1`` in the schema registry (:mod:`metalearn.features.registry`): trainer configurations
#: call it ``"pool"``; PoolAL-v0 observes it and streaming computes it.
REGISTRATION = RegisteredSchema(
    schema=POOL_SCHEMA,
    extractor_class=PoolFeatureExtractor,
    config_name="pool",
    trainers=frozenset({"imitation", "lal", "ppo"}),
    pool_al=True,
    streaming=True,
)
