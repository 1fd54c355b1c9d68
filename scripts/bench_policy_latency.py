"""Query latency of a loaded policy against margin sampling, `predict_proba` included.

For each pool size and task model: a pool of N records with 50 features, 100 labeled, a
fitted model; then the median wall time of one ``query`` (batch 10) of margin sampling and
of the policy, in steady state (the policy's history window filled first), and the peak
memory the policy's query allocates (tracemalloc).

Run: ``.venv/bin/python scripts/bench_policy_latency.py [--policy PATH_OR_NAME | --schema pool@3]
[--sizes 10000 100000 1000000] [--models logreg rf]``. Without ``--policy`` a policy with
random weights is used, latency does not depend on the weights: ``--schema pool`` (the
default) the deep-sets architecture of the first releases, ``--schema pool@2`` or ``pool@3``
the context-gated linear scorer of the evolution-strategies trainer on that schema.
"""

from __future__ import annotations

import argparse
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
from sklearn.datasets import make_classification

from bench_foundation import _median_ms as median_ms  # scripts/ is on sys.path when run as a script
from metalearn import load_policy
from metalearn.common.threads import limited_threads
from metalearn.strategies import MarginSampling
from metalearn.tasks.models import make_model


def random_policy(path: Path, schema_id: str = "pool") -> Path:
    from metalearn.features import POOL_SCHEMA
    from metalearn.features.registry import schema_entry
    from metalearn.policies.architecture import ScorerArchitecture
    from metalearn.policies.file import save_policy
    from metalearn.policies.torch_scorer import TorchScorer

    if schema_id == "pool":
        arch = ScorerArchitecture(POOL_SCHEMA.n_candidate_features, POOL_SCHEMA.n_context_features, 64)
        meta = {"feature_schema": POOL_SCHEMA.to_dict(), "window": 5, "n_candidates": 256}
        return save_policy(path, arch, TorchScorer(arch).arrays(), meta)
    schema = schema_entry(schema_id).schema
    arch = ScorerArchitecture.gated_linear(schema)
    rng = np.random.default_rng(0)
    weights = rng.normal(0.0, 0.5, size=(schema.n_candidate_features, schema.n_context_features + 1)).astype(np.float32)
    params = {"weights": weights, "prior_scale": np.ones(1, dtype=np.float32)}
    meta = {"feature_schema": schema.to_dict(), "window": 5, "n_candidates": 64}
    return save_policy(path, arch, params, meta)


def bench(policy: str, n_pool: int, model: str, repeats: int) -> dict[str, float]:
    X, y = make_classification(n_samples=n_pool, n_features=50, n_informative=10, n_classes=4, random_state=0)
    rng = np.random.default_rng(0)
    labeled = np.zeros(n_pool, dtype=bool)
    labeled[rng.choice(n_pool, 100, replace=False)] = True
    y_obs = np.where(labeled, y, np.nan)
    clf = make_model(model, random_state=0).fit(X[labeled], y[labeled])
    margin = MarginSampling(random_state=0)
    strategy = load_policy(policy, random_state=0)
    for _ in range(5):  # fill the policy's history window (steady state)
        strategy.query(X, y_obs, clf, batch_size=10)
    margin_ms = median_ms(lambda: margin.query(X, y_obs, clf, batch_size=10), repeats)
    policy_ms = median_ms(lambda: strategy.query(X, y_obs, clf, batch_size=10), repeats)
    tracemalloc.start()
    strategy.query(X, y_obs, clf, batch_size=10)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "margin_ms": margin_ms,
        "policy_ms": policy_ms,
        "ratio": policy_ms / margin_ms,
        "query_peak_mib": peak / 2**20,
        "state_mib": strategy.extractor_.nbytes / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default=None)
    parser.add_argument("--schema", default="pool", help="without --policy: pool, pool@2 or pool@3")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--models", nargs="+", default=["logreg", "rf"])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, limited_threads(1):
        policy = args.policy or str(random_policy(Path(tmp) / "random.safetensors", args.schema))
        print("| model | pool | margin ms | policy ms | policy / margin | query peak MiB | history MiB |")
        print("|---|---|---|---|---|---|---|")
        for model in args.models:
            for n in args.sizes:
                r = bench(policy, n, model, args.repeats)
                print(
                    f"| {model} | {n:,} | {r['margin_ms']:.1f} | {r['policy_ms']:.1f} | {r['ratio']:.2f} "
                    f"| {r['query_peak_mib']:.1f} | {r['state_mib']:.1f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
