"""Throughput at scale: environment steps, oracle decisions and meta-training roll-outs per second.

Run (about 4 to 5 minutes on 2 idle cores)::

    .venv/bin/python scripts/bench_throughput.py

Smoke run (well under a minute): ``.venv/bin/python scripts/bench_throughput.py --quick``;
``--sections env oracle train`` picks the parts. Prints Markdown tables.

1. **Environments**: steps/s of ``metalearn/PoolAL-v0`` (K=32, batch sizes 1 and 10) and
   ``metalearn/StreamAL-v0`` (batch 1), random valid actions (PoolAL: uniform over
   ``action_masks()``; StreamAL: keep with probability 1/2), logistic regression and random
   forest, on a synthetic ``classification`` task (3 classes, 20 features, 1,000-record
   pool, warm start of 20 labels, budget 100; episodes restart inside the timed loop).
   *before*: the simulator's test scores through scikit-learn's ``accuracy_score`` and
   ``f1_score`` (as before this change); *after*: the bincount path of
   :func:`metalearn.simulation.metrics.test_scores` (identical floats).
2. **Oracle demonstrations**: decisions/s of ``LookaheadOracle.gains`` with K=32 candidates
   and the current model handed over (as the imitation trainer calls it), on a fixed
   sequence of labeled states of the same task. The optimisations are switched off and on
   one after the other, cumulatively. The oracle was written with all of them (commit
   ec27a70, "Greedy look-ahead oracle ..."; a1ed580 moved the thread limit to
   ``metalearn.common.threads``), so there is no older commit to measure: the rows without
   them replace, for the measurement only, the oracle module's ``limited_threads``,
   ``config_context`` and ``score_predictions`` by a no-op, a no-op and scikit-learn's
   metric functions. ``warm_start`` is a real toggle (logistic regression only; a random
   forest always trains from scratch). The "identical" column compares gains with the first
   row (warm start changes them slightly, by design).
3. **Meta-training roll-outs**: oracle-labelled samples (decision states) per second of
   :func:`metalearn.policies.trainers.parallel.parallel_map` over
   :func:`~metalearn.policies.trainers.episodes.collect_episode` (the imitation trainer's
   collection step, iteration 0: beta = 1), with ``n_jobs=1``, ``n_jobs=2`` (joblib) and a
   local Dask cluster (``dask="local:2"``), a fixed set of episodes of the ``smoke`` suite.
   Each backend is warmed up first (process pool or cluster started), so the timings are
   of steady-state collection; "identical" checks that the samples equal those of
   ``n_jobs=1``.

Timings are wall-clock on whatever machine runs it; run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

ENV_IDS = {"pool": "metalearn/PoolAL-v0", "stream": "metalearn/StreamAL-v0"}


# =============================================================================================
# Shared helpers
# =============================================================================================
def synthetic_task(model: str, batch_size: int = 1, *, n_pool: int = 1000, seed: int = 0, **task_kwargs: Any):
    """A synthetic ``classification`` task: 3 classes, 20 features, ``n_pool`` pool records."""
    from metalearn.tasks.synthetic import GENERATORS
    from metalearn.tasks.task import make_task

    n_samples = int(np.ceil(n_pool / 0.7))
    data = GENERATORS["classification"](
        np.random.default_rng(seed), n_samples, n_classes=3, n_features=20, n_informative=8, n_clusters_per_class=1
    )
    settings = {"regime": "warm", "n_warm": 20, "label_budget": 100, **task_kwargs}
    return make_task(data.X, data.y, model=model, batch_size=batch_size, seed=seed, **settings)


def env_steps_per_second(env_id: str, task: Any, steps: int, *, seed: int = 0, **env_kwargs: Any) -> float:
    """Steps per second of ``env_id`` on ``task`` with random valid actions, resets included.

    Environments with ``action_masks()`` (PoolAL) pick uniformly among the valid actions;
    others (StreamAL's keep/skip) pick 0 or 1 uniformly.
    """
    import gymnasium as gym

    import metalearn  # noqa: F401  (registers the environments)

    env = gym.make(env_id, tasks=[task], **env_kwargs)
    env.reset(seed=seed)
    masks = getattr(env.unwrapped, "action_masks", None)
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for _ in range(steps):
        action = int(rng.choice(np.flatnonzero(masks()))) if masks is not None else int(rng.integers(2))
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def _markdown(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


@contextlib.contextmanager
def _patched(module: Any, **attributes: Any) -> Iterator[None]:
    saved = {name: getattr(module, name) for name in attributes}
    for name, value in attributes.items():
        setattr(module, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)


def _no_op(*args: Any, **kwargs: Any) -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext()


# =============================================================================================
# 1. Environments
# =============================================================================================
def bench_envs(models: Sequence[str], steps: dict[str, int]) -> str:
    from metalearn.simulation import metrics, process

    cells = [("pool", 1), ("pool", 10), ("stream", 1)]
    rows = []
    for model in models:
        for kind, batch_size in cells:
            task = synthetic_task(model, batch_size)
            kwargs = {"n_candidates": 32} if kind == "pool" else {}
            n = steps[model]
            with _patched(process, test_scores=metrics._sklearn_test_scores):
                before = env_steps_per_second(ENV_IDS[kind], task, n, **kwargs)
            after = env_steps_per_second(ENV_IDS[kind], task, n, **kwargs)
            rows.append([ENV_IDS[kind], model, batch_size, n, f"{before:.1f}", f"{after:.1f}", f"{after / before:.2f}x"])
    return _markdown(
        ["environment", "model", "batch", "steps", "steps/s before (sklearn metrics)", "steps/s after", "speed-up"], rows
    )


# =============================================================================================
# 2. Oracle demonstrations
# =============================================================================================
def _sklearn_score(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, metric: str) -> float:
    from sklearn.metrics import accuracy_score, f1_score

    if metric == "accuracy":
        return float(accuracy_score(y_true, y_pred))
    return float(f1_score(y_true, y_pred, labels=np.arange(n_classes), average="macro", zero_division=0))


#: (label, one BLAS thread, skip sklearn checks, bincount metrics, warm start), cumulative.
ORACLE_VARIANTS: tuple[tuple[str, bool, bool, bool, bool], ...] = (
    ("none (pre-optimisation behaviour)", False, False, False, False),
    ("+ one BLAS/OpenMP thread", True, False, False, False),
    ("+ scikit-learn input checks skipped", True, True, False, False),
    ("+ bincount test metrics", True, True, True, False),
    ("+ warm start (the default)", True, True, True, True),
)


def oracle_states(task: Any, n_decisions: int, n_candidates: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, Any]]:
    """A fixed sequence of (labeled mask, candidates, fitted current model): 2 random labels per state."""
    from metalearn.common.threads import limited_threads
    from metalearn.simulation.oracle import LookaheadOracle
    from metalearn.simulation.process import ActiveLearningProcess

    rng = np.random.default_rng(seed)
    process = ActiveLearningProcess(task)
    oracle = LookaheadOracle(task, n_candidates=n_candidates)
    states = []
    for _ in range(n_decisions):
        model = process.fit()
        mask = process.labeled.copy()
        with limited_threads():
            proba = model.predict_proba(task.X_pool[~mask])
        states.append((mask, oracle.candidates(mask, proba, rng), model))
        process.label(rng.choice(process.unlabeled_indices, size=2, replace=False))
    return states


def oracle_decisions_per_second(task: Any, states: Sequence[tuple[np.ndarray, np.ndarray, Any]], variant: tuple) -> tuple[float, list[np.ndarray]]:
    from metalearn.simulation import oracle as oracle_module

    _, threads, skip_checks, bincount, warm = variant
    patches: dict[str, Any] = {}
    if not threads:
        patches["limited_threads"] = _no_op
    if not skip_checks:
        patches["config_context"] = _no_op
    if not bincount:
        patches["score_predictions"] = _sklearn_score
    oracle = oracle_module.LookaheadOracle(task, n_candidates=len(states[0][1]), warm_start=warm)
    gains = []
    with _patched(oracle_module, **patches):
        start = time.perf_counter()
        for mask, cand, model in states:
            result = oracle.gains(mask, cand, current_model=model)
            gains.append(np.concatenate([result.gain, result.log_loss_gain]))
        seconds = time.perf_counter() - start
    return len(states) / seconds, gains


def bench_oracle(models: Sequence[str], decisions: dict[str, int], n_candidates: int) -> str:
    rows = []
    for model in models:
        task = synthetic_task(model)
        states = oracle_states(task, decisions[model], n_candidates)
        reference = None
        for variant in ORACLE_VARIANTS:
            if variant[4] and model != "logreg":
                continue  # warm start only changes logistic regression and MLP fits
            rate, gains = oracle_decisions_per_second(task, states, variant)
            if reference is None:
                reference = gains
            same = all(np.array_equal(a, b, equal_nan=True) for a, b in zip(gains, reference))
            rows.append([model, variant[0], len(states), f"{rate:.2f}", f"{1000.0 / rate:.0f}",
                         f"{1000.0 / rate / n_candidates:.1f}", "yes" if same else "no"])
    return _markdown(["model", "optimisations", "decisions", "decisions/s", "ms/decision", "ms/candidate", "identical"], rows)


# =============================================================================================
# 3. Meta-training roll-outs
# =============================================================================================
def bench_training(suite: str, n_episodes: int, n_candidates: int, backends: Sequence[str]) -> str:
    from metalearn.policies.trainers.episodes import EpisodeSpec, collect_episode
    from metalearn.policies.trainers.parallel import parallel_map

    def specs(first: int, n: int) -> list[EpisodeSpec]:
        return [EpisodeSpec(suite=suite, seed=0, key=(0, e), n_candidates=n_candidates, beta=1.0) for e in range(first, first + n)]

    measured = specs(0, n_episodes)
    reference = None
    rows = []
    base_rate = None
    for backend in backends:
        options: dict[str, Any] = {"n_jobs": 1} if backend == "1" else {"n_jobs": 2} if backend == "2" else {"dask": backend}
        parallel_map(collect_episode, specs(10_000, 2), **options)  # warm-up: start the pool or cluster
        start = time.perf_counter()
        episodes = parallel_map(collect_episode, measured, **options)
        seconds = time.perf_counter() - start
        samples = sum(len(ep) for ep in episodes)
        if reference is None:
            reference = episodes
        same = all(np.array_equal(a.gains, b.gains, equal_nan=True) and np.array_equal(a.candidates, b.candidates)
                   for a, b in zip(episodes, reference))
        rate = samples / seconds
        base_rate = base_rate or rate
        oracle_share = sum(ep.oracle_seconds for ep in episodes) / max(sum(ep.seconds for ep in episodes), 1e-12)
        label = {"1": "joblib, n_jobs=1 (inline)", "2": "joblib, n_jobs=2"}.get(backend, f"Dask {backend}")
        rows.append([label, n_episodes, samples, f"{seconds:.1f}", f"{rate:.1f}", f"{n_episodes / seconds:.2f}",
                     f"{rate / base_rate:.2f}x", f"{oracle_share:.0%}", "yes" if same else "no"])
    return _markdown(
        ["workers", "episodes", "samples", "wall s", "samples/s", "episodes/s", "speed-up", "oracle share", "identical"], rows
    )


# =============================================================================================
def _header() -> str:
    import sklearn
    from threadpoolctl import threadpool_info

    pools = ", ".join(sorted({f"{p['internal_api']}:{p['num_threads']}" for p in threadpool_info()})) or "none"
    return (f"# Throughput: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"numpy {np.__version__}, scikit-learn {sklearn.__version__}, thread pools {pools}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of every section")
    parser.add_argument("--sections", nargs="+", choices=["env", "oracle", "train"], default=["env", "oracle", "train"])
    parser.add_argument("--models", nargs="+", default=["logreg", "rf"], help="task models of sections 1 and 2")
    parser.add_argument("--env-steps", type=int, default=400, help="steps per environment cell (logreg)")
    parser.add_argument("--env-steps-rf", type=int, default=100, help="steps per environment cell (other models)")
    parser.add_argument("--decisions", type=int, default=30, help="oracle decisions per variant (logreg)")
    parser.add_argument("--decisions-rf", type=int, default=5, help="oracle decisions per variant (other models)")
    parser.add_argument("--candidates", type=int, default=32, help="K, oracle candidates per decision")
    parser.add_argument("--train-suite", default="smoke")
    parser.add_argument("--train-episodes", type=int, default=48)
    parser.add_argument("--backends", nargs="+", default=["1", "2", "local:2"],
                        help="'1' and '2': joblib n_jobs; anything else: a Dask address ('local:2')")
    args = parser.parse_args(argv)
    if args.quick:
        args.env_steps, args.env_steps_rf = 30, 6
        args.decisions, args.decisions_rf = 3, 1
        args.train_episodes = 4

    print(_header())
    per_model: Callable[[int, int], dict[str, int]] = lambda lr, other: {m: lr if m == "logreg" else other for m in args.models}
    if "env" in args.sections:
        print("\n## 1. Environment throughput (random valid actions, K=32)\n")
        print(bench_envs(args.models, per_model(args.env_steps, args.env_steps_rf)), flush=True)
    if "oracle" in args.sections:
        print(f"\n## 2. Oracle demonstrations (LookaheadOracle.gains, K={args.candidates}, current model given)\n")
        print(bench_oracle(args.models, per_model(args.decisions, args.decisions_rf), args.candidates), flush=True)
    if "train" in args.sections:
        print(f"\n## 3. Meta-training roll-outs (collect_episode, suite {args.train_suite!r}, beta=1, K={args.candidates})\n")
        print(bench_training(args.train_suite, args.train_episodes, args.candidates, args.backends), flush=True)


if __name__ == "__main__":
    main()
