"""Reinforcement learning of the querying policy: PPO with action masking (MaskablePPO).

One training run, readable top to bottom (CleanRL style) in :func:`train_ppo`:

1. vectorised ``metalearn/PoolAL-v0`` environments sample tasks from the configured suite;
2. the actor IS the ``deepsets`` :class:`~metalearn.policies.torch_scorer.TorchScorer` (one
   logit per candidate slot, no layer mixing slots) and the critic is its pooled value head
   (:class:`DeepSetsMaskablePolicy`); invalid slots are masked out of the categorical;
3. the weights start from a policy file (``init_policy``, e.g. imitation-trained; its input
   normalisation included) or fresh, with the input normalisation estimated from a short
   random-policy rollout and then frozen. With ``residual`` (deepsets v2) the actor's logits
   are ``-prior_scale x margin + correction``; fresh weights start with the correction's last
   layer at zero (not ortho-initialised) and ``prior_scale`` at 10, so the initial policy is a
   softened margin sampling (about 88% of the probability on the smaller-margin half of the
   candidates) rather than uniform. An ``init_policy`` of version 2 makes the run residual.
4. training proceeds in chunks of ``n_steps * n_envs`` environment steps (one PPO rollout and
   one update each). After each chunk: a progress row, a keep-the-best evaluation every
   ``selection_every`` chunks (and after the last) on fixed ``selection_tasks``, keeping the best ``delta_vs_margin``,
   ``policy.safetensors`` (best) and ``last.safetensors`` written, and a checkpoint;
5. the budget (``iterations``, in chunks, and/or ``time_budget``) is checked at chunk
   boundaries. The run protocol (folder, resume, budget, keep-the-best, result) is the
   trainers' skeleton (:mod:`.base`).

Resuming replays exactly
------------------------
Every chunk starts from freshly reset environments whose seeds derive from (config seed,
chunk index) only, so no environment state crosses a chunk boundary (episodes still running
at the end of a chunk are dropped: their steps were trained on, their rest is never played).
The checkpoint, written at each boundary after validation, holds the policy parameters and
Adam state (safetensors), and the step counters and numpy / torch / python RNG states. A run
resumed from it computes bit for bit what the uninterrupted run computes, as long as
``iterations`` only decides *when* to stop (``anneal_lr`` ties the learning rate to it,
so extending an annealed run changes its later chunks). Nothing is pickled: neither the
checkpoint nor the policy files can execute code when loaded.

Output folder (``out_dir``)::

    policy.safetensors   the best validated policy (the latest one until a validation ran)
    last.safetensors     the policy after the latest chunk
    checkpoint/          the resumable state (safetensors + JSON)
    progress.csv         one row per chunk

Example::

    from metalearn.policies.trainers.ppo import PPOConfig, train_ppo
    result = train_ppo(PPOConfig(out_dir="runs/ppo", suite="synthetic", n_envs=2,
                                 iterations=800, init_policy="runs/imitation/policy.safetensors"))
    # later, or after a crash: the same call with resume=True continues where it stopped
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np

from metalearn.common.extras import require_extra

require_extra("train", "PPO training (metalearn train --method ppo)")  # before torch: the error names the extra

import torch as th  # noqa: E402
from gymnasium import spaces  # noqa: E402
from sb3_contrib import MaskablePPO  # noqa: E402
from sb3_contrib.common.maskable.distributions import MaskableDistribution  # noqa: E402
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy  # noqa: E402
from stable_baselines3.common.callbacks import BaseCallback  # noqa: E402
from stable_baselines3.common.logger import Logger  # noqa: E402
from stable_baselines3.common.monitor import Monitor  # noqa: E402
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor  # noqa: E402
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule  # noqa: E402
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv  # noqa: E402
from torch import nn  # noqa: E402

from metalearn.envs import POOL_AL_ID
from metalearn.envs.common import METRICS, REWARDS
from metalearn.envs.pool_al import CANDIDATE_SELECTIONS
from metalearn.exceptions import InvalidInputError
from metalearn.features.registry import registered_schemas
from metalearn.features.schema import POOL_SCHEMA
from metalearn.policies.architecture import RESIDUAL_VERSION, ScorerArchitecture
from metalearn.policies.torch_scorer import TorchScorer
from metalearn.policies.trainers.base import COMMON_PROGRESS_FIELDS, Run, RunState, TrainerConfig, start_run
from metalearn.policies.trainers.checkpoints import (
    deterministic_torch,
    optimizer_from_checkpoint,
    optimizer_to_checkpoint,
    torch_rng_from_array,
    torch_rng_to_array,
)
from metalearn.policies.trainers.episodes import episode_seed
from metalearn.policies.trainers.evaluation import evaluate_policy, validation_tasks
from metalearn.policies.trainers.results import TrainingResult, write_policy
from metalearn.policies.trainers.suites import resolve_suite

__all__ = ["PPOConfig", "DeepSetsMaskablePolicy", "make_training_env", "train_ppo"]

#: The feature schemas a PPO run can train for (``PPOConfig.schema``): PoolAL-v0's observations,
#: by trainer configuration name, from the schema registry.
PPO_SCHEMAS = {entry.config_name: entry.schema for entry in registered_schemas(trainer="ppo")}
METHOD = "ppo"
#: Floor of the estimated feature standard deviations. Features lie in [-1, 1]; one that was
#: (nearly) constant during the short estimation rollout must not be amplified 1000x later.
MIN_NORMALIZATION_STD = 0.05
_TRAIN_STATS = ("policy_gradient_loss", "value_loss", "entropy_loss", "approx_kl", "clip_fraction", "explained_variance")
_SELECTION_STATS = ("policy", "margin", "random", "delta_vs_random")
PROGRESS_FIELDS = (
    *COMMON_PROGRESS_FIELDS, "timesteps", "steps_per_second", "ep_return", "aulc", "episodes",
    *_TRAIN_STATS, *(f"selection_{k}" for k in _SELECTION_STATS), "best",
)


# ============================================================================ configuration
@dataclass
class PPOConfig(TrainerConfig):
    """Settings of one PPO training run (all recorded in the policy file's ``trainer.settings``); the
    shared ones (suite, seed, budget, keep-the-best, workers) are documented on
    :class:`~metalearn.policies.trainers.base.TrainerConfig`. An iteration is one chunk of
    ``n_steps * n_envs`` environment steps (one rollout and one PPO update)."""

    out_dir: str = "runs/ppo"
    """Folder for policy.safetensors (best), last.safetensors, checkpoint/ and progress.csv."""
    iterations: int | None = 391
    """Chunks to train (391 x 256 steps: about 100,000 environment steps); None: until the time budget."""
    selection_tasks: int = 16
    """Fixed keep-the-best tasks, drawn once from the selection suite (0: never; policy.safetensors is the last)."""
    selection_every: int = 5
    """Keep-the-best evaluation every this many chunks and after the last."""
    n_candidates: int = 32
    """K, candidate slots per pick (the action space is Discrete(K))."""
    window: int = 5
    """H, loops of metadata history the features see (at least 2)."""
    reward: str = "auc"
    """Environment reward: ``auc`` (return = area under the learning curve) or ``improvement``."""
    metric: str = "accuracy"
    """Test score the reward is computed from: ``accuracy`` or ``macro_f1``."""
    candidate_selection: str = "mixed"
    """How the K slots are pre-selected from the pool: ``mixed`` or ``random``."""
    schema: str = "pool"
    """Feature schema the environments observe and the policy is written for: ``pool`` (pool@1) or ``pool@2``
    (plus cluster coverage, typicality and within-batch features; representative records pre-selected too)."""
    hidden: int | None = None
    """Width of the scorer's hidden layers; None: the init policy's width, else 64."""
    residual: bool | None = None
    """Residual actor (deepsets v2: logits = -prior_scale x margin + a learned correction starting at zero, so the
    initial policy is margin-like); None: as the init policy (its architecture version), else False."""
    init_policy: str | None = None
    """Policy file (e.g. imitation-trained) whose weights and normalisation initialise actor and critic."""
    n_normalization_steps: int = 256
    """Random-policy steps whose observations estimate the frozen input normalisation (without init_policy)."""
    n_envs: int = 1
    """Parallel environments (SubprocVecEnv above 1, DummyVecEnv for 1)."""
    n_steps: int = 256
    """Steps per environment per rollout; one chunk = one rollout + one update = n_steps * n_envs steps."""
    batch_size: int = 64
    """Minibatch size of the PPO update."""
    n_epochs: int = 4
    """Passes over each rollout in the PPO update."""
    learning_rate: float = 3e-4
    """Adam learning rate (0 freezes the weights, e.g. to evaluate an init policy)."""
    anneal_lr: bool = False
    """Decay the learning rate linearly to 0 over the iterations' steps (needs iterations)."""
    gamma: float = 1.0
    """Discount factor; 1 makes the return the episode's learning-curve area (reward ``auc``)."""
    gae_lambda: float = 0.95
    """GAE lambda (bias/variance trade-off of the advantage)."""
    clip_range: float = 0.2
    """PPO ratio clipping."""
    ent_coef: float = 0.01
    """Entropy bonus coefficient (exploration)."""
    vf_coef: float = 0.5
    """Value-loss coefficient."""
    max_grad_norm: float = 0.5
    """Gradient-norm clipping."""
    target_kl: float | None = None
    """Stop an update's epochs once the approximate KL exceeds 1.5 x this (None: never)."""
    ortho_init: bool = True
    """Orthogonal initialisation (gain sqrt 2, logit layer 0.01, value output 1) of fresh weights."""

    def validated(self) -> "PPOConfig":
        """Return the config after checking every field (InvalidInputError names the field)."""

        def integer(name: str, minimum: int = 1, *, optional: bool = False) -> None:
            value = getattr(self, name)
            if value is None and optional:
                return
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
                raise InvalidInputError(f"PPOConfig.{name} must be an integer >= {minimum}, got {value!r}")

        def number(name: str, low: float, high: float = math.inf, *, optional: bool = False) -> None:
            value = getattr(self, name)
            if value is None and optional:
                return
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise InvalidInputError(f"PPOConfig.{name} must be a number, got {value!r}")
            if not low <= float(value) <= high:
                raise InvalidInputError(f"PPOConfig.{name} must lie in [{low}, {high}], got {value!r}")

        self.check_trainer_settings()
        for name in ("n_candidates", "n_envs", "n_steps", "batch_size", "n_epochs", "n_normalization_steps"):
            integer(name)
        integer("window", 2)
        integer("hidden", optional=True)
        if self.residual is not None and not isinstance(self.residual, (bool, np.bool_)):
            raise InvalidInputError(f"PPOConfig.residual must be True, False or None, got {self.residual!r}")
        if self.n_steps * self.n_envs < 2:
            raise InvalidInputError("PPOConfig: n_steps * n_envs must be at least 2 (one PPO rollout)")
        number("learning_rate", 0.0)
        number("gamma", 0.0, 1.0)
        number("gae_lambda", 0.0, 1.0)
        number("clip_range", 0.0)
        number("ent_coef", 0.0)
        number("vf_coef", 0.0)
        number("max_grad_norm", 0.0)
        number("target_kl", 0.0, optional=True)
        if self.schema not in PPO_SCHEMAS:
            raise InvalidInputError(
                f"PPOConfig.schema must be one of {', '.join(PPO_SCHEMAS)} (the PoolAL-v0 observations), got {self.schema!r}"
            )
        for name, choices in (("reward", REWARDS), ("metric", METRICS), ("candidate_selection", CANDIDATE_SELECTIONS)):
            if getattr(self, name) not in choices:
                raise InvalidInputError(f"PPOConfig.{name} must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        if self.anneal_lr and self.iterations is None:
            raise InvalidInputError("PPOConfig.anneal_lr needs iterations (the learning rate decays over them)")
        return self

    @property
    def chunk_steps(self) -> int:
        """Environment steps per chunk (one rollout and one PPO update)."""
        return self.n_steps * self.n_envs

    @property
    def total_timesteps(self) -> int | None:
        """Environment steps of ``iterations`` chunks (None without an iteration budget)."""
        return None if self.iterations is None else self.iterations * self.chunk_steps

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ============================================================================ the policy
class _DictPassthrough(BaseFeaturesExtractor):
    """Hands the (preprocessed) Dict observation to the scorer unflattened."""

    def __init__(self, observation_space: spaces.Dict) -> None:
        super().__init__(observation_space, features_dim=1)  # unused; SB3 needs a positive number

    def forward(self, observations: dict[str, th.Tensor]) -> dict[str, th.Tensor]:
        return observations


def _architecture(
    observation_space: spaces.Space, action_space: spaces.Space, hidden: int, residual: bool = False
) -> ScorerArchitecture:
    if not (
        isinstance(observation_space, spaces.Dict)
        and {"candidates", "context", "mask"} <= set(observation_space.spaces)
        and isinstance(observation_space["candidates"], spaces.Box)
        and isinstance(observation_space["context"], spaces.Box)
        and isinstance(action_space, spaces.Discrete)
    ):
        raise InvalidInputError(
            "DeepSetsMaskablePolicy needs the PoolAL observation (Dict with candidates, context, mask) "
            f"and a Discrete action space; got {observation_space} and {action_space}"
        )
    k, n_features = observation_space["candidates"].shape
    if int(action_space.n) != k:
        raise InvalidInputError(f"action space Discrete({action_space.n}) does not match {k} candidate slots")
    n_context = int(observation_space["context"].shape[0])
    if residual:
        # PoolAL-v0 observes a pool schema (pool@1 or pool@2); the residual prior is that schema's.
        observed = [
            schema for schema in PPO_SCHEMAS.values()
            if (int(n_features), n_context) == (schema.n_candidate_features, schema.n_context_features)
        ]
        if not observed:
            expected = " or ".join(
                f"{x.id} ({x.n_candidate_features} candidate and {x.n_context_features} context features)"
                for x in PPO_SCHEMAS.values()
            )
            raise InvalidInputError(
                f"a residual actor needs the {expected} observation, got {n_features} and {n_context}"
            )
        return ScorerArchitecture.for_schema(observed[0], hidden=int(hidden), residual=True)
    return ScorerArchitecture(
        n_candidate_features=int(n_features),
        n_context_features=n_context,
        hidden=int(hidden),
    ).validate()


class DeepSetsMaskablePolicy(MaskableActorCriticPolicy):
    """MaskablePPO policy whose actor is the ``deepsets`` scorer and critic its value head.

    The logits over the K actions are the scorer's per-candidate scores, so the policy is
    permutation-equivariant in the candidate slots and handles any candidate order the
    environment shuffles in. The observation's ``mask`` decides which slots are pooled and
    scored (masked slots get :data:`~metalearn.policies.torch_scorer.MASKED_SCORE`); MaskablePPO's
    ``action_masks`` (the environment's, equal to that mask) are applied on top. Values have
    shape (B, 1) like SB3's value net.

    Parameters
    ----------
    observation_space, action_space, lr_schedule
        As for every SB3 policy (MaskablePPO passes them).
    hidden : int
        Width of the scorer's hidden layers.
    ortho_init : bool
        Orthogonal initialisation: gain sqrt(2) for hidden layers, 0.01 for the logit layer
        (a near-uniform initial policy), 1 for the value output. A residual actor keeps its
        logit layer (the correction's) at zero: the initial logits are the margin prior.
    residual : bool
        Build the residual (version 2) scorer.
    optimizer_class, optimizer_kwargs
        The optimiser (Adam with eps 1e-5 by default).

    Attributes
    ----------
    scorer : TorchScorer
        Actor and critic; ``scorer.arrays()`` are the policy file's parameters.
    arch : ScorerArchitecture
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        hidden: int = 64,
        ortho_init: bool = True,
        residual: bool = False,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.hidden = int(hidden)
        self.residual = bool(residual)
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch=[],
            activation_fn=nn.ReLU,
            ortho_init=ortho_init,
            features_extractor_class=_DictPassthrough,
            share_features_extractor=True,
            normalize_images=False,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
        )

    # -- construction ------------------------------------------------------------------------
    def _build(self, lr_schedule: Schedule) -> None:
        self.arch = _architecture(self.observation_space, self.action_space, self.hidden, self.residual)
        self.scorer = TorchScorer(self.arch)
        if self.ortho_init:
            gains = (
                (self.scorer.encoder, math.sqrt(2)),
                (self.scorer.head[0], math.sqrt(2)),
                (self.scorer.head[1], 0.01),
                (self.scorer.value[0], math.sqrt(2)),
                (self.scorer.value[1], 1.0),
            )
            for module, gain in gains:
                module.apply(partial(self.init_weights, gain=gain))
            if self.arch.residual:
                self.scorer.zero_residual()  # the initial logits are the margin prior exactly
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        for key in ("net_arch", "activation_fn", "features_extractor_class", "features_extractor_kwargs"):
            data.pop(key, None)
        data["hidden"] = self.hidden
        data["residual"] = self.residual
        return data

    # -- the networks ------------------------------------------------------------------------
    def logits_and_values(self, obs: PyTorchObs) -> tuple[th.Tensor, th.Tensor]:
        """Per-slot logits (B, K), masked slots at MASKED_SCORE, and values (B, 1)."""
        x = self.extract_features(obs)
        assert isinstance(x, dict)
        scores, values = self.scorer(x["candidates"], x["context"], x["mask"] > 0.5)
        return scores, values.unsqueeze(-1)

    def _distribution(self, logits: th.Tensor, action_masks: Any) -> MaskableDistribution:
        distribution = self.action_dist.proba_distribution(action_logits=logits)
        if action_masks is not None:
            distribution.apply_masking(action_masks)
        return distribution

    def forward(
        self, obs: th.Tensor, deterministic: bool = False, action_masks: np.ndarray | None = None
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        logits, values = self.logits_and_values(obs)
        distribution = self._distribution(logits, action_masks)
        actions = distribution.get_actions(deterministic=deterministic)
        log_prob = distribution.log_prob(actions)
        return actions.reshape((-1, *self.action_space.shape)), values, log_prob  # type: ignore[misc]

    def evaluate_actions(
        self, obs: th.Tensor, actions: th.Tensor, action_masks: th.Tensor | None = None
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor | None]:
        logits, values = self.logits_and_values(obs)
        distribution = self._distribution(logits, action_masks)
        return values, distribution.log_prob(actions), distribution.entropy()

    def get_distribution(self, obs: PyTorchObs, action_masks: np.ndarray | None = None) -> MaskableDistribution:
        logits, _ = self.logits_and_values(obs)
        return self._distribution(logits, action_masks)

    def predict_values(self, obs: PyTorchObs) -> th.Tensor:
        return self.logits_and_values(obs)[1]


# ============================================================================ environments
def _make_env(
    suite: str, n_candidates: int, window: int, reward: str, metric: str, candidate_selection: str,
    feature_schema: str = POOL_SCHEMA.id,
) -> gymnasium.Env:
    # A subprocess unpickles this function by importing this module, which imports
    # metalearn.envs and so registers the environment.
    env = gymnasium.make(
        POOL_AL_ID,
        task_suite=suite,
        n_candidates=n_candidates,
        window=window,
        reward=reward,
        metric=metric,
        candidate_selection=candidate_selection,
        feature_schema=feature_schema,
        disable_env_checker=True,
    )
    # Monitor puts the episode's return, length and AULC into info["episode"] for the logs.
    return Monitor(env, info_keywords=("aulc",))


def make_training_env(config: PPOConfig) -> VecEnv:
    """The vectorised training environments of ``config`` (DummyVecEnv for 1, else SubprocVecEnv).

    SubprocVecEnv starts its workers with ``forkserver`` (or ``spawn``), so a script that trains
    with ``n_envs > 1`` needs the usual ``if __name__ == "__main__":`` guard.
    """
    factory = partial(
        _make_env, config.suite, config.n_candidates, config.window, config.reward, config.metric,
        config.candidate_selection, PPO_SCHEMAS[config.schema].id,
    )
    if config.n_envs == 1:
        return DummyVecEnv([factory])
    return SubprocVecEnv([factory] * config.n_envs)


def _chunk_seed(seed: int, chunk: int) -> int:
    """Seed of the environments at the start of a chunk: a function of (seed, chunk) only.

    ``VecEnv.seed(s)`` gives environment i the seed ``s + i`` at the next reset.
    """
    return int(episode_seed(seed, 0, chunk).generate_state(1)[0])


def _estimate_normalization(venv: VecEnv, n_steps: int, seed: int) -> tuple[np.ndarray, ...]:
    """Mean and std of candidate (valid slots) and context features under a random valid policy.

    The environments are seeded from ``(seed, 1)``, the action choices from ``(seed, 2)``; the
    standard deviations are floored at :data:`MIN_NORMALIZATION_STD`.
    """
    rng = np.random.default_rng(episode_seed(seed, 2))
    venv.seed(int(episode_seed(seed, 1).generate_state(1)[0]))
    obs = venv.reset()
    candidates, contexts = [], []
    for _ in range(math.ceil(n_steps / venv.num_envs)):
        assert isinstance(obs, dict)  # PoolAL-v0 observations
        mask = obs["mask"].astype(bool)
        candidates.append(obs["candidates"][mask])
        contexts.append(obs["context"])
        actions = np.array([rng.choice(np.flatnonzero(m)) if m.any() else 0 for m in mask])
        obs, _, _, _ = venv.step(actions)
    cand = np.concatenate(candidates).astype(np.float64)
    ctx = np.concatenate(contexts).astype(np.float64)
    return (
        cand.mean(axis=0), np.maximum(cand.std(axis=0), MIN_NORMALIZATION_STD),
        ctx.mean(axis=0), np.maximum(ctx.std(axis=0), MIN_NORMALIZATION_STD),
    )


# ============================================================================ episode statistics
class _EpisodeStats(BaseCallback):
    """Collects the return and AULC of every episode that ends during one chunk."""

    def __init__(self) -> None:
        super().__init__()
        self.returns: list[float] = []
        self.aulcs: list[float] = []

    def _on_step(self) -> bool:
        for info in self.locals["infos"]:
            episode = info.get("episode")
            if episode is not None:  # Monitor's summary at the end of an episode
                self.returns.append(float(episode["r"]))
                if "aulc" in episode:
                    self.aulcs.append(float(episode["aulc"]))
        return True


# ============================================================================ RNG state
def _global_rng_state() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """numpy's legacy global, torch's and python's RNG states: arrays and JSON."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    tensors = {
        "rng.numpy": np.asarray(keys, dtype=np.uint32),
        "rng.torch": torch_rng_to_array(),
        "rng.python": np.asarray(py_state, dtype=np.int64),
    }
    return tensors, {"numpy": [kind, int(pos), int(has_gauss), float(cached)], "python": [version, py_gauss]}


def _set_global_rng_state(tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    kind, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, np.asarray(tensors["rng.numpy"], dtype=np.uint32), int(pos), int(has_gauss), float(cached)))
    torch_rng_from_array(tensors["rng.torch"])
    version, py_gauss = meta["python"]
    random.setstate((int(version), tuple(int(v) for v in tensors["rng.python"]), py_gauss))


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


