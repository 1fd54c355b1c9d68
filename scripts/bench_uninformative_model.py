"""Strategies with task models that give every record the same probabilities: against random sampling.

scikit-learn's ``HistGradientBoostingClassifier`` at its defaults needs 20 records per leaf, so
below about 40 labels it predicts the labeled class shares for every record; kNN at its
defaults does the same with fewer labels than neighbours. While it does, the test accuracy a
user sees is that of predicting one class, the labeled majority (a tie goes to the first
class), so it rests only on which class holds the most labels. Representative records balance
the classes; random ones keep the pool's proportions.

Each strategy runs on the same tasks (split, initial labels, model seed) and strategy seeds:
random and margin sampling, the released ``default`` policy and the TypiClust-then-margin
switch, the last two both with ``uninformative_model="random"`` (uniform picks while the model
carries no information, the default since issue 20) and ``"score"`` (as before). Cold start,
batch 5, budget 60, test split 0.4 (the setting of issue 20's report), the models
``hgb_sklearn`` and ``knn_sklearn`` (scikit-learn's defaults), pools of at most 1000 records.

Datasets: the ten held-in datasets of the train split (``envs/held_in.toml``; the choice of the
default is made on them) and scikit-learn's ``breast_cancer``, ``wine`` and ``digits`` (the
case of the issue, shown apart). Never the validation split.

Writes ``runs.csv`` (one row per run: AULC of accuracy in points, queries that found the model
uninformative) and ``summary.csv`` (per model and dataset group: mean AULC per strategy, the
paired difference to random sampling, its worst dataset) to ``--out``.

Run: ``PYTHONPATH=. .venv/bin/python scripts/bench_uninformative_model.py [--seeds 10]
[--out benchmarks/uninformative-model]`` (about 15 minutes on one busy core).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning

from metalearn.common.csv_cells import write_csv
from metalearn.policies.strategy import PolicyStrategy
from metalearn.simulation.loop import simulate
from metalearn.simulation.metrics import area_under_learning_curve
from metalearn.strategies.base import QueryStrategy
from metalearn.strategies.resolve import resolve_strategy
from metalearn.strategies.switch import TypiClustThenMargin
from metalearn.tasks.datasets import Dataset, load_datasets
from metalearn.tasks.models import ModelFactory
from metalearn.tasks.task import make_task

HELD_IN = (
    "analcatdata_dmft", "ann_thyroid", "breast_cancer_ljubljana", "haberman", "heart_statlog",
    "hill_valley_with_noise", "kr_vs_kp", "mfeat_zernike", "mushroom", "wine_quality_red",
)
OTHER = ("breast_cancer", "wine", "digits")
MODELS = ("hgb_sklearn", "knn_sklearn")
BATCH, BUDGET, TEST_SIZE, MAX_POOL = 5, 60, 0.4, 1000
STRATEGIES = (
    "random", "margin", "default", "default (score)", "typiclust_margin", "typiclust_margin (score)",
)


def build_strategy(name: str, seed: int) -> QueryStrategy:
    """The strategy a row of the tables names; ``(score)``: ``uninformative_model="score"``."""
    rule = "score" if name.endswith("(score)") else "random"
    base = name.split(" ")[0]
    if base == "default":
        return PolicyStrategy("default", label_budget=BUDGET, uninformative_model=rule, random_state=seed)
    if base == "typiclust_margin":
        return TypiClustThenMargin(uninformative_model=rule, random_state=seed)
    return resolve_strategy(base, label_budget=BUDGET, random_state=seed)


def run_all(datasets: list[tuple[str, Dataset]], n_seeds: int) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    for group, dataset in datasets:
        for model in MODELS:
            for seed in range(n_seeds):
                task = make_task(
                    dataset.X, dataset.y, name=dataset.name, model=ModelFactory(model, random_state=seed),
                    regime="cold", test_size=TEST_SIZE, label_budget=BUDGET, batch_size=BATCH,
                    max_pool=MAX_POOL, seed=seed,
                )
                for name in STRATEGIES:
                    strategy = build_strategy(name, seed)
                    uninformative: list[bool] = []

                    def note(_: Any, s: QueryStrategy = strategy, seen: list[bool] = uninformative) -> None:
                        if hasattr(s, "last_uninformative_"):
                            seen.append(bool(s.last_uninformative_))

                    result = simulate(task, strategy, on_loop=note)
                    aulc = area_under_learning_curve(result.n_bought, result.accuracy, BUDGET)
                    rows.append({
                        "group": group, "dataset": dataset.name, "model": model, "seed": seed, "strategy": name,
                        "aulc_accuracy": 100 * aulc,
                        "uninformative_queries": int(sum(uninformative)),
                        "n_queries": len(result.picks),
                    })
                line = {r["strategy"]: round(r["aulc_accuracy"], 1) for r in rows[-len(STRATEGIES):]}
                print(f"{dataset.name:24s} {model:11s} seed {seed}: {line}", flush=True)
    return pd.DataFrame(rows)


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (group, model, strategy): mean AULC, mean paired difference to random, worst dataset's difference."""
    keys = ["group", "model", "dataset", "seed"]
    wide = runs.pivot_table(index=keys, columns="strategy", values="aulc_accuracy")
    rows = []
    for (group, model), part in wide.groupby(level=["group", "model"]):
        for name in STRATEGIES:
            diff = part[name] - part["random"]
            per_dataset = diff.groupby(level="dataset").mean()
            rows.append({
                "group": group, "model": model, "strategy": name,
                "aulc_accuracy": part[name].mean(),
                "diff_to_random": diff.mean(),
                "diff_to_random_se": diff.std(ddof=1) / np.sqrt(diff.size),
                "worst_dataset": per_dataset.idxmin(),
                "worst_dataset_diff": per_dataset.min(),
                "datasets_below_random_by_1": int((per_dataset < -1.0).sum()),
                "n_runs": int(diff.size),
            })
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="../shared/datasets", help="manifest folder holding the held-in datasets")
    parser.add_argument("--seeds", type=int, default=10, help="paired seeds per dataset and model")
    parser.add_argument("--out", default="benchmarks/uninformative-model", help="folder of the CSV tables")
    args = parser.parse_args()
    datasets = [("held_in", load_datasets(f"folder:{args.data}:{name}")[0]) for name in HELD_IN]
    datasets += [("sklearn", load_datasets(f"sklearn:{name}")[0]) for name in OTHER]
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        runs = run_all(datasets, args.seeds)
    summary = summarise(runs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(runs, out / "runs.csv", index=False, float_format="%.6g")
    write_csv(summary, out / "summary.csv", index=False, float_format="%.6g")
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"{len(runs)} runs in {time.perf_counter() - start:.0f} s; tables in {out}")


if __name__ == "__main__":
    main()
