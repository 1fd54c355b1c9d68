"""Plot training curves of `metalearn train` runs from their progress logs.

Each trainer logs its periodic keep-the-best selection (the policy on fixed selection tasks,
paired with margin sampling on the same tasks) in ``OUT/progress.csv``; this draws the
policy's difference to margin against wall-clock time, one line per run. It reads the logs of
the current trainers (``selection_delta``) and the stored logs written before the trainers
shared one skeleton (``validation_delta``, ``val_delta_vs_margin``).

Run: ``.venv/bin/python scripts/plot_training_curves.py --out FILE.png LABEL=progress.csv ...``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

# (elapsed seconds, selection difference to margin): the shared skeleton's columns, then those of
# logs stored before it (imitation and LAL; PPO).
_COLUMNS = (("wall_seconds", "selection_delta"), ("wall_seconds", "validation_delta"), ("seconds", "val_delta_vs_margin"))


def validation_curve(path: Path) -> pd.DataFrame:
    """Elapsed seconds and validation difference to margin (points) of one progress log."""
    log = pd.read_csv(path)
    for time_col, delta_col in _COLUMNS:
        if time_col in log and delta_col in log:
            elapsed = log[time_col].cumsum() if time_col == "seconds" else log[time_col]
            curve = pd.DataFrame({"seconds": elapsed, "delta": log[delta_col]})
            return curve.dropna()
    raise SystemExit(f"{path}: no known time and validation columns in {list(log.columns)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="LABEL=path/to/progress.csv")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
    for item in args.runs:
        label, _, path = item.partition("=")
        curve = validation_curve(Path(path))
        ax.plot(curve["seconds"] / 60, curve["delta"], marker="o", markersize=3, label=label)
    ax.axhline(0.0, color="black", linewidth=0.8, linestyle="--", label="margin")
    ax.set_xlabel("training time (minutes)")
    ax.set_ylabel("validation AULC - margin (points)")
    ax.set_title("Training curves: synthetic validation tasks, paired with margin")
    ax.legend()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
