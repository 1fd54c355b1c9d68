"""Memory and time of one query on a very large pool: the released policy, the stopping rule, margin.

Issue 22's measurement: a pool of N x d float32 records (default 2,000,000 x 50), 100 labeled,
a fitted logistic regression; then, each in a fresh process so nothing is shared, the peak
memory one call allocates above the pool (numpy and Python allocations, ``tracemalloc``; and the
growth of the process's resident high-water mark, reset just before the call through
``/proc/self/clear_refs``) and its wall time. The first call of a policy builds its per-pool
state (distances, density reference, the history); the second is the steady state of a loop.

Run: ``.venv/bin/python scripts/bench_query_memory.py [--n 2000000] [--d 50] [--what policy stopping margin]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path


def _hwm_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def measure(what: str, n: int, d: int) -> dict[str, float]:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from metalearn import load_policy, load_stopping_rule
    from metalearn.strategies import MarginSampling

    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d), dtype=np.float32)
    w = rng.standard_normal((d, 4)).astype(np.float32)
    y = np.argmax(X[:, :10] @ w[:10] + 0.5 * rng.standard_normal((n, 4), dtype=np.float32), axis=1)
    labeled = rng.choice(n, 100, replace=False)
    y_obs = np.full(n, np.nan)
    y_obs[labeled] = y[labeled]
    clf = LogisticRegression(max_iter=300).fit(X[labeled], y[labeled])
    if what == "policy":
        obj = load_policy("default", random_state=0, label_budget=1000)
        call = lambda: obj.query(X, y_obs, clf, batch_size=10)  # noqa: E731
    elif what == "stopping":
        obj = load_stopping_rule("default")
        call = lambda: obj.should_stop(X, y_obs, clf)  # noqa: E731
    else:
        obj = MarginSampling(random_state=0)
        call = lambda: obj.query(X, y_obs, clf, batch_size=10)  # noqa: E731
    pool_bytes = X.nbytes
    out: dict[str, float] = {"pool_mb": pool_bytes / 2**20}
    for label in ("first", "second"):
        resettable = _reset_hwm()
        hwm_before = _hwm_bytes()
        tracemalloc.start()
        start = time.perf_counter()
        picks = call()
        seconds = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out[f"{label}_seconds"] = seconds
        out[f"{label}_peak_mb"] = peak / 2**20
        out[f"{label}_peak_over_pool"] = peak / pool_bytes
        out[f"{label}_rss_growth_mb"] = (_hwm_bytes() - hwm_before) / 2**20 if resettable else float("nan")
        if what != "stopping":
            idx = np.asarray(picks)
            y_obs[idx] = y[idx]
            clf.fit(X[~np.isnan(y_obs)], y_obs[~np.isnan(y_obs)].astype(int))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2_000_000)
    parser.add_argument("--d", type=int, default=50)
    parser.add_argument("--what", nargs="+", default=["margin", "policy", "stopping"], choices=["margin", "policy", "stopping"])
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.n, args.d)))
        return
    print(f"pool {args.n:,} x {args.d} float32 ({args.n * args.d * 4 / 2**20:.0f} MB), logistic regression, batch 10")
    print(f"{'what':<9} {'call':<7} {'seconds':>8} {'peak MB':>9} {'x pool':>7} {'RSS growth MB':>14}")
    for what in args.what:
        done = subprocess.run([sys.executable, __file__, "--n", str(args.n), "--d", str(args.d), "--one", what],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(f"{what:<9} failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        for label in ("first", "second"):
            print(f"{what:<9} {label:<7} {r[f'{label}_seconds']:>8.2f} {r[f'{label}_peak_mb']:>9.0f} "
                  f"{r[f'{label}_peak_over_pool']:>7.2f} {r[f'{label}_rss_growth_mb']:>14.0f}")


if __name__ == "__main__":
    main()
