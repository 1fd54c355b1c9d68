"""Features of the ``proba`` schema: computed from class probabilities alone.

Some active-learning libraries hand a querying strategy nothing but the model's predictions on
the unlabeled records: baal calls a heuristic with an array of shape ``(n, C, T)`` (``T``
stochastic passes of MC dropout, or ensemble members), without the records' feature values,
their labels or ids. :class:`ProbaFeatureExtractor` computes the ``proba@1`` schema from such
an array, for one loop:

- uncertainty of the mean probabilities ``p`` (margin, least confidence, entropy) and their
  ranks in the pool;
- how often the record's predicted class is predicted in the pool;
- disagreement between the ``T`` passes (BALD mutual information, variation ratio, spread of
  the predicted class's probability), all 0 with a single pass;
- pool-level context, with flags saying whether disagreement and the labeled count are known.

No multi-loop history: without record ids a record cannot be followed from loop to loop, so
every feature is defined with a history of length 1.

Training (``metalearn train --schema proba``): simulated episodes give the features the
predictions of the task model on the unlabeled records. For a random forest these are the
per-tree probabilities (:func:`ensemble_predictions`, no extra fit), so the disagreement
features are real; for the other task models (logistic regression, naive Bayes, kNN) one pass,
so they are 0 with ``disagreement_available`` = 0, the same thing a baal loop without MC
dropout hands over. No committee is refitted: that would multiply the cost of an episode for a
signal whose scale (bootstrap members) would not match MC dropout's anyway; the ranks and the
flag carry the part that transfers. The labeled count is hidden in half of the episodes, as a
heuristic given no dataset sees it.

:class:`ProbaPoolFeatures` applies the extractor to a whole simulated or user pool (indices are
pool rows, the features are computed on its unlabeled rows), as the trainers and
:class:`~metalearn.policies.strategy.PolicyStrategy` need; :func:`ensemble_predictions` reads
the per-member probabilities of a fitted forest, the disagreement signal available in
simulation without extra fits.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metalearn.common.uncertainty import margins, normalized_entropy
from metalearn.exceptions import InvalidInputError
from metalearn.features.pool_features import _rank_in
from metalearn.features.schema import PROBA_SCHEMA, FeatureSchema
from metalearn.features.schema_spec import RegisteredSchema

__all__ = ["ProbaFeatureExtractor", "ProbaPoolFeatures", "check_predictions", "ensemble_predictions", "MAX_MEMBERS", "REGISTRATION"]

#: Members of a forest read by :func:`ensemble_predictions` (evenly spaced beyond it).
MAX_MEMBERS = 128
#: Tolerance on the class probabilities' row sums.
_SUM_TOLERANCE = 1e-3


def check_predictions(predictions: Any, name: str = "predictions") -> np.ndarray:
    """Predictions as a float64 array of shape (n, C, T), checked.

    Parameters
    ----------
    predictions : array-like or torch tensor
        Class probabilities of shape ``(n, C)`` (one pass) or ``(n, C, T)`` (``T`` passes:
        MC dropout iterations, ensemble members), baal's layout.

    Raises
    ------
    InvalidInputError
        Another number of dimensions, no record, fewer than two classes, NaN or infinite
        values, or values that are not probabilities (negative, or rows not summing to 1).
    """
    if hasattr(predictions, "detach") and hasattr(predictions, "cpu"):  # a torch tensor
        predictions = predictions.detach().cpu().numpy()
    try:
        array = np.asarray(predictions, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} must be a numeric array: {exc}") from None
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise InvalidInputError(
            f"{name} must have shape (n_samples, n_classes) or (n_samples, n_classes, n_iterations), "
            f"got shape {array.shape}"
        )
    n, c, t = array.shape
    if n == 0 or t == 0:
        raise InvalidInputError(f"{name} is empty (shape {array.shape}): there is no record to rank")
    if c < 2:
        raise InvalidInputError(
            f"{name} has {c} class column(s); give one probability per class (for a binary model with one "
            "sigmoid output, stack [1 - p, p])"
        )
    if not np.all(np.isfinite(array)):
        raise InvalidInputError(f"{name} holds NaN or infinite values")
    if array.min() < -_SUM_TOLERANCE or array.max() > 1.0 + _SUM_TOLERANCE:
        raise InvalidInputError(
            f"{name} must be class probabilities in [0, 1]; got values in [{array.min():.3g}, {array.max():.3g}] "
            "(softmax logits first)"
        )
    sums = array.sum(axis=1)
    worst = float(np.abs(sums - 1.0).max())
    if worst > _SUM_TOLERANCE:
        raise InvalidInputError(
            f"{name} must sum to 1 over the class axis (axis 1); the worst row is off by {worst:.3g} "
            "(is the class axis second, as (n_samples, n_classes, n_iterations)?)"
        )
    return np.clip(array, 0.0, 1.0)


def ensemble_predictions(model: Any, X: np.ndarray, max_members: int = MAX_MEMBERS) -> np.ndarray | None:
    """Per-member class probabilities of a fitted forest, shape (n, C, T) float64, or None.

    A random forest (or extra trees) carries an ensemble: each tree's probabilities are a
    pass, and their mean is the forest's ``predict_proba``. Up to ``max_members`` trees are
    read (evenly spaced beyond that). Models without such members (logistic regression,
    naive Bayes, bagging over feature subsets, wrapped classifiers) give None: one pass.
    """
    members = getattr(model, "estimators_", None)
    classes = getattr(model, "classes_", None)
    if (
        not isinstance(members, list)
        or len(members) < 2
        or classes is None
        or hasattr(model, "estimators_features_")  # bagging: members see other columns
        or np.ndim(classes) != 1
        or not all(callable(getattr(m, "predict_proba", None)) for m in members)
    ):
        return None
    if len(members) > max_members:
        members = [members[i] for i in np.linspace(0, len(members) - 1, max_members).round().astype(int)]
    n_classes = len(classes)
    out = np.empty((X.shape[0], n_classes, len(members)), dtype=np.float64)
    for t, member in enumerate(members):
        proba = np.asarray(member.predict_proba(X), dtype=np.float64)
        if proba.shape != (X.shape[0], n_classes):
            return None  # a member that knows other classes: no aligned ensemble
        out[:, :, t] = proba
    return out


class ProbaFeatureExtractor:
    """Computes the ``proba`` schema's features from one loop's predictions on the pool.

    The "pool" is the set of records whose predictions are given (normally the unlabeled
    records, or a random subset of them as baal's ``max_sample`` draws): ranks and context
    features are relative to it.

    Attributes
    ----------
    schema : FeatureSchema
    n_records, n_classes, n_passes : int
        Shape of the last predictions.
    proba : ndarray of shape (n_records, n_classes)
        Mean probabilities over the passes.
    margin : ndarray of shape (n_records,)
        Their margins (candidate pre-selection uses them).
    """

    schema: FeatureSchema = PROBA_SCHEMA

    def __init__(self) -> None:
        self.n_records = 0
        self.n_classes = 0
        self.n_passes = 0
        self._arrays: dict[str, np.ndarray] = {}
        self._context: np.ndarray | None = None

    def update(self, predictions: Any, *, n_labeled: int | None = None, n_unlabeled: int | None = None) -> None:
        """Record one loop's predictions (cost O(n C T) plus three sorts of n values).

        Parameters
        ----------
        predictions : array-like of shape (n, C) or (n, C, T)
            Class probabilities of the pool records, checked by :func:`check_predictions`.
        n_labeled : int or None
            Labeled records so far, if known (``labeled_known`` is 0 and the labeled
            features are 0 otherwise).
        n_unlabeled : int or None
            Unlabeled records in all (default n): when the predictions cover a random subset of
            the pool, the pool size and labeled fraction still describe the whole pool.
        """
        preds = check_predictions(predictions)
        n, c, t = preds.shape
        if n_labeled is not None and (int(n_labeled) != n_labeled or n_labeled < 0):
            raise InvalidInputError(f"n_labeled must be a non-negative int or None, got {n_labeled!r}")
        if n_unlabeled is None:
            n_unlabeled = n
        elif int(n_unlabeled) != n_unlabeled or n_unlabeled < n:
            raise InvalidInputError(f"n_unlabeled must be an int >= the {n} records predicted, got {n_unlabeled!r}")
        p = preds.mean(axis=2)
        log_c = np.log(c)
        margin = margins(p)
        entropy = normalized_entropy(p)
        least_conf = (1.0 - p.max(axis=1)) * (c / (c - 1))
        predicted = p.argmax(axis=1)
        counts = np.bincount(predicted, minlength=c)
        share = counts[predicted] / n * c
        if t >= 2:
            pass_entropy = -(preds * np.log(np.clip(preds, 1e-12, 1.0))).sum(axis=1)  # (n, T), natural log
            bald = np.clip((entropy * log_c - pass_entropy.mean(axis=1)) / log_c, 0.0, 1.0)
            votes = preds.argmax(axis=1)  # (n, T)
            modal = (votes[:, :, None] == np.arange(c)).sum(axis=1).max(axis=1) / t
            variation = np.clip((1.0 - modal) / (1.0 - 1.0 / min(t, c)), 0.0, 1.0)
            top_std = np.minimum(2.0 * preds[np.arange(n), predicted, :].std(axis=1), 1.0)
        else:
            bald = variation = top_std = np.zeros(n)
        self.n_records, self.n_classes, self.n_passes = n, c, t
        self.proba = p
        self.margin = margin
        self._arrays = {
            "margin": margin,
            "least_confidence": least_conf,
            "entropy": entropy,
            "share": share / (1.0 + share),
            "bald": bald,
            "variation_ratio": variation,
            "top_class_std": top_std,
            "margin_sorted": np.sort(margin),
            "entropy_sorted": np.sort(entropy),
            "bald_sorted": np.sort(bald),
        }
        pc = counts[counts > 0] / n
        known = n_labeled is not None
        n_lab = float(n_labeled) if n_labeled is not None else 0.0
        self._context = np.asarray(
            [
                1.0 / c,
                min(np.log1p(n_unlabeled) / np.log1p(1e6), 1.0),
                margin.mean(),
                min(2.0 * margin.std(), 1.0),
                entropy.mean(),
                float((margin < 0.2).mean()),
                float(-(pc * np.log(pc)).sum() / log_c),
                bald.mean(),
                1.0 if t >= 2 else 0.0,
                1.0 if known else 0.0,
                min(np.log1p(n_lab / c) / np.log1p(200.0), 1.0) if known else 0.0,
                n_lab / (n_lab + n_unlabeled) if known else 0.0,
            ],
            dtype=np.float64,
        )

    def _require(self) -> dict[str, np.ndarray]:
        if not self._arrays:
            raise InvalidInputError("no loop recorded yet: call update() with the predictions first")
        return self._arrays

    def candidate_features(self, candidates: Any) -> np.ndarray:
        """Features of the given records (rows of the last predictions).

        Returns
        -------
        ndarray of float32, shape (k, schema.n_candidate_features)
            Columns in the order of ``schema.candidate_features``.
        """
        a = self._require()
        idx = np.asarray(candidates, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_records):
            raise InvalidInputError(f"candidates must be record indices in [0, {self.n_records - 1}]")
        columns = [
            a["margin"][idx],
            a["least_confidence"][idx],
            a["entropy"][idx],
            _rank_in(a["margin_sorted"], a["margin"][idx]),
            _rank_in(a["entropy_sorted"], a["entropy"][idx]),
            a["share"][idx],
            a["bald"][idx],
            _rank_in(a["bald_sorted"], a["bald"][idx]),
            a["variation_ratio"][idx],
            a["top_class_std"][idx],
        ]
        return np.stack(columns, axis=1).astype(np.float32)

    def context_features(self) -> np.ndarray:
        """Per-loop context features, shape (schema.n_context_features,), float32."""
        self._require()
        assert self._context is not None
        return self._context.astype(np.float32)


class ProbaPoolFeatures:
    """The ``proba`` schema on a whole pool whose labeled rows are known (simulation, PolicyStrategy).

    Each :meth:`update` takes the predictions of the unlabeled rows; candidates are then given
    as pool row indices (unlabeled ones).

    Parameters
    ----------
    reveal_labeled : bool
        Pass the labeled count to the features (``labeled_known`` = 1). Meta-training hides it
        in half of the episodes, as a baal heuristic without a dataset sees it.
    """

    schema: FeatureSchema = PROBA_SCHEMA

    def __init__(self, reveal_labeled: bool = True) -> None:
        self.reveal_labeled = bool(reveal_labeled)
        self.extractor = ProbaFeatureExtractor()
        self.rows = np.zeros(0, dtype=np.int64)

    def update(self, predictions: Any, labeled: np.ndarray) -> None:
        """Record one loop: ``predictions`` (n_unlabeled, C[, T]) of the rows where ``labeled`` is False."""
        labeled = np.asarray(labeled, dtype=bool)
        rows = np.flatnonzero(~labeled)
        preds = check_predictions(predictions)
        if preds.shape[0] != rows.size:
            raise InvalidInputError(f"expected predictions for the {rows.size} unlabeled rows, got {preds.shape[0]}")
        self.extractor.update(preds, n_labeled=int(labeled.sum()) if self.reveal_labeled else None)
        self.rows = rows

    def update_from_model(self, model: Any, X: np.ndarray, labeled: np.ndarray) -> None:
        """Predict the unlabeled rows with ``model`` (per tree for a forest, else ``predict_proba``) and update."""
        rows = np.flatnonzero(~np.asarray(labeled, dtype=bool))
        X_unlabeled = X[rows]
        predictions = ensemble_predictions(model, X_unlabeled)
        if predictions is None:
            predictions = model.predict_proba(X_unlabeled)
        self.update(predictions, labeled)

    def positions(self, pool_rows: Any) -> np.ndarray:
        """Rows of the last predictions for the given (unlabeled) pool rows."""
        pool_rows = np.asarray(pool_rows, dtype=np.int64)
        position = np.searchsorted(self.rows, pool_rows)
        ok = (position < self.rows.size) & (self.rows[np.minimum(position, max(self.rows.size - 1, 0))] == pool_rows)
        if not np.all(ok):
            raise InvalidInputError(f"pool rows {pool_rows[~ok][:5].tolist()} are not unlabeled in the last loop")
        return position

    def margin_of(self, pool_rows: Any) -> np.ndarray:
        """Current margins of the given unlabeled pool rows."""
        return self.extractor.margin[self.positions(pool_rows)]

    def candidate_features(self, pool_rows: Any) -> np.ndarray:
        return self.extractor.candidate_features(self.positions(pool_rows))

    def context_features(self) -> np.ndarray:
        return self.extractor.context_features()


#: ``proba@1`` in the schema registry (:mod:`metalearn.features.registry`): trainer configurations
#: call it ``"proba"``; the imitation and LAL trainers train it; probabilities-only hosts (baal)
#: and PolicyStrategy use it.
REGISTRATION = RegisteredSchema(
    schema=PROBA_SCHEMA,
    extractor_class=ProbaPoolFeatures,
    config_name="proba",
    trainers=frozenset({"imitation", "lal"}),
)
