"""Stopping metrics of benchmark runs: where each rule stops, what it saves, what it loses.

Per run and rule (:func:`stopping_rows`): labels bought at the stop, test accuracy and
macro-F1 at the stop, and the same at the end of the run (the run continues past every
stop), hence labels saved and accuracy points lost. A rule that never stops stops at the end.
A learned rule's row also holds its expected gain at every point, for the calibration report.

The benchmark keeps the rows of a run as one JSON text in the run's ``stopping`` column, so
they live in whatever stores the runs table; :func:`stopping_table` expands them into one
row per run and rule, :func:`stopping_summary` summarises per rule, and
:func:`write_stopping_report` writes ``stopping.csv``, ``stopping_summary.csv``,
``stopping_calibration.csv``, ``stopping.md`` and the plot ``stopping_front.png`` of labels
saved against points lost, one point per rule, with the front the classic criteria draw.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from metalearn.common.atomic import atomic_write_text
from metalearn.common.csv_cells import write_csv
from metalearn.stopping.classic import CLASSIC_RULES
from metalearn.stopping.simulate import StoppingRun

__all__ = [
    "check_stop_rules",
    "stop_rules_digest",
    "build_stop_rules",
    "watched_run",
    "stopping_rows",
    "stopping_table",
    "stopping_summary",
    "classic_front",
    "calibration_from_table",
    "plot_stopping_front",
    "write_stopping_report",
    "RUN_KEYS",
]

#: Columns identifying a run in the stopping table.
RUN_KEYS = ("run_id", "dataset", "model", "regime", "batch_size", "seed", "strategy")


def check_stop_rules(names: Sequence[str]) -> None:
    """Fail before any compute if a stopping rule name or file is bad, or listed twice."""
    from metalearn.exceptions import InvalidInputError
    from metalearn.stopping.loading import load_stopping_rule

    if len(set(names)) != len(names):
        raise InvalidInputError(f"stop_rules lists a rule twice: {list(names)}")
    for name in names:
        load_stopping_rule(name)


def stop_rules_digest(names: Sequence[str]) -> str:
    """A hash of what the stopping rules decide with: names, and a learned rule's weights and setting."""
    import hashlib

    from metalearn.stopping.learned import LearnedStoppingRule
    from metalearn.stopping.loading import load_stopping_rule

    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode())
        rule = load_stopping_rule(name)
        if isinstance(rule, LearnedStoppingRule):
            file = rule.file
            digest.update(json.dumps([file.horizon, file.window, file.threshold, file.arch.to_dict()]).encode())
            if file.quantile_shifts is not None:  # only then: a file without shifts keeps its digest
                digest.update(json.dumps(file.quantile_shifts.tolist()).encode())
            for key in sorted(file.params):
                digest.update(key.encode() + np.ascontiguousarray(file.params[key]).tobytes())
    return digest.hexdigest()[:12]


def build_stop_rules(names: Sequence[str], seed: int) -> dict[str, Any]:
    """Fresh rules by the names they are reported under; every rule seeded from ``seed``."""
    from metalearn.stopping.loading import load_stopping_rule

    return {name: load_stopping_rule(name, random_state=seed) for name in names}


def watched_run(task: Any, strategy: Any, names: Sequence[str], seed: int) -> tuple[Any, str]:
    """Run a benchmark run with stopping rules watching: its result and its stopping rows as JSON text."""
    from metalearn.stopping.learned import LearnedStoppingRule
    from metalearn.stopping.simulate import simulate_with_stopping

    rules = build_stop_rules(names, seed)
    run = simulate_with_stopping(task, strategy, rules)
    learned = {n: r for n, r in rules.items() if isinstance(r, LearnedStoppingRule)}
    horizons = {n: r.file.horizon for n, r in learned.items()}
    levels = {n: list(r.file.arch.quantiles) for n, r in learned.items()}
    return run.result, json.dumps(stopping_rows(run, horizons, levels))


