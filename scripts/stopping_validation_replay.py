"""The frozen comparison of the stopping rules on the validation split (issue 21, part 4).

Replays, on runs of the validation split recorded by ``scripts/stopping_heldin_runs.py
--split validation`` (every rule's statistic at every point), the settings frozen on held-in
runs, and nothing else: nothing is chosen here.

- every rule at the setting chosen on the held-in runs (``benchmarks/stopping-heldin/chosen.csv``:
  within the loss limits there, fewest labels), the learned one with the candidate file's
  calibrated quantiles (``default-candidate.safetensors``);
- the released learned rule at its released setting (uncalibrated);
- the classic criteria at their papers' / small-text's settings, as before.

Writes to ``--out``: ``replay.csv`` (per rule and setting: runs, mean and 90th percentile of
accuracy points lost against stopping at the budget, mean labels at the stop),
``replay_by_setting.csv`` (the same per model and regime), ``replay_by_dataset.csv``,
``calibration.csv`` (share of realised gains at or below each quantile of the learned rule's
gain, released and calibrated, on the points of the ``--calibration-budget`` runs whose
realised gain is known: the gain over the next 200 labels needs longer runs than budget 100)
and ``targets.md``.

Run::

    PYTHONPATH=. nice -n 5 .venv/bin/python scripts/stopping_heldin_runs.py --split validation \\
        --cache out/stopping-validation21-cache --models logreg,rf --regimes cold,warm --seeds 10 --budget 100
    PYTHONPATH=. nice -n 5 .venv/bin/python scripts/stopping_heldin_runs.py --split validation \
        --cache out/stopping-validation21-cache --models logreg,rf --regimes cold --seeds 2 --budget 500
    PYTHONPATH=. .venv/bin/python scripts/stopping_validation_replay.py --cache out/stopping-validation21-cache \\
        --out benchmarks/stopping-validation/issue21
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metalearn.common.csv_cells import write_csv
from metalearn.stopping.file import calibrated_quantiles, read_stopping_rule
from metalearn.stopping.model_family import zoo_model_family
from metalearn.stopping.training import replay_stops, shifts_per_point
from scripts.stopping_heldin_tune import (
    _classic_statistic,
    _learned_statistic,
    _loops,
    calibration_points,
    classic_grid,
    coverage,
    load_runs,
)

#: The classic criteria at their papers' / small-text's settings (the benchmark's defaults).
PAPER_SETTINGS = {
    "stabilizing_predictions": "window=3, kappa=0.99",
    "overall_uncertainty": "threshold=0.05",
    "max_confidence": "threshold=0.001",
    "classification_change": "threshold=0",
    "fixed_budget": "max_labeled=100",
}
LEARNED = "learned (candidate: calibrated, held-in setting)"
RELEASED = "learned (released)"


def _csv(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def _stops(runs: list[dict[str, Any]], chosen: pd.DataFrame, candidate: Any, released: Any) -> pd.DataFrame:
    """One row per (run, rule, setting): labels at the stop, points lost, the run's setting."""
    loops = _loops(runs)
    meta = pd.DataFrame([{k: r[k] for k in ("run_id", "dataset", "model", "regime", "seed")} for r in runs])
    deciders = {(rule, setting): decide for rule, setting, decide in classic_grid()}
    settings: list[tuple[str, str, str, np.ndarray, float, int]] = []
    for _, pick in chosen.iterrows():
        rule, setting = str(pick["rule"]), str(pick["setting"])
        if rule in PAPER_SETTINGS and (rule, setting) in deciders:
            settings.append((rule, setting, "held-in tuned", _classic_statistic(runs, deciders[(rule, setting)]), 0.5, 1))
    for rule, setting in PAPER_SETTINGS.items():
        settings.append((rule, setting, "paper", _classic_statistic(runs, deciders[(rule, setting)]), 0.5, 1))
    levels = [float(q) for q in candidate.arch.quantiles]
    settings.append((LEARNED, f"decision={candidate.decision}, patience={candidate.patience}, threshold={candidate.threshold:g}",
                     "held-in tuned", _learned_statistic(runs, candidate.decision, levels, candidate.quantile_shifts,
                                                         candidate.quantile_shifts_by_family),
                     float(candidate.threshold), int(candidate.patience)))
    # The released rule's own estimates where the runs recorded them (--baseline-rule); runs made
    # with the released rule as --rule carry them under "learned".
    key = "released" if _recorded(runs, "released") else "learned"
    settings.append((RELEASED, f"decision={released.decision}, patience={released.patience}, threshold={released.threshold:g}",
                     "released", _learned_statistic(runs, released.decision, levels, released.quantile_shifts,
                                                    released.quantile_shifts_by_family, key),
                     float(released.threshold), int(released.patience)))
    frames = []
    for rule, setting, origin, statistic, threshold, patience in settings:
        stops = replay_stops(loops, statistic, threshold, patience).reset_index()
        frames.append(stops.assign(rule=rule, setting=setting, origin=origin))
    return pd.concat(frames, ignore_index=True).merge(meta, on="run_id")


