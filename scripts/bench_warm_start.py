"""Warm-started against cold refits in the simulator: fit seconds saved per run and the AULC change.

For each task model and batch size, every (dataset, seed) is run twice with margin sampling on
the same task (split, initial labels, model seed and strategy seed): once refitting a fresh
model after every batch (the default), once keeping one warm-started model
(``ModelFactory(..., warm_start=True)``). Cold start (one label per class) unless ``--regimes`` says otherwise, budget 100,
pools of at most 1000 records, test split 0.3. Per run: seconds spent in ``fit`` (wall and CPU), fits,
fallbacks to a cold fit, area under the accuracy learning curve. Per setting: mean fit seconds
cold and warm, and the paired AULC difference (warm - cold, in points) with a Wilcoxon
signed-rank and a paired t-test p-value.

Datasets: the held-in datasets of the train split (``envs/held_in.toml``); with ``--split
validation`` every dataset of the validation split, for the frozen measurement of issue 21
(warm refits are opt-in and nothing is chosen from it), with ``--regimes cold,warm`` and
``--strategy policy:default`` as that issue's protocol asks.

Run: ``.venv/bin/python scripts/bench_warm_start.py [--data ../shared/datasets] [--datasets NAME ...] [--seeds 5]
[--split train|validation] [--regimes cold,warm] [--strategy margin] [--out benchmarks/warm-start]`` (about ten minutes on a busy 2-core machine; one process).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.exceptions import ConvergenceWarning

from metalearn.common.csv_cells import write_csv
from metalearn.common.threads import limited_threads
from metalearn.simulation.metrics import area_under_learning_curve
from metalearn.simulation.process import ActiveLearningProcess
from metalearn.strategies.resolve import resolve_strategy
from metalearn.tasks.datasets import Dataset, load_datasets, load_manifest_folder
from metalearn.tasks.models import ModelFactory, WarmStartClassifier
from metalearn.tasks.task import Task, make_task

HELD_IN = ("analcatdata_dmft", "haberman", "heart_statlog", "kr_vs_kp", "wine_quality_red")
#: (model, batch size) settings measured.
SETTINGS = (("logreg", 10), ("logreg", 1), ("sgd", 10), ("mlp", 10), ("hgb", 10))
BUDGET = 100


def run_once(task: Task, seed: int, strategy_name: str = "margin") -> dict[str, float]:
    """One active-learning run; the loop of :func:`metalearn.simulation.loop.simulate`, fits timed."""
    strategy = resolve_strategy(strategy_name, label_budget=task.label_budget, random_state=seed)
    strategy.reset()
    process = ActiveLearningProcess(task)
    fit_seconds = 0.0
    fit_cpu_seconds = 0.0  # the process's CPU time: unlike wall time, not inflated by other jobs on the machine
    n_fits = 0

    def timed_fit() -> None:
        nonlocal fit_seconds, fit_cpu_seconds, n_fits
        start, cpu_start = time.perf_counter(), time.process_time()
        process.fit()
        fit_seconds += time.perf_counter() - start
        fit_cpu_seconds += time.process_time() - cpu_start
        n_fits += 1

    timed_fit()
    process.evaluate()
    while not process.done:
        batch = min(task.batch_size, process.budget_left, process.unlabeled_indices.size)
        chosen = strategy.query(task.X_pool, process.observed_labels(), process.model, batch_size=batch)
        process.label(chosen)
        timed_fit()
        process.evaluate()
    model = process.model
    return {
        "fit_seconds": fit_seconds,
        "fit_cpu_seconds": fit_cpu_seconds,
        "n_fits": n_fits,
        "n_fallbacks": model.n_fallbacks_ if isinstance(model, WarmStartClassifier) else 0,
        "aulc_accuracy": area_under_learning_curve(np.asarray(process.n_bought), np.asarray(process.accuracy), BUDGET),
        "final_accuracy": float(process.accuracy[-1]),
    }


def run_all(datasets: list[Dataset], n_seeds: int, regimes: tuple[str, ...] = ("cold",),
            settings: tuple[tuple[str, int], ...] = SETTINGS, strategy: str = "margin") -> pd.DataFrame:
    rows = []
    for dataset in datasets:
        for seed in range(n_seeds):
            for regime in regimes:
                for model, batch in settings:
                    for warm in (False, True):
                        task = make_task(
                            dataset.X, dataset.y, name=dataset.name,
                            model=ModelFactory(model, random_state=seed, warm_start=warm),
                            regime=regime, label_budget=BUDGET, batch_size=batch, max_pool=1000, seed=seed,
                        )
                        row = {"dataset": dataset.name, "regime": regime, "model": model, "batch_size": batch,
                               "seed": seed, "refit": "warm" if warm else "cold"}
                        row.update(run_once(task, seed, strategy))
                        rows.append(row)
                        print(f"{dataset.name:18s} seed {seed} {regime:4s} {model:6s} b{batch:<2d} {row['refit']}: "
                              f"fit {row['fit_seconds']:.2f}s aulc {row['aulc_accuracy']:.4f}", flush=True)
    return pd.DataFrame(rows)


def _p_values(diff: np.ndarray) -> tuple[float, float]:
    if np.allclose(diff, 0.0):
        return 1.0, 1.0  # identical curves: no difference to test
    wilcoxon = float(stats.wilcoxon(diff).pvalue)
    t_test = float(stats.ttest_1samp(diff, 0.0).pvalue)
    return wilcoxon, t_test


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    if "regime" not in runs:  # tables written before the regimes were measured
        runs = runs.assign(regime="cold")
    keys = ["dataset", "regime", "model", "batch_size", "seed"]
    if "fit_cpu_seconds" not in runs:  # tables written before CPU time was recorded
        runs = runs.assign(fit_cpu_seconds=np.nan)
    paired = runs.pivot_table(index=keys, columns="refit", values=["fit_seconds", "fit_cpu_seconds", "aulc_accuracy", "n_fallbacks"],
                              dropna=False)
    rows = []
    for (regime, model, batch), part in paired.groupby(level=["regime", "model", "batch_size"], sort=False):
        part = part.dropna(subset=[("aulc_accuracy", "cold"), ("aulc_accuracy", "warm")])
        if part.empty:  # a (model, batch size) pair that was not measured
            continue
        diff = (part[("aulc_accuracy", "warm")] - part[("aulc_accuracy", "cold")]).to_numpy() * 100
        cold_s = part[("fit_seconds", "cold")].to_numpy()
        warm_s = part[("fit_seconds", "warm")].to_numpy()
        wilcoxon, t_test = _p_values(diff)
        rows.append({
            "regime": regime,
            "model": model,
            "batch_size": batch,
            "n_runs": len(part),
            "fit_seconds_cold": cold_s.mean(),
            "fit_seconds_warm": warm_s.mean(),
            "fit_seconds_saved": (cold_s - warm_s).mean(),
            "fit_time_ratio_warm_to_cold": warm_s.sum() / cold_s.sum(),
            "fit_cpu_seconds_cold": part[("fit_cpu_seconds", "cold")].mean(),
            "fit_cpu_seconds_warm": part[("fit_cpu_seconds", "warm")].mean(),
            "fit_cpu_seconds_saved": (part[("fit_cpu_seconds", "cold")] - part[("fit_cpu_seconds", "warm")]).mean(),
            "fit_cpu_ratio_warm_to_cold": part[("fit_cpu_seconds", "warm")].sum() / part[("fit_cpu_seconds", "cold")].sum(),
            "aulc_cold": part[("aulc_accuracy", "cold")].mean() * 100,
            "aulc_warm": part[("aulc_accuracy", "warm")].mean() * 100,
            "aulc_diff_points": diff.mean(),
            "aulc_diff_min": diff.min(),
            "aulc_diff_max": diff.max(),
            "wilcoxon_p": wilcoxon,
            "paired_t_p": t_test,
            "fallbacks": int(part[("n_fallbacks", "warm")].sum()),
        })
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="../shared/datasets", help="manifest folder holding the held-in datasets")
    parser.add_argument("--datasets", nargs="+", default=list(HELD_IN), help="dataset names in the folder")
    parser.add_argument("--split", choices=["train", "validation"], default="train",
                        help="validation: every dataset of the validation split, for the frozen measurement only")
    parser.add_argument("--seeds", type=int, default=5, help="paired seeds per dataset")
    parser.add_argument("--regimes", default="cold", help="comma-separated start regimes (cold, warm)")
    parser.add_argument("--strategy", default="margin", help="querying strategy (e.g. policy:default)")
    parser.add_argument("--out", default="benchmarks/warm-start", help="folder of the CSV tables")
    args = parser.parse_args()
    if args.split == "validation":
        datasets = load_manifest_folder(args.data, split="validation")
    else:
        datasets = [load_datasets(f"folder:{args.data}:{name}")[0] for name in args.datasets]
    regimes = tuple(r.strip() for r in args.regimes.split(",") if r.strip())
    start = time.perf_counter()
    with limited_threads(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        runs = run_all(datasets, args.seeds, regimes, SETTINGS, args.strategy)
    summary = summarise(runs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(runs, out / "runs.csv", index=False, float_format="%.6g")
    write_csv(summary, out / "summary.csv", index=False, float_format="%.6g")
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"{len(runs)} runs in {time.perf_counter() - start:.0f} s; tables in {out}")


if __name__ == "__main__":
    main()
