"""Plot the objective of a `metalearn train --method es` run over its generations.

The progress log (``OUT/progress.csv``) holds, per generation, the mean and the best training
objective of the population (paired AULC difference to margin on the generation's tasks, in
points, with the best candidate's standard error over those tasks), and every few generations
the held-in objective of the distribution mean (keep-the-best). This draws both against
training time.

Run: ``.venv/bin/python scripts/plot_es_training.py OUT/progress.csv --out OUT/training_curve.png``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("progress", type=Path, help="progress.csv of an es run")
    parser.add_argument("--out", required=True, type=Path, help="PNG to write")
    parser.add_argument("--title", default="Evolution strategies: paired AULC difference to margin")
    args = parser.parse_args()
    log = pd.read_csv(args.progress)
    # Runs since the shared trainer skeleton log per-generation ``seconds`` with the running
    # total in ``wall_seconds`` and the held-in objective as ``selection_delta``; older runs
    # logged the running total as ``seconds`` and the held-in objective as ``selection``.
    if "wall_seconds" in log:
        log["seconds"] = log["wall_seconds"]
    if "selection_delta" in log:
        log["selection"] = log["selection_delta"]
    minutes = log["seconds"] / 60.0
    fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
    ax.plot(minutes, log["objective_mean"], marker=".", label="training tasks: population mean")
    ax.errorbar(
        minutes, log["objective_best"], yerr=log["objective_best_se"], fmt="o", markersize=3, capsize=2,
        label="training tasks: best candidate (± s.e.)",
    )
    if "objective_spread" in log:
        ax.fill_between(
            minutes, log["objective_mean"] - log["objective_spread"], log["objective_mean"] + log["objective_spread"],
            alpha=0.15, label="training tasks: spread between candidates (± sd)",
        )
    held = log.dropna(subset=["selection"])
    if not held.empty:
        ax.errorbar(
            held["seconds"] / 60.0, held["selection"], yerr=held["selection_se"], fmt="s-", markersize=5, capsize=3,
            color="tab:red", label="held-in tasks: distribution mean (± s.e.)",
        )
    ax.axhline(0.0, color="black", linewidth=0.8, linestyle="--", label="margin")
    ax.set_xlabel("training time (minutes)")
    ax.set_ylabel("AULC - margin (points)")
    ax.set_title(args.title)
    ax.legend(fontsize=8)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
