"""The learned stopping rule's inputs: per-loop metadata features and their history.

:class:`StoppingFeatures` keeps a :class:`~metalearn.features.pool_features.PoolFeatureExtractor`
for one pool (the ``pool`` schema's multi-loop metadata history) and turns each loop into one
vector: the schema's context features (mean margin and entropy and their trends over the
window, prediction change rate and its trend, labeled accuracy, class balance...) except the
two a stopping rule cannot know (``budget_used``: there is no budget yet; ``batch_size_log``:
replaced by the labels actually added since the previous call), plus stopping-specific ones:
how many labels there are, the agreement of consecutive models on the pool (Cohen's kappa,
the signal of stabilizing predictions) and its mean over the window.

Every feature is dataset-agnostic and bounded, like the schema's. The same code computes
the features while simulating training runs and at inference, so they cannot drift apart;
:data:`STOPPING_FEATURE_SET` names them and a rule file records it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metalearn.exceptions import InvalidInputError
from metalearn.features.pool_features import PoolFeatureExtractor, window_slope
from metalearn.features.schema import POOL_SCHEMA
from metalearn.simulation.history import LOOP_STATISTICS
from metalearn.stopping.base import cohen_kappa

__all__ = ["StoppingFeatures", "STOPPING_FEATURE_SET", "STOPPING_FEATURES", "FEATURE_DESCRIPTIONS"]

_DROPPED_CONTEXT = ("budget_used", "batch_size_log")
_CONTEXT_USED = tuple(name for name in POOL_SCHEMA.context_features if name not in _DROPPED_CONTEXT)

_EXTRA = {
    "labeled_log": "log(1 + labeled records) / log(1 + 2000), clipped to [0, 1].",
    "labeled_fraction": "Labeled records over pool records, in [0, 1].",
    "labels_added_log": "log(1 + labels added since the previous call) / log(1 + 100), clipped to [0, 1].",
    "kappa": "Cohen's kappa between this and the previous model's predictions on the pool; 0 at the first call.",
    "kappa_mean": "Mean of that kappa over the window (the loops available); 0 at the first call.",
    "kappa_min": "Smallest of those kappas over the window; 0 at the first call.",
    "labeled_accuracy_trend": "Slope per loop of the labeled accuracy over the window, clipped to [-1, 1].",
    "pool_size_log": "log(1 + pool records) / log(1 + 10^5), clipped to [0, 1].",
}

#: Names of the features, in column order.
STOPPING_FEATURES: tuple[str, ...] = (*_CONTEXT_USED, *_EXTRA)
#: One sentence per feature.
FEATURE_DESCRIPTIONS: dict[str, str] = {**{n: POOL_SCHEMA.descriptions[n] for n in _CONTEXT_USED}, **_EXTRA}
#: What a rule file records (and what :func:`~metalearn.stopping.file.read_stopping_rule` checks).
STOPPING_FEATURE_SET: dict[str, Any] = {
    "name": "stopping",
    "version": 1,
    "base_schema": POOL_SCHEMA.id,
    "features": list(STOPPING_FEATURES),
}


class StoppingFeatures:
    """Per-loop features of the learned stopping rule for one pool.

    Parameters
    ----------
    X : ndarray of shape (n_pool, n_features)
        The pool (validated).
    window : int
        History length H, in loops.
    seed : int or None
        Seed of the extractor's reference samples.

    Attributes
    ----------
    extractor : PoolFeatureExtractor
    kappas : list of float
        Kappa of each pair of consecutive calls (the last ``window`` are kept).
    """

    def __init__(self, X: np.ndarray, *, window: int = 5, seed: int | None = None) -> None:
        # label_budget only scales budget_used, which is dropped; batch_size is replaced.
        self.extractor = PoolFeatureExtractor(X, window=window, label_budget=1, batch_size=1, seed=seed)
        self.window = int(window)
        self.kappas: list[float] = []
        self.previous_n_labeled: int | None = None

    def update(self, proba: np.ndarray, classes: np.ndarray, labeled: np.ndarray, y_index: np.ndarray) -> np.ndarray:
        """Record one loop and return its feature vector.

        Parameters
        ----------
        proba : ndarray of shape (n_pool, n_classes)
        classes : ndarray of shape (n_classes,)
        labeled : ndarray of bool, shape (n_pool,)
        y_index : ndarray of int, shape (n_pool,)
            As for :meth:`PoolFeatureExtractor.update`.

        Returns
        -------
        ndarray of float32, shape (len(STOPPING_FEATURES),)
        """
        ext = self.extractor
        ext.update(proba, classes, labeled, y_index)
        hist = ext.history
        assert hist is not None
        previous = hist.previous(hist.predicted)
        if previous is not None:
            self.kappas.append(cohen_kappa(hist.latest(hist.predicted), previous))
            self.kappas = self.kappas[-self.window:]
        context = ext.context_features()
        names = POOL_SCHEMA.context_features
        used = np.array([context[names.index(n)] for n in _CONTEXT_USED], dtype=np.float64)
        n_labeled = int(labeled.sum())
        added = 0 if self.previous_n_labeled is None else max(n_labeled - self.previous_n_labeled, 0)
        self.previous_n_labeled = n_labeled
        labeled_accuracy = hist.ordered(hist.loop_statistics)[:, LOOP_STATISTICS.index("labeled_accuracy")]
        extra = [
            min(np.log1p(n_labeled) / np.log1p(2000.0), 1.0),
            n_labeled / ext.n_pool,
            min(np.log1p(added) / np.log1p(100.0), 1.0),
            self.kappas[-1] if self.kappas else 0.0,
            float(np.mean(self.kappas)) if self.kappas else 0.0,
            float(np.min(self.kappas)) if self.kappas else 0.0,
            float(np.clip(window_slope(labeled_accuracy), -1.0, 1.0)),
            min(np.log1p(ext.n_pool) / np.log1p(1e5), 1.0),
        ]
        vector = np.concatenate([used, np.asarray(extra, dtype=np.float64)]).astype(np.float32)
        if not np.all(np.isfinite(vector)):  # pragma: no cover - every feature is bounded by construction
            raise InvalidInputError("a stopping feature is not finite; this is a metalearn bug")
        return vector

    # -- state (next-batch keeps it between runs) ------------------------------------------
    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        """The history as arrays and JSON-able metadata (None before the first loop)."""
        exported = self.extractor.history_state()
        if exported is None:
            return None
        arrays, meta = exported
        return arrays, {"history": meta, "kappas": list(self.kappas), "previous_n_labeled": self.previous_n_labeled}

    def load_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any], old_positions: np.ndarray | None = None) -> None:
        """Restore :meth:`state`, optionally following records (see ``PoolFeatureExtractor.load_history``)."""
        self.extractor.load_history(arrays, dict(meta["history"]), old_positions)
        self.kappas = [float(k) for k in meta.get("kappas", [])][-self.window:]
        previous = meta.get("previous_n_labeled")
        self.previous_n_labeled = None if previous is None else int(previous)

