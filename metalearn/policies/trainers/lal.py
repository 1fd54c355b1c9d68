"""Learning Active Learning: regression of the expected error reduction, in one file.

After Konyushkova, Sznitman and Fua (2017), "Learning Active Learning from Data", in its
LAL-iterative form: a regressor learns to predict, from the state of an active-learning
loop and a candidate's features, how much labeling that candidate improves the test score;
the strategy labels the candidates with the largest predictions. Here the regressor is the
same permutation-invariant scorer as the other trainers (so the policy file, numpy inference
and :class:`~metalearn.policies.strategy.PolicyStrategy` are shared), and the regression
target is the greedy look-ahead oracle's gain of each candidate in points (test score x 100).

One training run, top to bottom (:func:`train_lal`):

1. **Collect.** Iteration 0 plays ``episodes_per_iteration`` episodes with random sampling
   (the original LAL-independent states); iteration i > 0 plays them with the regressor
   trained so far (its top-b predictions), so the states come from the distribution the
   learned strategy itself visits (LAL-iterative). At every loop the oracle's gain of all K
   candidates is recorded.
2. **Aggregate.** The states join one dataset over all iterations (newest
   ``max_dataset_size`` kept); the input standardisation is computed from iteration 0 and
   frozen.
3. **Train.** ``epochs`` passes of Adam with a Huber (or squared) loss between the scores
   and ``100 * gain`` over every valid candidate. Gains are not standardised per state: the
   regressor must predict the *size* of the improvement, which is what LAL ranks by.
   With ``residual=True`` the regressor is the residual scorer (version 2): a margin prior
   (``-prior_scale x margin``, fitted like any weight) plus a learned correction that starts
   at zero. A linear-in-margin baseline is a sensible prior for a gain too (and the ranking
   starts as margin's); its scale starts at :data:`LAL_PRIOR_SCALE`, in points.
4. **Validate** every ``validate_every`` iterations against margin and random sampling on a
   fixed set of tasks; keep the best policy by AULC difference to margin.
5. **Checkpoint** at the iteration boundary (weights, Adam moments, dataset, RNG states,
   best score, log position); ``resume=True`` continues with the same arrays as an
   uninterrupted run when the budget is in iterations.

Determinism: episode randomness comes from ``SeedSequence(seed, spawn_key=(i, e))`` (any
``n_jobs`` or Dask gives the same states); training is single-threaded with deterministic
torch algorithms, a checkpointed numpy generator shuffles the minibatches, and
``torch.manual_seed`` is reset from the seed at every iteration.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metalearn.common.validation import check_positive_int
from metalearn.common.extras import require_extra
from metalearn.exceptions import InvalidInputError
from metalearn.policies.architecture import ScorerArchitecture
from metalearn.policies.trainers.checkpoints import (
    CHECKPOINT_DIR,
    check_resumable,
    checkpoint_exists,
    prepare_out_dir,
    config_settings,
    deterministic_torch,
    generator_from_state,
    generator_to_state,
    load_checkpoint,
    optimizer_from_checkpoint,
    optimizer_to_checkpoint,
    save_checkpoint,
    torch_rng_from_array,
    torch_rng_to_array,
)
from metalearn.policies.trainers.episodes import EpisodeSpec, trainable_schema, collect_episode, episode_seed
from metalearn.policies.trainers.evaluation import VALIDATION_SEED, evaluate_policy, validation_tasks
from metalearn.policies.trainers.parallel import parallel_map
from metalearn.policies.trainers.progress import ProgressLog, should_stop
from metalearn.policies.trainers.results import TrainingResult, write_policy
from metalearn.policies.trainers.samples import SampleBuffer, input_normalization

__all__ = ["LALConfig", "train_lal", "regression_loss", "PROGRESS_FIELDS", "LOSSES", "LAL_PRIOR_SCALE"]

#: Regression losses.
LOSSES: tuple[str, ...] = ("huber", "mse")
#: Initial ``prior_scale`` of a residual regressor (``residual=True``), in points per unit of margin.
#: The regression target fixes the scores' scale (oracle gains in points: on the synthetic suite
#: about -0.5 +- 2.6, and nearly flat in the margin), so the prior must not dominate it the way
#: the listwise trainers' temperature-like scale of 10 would (initial predictions down to -10).
#: At 1 the initial predictions lie in [-1, 0], the initial Huber loss stays near that of
#: predicting 0, and the ranking is still exactly margin's; the slope is then fitted.
LAL_PRIOR_SCALE = 1.0
#: Columns of ``progress.csv``.
PROGRESS_FIELDS: tuple[str, ...] = (
    "iteration",
    "episodes",
    "samples_collected",
    "samples",
    "episode_aulc",
    "oracle_seconds",
    "wall_seconds",
    "train_loss",
    "validation_delta",
    "validation_policy",
    "validation_margin",
)


@dataclass
class LALConfig:
    """Settings of a LAL-iterative run (CLI: ``metalearn train --method lal``)."""

    suite: Any = "synthetic"
    """Task suite the training episodes are drawn from: a name (``envs/NAME.toml``), a TOML path or a TaskSuite."""
    seed: int = 0
    """Master seed: task draws, episodes, initial weights and minibatch order derive from it."""
    out_dir: str = "runs/lal"
    """Folder of the run: policies, progress log, checkpoint."""
    n_candidates: int = 32
    """K, candidates pre-selected per loop ("mixed": half smallest margin, half random); recorded in the policy."""
    window: int = 5
    """H, loops of metadata history the features look back on (recorded in the policy)."""
    hidden: int = 64
    """Width of the scorer's hidden layers."""
    iterations: int | None = 10
    """Iterations to run (None: until the time budget is spent)."""
    time_budget_seconds: float | None = None
    """Wall-clock budget over all sessions; checked at iteration boundaries (an iteration is not started if it would not fit)."""
    episodes_per_iteration: int = 16
    """Episodes collected per iteration (each on its own task)."""
    epochs: int = 4
    """Passes over the aggregated dataset per iteration."""
    batch_size: int = 64
    """States per minibatch (each holds up to K regression targets)."""
    learning_rate: float = 1e-3
    """Adam's learning rate."""
    weight_decay: float = 0.0
    """Adam's (L2) weight decay."""
    grad_clip: float = 1.0
    """Maximal gradient norm (0 disables clipping)."""
    loss: str = "huber"
    """Regression loss: "huber" (robust to the occasional large gain) or "mse"."""
    huber_delta: float = 1.0
    """Where the Huber loss turns from quadratic to linear, in points."""
    max_dataset_size: int = 100_000
    """States kept in the aggregated dataset (the newest)."""
    validate_every: int = 1
    """Validate every N iterations (and after the last one)."""
    validation_tasks: int = 8
    """Number of validation tasks (0 disables validation: the last policy is the policy)."""
    validation_seed: int = VALIDATION_SEED
    """Seed of the validation tasks (the same fixed set whatever the training seed)."""
    validation_suite: Any = None
    """Suite of the validation tasks (None: the training suite)."""
    metric: str = "accuracy"
    """Oracle gain and AULC metric: "accuracy" or "macro_f1"."""
    oracle_horizon: int = 1
    """Look-ahead depth h of the oracle's gains (CLI: --oracle-horizon). 1: one-step gains (test score with the
    candidate minus the base score). h > 1: mean test score of the h models obtained by labeling the candidate and
    then h-1 records chosen by margin sampling, minus the base score (see LookaheadOracle); costs K*h fits per loop."""
    n_jobs: int = 1
    """Local worker processes for episodes and validation (1: inline)."""
    dask: str | None = None
    """Dask scheduler address, or "local[:N]" (overrides n_jobs)."""
    schema: str = "pool"
    """Feature schema of the policy: "pool" (pool@1: feature values, labels, multi-loop history), "pool@2" (pool@1
    plus cluster coverage, typicality and within-batch features; representative records pre-selected too) or "proba" (class
    probabilities of the unlabeled records only, for baal heuristics; see metalearn.features.proba_features)."""
    residual: bool = False
    """Residual regressor (architecture deepsets v2): predicted gain = -prior_scale x margin + a learned correction
    whose last layer starts at zero, so the first roll-outs with the regressor rank as margin sampling. Here the
    scores are gains in points, so prior_scale starts at LAL_PRIOR_SCALE (1 point per unit of margin: initial
    predictions in [-1, 0], inside the spread of the gains) rather than the listwise trainers' 10 (CLI: --residual)."""

    def validate(self) -> "LALConfig":
        check_positive_int(self.seed, "seed", minimum=0)
        trainable_schema(self.schema)
        check_positive_int(self.n_candidates, "n_candidates")
        check_positive_int(self.window, "window", minimum=2)
        check_positive_int(self.hidden, "hidden")
        check_positive_int(self.episodes_per_iteration, "episodes_per_iteration")
        check_positive_int(self.epochs, "epochs")
        check_positive_int(self.batch_size, "batch_size")
        check_positive_int(self.max_dataset_size, "max_dataset_size")
        check_positive_int(self.validate_every, "validate_every")
        check_positive_int(self.validation_tasks, "validation_tasks", minimum=0)
        check_positive_int(self.oracle_horizon, "oracle_horizon")
        if not isinstance(self.residual, (bool, np.bool_)):
            raise InvalidInputError(f"residual must be True or False, got {self.residual!r}")
        if self.iterations is None and self.time_budget_seconds is None:
            raise InvalidInputError("give iterations or time_budget_seconds (or both)")
        if self.iterations is not None:
            check_positive_int(self.iterations, "iterations")
        if self.time_budget_seconds is not None and not self.time_budget_seconds > 0:
            raise InvalidInputError(f"time_budget_seconds must be positive, got {self.time_budget_seconds}")
        if self.loss not in LOSSES:
            raise InvalidInputError(f"unknown loss {self.loss!r}; valid values: {', '.join(LOSSES)}")
        for name in ("learning_rate", "huber_delta"):
            if not getattr(self, name) > 0:
                raise InvalidInputError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("weight_decay", "grad_clip"):
            if not getattr(self, name) >= 0:
                raise InvalidInputError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.metric not in ("accuracy", "macro_f1"):
            raise InvalidInputError(f"metric must be 'accuracy' or 'macro_f1', got {self.metric!r}")
        return self


