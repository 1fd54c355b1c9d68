"""One benchmark run, from a dataset and a run key to its learning curve and metrics.

Functions here run inside workers (joblib processes or Dask workers): they take plain,
picklable arguments and return plain data, and never touch the result folder.
"""

from __future__ import annotations

import time
import traceback
from typing import Any

import numpy as np

from metalearn.benchmark.config import ORACLE, BenchmarkConfig, RunKey, strategy_seed, task_seed
from metalearn.common.threads import limited_threads
from metalearn.simulation.loop import simulate
from metalearn.simulation.metrics import test_scores
from metalearn.strategies.base import QueryStrategy
from metalearn.strategies.resolve import resolve_strategy
from metalearn.tasks.datasets import Dataset
from metalearn.tasks.models import WARM_STARTABLE_MODELS, ModelFactory
from metalearn.tasks.task import Task, make_task

__all__ = ["build_task", "build_strategy", "execute_run", "full_pool_scores"]


def build_task(dataset: Dataset, key: RunKey, config: BenchmarkConfig) -> Task:
    """The task of a run: identical for every strategy of the same paired seed and setting."""
    task = make_task(
        dataset.X,
        dataset.y,
        name=dataset.name,
        model=key.model,
        regime=key.regime,
        n_warm=config.n_warm,
        test_size=config.test_size,
        label_budget=config.label_budget,
        batch_size=key.batch_size,
        max_pool=config.max_pool,
        seed=task_seed(config.seed, dataset.name, key.seed),
    )
    if config.warm_start and task.model.name in WARM_STARTABLE_MODELS:
        cold = task.model
        task = task.with_setting(model=ModelFactory(cold.name, cold.random_state, dict(cold.params), warm_start=True))
    return task


def build_strategy(name: str, task: Task, seed: int, config: BenchmarkConfig) -> QueryStrategy:
    """A fresh strategy for one run, set up at its best for the task's budget.

    ``"oracle"`` is the greedy look-ahead upper reference on the task; every other name is
    resolved by :func:`~metalearn.strategies.resolve.resolve_strategy` (a classic strategy or
    ``policy:PATH_OR_NAME``) with the task's label budget.
    """
    if name == ORACLE:
        from metalearn.simulation.oracle import OracleStrategy

        return OracleStrategy(task, n_candidates=config.oracle_candidates, random_state=seed)
    return resolve_strategy(name, label_budget=task.label_budget, random_state=seed)


def full_pool_scores(task: Task) -> tuple[float, float]:
    """Test accuracy and macro-F1 of the task model trained on the whole labeled pool (one cold fit)."""
    model = ModelFactory(task.model.name, task.model.random_state, dict(task.model.params))()
    with limited_threads():
        model.fit(task.X_pool, task.y_pool)
        predicted = model.predict(task.X_test)
    return test_scores(task.y_test, predicted, task.n_classes)


def execute_run(dataset: Dataset, key: RunKey, config: BenchmarkConfig) -> dict[str, Any]:
    """Run one strategy on one task; never raises.

    Returns
    -------
    dict
        ``summary`` (one row of the runs table, see :mod:`metalearn.benchmark.storage`) and
        ``curve`` (a dict of equal-length lists: loop, n_bought, accuracy, macro_f1,
        query_seconds, fit_seconds). A failure has ``status="failed"``, the error and traceback, and an
        empty curve.
    """
    from metalearn.benchmark.stats import labels_to_reach

    start = time.perf_counter()
    summary: dict[str, Any] = {
        "run_id": key.run_id,
        "dataset": key.dataset,
        "model": key.model,
        "regime": key.regime,
        "batch_size": key.batch_size,
        "seed": key.seed,
        "strategy": key.label,
        "label_budget": config.label_budget,
        "fingerprint": config.result_fingerprint(),
    }
    if config.warm_start:
        summary["warm_start"] = key.model in WARM_STARTABLE_MODELS
    if config.schedules:
        summary["schedule"] = key.schedule
    try:
        task = build_task(dataset, key, config)
        full_accuracy, full_f1 = full_pool_scores(task)
        strategy = build_strategy(key.strategy, task, strategy_seed(config.seed, key), config)
        if key.schedule:
            from metalearn.schedules import load_schedule

            result = simulate(task, strategy, schedule=load_schedule(key.schedule))
        elif config.stop_rules:
            from metalearn.stopping.evaluation import watched_run

            result, summary["stopping"] = watched_run(task, strategy, config.stop_rules, strategy_seed(config.seed, key))
        else:
            result = simulate(task, strategy)
    except Exception as exc:  # a run's failure is data: reported, never scored as zero
        summary.update(
            status="failed",
            error=f"{type(exc).__name__}: {exc}",
            traceback=traceback.format_exc(limit=20),
            wall_seconds=time.perf_counter() - start,
        )
        return {"summary": summary, "curve": {}}
    n_bought = result.n_bought
    summary.update(
        status="ok",
        error="",
        aulc_accuracy=result.aulc_accuracy,
        aulc_macro_f1=result.aulc_macro_f1,
        final_accuracy=float(result.accuracy[-1]),
        final_macro_f1=float(result.macro_f1[-1]),
        labels_to_98_accuracy=labels_to_reach(n_bought, result.accuracy, 0.98 * full_accuracy),
        labels_to_98_macro_f1=labels_to_reach(n_bought, result.macro_f1, 0.98 * full_f1),
        full_pool_accuracy=full_accuracy,
        full_pool_macro_f1=full_f1,
        query_seconds_mean=float(np.mean(result.query_seconds[1:])) if n_bought.size > 1 else 0.0,
        step_aulc_accuracy=result.step_aulc_accuracy,
        step_aulc_macro_f1=result.step_aulc_macro_f1,
        n_fits=result.n_fits,
        fit_seconds=float(np.sum(result.fit_seconds)),
        query_seconds_total=float(np.sum(result.query_seconds)),
        n_pool=task.n_pool,
        n_classes=task.n_classes,
        wall_seconds=time.perf_counter() - start,
    )
    curve = {
        "loop": list(range(n_bought.size)),
        "n_bought": n_bought.astype(int).tolist(),
        "accuracy": result.accuracy.tolist(),
        "macro_f1": result.macro_f1.tolist(),
        "query_seconds": result.query_seconds.tolist(),
        "fit_seconds": result.fit_seconds.tolist(),
    }
    return {"summary": summary, "curve": curve}
