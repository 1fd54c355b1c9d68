"""How learnable is the oracle's target at look-ahead horizon 1, 3, 5? Feature signal, margin's z-score, cost.

Run (about a minute and a half of one core at the defaults; on a busy machine use nice)::

    nice -n 19 .venv/bin/python scripts/oracle_horizon_signal.py

``--tasks 8 --states-per-task 5 --candidates 32 --horizons 1,3,5`` are the defaults; ``--json
PATH`` also writes the per-state figures.

States: logistic-regression tasks drawn from the ``synthetic`` suite (the imitation trainer's
default; tasks of the other models are skipped), each played with margin sampling (the
task's own batch size and budget); ``--states-per-task`` loops spread evenly over the run are
measured. At each measured loop the K candidates are pre-selected exactly as the trainers do
(:func:`~metalearn.policies.trainers.episodes.select_candidates`: half smallest margin, half
random), their 16 ``pool@1`` candidate features are computed by the
:class:`~metalearn.features.PoolFeatureExtractor` and clipped to [-1, 1] as in
:func:`~metalearn.policies.trainers.episodes.collect_episode`, and the same candidates are
scored by :class:`~metalearn.simulation.oracle.LookaheadOracle` at every horizon, with the
process's current model handed over (as the trainers call it).

Figures, per horizon h (every mean is over states, ± its standard error):

- ``rho(margin, .)``: within-state Spearman correlation of the margin feature with the
  accuracy gain, the log-loss gain and the imitation trainer's ListNet utility
  ``u = z(gain) + 0.25 z(log_loss_gain)``; states where either side is constant are skipped.
  Margin sampling prefers small margins, so a useful margin signal is a negative rho.
- ``max |rho|``: the largest absolute mean rho (over the 16 features) with ``u``, and its feature.
- ``z(min margin)``: within-state z-score of the smallest-margin candidate's gain (and of u).
- ``oof rho``: learnability by a model, not one feature: a ridge regression of ``u`` on the 16
  features, fitted leave-one-task-out, and the within-state Spearman of its out-of-fold
  prediction with ``u`` (what a linear scorer could reach on unseen tasks).
- ``ties``: fraction of states whose accuracy gains are all equal (no preference without the
  log-loss tie-break).
- ``ms/decision``: wall time of one ``LookaheadOracle.gains`` call on the K candidates.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

from metalearn.envs.common import start_process, update_extractor
from metalearn.features.schema import POOL_SCHEMA
from metalearn.policies.trainers.episodes import select_candidates
from metalearn.policies.trainers.suites import resolve_suite
from metalearn.simulation.oracle import LookaheadOracle
from metalearn.strategies.base import select_top

LOG_LOSS_WEIGHT = 0.25  # ImitationConfig.log_loss_weight


def _z(x: np.ndarray) -> np.ndarray:
    s = x.std()
    return (x - x.mean()) / s if s > 1e-12 else np.zeros_like(x)


def _rank(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank)."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(x.size)
    ranks[order] = np.arange(x.size, dtype=float)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return (sums / counts)[inverse]


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if np.ptp(a) <= 1e-12 or np.ptp(b) <= 1e-12:
        return float("nan")
    return float(np.corrcoef(_rank(a), _rank(b))[0, 1])


def _mean_se(values: list[float]) -> tuple[float, float, int]:
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if v.size == 0:
        return float("nan"), float("nan"), 0
    se = float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("nan")
    return float(v.mean()), se, int(v.size)


def collect_states(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Play margin sampling on logreg tasks and score the measured loops' candidates at every horizon."""
    suite = resolve_suite(args.suite)
    stream = suite.iter_tasks(args.seed)
    horizons = args.horizons
    states: list[dict[str, Any]] = []
    task_id = 0
    draws = 0
    while task_id < args.tasks:
        task = next(stream)
        draws += 1
        if draws > 50 * args.tasks:
            raise SystemExit(f"no logistic-regression task in {draws} draws of suite {args.suite!r}")
        if task.model.name != "logreg":
            continue
        rng = np.random.default_rng([args.seed, task_id])
        process, extractor = start_process(task, args.window, rng)
        n_loops = int(np.ceil(task.label_budget / task.batch_size))
        measured = set(np.unique(np.linspace(0, n_loops - 1, args.states_per_task).round().astype(int)).tolist())
        oracles = {h: LookaheadOracle(task, n_candidates=args.candidates, horizon=h, random_state=args.seed) for h in horizons}
        loop = 0
        while not process.done:
            if loop in measured:
                cand = select_candidates(extractor, process.labeled, args.candidates, rng)
                features = np.clip(extractor.candidate_features(cand), -1.0, 1.0).astype(np.float64)
                state: dict[str, Any] = {
                    "task": task_id, "task_name": task.name, "loop": loop, "n_labeled": int(process.labeled.sum()),
                    "features": features, "gains": {}, "log_loss_gains": {}, "ms": {},
                }
                for h in horizons:
                    t0 = time.perf_counter()
                    result = oracles[h].gains(process.labeled, cand, current_model=process.model)
                    state["ms"][h] = 1e3 * (time.perf_counter() - t0)
                    state["gains"][h] = result.gain
                    state["log_loss_gains"][h] = result.log_loss_gain
                states.append(state)
                print(
                    f"task {task_id} ({task.name}, pool {task.n_pool}, batch {task.batch_size}) loop {loop}: "
                    + ", ".join(f"h={h} {state['ms'][h]:.0f} ms" for h in horizons),
                    flush=True,
                )
            # margin sampling: the b smallest margins (ties at random)
            available = np.flatnonzero(~process.labeled)
            margin = extractor.history.latest(extractor.history.margin)[available]
            b = min(task.batch_size, process.budget_left, available.size)
            process.label(available[select_top(-margin.astype(np.float64), b, rng)])
            process.fit()
            process.evaluate()
            update_extractor(extractor, process)
            loop += 1
        task_id += 1
    return states


