"""A simulated run seen by stopping rules: where each rule stops, and the learned rule's inputs.

:func:`simulate_with_stopping` runs a strategy on a task to its end (budget or pool), as
:func:`~metalearn.simulation.loop.simulate` does, and at every point of the learning curve
(after fitting, before querying) asks each stopping rule ``should_stop(X, y, clf)`` exactly
as a user's loop would. A rule's first ``True`` is its stop; the run goes on, so the score
the run reaches at its end is known. Learned rules keep being asked after their stop, so
their estimate of the gain is recorded at every point (for the calibration report).
Optionally it records the learned rule's feature vector at every point (training data).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from metalearn.simulation.loop import SimulationResult, simulate
from metalearn.simulation.process import ActiveLearningProcess
from metalearn.stopping.base import StoppingRule
from metalearn.stopping.features import STOPPING_FEATURES, StoppingFeatures
from metalearn.stopping.learned import LearnedStoppingRule
from metalearn.strategies.base import QueryStrategy
from metalearn.tasks.task import Task

__all__ = ["StoppingRun", "simulate_with_stopping"]


@dataclass
class StoppingRun:
    """One run's learning curve and what the stopping rules said along it.

    Attributes
    ----------
    result : SimulationResult
        The learning curve (points 0..n_loops).
    stops : dict of str to int or None
        Per rule, the curve point (index) of its first stop; None if it never stopped.
    estimates : dict of str to ndarray of shape (n_points,)
        Per learned rule, its expected gain (points) at each curve point (NaN where not asked:
        the last point, when nothing is left to decide).
    quantile_estimates : dict of str to ndarray of shape (n_points, n_quantiles)
        Per learned rule, its quantiles of the gain at each point (NaN where not asked).
    features : ndarray of float32, shape (n_points, n_features) or None
        The learned rule's features at each point (NaN row where not computed).
    pool_exhausted : bool
        Whether the run ended because no unlabeled record was left (not at its budget).
    """

    result: SimulationResult
    stops: dict[str, int | None] = field(default_factory=dict)
    estimates: dict[str, np.ndarray] = field(default_factory=dict)
    quantile_estimates: dict[str, np.ndarray] = field(default_factory=dict)
    features: np.ndarray | None = None
    pool_exhausted: bool = False


class _Observer:
    """Asks every rule at each point; records stops, estimates and features."""

    def __init__(self, task: Task, rules: Mapping[str, StoppingRule], record_features: bool, window: int, seed: int) -> None:
        self.task = task
        self.rules = dict(rules)
        self.point = 0
        self.stops: dict[str, int | None] = {name: None for name in self.rules}
        self.estimates: dict[str, list[float]] = {n: [] for n, r in self.rules.items() if isinstance(r, LearnedStoppingRule)}
        self.quantiles: dict[str, list[list[float]]] = {n: [] for n in self.estimates}
        self.recorder = StoppingFeatures(task.X_pool, window=window, seed=seed) if record_features else None
        self.features: list[np.ndarray] = []

    def __call__(self, process: ActiveLearningProcess) -> None:
        nothing_left = not (~process.labeled).any()
        y = process.observed_labels()
        model = process.model
        for name, rule in self.rules.items():
            learned = name in self.estimates
            if nothing_left or (self.stops[name] is not None and not learned):
                if learned:
                    self.estimates[name].append(np.nan)
                    self.quantiles[name].append([np.nan] * len(rule.file.arch.quantiles))  # type: ignore[attr-defined]
                continue
            stop = rule.should_stop(self.task.X_pool, y, model)
            if learned:
                estimate = rule.estimate_  # type: ignore[attr-defined]
                self.estimates[name].append(float(estimate["expected_gain"]))
                self.quantiles[name].append([float(v) for v in estimate["quantiles"].values()])
            if stop and self.stops[name] is None:
                self.stops[name] = self.point
        if self.recorder is not None:
            if nothing_left:
                self.features.append(np.full(len(STOPPING_FEATURES), np.nan, dtype=np.float32))
            else:
                assert model is not None  # fitted before every callback
                proba = model.predict_proba(self.task.X_pool)
                self.features.append(self.recorder.update(proba, model.classes_, process.labeled, process.label_indices()))
        self.point += 1


def simulate_with_stopping(
    task: Task,
    strategy: QueryStrategy,
    rules: Mapping[str, StoppingRule] | None = None,
    *,
    record_features: bool = False,
    window: int = 5,
    seed: int = 0,
) -> StoppingRun:
    """Run ``strategy`` on ``task`` to the end while stopping rules watch.

    Parameters
    ----------
    task : Task
    strategy : QueryStrategy
    rules : dict of str to StoppingRule, optional
        Rules by the name they are reported under; each is reset first.
    record_features : bool
        Also record the learned rule's features at every point.
    window : int
        History length of the recorded features.
    seed : int
        Seed of the feature recorder's reference samples.

    Returns
    -------
    StoppingRun
    """
    rules = dict(rules or {})
    for rule in rules.values():
        rule.reset()
    observer = _Observer(task, rules, record_features, window, seed)
    result = simulate(task, strategy, on_loop=observer)
    features = np.stack(observer.features) if record_features and observer.features else None
    return StoppingRun(
        result=result,
        stops=observer.stops,
        estimates={name: np.asarray(values, dtype=np.float64) for name, values in observer.estimates.items()},
        quantile_estimates={name: np.asarray(values, dtype=np.float64) for name, values in observer.quantiles.items()},
        features=features,
        pool_exhausted=bool(result.n_bought[-1] + task.initial_labeled.size >= task.n_pool),
    )