def _recorded(runs: list[dict[str, Any]], key: str) -> bool:
    """Whether the runs recorded the estimates of the rule stored under ``key``."""
    return any(key in p for run in runs[:1] for p in run["points"])


def _summarise(stops: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    def one(part: pd.DataFrame) -> pd.Series:
        return pd.Series({
            "runs": len(part), "mean_points_lost": part["points_lost"].mean(),
            "p90_points_lost": float(np.quantile(part["points_lost"], 0.9)),
            "mean_labels_at_stop": part["labels_at_stop"].mean(), "mean_labels_end": part["labels_end"].mean(),
            "stopped": part["stopped"].mean(),
        })
    return stops.groupby(["rule", "setting", "origin", *by], sort=False).apply(one, include_groups=False).reset_index()


def _calibration(runs: list[dict[str, Any]], candidate: Any) -> pd.DataFrame:
    points = calibration_points(runs)
    levels = [float(q) for q in candidate.arch.quantiles]
    raw = points[[f"q{i}" for i in range(len(levels))]].to_numpy()
    realised = points["realised"].to_numpy()
    families = points["model"].map(zoo_model_family).to_numpy().astype(str)
    pooled = candidate.quantile_shifts if candidate.quantile_shifts is not None else np.zeros(len(levels))
    calibrated = calibrated_quantiles(raw, shifts_per_point(families, pooled, candidate.quantile_shifts_by_family))
    rows = []
    groups = [("all", np.ones(len(points), dtype=bool)),
              *((f"model {m}", (points["model"] == m).to_numpy()) for m in sorted(points["model"].unique()))]
    for name, mask in groups:
        for label, q in (("regressor's quantiles", raw), ("calibrated (candidate's shifts)", calibrated)):
            rows.append({"set": name, "quantiles": label, "points": int(mask.sum()),
                         "datasets": points.loc[mask, "dataset"].nunique(),
                         **{f"below_q{level:g}": float(c) for level, c in zip(levels, coverage(q[mask], realised[mask]))}})
    return pd.DataFrame(rows)


def _targets(summary: pd.DataFrame, calibration: pd.DataFrame, mean_limit: float, p90_limit: float) -> str:
    learned = summary[summary["rule"] == LEARNED].iloc[0]
    within = summary[(summary["mean_points_lost"] <= mean_limit) & (summary["p90_points_lost"] <= p90_limit)]
    classic_within = within[~within["rule"].str.startswith("learned")]
    ok = learned["mean_points_lost"] <= mean_limit and learned["p90_points_lost"] <= p90_limit
    fewer = classic_within.empty or bool((learned["mean_labels_at_stop"] < classic_within["mean_labels_at_stop"]).all())
    lines = [
        "# Issue 21 part 4: the stopping targets on the validation split (frozen settings)", "",
        "| target | measured | |", "|---|---|---|",
        f"| mean points lost <= {mean_limit} | {learned['mean_points_lost']:.2f} | "
        f"{'met' if learned['mean_points_lost'] <= mean_limit else 'missed'} |",
        f"| 90% of runs lose <= {p90_limit} | 90th percentile {learned['p90_points_lost']:.2f} | "
        f"{'met' if learned['p90_points_lost'] <= p90_limit else 'missed'} |",
    ]
    others = "; ".join(f"`{r.rule}` {r.setting} ({r.origin}): {r.mean_labels_at_stop:.1f}"
                       for r in classic_within.sort_values("mean_labels_at_stop").itertuples())
    lines.append(f"| fewer labels than every classic criterion within the limits | {learned['mean_labels_at_stop']:.1f} "
                 f"labels; within the limits: {others or 'none'} | {'met' if ok and fewer else 'missed'} |")
    cal = calibration.iloc[1]
    lines.append(f"| calibrated estimate (90% of realised gains below the 90% quantile) | {100 * cal['below_q0.9']:.0f}% "
                 f"(released quantiles: {100 * calibration.iloc[0]['below_q0.9']:.0f}%) | "
                 f"{'met' if abs(cal['below_q0.9'] - 0.9) <= 0.05 else 'missed'} |")
    per_model = calibration[(calibration["set"] != "all") & (calibration["quantiles"] != "regressor's quantiles")]
    for _, row in per_model.iterrows():
        lines.append(f"| ... {row['set']} | {100 * row['below_q0.9']:.0f}% | "
                     f"{'met' if abs(row['below_q0.9'] - 0.9) <= 0.05 else 'missed'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", required=True, help="validation runs of stopping_heldin_runs.py --split validation")
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--calibration-budget", type=int, default=500)
    parser.add_argument("--chosen", default="benchmarks/stopping-heldin/chosen.csv")
    parser.add_argument("--candidate", default="benchmarks/stopping-heldin/default-candidate.safetensors")
    parser.add_argument("--released", default="default")
    parser.add_argument("--mean-loss", type=float, default=1.0)
    parser.add_argument("--p90-loss", type=float, default=2.0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    runs = load_runs(Path(args.cache), args.budget)
    if not runs:
        raise SystemExit(f"no runs of budget {args.budget} in {args.cache}")
    chosen = pd.read_csv(args.chosen)
    candidate, released = read_stopping_rule(args.candidate), read_stopping_rule(args.released)
    stops = _stops(runs, chosen, candidate, released)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = _summarise(stops, [])
    by_setting = _summarise(stops, ["model", "regime"])
    by_dataset = _summarise(stops, ["dataset"])
    long_runs = load_runs(Path(args.cache), args.calibration_budget)
    if not long_runs:
        raise SystemExit(f"no runs of budget {args.calibration_budget} in {args.cache} for the calibration")
    calibration = _calibration(long_runs, candidate)
    write_csv(summary, out / "replay.csv", index=False, float_format="%.6g")
    write_csv(by_setting, out / "replay_by_setting.csv", index=False, float_format="%.6g")
    write_csv(by_dataset, out / "replay_by_dataset.csv", index=False, float_format="%.6g")
    write_csv(calibration, out / "calibration.csv", index=False, float_format="%.6g")
    targets = _targets(summary, calibration, args.mean_loss, args.p90_loss)
    (out / "targets.md").write_text(targets, encoding="utf-8")
    cols = ["rule", "setting", "origin", "runs", "mean_points_lost", "p90_points_lost", "mean_labels_at_stop", "stopped"]
    print(summary[cols].sort_values("mean_labels_at_stop").round(2).to_string(index=False))
    print(calibration.round(3).to_string(index=False))
    print(targets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