def _oof_rho(states: list[dict[str, Any]], h: int, ridge: float = 1.0) -> list[float]:
    """Leave-one-task-out ridge of u on the features; within-state Spearman of the prediction with u."""
    X = [s["features"] for s in states]
    u = [_z(s["gains"][h]) + LOG_LOSS_WEIGHT * _z(s["log_loss_gains"][h]) for s in states]
    tasks = np.array([s["task"] for s in states])
    out: list[float] = []
    for t in np.unique(tasks):
        train = np.flatnonzero(tasks != t)
        Xt = np.concatenate([X[i] for i in train])
        yt = np.concatenate([u[i] for i in train])
        mu, sd = Xt.mean(axis=0), Xt.std(axis=0) + 1e-9
        A = (Xt - mu) / sd
        w = np.linalg.solve(A.T @ A + ridge * np.eye(A.shape[1]), A.T @ (yt - yt.mean()))
        for i in np.flatnonzero(tasks == t):
            out.append(_spearman(((X[i] - mu) / sd) @ w, u[i]))
    return out


def summarise(states: list[dict[str, Any]], horizons: list[int]) -> list[dict[str, Any]]:
    names = POOL_SCHEMA.candidate_features
    m_col = names.index("margin")
    rows = []
    for h in horizons:
        rho: dict[str, list[list[float]]] = {"gain": [], "log_loss": [], "u": []}
        z_gain, z_u, ties = [], [], []
        for s in states:
            g, l = s["gains"][h], s["log_loss_gains"][h]
            u = _z(g) + LOG_LOSS_WEIGHT * _z(l)
            f = s["features"]
            rho["gain"].append([_spearman(f[:, j], g) for j in range(f.shape[1])])
            rho["log_loss"].append([_spearman(f[:, j], l) for j in range(f.shape[1])])
            rho["u"].append([_spearman(f[:, j], u) for j in range(f.shape[1])])
            smallest = int(np.argmin(f[:, m_col]))
            z_gain.append(float(_z(g)[smallest]) if np.ptp(g) > 1e-12 else float("nan"))
            z_u.append(float(u[smallest]) if np.ptp(u) > 1e-12 else float("nan"))
            ties.append(float(np.ptp(g) <= 1e-12))
        per_feature_u = np.nanmean(np.asarray(rho["u"]), axis=0)
        best = int(np.nanargmax(np.abs(per_feature_u)))
        rows.append({
            "horizon": h,
            "n_states": len(states),
            "rho_margin_gain": _mean_se([r[m_col] for r in rho["gain"]]),
            "rho_margin_log_loss": _mean_se([r[m_col] for r in rho["log_loss"]]),
            "rho_margin_u": _mean_se([r[m_col] for r in rho["u"]]),
            "max_abs_rho_u": (float(per_feature_u[best]), names[best]),
            "rho_u_per_feature": dict(zip(names, per_feature_u.round(4).tolist())),
            "z_min_margin_gain": _mean_se(z_gain),
            "z_min_margin_u": _mean_se(z_u),
            "oof_rho_u": _mean_se(_oof_rho(states, h)),
            "ties": float(np.mean(ties)),
            "ms_per_decision": float(np.mean([s["ms"][h] for s in states])),
        })
    return rows


