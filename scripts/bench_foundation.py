"""Speed of the foundation: query time, feature computation and environment throughput.

Reproduces the figures of the foundation issue:

- the time of one ``query`` of margin sampling (logistic regression), and of the metadata
  update and feature computation alone, at pool sizes 10k and 100k (50 features), relative
  to the cost of ``predict_proba`` on the same pool (logistic regression, and a 100-tree
  random forest for scale);
- PoolAL-v0 environment steps per second (logistic regression, 2,000-record pool, K=32).

Run: ``.venv/bin/python scripts/bench_foundation.py [--sizes 10000 100000] [--repeats 5]``.
Timings are medians over repeats, in milliseconds, on whatever machine runs it.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from metalearn.features import PoolFeatureExtractor
from metalearn.strategies import MarginSampling
from metalearn.tasks.models import make_model


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def bench_query(n_pool: int, n_features: int, n_classes: int, repeats: int, window: int) -> dict[str, float]:
    X, y = make_classification(
        n_samples=n_pool, n_features=n_features, n_informative=10, n_classes=n_classes, random_state=0
    )
    rng = np.random.default_rng(0)
    labeled = np.zeros(n_pool, dtype=bool)
    labeled[rng.choice(n_pool, 100, replace=False)] = True
    y_obs = np.where(labeled, y, np.nan)
    clf = LogisticRegression(max_iter=500).fit(X[labeled], y[labeled])

    predict_ms = _median_ms(lambda: clf.predict_proba(X), repeats)
    forest = make_model("rf", random_state=0).fit(X[labeled], y[labeled])
    forest_ms = _median_ms(lambda: forest.predict_proba(X), max(1, repeats // 3))
    margin = MarginSampling(random_state=0)
    margin_ms = _median_ms(lambda: margin.query(X, y_obs, clf, batch_size=10), repeats)

    start = time.perf_counter()
    extractor = PoolFeatureExtractor(X, window=window, label_budget=1000, batch_size=10, seed=0)
    init_ms = 1000.0 * (time.perf_counter() - start)
    proba = clf.predict_proba(X)
    y_index = np.where(labeled, y, -1)
    # Fill the window first so the timings are of a steady-state loop.
    for _ in range(window):
        extractor.update(proba, clf.classes_, labeled, y_index)

    def one_loop() -> None:
        new = rng.choice(np.flatnonzero(~labeled), 10, replace=False)
        labeled[new] = True
        y_index[new] = y[new]
        extractor.update(proba, clf.classes_, labeled, y_index)

    update_ms = _median_ms(one_loop, repeats)
    unlabeled = np.flatnonzero(~labeled)
    all_ms = _median_ms(lambda: extractor.candidate_features(unlabeled), repeats)
    subsample = rng.choice(unlabeled, 1000, replace=False)
    sub_ms = _median_ms(lambda: extractor.candidate_features(subsample), repeats)
    ctx_ms = _median_ms(extractor.context_features, repeats)
    return {
        "n_pool": n_pool,
        "predict_proba_ms": predict_ms,
        "rf_predict_proba_ms": forest_ms,
        "margin_query_ms": margin_ms,
        "extractor_init_ms": init_ms,
        "update_ms": update_ms,
        "features_all_ms": all_ms,
        "features_1000_ms": sub_ms,
        "context_ms": ctx_ms,
        "history_mib": extractor.nbytes / 2**20,
    }


def bench_env(steps: int, n_pool: int, n_candidates: int) -> dict[str, float]:
    from bench_throughput import env_steps_per_second  # scripts/ is on sys.path when run as a script

    from metalearn.tasks.task import make_task

    X, y = make_classification(n_samples=int(n_pool / 0.7) + 1, n_features=20, n_informative=8, random_state=0)
    results = {}
    for batch_size in (1, 10):
        task = make_task(X, y, model="logreg", regime="cold", label_budget=10**6, batch_size=batch_size, seed=0)
        results[f"steps_per_s_batch{batch_size}"] = env_steps_per_second(
            "metalearn/PoolAL-v0", task, steps, n_candidates=n_candidates
        )
        results["n_pool"] = task.n_pool
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--env-steps", type=int, default=500)
    args = parser.parse_args()
    print(f"# {platform.processor() or platform.machine()}, numpy {np.__version__}")
    print(f"## query and features ({args.features} features, {args.classes} classes, window {args.window}, batch 10)")
    header = None
    for n in args.sizes:
        row = bench_query(n, args.features, args.classes, args.repeats, args.window)
        if header is None:
            header = list(row)
            print("| " + " | ".join(header) + " | update / predict_proba (logreg) |")
            print("|" + "---|" * (len(header) + 1))
        cells = [f"{row[k]:.0f}" if k == "n_pool" else f"{row[k]:.2f}" for k in header]
        print("| " + " | ".join(cells) + f" | {row['update_ms'] / row['predict_proba_ms']:.2f} |")
    if args.env_steps:
        env = bench_env(args.env_steps, 2000, 32)
        print(f"\n## PoolAL-v0, logistic regression, {env['n_pool']}-record pool, K=32, random valid actions")
        print(f"batch 1: {env['steps_per_s_batch1']:.1f} steps/s (a retrain every step)")
        print(f"batch 10: {env['steps_per_s_batch10']:.1f} steps/s (a retrain every 10 steps)")


if __name__ == "__main__":
    main()
