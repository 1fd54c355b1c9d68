"""The ``metalearn`` command line.

Subcommands:

- ``metalearn demo``: the main job on embedded defaults (a paired comparison of the
  classic strategies on scikit-learn data, printed as a table).
- ``metalearn strategies``: the registered strategies and their parameters.
- ``metalearn features``: the feature schema, one line per feature.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

import numpy as np

from metalearn.exceptions import MetalearnError

__all__ = ["main", "build_parser"]

DEMO_DATASETS = ("breast_cancer", "wine", "digits")


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metalearn", description="Learn and compare active-learning strategies.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="compare the classic strategies on scikit-learn data (embedded defaults)")
    demo.add_argument("--datasets", type=_csv, default=list(DEMO_DATASETS), help="bundled dataset names, comma-separated")
    demo.add_argument("--strategies", type=_csv, default=None, help="strategy names (default: all registered)")
    demo.add_argument("--model", default="logreg", help="task model (= query model)")
    demo.add_argument("--regime", default="cold", choices=["cold", "warm"])
    demo.add_argument("--budget", type=int, default=60, help="labels to buy per run")
    demo.add_argument("--batch-size", type=int, default=5)
    demo.add_argument("--seeds", type=int, default=5, help="paired seeds per dataset")
    demo.add_argument("--seed", type=int, default=0, help="master seed")
    demo.add_argument("--jobs", type=int, default=-1, help="parallel workers (-1: all cores)")
    demo.add_argument("--out", default=None, help="write the per-run results to this CSV file")

    sub.add_parser("strategies", help="list the registered strategies")
    sub.add_parser("features", help="describe the feature schema")
    return parser


def _demo(args: argparse.Namespace) -> int:
    import pandas as pd

    from metalearn.simulation.compare import compare_strategies, summarize_comparison
    from metalearn.strategies import strategy_names
    from metalearn.tasks.datasets import load_sklearn_dataset
    from metalearn.tasks.task import make_task

    strategies = args.strategies or strategy_names()
    datasets = [load_sklearn_dataset(name) for name in args.datasets]
    tasks = [
        make_task(
            ds.X, ds.y, name=ds.name, model=args.model, regime=args.regime,
            label_budget=args.budget, batch_size=args.batch_size, seed=args.seed + s,
        )
        for ds in datasets
        for s in range(args.seeds)
    ]
    print(
        f"metalearn demo: {len(strategies)} strategies x {len(datasets)} datasets x {args.seeds} paired seeds; "
        f"model={args.model}, {args.regime} start, budget={args.budget}, batch={args.batch_size}",
        flush=True,
    )
    start = time.perf_counter()
    runs = compare_strategies(tasks, strategies, seed=args.seed, n_jobs=args.jobs)
    elapsed = time.perf_counter() - start
    if args.out:
        runs.to_csv(args.out, index=False)
    per_dataset = runs.pivot_table(index="strategy", columns="task", values="aulc_accuracy", aggfunc="mean")
    summary = summarize_comparison(runs).join(100 * per_dataset)
    summary[["aulc_accuracy", "aulc_macro_f1", "final_accuracy"]] *= 100
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.float_format", "{:.2f}".format):
        print("\nArea under the learning curve (x100, mean over paired seeds), best first:")
        print(summary.to_string())
    print(f"\n{len(runs)} runs in {elapsed:.1f} s." + (f" Per-run results: {args.out}" if args.out else ""))
    return 0


def _strategies() -> int:
    from metalearn.strategies import STRATEGIES

    for name, cls in STRATEGIES.items():
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        print(f"{name:18s} {doc}")
    return 0


def _features() -> int:
    from metalearn.features import POOL_SCHEMA

    print(f"schema {POOL_SCHEMA.id}")
    for group, names in (("candidate", POOL_SCHEMA.candidate_features), ("context", POOL_SCHEMA.context_features)):
        print(f"\n{group} features:")
        for name in names:
            print(f"  {name:32s} {POOL_SCHEMA.descriptions[name]}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``metalearn`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            return _demo(args)
        if args.command == "strategies":
            return _strategies()
        if args.command == "features":
            return _features()
    except MetalearnError as exc:
        print(f"metalearn: error: {exc}", file=sys.stderr)
        return 2
    return 1  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