def regression_loss(scores: Any, targets: Any, mask: Any, loss: str = "huber", delta: float = 1.0) -> Any:
    """Mean loss over the valid candidates between predicted and oracle gains (torch tensors).

    Masked slots (score :data:`~metalearn.policies.torch_scorer.MASKED_SCORE`, target NaN)
    are left out entirely.
    """
    import torch

    predicted, actual = scores[mask], targets[mask]
    if loss == "mse":
        return torch.nn.functional.mse_loss(predicted, actual)
    return torch.nn.functional.huber_loss(predicted, actual, delta=delta)


def train_lal(config: LALConfig, resume: bool = False, progress: bool = True) -> TrainingResult:
    """Train a scorer to regress the oracle's gain of each candidate (LAL-iterative).

    Parameters
    ----------
    config : LALConfig
    resume : bool
        Continue from ``out_dir/checkpoint`` (same settings; the budget and resources may
        change). Without a checkpoint the run starts fresh. When False, an ``out_dir`` that
        already holds a checkpoint is refused.
    progress : bool
        Show progress bars.

    Returns
    -------
    TrainingResult
        ``policy_path`` = ``out_dir/policy.safetensors`` (best by validation),
        ``last_path`` = ``out_dir/last.safetensors``.
    """
    require_extra("train", "LAL training (metalearn train --method lal)")
    import torch
    from tqdm.auto import tqdm

    from metalearn.policies.torch_scorer import TorchScorer

    config.validate()
    out = Path(config.out_dir)
    checkpoint_dir = out / CHECKPOINT_DIR
    if checkpoint_exists(checkpoint_dir) and not resume:
        raise InvalidInputError(
            f"{out} already holds a training run; pass resume=True (CLI: --resume) to continue it, or choose another folder"
        )
    prepare_out_dir(out)  # a folder that cannot be written fails here, before any training
    settings = config_settings(config)
    # The policy file records how it was trained, not where or on how many workers.
    policy_settings = {k: v for k, v in settings.items() if k not in ("out_dir", "n_jobs", "dask")}
    schema = trainable_schema(config.schema)
    arch = ScorerArchitecture.for_schema(schema, hidden=config.hidden, residual=config.residual)
    log = ProgressLog(out / "progress.csv", PROGRESS_FIELDS)
    policy_path, last_path = out / "policy.safetensors", out / "last.safetensors"
    val_tasks = validation_tasks(config.validation_suite or config.suite, config.validation_tasks, config.validation_seed)

    with deterministic_torch(n_threads=1):
        # -- 1. the regressor, its optimiser and the aggregated dataset (fresh or resumed) ----
        torch.manual_seed(config.seed)
        model = TorchScorer(arch, prior_scale=LAL_PRIOR_SCALE)  # the prior's scale is used by residual=True only
        optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
        data = SampleBuffer(config.n_candidates, config.max_dataset_size, schema=schema)
        shuffle_rng = np.random.default_rng(episode_seed(config.seed, 1 << 20))  # minibatch order
        loop: dict[str, Any] = {
            "iteration": 0,  # next iteration to run
            "elapsed": 0.0,  # wall seconds over all sessions
            "durations": [],  # seconds per iteration
            "normalized": False,  # input standardisation set (from iteration 0) and frozen
            "samples_collected": 0,
            "best_delta": None,
            "best_iteration": None,
            "best_validation": None,
            "last_validated": None,
            "last_loss": None,
        }
        saved = load_checkpoint(checkpoint_dir) if resume else None
        if saved is not None:
            tensors, state = saved
            if state.get("method") != "lal":
                raise InvalidInputError(f"the checkpoint in {checkpoint_dir} is a {state.get('method')} run, not lal")
            check_resumable(state["config"], config)
            model.load_arrays({k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")})
            optimizer_from_checkpoint(optimizer, tensors, state["optimizer"])
            data.load_tensors(tensors)
            torch_rng_from_array(tensors["torch_rng"])
            shuffle_rng = generator_from_state(state["shuffle_rng"])
            loop = state["loop"]
        log.truncate(loop["iteration"])  # rows past the checkpoint (a crash) are redone
        tmp = out / ".config.json.tmp"  # this session's settings, for people reading the folder
        tmp.write_text(json.dumps({"method": "lal", "settings": settings}, indent=1))
        tmp.replace(out / "config.json")

        def checkpoint() -> None:
            tensors = {f"model.{k}": v for k, v in model.arrays().items()}
            opt_tensors, opt_info = optimizer_to_checkpoint(optimizer)
            tensors.update(opt_tensors)
            tensors.update(data.to_tensors())
            tensors["torch_rng"] = torch_rng_to_array()
            state = {
                "method": "lal",
                "config": settings,
                "optimizer": opt_info,
                "shuffle_rng": generator_to_state(shuffle_rng),
                "loop": loop,
            }
            save_checkpoint(checkpoint_dir, tensors, state)

        def write(path: Path, validation: dict[str, Any] | None, row: dict[str, Any] | None) -> Path:
            """The current regressor as a policy file, with its training record and validation figures."""
            rows = log.rows() + ([row] if row is not None else [])
            training = {
                "iteration": loop["iteration"] - 1,
                "iterations": loop["iteration"],
                "samples": len(data),
                "samples_collected": loop["samples_collected"],
                "train_loss": loop["last_loss"],
                "target": "oracle gain in points (test score x 100)"
                + (f", mean over a {config.oracle_horizon}-step look-ahead" if config.oracle_horizon > 1 else ""),
                "wall_seconds": round(loop["elapsed"], 3),
                "curve": [
                    {k: r.get(k) for k in ("iteration", "train_loss", "episode_aulc", "validation_delta")} for r in rows
                ],
            }
            return write_policy(
                path, arch, model.arrays(), method="lal", settings=policy_settings, suite=config.suite,
                seed=config.seed, window=config.window, n_candidates=config.n_candidates,
                training=training, validation=validation, schema=schema,
            )

        def validate(iteration: int) -> tuple[dict[str, Any], bool]:
            """Validation figures of the current regressor, and whether it is the best so far."""
            result = evaluate_policy(
                arch, model.arrays(), val_tasks, window=config.window, n_candidates=config.n_candidates,
                n_jobs=config.n_jobs, dask=config.dask, seed=config.validation_seed,
                desc=f"iteration {iteration}: validation" if progress else None, schema=schema,
            )
            loop["last_validated"] = iteration
            summary = {k: v for k, v in result.items() if k != "per_task"}
            summary["iteration"] = iteration
            best = loop["best_delta"] is None or summary["delta_vs_margin"] > loop["best_delta"]
            if best:
                loop.update(best_delta=summary["delta_vs_margin"], best_iteration=iteration, best_validation=summary)
            return summary, best

        bar = tqdm(total=config.iterations, initial=loop["iteration"], desc="lal", unit="it", disable=not progress)
        while not should_stop(loop["iteration"], loop["elapsed"], loop["durations"], config.iterations, config.time_budget_seconds):
            i = loop["iteration"]
            started = time.perf_counter()

            # -- 2. collect: random sampling first, then the regressor's own picks -----------
            params = model.arrays() if i > 0 else None  # None: uniform random candidates
            specs = [
                EpisodeSpec(
                    suite=config.suite, seed=config.seed, key=(i, e), n_candidates=config.n_candidates,
                    window=config.window, beta=0.0, arch=arch.to_dict() if params is not None else None,
                    params=params, metric=config.metric, schema=config.schema, oracle_horizon=config.oracle_horizon,
                )
                for e in range(config.episodes_per_iteration)
            ]
            episodes = parallel_map(
                collect_episode, specs, n_jobs=config.n_jobs, dask=config.dask,
                desc=f"iteration {i}: episodes" if progress else None,
            )
            collected = sum(len(ep) for ep in episodes)
            if collected == 0:
                raise InvalidInputError(f"iteration {i} collected no state: the suite's tasks have nothing to query")

            # -- 3. aggregate; the input standardisation comes from the first iteration ------
            data.add(episodes, iteration=i)
            loop["samples_collected"] += collected
            if not loop["normalized"]:
                stats = input_normalization(
                    np.concatenate([ep.candidates for ep in episodes]),
                    np.concatenate([ep.context for ep in episodes]),
                    np.concatenate([ep.mask for ep in episodes]),
                )
                model.set_normalization(stats["cand_mean"], stats["cand_std"], stats["ctx_mean"], stats["ctx_std"])
                loop["normalized"] = True

            # -- 4. train: regress 100 * gain on every valid candidate -----------------------
            torch.manual_seed(int(episode_seed(config.seed, i, 1 << 21).generate_state(1)[0]))
            targets = np.where(data["mask"], 100.0 * np.nan_to_num(data["gains"]), 0.0).astype(np.float32)
            model.train()
            epoch_losses: list[float] = []
            for _ in range(config.epochs):
                order = shuffle_rng.permutation(len(data))
                total, count = 0.0, 0
                for start in range(0, order.size, config.batch_size):
                    b = np.sort(order[start : start + config.batch_size])
                    mask = torch.from_numpy(data["mask"][b])
                    scores, _ = model(torch.from_numpy(data["candidates"][b]), torch.from_numpy(data["context"][b]), mask)
                    loss = regression_loss(scores, torch.from_numpy(targets[b]), mask, config.loss, config.huber_delta)
                    optimizer.zero_grad()
                    loss.backward()
                    if config.grad_clip > 0:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                    optimizer.step()
                    n_valid = int(mask.sum())
                    total += float(loss.detach()) * n_valid
                    count += n_valid
                epoch_losses.append(total / max(count, 1))
            model.eval()
            loop["last_loss"] = epoch_losses[-1]

            # -- 5. write the last policy, validate, keep the best ---------------------------
            loop["iteration"] = i + 1
            trained = time.perf_counter()
            loop["elapsed"] += trained - started
            row: dict[str, Any] = {
                "iteration": i,
                "episodes": len(episodes),
                "samples_collected": collected,
                "samples": len(data),
                "episode_aulc": float(np.mean([ep.aulc for ep in episodes])),
                "oracle_seconds": float(sum(ep.oracle_seconds for ep in episodes)),
                "train_loss": loop["last_loss"],
            }
            write(last_path, None, row)
            due = (i + 1) % config.validate_every == 0 or (config.iterations is not None and i + 1 == config.iterations)
            if val_tasks and due:
                summary, best = validate(i)
                row.update(
                    validation_delta=summary["delta_vs_margin"],
                    validation_policy=summary["policy"],
                    validation_margin=summary["margin"],
                )
                if best:
                    write(policy_path, summary, row)
            elif not val_tasks:  # no validation: the policy is the last one
                loop["best_iteration"] = i
                write(policy_path, None, row)

            # -- 6. log and checkpoint at the iteration boundary -----------------------------
            loop["elapsed"] += time.perf_counter() - trained
            loop["durations"].append(time.perf_counter() - started)
            row["wall_seconds"] = round(loop["elapsed"], 3)
            log.append(row)
            checkpoint()
            bar.update()
            bar.set_postfix(loss=loop["last_loss"], delta=row.get("validation_delta"))
        bar.close()

        # A time budget can stop after an iteration that was not validated: validate it now.
        last = loop["iteration"] - 1
        if val_tasks and last >= 0 and loop["last_validated"] != last:
            summary, best = validate(last)
            if best:
                write(policy_path, summary, None)
            checkpoint()

    return TrainingResult(
        policy_path=policy_path,
        last_path=last_path,
        out_dir=out,
        method="lal",
        iterations=loop["iteration"],
        best_iteration=loop["best_iteration"],
        best_validation=loop["best_validation"],
        history=log.records(),
        wall_seconds=float(loop["elapsed"]),
    )
