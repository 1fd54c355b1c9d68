"""Meta-training trainers: imitation of the look-ahead oracle (DAgger), LAL regression, PPO,
evolution strategies, the learned batch schedule (:mod:`.schedule`; and, in
:mod:`metalearn.stopping.training`, the stopping rule).

Each trainer is one readable file (:mod:`.imitation`, :mod:`.lal`, :mod:`.ppo`, :mod:`.es`, :mod:`.schedule`)
with a configuration dataclass and a ``train_*`` function that fill in one skeleton
(:mod:`.base`: the shared settings, the run state, start / resume / checkpoint / result).
What they share is in modules with one job each:

- :mod:`.base`: the configuration base, the run state and the run protocol;
- :mod:`.oracle_learning`: the pieces imitation and LAL share (collect, aggregate, select);
- :mod:`.parallel`: an ordered map over joblib processes or a Dask cluster;
- :mod:`.suites`: task-suite resolution (name, TOML path or TaskSuite) and its label;
- :mod:`.episodes`: playing one simulated episode and recording its training samples;
- :mod:`.samples`: the sample buffer and the input normalisation;
- :mod:`.evaluation`: the validation tasks and the paired evaluation of a policy;
- :mod:`.checkpoints`: checkpoints without pickle, RNG and optimiser state, resume checks;
- :mod:`.progress`: the progress log and the iteration/time budget;
- :mod:`.results`: the policy file with its metadata, and the one training result.

The trainers import torch; importing this package does not (names load on first use), so
worker processes that only collect episodes stay light.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from metalearn.policies.trainers.checkpoints import load_checkpoint, save_checkpoint
from metalearn.policies.trainers.episodes import EpisodeSamples, EpisodeSpec, collect_episode
from metalearn.policies.trainers.evaluation import evaluate_policy, validation_tasks
from metalearn.policies.trainers.parallel import parallel_map
from metalearn.policies.trainers.progress import ProgressLog
from metalearn.policies.trainers.results import TrainingResult, write_policy

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
    "ESConfig",
    "train_es",
    "ImitationConfig",
    "train_imitation",
    "LALConfig",
    "train_lal",
    "PPOConfig",
    "train_ppo",
    "ScheduleTrainConfig",
    "train_schedule",
]

_LAZY = {
    "ESConfig": "metalearn.policies.trainers.es",
    "train_es": "metalearn.policies.trainers.es",
    "ImitationConfig": "metalearn.policies.trainers.imitation",
    "train_imitation": "metalearn.policies.trainers.imitation",
    "LALConfig": "metalearn.policies.trainers.lal",
    "train_lal": "metalearn.policies.trainers.lal",
    "PPOConfig": "metalearn.policies.trainers.ppo",
    "train_ppo": "metalearn.policies.trainers.ppo",
    "ScheduleTrainConfig": "metalearn.policies.trainers.schedule",
    "train_schedule": "metalearn.policies.trainers.schedule",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