# ============================================================================ training
def _read_init_policy(config: PPOConfig, saved: dict[str, Any] | None) -> Any:
    """The policy file a fresh run starts from (``config.init_policy``), checked; else None."""
    if config.init_policy is None or saved is not None:
        return None
    from metalearn.policies.file import read_policy

    init = read_policy(config.init_policy)
    if init.schema != PPO_SCHEMAS[config.schema]:
        raise InvalidInputError(
            f"init_policy {config.init_policy!r} computes the {init.schema.id} features, this run observes "
            f"{PPO_SCHEMAS[config.schema].id}: set schema to match it"
        )
    if init.window != config.window:
        raise InvalidInputError(
            f"init_policy {config.init_policy!r} was trained with window {init.window}, this run uses "
            f"window {config.window}: its features would mean something else; set window={init.window}"
        )
    return init


def _scorer_shape(config: PPOConfig, saved: dict[str, Any] | None, init: Any) -> tuple[int, bool]:
    """Hidden width and residual flag: the config's, else the checkpoint's, else the init policy's."""
    if config.hidden is not None:
        hidden = config.hidden
    else:
        hidden = int(saved["arch"]["hidden"]) if saved else init.arch.hidden if init else 64
    if config.residual is not None:
        residual = bool(config.residual)
    elif saved:
        residual = int(saved["arch"].get("version", 1)) >= RESIDUAL_VERSION
    else:
        residual = init is not None and init.arch.residual
    return hidden, residual


