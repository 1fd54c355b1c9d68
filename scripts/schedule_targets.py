"""A frozen batch schedule against retraining after every label and against the rules' front.

Issue 21's targets, from a benchmark's stored runs of one querying strategy at fixed batch
sizes (``--batch-sizes 1,10``) and under schedules (``--schedules ...``, named
``STRATEGY@SCHEDULE``). Every schedule and batch size is an *arm*; runs pair on the problem
(dataset, model, regime, seed), and every figure is in step-curve AULC points
(:func:`metalearn.simulation.metrics.step_area_under_learning_curve`: the score a user holds,
so buying labels before a retrain is charged).

Per setting (model x regime), and pooled per regime:

- **against batch 1**: the learned schedule's fits saved (``1 - fits / fits at batch 1``) and its
  paired step-AULC difference (target: at least 75% fewer fits, at most 0.3 points lost);
- **against the front**: the rules (every other arm: fixed sizes, geometric growth) draw a
  front in the score-against-fits plane (:func:`metalearn.benchmark.stats.compute_front`); it
  is read at the learned schedule's mean fits, linearly in log fits between its two
  neighbours (:func:`metalearn.benchmark.stats.front_weights`), problem by problem with the
  same weights, and the learned schedule's paired difference to it is tested (target: higher).
  The front is the maximum over every rule on the validation problems themselves, so it is
  the strongest simple baseline there is, not one chosen beforehand.

Also per dataset, the batch sizes the learned schedule chose (its behaviour, in words), and one
plot per setting. Writes ``schedule_arms.csv``, ``schedule_targets.csv``,
``schedule_per_dataset.csv``, ``schedule_sizes.csv``, ``targets.md`` and
``schedule_front_<model>_<regime>.png`` to ``--out``.

Run: ``PYTHONPATH=. .venv/bin/python scripts/schedule_targets.py benchmarks/validation-classic
--strategy policy:benchmarks/es-training/frozen/es_seed1_gen4.safetensors
--learned benchmarks/schedule-training/frozen/price0.1_gen4.safetensors --out benchmarks/validation-schedule``
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd

from metalearn.benchmark import ResultStore, format_table, tables_from_records
from metalearn.benchmark.stats import compute_front, front_weights, paired_test
from metalearn.benchmark.storage import table_to_records

PAIR = ["dataset", "model", "regime", "seed"]
METRIC = "step_aulc_accuracy"
STAGES = ((0, 10), (10, 30), (30, 60), (60, 10**9))


def _runs(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Runs and curves of a benchmark folder: its run cache, else its committed results table."""
    store = ResultStore(folder)
    runs, curves = store.load()
    if runs.empty:
        runs, curves = tables_from_records(table_to_records(store.read_table()))
    return runs, curves


def arms_of(runs: pd.DataFrame, strategy: str, learned: str) -> pd.DataFrame:
    """The strategy's ok runs with an ``arm`` column: ``fixed:B`` at batch size B, else the schedule."""
    ok = runs.loc[runs["status"] == "ok"].copy()
    plain = ok["strategy"] == strategy
    scheduled = ok["strategy"].str.startswith(strategy + "@")
    ok = ok.loc[plain | scheduled].copy()
    ok["arm"] = np.where(ok["strategy"] == strategy, "fixed:" + ok["batch_size"].astype(int).astype(str),
                         ok["strategy"].str.slice(len(strategy) + 1))
    ok.loc[ok["arm"] == learned, "arm"] = "learned"
    if not (ok["arm"] == "learned").any():
        raise SystemExit(f"no ok run of {strategy}@{learned} in the results")
    # One arm per schedule: a fixed:B schedule at batch 1 is the same rule as batch size B.
    return ok.drop_duplicates(subset=[*PAIR, "arm"], keep="first")


def _paired(arms: pd.DataFrame, value: str = METRIC) -> pd.DataFrame:
    """One row per problem, one column per arm (problems every arm ran)."""
    wide = arms.pivot_table(index=PAIR, columns="arm", values=value, aggfunc="first")
    return wide.dropna()


def _summary(d: np.ndarray) -> dict[str, float]:
    d = d[np.isfinite(d)]
    n = d.size
    half = 1.96 * d.std(ddof=1) / math.sqrt(n) if n > 1 else float("nan")
    return {"n": n, "mean": d.mean(), "ci_low": d.mean() - half, "ci_high": d.mean() + half, "p": paired_test(d)}


