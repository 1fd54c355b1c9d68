"""Imitation of the greedy look-ahead oracle with DAgger (Ross et al. 2011), in one file.

One training run, top to bottom (:func:`train_imitation`):

1. **Collect.** Iteration i plays ``episodes_per_iteration`` active-learning episodes on
   tasks drawn from the suite. At every loop the behaviour policy labels the oracle's top-b
   candidates with probability ``beta_i = beta_decay ** i`` (``beta_0 = 1``: the first
   iteration follows the expert alone) and the current scorer's top-b otherwise. Whoever
   acts, the oracle's look-ahead gains of all K candidates are recorded: DAgger labels the
   states the learner itself visits.
2. **Aggregate.** The states join one dataset over all iterations (the newest
   ``max_dataset_size`` are kept). The input standardisation of the scorer is computed from
   the first iteration's states and then frozen (it is part of the policy file).
3. **Train.** ``epochs`` passes of Adam over the dataset with the ListNet listwise loss
   (Cao et al. 2007): cross-entropy between the target distribution
   ``softmax(u / temperature)`` over the valid candidates and ``softmax(scores)``.
   With ``residual=True`` the scorer is the residual ``deepsets`` v2: ``scores = -prior_scale x
   margin + correction``, the correction's last layer zero at the start, so training starts
   from margin sampling's ranking and ListNet learns both the correction and the prior's
   scale.
4. **Select** every ``selection_every`` iterations: the policy, margin and random sampling
   are simulated, paired, on a fixed set of ``selection_tasks``; the best policy by AULC
   difference to margin is kept as ``policy.safetensors``.
5. **Checkpoint** at the iteration boundary: weights, Adam moments, the dataset, RNG states,
   the best score and the progress log position. ``resume=True`` continues from there and
   gives exactly the arrays of an uninterrupted run when the budget is in iterations.

Steps 2, 3 and 5 are shared with LAL (:class:`~metalearn.policies.trainers.oracle_learning.OracleLearner`);
the run protocol (folder, resume, budget, result) is the trainers' skeleton (:mod:`.base`).

The target utility ``u`` (the choice that makes one policy serve every task)
-------------------------------------------------------------------------------
The oracle's gains depend on the task's scale: test accuracy moves in steps of
``1/n_test``, a 10-class task gains less per record than a binary one, and gains shrink
along the learning curve. ListNet only needs an order with confidence, so each state's
gains are standardised over its valid candidates: ``z(g) = (g - mean) / std``. Accuracy
gains on small test sets are coarse (many exact ties), so, as the oracle itself breaks ties
by the log-loss, the standardised log-loss gain is added with a smaller weight:

    ``u = z(gain) + log_loss_weight * z(log_loss_gain)``

``z`` is 0 where every candidate has the same value. A state whose ``u`` is constant carries
no preference and gets weight 0 in the loss (a uniform target would only flatten the
scores). ``temperature`` sets how peaked the target is: with standardised utilities, 0.5
puts most mass on the one or two best candidates without ignoring the runners-up.

Determinism: every episode's randomness comes from ``SeedSequence(seed, spawn_key=(i, e))``,
so results do not depend on ``n_jobs`` or Dask; training runs single-threaded with
deterministic torch algorithms, minibatches are shuffled by a checkpointed numpy generator,
and ``torch.manual_seed`` is reset from the seed at every iteration.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from metalearn.common.extras import require_extra
from metalearn.exceptions import InvalidInputError
from metalearn.policies.trainers.base import start_run
from metalearn.policies.trainers.checkpoints import deterministic_torch
from metalearn.policies.trainers.oracle_learning import ORACLE_PROGRESS_FIELDS, OracleLearner, OracleTrainerConfig
from metalearn.policies.trainers.results import TrainingResult

__all__ = ["ImitationConfig", "train_imitation", "listnet_targets", "listnet_loss", "PROGRESS_FIELDS"]

#: Columns of ``progress.csv``.
PROGRESS_FIELDS: tuple[str, ...] = (*ORACLE_PROGRESS_FIELDS, "beta")


@dataclass
class ImitationConfig(OracleTrainerConfig):
    """Settings of a DAgger run (CLI: ``metalearn train --method imitation``); the shared ones are
    documented on :class:`~metalearn.policies.trainers.base.TrainerConfig` and
    :class:`~metalearn.policies.trainers.oracle_learning.OracleTrainerConfig`."""

    out_dir: str = "runs/imitation"
    """Folder of the run: policies, progress log, checkpoint."""
    beta_decay: float = 0.5
    """beta_i = beta_decay ** i: probability, per loop, that the oracle rather than the learner chooses the batch."""
    temperature: float = 0.5
    """Temperature of the target distribution softmax(u / temperature) over the standardised utilities."""
    log_loss_weight: float = 0.25
    """Weight of the standardised log-loss gain in the target utility (the oracle's tie-break criterion)."""

    def validate(self) -> "ImitationConfig":
        self.check_oracle_settings()
        if not 0.0 <= self.beta_decay <= 1.0:
            raise InvalidInputError(f"beta_decay must lie in [0, 1], got {self.beta_decay}")
        if not self.temperature > 0:
            raise InvalidInputError(f"temperature must be positive, got {self.temperature}")
        if not self.log_loss_weight >= 0:
            raise InvalidInputError(f"log_loss_weight must be >= 0, got {self.log_loss_weight}")
        return self


# ---------------------------------------------------------------------------------------------
# The listwise target and loss
# ---------------------------------------------------------------------------------------------
def _standardise(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per row, (x - mean) / std over the valid entries; 0 where masked or the row is constant."""
    x = np.where(mask, values.astype(np.float64), 0.0)
    n = np.maximum(mask.sum(axis=1, keepdims=True), 1)
    mean = x.sum(axis=1, keepdims=True) / n
    centred = np.where(mask, x - mean, 0.0)
    std = np.sqrt((centred**2).sum(axis=1, keepdims=True) / n)
    return np.divide(centred, std, out=np.zeros_like(centred), where=std > 1e-12)


def listnet_targets(
    gains: np.ndarray, log_loss_gains: np.ndarray, mask: np.ndarray, temperature: float, log_loss_weight: float
) -> tuple[np.ndarray, np.ndarray]:
    """ListNet target distributions and state weights from the oracle's gains.

    Parameters
    ----------
    gains, log_loss_gains : ndarray of shape (N, K)
        The oracle's gains (NaN where masked).
    mask : ndarray of bool, shape (N, K)
    temperature, log_loss_weight : float
        See :class:`ImitationConfig`.

    Returns
    -------
    targets : ndarray of float32, shape (N, K)
        ``softmax(u / temperature)`` over each state's valid candidates, 0 where masked, with
        ``u = z(gain) + log_loss_weight * z(log_loss_gain)``.
    weights : ndarray of float32, shape (N,)
        1 for states whose utilities differ, 0 for states without a preference.
    """
    mask = mask.astype(bool)
    utility = _standardise(gains, mask) + log_loss_weight * _standardise(log_loss_gains, mask)
    logits = np.where(mask, utility / temperature, -np.inf)
    top = np.max(logits, axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    exp = np.where(mask, np.exp(logits - top), 0.0)
    total = exp.sum(axis=1, keepdims=True)
    targets = np.divide(exp, total, out=np.zeros_like(exp), where=total > 0)
    spread = np.where(mask, utility, -np.inf).max(axis=1) - np.where(mask, utility, np.inf).min(axis=1)
    weights = (np.isfinite(spread) & (spread > 1e-9)).astype(np.float32)
    return targets.astype(np.float32), weights


def listnet_loss(scores: Any, targets: Any, weights: Any) -> Any:
    """Weighted mean over states of ``-sum_k target_k log softmax(scores)_k`` (torch tensors).

    Masked candidates have target 0 and score :data:`~metalearn.policies.torch_scorer.MASKED_SCORE`
    (finite), so they contribute exactly 0.
    """
    import torch

    per_state = -(targets * torch.log_softmax(scores, dim=1)).sum(dim=1)
    return (weights * per_state).sum() / weights.sum().clamp_min(1.0)


# ---------------------------------------------------------------------------------------------
# The training run
# ---------------------------------------------------------------------------------------------
def train_imitation(config: ImitationConfig, resume: bool = False, progress: bool = True) -> TrainingResult:
    """Train a scorer by DAgger on the look-ahead oracle; see the module docstring.

    Parameters
    ----------
    config : ImitationConfig
    resume : bool
        Continue from ``out_dir/checkpoint`` (same settings; the budget and resources may
        change); without a checkpoint, start fresh (said in one line). When False, an
        ``out_dir`` that already holds a checkpoint is refused.
    progress : bool
        Show progress bars (iterations, and episodes within an iteration).

    Returns
    -------
    TrainingResult
        ``policy_path`` = ``out_dir/policy.safetensors`` (best by selection),
        ``last_path`` = ``out_dir/last.safetensors``.
    """
    require_extra("train", "imitation training (metalearn train --method imitation)")
    import torch
    from tqdm.auto import tqdm

    config.validate()
    run = start_run(config, "imitation", resume, PROGRESS_FIELDS)
    with deterministic_torch(n_threads=1):
        # -- 1. the learner, its optimiser and the aggregated dataset (fresh or resumed) ------
        learner = OracleLearner(config, run, progress=progress)
        model, data = learner.model, learner.data

        bar = tqdm(total=config.iterations, initial=run.state.iteration, desc="imitation", unit="it", disable=not progress)
        while not run.should_stop(config):
            i = run.state.iteration
            started = time.perf_counter()

            # -- 2. collect: the learner mixed with the oracle (beta); 3. aggregate ----------
            beta = config.beta_decay**i  # iteration 0 (beta = 1) follows the expert alone
            row = learner.aggregate(learner.collect(i, beta), i)
            row["beta"] = beta

            # -- 4. train: ListNet on the whole dataset, a few epochs ------------------------
            learner.seed_iteration(i)
            targets, weights = listnet_targets(
                data["gains"], data["log_loss_gains"], data["mask"], config.temperature, config.log_loss_weight
            )
            usable = np.flatnonzero(weights > 0)
            model.train()
            epoch_losses: list[float] = []
            for _ in range(config.epochs):
                order = usable[learner.shuffle_rng.permutation(usable.size)]
                total, count = 0.0, 0
                for start in range(0, order.size, config.batch_size):
                    b = np.sort(order[start : start + config.batch_size])
                    scores, _ = model(
                        torch.from_numpy(data["candidates"][b]),
                        torch.from_numpy(data["context"][b]),
                        torch.from_numpy(data["mask"][b]),
                    )
                    loss = listnet_loss(scores, torch.from_numpy(targets[b]), torch.from_numpy(weights[b]))
                    learner.step(loss)
                    total += float(loss.detach()) * b.size
                    count += b.size
                epoch_losses.append(total / max(count, 1))
            model.eval()
            run.state.extra["last_loss"] = epoch_losses[-1] if usable.size else None

            # -- 5. write the last policy, select, keep the best, log and checkpoint ---------
            learner.finish_iteration(row, started, time.perf_counter())
            bar.update()
            bar.set_postfix(loss=run.state.extra["last_loss"], delta=row.get("selection_delta"))
        bar.close()
        learner.select_unselected_last()

    return run.result()