def stopping_rows(
    run: StoppingRun, horizons: Mapping[str, int] | None = None, levels: Mapping[str, Sequence[float]] | None = None
) -> list[dict[str, Any]]:
    """One row per rule of a run watched by :func:`~metalearn.stopping.simulate.simulate_with_stopping`.

    Parameters
    ----------
    run : StoppingRun
    horizons : dict of str to int, optional
        Per learned rule, the horizon (labels) of its estimate, stored with its estimates.
    levels : dict of str to list of float, optional
        Per learned rule, the levels of its quantiles.

    Returns
    -------
    list of dict
        ``rule``, ``stopped``, ``labels_at_stop``, ``accuracy_at_stop``,
        ``macro_f1_at_stop``, ``labels_end``, ``accuracy_end``, ``macro_f1_end``,
        ``labels_saved``, ``points_lost`` (accuracy points, 100 x), ``pool_exhausted``, and
        for learned rules ``expected_gain`` and ``gain_quantiles`` (lists over the curve's
        points), ``quantile_levels`` and ``horizon``.
    """
    res = run.result
    n, acc, f1 = res.n_bought, res.accuracy, res.macro_f1
    rows = []
    for rule, point in run.stops.items():
        j = n.size - 1 if point is None else int(point)
        row: dict[str, Any] = {
            "rule": rule,
            "stopped": point is not None,
            "labels_at_stop": int(n[j]),
            "accuracy_at_stop": float(acc[j]),
            "macro_f1_at_stop": float(f1[j]),
            "labels_end": int(n[-1]),
            "accuracy_end": float(acc[-1]),
            "macro_f1_end": float(f1[-1]),
            "labels_saved": int(n[-1] - n[j]),
            "points_lost": 100.0 * float(acc[-1] - acc[j]),
            "pool_exhausted": bool(run.pool_exhausted),
        }
        if rule in run.estimates:
            row["expected_gain"] = [None if not np.isfinite(v) else round(float(v), 4) for v in run.estimates[rule]]
            if rule in run.quantile_estimates:
                row["gain_quantiles"] = [[None if not np.isfinite(v) else round(float(v), 3) for v in point]
                                         for point in run.quantile_estimates[rule]]
            row["horizon"] = int((horizons or {}).get(rule, 0))
            row["quantile_levels"] = [float(q) for q in (levels or {}).get(rule, [])]
        rows.append(row)
    return rows


def stopping_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run and rule, from the runs table's ``stopping`` column (ok runs only)."""
    if "stopping" not in runs.columns:
        return pd.DataFrame()
    out = []
    ok = runs[(runs.get("status", "ok") == "ok") & runs["stopping"].notna()]
    for _, run in ok.iterrows():
        text = run["stopping"]
        if not isinstance(text, str) or not text:
            continue
        for row in json.loads(text):
            out.append({**{k: run[k] for k in RUN_KEYS if k in run}, **row})
    return pd.DataFrame(out)


def stopping_summary(table: pd.DataFrame, by: Sequence[str] = ("rule",)) -> pd.DataFrame:
    """Per rule (and ``by``): runs, share stopped, labels at stop, labels saved, points lost (mean, p90)."""
    if table.empty:
        return pd.DataFrame()
    grouped = table.groupby(list(by), sort=False)
    summary = grouped.agg(
        runs=("labels_at_stop", "size"),
        stopped=("stopped", "mean"),
        labels_at_stop=("labels_at_stop", "mean"),
        labels_end=("labels_end", "mean"),
        labels_saved=("labels_saved", "mean"),
        accuracy_at_stop=("accuracy_at_stop", "mean"),
        accuracy_end=("accuracy_end", "mean"),
        points_lost=("points_lost", "mean"),
        p90_points_lost=("points_lost", lambda v: float(np.quantile(v, 0.9))),
    ).reset_index()
    summary["labels_saved_share"] = summary["labels_saved"] / summary["labels_end"].where(summary["labels_end"] > 0)
    return summary