def _build_agent(config: PPOConfig, venv: VecEnv, hidden: int, residual: bool) -> MaskablePPO:
    """MaskablePPO around the deepsets actor-critic, logging into memory only."""
    model = MaskablePPO(
        DeepSetsMaskablePolicy,
        venv,
        learning_rate=config.learning_rate,
        n_steps=config.n_steps,
        batch_size=config.batch_size,
        n_epochs=config.n_epochs,
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
        clip_range=config.clip_range,
        ent_coef=config.ent_coef,
        vf_coef=config.vf_coef,
        max_grad_norm=config.max_grad_norm,
        target_kl=config.target_kl,
        policy_kwargs={"hidden": hidden, "ortho_init": config.ortho_init, "residual": residual},
        seed=config.seed,
        device="cpu",
        verbose=0,
    )
    model.set_logger(Logger(folder=None, output_formats=[]))  # train/* values are read after each chunk
    return model


def _restore_state(model: MaskablePPO, run: Run) -> dict[str, np.ndarray]:
    """Put the checkpoint's weights, optimiser, counters and RNG states back; the best params."""
    saved_tensors, saved = run.saved_tensors or {}, run.saved or {}
    policy: DeepSetsMaskablePolicy = model.policy  # type: ignore[assignment]
    policy.load_state_dict(
        {k.removeprefix("policy."): th.from_numpy(np.array(v)) for k, v in saved_tensors.items() if k.startswith("policy.")}
    )
    optimizer_from_checkpoint(policy.optimizer, saved_tensors, saved["optimizer"])
    model.num_timesteps = int(saved["num_timesteps"])
    model._n_updates = int(saved["n_updates"])
    _set_global_rng_state(saved_tensors, saved["rng"])
    return {k.removeprefix("best."): np.array(v) for k, v in saved_tensors.items() if k.startswith("best.")}


