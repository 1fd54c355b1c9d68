"""Meta-training trainers: imitation of the look-ahead oracle (DAgger), LAL regression, PPO.

Each trainer is one readable file (:mod:`.imitation`, :mod:`.lal`, :mod:`.ppo`) with a
configuration dataclass and a ``train_*`` function; what they share is in :mod:`.common`.
The trainers import torch; importing this package does not (names load on first use), so
worker processes that only collect episodes stay light.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from metalearn.policies.trainers.common import (
    EpisodeSamples,
    EpisodeSpec,
    ProgressLog,
    TrainingResult,
    collect_episode,
    evaluate_policy,
    load_checkpoint,
    parallel_map,
    save_checkpoint,
    validation_tasks,
    write_policy,
)

__all__ = [
    "EpisodeSamples",
    "EpisodeSpec",
    "ProgressLog",
    "TrainingResult",
    "collect_episode",
    "evaluate_policy",
    "load_checkpoint",
    "parallel_map",
    "save_checkpoint",
    "validation_tasks",
    "write_policy",
    "ImitationConfig",
    "train_imitation",
    "LALConfig",
    "train_lal",
    "PPOConfig",
    "train_ppo",
]

_LAZY = {
    "ImitationConfig": "metalearn.policies.trainers.imitation",
    "train_imitation": "metalearn.policies.trainers.imitation",
    "LALConfig": "metalearn.policies.trainers.lal",
    "train_lal": "metalearn.policies.trainers.lal",
    "PPOConfig": "metalearn.policies.trainers.ppo",
    "train_ppo": "metalearn.policies.trainers.ppo",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