def classic_front(summary: pd.DataFrame) -> pd.DataFrame:
    """The classic criteria that no other classic criterion beats on both labels saved and points lost."""
    classic = summary[summary["rule"].isin(list(CLASSIC_RULES))]
    keep = []
    for i, row in classic.iterrows():
        dominated = (
            (classic["labels_saved"] >= row["labels_saved"]) & (classic["points_lost"] <= row["points_lost"])
            & ((classic["labels_saved"] > row["labels_saved"]) | (classic["points_lost"] < row["points_lost"]))
        ).any()
        if not dominated:
            keep.append(i)
    return classic.loc[keep].sort_values("points_lost")


def calibration_from_table(table: pd.DataFrame, curves: pd.DataFrame, n_bins: int = 8) -> pd.DataFrame:
    """Estimated vs realised gain of the learned rules, by bins of the estimate.

    The realised gain at a point is the smoothed test accuracy ``horizon`` labels later minus
    now (points), as in training; points whose horizon passes the end of a run that stopped at
    its budget are left out, past the end of a run that used the whole pool it is the end's.
    """
    from metalearn.stopping.training import gain_targets

    if table.empty or "expected_gain" not in table.columns or curves.empty:
        return pd.DataFrame()
    rows = []
    learned = table[table["expected_gain"].notna()]
    for _, row in learned.iterrows():
        curve = curves[curves["run_id"] == row["run_id"]].sort_values("loop")
        estimates = np.asarray([np.nan if v is None else v for v in row["expected_gain"]], dtype=np.float64)
        if curve.empty or estimates.size != len(curve):
            continue
        exhausted = bool(row.get("pool_exhausted", False))
        realised = gain_targets(curve["n_bought"].to_numpy(), curve["accuracy"].to_numpy(), int(row["horizon"]), exhausted)
        quantiles = row.get("gain_quantiles")
        quantiles = quantiles if isinstance(quantiles, list) and len(quantiles) == estimates.size else [None] * estimates.size
        for e, r, q in zip(estimates, realised, quantiles):
            if np.isfinite(e) and np.isfinite(r):
                names = row.get("quantile_levels") or list(range(len(q or [])))
                below = {f"below_q{level:g}": float(r <= v) for level, v in zip(names, q) if v is not None} if q else {}
                rows.append({"rule": row["rule"], "estimated": e, "realised": r, **below})
    pairs = pd.DataFrame(rows)
    if pairs.empty:
        return pairs
    out = []
    for rule, group in pairs.groupby("rule", sort=False):
        edges = np.unique(np.quantile(group["estimated"], np.linspace(0, 1, n_bins + 1)))
        for low, high in zip(edges[:-1], edges[1:]):
            mask = (group["estimated"] >= low) & ((group["estimated"] < high) | (high == edges[-1]))
            if mask.any():
                out.append({"rule": rule, "bin_low": low, "bin_high": high, "n": int(mask.sum()),
                            "estimated_mean": float(group.loc[mask, "estimated"].mean()),
                            "realised_mean": float(group.loc[mask, "realised"].mean()),
                            **{c: float(group.loc[mask, c].mean()) for c in group.columns if c.startswith("below_q")}})
        # One row over every point: the share of realised gains below each quantile (calibrated: the level).
        out.append({"rule": rule, "bin_low": float("nan"), "bin_high": float("nan"), "n": len(group),
                    "estimated_mean": float(group["estimated"].mean()), "realised_mean": float(group["realised"].mean()),
                    **{c: float(group[c].mean()) for c in group.columns if c.startswith("below_q")}})
    return pd.DataFrame(out)


