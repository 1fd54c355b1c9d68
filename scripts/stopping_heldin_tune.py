"""Calibrate the learned stopping rule and tune every stopping rule on held-in runs (issue 21, part 4).

Reads the runs of :mod:`scripts.stopping_heldin_runs` (every rule's statistic at every point)
and writes to ``--out``:

- ``calibration.csv``: coverage of each quantile level of the learned rule's gain (share of
  realised gains from the next ``horizon`` labels at or below it) before and after the
  split-conformal shifts, in-sample and leave-one-dataset-out (the shifts fitted on the other
  datasets), per held-in set;
- ``grid.csv``: every setting of every rule replayed on the budget runs (learned rule:
  decision statistic x patience x threshold, on calibrated quantiles; classic criteria: their
  own parameter grids): mean accuracy points lost against stopping at the budget, its 90th
  percentile, mean labels bought at the stop, share of runs stopped;
- ``chosen.csv``: per rule, the setting within the loss limits (``--mean-loss``,
  ``--p90-loss``) that uses the fewest labels, and the same settings on the check set;
- ``default-candidate.safetensors``: the released rule's regressor with the shifts and the
  chosen setting (not released: the lead decides).

Calibration shifts: for each level L, the L-quantile (inverted CDF) of the residuals
``realised - predicted_L`` over the calibration points, so that the share of calibration
points at or below the shifted quantile is L (split-conformal adjustment per level).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from metalearn.common.csv_cells import write_csv
from metalearn.stopping.file import calibrated_quantiles, read_stopping_rule, save_stopping_rule
from metalearn.stopping.model_family import zoo_model_family
from metalearn.stopping.training import conformal_quantile_shifts, conformal_shifts_by_family, gain_targets, replay_stops, shifts_per_point

_STANDARD = ("format", "format_version", "architecture", "package_version", "created")


def _csv(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def load_runs(cache: Path, budget: int) -> list[dict[str, Any]]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(cache.glob(f"*__b{budget}.json"))]


# ------------------------------------------------------------------------------------ calibration
def calibration_points(runs: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per asked point with a realised gain: dataset, raw quantiles, realised gain."""
    rows = []
    for run in runs:
        realised = gain_targets(np.asarray(run["n_bought"]), np.asarray(run["accuracy"]), int(run["horizon"]),
                                bool(run["pool_exhausted"]))
        for j, point in enumerate(run["points"]):
            if "learned" in point and np.isfinite(realised[j]):
                rows.append({"dataset": run["dataset"], "model": run["model"], "realised": realised[j],
                             **{f"q{i}": v for i, v in enumerate(point["learned"]["quantiles"])}})
    return pd.DataFrame(rows)


def coverage(quantiles: np.ndarray, realised: np.ndarray) -> np.ndarray:
    return (realised[:, None] <= quantiles).mean(axis=0)


def calibration_report(points: pd.DataFrame, levels: list[float], sets: pd.Series,
                       min_family_points: int = 200) -> tuple[np.ndarray, dict[str, np.ndarray], pd.DataFrame]:
    """Pooled and per-family shifts fitted on every point, and coverage before/after per set and per model.

    Coverage "after" is given in-sample and leaving one dataset out (the shifts fitted on the
    other datasets: the honest figure), for the pooled shifts and for the per-family ones (a
    family with fewer than ``min_family_points`` points falls back to the pooled shifts).
    """
    k = len(levels)
    raw = points[[f"q{i}" for i in range(k)]].to_numpy()
    realised = points["realised"].to_numpy()
    families = points["model"].map(zoo_model_family).to_numpy()
    shifts = conformal_quantile_shifts(raw, realised, levels)
    by_family = conformal_shifts_by_family(raw, realised, families, levels, min_family_points)

    def per_family(mask_fit: np.ndarray, mask_apply: np.ndarray, pooled: np.ndarray) -> np.ndarray:
        own = conformal_shifts_by_family(raw[mask_fit], realised[mask_fit], families[mask_fit], levels, min_family_points)
        return shifts_per_point(families[mask_apply], pooled, own)

    lodo = np.zeros_like(raw)
    lodo_family = np.zeros_like(raw)
    for dataset in points["dataset"].unique():
        held = (points["dataset"] == dataset).to_numpy()
        pooled = conformal_quantile_shifts(raw[~held], realised[~held], levels)
        lodo[held] = calibrated_quantiles(raw[held], pooled)
        lodo_family[held] = calibrated_quantiles(raw[held], per_family(~held, held, pooled))
    after = calibrated_quantiles(raw, shifts)
    everything = np.ones(len(points), dtype=bool)
    after_family = calibrated_quantiles(raw, per_family(everything, everything, shifts))
    groups = [("all", everything), *((s, (sets == s).to_numpy()) for s in sets.unique()),
              *((f"model {m}", (points["model"] == m).to_numpy()) for m in sorted(points["model"].unique()))]
    rows = []
    for name, mask in groups:
        for label, q in (("before (regressor as trained)", raw), ("after pooled, in-sample", after),
                         ("after pooled, leave one dataset out", lodo), ("after per family, in-sample", after_family),
                         ("after per family, leave one dataset out", lodo_family)):
            cov = coverage(q[mask], realised[mask])
            rows.append({"set": name, "points": int(mask.sum()), "datasets": int(points.loc[mask, "dataset"].nunique()),
                         "quantiles": label, **{f"below_q{level:g}": float(c) for level, c in zip(levels, cov)}})
    for name, values in [("pooled", shifts), *((f"family {f}", v) for f, v in by_family.items())]:
        rows.append({"set": f"shift (points), {name}", "points": int(len(points)), "datasets": int(points["dataset"].nunique()),
                     "quantiles": "fitted on all points", **{f"below_q{level:g}": float(s) for level, s in zip(levels, values)}})
    return shifts, by_family, pd.DataFrame(rows)


