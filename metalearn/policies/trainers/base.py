"""The skeleton every trainer fills in: the shared settings, the run state, and one protocol for
starting, checkpointing, stopping and finishing a run.

A trainer file reads top to bottom as one run (CleanRL style)::

    run = start_run(config, "imitation", resume, PROGRESS_FIELDS)   # out dir, checkpoint or fresh
    ... build the learner; restore it from run.saved_tensors if resumed ...
    while not run.should_stop(config):                             # iterations / time budget
        ... the trainer's own step ...
        run.keep_if_best(score, i, summary)                          # keep-the-best bookkeeping
        run.end_iteration(row, seconds)                              # progress row
        run.save(tensors, **trainer_state)                           # checkpoint every iteration
    return run.result(details=...)                                   # one result type

The protocol, the same for every trainer:

- ``resume=False`` (CLI: no ``--resume``) and a checkpoint in ``out_dir``: refused, nothing is
  overwritten;
- ``resume=True`` and no checkpoint: a fresh run, announced in one line on stderr;
- ``resume=True`` and a checkpoint of other settings (other than the budget and resources,
  :data:`~metalearn.policies.trainers.checkpoints.RESUMABLE_FIELDS`): refused by
  :func:`~metalearn.policies.trainers.checkpoints.check_resumable`;
- ``resume=True`` on a finished run: nothing runs and its outputs stay untouched
  (:attr:`Run.ran` is False);
- a checkpoint from before this protocol (:data:`RUN_PROTOCOL`) is refused with a clear error.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from metalearn.common.validation import check_positive_int
from metalearn.exceptions import InvalidInputError
from metalearn.policies.trainers.checkpoints import (
    CHECKPOINT_DIR,
    check_resumable,
    checkpoint_exists,
    config_settings,
    load_checkpoint,
    prepare_out_dir,
    save_checkpoint,
)
from metalearn.policies.trainers.evaluation import VALIDATION_SEED
from metalearn.policies.trainers.progress import ProgressLog, should_stop
from metalearn.policies.trainers.results import TrainingResult

__all__ = [
    "RUN_PROTOCOL",
    "COMMON_PROGRESS_FIELDS",
    "RunConfig",
    "TrainerConfig",
    "RunState",
    "Run",
    "start_run",
    "POLICY_NAME",
    "LAST_NAME",
    "PROGRESS_NAME",
]

#: Version of the checkpoint state written by :meth:`Run.save`; older checkpoints are refused.
RUN_PROTOCOL: int = 2
#: The best policy, the last policy and the progress log of a run's folder.
POLICY_NAME, LAST_NAME, PROGRESS_NAME = "policy.safetensors", "last.safetensors", "progress.csv"
#: Columns every trainer's ``progress.csv`` starts with.
COMMON_PROGRESS_FIELDS: tuple[str, ...] = ("iteration", "seconds", "wall_seconds", "selection_delta", "selection_best")


# =============================================================================================
# Settings shared by every trainer
# =============================================================================================
@dataclass
class RunConfig:
    """Settings every trainer has: what it trains on, its seed and its folder."""

    suite: Any = "synthetic"
    """Training task suite: a name (``envs/NAME.toml``), a TOML path or a TaskSuite."""
    seed: int = 0
    """Master seed: every random draw of the run derives from it."""
    out_dir: str = "runs/train"
    """Folder of the run: policy files, ``progress.csv``, ``checkpoint/``."""

    def check_run_settings(self) -> None:
        """Check the fields of :class:`RunConfig` (InvalidInputError / InvalidTypeError name them)."""
        check_positive_int(self.seed, "seed", minimum=0)


@dataclass
class TrainerConfig(RunConfig):
    """Settings of an iterative trainer (ES, PPO, imitation, LAL): budget, keep-the-best, workers.

    The CLI flag of each field is its name with dashes (``--selection-tasks``), except
    ``n_jobs`` (``--jobs``) and ``out_dir`` (``--out``).
    """

    iterations: int | None = 10
    """Iterations to run (ES: generations; PPO: chunks of one rollout and one update); None: until the time budget."""
    time_budget: float | None = None
    """Wall-clock budget in seconds over all resumed sessions, checked at iteration boundaries (an iteration that
    would not finish within it is not started); None: no time limit."""
    selection_suite: Any = None
    """Suite of the keep-the-best tasks (None: the training suite)."""
    selection_tasks: int = 8
    """Fixed tasks on which keep-the-best compares the policy with margin sampling (0: off, the last policy is kept)."""
    selection_seed: int = VALIDATION_SEED
    """Seed of the keep-the-best tasks: the same set whatever the training seed."""
    selection_every: int = 1
    """Iterations between two keep-the-best evaluations (and after the last iteration)."""
    n_jobs: int = 1
    """Local worker processes (1: inline; -1: all cores)."""
    dask: str | None = None
    """Dask scheduler address, or ``local[:N]`` (overrides n_jobs)."""

    def check_trainer_settings(self) -> None:
        """Check the fields of :class:`TrainerConfig` (InvalidInputError / InvalidTypeError name them)."""
        self.check_run_settings()
        if self.iterations is None and self.time_budget is None:
            raise InvalidInputError("give iterations or time_budget (or both), else training never stops")
        if self.iterations is not None:
            check_positive_int(self.iterations, "iterations")
        if self.time_budget is not None and not (
            isinstance(self.time_budget, (int, float)) and not isinstance(self.time_budget, bool)
            and math.isfinite(self.time_budget) and self.time_budget > 0
        ):
            raise InvalidInputError(f"time_budget must be a positive number of seconds, got {self.time_budget!r}")
        check_positive_int(self.selection_tasks, "selection_tasks", minimum=0)
        check_positive_int(self.selection_seed, "selection_seed", minimum=0)
        check_positive_int(self.selection_every, "selection_every")
        if isinstance(self.n_jobs, bool) or not isinstance(self.n_jobs, int) or self.n_jobs == 0 or self.n_jobs < -1:
            raise InvalidInputError(f"n_jobs must be -1 (all cores) or a positive number of workers, got {self.n_jobs!r}")

    def selection_due(self, iteration: int) -> bool:
        """Whether keep-the-best evaluates after ``iteration`` (0-based) by the ``selection_every`` rhythm."""
        return self.selection_tasks > 0 and (iteration + 1) % self.selection_every == 0


# =============================================================================================
# The run state every trainer carries through its checkpoint
# =============================================================================================
@dataclass
class RunState:
    """Where a run stands; JSON in the checkpoint (:meth:`to_dict` / :meth:`from_dict`).

    ``extra`` holds what only one trainer carries (the samples collected, CMA-ES's
    generations, PPO's episode count...), JSON-able.
    """

    iteration: int = 0
    """Next iteration to run (= iterations done)."""
    wall_seconds: float = 0.0
    """Training time over all sessions."""
    durations: list[float] = field(default_factory=list)
    """Seconds of each iteration (the time budget's estimate of the next one)."""
    best_score: float | None = None
    """Keep-the-best figure of the best policy (paired difference to margin on the selection tasks)."""
    best_iteration: int | None = None
    """Iteration of the best policy (0-based; -1: the starting point)."""
    best_validation: dict[str, Any] | None = None
    """Selection figures of the best policy."""
    last_selected: int | None = None
    """Last iteration evaluated on the selection tasks."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Trainer-specific JSON-able state."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunState":
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


# =============================================================================================
# One run: its folder, checkpoint, progress log and result
# =============================================================================================
@dataclass
class Run:
    """A trainer's run in ``config.out_dir``, fresh or resumed (made by :func:`start_run`)."""

    method: str
    out: Path
    settings: dict[str, Any]
    state: RunState
    log: ProgressLog
    saved_tensors: dict[str, Any] | None
    """The checkpoint's arrays when resumed, else None."""
    saved: dict[str, Any] | None
    """The checkpoint's trainer state (what was given to :meth:`save`) when resumed, else None."""
    start_iteration: int = 0

    @property
    def checkpoint_dir(self) -> Path:
        return self.out / CHECKPOINT_DIR

    @property
    def policy_path(self) -> Path:
        return self.out / POLICY_NAME

    @property
    def last_path(self) -> Path:
        return self.out / LAST_NAME

    @property
    def ran(self) -> bool:
        """Whether this session ran an iteration (False: a finished run resumed; leave its files)."""
        return self.state.iteration > self.start_iteration

    def should_stop(self, config: TrainerConfig, *, extra_seconds: float | None = None) -> bool:
        """Whether the budget is spent before the next iteration.

        With ``extra_seconds`` (the iteration being finished, not yet counted), whether the
        iteration now ending is the last one: a trainer validates the last iteration.
        """
        iteration, durations = self.state.iteration, self.state.durations
        elapsed = self.state.wall_seconds
        if extra_seconds is not None:
            iteration, durations, elapsed = iteration + 1, [*durations, extra_seconds], elapsed + extra_seconds
        return should_stop(iteration, elapsed, durations, config.iterations, config.time_budget)

    def keep_if_best(self, score: float, iteration: int, validation: dict[str, Any]) -> bool:
        """Record a keep-the-best evaluation; True when it beats the best so far."""
        self.state.last_selected = iteration
        if self.state.best_score is None or score > self.state.best_score:
            self.state.best_score, self.state.best_iteration, self.state.best_validation = float(score), iteration, validation
            return True
        return False

    def end_iteration(self, row: dict[str, Any], seconds: float) -> None:
        """Count an iteration of ``seconds`` and append its progress row (before the checkpoint:
        a resume truncates rows the checkpoint lacks)."""
        self.state.iteration += 1
        self.state.durations.append(float(seconds))
        self.state.wall_seconds += float(seconds)
        row.setdefault("seconds", float(seconds))
        row["wall_seconds"] = round(self.state.wall_seconds, 3)
        row["selection_best"] = self.state.best_score
        self.log.append(row)

    def save(self, tensors: dict[str, Any], **trainer_state: Any) -> None:
        """Checkpoint the run: ``tensors`` (safetensors) and the run and trainer state (JSON)."""
        state = {
            "protocol": RUN_PROTOCOL, "method": self.method, "config": self.settings, "run": self.state.to_dict(),
            **trainer_state,
        }
        save_checkpoint(self.checkpoint_dir, tensors, state)

    def result(self, *, policy_path: Path | None = None, last_path: Path | None = None, details: dict[str, Any] | None = None) -> TrainingResult:
        """The run's :class:`TrainingResult` (history: the progress log's rows)."""
        return TrainingResult(
            policy_path=policy_path or self.policy_path,
            last_path=last_path or self.last_path,
            out_dir=self.out,
            method=self.method,
            iterations=self.state.iteration,
            best_iteration=self.state.best_iteration,
            best_validation=self.state.best_validation,
            history=self.log.records(),
            wall_seconds=float(self.state.wall_seconds),
            details=dict(details or {}),
        )


def start_run(config: RunConfig, method: str, resume: bool, progress_fields: tuple[str, ...]) -> Run:
    """Prepare ``config.out_dir`` and load the checkpoint to continue, or start fresh.

    Parameters
    ----------
    config : RunConfig
        Already validated.
    method : str
        The trainer's name, recorded in the checkpoint (a checkpoint of another trainer is refused).
    resume : bool
        Continue the checkpoint of ``out_dir``; without one, start fresh and say so in one line.
    progress_fields : tuple of str
        Columns of ``progress.csv`` (:data:`COMMON_PROGRESS_FIELDS` first).

    Raises
    ------
    InvalidInputError
        A checkpoint without ``resume``, an unwritable folder, a checkpoint of another trainer,
        of other settings, or from before :data:`RUN_PROTOCOL`.
    """
    out = Path(config.out_dir)
    checkpoint_dir = out / CHECKPOINT_DIR
    if checkpoint_exists(checkpoint_dir) and not resume:
        raise InvalidInputError(
            f"{out} already holds a training run; pass resume=True (CLI: --resume) to continue it, or choose another folder"
        )
    prepare_out_dir(out)  # a folder that cannot be written fails here, before any training
    settings = config_settings(config)
    loaded = load_checkpoint(checkpoint_dir) if resume else None
    state, tensors, saved = RunState(), None, None
    if resume and loaded is None:
        print(f"{method}: no checkpoint in {checkpoint_dir}: starting a fresh run", file=sys.stderr)
    if loaded is not None:
        tensors, saved = loaded
        if saved.get("protocol") != RUN_PROTOCOL:
            raise InvalidInputError(
                f"the checkpoint in {checkpoint_dir} was written by an earlier metalearn release and cannot be resumed; "
                "start a fresh run in another folder (its policy files stay usable)"
            )
        if saved.get("method") != method:
            raise InvalidInputError(f"the checkpoint in {checkpoint_dir} is a {saved.get('method')} run, not {method}")
        check_resumable(saved["config"], config)
        state = RunState.from_dict(saved["run"])
    log = ProgressLog(out / PROGRESS_NAME, progress_fields)
    log.truncate(state.iteration)  # rows past the checkpoint (a crash) are redone
    return Run(method, out, settings, state, log, tensors, saved, start_iteration=state.iteration)