def _fresh_state(model: MaskablePPO, venv: VecEnv, config: PPOConfig, init: Any, state: RunState) -> None:
    """Start from the init policy's weights, or from fresh weights with a normalisation
    estimated on a random policy's observations."""
    policy: DeepSetsMaskablePolicy = model.policy  # type: ignore[assignment]
    state.extra.update(episodes=0, history=[])
    if init is not None:
        if init.arch != policy.arch:
            raise InvalidInputError(
                f"init_policy {config.init_policy!r} has architecture {init.arch.to_dict()}, "
                f"this run builds {policy.arch.to_dict()} (leave hidden=None and residual=None to take the "
                "policy's width and version)"
            )
        policy.scorer.load_arrays(init.params)
        state.extra["init"] = {"policy": str(config.init_policy), "normalization": "init_policy"}
        return
    policy.scorer.set_normalization(*_estimate_normalization(venv, config.n_normalization_steps, config.seed))
    state.extra["init"] = {"policy": None, "normalization": f"random policy, {config.n_normalization_steps} steps"}


def _rollout_and_update(model: MaskablePPO, venv: VecEnv, config: PPOConfig, state: RunState) -> dict[str, Any]:
    """One chunk: a rollout of n_steps * n_envs steps and one PPO update; its progress record.

    ``record["seconds"]`` is the rollout-and-update time; the caller adds the selection.
    """
    if config.anneal_lr:
        assert config.total_timesteps is not None
        lr = config.learning_rate * max(0.0, 1.0 - model.num_timesteps / config.total_timesteps)
        model.lr_schedule = lambda _remaining: lr
    # Fresh episodes seeded from (seed, chunk): no environment state crosses a boundary.
    venv.seed(_chunk_seed(config.seed, state.iteration))
    model._last_obs = None
    episode_stats = _EpisodeStats()
    started = time.perf_counter()
    model.learn(config.chunk_steps, callback=episode_stats, reset_num_timesteps=False)
    learn_seconds = time.perf_counter() - started

    state.extra["episodes"] += len(episode_stats.returns)
    stats = model.logger.name_to_value
    return {
        "iteration": state.iteration,
        "timesteps": int(model.num_timesteps),
        "seconds": learn_seconds,
        "steps_per_second": config.chunk_steps / learn_seconds if learn_seconds > 0 else None,
        "ep_return": _mean(episode_stats.returns),
        "aulc": _mean(episode_stats.aulcs),
        "episodes": state.extra["episodes"],
        **{k: (float(stats[f"train/{k}"]) if f"train/{k}" in stats else None) for k in _TRAIN_STATS},
    }


