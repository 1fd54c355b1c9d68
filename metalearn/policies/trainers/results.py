"""What a training run produces: the policy file with the standard metadata, and the result
every ``train_*`` function returns."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from metalearn.common.jsonable import json_safe
from metalearn.features.schema import POOL_SCHEMA, FeatureSchema
from metalearn.policies.architecture import ScorerArchitecture
from metalearn.policies.trainers.suites import suite_label

__all__ = ["write_policy", "TrainingResult"]


def write_policy(
    path: str | os.PathLike[str],
    arch: ScorerArchitecture,
    params: Mapping[str, np.ndarray],
    *,
    method: str,
    settings: Mapping[str, Any],
    suite: Any,
    seed: int,
    window: int,
    n_candidates: int,
    training: Mapping[str, Any],
    validation: Mapping[str, Any] | None,
    schema: FeatureSchema = POOL_SCHEMA,
) -> Path:
    """Write a policy file with the standard trainer metadata (atomic, via ``save_policy``).

    Metadata: ``feature_schema`` (``schema``, the pool schema by default), ``window``, ``n_candidates``, ``trainer``
    (``{"method", "settings"}``), ``task_suite``, ``seed``, ``training`` (iteration,
    samples, losses...) and ``validation`` (the figures of :func:`evaluate_policy` without
    the per-task list, or None).
    """
    from metalearn.policies.file import save_policy

    validation_summary = None
    if validation is not None:
        validation_summary = {k: v for k, v in validation.items() if k != "per_task"}
    metadata = {
        "feature_schema": schema.to_dict(),
        "window": int(window),
        "n_candidates": int(n_candidates),
        "trainer": {"method": str(method), "settings": json_safe(dict(settings), strict=False)},
        "task_suite": suite_label(suite),
        "seed": int(seed),
        "training": json_safe(dict(training), strict=False),
        "validation": json_safe(validation_summary, strict=False),
    }
    params32 = {name: np.asarray(value, dtype=np.float32) for name, value in params.items()}
    return Path(save_policy(path, arch, params32, metadata))


@dataclass
class TrainingResult:
    """What every ``train_*`` function returns (ES, PPO, imitation, LAL, the stopping rule).

    Attributes
    ----------
    policy_path : Path
        The best policy by validation (the last one when validation is off).
    last_path : Path
        The policy after the last iteration.
    out_dir : Path
    method : str
    iterations : int
        Iterations completed (over all resumed sessions).
    best_iteration : int or None
        Iteration of ``policy_path`` (0-based).
    best_validation : dict or None
        :func:`evaluate_policy` figures of the best policy (without ``per_task``).
    history : list of dict
        The progress log's rows.
    wall_seconds : float
        Training time over all sessions.
    details : dict
        What only one trainer reports: PPO's ``num_timesteps`` and last ``params``, the
        stopping trainer's ``threshold``, ``held_in``, ``loops``, ``n_runs`` and ``n_computed``...
    """

    policy_path: Path
    last_path: Path
    out_dir: Path
    method: str
    iterations: int
    best_iteration: int | None
    best_validation: dict[str, Any] | None
    history: list[dict[str, Any]]
    wall_seconds: float
    details: dict[str, Any] = field(default_factory=dict, repr=False)
