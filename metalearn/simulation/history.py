"""The multi-loop metadata history of one pool.

Every active-learning loop produces inference metadata: the model's class probabilities on
every pool record. A strategy that only sees the current loop cannot tell a record whose
prediction keeps flipping from one that is stably uncertain; the history keeps the last
``window`` loops so features can measure trends, flips and variance.

Storage is time-major ring buffers (loop, record[, class]) in float32: one loop's write is
contiguous, and memory is ``window * n_records * (n_classes + 4) * 4`` bytes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metalearn.common.uncertainty import margins, normalized_entropy
from metalearn.common.validation import check_positive_int
from metalearn.exceptions import InvalidInputError

__all__ = ["MetadataHistory", "margins", "normalized_entropy", "LOOP_STATISTICS"]

#: Model-level statistics recorded for every loop, in column order of ``loop_statistics``.
LOOP_STATISTICS: tuple[str, ...] = (
    "mean_margin",  # mean margin over the unlabeled records
    "mean_entropy",  # mean normalised entropy over the unlabeled records
    "prediction_change_rate",  # fraction of unlabeled predictions changed since the last loop
    "labeled_accuracy",  # accuracy of the model on its own labeled set
    "n_labeled",  # number of labeled records
)


class MetadataHistory:
    """Ring buffers of per-record inference metadata over the last ``window`` loops.

    Parameters
    ----------
    n_records : int
        Size of the pool.
    classes : array-like of shape (n_classes,)
        Class labels the model knows. If a later loop's model knows more classes (a class
        was discovered), the stored probabilities are widened with zeros for it.
    window : int
        Number of loops kept (H).

    Attributes
    ----------
    proba : ndarray of float32, shape (window, n_records, n_classes)
    margin : ndarray of float32, shape (window, n_records)
    entropy : ndarray of float32, shape (window, n_records)
    predicted : ndarray of int32, shape (window, n_records)
        Index into ``classes`` of the predicted class.
    loop_statistics : ndarray of float64, shape (window, len(LOOP_STATISTICS))
    n_loops : int
        Loops recorded since creation (may exceed ``window``).
    """

    def __init__(self, n_records: int, classes: np.ndarray, window: int = 5) -> None:
        self.n_records = check_positive_int(n_records, "n_records")
        self.window = check_positive_int(window, "window", minimum=2)
        self.classes = np.asarray(classes)
        w, n, c = self.window, self.n_records, self.classes.shape[0]
        self.proba = np.zeros((w, n, c), dtype=np.float32)
        self.margin = np.zeros((w, n), dtype=np.float32)
        self.entropy = np.zeros((w, n), dtype=np.float32)
        self.predicted = np.zeros((w, n), dtype=np.int32)
        self.loop_statistics = np.zeros((w, len(LOOP_STATISTICS)))
        self.n_loops = 0
        # Records that joined the pool after the history started (see reindex): no past yet.
        self.fresh = np.zeros(n, dtype=bool)

    @property
    def n_filled(self) -> int:
        """Loops available in the window, ``min(n_loops, window)``."""
        return min(self.n_loops, self.window)

    def _slot(self, age: int) -> int:
        """Buffer slot of the loop ``age`` loops ago (0 = latest)."""
        return (self.n_loops - 1 - age) % self.window

    def ordered(self, buffer: np.ndarray, rows: np.ndarray | slice | None = None) -> np.ndarray:
        """The filled part of a buffer in time order (oldest first), optionally for some records.

        Returns an array of shape (n_filled, n_selected, ...).
        """
        slots = [self._slot(age) for age in range(self.n_filled - 1, -1, -1)]
        if rows is None:
            return buffer[slots]
        return buffer[slots, rows] if isinstance(rows, slice) else buffer[np.ix_(np.asarray(slots), np.asarray(rows))]

    def latest(self, buffer: np.ndarray) -> np.ndarray:
        """The latest loop's slice of a buffer."""
        if self.n_loops == 0:
            raise InvalidInputError("the history is empty: record a loop first")
        return buffer[self._slot(0)]

    def previous(self, buffer: np.ndarray) -> np.ndarray | None:
        """The slice of the loop before the latest, or None in the first loop."""
        return buffer[self._slot(1)] if self.n_loops >= 2 else None

    def _widen_classes(self, classes: np.ndarray) -> None:
        missing = np.setdiff1d(self.classes, classes)
        if missing.size:
            raise InvalidInputError(
                f"the classifier no longer knows class(es) {missing.tolist()[:5]} it predicted in an earlier loop; "
                "refit it on all labeled records (or reset the strategy)"
            )
        position = np.searchsorted(classes, self.classes)
        widened = np.zeros(self.proba.shape[:2] + (classes.shape[0],), dtype=np.float32)
        widened[:, :, position] = self.proba
        self.proba = widened
        self.predicted = position[self.predicted].astype(np.int32)
        self.classes = classes

    def reindex(self, old_positions: np.ndarray) -> "MetadataHistory":
        """Follow records, not rows, when the pool changes between loops.

        Parameters
        ----------
        old_positions : ndarray of int, shape (n_new,)
            For each row of the new pool, its row in the current history, or -1 for a record
            that is new. Rows not listed (records that left the pool) are dropped.

        Returns
        -------
        MetadataHistory
            ``self``, now of ``n_new`` records. Each kept record carries its own window; a new
            record has no past: at the next :meth:`record` its first values fill the whole
            window, so its trends, flips and variances start at zero exactly as for every
            record in a history's first loop. Loop statistics (pool-level) are kept.
        """
        old_positions = np.asarray(old_positions)
        if old_positions.ndim != 1 or old_positions.dtype.kind not in "iu" or old_positions.size == 0:
            raise InvalidInputError("old_positions must be a non-empty 1-D integer array (one entry per new row)")
        old_positions = old_positions.astype(np.int64)
        if old_positions.max() >= self.n_records or old_positions.min() < -1:
            raise InvalidInputError(f"old_positions must lie in [-1, {self.n_records - 1}]")
        kept = old_positions >= 0
        if np.unique(old_positions[kept]).size != int(kept.sum()):
            raise InvalidInputError("old_positions lists an old row twice: a record can only be in one place")
        source = np.where(kept, old_positions, 0)
        new_rows = ~kept
        self.proba = self.proba[:, source]
        self.margin = self.margin[:, source]
        self.entropy = self.entropy[:, source]
        self.predicted = self.predicted[:, source]
        self.proba[:, new_rows] = 0.0
        self.margin[:, new_rows] = 0.0
        self.entropy[:, new_rows] = 0.0
        self.predicted[:, new_rows] = 0
        self.fresh = self.fresh[source] | new_rows
        self.n_records = int(old_positions.size)
        return self

    def _backfill_fresh(self) -> None:
        """Give records without a past their latest values in every filled slot of the window."""
        rows = np.flatnonzero(self.fresh)
        if rows.size and self.n_loops > 1:
            latest = self._slot(0)
            for age in range(1, self.n_filled):
                slot = self._slot(age)
                self.proba[slot, rows] = self.proba[latest, rows]
                self.margin[slot, rows] = self.margin[latest, rows]
                self.entropy[slot, rows] = self.entropy[latest, rows]
                self.predicted[slot, rows] = self.predicted[latest, rows]
        self.fresh[:] = False

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, object]]:
        """The history as arrays and JSON-able metadata, for :meth:`from_state` (no pickle)."""
        arrays: dict[str, np.ndarray] = {
            "proba": self.proba,
            "margin": self.margin,
            "entropy": self.entropy,
            "predicted": self.predicted,
            "loop_statistics": self.loop_statistics,
            "fresh": self.fresh.astype(np.uint8),
        }
        meta: dict[str, object] = {
            "window": self.window,
            "n_loops": self.n_loops,
            "n_records": self.n_records,
            "classes": self.classes.tolist(),
        }
        return arrays, meta

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> "MetadataHistory":
        """Rebuild a history written by :meth:`state`; checks every shape."""
        try:
            window, n_loops, n_records = int(meta["window"]), int(meta["n_loops"]), int(meta["n_records"])
            classes = np.asarray(meta["classes"])
            history = cls(n_records, classes, window=window)
            n_classes = classes.shape[0]
            expected = {
                "proba": (window, n_records, n_classes),
                "margin": (window, n_records),
                "entropy": (window, n_records),
                "predicted": (window, n_records),
                "loop_statistics": (window, len(LOOP_STATISTICS)),
                "fresh": (n_records,),
            }
            for name, shape in expected.items():
                value = np.asarray(arrays[name])
                if value.shape != shape:
                    raise InvalidInputError(f"history array {name!r} has shape {value.shape}, expected {shape}")
            if n_loops < 0:
                raise InvalidInputError(f"n_loops must be >= 0, got {n_loops}")
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"malformed metadata history: {exc}") from None
        history.proba = np.asarray(arrays["proba"], dtype=np.float32).copy()
        history.margin = np.asarray(arrays["margin"], dtype=np.float32).copy()
        history.entropy = np.asarray(arrays["entropy"], dtype=np.float32).copy()
        history.predicted = np.asarray(arrays["predicted"], dtype=np.int32).copy()
        history.loop_statistics = np.asarray(arrays["loop_statistics"], dtype=np.float64).copy()
        history.fresh = np.asarray(arrays["fresh"]).astype(bool)
        history.n_loops = n_loops
        if n_loops and (history.predicted.min() < 0 or history.predicted.max() >= max(classes.shape[0], 1)):
            raise InvalidInputError("malformed metadata history: predicted class indices out of range")
        return history

    def record(self, proba: np.ndarray, labeled: np.ndarray, y_labeled_index: np.ndarray, classes: np.ndarray) -> None:
        """Append one loop.

        Parameters
        ----------
        proba : ndarray of shape (n_records, n_classes)
            The model's class probabilities on the whole pool, columns in ``classes`` order.
        labeled : ndarray of bool, shape (n_records,)
            Which records are labeled in this loop.
        y_labeled_index : ndarray of int, shape (n_records,)
            Index into ``classes`` of each labeled record's label (ignored where unlabeled;
            -1 for a label the model does not know).
        classes : ndarray of shape (n_classes,)
            The model's classes (sorted, as scikit-learn's ``classes_``).
        """
        classes = np.asarray(classes)
        if classes.shape != self.classes.shape or np.any(classes != self.classes):
            self._widen_classes(classes)
        if proba.shape != (self.n_records, self.classes.shape[0]):
            raise InvalidInputError(
                f"predict_proba returned shape {proba.shape}, expected ({self.n_records}, {self.classes.shape[0]})"
            )
        prev_predicted = self.latest(self.predicted).copy() if self.n_loops else None
        self.n_loops += 1
        slot = self._slot(0)
        self.proba[slot] = proba
        margin = margins(self.proba[slot])
        entropy = normalized_entropy(self.proba[slot])
        predicted = self.proba[slot].argmax(axis=1).astype(np.int32)
        self.margin[slot] = margin
        self.entropy[slot] = entropy
        self.predicted[slot] = predicted
        fresh = self.fresh.copy()
        self._backfill_fresh()

        unlabeled = ~labeled
        # Records without a previous prediction (new to the pool) cannot have changed.
        compared = unlabeled & ~fresh
        n_compared = max(int(compared.sum()), 1)
        changed = 0.0 if prev_predicted is None else float((predicted != prev_predicted)[compared].sum() / n_compared)
        n_labeled = int(labeled.sum())
        accuracy = float((predicted[labeled] == y_labeled_index[labeled]).mean()) if n_labeled else 0.0
        self.loop_statistics[slot] = (
            float(margin[unlabeled].mean()) if unlabeled.any() else 0.0,
            float(entropy[unlabeled].mean()) if unlabeled.any() else 0.0,
            changed,
            accuracy,
            n_labeled,
        )

    def statistic(self, name: str) -> np.ndarray:
        """One loop statistic over the filled window, oldest first, shape (n_filled,)."""
        column = LOOP_STATISTICS.index(name)
        return self.ordered(self.loop_statistics)[:, column]

    @property
    def nbytes(self) -> int:
        """Memory held by the buffers, in bytes."""
        return int(
            self.proba.nbytes + self.margin.nbytes + self.entropy.nbytes + self.predicted.nbytes
            + self.loop_statistics.nbytes
        )