def _select_chunk(
    config: PPOConfig, arch: ScorerArchitecture, params: dict[str, np.ndarray], selection_tasks: list[Any],
    model: MaskablePPO, record: dict[str, Any], run: Run,
) -> tuple[dict[str, Any], bool]:
    """Evaluate ``params`` on the fixed selection tasks; whether they beat the best so far.

    Adds the ``selection_*`` columns to ``record``; returns the selection summary.
    """
    metrics = evaluate_policy(
        arch, params, selection_tasks, window=config.window, n_candidates=config.n_candidates,
        n_jobs=config.n_jobs, dask=config.dask, schema=PPO_SCHEMAS[config.schema],
    )
    validation = {k: v for k, v in metrics.items() if k != "per_task"}
    validation.update(iteration=record["iteration"], timesteps=int(model.num_timesteps))
    record["selection_delta"] = metrics["delta_vs_margin"]
    record.update({f"selection_{k}": metrics[k] for k in _SELECTION_STATS})
    best = run.keep_if_best(validation["delta_vs_margin"], record["iteration"], validation)
    if best:
        record["best"] = True
    return validation, best


def _export_policy(
    path: Path, params: dict[str, np.ndarray], validation: dict[str, Any] | None, *,
    config: PPOConfig, settings: dict[str, Any], arch: ScorerArchitecture, model: MaskablePPO, state: RunState,
) -> Path:
    """Write one policy file, its model card holding the run's training curve so far."""
    curve_keys = ("iteration", "timesteps", "ep_return", "aulc", "selection_delta")
    history = state.extra["history"]
    training = {
        "num_timesteps": int(model.num_timesteps), "chunks": len(history), "episodes": state.extra["episodes"],
        "wall_seconds": state.wall_seconds, "init": state.extra["init"], "best_iteration": state.best_iteration,
        "curve": [{k: r.get(k) for k in curve_keys} for r in history],
    }
    return write_policy(
        path, arch, params, method=METHOD, settings=settings, suite=config.suite, seed=config.seed,
        window=config.window, n_candidates=config.n_candidates, training=training, validation=validation,
        schema=PPO_SCHEMAS[config.schema],
    )


