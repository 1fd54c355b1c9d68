"""Paired comparison of strategies on a few tasks: the quick look behind ``metalearn demo``.

Every strategy gets the same tasks (split, initial labeled set, task model) for each seed,
and runs in parallel with joblib; the seeds of each run derive from one master seed, so the
result does not depend on the number of workers. The full evaluation protocol (statistics,
plots, resumable runs) is ``metalearn benchmark``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from metalearn.simulation.loop import simulate
from metalearn.strategies.registry import make_strategy
from metalearn.tasks.task import Task

__all__ = ["compare_strategies", "summarize_comparison"]


def _run(task: Task, strategy_name: str, strategy_seed: int) -> dict[str, object]:
    result = simulate(task, make_strategy(strategy_name, random_state=strategy_seed))
    return {
        "task": task.name,
        "model": task.model.name,
        "regime": task.regime,
        "batch_size": task.batch_size,
        "seed": task.seed,
        "strategy": strategy_name,
        "aulc_accuracy": result.aulc_accuracy,
        "aulc_macro_f1": result.aulc_macro_f1,
        "final_accuracy": result.final_accuracy,
        "query_ms": 1000.0 * float(np.mean(result.query_seconds[1:])) if result.query_seconds.size > 1 else 0.0,
    }


def compare_strategies(
    tasks: Sequence[Task], strategies: Sequence[str], *, seed: int = 0, n_jobs: int = 1, progress: bool = False
) -> pd.DataFrame:
    """Run every strategy on every task (paired) and return one row per run.

    Parameters
    ----------
    tasks : sequence of Task
        The tasks; build one per seed for paired seeds.
    strategies : sequence of str
        Registered strategy names.
    seed : int
        Master seed of the strategies' own randomness.
    n_jobs : int
        joblib workers (-1: all cores).
    progress : bool
        Print joblib progress.

    Returns
    -------
    pandas.DataFrame
        Columns task, model, regime, batch_size, seed, strategy, aulc_accuracy,
        aulc_macro_f1, final_accuracy, query_ms.
    """
    for name in strategies:
        make_strategy(name)  # unknown names fail here, before any work starts
    children = np.random.SeedSequence(seed).spawn(len(tasks) * len(strategies))
    jobs = [
        delayed(_run)(task, name, int(children[i * len(strategies) + j].generate_state(1)[0]))
        for i, task in enumerate(tasks)
        for j, name in enumerate(strategies)
    ]
    rows = Parallel(n_jobs=n_jobs, verbose=5 if progress else 0)(jobs)
    return pd.DataFrame(rows)


def summarize_comparison(runs: pd.DataFrame, reference: str = "margin") -> pd.DataFrame:
    """Mean scores per strategy and the paired mean difference to ``reference``, in AULC points.

    Returns one row per strategy, sorted by mean accuracy AULC (best first).
    """
    keys = ["task", "model", "regime", "batch_size", "seed"]
    summary = runs.groupby("strategy").agg(
        aulc_accuracy=("aulc_accuracy", "mean"),
        aulc_macro_f1=("aulc_macro_f1", "mean"),
        final_accuracy=("final_accuracy", "mean"),
        query_ms=("query_ms", "mean"),
        runs=("aulc_accuracy", "size"),
    )
    if reference in set(runs["strategy"]):
        ref = runs[runs["strategy"] == reference].set_index(keys)["aulc_accuracy"]
        diff = runs.set_index(keys).join(ref.rename("reference"))
        diff["delta"] = 100.0 * (diff["aulc_accuracy"] - diff["reference"])
        paired = diff.groupby("strategy")["delta"]
        summary[f"vs_{reference}_points"] = paired.mean()
        summary["wins"] = paired.apply(lambda d: int((d > 0).sum()))
    return summary.sort_values("aulc_accuracy", ascending=False)
