"""Validation benchmark of the stopping rules: the learned ``default`` rule against the classic criteria.

Runs every (dataset, model, regime, seed, strategy) of a manifest split to ``--budget``
labels or the whole pool (``metalearn benchmark`` needs one budget that fits every pool;
here each run goes as far as its pool allows, so every run can plateau), batch
``--batch-size``, with every stopping rule watching (:mod:`metalearn.stopping.simulate`),
and writes to ``--out``:

- ``runs.csv`` (one row per run, the stopping rows as JSON in ``stopping``), ``curves.parquet``;
- ``stopping.csv`` (one row per run and rule), ``stopping_summary.csv``,
  ``stopping_calibration.csv``, ``stopping_by_dataset.csv`` (per dataset, model and rule),
  ``stopping_front.png`` and ``stopping.md`` (:func:`metalearn.stopping.evaluation.write_stopping_report`);
- ``targets.md``: the issue's targets, measured.

Finished runs are cached in ``--cache`` (one JSON per run): rerunning computes only the
missing ones. Example (the figures of benchmarks/stopping-validation)::

    nice -n 10 .venv/bin/python scripts/bench_stopping.py --data-dir ../shared/datasets --split validation \\
        --models logreg,nb --strategies margin,policy:ppo-synthetic --regimes cold,warm --seeds 2 \\
        --out benchmarks/stopping-validation --cache out/stopping-validation-cache
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from metalearn.benchmark.config import RunKey, strategy_seed, task_seed
from metalearn.stopping.classic import CLASSIC_RULES
from metalearn.stopping.evaluation import (
    RUN_KEYS,
    classic_front,
    stopping_summary,
    stopping_table,
    watched_run,
    write_stopping_report,
)
from metalearn.strategies.resolve import resolve_strategy
from metalearn.tasks.datasets import load_manifest_folder
from metalearn.tasks.task import make_task

DEFAULT_RULES = "default,stabilizing_predictions,overall_uncertainty,max_confidence,classification_change,fixed_budget"


def _csv(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def _one(dataset, key: RunKey, args) -> dict:
    seed = task_seed(args.seed, dataset.name, key.seed)
    probe = make_task(dataset.X, dataset.y, name=dataset.name, model=key.model, regime=key.regime, test_size=0.3,
                      label_budget=1, batch_size=key.batch_size, max_pool=args.max_pool, seed=seed)
    budget = min(args.budget, probe.n_pool - probe.initial_labeled.size)
    task = probe.with_setting(label_budget=budget)
    start = time.perf_counter()
    rseed = strategy_seed(args.seed, key)
    strategy = resolve_strategy(key.strategy, label_budget=task.label_budget, random_state=rseed)
    result, stopping = watched_run(task, strategy, args.rules, rseed)
    summary = {"run_id": key.run_id, "dataset": key.dataset, "model": key.model, "regime": key.regime,
               "batch_size": key.batch_size, "seed": key.seed, "strategy": key.strategy, "status": "ok",
               "label_budget": budget, "n_pool": task.n_pool, "n_classes": task.n_classes,
               "final_accuracy": float(result.accuracy[-1]), "wall_seconds": time.perf_counter() - start,
               "stopping": stopping}
    curve = {"loop": list(range(result.n_bought.size)), "n_bought": result.n_bought.astype(int).tolist(),
             "accuracy": result.accuracy.tolist(), "macro_f1": result.macro_f1.tolist()}
    return {"summary": summary, "curve": curve}


def _targets(table: pd.DataFrame, summary: pd.DataFrame, learned: str) -> str:
    mine = table[table["rule"] == learned]
    lines = [f"# Targets of issue 15, measured ({learned!r} rule at its default setting)", ""]
    if mine.empty:
        return "\n".join(lines + ["no runs of the learned rule"])
    mean_loss, p90 = float(mine["points_lost"].mean()), float(np.quantile(mine["points_lost"], 0.9))
    lines += [f"- mean points lost vs the run's final score: {mean_loss:.2f} (target <= 1.0): "
              f"{'met' if mean_loss <= 1.0 else 'missed'}",
              f"- 90th percentile of points lost: {p90:.2f} (target <= 2.0): {'met' if p90 <= 2.0 else 'missed'}"]
    own = summary[summary["rule"] == learned].iloc[0]
    classic = summary[summary["rule"] != learned]
    fewer = classic[classic["labels_at_stop"] <= own["labels_at_stop"]]
    lines.append(f"- mean labels at stop: {own['labels_at_stop']:.1f}; classic criteria using no more labels: "
                 f"{', '.join(fewer['rule']) if not fewer.empty else 'none'} ("
                 + "; ".join(f"{r.rule} {r.labels_at_stop:.1f} labels, {r.points_lost:.2f} points" for r in classic.itertuples())
                 + ")")
    front = classic_front(summary)
    beaten = [r.rule for r in front.itertuples()
              if r.labels_saved >= own["labels_saved"] and r.points_lost <= own["points_lost"]
              and (r.labels_saved > own["labels_saved"] or r.points_lost < own["points_lost"])]
    lines.append(f"- on or beyond the classic front: {'yes' if not beaten else 'no, dominated by ' + ', '.join(beaten)}")
    return "\n".join(lines) + "\n"


def _by_dataset_markdown(by_dataset: pd.DataFrame) -> str:
    """Per dataset and model: labels at stop and points lost of every rule (mean over runs; p90 of the loss)."""
    rules = list(dict.fromkeys(by_dataset["rule"]))
    header = "| dataset | model | labels at end | " + " | ".join(f"{r}: labels / lost (p90)" for r in rules) + " |"
    lines = ["# Stopping rules per dataset and model (validation split)", "",
             "Mean labels bought at the stop, mean accuracy points lost against the end of the run and, in brackets, "
             "the 90th percentile of the loss; over the runs of each dataset and model (strategies, regimes, seeds).", "",
             header, "|" + "---|" * (3 + len(rules))]
    for (dataset, model), group in by_dataset.groupby(["dataset", "model"], sort=True):
        row = group.set_index("rule")
        cells = [f"{row.loc[r, 'labels_at_stop']:.0f} / {row.loc[r, 'points_lost']:+.2f} ({row.loc[r, 'p90_points_lost']:+.2f})"
                 if r in row.index else "n/a" for r in rules]
        lines.append(f"| {dataset} | {model} | {group['labels_end'].iloc[0]:.0f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/datasets")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--datasets", type=_csv, default=None, help="a subset of the split's datasets")
    parser.add_argument("--models", type=_csv, default=["logreg", "nb"])
    parser.add_argument("--strategies", type=_csv, default=["margin", "policy:default"])
    parser.add_argument("--regimes", type=_csv, default=["cold", "warm"])
    parser.add_argument("--rules", type=_csv, default=_csv(DEFAULT_RULES))
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--max-pool", type=int, default=1000)
    parser.add_argument("--out", required=True)
    parser.add_argument("--cache", required=True, help="resume cache (one JSON per finished run)")
    args = parser.parse_args(argv)

    datasets = load_manifest_folder(args.data_dir, split=args.split)
    if args.datasets:
        datasets = [d for d in datasets if d.name in set(args.datasets)]
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    settings = json.dumps({k: getattr(args, k) for k in ("rules", "seed", "budget", "max_pool")}, sort_keys=True)
    tag = hashlib.sha256(settings.encode()).hexdigest()[:8]
    keys = [(d, RunKey(d.name, m, r, args.batch_size, s, st)) for s in range(args.seeds) for d in datasets
            for m in args.models for r in args.regimes for st in args.strategies]
    records = []
    start = time.perf_counter()
    for i, (dataset, key) in enumerate(keys):
        path = cache / f"{key.run_id}__{tag}.json"
        if path.exists():
            records.append(json.loads(path.read_text(encoding="utf-8")))
            continue
        record = _one(dataset, key, args)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, path)
        records.append(record)
        print(f"[{i + 1}/{len(keys)}] {key.run_id} {record['summary']['wall_seconds']:.1f} s "
              f"(elapsed {time.perf_counter() - start:.0f} s)", flush=True)
    runs = pd.DataFrame([r["summary"] for r in records])
    curves = []
    for r in records:
        curve = pd.DataFrame(r["curve"])
        for k in RUN_KEYS:
            curve[k] = r["summary"][k]
        curves.append(curve)
    curves_frame = pd.concat(curves, ignore_index=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs.to_csv(out / "runs.csv", index=False)
    curves_frame.to_parquet(out / "curves.parquet", index=False, compression="zstd")  # results are data: one table
    files = write_stopping_report(runs, curves_frame, out, title=f"Stopping rules on the {args.split} split")
    table = stopping_table(runs)
    by_dataset = stopping_summary(table, by=("dataset", "model", "rule"))
    by_dataset.to_csv(out / "stopping_by_dataset.csv", index=False)
    (out / "stopping_by_dataset.md").write_text(_by_dataset_markdown(by_dataset), encoding="utf-8")
    summary = stopping_summary(table)
    learned = next((r for r in args.rules if r not in CLASSIC_RULES), None)
    if learned is not None:
        (out / "targets.md").write_text(_targets(table, summary, learned), encoding="utf-8")
        print((out / "targets.md").read_text(encoding="utf-8"))
    print(summary.to_string(index=False))
    print("written:", ", ".join(str(p) for p in files.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