def _save_run_checkpoint(run: Run, config: PPOConfig, model: MaskablePPO, best_params: dict[str, np.ndarray]) -> None:
    """Checkpoint the weights, optimiser, RNG states (taken after selection) and run state."""
    policy: DeepSetsMaskablePolicy = model.policy  # type: ignore[assignment]
    opt_tensors, opt_info = optimizer_to_checkpoint(policy.optimizer)
    rng_tensors, rng_info = _global_rng_state()
    tensors = {f"policy.{k}": v.detach().cpu().numpy().copy() for k, v in policy.state_dict().items()}
    tensors.update(opt_tensors)
    tensors.update(rng_tensors)
    tensors.update({f"best.{k}": v for k, v in best_params.items()})
    run.save(
        tensors,
        arch=policy.arch.to_dict(),
        next_env_seed=_chunk_seed(config.seed, run.state.iteration),
        num_timesteps=int(model.num_timesteps),
        n_updates=int(model._n_updates),
        optimizer=opt_info,
        rng=rng_info,
    )


def train_ppo(config: PPOConfig, resume: bool = False, progress: bool = True) -> TrainingResult:
    """Train a querying policy with MaskablePPO and export it (see the module docstring).

    One run, top to bottom: start the run (checkpoint or fresh), read the init policy, draw
    the selection tasks, build the agent, restore or initialise its state, then per chunk:
    rollout and update, select, export the policies, log, checkpoint.

    Parameters
    ----------
    config : PPOConfig
    resume : bool
        Continue from ``out_dir/checkpoint``; without one, start fresh (said in one line).
        Only the budget (``iterations``, ``time_budget``), the workers and ``out_dir`` may
        differ from the checkpoint's settings.
    progress : bool
        Print one line per chunk (``progress.csv`` is written either way).

    Returns
    -------
    TrainingResult
        ``iterations`` counts chunks; ``details["num_timesteps"]``: environment steps trained
        over all sessions; ``details["params"]``: the last policy's arrays.

    Raises
    ------
    InvalidInputError
        A bad setting, an init policy of another architecture or window, a checkpoint in
        ``out_dir`` without ``resume=True``, or one made with other settings.
    """
    config = replace(config).validated()
    run = start_run(config, METHOD, resume, PROGRESS_FIELDS)
    saved = run.saved
    init = _read_init_policy(config, saved)
    hidden, residual = _scorer_shape(config, saved, init)

    selection_tasks = []  # fixed selection tasks, drawn once
    if config.selection_tasks > 0:
        selection_suite = resolve_suite(config.selection_suite or config.suite)
        selection_tasks = validation_tasks(selection_suite, config.selection_tasks, config.selection_seed)

    venv = make_training_env(config)
    try:
        with deterministic_torch():
            model = _build_agent(config, venv, hidden, residual)
            policy: DeepSetsMaskablePolicy = model.policy  # type: ignore[assignment]
            arch = policy.arch
            state = run.state
            if saved is not None:
                best_params = _restore_state(model, run)
            else:
                best_params = {}
                _fresh_state(model, venv, config, init, state)
            export = partial(_export_policy, config=config, settings=run.settings, arch=arch, model=model, state=state)

            while not run.should_stop(config):
                started = time.perf_counter()
                record = _rollout_and_update(model, venv, config, state)

                # Selection on the fixed tasks, every selection_every chunks and after the last.
                params = policy.scorer.arrays()
                last = run.should_stop(config, extra_seconds=record["seconds"])
                validation = None
                if selection_tasks and (config.selection_due(state.iteration) or last):
                    validation, best = _select_chunk(config, arch, params, selection_tasks, model, record, run)
                    if best:
                        best_params = params
                # The time budget counts whole chunks: rollout, update and selection.
                record["seconds"] = time.perf_counter() - started
                state.extra["history"].append(record)
                state.wall_seconds += record["seconds"]  # the policy files record the time so far
                export(run.last_path, params, validation)
                export(run.policy_path, best_params if state.best_score is not None else params, state.best_validation)
                state.wall_seconds -= record["seconds"]
                run.end_iteration(record, record["seconds"])
                _save_run_checkpoint(run, config, model, best_params)
                if progress:
                    _print_progress(record, config.iterations)
            final_params = policy.scorer.arrays()
            num_timesteps = int(model.num_timesteps)
    finally:
        venv.close()
    return run.result(details={"num_timesteps": num_timesteps, "params": final_params})


def _print_progress(record: dict[str, Any], n_chunks: int | None) -> None:
    def fmt(value: Any, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    line = (
        f"[ppo] chunk {record['iteration'] + 1}{'' if n_chunks is None else f'/{n_chunks}'} "
        f"steps {record['timesteps']} ({fmt(record['steps_per_second'], '.1f')}/s) "
        f"return {fmt(record['ep_return'], '.4f')} aulc {fmt(record['aulc'], '.4f')} "
        f"value_loss {fmt(record['value_loss'], '.4f')} entropy {fmt(record['entropy_loss'], '.3f')}"
    )
    if record.get("selection_delta") is not None:
        line += f" | selection vs margin {record['selection_delta']:+.3f} points{' (best)' if record.get('best') else ''}"
    print(line, flush=True)
