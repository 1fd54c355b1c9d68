"""A frozen candidate against margin sampling and the other baselines: the figures its targets name.

From a benchmark's stored results (``OUT/results.parquet``), for the candidate and each
comparison strategy: the mean paired difference to margin in AULC accuracy points over every
problem, per setting (model, regime, batch size) and per dataset; on how many datasets the
candidate is better than margin and on how many it is worse by more than 1 point; and, where
the benchmark holds random and oracle runs, the fraction of the random-to-oracle gap closed
per model (:func:`metalearn.benchmark.stats.gap_closed`: ``mean(strategy - random) /
mean(oracle - random)`` over the problems and seeds with an oracle run). Then the candidate
head to head with each comparison strategy (mean difference over problems, Wilcoxon
signed-rank test over problems, Holm-adjusted over the comparisons), and per model the
candidate's and the baselines' mean difference to margin with their worst dataset against
margin and, where random sampling ran, against random. Every statistic is
:mod:`metalearn.benchmark.stats`'s; this script only lays them out. Writes the tables as one
Markdown file and prints it.

Run: ``.venv/bin/python scripts/policy_targets.py benchmarks/validation-classic
--candidate policy:PATH --compare policy:ppo-synthetic,typiclust_margin --out benchmarks/validation-es/targets.md``
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from metalearn.benchmark import ResultStore, format_table, tables_from_records
from metalearn.benchmark.stats import PROBLEM_KEYS, gap_closed, holm_adjust, paired_test, run_differences
from metalearn.benchmark.storage import table_to_records


def _runs(folder: Path) -> pd.DataFrame:
    """The runs table of a benchmark folder: its run cache, else its committed results table."""
    store = ResultStore(folder)
    runs, _ = store.load()
    if runs.empty:  # a fresh clone holds the results table only
        runs, _ = tables_from_records(table_to_records(store.read_table()))
    return runs


def gap_table(runs: pd.DataFrame, strategies: list[str]) -> pd.DataFrame | None:
    """The gap-closed table per model (see :func:`metalearn.benchmark.stats.gap_closed`); None without oracle runs."""
    gaps = gap_closed(runs, ["margin", *strategies], by=["model"])
    if gaps.empty:
        return None
    rows = []
    for model, group in gaps.groupby("model", sort=True):
        first = group.iloc[0]
        row = {"model": model, "problems x seeds": int(first["n_runs"]),
               "oracle - random (points)": first["gap_points"]}
        row.update(zip(group["strategy"], group["gap_closed"]))
        rows.append(row)
    return pd.DataFrame(rows)


def head_to_head(runs: pd.DataFrame, candidate: str, baselines: list[str]) -> pd.DataFrame:
    """The candidate minus each baseline over the problems both ran, with Holm's correction.

    A problem is a (dataset, model, regime, batch size); its difference is the mean over the
    paired seeds, and the test is the Wilcoxon signed-rank test over problems, as in the
    benchmark's report. The Holm adjustment runs over the family of baselines.
    """
    rows = []
    for baseline in baselines:
        per_run = run_differences(runs, [candidate], reference=baseline)
        per_problem = per_run.groupby(list(PROBLEM_KEYS))["diff"].mean().to_numpy(dtype=float)
        rows.append({
            "baseline": baseline, "problems": per_problem.size,
            "candidate - baseline": float(per_problem.mean()) if per_problem.size else float("nan"),
            "se over problems": float(per_problem.std(ddof=1) / per_problem.size**0.5) if per_problem.size > 1 else float("nan"),
            "problems better": int((per_problem > 0).sum()),
            "p (Wilcoxon)": paired_test(per_problem) if per_problem.size > 1 else float("nan"),
        })
    table = pd.DataFrame(rows)
    table["p (Holm)"] = holm_adjust(table["p (Wilcoxon)"].to_numpy(dtype=float))
    return table


def per_model_table(runs: pd.DataFrame, strategies: list[str], name: Callable[[str], str]) -> pd.DataFrame:
    """Per model and strategy: mean difference to margin, and the worst dataset against margin and random."""
    to_margin = run_differences(runs, strategies, reference="margin")
    has_random = bool((runs["strategy"] == "random").any())
    to_random = run_differences(runs, strategies, reference="random") if has_random else None
    rows = []
    for (model, strategy), group in to_margin.groupby(["model", "strategy"], sort=True):
        by_dataset = group.groupby("dataset")["diff"].mean()
        row = {"model": model, "strategy": name(strategy), "mean diff to margin": group["diff"].mean(),
               "worst dataset vs margin": by_dataset.min(), "which": by_dataset.idxmin()}
        if to_random is not None:
            vs_random = to_random.loc[(to_random["model"] == model) & (to_random["strategy"] == strategy)]
            by_dataset_random = vs_random.groupby("dataset")["diff"].mean()
            row.update({"worst dataset vs random": by_dataset_random.min(), "which (random)": by_dataset_random.idxmin()})
        rows.append(row)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benchmark", type=Path, help="benchmark folder holding the runs")
    parser.add_argument("--candidate", required=True, help="strategy name of the frozen candidate")
    parser.add_argument("--compare", default="", help="comma-separated baselines shown beside it")
    parser.add_argument("--label", action="append", default=[], metavar="SPEC=NAME", help="display name of a strategy")
    parser.add_argument("--out", type=Path, default=None, help="Markdown file to write")
    args = parser.parse_args()

    runs = _runs(args.benchmark)
    strategies = [args.candidate] + [s for s in args.compare.split(",") if s]
    labels = dict(item.split("=", 1) for item in args.label)
    def name(strategy: str) -> str:
        return labels.get(strategy, strategy)
    diffs = run_differences(runs, strategies, reference="margin")
    diffs["setting"] = diffs["model"] + " " + diffs["regime"] + " b" + diffs["batch_size"].astype(str)
    lines = [f"# Targets of `{name(args.candidate)}` in `{args.benchmark}`", ""]

    overall = []
    for strategy, group in diffs.groupby("strategy", sort=False):
        by_dataset = group.groupby("dataset")["diff"].mean()
        overall.append({
            "strategy": name(strategy), "runs": len(group), "mean diff to margin": group["diff"].mean(),
            "datasets better": int((by_dataset > 0).sum()), "datasets worse by > 1": int((by_dataset < -1.0).sum()),
            "datasets": len(by_dataset), "worst dataset": by_dataset.min(),
        })
    lines += ["## Overall (AULC accuracy points, paired with margin)", "", format_table(pd.DataFrame(overall)), ""]
    for title, column in (("per setting", "setting"), ("per dataset (mean over settings and seeds)", "dataset")):
        table = diffs.pivot_table(index=column, columns="strategy", values="diff", aggfunc="mean")
        table = table[strategies].rename(columns=name).reset_index()
        lines += [f"## Difference to margin, {title}", "", format_table(table), ""]
    baselines = strategies[1:]
    if baselines:
        table = head_to_head(runs, args.candidate, baselines)
        table["baseline"] = table["baseline"].map(name)
        lines += [
            f"## `{name(args.candidate)}` head to head (points; a problem is a dataset x model x regime x batch size)",
            "",
            format_table(table),
            "",
        ]
    lines += ["## Per model (points)", "", format_table(per_model_table(runs, strategies, name)), ""]
    gaps = gap_table(runs, strategies)
    if gaps is not None:
        gaps = gaps.rename(columns=name)
        lines += [
            "## Fraction of the random-to-oracle gap closed",
            "",
            "(strategy - random) / (oracle - random), mean AULC over the problems and seeds with an oracle run.",
            "",
            format_table(gaps),
            "",
        ]
    text = "\n".join(lines)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
