"""Validation: paired simulation of a policy against margin and random sampling on a fixed set
of tasks (:func:`validation_tasks`, :func:`evaluate_policy`), for keep-the-best model selection."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from metalearn.common.validation import check_positive_int
from metalearn.exceptions import InvalidInputError
from metalearn.features.schema import POOL_SCHEMA, FeatureSchema, get_schema
from metalearn.policies.architecture import ScorerArchitecture
from metalearn.policies.trainers.parallel import parallel_map
from metalearn.policies.trainers.suites import resolve_suite
from metalearn.tasks.task import Task

if TYPE_CHECKING:  # imported lazily at run time
    from metalearn.tasks.suite import TaskSuite

__all__ = ["VALIDATION_SEED", "validation_tasks", "evaluate_policy"]

#: Default seed of the validation tasks: one fixed set, whatever the training seed, so runs
#: with different seeds are selected on the same tasks.
VALIDATION_SEED: int = 1_000_003


# =============================================================================================
# Validation: paired simulation against margin and random sampling
# =============================================================================================
def validation_tasks(suite: "str | os.PathLike[str] | TaskSuite", n_tasks: int, seed: int = VALIDATION_SEED) -> list[Task]:
    """A fixed set of ``n_tasks`` tasks from ``suite``, drawn with their own ``seed``.

    Trainers pass a seed separate from the training seed (default :data:`VALIDATION_SEED`),
    so the validation tasks are the same for every training run and never the training
    episodes' tasks (those use ``(iteration, episode)`` spawn keys).
    """
    n_tasks = check_positive_int(n_tasks, "n_tasks", minimum=0)
    if n_tasks == 0:
        return []
    return resolve_suite(suite).tasks(n_tasks, seed=seed)


def _policy_file(
    arch: ScorerArchitecture,
    params: Mapping[str, np.ndarray],
    window: int,
    n_candidates: int,
    schema: FeatureSchema = POOL_SCHEMA,
) -> Any:
    """The policy as an in-memory :class:`~metalearn.policies.file.PolicyFile` (no file written)."""
    from metalearn.policies.file import PolicyFile

    metadata = {"feature_schema": schema.to_dict(), "window": int(window), "n_candidates": int(n_candidates)}
    return PolicyFile(arch=arch, params={k: np.asarray(v, dtype=np.float32) for k, v in params.items()}, metadata=metadata)


def _evaluate_task(job: tuple[Any, ...]) -> dict[str, Any]:
    """AULC of the policy, margin and random on one task, paired (same task, same seeds).

    ``job``: ``(arch_dict, params, task, window, n_candidates, seed[, schema_name[, version]])``;
    without the schema name, the pool schema (version 1); without the version, the newest.
    """
    from metalearn.policies.strategy import PolicyStrategy
    from metalearn.simulation.loop import simulate
    from metalearn.strategies.registry import make_strategy

    arch_dict, params, task, window, n_candidates, seed = job[:6]
    schema = get_schema(str(job[6]), int(job[7]) if len(job) > 7 else None) if len(job) > 6 else POOL_SCHEMA
    policy = _policy_file(ScorerArchitecture.from_dict(arch_dict), params, window, n_candidates, schema)
    strategy = PolicyStrategy(policy, n_candidates=n_candidates, label_budget=task.label_budget, random_state=seed)
    scores: dict[str, Any] = {"task": task.name, "model": task.model.name, "batch_size": int(task.batch_size)}
    scores["policy"] = float(simulate(task, strategy).aulc_accuracy)
    scores["margin"] = float(simulate(task, make_strategy("margin", random_state=seed)).aulc_accuracy)
    scores["random"] = float(simulate(task, make_strategy("random", random_state=seed)).aulc_accuracy)
    return scores


def evaluate_policy(
    arch: ScorerArchitecture,
    params: Mapping[str, np.ndarray],
    tasks: Sequence[Task],
    *,
    window: int,
    n_candidates: int,
    n_jobs: int = 1,
    dask: str | None = None,
    seed: int = 0,
    desc: str | None = None,
    schema: FeatureSchema = POOL_SCHEMA,
) -> dict[str, Any]:
    """Simulate the policy, margin and random sampling on every task (paired) and compare.

    Each task runs the three strategies with the same split, initial labeled set, task model
    and strategy seed; the query model is the task model. ``schema`` is the policy's feature
    schema (a ``proba`` policy queries from the task model's predictions, per tree for a forest).

    Returns
    -------
    dict
        ``policy``, ``margin``, ``random``: mean AULC of accuracy (in [0, 1]);
        ``delta_vs_margin`` and ``delta_vs_random``: mean paired difference in points (x100);
        ``n_tasks``; ``per_task``: one dict per task (task, model, batch_size, policy,
        margin, random).
    """
    tasks = list(tasks)
    if not tasks:
        raise InvalidInputError("evaluate_policy needs at least one task")
    seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(len(tasks))]
    arch_dict = arch.to_dict()
    plain = {name: np.asarray(value, dtype=np.float32) for name, value in params.items()}
    extra = () if schema == POOL_SCHEMA else (schema.name, schema.version)  # pool@1 jobs keep their original form
    jobs = [(arch_dict, plain, task, int(window), int(n_candidates), s, *extra) for task, s in zip(tasks, seeds)]
    per_task = parallel_map(_evaluate_task, jobs, n_jobs=n_jobs, dask=dask, desc=desc)
    policy = np.array([r["policy"] for r in per_task])
    margin = np.array([r["margin"] for r in per_task])
    random_ = np.array([r["random"] for r in per_task])
    return {
        "policy": float(policy.mean()),
        "margin": float(margin.mean()),
        "random": float(random_.mean()),
        "delta_vs_margin": float(100.0 * (policy - margin).mean()),
        "delta_vs_random": float(100.0 * (policy - random_).mean()),
        "n_tasks": len(tasks),
        "per_task": per_task,
    }
