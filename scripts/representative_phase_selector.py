"""Can what a run shows at its first query predict whether a representative phase pays? (issue 20)

The held-in headroom (``scripts/rule_selection_headroom.py``) puts the only room for a
task-reading policy among the fixed rules in one choice: a representative phase first
(``typiclust_margin``) or margin sampling from the start. This measures whether that choice can
be learned from what a run has at its first query, with a direct, low-noise label instead of
evolution strategies' noisy fitness.

For every task (training suite: default ``meta_train``, the synthetic generators and the 18
train-split datasets not held in; held-in suite: ``held_in``, the ten held-in datasets; both
logistic regression and random forest, cold and warm start, batch 10, budget 100), margin
sampling and the switch run on the same task with the same strategy seed, and the ``pool@3``
context features of the first query are recorded (a zero-weight ``pool@3`` policy's extractor
after its first update: the run's class structure, cluster-label purity, the model's
probability resolution, ...), with the task's descriptors (model, regime, classes, features,
pool size). Label: AULC(switch) - AULC(margin), points.

Selectors (scikit-learn, fitted on the training suite's problems only):

- ridge regression of the label on the features (standardised);
- gradient boosting regression;
- the constant: always the switch (the single best rule), always margin.

Scored on the training problems by cross-validation grouped by data source (a dataset, or a
synthetic generator), and on the held-in problems: Spearman correlation of predicted and
realised label, and the mean AULC over margin of the selector's choice (switch where it
predicts a gain > 0), against always-switch and the per-problem oracle.

Writes ``problems.csv`` (one row per task: descriptors, features, both AULCs; appended as tasks
finish, so a rerun computes only missing tasks) and ``selectors.csv`` to ``--out``.

Run: ``PYTHONPATH=. .venv/bin/python scripts/representative_phase_selector.py --train-tasks 300
--heldin-tasks 100 --out benchmarks/heldin/representative-phase`` (about 40 minutes on one core).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from metalearn.common.csv_cells import write_csv
from metalearn.features.task_context_features import POOL_SCHEMA_V3
from metalearn.policies.architecture import ScorerArchitecture
from metalearn.policies.file import PolicyFile
from metalearn.policies.trainers.cma_search import task_seeds
from metalearn.policies.trainers.parallel import parallel_map
from metalearn.policies.trainers.suites import resolve_suite
from metalearn.tasks.task import Task

SWITCH = "typiclust_margin"
DESCRIPTORS = ("model", "regime", "n_classes", "n_features", "n_pool", "n_initial")


def _zero_policy() -> PolicyFile:
    schema = POOL_SCHEMA_V3
    arch = ScorerArchitecture.gated_linear(schema)
    params = {"weights": np.zeros((schema.n_candidate_features, schema.n_context_features + 1), dtype=np.float32),
              "prior_scale": np.ones(1, dtype=np.float32)}
    return PolicyFile(arch=arch, params=params, metadata={"feature_schema": schema.to_dict(), "window": 5, "n_candidates": 64})


def _source(task: Task) -> str:
    dataset = task.info.get("dataset", {}) if isinstance(task.info, dict) else {}
    if isinstance(dataset, dict) and dataset.get("generator"):
        return f"synthetic:{dataset['generator']}"
    return task.name.split("__")[0].split("[")[0]


def _problem(job: tuple[str, int, Task, int]) -> dict[str, Any]:
    from metalearn.policies.strategy import PolicyStrategy
    from metalearn.simulation.loop import simulate
    from metalearn.simulation.process import ActiveLearningProcess
    from metalearn.strategies.registry import make_strategy

    split, index, task, seed = job
    process = ActiveLearningProcess(task)
    model = process.fit()
    probe = PolicyStrategy(_zero_policy(), label_budget=task.label_budget, random_state=seed)
    probe.query(task.X_pool, process.observed_labels(), model, batch_size=task.batch_size)
    context = probe.extractor_.context_features()
    row: dict[str, Any] = {
        "split": split, "index": index, "task": task.name, "source": _source(task), "seed": int(seed),
        "model": task.model.name, "regime": task.regime, "n_classes": int(task.n_classes),
        "n_features": int(task.n_features), "n_pool": int(task.n_pool), "n_initial": int(task.initial_labeled.size),
        **{f"ctx_{name}": float(v) for name, v in zip(POOL_SCHEMA_V3.context_features, context)},
    }
    for name in ("margin", SWITCH):
        row[f"aulc_{name}"] = 100 * float(simulate(task, make_strategy(name, random_state=seed)).aulc_accuracy)
    row["label"] = row[f"aulc_{SWITCH}"] - row["aulc_margin"]
    return row


def collect(out: Path, train_suite: str, n_train: int, heldin_suite: str, n_heldin: int, seed: int, jobs: int) -> pd.DataFrame:
    path = out / "problems.csv"
    done = pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=["split", "index"])
    have = set(zip(done["split"], done["index"]))
    pending = []
    for split, suite, n in (("train", train_suite, n_train), ("held_in", heldin_suite, n_heldin)):
        tasks = resolve_suite(suite).tasks(n, seed=seed)
        for i, (task, s) in enumerate(zip(tasks, task_seeds(tasks, seed))):
            if (split, i) not in have:
                pending.append((split, i, task, s))
    start = time.perf_counter()
    rows = []
    batch = max(jobs, 1) * 4
    for k in range(0, len(pending), batch):  # appended in small groups: an interrupted run keeps its rows
        new = parallel_map(_problem, pending[k:k + batch], n_jobs=jobs)
        rows.extend(new)
        frame = pd.DataFrame(rows) if done.empty else pd.concat([done, pd.DataFrame(rows)], ignore_index=True)
        write_csv(frame, path, index=False, float_format="%.6g")
        print(f"{len(frame)} problems ({time.perf_counter() - start:.0f} s)", flush=True)
    if not rows:
        return done
    return pd.DataFrame(rows) if done.empty else pd.concat([done, pd.DataFrame(rows)], ignore_index=True)


def _features(frame: pd.DataFrame) -> pd.DataFrame:
    numeric = frame[[c for c in frame.columns if c.startswith("ctx_")]].copy()
    numeric["log_n_classes"] = np.log(frame["n_classes"].astype(float))
    numeric["log_n_features"] = np.log(frame["n_features"].astype(float))
    numeric["log_n_pool"] = np.log(frame["n_pool"].astype(float))
    numeric["warm"] = (frame["regime"] == "warm").astype(float)
    numeric["rf"] = (frame["model"] == "rf").astype(float)
    return numeric.loc[:, numeric.std() > 0]


def _models() -> dict[str, Any]:
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return {
        "ridge": make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 3, 12))),
        "gradient boosting": HistGradientBoostingRegressor(max_depth=3, learning_rate=0.05, max_iter=200,
                                                           min_samples_leaf=10, random_state=0),
    }


def _score(name: str, data: str, predicted: np.ndarray, label: np.ndarray) -> dict[str, Any]:
    choice = np.where(predicted > 0, label, 0.0)  # switch where a gain is predicted, margin elsewhere
    rho = stats.spearmanr(predicted, label).statistic if np.std(predicted) > 0 else np.nan
    return {"selector": name, "data": data, "problems": int(label.size), "spearman": float(rho),
            "chooses_switch": float(np.mean(predicted > 0)), "vs_margin": float(choice.mean()),
            "vs_always_switch": float((choice - label).mean()),
            "vs_always_switch_se": float((choice - label).std(ddof=1) / np.sqrt(label.size)),
            "always_switch_vs_margin": float(label.mean()), "oracle_vs_margin": float(np.maximum(label, 0).mean())}


def evaluate(problems: pd.DataFrame) -> pd.DataFrame:
    from sklearn.base import clone
    from sklearn.model_selection import GroupKFold

    train, heldin = problems[problems["split"] == "train"], problems[problems["split"] == "held_in"]
    X = _features(problems)
    X_train, X_heldin = X.loc[train.index], X.loc[heldin.index]
    y_train, y_heldin = train["label"].to_numpy(), heldin["label"].to_numpy()
    rows = []
    for name, model in _models().items():
        predicted = np.zeros(len(train))
        groups = train["source"].to_numpy()
        for fit_rows, test_rows in GroupKFold(n_splits=min(5, len(set(groups)))).split(X_train, y_train, groups):
            predicted[test_rows] = clone(model).fit(X_train.iloc[fit_rows], y_train[fit_rows]).predict(X_train.iloc[test_rows])
        rows.append(_score(name, "train (cross-validated by source)", predicted, y_train))
        if len(heldin):
            fitted = clone(model).fit(X_train, y_train)
            rows.append(_score(name, "held-in", fitted.predict(X_heldin), y_heldin))
    for data, label in (("train (cross-validated by source)", y_train), ("held-in", y_heldin)):
        if label.size:
            rows.append(_score("always switch", data, np.ones_like(label), label))
            rows.append(_score("always margin", data, -np.ones_like(label), label))
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-suite", default="meta_train")
    parser.add_argument("--train-tasks", type=int, default=300)
    parser.add_argument("--heldin-suite", default="held_in")
    parser.add_argument("--heldin-tasks", type=int, default=100)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--evaluate-only", action="store_true", help="score the selectors on the stored problems")
    parser.add_argument("--out", default="benchmarks/heldin/representative-phase")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.evaluate_only:
        problems = pd.read_csv(out / "problems.csv")
    else:
        problems = collect(out, args.train_suite, args.train_tasks, args.heldin_suite, args.heldin_tasks, args.seed, args.jobs)
    table = evaluate(problems)
    write_csv(table, out / "selectors.csv", index=False, float_format="%.4g")
    with pd.option_context("display.width", 200):
        print(table.round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
