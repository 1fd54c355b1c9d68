"""What the imitation (DAgger) and LAL trainers share: a scorer trained on the look-ahead
oracle's gains, aggregated over iterations.

Both trainers run the same iteration around their own loss: collect episodes (the oracle's
gains of every candidate recorded), aggregate them into one dataset (the input
standardisation frozen from iteration 0), train a few epochs, write the last policy,
keep the best by the selection tasks, checkpoint. :class:`OracleLearner` holds the scorer,
its optimiser and the dataset and does those shared pieces; each trainer file keeps its
loop and its training step (:mod:`.imitation`, :mod:`.lal`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metalearn.exceptions import InvalidInputError
from metalearn.common.validation import check_positive_int
from metalearn.policies.architecture import ScorerArchitecture
from metalearn.policies.trainers.base import COMMON_PROGRESS_FIELDS, Run, TrainerConfig
from metalearn.policies.trainers.checkpoints import (
    generator_from_state,
    generator_to_state,
    optimizer_from_checkpoint,
    optimizer_to_checkpoint,
    torch_rng_from_array,
    torch_rng_to_array,
)
from metalearn.policies.trainers.episodes import EpisodeSamples, EpisodeSpec, collect_episode, episode_seed, trainable_schema
from metalearn.policies.trainers.evaluation import evaluate_policy, validation_tasks
from metalearn.policies.trainers.parallel import parallel_map
from metalearn.policies.trainers.results import write_policy
from metalearn.policies.trainers.samples import SampleBuffer, input_normalization

__all__ = ["OracleTrainerConfig", "OracleLearner", "ORACLE_PROGRESS_FIELDS"]

#: Columns of ``progress.csv`` of both trainers (imitation adds ``beta``).
ORACLE_PROGRESS_FIELDS: tuple[str, ...] = (
    *COMMON_PROGRESS_FIELDS,
    "episodes",
    "samples_collected",
    "samples",
    "episode_aulc",
    "oracle_seconds",
    "train_loss",
    "selection_policy",
    "selection_margin",
)


@dataclass
class OracleTrainerConfig(TrainerConfig):
    """Settings shared by the imitation and LAL trainers (on top of :class:`TrainerConfig`)."""

    n_candidates: int = 32
    """K, candidates pre-selected per loop ("mixed": half smallest margin, half random); recorded in the policy."""
    window: int = 5
    """H, loops of metadata history the features look back on (recorded in the policy)."""
    hidden: int = 64
    """Width of the scorer's hidden layers."""
    episodes_per_iteration: int = 16
    """Episodes collected per iteration (each on its own task)."""
    epochs: int = 4
    """Passes over the aggregated dataset per iteration."""
    batch_size: int = 64
    """States per minibatch."""
    learning_rate: float = 1e-3
    """Adam's learning rate."""
    weight_decay: float = 0.0
    """Adam's (L2) weight decay."""
    grad_clip: float = 1.0
    """Maximal gradient norm (0 disables clipping)."""
    max_dataset_size: int = 100_000
    """States kept in the aggregated dataset (the newest)."""
    metric: str = "accuracy"
    """Oracle gain and AULC metric: "accuracy" or "macro_f1"."""
    oracle_horizon: int = 1
    """Look-ahead depth h of the oracle's gains (CLI: --oracle-horizon). 1: one-step gains (test score with the
    candidate minus the base score). h > 1: mean test score of the h models obtained by labeling the candidate and
    then h-1 records chosen by margin sampling, minus the base score (see LookaheadOracle); costs K*h fits per loop."""
    schema: str = "pool"
    """Feature schema of the policy: "pool" (pool@1: feature values, labels, multi-loop history), "pool@2" (pool@1
    plus cluster coverage, typicality and within-batch features; representative records pre-selected too) or "proba" (class
    probabilities of the unlabeled records only, for baal heuristics; see metalearn.features.proba_features)."""
    residual: bool = False
    """Residual scorer (architecture deepsets v2): score = -prior_scale x margin + a learned correction whose last
    layer starts at zero, so the initial policy ranks the candidates exactly as margin sampling (CLI: --residual)."""

    def check_oracle_settings(self) -> None:
        """Check the shared fields (InvalidInputError / InvalidTypeError name the field)."""
        self.check_trainer_settings()
        trainable_schema(self.schema)
        check_positive_int(self.n_candidates, "n_candidates")
        check_positive_int(self.window, "window", minimum=2)
        check_positive_int(self.hidden, "hidden")
        check_positive_int(self.episodes_per_iteration, "episodes_per_iteration")
        check_positive_int(self.epochs, "epochs")
        check_positive_int(self.batch_size, "batch_size")
        check_positive_int(self.max_dataset_size, "max_dataset_size")
        check_positive_int(self.oracle_horizon, "oracle_horizon")
        if not isinstance(self.residual, (bool, np.bool_)):
            raise InvalidInputError(f"residual must be True or False, got {self.residual!r}")
        if not self.learning_rate > 0:
            raise InvalidInputError(f"learning_rate must be positive, got {self.learning_rate}")
        for name in ("weight_decay", "grad_clip"):
            if not getattr(self, name) >= 0:
                raise InvalidInputError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.metric not in ("accuracy", "macro_f1"):
            raise InvalidInputError(f"metric must be 'accuracy' or 'macro_f1', got {self.metric!r}")


