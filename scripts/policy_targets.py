"""A frozen candidate against margin sampling and the other baselines: the figures its targets name.

From a benchmark's stored results (``OUT/results.parquet``), for the candidate and each
comparison strategy: the mean paired difference to margin in AULC accuracy points over every
problem, per setting (model, regime, batch size) and per dataset; on how many datasets the
candidate is better than margin and on how many it is worse by more than 1 point; and, where
the benchmark holds random and oracle runs, the fraction of the random-to-oracle gap closed
(``(strategy - random) / (oracle - random)`` over the problems that have all three, per model).
Writes the tables as one Markdown file and prints it.

Run: ``.venv/bin/python scripts/policy_targets.py benchmarks/validation-classic
--candidate policy:PATH --compare policy:ppo-synthetic,typiclust_margin --out benchmarks/validation-es/targets.md``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from metalearn.benchmark import ResultStore, format_table

KEY = ["dataset", "model", "regime", "batch_size", "seed"]


def paired_differences(runs: pd.DataFrame, strategies: list[str], reference: str = "margin") -> pd.DataFrame:
    """One row per (problem, seed, strategy): the AULC accuracy difference to ``reference``, in points."""
    ok = runs[runs["status"] == "ok"]
    ref = ok[ok["strategy"] == reference].set_index(KEY)["aulc_accuracy"]
    rows = []
    for strategy in strategies:
        scores = ok[ok["strategy"] == strategy].set_index(KEY)["aulc_accuracy"]
        diff = (100.0 * (scores - ref)).dropna().rename("diff").reset_index()
        rows.append(diff.assign(strategy=strategy))
    frame = pd.concat(rows, ignore_index=True)
    frame["setting"] = frame["model"] + " " + frame["regime"] + " b" + frame["batch_size"].astype(str)
    return frame


def gap_closed(runs: pd.DataFrame, strategies: list[str]) -> pd.DataFrame | None:
    """Fraction of the random-to-oracle AULC gap each strategy closes, per model (None without oracle runs)."""
    ok = runs[runs["status"] == "ok"]
    if not {"oracle", "random"} <= set(ok["strategy"]):
        return None
    wide = ok.pivot_table(index=KEY, columns="strategy", values="aulc_accuracy").dropna(subset=["oracle", "random"])
    rows = []
    for model, group in wide.groupby(level="model"):
        gap = (group["oracle"] - group["random"]).mean()
        row = {"model": model, "problems x seeds": len(group), "oracle - random (points)": 100.0 * gap}
        for strategy in ["margin", *strategies]:
            have = group[strategy].notna() if strategy in group else None
            if have is None or not have.all():
                row[strategy] = float("nan")
                continue
            row[strategy] = (group[strategy] - group["random"]).mean() / gap
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

    runs, _ = ResultStore(args.benchmark).load()
    strategies = [args.candidate] + [s for s in args.compare.split(",") if s]
    labels = dict(item.split("=", 1) for item in args.label)
    name = lambda s: labels.get(s, s)  # noqa: E731
    diffs = paired_differences(runs, strategies)
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
    gaps = gap_closed(runs, strategies)
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