def plot_stopping_front(summary: pd.DataFrame, path: str | Path, title: str = "Stopping rules") -> Path:
    """Labels saved (mean, per run) against accuracy points lost, one point per rule.

    The classic criteria's front (:func:`classic_front`) is drawn as a step line: a rule
    beyond it (up and to the left) saves more labels for the same loss than any classic one.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for _, row in summary.iterrows():
        classic = row["rule"] in CLASSIC_RULES
        ax.scatter(row["points_lost"], row["labels_saved"], marker="o" if classic else "*", s=40 if classic else 160,
                   color="tab:gray" if classic else "tab:red", zorder=3)
        ax.annotate(str(row["rule"]), (row["points_lost"], row["labels_saved"]), textcoords="offset points",
                    xytext=(5, 4), fontsize=8)
    front = classic_front(summary)
    if not front.empty:
        # Each front point dominates everything to its right and below: a staircase to the right edge.
        right = float(max(summary["points_lost"].max(), front["points_lost"].max())) + 0.25
        xs = np.append(front["points_lost"].to_numpy(), right)
        ys = np.append(front["labels_saved"].to_numpy(), front["labels_saved"].to_numpy()[-1])
        ax.step(xs, ys, where="post", color="tab:gray", linestyle="--", linewidth=1, label="classic front")
        ax.legend(loc="lower right", fontsize=8)
    ax.axvline(0.0, color="black", linewidth=0.5)
    ax.set_xlabel("accuracy points lost vs the end of the run (mean)")
    ax.set_ylabel("labels saved per run (mean)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _markdown(frame: pd.DataFrame, digits: int = 2) -> str:
    if frame.empty:
        return "(no rows)"
    columns = list(frame.columns)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for _, row in frame.iterrows():
        cells = [f"{v:.{digits}f}" if isinstance(v, (float, np.floating)) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_stopping_report(runs: pd.DataFrame, curves: pd.DataFrame, out_dir: str | Path,
                          *, title: str = "Stopping rules") -> dict[str, Path]:
    """Write the stopping tables, the labels-saved vs points-lost plot and ``stopping.md``.

    Returns
    -------
    dict of str to Path
        Empty when the runs carry no stopping results.
    """
    table = stopping_table(runs)
    if table.empty:
        return {}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    flat = table.drop(columns=[c for c in ("expected_gain", "gain_quantiles") if c in table.columns])
    write_csv(flat, out / "stopping.csv")
    written["stopping_table"] = out / "stopping.csv"
    summary = stopping_summary(table)
    write_csv(summary, out / "stopping_summary.csv")
    written["stopping_summary"] = out / "stopping_summary.csv"
    by_strategy = stopping_summary(table, by=("strategy", "rule"))
    written["stopping_front"] = plot_stopping_front(summary, out / "stopping_front.png", title=title)
    calibration = calibration_from_table(table, curves)
    if not calibration.empty:
        write_csv(calibration, out / "stopping_calibration.csv")
        written["stopping_calibration"] = out / "stopping_calibration.csv"
    shown = ["rule", "runs", "stopped", "labels_at_stop", "labels_saved", "points_lost", "p90_points_lost"]
    text = [f"# {title}", "", "Per rule, over every run (a rule that never stops stops at the end of the run).", "",
            _markdown(summary[shown]), "", "## By strategy", "", _markdown(by_strategy[["strategy", *shown]]), "",
            "![labels saved vs points lost](stopping_front.png)", ""]
    if not calibration.empty:
        shown_cal = ["rule", "n", "estimated_mean", "realised_mean", *[c for c in calibration.columns if c.startswith("below_q")]]
        text += ["## Calibration of the learned rules' estimate", "",
                 "Expected gain (points, next `horizon` labels) against the realised gain, by bins of the estimate; "
                 "`below_qL`: share of realised gains below the estimate's quantile of level L (calibrated: L). "
                 "The last row of each rule is over every point.", "",
                 _markdown(calibration[shown_cal]), ""]
    atomic_write_text(out / "stopping.md", "\n".join(text))
    written["stopping_md"] = out / "stopping.md"
    return written