class OracleLearner:
    """The scorer, its Adam optimiser, the aggregated dataset and the minibatch generator of a
    run, fresh or restored from ``run``'s checkpoint. Call inside ``deterministic_torch``.

    Parameters
    ----------
    config : OracleTrainerConfig
    run : Run
    prior_scale : float or None
        Initial ``prior_scale`` of a residual scorer (None: the scorer's default).
    progress : bool
        Progress bars of the episodes and the selection runs.
    """

    def __init__(self, config: OracleTrainerConfig, run: Run, prior_scale: float | None = None, progress: bool = True) -> None:
        import torch

        from metalearn.policies.torch_scorer import TorchScorer

        self.config, self.run, self.progress = config, run, progress
        #: Trainer-specific entries of the policy file's ``training`` record (LAL: its target).
        self.training_record: dict[str, Any] = {}
        self.schema = trainable_schema(config.schema)
        self.arch = ScorerArchitecture.for_schema(self.schema, hidden=config.hidden, residual=config.residual)
        # The policy file records how it was trained, not where or on how many workers.
        self.policy_settings = {k: v for k, v in run.settings.items() if k not in ("out_dir", "n_jobs", "dask")}
        self.selection_tasks = validation_tasks(
            config.selection_suite or config.suite, config.selection_tasks, config.selection_seed
        )
        torch.manual_seed(config.seed)
        self.model = TorchScorer(self.arch) if prior_scale is None else TorchScorer(self.arch, prior_scale=prior_scale)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
        self.data = SampleBuffer(config.n_candidates, config.max_dataset_size, schema=self.schema)
        self.shuffle_rng = np.random.default_rng(episode_seed(config.seed, 1 << 20))  # minibatch order
        run.state.extra = {"normalized": False, "samples_collected": 0, "last_loss": None, **run.state.extra}
        if run.saved is not None:
            tensors = run.saved_tensors or {}
            self.model.load_arrays({k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")})
            optimizer_from_checkpoint(self.optimizer, tensors, run.saved["optimizer"])
            self.data.load_tensors(tensors)
            torch_rng_from_array(tensors["torch_rng"])
            self.shuffle_rng = generator_from_state(run.saved["shuffle_rng"])
        tmp = run.out / ".config.json.tmp"  # this session's settings, for people reading the folder
        tmp.write_text(json.dumps({"method": run.method, "settings": run.settings}, indent=1))
        tmp.replace(run.out / "config.json")

    # -- collect and aggregate ------------------------------------------------------------------
    def collect(self, iteration: int, beta: float) -> list[EpisodeSamples]:
        """Play ``episodes_per_iteration`` episodes: the oracle acts with probability ``beta``
        per loop, else the current scorer (uniform random candidates at iteration 0)."""
        config = self.config
        params = self.model.arrays() if iteration > 0 else None
        specs = [
            EpisodeSpec(
                suite=config.suite, seed=config.seed, key=(iteration, e), n_candidates=config.n_candidates,
                window=config.window, beta=beta, arch=self.arch.to_dict() if params is not None else None, params=params,
                metric=config.metric, schema=config.schema, oracle_horizon=config.oracle_horizon,
            )
            for e in range(config.episodes_per_iteration)
        ]
        episodes = parallel_map(
            collect_episode, specs, n_jobs=config.n_jobs, dask=config.dask,
            desc=f"iteration {iteration}: episodes" if self.progress else None,
        )
        if sum(len(ep) for ep in episodes) == 0:
            raise InvalidInputError(f"iteration {iteration} collected no state: the suite's tasks have nothing to query")
        return episodes

    def aggregate(self, episodes: list[EpisodeSamples], iteration: int) -> dict[str, Any]:
        """Add the episodes to the dataset (the input standardisation comes from the first
        iteration and is then frozen); the progress columns of the collection."""
        extra = self.run.state.extra
        collected = sum(len(ep) for ep in episodes)
        self.data.add(episodes, iteration=iteration)
        extra["samples_collected"] += collected
        if not extra["normalized"]:
            stats = input_normalization(
                np.concatenate([ep.candidates for ep in episodes]),
                np.concatenate([ep.context for ep in episodes]),
                np.concatenate([ep.mask for ep in episodes]),
            )
            self.model.set_normalization(stats["cand_mean"], stats["cand_std"], stats["ctx_mean"], stats["ctx_std"])
            extra["normalized"] = True
        return {
            "iteration": iteration,
            "episodes": len(episodes),
            "samples_collected": collected,
            "samples": len(self.data),
            "episode_aulc": float(np.mean([ep.aulc for ep in episodes])),
            "oracle_seconds": float(sum(ep.oracle_seconds for ep in episodes)),
        }

    def seed_iteration(self, iteration: int) -> None:
        """Reset torch's seed from (seed, iteration): an iteration's training does not depend on the session."""
        import torch

        torch.manual_seed(int(episode_seed(self.config.seed, iteration, 1 << 21).generate_state(1)[0]))

    def step(self, loss: Any) -> None:
        """One Adam step on ``loss`` with the gradient clipped to ``grad_clip``."""
        import torch

        self.optimizer.zero_grad()
        loss.backward()
        if self.config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()

    # -- write, select, checkpoint --------------------------------------------------------------
    def write(self, path: Path, validation: dict[str, Any] | None, row: dict[str, Any] | None, iterations: int) -> Path:
        """The current scorer as a policy file, with its training record and selection figures."""
        extra = self.run.state.extra
        rows = self.run.log.rows() + ([row] if row is not None else [])
        training = {
            "iteration": iterations - 1,
            "iterations": iterations,
            "samples": len(self.data),
            "samples_collected": extra["samples_collected"],
            "train_loss": extra["last_loss"],
            **self.training_record,
            "wall_seconds": round(self.run.state.wall_seconds, 3),
            "curve": [{k: r.get(k) for k in ("iteration", "train_loss", "episode_aulc", "selection_delta")} for r in rows],
        }
        return write_policy(
            path, self.arch, self.model.arrays(), method=self.run.method, settings=self.policy_settings,
            suite=self.config.suite, seed=self.config.seed, window=self.config.window,
            n_candidates=self.config.n_candidates, training=training, validation=validation, schema=self.schema,
        )

    def select(self, iteration: int) -> tuple[dict[str, Any], bool]:
        """Selection figures of the current scorer, and whether it is the best so far."""
        config = self.config
        result = evaluate_policy(
            self.arch, self.model.arrays(), self.selection_tasks, window=config.window, n_candidates=config.n_candidates,
            n_jobs=config.n_jobs, dask=config.dask, seed=config.selection_seed,
            desc=f"iteration {iteration}: selection" if self.progress else None, schema=self.schema,
        )
        summary = {k: v for k, v in result.items() if k != "per_task"}
        summary["iteration"] = iteration
        return summary, self.run.keep_if_best(summary["delta_vs_margin"], iteration, summary)

    def finish_iteration(self, row: dict[str, Any], started: float, trained: float) -> None:
        """Write the last policy, select (when due, and after the last iteration), keep the best,
        log the row and checkpoint: the end of iteration ``row["iteration"]``."""
        import time

        config, run = self.config, self.run
        i = int(row["iteration"])
        row["train_loss"] = run.state.extra["last_loss"]
        run.state.wall_seconds += trained - started  # the policy files record the time so far
        self.write(run.last_path, None, row, i + 1)
        due = config.selection_due(i) or (config.iterations is not None and i + 1 == config.iterations)
        if self.selection_tasks and due:
            summary, best = self.select(i)
            row.update(selection_delta=summary["delta_vs_margin"], selection_policy=summary["policy"], selection_margin=summary["margin"])
            if best:
                self.write(run.policy_path, summary, row, i + 1)
        elif not self.selection_tasks:  # no selection: the policy is the last one
            run.state.best_iteration = i
            self.write(run.policy_path, None, row, i + 1)
        run.state.wall_seconds -= trained - started  # end_iteration counts the whole iteration
        run.end_iteration(row, time.perf_counter() - started)
        self.checkpoint()

    def select_unselected_last(self) -> None:
        """A time budget can stop after an iteration that was not selected on: select it now."""
        last = self.run.state.iteration - 1
        if self.selection_tasks and last >= 0 and self.run.state.last_selected != last:
            summary, best = self.select(last)
            if best:
                self.write(self.run.policy_path, summary, None, last + 1)
            self.checkpoint()

    def checkpoint(self) -> None:
        tensors = {f"model.{k}": v for k, v in self.model.arrays().items()}
        opt_tensors, opt_info = optimizer_to_checkpoint(self.optimizer)
        tensors.update(opt_tensors)
        tensors.update(self.data.to_tensors())
        tensors["torch_rng"] = torch_rng_to_array()
        self.run.save(tensors, optimizer=opt_info, shuffle_rng=generator_to_state(self.shuffle_rng))