def setting_targets(arms: pd.DataFrame, group: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, list[dict]]:
    """Per group (a setting, or a regime pooled over models): arm means and the two targets."""
    arm_rows, target_rows, fronts = [], [], []
    for key, part in arms.groupby(group, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        label = dict(zip(group, key))
        score = _paired(part) * 100.0
        fits = _paired(part, "n_fits").loc[score.index]
        secs = part.assign(_s=part["fit_seconds"] + part["query_seconds_total"])
        seconds = secs.groupby("arm")["_s"].mean()
        means = pd.DataFrame({"n_fits": fits.mean(), METRIC: score.mean(), "seconds": seconds.reindex(score.columns)})
        for arm, row in means.iterrows():
            arm_rows.append({**label, "arm": arm, "problems": len(score), **row.to_dict()})
        rules = means.drop(index="learned")
        order = compute_front(rules["n_fits"].to_numpy(), rules[METRIC].to_numpy())
        front = rules.iloc[order]
        at = float(means.loc["learned", "n_fits"])
        lo, hi, w = front_weights(front["n_fits"].to_numpy(), at)
        lo_arm, hi_arm = front.index[lo], front.index[hi]
        front_score = w * score[lo_arm] + (1.0 - w) * score[hi_arm]
        vs_front = _summary((score["learned"] - front_score).to_numpy())
        fronts.append({**label, "front": front, "learned": means.loc["learned"], "means": means})
        row = {**label, "problems": len(score), "learned_fits": at, "learned_step_aulc": means.loc["learned", METRIC]}
        if "fixed:1" in score:
            b1 = _summary((score["learned"] - score["fixed:1"]).to_numpy())
            row.update(batch1_fits=float(means.loc["fixed:1", "n_fits"]),
                       fits_saved=1.0 - at / float(means.loc["fixed:1", "n_fits"]),
                       vs_batch1=b1["mean"], vs_batch1_ci=f"[{b1['ci_low']:+.2f}, {b1['ci_high']:+.2f}]",
                       vs_batch1_p=b1["p"])
        row.update(front_between=f"{lo_arm} .. {hi_arm}" if lo != hi else lo_arm, front_weight=w,
                   front_step_aulc=float(front_score.mean()), vs_front=vs_front["mean"],
                   vs_front_ci=f"[{vs_front['ci_low']:+.2f}, {vs_front['ci_high']:+.2f}]", vs_front_p=vs_front["p"])
        target_rows.append(row)
    return pd.DataFrame(arm_rows), pd.DataFrame(target_rows), fronts


def per_dataset(arms: pd.DataFrame, fronts: list[dict]) -> pd.DataFrame:
    """Per setting and dataset: the learned schedule against batch 1 and the setting's front (its weights)."""
    rows = []
    for f in fronts:
        part = arms.loc[(arms["model"] == f["model"]) & (arms["regime"] == f["regime"])]
        score = _paired(part) * 100.0
        front = f["front"]
        lo, hi, w = front_weights(front["n_fits"].to_numpy(), float(f["learned"]["n_fits"]))
        front_score = w * score[front.index[lo]] + (1.0 - w) * score[front.index[hi]]
        fits = _paired(part, "n_fits").loc[score.index]
        for dataset, idx in score.groupby(level="dataset").groups.items():
            rows.append({
                "model": f["model"], "regime": f["regime"], "dataset": dataset,
                "learned_fits": fits.loc[idx, "learned"].mean(),
                "vs_batch1": (score.loc[idx, "learned"] - score.loc[idx, "fixed:1"]).mean() if "fixed:1" in score else np.nan,
                "vs_front": (score.loc[idx, "learned"] - front_score.loc[idx]).mean(),
                "vs_geometric_2_2": (score.loc[idx, "learned"] - score.loc[idx, "geometric:2:2"]).mean()
                if "geometric:2:2" in score else np.nan,
            })
    return pd.DataFrame(rows)


def chosen_sizes(runs: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """Mean batch size the learned schedule chose per model, regime and stage of the run (labels bought)."""
    learned = set(runs.loc[runs["arm"] == "learned", "run_id"])
    c = curves.loc[curves["run_id"].isin(learned)].sort_values(["run_id", "loop"]).copy()
    c["size"] = c.groupby("run_id")["n_bought"].diff().shift(-1)  # the batch bought after this point's retrain
    c = c.dropna(subset=["size"])
    c["stage"] = pd.cut(c["n_bought"], [s[0] - 0.5 for s in STAGES] + [10**9],
                        labels=[f"{a}-{b - 1}" if b < 10**9 else f"{a}+" for a, b in STAGES])
    return (c.groupby(["model", "regime", "stage"], observed=True)["size"]
            .agg(mean_size="mean", median_size="median", retrains="size").reset_index())


def sentences(sizes: pd.DataFrame) -> list[str]:
    """The learned schedule's behaviour in words, per model and regime."""
    out = []
    for (model, regime), part in sizes.groupby(["model", "regime"], sort=True):
        steps = ", ".join(f"{r.median_size:g} per retrain at {r.stage} labels" for r in part.itertuples())
        out.append(f"{model}, {regime} start: median batch {steps}.")
    return out


def plot(fronts: list[dict], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    paths = []
    for f in fronts:
        means, front = f["means"], f["front"]
        fig, ax = plt.subplots(figsize=(7.0, 4.6), layout="constrained")
        rules = means.drop(index="learned")
        ax.scatter(rules["n_fits"], rules[METRIC], color="0.45", zorder=2, label="rules")
        for arm, r in rules.iterrows():
            ax.annotate(arm, (r["n_fits"], r[METRIC]), textcoords="offset points", xytext=(4, 3), fontsize=7)
        ax.plot(front["n_fits"], front[METRIC], color="0.2", lw=1.2, zorder=1, label="front of the rules")
        ax.scatter([means.loc["learned", "n_fits"]], [means.loc["learned", METRIC]], marker="*", s=160,
                   color="tab:red", zorder=3, label="learned schedule")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10.0, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, which="both", alpha=0.3)
        ax.set_xlabel("task-model fits per run (mean, log scale)")
        ax.set_ylabel("step-curve AULC accuracy (points)")
        ax.set_title(f"{f['model']} · {f['regime']} start: step AULC against fits", fontsize=10)
        ax.legend(fontsize=8, loc="lower right")
        path = out / f"schedule_front_{f['model']}_{f['regime']}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benchmark", type=Path, help="benchmark folder holding the runs")
    parser.add_argument("--strategy", required=True, help="the querying strategy the schedules ran with")
    parser.add_argument("--learned", required=True, help="the learned schedule's spec as given to --schedules")
    parser.add_argument("--out", type=Path, required=True, help="folder of the tables, report and plots")
    args = parser.parse_args()
    runs, curves = _runs(args.benchmark)
    arms = arms_of(runs, args.strategy, args.learned)
    args.out.mkdir(parents=True, exist_ok=True)

    arm_table, targets, fronts = setting_targets(arms, ["model", "regime"])
    _, pooled, _ = setting_targets(arms, ["regime"])
    datasets = per_dataset(arms, fronts)
    sizes = chosen_sizes(arms, curves)
    arm_table.to_csv(args.out / "schedule_arms.csv", index=False)
    pd.concat([targets, pooled.assign(model="both")], ignore_index=True).to_csv(args.out / "schedule_targets.csv", index=False)
    datasets.to_csv(args.out / "schedule_per_dataset.csv", index=False)
    sizes.to_csv(args.out / "schedule_sizes.csv", index=False)
    plots = plot(fronts, args.out)

    seeds = arms.groupby(["model", "regime"])["seed"].nunique().min()
    lines = [
        "# A learned batch schedule on the validation split (issue 21)", "",
        f"Strategy `{args.strategy}`; learned schedule `{args.learned}`; step-curve AULC accuracy in points; "
        f"{arms['dataset'].nunique()} datasets, {seeds} paired seeds per setting (only problems every arm ran). "
        "Written by `scripts/schedule_targets.py`.", "",
        "## Targets per setting", "",
        "`fits_saved`: 1 - fits / fits at batch 1 (target >= 0.75); `vs_batch1`: learned minus batch 1 "
        "(target >= -0.3); `vs_front`: learned minus the rules' front read at the learned schedule's fits "
        "(target > 0); 95% intervals over problems, Wilcoxon p.", "",
        format_table(targets.round(3)), "",
        "## Pooled over both models, per regime", "", format_table(pooled.round(3)), "",
        "## Every arm (means per setting)", "", format_table(arm_table.round(2)), "",
        "`seconds` (fit + query per run) is missing for runs stored before fit times were recorded.", "",
        "## Per dataset", "", format_table(datasets.round(2)), "",
        "## What the learned schedule chose", "",
        *[f"- {s}" for s in sentences(sizes)], "", format_table(sizes.round(2)), "",
        "## Plots", "", *[f"![{p.stem}]({p.name})" for p in plots], "",
    ]
    (args.out / "targets.md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
