"""Run a strategy through a whole simulated active-learning process and record its curve."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from metalearn.common.threads import limited_threads
from metalearn.simulation.metrics import area_under_learning_curve, step_area_under_learning_curve
from metalearn.simulation.process import ActiveLearningProcess
from metalearn.strategies.base import QueryStrategy
from metalearn.tasks.task import Task

if TYPE_CHECKING:
    from metalearn.schedules.base import BatchSchedule

__all__ = ["SimulationResult", "simulate"]


@dataclass
class SimulationResult:
    """The learning curve of one strategy on one task.

    Attributes
    ----------
    task : str
        Task name.
    strategy : str
        Strategy name.
    label_budget : int
    n_bought : ndarray of int, shape (n_loops + 1,)
        Labels bought at each point (0 = the initial model).
    accuracy, macro_f1 : ndarray of shape (n_loops + 1,)
        Test scores at each point.
    query_seconds : ndarray of shape (n_loops + 1,)
        Wall time of the strategy's ``query`` that led to each point (0 for the first).
    fit_seconds : ndarray of shape (n_loops + 1,)
        Wall time of the task-model fit behind each point (the initial model's included): one
        fit per point, so ``n_fits`` is its length.
    picks : list of ndarray
        The records queried in each loop.
    info : dict
        Task and setting descriptors (model, regime, batch size, seed).
    """

    task: str
    strategy: str
    label_budget: int
    n_bought: np.ndarray
    accuracy: np.ndarray
    macro_f1: np.ndarray
    query_seconds: np.ndarray
    fit_seconds: np.ndarray
    picks: list[np.ndarray] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def aulc_accuracy(self) -> float:
        """Normalised area under the accuracy learning curve."""
        return area_under_learning_curve(self.n_bought, self.accuracy, self.label_budget)

    @property
    def aulc_macro_f1(self) -> float:
        """Normalised area under the macro-F1 learning curve."""
        return area_under_learning_curve(self.n_bought, self.macro_f1, self.label_budget)

    @property
    def step_aulc_accuracy(self) -> float:
        """Normalised area under the accuracy step curve (:func:`step_area_under_learning_curve`)."""
        return step_area_under_learning_curve(self.n_bought, self.accuracy, self.label_budget)

    @property
    def step_aulc_macro_f1(self) -> float:
        """Normalised area under the macro-F1 step curve (:func:`step_area_under_learning_curve`)."""
        return step_area_under_learning_curve(self.n_bought, self.macro_f1, self.label_budget)

    @property
    def n_fits(self) -> int:
        """Task-model fits of the run, the initial model's included."""
        return int(self.fit_seconds.size)

    @property
    def final_accuracy(self) -> float:
        return float(self.accuracy[-1])

    def to_frame(self) -> pd.DataFrame:
        """One row per point of the curve (tidy format)."""
        frame = pd.DataFrame(
            {
                "loop": np.arange(self.n_bought.size),
                "n_bought": self.n_bought,
                "accuracy": self.accuracy,
                "macro_f1": self.macro_f1,
                "query_seconds": self.query_seconds,
                "fit_seconds": self.fit_seconds,
            }
        )
        frame.insert(0, "strategy", self.strategy)
        frame.insert(0, "task", self.task)
        for key, value in self.info.items():
            frame[key] = value
        return frame


def simulate(
    task: Task,
    strategy: QueryStrategy,
    *,
    progress: bool = False,
    n_threads: int | None = 1,
    on_loop: Callable[[ActiveLearningProcess], None] | None = None,
    schedule: "BatchSchedule | None" = None,
) -> SimulationResult:
    """Run ``strategy`` on ``task`` until the label budget is spent or the pool is empty.

    The strategy is reset first, so one strategy object can be reused across runs. The query
    model is the task model: after each batch a fresh task model is trained on the labeled
    records, scored on the test split, and handed to the strategy for the next query.

    Parameters
    ----------
    task : Task
    strategy : QueryStrategy
    progress : bool
        Show a progress bar over the loops.
    n_threads : int or None
        BLAS/OpenMP threads while simulating (see :mod:`metalearn.common.threads`: one is
        fastest for the small models of active learning); None leaves the pools alone.
    on_loop : callable or None
        Called with the process after each fit and evaluation (the initial model included),
        before the next query: what a stopping rule sees (:mod:`metalearn.stopping.simulate`).
    schedule : BatchSchedule or None
        Decides each loop's batch size (:mod:`metalearn.schedules`), asked after each fit with
        the labels left in the budget, instead of the task's fixed ``batch_size``; reset first,
        like the strategy. The result's ``info`` then names it (``schedule``).
    """
    with limited_threads(n_threads):
        return _simulate(task, strategy, progress, on_loop, schedule)


def _simulate(
    task: Task,
    strategy: QueryStrategy,
    progress: bool,
    on_loop: Callable[[ActiveLearningProcess], None] | None = None,
    schedule: "BatchSchedule | None" = None,
) -> SimulationResult:
    strategy.reset()
    if schedule is not None:
        schedule.reset()
    process = ActiveLearningProcess(task)
    start = time.perf_counter()
    process.fit()
    fit_seconds = [time.perf_counter() - start]
    process.evaluate()
    if on_loop is not None:
        on_loop(process)
    query_seconds = [0.0]
    picks: list[np.ndarray] = []
    bar = tqdm(total=task.n_loops, desc=f"{strategy.name} on {task.name}", disable=not progress, leave=False)
    while not process.done:
        if schedule is None:
            batch = min(task.batch_size, process.budget_left, process.unlabeled_indices.size)
        else:  # asked outside the query's timer: its seconds are the schedule's, not the strategy's
            observed = process.observed_labels()
            batch = schedule.next_batch_size(task.X_pool, observed, process.model, budget_left=process.budget_left)
        start = time.perf_counter()
        chosen = strategy.query(task.X_pool, process.observed_labels(), process.model, batch_size=batch)
        query_seconds.append(time.perf_counter() - start)
        process.label(chosen)
        picks.append(chosen)
        start = time.perf_counter()
        process.fit()
        fit_seconds.append(time.perf_counter() - start)
        process.evaluate()
        if on_loop is not None:
            on_loop(process)
        bar.update()
    bar.close()
    info: dict[str, Any] = {"model": task.model.name, "regime": task.regime, "batch_size": task.batch_size, "seed": task.seed}
    if schedule is not None:
        info["schedule"] = schedule.describe()
    return SimulationResult(
        task=task.name,
        strategy=strategy.name,
        label_budget=task.label_budget,
        n_bought=np.asarray(process.n_bought),
        accuracy=np.asarray(process.accuracy),
        macro_f1=np.asarray(process.macro_f1),
        query_seconds=np.asarray(query_seconds),
        fit_seconds=np.asarray(fit_seconds),
        picks=picks,
        info=info,
    )