# ------------------------------------------------------------------------------------ replays
def _loops(runs: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for run in runs:
        for j, (n, acc) in enumerate(zip(run["n_bought"], run["accuracy"])):
            rows.append({"run_id": run["run_id"], "point": j, "n_bought": n, "accuracy": acc})
    return pd.DataFrame(rows)


def _classic_statistic(runs: list[dict[str, Any]], stop_at: Callable[[dict[str, Any], list[dict[str, Any]]], list[bool]]) -> np.ndarray:
    """1.0 where the rule says stop at a point, 0.0 where not, NaN where not asked (replayed with threshold 0.5)."""
    values: list[float] = []
    for run in runs:
        asked = [p for p in run["points"] if "learned" in p]
        decisions = stop_at(run, asked)
        values.extend([0.0 if d else 1.0 for d in decisions] + [np.nan] * (len(run["points"]) - len(asked)))
    return np.asarray(values)


def _stabilizing(window: int, kappa: float) -> Callable[..., list[bool]]:
    def decide(run: dict[str, Any], points: list[dict[str, Any]]) -> list[bool]:
        kappas: list[float] = []
        out = []
        for p in points:
            k = p["stabilizing_predictions"]["kappa"]
            if k is not None:
                kappas.append(k)
            out.append(len(kappas) >= window and float(np.mean(kappas[-window:])) >= kappa)
        return out
    return decide


def _below(rule: str, key: str, threshold: float, inclusive: bool = False) -> Callable[..., list[bool]]:
    def decide(run: dict[str, Any], points: list[dict[str, Any]]) -> list[bool]:
        out = []
        for p in points:
            v = p[rule][key]
            out.append(v is not None and (v <= threshold + 1e-12 if inclusive else v < threshold))
        return out
    return decide


def _fixed(max_labeled: int) -> Callable[..., list[bool]]:
    def decide(run: dict[str, Any], points: list[dict[str, Any]]) -> list[bool]:
        return [p["n_labeled"] >= max_labeled for p in points]
    return decide


def classic_grid() -> list[tuple[str, str, Callable[..., list[bool]]]]:
    grid: list[tuple[str, str, Callable[..., list[bool]]]] = []
    for window in (2, 3, 5):
        for kappa in (0.8, 0.85, 0.9, 0.925, 0.95, 0.97, 0.98, 0.99, 0.995, 1.0):
            grid.append(("stabilizing_predictions", f"window={window}, kappa={kappa:g}", _stabilizing(window, kappa)))
    for t in (0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4):
        grid.append(("overall_uncertainty", f"threshold={t:g}", _below("overall_uncertainty", "mean_entropy", t)))
    for t in (0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95):
        grid.append(("max_confidence", f"threshold={t:g}", _below("max_confidence", "max_entropy", t)))
    for t in (0.0, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1):
        grid.append(("classification_change", f"threshold={t:g}",
                     _below("classification_change", "changed_fraction", t, inclusive=True)))
    for m in range(10, 121, 10):
        grid.append(("fixed_budget", f"max_labeled={m}", _fixed(m)))
    return grid


def _learned_statistic(runs: list[dict[str, Any]], decision: str, levels: list[float], shifts: np.ndarray | None,
                       by_family: dict[str, np.ndarray] | None = None, key: str = "learned") -> np.ndarray:
    """The learned rule's decision statistic at every point (NaN where not asked).

    ``shifts`` calibrate every run, except runs whose task model's family has its own entry in
    ``by_family``; ``key`` is the recorded rule (``"learned"``, or ``"released"`` where the runs
    also recorded the released rule's estimates).
    """
    values: list[float] = []
    for run in runs:
        run_shifts = (by_family or {}).get(zoo_model_family(run["model"]), shifts)
        for p in run["points"]:
            if key not in p:
                values.append(np.nan)
            elif decision == "mean":
                values.append(p[key]["mean"])
            else:
                q = calibrated_quantiles(np.asarray(p[key]["quantiles"], dtype=np.float64), run_shifts)
                values.append(float(q[levels.index(float(decision[1:]))]))
    return np.asarray(values)


def _summary(stops: pd.DataFrame) -> dict[str, float]:
    return {"runs": int(len(stops)), "mean_points_lost": float(stops["points_lost"].mean()),
            "p90_points_lost": float(np.quantile(stops["points_lost"], 0.9)),
            "mean_labels_at_stop": float(stops["labels_at_stop"].mean()),
            "mean_labels_end": float(stops["labels_end"].mean()), "stopped": float(stops["stopped"].mean())}


def replay_grid(runs: list[dict[str, Any]], levels: list[float], shifts: np.ndarray | None,
                thresholds: np.ndarray, decisions: list[str], patiences: list[int],
                by_family: dict[str, np.ndarray] | None = None, key: str = "learned") -> pd.DataFrame:
    loops = _loops(runs)
    rows = []
    for rule, setting, decide in classic_grid():
        stops = replay_stops(loops, _classic_statistic(runs, decide), 0.5, 1)
        rows.append({"rule": rule, "setting": setting, **_summary(stops)})
    for decision in decisions:
        statistic = _learned_statistic(runs, decision, levels, shifts, by_family, key)
        for patience in patiences:
            for threshold in thresholds:
                stops = replay_stops(loops, statistic, float(threshold), patience)
                rows.append({"rule": "learned", "setting": f"decision={decision}, patience={patience}, threshold={threshold:g}",
                             "decision": decision, "patience": patience, "threshold": float(threshold), **_summary(stops)})
    return pd.DataFrame(rows)


def choose(grid: pd.DataFrame, mean_loss: float, p90_loss: float) -> pd.DataFrame:
    """Per rule, the setting within both loss limits with the fewest labels (ties: lower mean loss)."""
    ok = grid[(grid["mean_points_lost"] <= mean_loss) & (grid["p90_points_lost"] <= p90_loss)]
    picks = ok.sort_values(["mean_labels_at_stop", "mean_points_lost"]).groupby("rule", sort=False).head(1)
    missing = sorted(set(grid["rule"]) - set(picks["rule"]))
    return pd.concat([picks, pd.DataFrame([{"rule": r, "setting": "none within the limits"} for r in missing])],
                     ignore_index=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tune-cache", default="out/stopping-heldin-cache", help="runs that choose (envs/held_in.toml)")
    parser.add_argument("--check-cache", default="out/stopping-ruleheldin-cache",
                        help="runs that only check the choice (the rule's own held-in datasets)")
    parser.add_argument("--budget", type=int, default=100, help="budget of the runs the settings are tuned on")
    parser.add_argument("--calibration-budget", type=int, default=500, help="budget of the runs the quantiles are calibrated on")
    parser.add_argument("--rule", default="default")
    parser.add_argument("--mean-loss", type=float, default=1.0)
    parser.add_argument("--p90-loss", type=float, default=2.0)
    parser.add_argument("--decisions", type=_csv, default=["mean", "q0.5", "q0.75", "q0.9"])
    parser.add_argument("--out", default="benchmarks/stopping-heldin")
    parser.add_argument("--no-candidate", action="store_true", help="do not write the candidate rule file")
    parser.add_argument("--calibration", choices=["per-family", "pooled"], default="per-family",
                        help="the candidate's calibration: shifts per task-model family where it has --min-family-points "
                             "points (else pooled), or one pooled set of shifts; the grid reports both")
    parser.add_argument("--min-family-points", type=int, default=200)
    parser.add_argument("--released", default="default",
                        help="the released rule, replayed where the runs also recorded its estimates (--baseline-rule)")
    args = parser.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rule = read_stopping_rule(args.rule)
    levels = [float(q) for q in rule.arch.quantiles]

    # 1. Calibration on the long runs of both held-in sets.
    sets, frames = [], []
    for name, cache in (("held_in.toml", args.tune_cache), ("rule's held-in", args.check_cache)):
        points = calibration_points(load_runs(Path(cache), args.calibration_budget))
        frames.append(points)
        sets.extend([name] * len(points))
    points = pd.concat(frames, ignore_index=True)
    shifts, by_family, calibration = calibration_report(points, levels, pd.Series(sets), args.min_family_points)
    chosen_family = by_family if args.calibration == "per-family" else {}
    write_csv(calibration, out / "calibration.csv")
    print(calibration.round(3).to_string(index=False))

    # 2. Every rule's grid on the budget runs: chosen on held_in.toml, checked on the rule's held-in set.
    thresholds = np.round(np.arange(-1.0, 6.01, 0.25), 2)
    tune_runs = load_runs(Path(args.tune_cache), args.budget)
    check_runs = load_runs(Path(args.check_cache), args.budget)
    grid = replay_grid(tune_runs, levels, shifts, thresholds, args.decisions, [1, 2, 3], chosen_family).assign(data="held_in.toml")
    other_name = "learned (pooled calibration)" if chosen_family else "learned (per-family calibration)"
    other = replay_grid(tune_runs, levels, shifts, thresholds, args.decisions, [1, 2, 3], {} if chosen_family else by_family)
    other = other[other["rule"] == "learned"].assign(rule=other_name, data="held_in.toml")
    as_trained = replay_grid(tune_runs, levels, rule.quantile_shifts, np.array([rule.threshold]), [rule.decision],
                             [rule.patience], rule.quantile_shifts_by_family)
    fixed = [as_trained[as_trained["rule"] == "learned"].assign(rule="learned (as trained: its own calibration and setting)",
                                                                data="held_in.toml")]
    if tune_runs and "released" in next((p for p in tune_runs[0]["points"] if "learned" in p), {}):
        released_file = read_stopping_rule(args.released)
        released = replay_grid(tune_runs, levels, released_file.quantile_shifts, np.array([released_file.threshold]),
                               [released_file.decision], [released_file.patience], released_file.quantile_shifts_by_family,
                               key="released")
        fixed.append(released[released["rule"] == "learned"].assign(rule="learned (released)", data="held_in.toml"))
    fixed_rows = pd.concat(fixed, ignore_index=True)
    write_csv(pd.concat([grid, other, fixed_rows], ignore_index=True), out / "grid.csv")
    chosen = choose(pd.concat([grid, other], ignore_index=True), args.mean_loss, args.p90_loss)
    check = (pd.concat([replay_grid(check_runs, levels, shifts, thresholds, args.decisions, [1, 2, 3], chosen_family),
                        replay_grid(check_runs, levels, shifts, thresholds, args.decisions, [1, 2, 3],
                                    {} if chosen_family else by_family).query("rule == 'learned'").assign(rule=other_name)],
                       ignore_index=True)
             if check_runs else pd.DataFrame())
    rows = []
    for _, pick in chosen.iterrows():
        row = pick.to_dict()
        if not check.empty and pick["setting"] in set(check["setting"]):
            c = check[(check["rule"] == pick["rule"]) & (check["setting"] == pick["setting"])].iloc[0]
            row.update({f"check_{k}": c[k] for k in ("runs", "mean_points_lost", "p90_points_lost", "mean_labels_at_stop")})
        rows.append(row)
    chosen = pd.concat([pd.DataFrame(rows), fixed_rows], ignore_index=True)
    write_csv(chosen, out / "chosen.csv")
    print(chosen[["rule", "setting", "runs", "mean_points_lost", "p90_points_lost", "mean_labels_at_stop",
                  *[c for c in chosen.columns if c.startswith("check_")]]].round(2).to_string(index=False))

    # 3. The candidate file: the regressor of --rule, calibrated, at the chosen setting.
    learned = chosen[chosen["rule"] == "learned"].iloc[0]
    if not args.no_candidate and np.isfinite(learned.get("threshold", np.nan)):
        meta = {k: v for k, v in rule.metadata.items() if k not in _STANDARD and k != "release"}
        meta.update(threshold=float(learned["threshold"]), patience=int(learned["patience"]), decision=str(learned["decision"]),
                    quantile_shifts=[round(float(s), 4) for s in shifts])
        meta.pop("quantile_shifts_by_family", None)
        if chosen_family:
            meta["quantile_shifts_by_family"] = {f: [round(float(v), 4) for v in s] for f, s in chosen_family.items()}
        meta["calibration"] = {
            "method": "split-conformal shift per quantile level (the level's quantile of realised - predicted)"
                      + (f", per task-model family with at least {args.min_family_points} points" if chosen_family else ""),
            "data": f"held-in train-split runs at budget {args.calibration_budget}: envs/held_in.toml and the rule's own "
                    "held-in datasets; never the validation split",
            "points": int(len(points)),
        }
        meta["heldin_tuning"] = {
            "data": f"envs/held_in.toml runs at budget {args.budget}", "mean_loss_limit": args.mean_loss,
            "p90_loss_limit": args.p90_loss, **{k: float(learned[k]) for k in ("mean_points_lost", "p90_points_lost",
                                                                              "mean_labels_at_stop")},
        }
        path = save_stopping_rule(out / "default-candidate.safetensors", rule.arch, rule.params, meta)
        print("candidate:", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
