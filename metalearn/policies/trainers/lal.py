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
4. **Select** every ``selection_every`` iterations against margin and random sampling on a
   fixed set of ``selection_tasks``; keep the best policy by AULC difference to margin.
5. **Checkpoint** at the iteration boundary (weights, Adam moments, dataset, RNG states,
   best score, log position); ``resume=True`` continues with the same arrays as an
   uninterrupted run when the budget is in iterations.

Steps 1, 2 and 5 are shared with imitation (:class:`~metalearn.policies.trainers.oracle_learning.OracleLearner`);
the run protocol (folder, resume, budget, result) is the trainers' skeleton (:mod:`.base`).

Determinism: episode randomness comes from ``SeedSequence(seed, spawn_key=(i, e))`` (any
``n_jobs`` or Dask gives the same states); training is single-threaded with deterministic
torch algorithms, a checkpointed numpy generator shuffles the minibatches, and
``torch.manual_seed`` is reset from the seed at every iteration.
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
PROGRESS_FIELDS: tuple[str, ...] = ORACLE_PROGRESS_FIELDS


@dataclass
class LALConfig(OracleTrainerConfig):
    """Settings of a LAL-iterative run (CLI: ``metalearn train --method lal``); the shared ones are
    documented on :class:`~metalearn.policies.trainers.base.TrainerConfig` and
    :class:`~metalearn.policies.trainers.oracle_learning.OracleTrainerConfig`. With
    ``residual=True`` the predicted gain is ``-prior_scale x margin`` plus a learned correction;
    here the scores are gains in points, so ``prior_scale`` starts at :data:`LAL_PRIOR_SCALE`."""

    out_dir: str = "runs/lal"
    """Folder of the run: policies, progress log, checkpoint."""
    loss: str = "huber"
    """Regression loss: "huber" (robust to the occasional large gain) or "mse"."""
    huber_delta: float = 1.0
    """Where the Huber loss turns from quadratic to linear, in points."""

    def validate(self) -> "LALConfig":
        self.check_oracle_settings()
        if self.loss not in LOSSES:
            raise InvalidInputError(f"unknown loss {self.loss!r}; valid values: {', '.join(LOSSES)}")
        if not self.huber_delta > 0:
            raise InvalidInputError(f"huber_delta must be positive, got {self.huber_delta}")
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
        change); without a checkpoint, start fresh (said in one line). When False, an
        ``out_dir`` that already holds a checkpoint is refused.
    progress : bool
        Show progress bars.

    Returns
    -------
    TrainingResult
        ``policy_path`` = ``out_dir/policy.safetensors`` (best by selection),
        ``last_path`` = ``out_dir/last.safetensors``.
    """
    require_extra("train", "LAL training (metalearn train --method lal)")
    import torch
    from tqdm.auto import tqdm

    config.validate()
    run = start_run(config, "lal", resume, PROGRESS_FIELDS)
    with deterministic_torch(n_threads=1):
        # -- 1. the regressor, its optimiser and the aggregated dataset (fresh or resumed) ----
        # The prior's scale is used by residual=True only.
        learner = OracleLearner(config, run, prior_scale=LAL_PRIOR_SCALE, progress=progress)
        learner.training_record["target"] = "oracle gain in points (test score x 100)" + (
            f", mean over a {config.oracle_horizon}-step look-ahead" if config.oracle_horizon > 1 else ""
        )
        model, data = learner.model, learner.data

        bar = tqdm(total=config.iterations, initial=run.state.iteration, desc="lal", unit="it", disable=not progress)
        while not run.should_stop(config):
            i = run.state.iteration
            started = time.perf_counter()

            # -- 2. collect: random sampling first, then the regressor's own picks; aggregate -
            row = learner.aggregate(learner.collect(i, beta=0.0), i)

            # -- 3. train: regress 100 * gain on every valid candidate -----------------------
            learner.seed_iteration(i)
            targets = np.where(data["mask"], 100.0 * np.nan_to_num(data["gains"]), 0.0).astype(np.float32)
            model.train()
            epoch_losses: list[float] = []
            for _ in range(config.epochs):
                order = learner.shuffle_rng.permutation(len(data))
                total, count = 0.0, 0
                for start in range(0, order.size, config.batch_size):
                    b = np.sort(order[start : start + config.batch_size])
                    mask = torch.from_numpy(data["mask"][b])
                    scores, _ = model(torch.from_numpy(data["candidates"][b]), torch.from_numpy(data["context"][b]), mask)
                    loss = regression_loss(scores, torch.from_numpy(targets[b]), mask, config.loss, config.huber_delta)
                    learner.step(loss)
                    n_valid = int(mask.sum())
                    total += float(loss.detach()) * n_valid
                    count += n_valid
                epoch_losses.append(total / max(count, 1))
            model.eval()
            run.state.extra["last_loss"] = epoch_losses[-1]

            # -- 4. write the last policy, select, keep the best, log and checkpoint ---------
            learner.finish_iteration(row, started, time.perf_counter())
            bar.update()
            bar.set_postfix(loss=run.state.extra["last_loss"], delta=row.get("selection_delta"))
        bar.close()
        learner.select_unselected_last()

    return run.result()
