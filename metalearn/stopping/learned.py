"""The learned stopping rule: stop when the expected gain of the next labels is too small.

At each call the rule records the loop in its multi-loop metadata history
(:class:`~metalearn.stopping.features.StoppingFeatures`), computes the loop's features and
asks the regressor of the rule file for the gain in test accuracy (points) that the next
``horizon`` labels will bring: its expected value and quantiles. It recommends stopping once
the file's decision statistic of that gain (the mean, or an upper quantile: "the gain is below
the threshold with 90% confidence") is below ``threshold`` for ``patience`` calls in a row.

The knob is ``threshold`` (accuracy points): larger stops earlier (fewer labels, more
accuracy given up), smaller later. ``None`` (the default) uses the file's recommended
value, chosen on held-in training datasets so that the final score is barely touched.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from metalearn.common.validation import check_positive_int, check_real
from metalearn.exceptions import InvalidInputError, InvalidTypeError
from metalearn.stopping.base import StoppingRule
from metalearn.stopping.features import StoppingFeatures
from metalearn.stopping.file import StoppingRuleFile, calibrated_quantiles, read_stopping_rule
from metalearn.stopping.limits import MAX_PATIENCE, MAX_THRESHOLD_POINTS
from metalearn.stopping.model_family import model_family
from metalearn.strategies.base import QueryContext

__all__ = ["LearnedStoppingRule", "GainEstimate"]


class GainEstimate(dict):
    """The rule's estimate at one call: a dict with ``expected_gain`` (mean, points),
    ``quantiles`` (level -> points, calibrated for the task model's family when the file holds
    shifts), ``uncalibrated_quantiles`` (the regressor's own), ``model_family`` (of the
    classifier asked about), ``decision`` (the statistic compared: ``"mean"`` or
    ``"q0.9"``...), ``statistic`` (its value), ``horizon`` (labels), ``threshold`` and ``stop``."""

    def __str__(self) -> str:
        q = {float(k): v for k, v in self["quantiles"].items()}
        low, high = min(q), max(q)
        decision = self.get("decision", "mean")
        compared = "" if decision == "mean" else f"; its {float(decision[1:]):.0%} quantile {self['statistic']:+.2f}"
        return (
            f"expected gain from the next {self['horizon']} labels: {self['expected_gain']:+.2f} accuracy points "
            f"({low:.0%}-{high:.0%} range {q[low]:+.2f} to {q[high]:+.2f}{compared}); "
            f"threshold {self['threshold']:.2f}: {'stop' if self['stop'] else 'continue'}"
        )


class LearnedStoppingRule(StoppingRule):
    """A stopping rule learned from simulated runs whose whole learning curves are known.

    Parameters
    ----------
    rule_file : str, path-like or StoppingRuleFile, default="default"
        A released rule name, a file, or a rule already read.
    threshold : float or None, default=None
        Stop once the file's statistic (mean or upper quantile) of the gain in test accuracy
        from the next ``horizon`` labels (accuracy points) is below this; None uses the file's
        recommended threshold.
    patience : int or None, default=None
        Consecutive calls the expected gain must stay below the threshold; None uses the
        file's recommended patience (the one its threshold was chosen with).
    missing_label, random_state
        See :class:`~metalearn.stopping.base.StoppingRule`.

    Attributes
    ----------
    estimate_ : GainEstimate
        The latest estimate: expected gain, quantiles, horizon, threshold, decision.
    rule_file_ : StoppingRuleFile
    """

    name = "learned"
    keeps_float32 = True  # the features' distances read X a block of rows at a time

    def __init__(
        self,
        rule_file: Any = "default",
        *,
        threshold: float | None = None,
        patience: int | None = None,
        missing_label: Any = np.nan,
        random_state: int | np.random.Generator | None = None,
    ) -> None:
        super().__init__(missing_label=missing_label, random_state=random_state)
        self.rule_file = rule_file
        self.threshold = threshold
        self.patience = patience

    # -- parameters ----------------------------------------------------------------------
    @property
    def file(self) -> StoppingRuleFile:
        """The rule file (read once, at first use)."""
        cached = getattr(self, "_file_cache", None)
        if cached is None or cached[0] is not self.rule_file:
            loaded = self.rule_file if isinstance(self.rule_file, StoppingRuleFile) else read_stopping_rule(self.rule_file)
            self._file_cache = (self.rule_file, loaded)
            cached = self._file_cache
        return cached[1]

    @property
    def effective_threshold(self) -> float:
        """The threshold in use: ``threshold``, or the file's recommended one."""
        return self.file.threshold if self.threshold is None else float(self.threshold)

    @property
    def effective_patience(self) -> int:
        """The patience in use: ``patience``, or the file's recommended one."""
        return self.file.patience if self.patience is None else int(self.patience)

    def _validate_params(self) -> None:
        if self.threshold is not None:
            if isinstance(self.threshold, bool) or not isinstance(self.threshold, numbers.Real):
                raise InvalidTypeError(f"threshold must be a number of accuracy points or None, got {self.threshold!r}"[:300])
            threshold = check_real(self.threshold, "threshold")  # 10**400: our error, not OverflowError
            if not abs(threshold) <= MAX_THRESHOLD_POINTS:
                raise InvalidInputError(
                    f"threshold must be finite accuracy points in [-{MAX_THRESHOLD_POINTS:g}, {MAX_THRESHOLD_POINTS:g}], "
                    f"got {threshold}"
                )
        if self.patience is not None:
            check_positive_int(self.patience, "patience", maximum=MAX_PATIENCE)
        self.file  # noqa: B018 - read and check the file now, before any work

    def describe(self) -> str:
        where = self.file.path.stem if self.file.path is not None else "in memory"
        statistic = "expected gain" if self.file.decision == "mean" else f"{float(self.file.decision[1:]):.0%} quantile of the gain"
        return (
            f"learned ({where}; stop when the {statistic} from the next {self.file.horizon} labels < "
            f"{self.effective_threshold:g} points for {self.effective_patience} loop(s))"
        )

    # -- the decision ----------------------------------------------------------------------
    def _on_new_pool(self, X: np.ndarray) -> None:
        seed = int(self.rng_.integers(0, 2**31 - 1))
        self.features_ = StoppingFeatures(X, window=self.file.window, seed=seed)
        self.below_ = 0

    def estimate(self, features: np.ndarray, family: str | None = None) -> tuple[np.ndarray, float]:
        """Quantiles (K,; calibrated when the file holds shifts, for the model ``family`` when it
        holds that family's) and mean of the gain for one feature vector (points)."""
        quantiles, mean = self.file.gain(features, family)
        return np.asarray(quantiles, dtype=np.float64), float(mean)

    def _decide(self, ctx: QueryContext) -> tuple[bool, dict[str, Any]]:
        proba = ctx.proba
        vector = self.features_.update(proba, ctx.classes, ctx.labeled, ctx.label_indices())
        family = model_family(ctx.clf)
        raw, mean_array = self.file.model(vector)
        raw = np.asarray(raw, dtype=np.float64)
        quantiles, mean = calibrated_quantiles(raw, self.file.shifts_for(family)), float(mean_array)
        threshold = self.effective_threshold
        column = self.file.decision_index()
        statistic = mean if column is None else float(quantiles[column])
        self.below_ = self.below_ + 1 if statistic < threshold else 0
        stop = self.below_ >= self.effective_patience
        self.estimate_ = GainEstimate(
            expected_gain=mean,
            quantiles={float(q): float(v) for q, v in zip(self.file.arch.quantiles, quantiles)},
            uncalibrated_quantiles={float(q): float(v) for q, v in zip(self.file.arch.quantiles, raw)},
            model_family=family,
            decision=self.file.decision,
            statistic=statistic,
            horizon=self.file.horizon,
            threshold=threshold,
            stop=bool(stop),
        )
        return stop, {"expected_gain": mean, "gain_low": float(quantiles[0]), "gain_high": float(quantiles[-1])}

    def _on_pool_exhausted(self) -> dict[str, Any]:
        # No label is left to buy, so none can bring a gain: the estimate is zero, the answer "stop".
        self.below_ = self.below_ + 1
        levels = self.file.arch.quantiles
        self.estimate_ = GainEstimate(
            expected_gain=0.0,
            quantiles={float(q): 0.0 for q in levels},
            uncalibrated_quantiles={float(q): 0.0 for q in levels},
            model_family=None,
            decision=self.file.decision,
            statistic=0.0,
            horizon=self.file.horizon,
            threshold=self.effective_threshold,
            stop=True,
        )
        return {"pool_exhausted": True, "expected_gain": 0.0, "gain_low": 0.0, "gain_high": 0.0}

    # -- state -------------------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        exported = self.features_.state() if hasattr(self, "features_") else None
        if exported is None:
            return {}, {"below": getattr(self, "below_", 0)}
        arrays, meta = exported
        return arrays, {"below": self.below_, "features": meta}

    def _load_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.below_ = int(meta.get("below", 0))

    def load_history(self, X: np.ndarray, arrays: dict[str, np.ndarray], meta: dict[str, Any],
                     old_positions: np.ndarray | None = None) -> None:
        """Restore a state of :meth:`get_state` on pool ``X``, following records by ``old_positions``.

        Parameters
        ----------
        X : ndarray of shape (n_pool, n_features)
            This run's pool.
        arrays, meta
            From :meth:`get_state`.
        old_positions : ndarray of int, shape (n_pool,), optional
            For each row of ``X``, its row in the saved state, or -1 for a new record.
        """
        if meta.get("rule") != self.name:
            raise InvalidInputError(f"the saved state is of stopping rule {meta.get('rule')!r}, not {self.name!r}")
        self._fresh(X)
        self.n_calls_ = int(meta.get("n_calls", 0))
        self.log_ = list(meta.get("log", []))
        self.below_ = int(meta.get("below", 0))
        if "features" in meta:
            self.features_.load_state(arrays, meta["features"], old_positions)