def _fmt(ms: tuple[float, float, int]) -> str:
    return f"{ms[0]:+.3f} ± {ms[1]:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite", default="synthetic", help="task suite (logreg tasks are kept)")
    parser.add_argument("--tasks", type=int, default=8, help="logistic-regression tasks")
    parser.add_argument("--states-per-task", type=int, default=5, help="measured loops per task, spread over the run")
    parser.add_argument("--candidates", type=int, default=32, help="K, candidates per state")
    parser.add_argument("--horizons", type=lambda t: [int(v) for v in t.split(",")], default=[1, 3, 5])
    parser.add_argument("--window", type=int, default=5, help="history window of the features")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the summary and per-state figures here")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    states = collect_states(args)
    rows = summarise(states, args.horizons)
    print(f"\n{len(states)} states from {args.tasks} logreg tasks of {args.suite!r}, K={args.candidates}, "
          f"{time.perf_counter() - start:.0f} s\n")
    print("| h | rho(margin, gain) | rho(margin, log-loss gain) | rho(margin, u) | max abs rho(feature, u) "
          "| z(min margin) gain | z(min margin) u | oof rho (ridge, 16 features) | ties | ms/decision |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['horizon']} | {_fmt(r['rho_margin_gain'])} | {_fmt(r['rho_margin_log_loss'])} | {_fmt(r['rho_margin_u'])} "
            f"| {r['max_abs_rho_u'][0]:+.3f} ({r['max_abs_rho_u'][1]}) | {_fmt(r['z_min_margin_gain'])} "
            f"| {_fmt(r['z_min_margin_u'])} | {_fmt(r['oof_rho_u'])} | {r['ties']:.2f} | {r['ms_per_decision']:.0f} |"
        )
    if args.json:
        payload = {
            "args": {k: v for k, v in vars(args).items() if k != "json"},
            "summary": rows,
            "states": [
                {
                    "task": s["task"], "task_name": s["task_name"], "loop": s["loop"], "n_labeled": s["n_labeled"],
                    "ms": {str(h): s["ms"][h] for h in args.horizons},
                    "gains": {str(h): s["gains"][h].tolist() for h in args.horizons},
                    "log_loss_gains": {str(h): s["log_loss_gains"][h].tolist() for h in args.horizons},
                    "features": s["features"].tolist(),
                }
                for s in states
            ],
        }
        with open(args.json, "w") as handle:
            json.dump(payload, handle)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
