"""Smoke test of the light install: run by .ci/run in a fresh virtual environment holding the
wheel and its core dependencies only (no torch, Stable-Baselines3, matplotlib or pyarrow).

It uses what a user of the light install uses: a released policy, a classic strategy,
``metalearn next-batch`` on a small CSV and a small ``metalearn benchmark``, and checks that
torch was never imported and is not installed, and that training fails naming the extra.

Run: ``LIGHT_VENV/bin/python scripts/smoke_light_install.py`` (from any folder but the checkout,
so the installed package is the one imported).
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import importlib.util
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import metalearn
from metalearn import load_policy
from metalearn.cli import main
from metalearn.strategies import make_strategy
from metalearn.tasks.suite import load_task_suite

TRAIN_EXTRA = ("torch", "stable_baselines3", "sb3_contrib")


def check(condition: bool, what: str) -> None:
    if not condition:
        raise SystemExit(f"light-install smoke test FAILED: {what}")
    print(f"ok: {what}")


def main_smoke() -> None:
    installed = Path(metalearn.__file__).resolve()
    check("site-packages" in installed.parts, f"metalearn is imported from the installed wheel ({installed.parent})")
    check(importlib.metadata.version("metalearn-al") == metalearn.__version__, f"version {metalearn.__version__}")
    check((importlib.resources.files("metalearn") / "py.typed").is_file(), "py.typed is shipped")
    for name in TRAIN_EXTRA:
        check(importlib.util.find_spec(name) is None, f"{name} is not installed")

    X, y_true = load_iris(return_X_y=True)
    y = np.full(len(y_true), np.nan)
    y[[0, 1, 50, 51, 100, 101]] = y_true[[0, 1, 50, 51, 100, 101]]
    clf = LogisticRegression(max_iter=500).fit(X[~np.isnan(y)], y[~np.isnan(y)])
    picks = load_policy("default", random_state=0).query(X, y, clf, batch_size=5)
    check(len(set(picks.tolist())) == 5 and bool(np.isnan(y[picks]).all()), "load_policy('default').query")
    picks = make_strategy("margin", random_state=0).query(X, y, clf, batch_size=5)
    check(len(set(picks.tolist())) == 5 and bool(np.isnan(y[picks]).all()), "a classic strategy (margin)")
    check(len(load_task_suite("smoke").tasks(2, seed=0)) == 2, "the shipped 'smoke' task suite")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        records = pd.DataFrame(X, columns=["a", "b", "c", "d"])
        records.insert(0, "id", [f"r{i}" for i in range(len(X))])
        records.to_csv(folder / "records.csv", index=False)
        labeled = [0, 1, 50, 51, 100, 101]
        pd.DataFrame({"id": records["id"].iloc[labeled], "label": y_true[labeled]}).to_csv(
            folder / "labels.csv", index=False
        )
        code = main(["next-batch", "--data", str(folder / "records.csv"), "--labels", str(folder / "labels.csv"),
                     "--out", str(folder / "to_label.csv"), "--batch-size", "4", "--model", "logreg", "--seed", "0"])
        to_label = pd.read_csv(folder / "to_label.csv")
        check(code == 0 and len(to_label) == 4, "metalearn next-batch on a small CSV (released default policy)")

        out = folder / "bench"
        code = main(["benchmark", "--datasets", "sklearn:iris", "--strategies", "random,margin,policy:default",
                     "--models", "logreg", "--regimes", "cold", "--batch-sizes", "5", "--budget", "10",
                     "--seeds", "2", "--jobs", "1", "--quiet", "--out", str(out)])
        table = pd.read_csv(out / "results.csv")  # no pyarrow in the light install: the CSV table
        check(code == 0 and len(table) == 6 and (table["status"] == "ok").all(), "a small metalearn benchmark")
        report = (out / "report.md").read_text(encoding="utf-8")
        check("| margin |" in report and 'metalearn-al[plot]' in report, "its report (tables; plots need [plot])")

        code = main(["train", "--method", "imitation", "--suite", "smoke", "--iterations", "1",
                     "--out", str(folder / "train")])
        check(code == 2, "metalearn train fails with the error naming the train extra")

    leaked = sorted(m for m in sys.modules if m.split(".")[0] in TRAIN_EXTRA)
    check(not leaked, "torch, stable_baselines3 and sb3_contrib were never imported")


if __name__ == "__main__":
    main_smoke()
    print("light-install smoke test passed")
