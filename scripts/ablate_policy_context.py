"""Knock-out ablations of a context-gated policy: what each signal group of its loop context earns.

For a ``gated_linear`` policy (an evolution-strategies policy; ``pool@3`` for the signal groups
of :data:`metalearn.features.task_context_features.CONTEXT_GROUPS`), every variant keeps the
trained weights except the gates on one group's context features, set to zero: the policy then
acts as if that signal were absent (its weights fall back to what the bias and the other
gates give). Variants, all on the same held-in tasks with the same strategy seeds (paired):

- ``full``: the policy as trained;
- ``no <group>`` for each group whose features the policy gates on;
- ``bias only``: every context gate but the constant zeroed (one fixed rule of the features);
- margin sampling (the reference) and the held-in-tuned fixed rule ``typiclust_margin``.

The tasks are those of the trainer's keep-the-best evaluation (``--suite``, ``--tasks``,
``--selection-seed`` as in ``metalearn train``: by default ``held_in_users``, 100 tasks, seed
1000003): held-in data, never the validation split.

Writes ``ablations.csv`` (per variant: mean paired AULC difference to margin in points, its
standard error, difference to ``full`` with its standard error and Wilcoxon p-value),
``ablations_by_model.csv`` (per task-model family: the full policy and ``typiclust_margin``
against margin, and the full policy against ``typiclust_margin`` with its standard error: a
pooled mean can rest on one family's few heavy-tailed tasks) and ``ablation_runs.csv`` (one
row per task and variant) to ``--out``. ``--from-runs`` rewrites the two summaries from a
stored ``ablation_runs.csv`` without simulating again.

Run::

    PYTHONPATH=. .venv/bin/python scripts/ablate_policy_context.py \\
        --policy benchmarks/es-training/pool3-users-seed0/policy.safetensors \\
        --out benchmarks/es-training/pool3-users-seed0/ablations --jobs 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from metalearn.common.csv_cells import write_csv
from metalearn.features.task_context_features import CONTEXT_GROUPS
from metalearn.policies.file import PolicyFile, read_policy
from metalearn.policies.trainers.cma_search import task_seeds
from metalearn.policies.trainers.parallel import parallel_map
from metalearn.policies.trainers.suites import resolve_suite
from metalearn.tasks.task import Task


def variants(policy: PolicyFile) -> dict[str, PolicyFile]:
    """The policy and its knock-outs, by name."""
    if policy.arch.name != "gated_linear":
        raise SystemExit(f"a {policy.arch.name} policy: the knock-out ablation needs a gated_linear policy")
    weights = np.asarray(policy.params["weights"])
    context = list(policy.schema.context_features)
    gated = np.flatnonzero(np.any(weights[:, 1:] != 0, axis=0))  # context columns the policy uses
    out = {"full": policy}
    for group, names in CONTEXT_GROUPS.items():
        columns = [1 + context.index(n) for n in names if n in context]
        if not any(c - 1 in gated for c in columns):
            continue
        w = weights.copy()
        w[:, columns] = 0.0
        out[f"no {group}"] = PolicyFile(arch=policy.arch, params={**policy.params, "weights": w}, metadata=policy.metadata)
    w = weights.copy()
    w[:, 1:] = 0.0
    out["bias only"] = PolicyFile(arch=policy.arch, params={**policy.params, "weights": w}, metadata=policy.metadata)
    return out


def _task_job(job: tuple[Task, int, dict[str, PolicyFile]]) -> dict[str, Any]:
    from metalearn.policies.strategy import PolicyStrategy
    from metalearn.simulation.loop import simulate
    from metalearn.strategies.registry import make_strategy

    task, seed, policies = job
    row: dict[str, Any] = {"task": task.name, "model": task.model.name, "batch_size": int(task.batch_size),
                           "label_budget": int(task.label_budget)}
    for name in ("margin", "typiclust_margin"):
        row[name] = 100 * float(simulate(task, make_strategy(name, random_state=seed)).aulc_accuracy)
    for name, policy in policies.items():
        strategy = PolicyStrategy(policy, label_budget=task.label_budget, random_state=seed)
        row[name] = 100 * float(simulate(task, strategy).aulc_accuracy)
    return row


def summarise(runs: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    rows = []
    for name in names:
        to_margin = runs[name] - runs["margin"]
        to_full = runs[name] - runs["full"]
        nonzero = to_full[to_full != 0]
        rows.append({
            "variant": name,
            "diff_to_margin": to_margin.mean(),
            "diff_to_margin_se": to_margin.std(ddof=1) / np.sqrt(len(runs)),
            "diff_to_full": to_full.mean(),
            "diff_to_full_se": to_full.std(ddof=1) / np.sqrt(len(runs)),
            "wilcoxon_p_vs_full": float(stats.wilcoxon(nonzero).pvalue) if nonzero.size > 5 else np.nan,
            "tasks": len(runs),
        })
    return pd.DataFrame(rows)


def by_model_family(runs: pd.DataFrame) -> pd.DataFrame:
    """Per task-model family (scikit-learn-default variants with their zoo model): full policy, rule, margin."""
    family = runs["model"].str.replace("_sklearn", "", regex=False)
    rows = []
    for name, group in runs.groupby(family, sort=True):
        to_rule = group["full"] - group["typiclust_margin"]
        rows.append({
            "model_family": name, "tasks": len(group),
            "full_to_margin": (group["full"] - group["margin"]).mean(),
            "rule_to_margin": (group["typiclust_margin"] - group["margin"]).mean(),
            "full_to_rule": to_rule.mean(),
            "full_to_rule_se": to_rule.std(ddof=1) / np.sqrt(len(group)) if len(group) > 1 else np.nan,
        })
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", help="a gated_linear policy file or released name")
    parser.add_argument("--from-runs", action="store_true", help="summarise OUT/ablation_runs.csv again, simulate nothing")
    parser.add_argument("--suite", default="held_in_users")
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--selection-seed", type=int, default=1_000_003)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.from_runs:
        runs = pd.read_csv(out / "ablation_runs.csv")
        fixed = ("task", "model", "batch_size", "label_budget", "margin", "typiclust_margin")
        names = [*(c for c in runs.columns if c not in fixed), "typiclust_margin"]
        _write_summaries(runs, names, out)
        return 0
    if args.policy is None:
        parser.error("--policy is required unless --from-runs")

    policy = read_policy(args.policy)
    policies = variants(policy)
    tasks = resolve_suite(args.suite).tasks(args.tasks, seed=args.selection_seed)
    seeds = task_seeds(tasks, args.selection_seed)
    start = time.perf_counter()
    rows = parallel_map(_task_job, [(t, s, policies) for t, s in zip(tasks, seeds)], n_jobs=args.jobs, desc="tasks")
    runs = pd.DataFrame(rows)
    names = [*policies, "typiclust_margin"]
    out.mkdir(parents=True, exist_ok=True)
    write_csv(runs, out / "ablation_runs.csv", index=False, float_format="%.6g")
    _write_summaries(runs, names, out)
    print(f"{len(runs)} tasks x {len(names) + 1} strategies in {time.perf_counter() - start:.0f} s; tables in {out}")
    return 0


def _write_summaries(runs: pd.DataFrame, names: list[str], out: Path) -> None:
    summary = summarise(runs, names)
    per_family = by_model_family(runs)
    write_csv(summary, out / "ablations.csv", index=False, float_format="%.6g")
    write_csv(per_family, out / "ablations_by_model.csv", index=False, float_format="%.6g")
    print(summary.round(3).to_string(index=False))
    print(per_family.round(2).to_string(index=False))


if __name__ == "__main__":
    sys.exit(main())
