"""Held-in runs for tuning the stopping rules (issue 21, part 4): every rule's statistic at every point.

Runs the datasets of a task suite (default ``envs/held_in.toml``: ten train-split datasets no
policy is trained on; never a validation split) with the given models, regimes, seeds and
querying strategy, batch ``--batch-size``, to ``--budget`` labels or the whole pool. At every
point of the learning curve (after fitting, before querying) each rule is asked, as a user's
loop would ask it, and keeps being asked after it would have stopped, so that any setting of
its parameter can be replayed afterwards (:mod:`scripts.stopping_heldin_tune`): the classic
criteria's statistics (their per-call log) and the learned rule's mean and quantiles of the
gain. Each finished run is one JSON file in ``--cache`` (rerunning computes only missing runs).

With ``--split validation`` the same runs are made on every dataset of the validation split:
only for the final comparison of settings frozen on held-in runs
(``scripts/stopping_validation_replay.py``), never to choose one.

Example (the figures of benchmarks/stopping-heldin)::

    PYTHONPATH=. nice -n 10 .venv/bin/python scripts/stopping_heldin_runs.py --cache out/stopping-heldin-cache \\
        --models logreg,rf --regimes cold,warm --seeds 5 --budget 100

(the commands of all four sets of runs are in benchmarks/stopping-heldin/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

from metalearn.benchmark.config import RunKey, strategy_seed, task_seed
from metalearn.simulation.loop import simulate
from metalearn.stopping.classic import CLASSIC_RULES
from metalearn.stopping.learned import LearnedStoppingRule
from metalearn.strategies.resolve import resolve_strategy
from metalearn.tasks.datasets import load_manifest_folder
from metalearn.tasks.task import make_task

#: The classic rules whose statistics are recorded (fixed_budget needs only the labels).
WATCHED = ("stabilizing_predictions", "overall_uncertainty", "max_confidence", "classification_change")


def _csv(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def _held_in_names(suite: Path) -> list[str]:
    spec = tomllib.loads(suite.read_text(encoding="utf-8"))
    names: list[str] = []
    for source in spec["sources"]:
        if str(source.get("split", "")).lower() != "train":
            raise SystemExit(f"{suite}: a source that is not the train split; held-in runs use the train split only")
        names.extend(source["names"])
    return names


def _one(dataset: Any, key: RunKey, args: argparse.Namespace) -> dict[str, Any]:
    seed = task_seed(args.seed, dataset.name, key.seed)
    probe = make_task(dataset.X, dataset.y, name=dataset.name, model=key.model, regime=key.regime, test_size=0.3,
                      label_budget=1, batch_size=key.batch_size, max_pool=args.max_pool, seed=seed)
    task = probe.with_setting(label_budget=min(args.budget, probe.n_pool - probe.initial_labeled.size))
    rseed = strategy_seed(args.seed, key)
    strategy = resolve_strategy(key.strategy, label_budget=task.label_budget, random_state=rseed)
    rules: dict[str, Any] = {name: CLASSIC_RULES[name](random_state=rseed) for name in WATCHED}
    learned = LearnedStoppingRule(args.rule, random_state=rseed)
    rules["learned"] = learned
    baseline = LearnedStoppingRule(args.baseline_rule, random_state=rseed) if args.baseline_rule else None
    if baseline is not None:
        rules["released"] = baseline
    points: list[dict[str, Any]] = []

    def observe(process: Any) -> None:
        labeled = process.labeled
        row: dict[str, Any] = {"n_labeled": int(labeled.sum())}
        if (~labeled).any():
            y = process.observed_labels()
            for name, rule in rules.items():
                rule.should_stop(task.X_pool, y, process.model)
                entry = {k: v for k, v in rule.log_[-1].items() if k not in ("call", "n_labeled", "stop")}
                row[name] = entry
            # Raw quantiles (the regressor's, before any calibration of the file): the tuning
            # scripts apply the shifts they study.
            for name, rule in (("learned", learned), ("released", baseline)):
                if rule is not None:
                    row[name] = {"mean": rule.estimate_["expected_gain"],
                                 "quantiles": list(rule.estimate_["uncalibrated_quantiles"].values())}
        points.append(row)

    start = time.perf_counter()
    result = simulate(task, strategy, on_loop=observe)
    return {
        "run_id": key.run_id, "dataset": key.dataset, "model": key.model, "regime": key.regime, "seed": key.seed,
        "strategy": key.strategy, "batch_size": key.batch_size, "label_budget": task.label_budget,
        "n_pool": task.n_pool, "n_initial": int(task.initial_labeled.size),
        "pool_exhausted": bool(result.n_bought[-1] + task.initial_labeled.size >= task.n_pool),
        "quantile_levels": list(learned.file.arch.quantiles), "horizon": learned.file.horizon,
        "n_bought": result.n_bought.astype(int).tolist(), "accuracy": result.accuracy.tolist(),
        "points": points, "wall_seconds": time.perf_counter() - start,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/datasets")
    parser.add_argument("--suite", default="envs/held_in.toml")
    parser.add_argument("--split", choices=["train", "validation"], default="train",
                        help="validation: every dataset of the validation split, for the frozen comparison only")
    parser.add_argument("--datasets", type=_csv, default=None,
                        help="train-split datasets to run instead of the suite's (e.g. the rule's own held-in ones)")
    parser.add_argument("--models", type=_csv, default=["logreg", "rf"])
    parser.add_argument("--regimes", type=_csv, default=["cold"])
    parser.add_argument("--strategy", default="policy:default")
    parser.add_argument("--rule", default="default", help="the learned rule (name or file) whose estimates are recorded")
    parser.add_argument("--baseline-rule", default=None,
                        help="a second learned rule whose estimates are recorded too (key 'released'), e.g. the released "
                             "default when --rule is a retrained candidate")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--max-pool", type=int, default=1000)
    parser.add_argument("--cache", required=True)
    args = parser.parse_args(argv)

    if args.split == "validation":
        datasets = load_manifest_folder(args.data_dir, split="validation", names=args.datasets)
    else:
        names = args.datasets or _held_in_names(Path(args.suite))
        datasets = load_manifest_folder(args.data_dir, split="train", names=names)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    keys = [(d, RunKey(d.name, m, r, args.batch_size, s, args.strategy)) for s in range(args.seeds)
            for m in args.models for r in args.regimes for d in datasets]
    start = time.perf_counter()
    for i, (dataset, key) in enumerate(keys):
        path = cache / f"{key.run_id}__b{args.budget}.json"
        if path.exists():
            continue
        record = _one(dataset, key, args)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, path)
        print(f"[{i + 1}/{len(keys)}] {key.run_id} {record['wall_seconds']:.1f} s (elapsed {time.perf_counter() - start:.0f} s)",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
