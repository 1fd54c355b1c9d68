"""How much a strategy that reads its task could gain over the best fixed rule: per-problem headroom on held-in runs.

A learned policy beats every fixed rule only where the best rule differs between problems.
From the held-in runs of the fixed rules (``benchmarks/heldin/results.parquet``: margin,
random, TypiClust, ProbCover and the two switches at 5, 10, 20 and 40 labels, 5 paired seeds per
problem; a problem is a dataset x model x regime), per setting (batch 10 with logistic
regression and random forest; batch 1 with logistic regression):

- the single best rule (SBS): the best mean paired AULC difference to margin over the problems;
- the virtual best rule (VBS): the best rule of each problem, chosen on the same seeds
  (optimistic) and chosen on seeds 0-2 and scored on seeds 3-4 (what trying rules per
  problem can get with this much evidence);
- for every rule, the spread of its per-problem advantage over the SBS, split into the
  seeds' noise and the true spread between problems (observed variance of the problem means
  minus the mean squared standard error), and the value of a perfect per-problem choice between
  it and the SBS under a normal model of that true spread: E[max(0, d)] with d ~ N(mean, true sd),
  and in sample (the mean over problems of max(0, problem mean): inflated by the seeds' noise).

Writes ``headroom.csv`` (one row per setting and rule) and ``summary.csv`` (one row per
setting) to ``--out``. Held-in data only.

Run: ``.venv/bin/python scripts/rule_selection_headroom.py [--out benchmarks/heldin/headroom]``
(seconds; computes nothing new).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from metalearn.common.csv_cells import write_csv

RULES = (
    "margin", "random", "typiclust", "probcover",
    "typiclust_margin:5", "typiclust_margin", "typiclust_margin:20", "typiclust_margin:40",
    "probcover_margin:5", "probcover_margin:10", "probcover_margin:20", "probcover_margin:40",
)
SETTINGS = (("batch 10, logreg and rf", 10, ("logreg", "rf")), ("batch 1, logreg", 1, ("logreg",)))
PROBLEM = ["dataset", "model", "regime"]


def _per_seed_differences(results: pd.DataFrame, batch: int, models: tuple[str, ...]) -> pd.DataFrame:
    """AULC (points) of each rule minus margin's, one row per (problem, seed); complete rows only."""
    runs = results[(results["status"] == "ok") & (results["batch_size"] == batch) & results["model"].isin(models)]
    wide = runs.pivot_table(index=[*PROBLEM, "seed"], columns="strategy", values="aulc_accuracy") * 100
    rules = [r for r in RULES if r in wide.columns]
    wide = wide[rules].dropna()
    return wide.sub(wide["margin"], axis=0)


def _oracle_value(mean: float, sd: float) -> float:
    """E[max(0, d)] for d ~ N(mean, sd): the gain of choosing per problem between a rule and the SBS."""
    if sd <= 0:
        return max(mean, 0.0)
    z = mean / sd
    return float(sd * stats.norm.pdf(z) + mean * stats.norm.cdf(z))


def headroom(diff: pd.DataFrame, setting: str) -> tuple[pd.DataFrame, dict[str, object]]:
    problems = diff.groupby(level=PROBLEM).mean()
    sbs = problems.mean().idxmax()
    seeds = diff.index.get_level_values("seed")
    first, second = diff[seeds < 3].groupby(level=PROBLEM).mean(), diff[seeds >= 3].groupby(level=PROBLEM).mean()
    chosen = first.idxmax(axis=1)
    split_vbs = float(np.mean([second.loc[p, chosen[p]] for p in second.index]))
    summary = {
        "setting": setting, "problems": len(problems), "seeds": int(diff.groupby(level=PROBLEM).size().min()),
        "single_best_rule": sbs, "single_best_vs_margin": float(problems[sbs].mean()),
        "virtual_best_same_seeds": float(problems.max(axis=1).mean()),
        "virtual_best_chosen_on_3_seeds_scored_on_2": split_vbs,
        "single_best_on_the_2_seeds": float(second[sbs].mean()),
    }
    rows = []
    for rule in problems.columns:
        advantage = diff[rule] - diff[sbs]
        groups = advantage.groupby(level=PROBLEM)
        means, noise = groups.mean(), (groups.var(ddof=1) / groups.size()).mean()
        true_var = max(float(means.var(ddof=1) - noise), 0.0)
        rows.append({
            "setting": setting, "rule": rule, "vs_margin": float(problems[rule].mean()),
            "advantage_over_single_best": float(means.mean()),
            "observed_sd_of_problem_means": float(means.std(ddof=1)),
            "noise_sd_of_problem_means": float(np.sqrt(noise)),
            "true_sd_between_problems": float(np.sqrt(true_var)),
            "oracle_choice_vs_single_best": _oracle_value(float(means.mean()), float(np.sqrt(true_var))),
            "oracle_choice_in_sample": float(np.maximum(means, 0.0).mean()),
            "problems_where_best": int((problems.idxmax(axis=1) == rule).sum()),
        })
    return pd.DataFrame(rows), summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="benchmarks/heldin/results.parquet")
    parser.add_argument("--out", default="benchmarks/heldin/headroom")
    args = parser.parse_args(argv)
    results = pd.read_parquet(args.results)
    tables, summaries = [], []
    for setting, batch, models in SETTINGS:
        table, summary = headroom(_per_seed_differences(results, batch, models), setting)
        tables.append(table)
        summaries.append(summary)
    table, summary = pd.concat(tables, ignore_index=True), pd.DataFrame(summaries)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(table, out / "headroom.csv", index=False, float_format="%.4g")
    write_csv(summary, out / "summary.csv", index=False, float_format="%.4g")
    with pd.option_context("display.width", 200):
        print(summary.round(2).to_string(index=False))
        print(table.round(2).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
