"""Pieces every meta-training trainer shares: episodes, parallelism, validation, checkpoints.

A trainer file (:mod:`.imitation`, :mod:`.lal`, :mod:`.ppo`) reads top to bottom as one
training run; what they all need lives here, once:

- :func:`parallel_map`: an ordered map over joblib processes or a Dask cluster.
- :class:`EpisodeSpec`, :func:`collect_episode`, :class:`EpisodeSamples`: play one simulated
  active-learning episode with a behaviour policy (the look-ahead oracle with probability
  beta per loop, else the current scorer, else random) and record, at every loop, the
  candidates' features and the oracle's gains for them: the training samples of DAgger and
  LAL.
- :func:`validation_tasks`, :func:`evaluate_policy`: paired simulation of a policy against
  margin and random sampling on a fixed set of tasks (keep-the-best model selection).
- :func:`save_checkpoint`, :func:`load_checkpoint` and the state helpers: checkpoints
  without pickle (safetensors for arrays, JSON for everything else).
- :func:`write_policy`: the policy file with the standard metadata.
- :class:`ProgressLog`: one CSV row per iteration, consistent across resumes.
- :class:`TrainingResult`: what every ``train_*`` function returns.

Torch is imported lazily (only by the optimiser/RNG helpers and :func:`deterministic_torch`),
so worker processes that only collect episodes never import it.
"""

from __future__ import annotations

import atexit
import contextlib
import csv
import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from metalearn.common.candidates import mixed_candidates
from metalearn.common.threads import limited_threads
from metalearn.common.validation import check_positive_int
from metalearn.exceptions import InvalidInputError
from metalearn.features.schema import POOL_SCHEMA, FeatureSchema, get_schema
from metalearn.policies.architecture import ScorerArchitecture
from metalearn.tasks.task import Task

if TYPE_CHECKING:  # imported lazily at run time
    from metalearn.tasks.suite import TaskSuite

__all__ = [
    "EpisodeSpec",
    "EpisodeSamples",
    "SampleBuffer",
    "input_normalization",
    "TrainingResult",
    "ProgressLog",
    "parallel_map",
    "episode_seed",
    "collect_episode",
    "select_candidates",
    "resolve_suite",
    "suite_label",
    "validation_tasks",
    "evaluate_policy",
    "save_checkpoint",
    "load_checkpoint",
    "checkpoint_exists",
    "prepare_out_dir",
    "generator_to_state",
    "generator_from_state",
    "torch_rng_to_array",
    "torch_rng_from_array",
    "optimizer_to_checkpoint",
    "optimizer_from_checkpoint",
    "deterministic_torch",
    "write_policy",
    "config_settings",
    "check_resumable",
    "should_stop",
    "RESUMABLE_FIELDS",
    "VALIDATION_SEED",
    "CHECKPOINT_DIR",
    "TRAINABLE_SCHEMAS",
    "trainable_schema",
    "PROBA_HIDE_LABELED",
]

#: Default seed of the validation tasks: one fixed set, whatever the training seed, so runs
#: with different seeds are selected on the same tasks.
VALIDATION_SEED: int = 1_000_003
#: Sub-folder of a run's ``out_dir`` holding the checkpoint.
CHECKPOINT_DIR: str = "checkpoint"
#: Feature schemas the imitation and LAL trainers can train a policy for (by name, newest version).
TRAINABLE_SCHEMAS: tuple[str, ...] = ("pool", "proba")
#: Probability, per episode, that a ``proba`` episode hides the labeled count from the features
#: (``labeled_known`` = 0), as a baal heuristic given no dataset sees it.
PROBA_HIDE_LABELED: float = 0.5


def trainable_schema(name: Any) -> FeatureSchema:
    """The newest version of a schema the trainers support; raises :class:`InvalidInputError` otherwise."""
    if name not in TRAINABLE_SCHEMAS:
        raise InvalidInputError(f"unknown feature schema {name!r} to train for; valid values: {', '.join(TRAINABLE_SCHEMAS)}")
    # The episode collectors of these trainers compute pool@1; pool@2 (cluster and within-batch
    # features) is what the evolution-strategies trainer searches.
    return POOL_SCHEMA if name == "pool" else get_schema(str(name))


# =============================================================================================
# Parallel map: joblib processes or a Dask cluster, results in input order
# =============================================================================================
_DASK_CLIENTS: dict[str, Any] = {}


def _dask_client(address: str) -> Any:
    """A Dask client for ``address`` (created once per process and reused across calls).

    ``"local"`` / ``"local:N"`` starts a local cluster of N single-threaded worker processes;
    anything else is a scheduler address (``tcp://host:8786``).
    """
    if address in _DASK_CLIENTS:
        return _DASK_CLIENTS[address]
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise InvalidInputError("--dask needs the distributed package: pip install 'metalearn-al[dask]'") from None
    if address.startswith("local"):
        _, _, workers = address.partition(":")
        try:
            n_workers = int(workers) if workers else None
        except ValueError:
            raise InvalidInputError(f"dask address {address!r}: expected 'local' or 'local:N'") from None
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)

        def _close() -> None:  # pragma: no cover - interpreter shutdown
            with contextlib.suppress(Exception):
                client.close()
                cluster.close()

        atexit.register(_close)
    else:
        try:
            client = Client(address, timeout="20s")
        except OSError as exc:
            raise InvalidInputError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    _DASK_CLIENTS[address] = client
    return client


def parallel_map(
    fn: Callable[[Any], Any],
    items: Iterable[Any],
    *,
    n_jobs: int = 1,
    dask: str | None = None,
    desc: str | None = None,
) -> list[Any]:
    """``[fn(item) for item in items]``, possibly in parallel; results keep the input order.

    Parameters
    ----------
    fn : callable
        A top-level (picklable) function of one argument.
    items : iterable
    n_jobs : int
        joblib worker processes; 1 runs inline (no process, easiest to debug), -1 all cores.
        Ignored when ``dask`` is given.
    dask : str or None
        A Dask scheduler address, or ``"local"`` / ``"local:N"`` for a local cluster (started
        once per process and reused).
    desc : str or None
        Show a tqdm progress bar with this description.

    Returns
    -------
    list
        One result per item, in the order of ``items``. Seeds must come with the items (never
        from the worker), so the result does not depend on ``n_jobs`` or the cluster.
    """
    from tqdm.auto import tqdm

    items = list(items)
    bar = tqdm(total=len(items), desc=desc, leave=False, disable=desc is None)
    try:
        if dask:
            from dask.distributed import as_completed

            client = _dask_client(dask)
            futures = client.map(fn, items, pure=False)
            for _ in as_completed(futures):
                bar.update()
            return list(client.gather(futures))
        if n_jobs == 1 or len(items) <= 1:
            results = []
            for item in items:
                results.append(fn(item))
                bar.update()
            return results
        from joblib import Parallel, delayed

        parallel = Parallel(n_jobs=n_jobs, return_as="generator", batch_size=1, pre_dispatch="2*n_jobs")
        results = []
        for result in parallel(delayed(fn)(item) for item in items):
            results.append(result)
            bar.update()
        return results
    finally:
        bar.close()


# =============================================================================================
# Task suites
# =============================================================================================
_SUITES: dict[str, "TaskSuite"] = {}


def resolve_suite(suite: "str | os.PathLike[str] | TaskSuite") -> "TaskSuite":
    """A suite object from a name, a TOML path or a suite (loaded once per process and cached,
    so real datasets are read once per worker)."""
    from metalearn.tasks.suite import TaskSuite, load_task_suite

    if isinstance(suite, TaskSuite):
        return suite
    key = os.fspath(suite)
    if key not in _SUITES:
        _SUITES[key] = load_task_suite(key)
    return _SUITES[key]


def suite_label(suite: "str | os.PathLike[str] | TaskSuite") -> str:
    """How a suite is named in policy metadata: the name or path given, or the suite's name."""
    if isinstance(suite, (str, os.PathLike)):
        return os.fspath(suite)
    return str(getattr(suite, "name", "suite"))


# =============================================================================================
# One episode: the training samples of DAgger and LAL
# =============================================================================================
def episode_seed(seed: int, *key: int) -> np.random.SeedSequence:
    """The seed sequence of the episode (or other unit) ``key`` of a run with master ``seed``.

    ``SeedSequence(seed, spawn_key=key)``: for a one-element key it equals
    ``SeedSequence(seed).spawn(n)[key[0]]``, and ``(iteration, episode)`` keys give every
    episode its own stream, whatever the number of workers.
    """
    return np.random.SeedSequence(check_positive_int(seed, "seed", minimum=0), spawn_key=tuple(int(k) for k in key))


@dataclass(frozen=True)
class EpisodeSpec:
    """Everything :func:`collect_episode` needs (plain, picklable data; no open resources).

    Attributes
    ----------
    suite : str, path or TaskSuite
        Where the episode's task is drawn from (a name or path is loaded in the worker).
    seed : int
        The run's master seed.
    key : tuple of int
        The episode's identity, e.g. ``(iteration, episode)``; with ``seed`` it fixes every
        random choice of the episode (:func:`episode_seed`).
    n_candidates : int
        K, candidates pre-selected per loop ("mixed": half smallest margin, half random).
    window : int
        H, loops kept by the metadata history.
    beta : float
        Probability, drawn per loop, that the oracle's top-b is labeled instead of the
        current policy's.
    arch : dict or None
        The scorer architecture (:meth:`ScorerArchitecture.to_dict`) of the current policy.
    params : dict of str to ndarray, or None
        The current policy's arrays; None (with ``beta < 1``) means uniform random picks.
    metric : str
        ``"accuracy"`` or ``"macro_f1"``: the oracle's gain and the episode's AULC.
    oracle_warm_start : bool
        Warm-start the oracle's look-ahead fits from the current model (logreg, MLP).
    task : Task or None
        Play this task instead of drawing one from the suite.
    schema : str
        Feature schema of the states: ``"pool"`` or ``"proba"`` (:data:`TRAINABLE_SCHEMAS`).
    oracle_horizon : int
        The oracle's look-ahead depth (``LookaheadOracle(horizon=...)``): 1 records one-step
        gains; h > 1 the mean test score over h models along a margin-sampling continuation
        (K*h fits per loop). Its tie-breaks come from a stream of their own, so the
        episode's other random choices do not depend on it.
    """

    suite: Any
    seed: int
    key: tuple[int, ...]
    n_candidates: int = 32
    window: int = 5
    beta: float = 1.0
    arch: dict[str, Any] | None = None
    params: dict[str, np.ndarray] | None = field(default=None, compare=False)
    metric: str = "accuracy"
    oracle_warm_start: bool = True
    task: Task | None = field(default=None, compare=False)
    schema: str = "pool"
    oracle_horizon: int = 1


@dataclass
class EpisodeSamples:
    """The states of one episode with the oracle's gains: L loops, K candidate slots.

    Attributes
    ----------
    candidates : ndarray of float32, shape (L, K, F)
        Candidate features clipped to [-1, 1]; padding slots are zeros.
    context : ndarray of float32, shape (L, G)
        Per-loop context features clipped to [-1, 1].
    mask : ndarray of bool, shape (L, K)
        Slots holding an unlabeled record.
    gains : ndarray of float32, shape (L, K)
        The oracle's test-score gain (fraction, not points) of labeling each candidate;
        NaN where masked.
    log_loss_gains : ndarray of float32, shape (L, K)
        The oracle's test log-loss decrease; NaN where masked.
    chosen : ndarray of bool, shape (L, K)
        Slots labeled at each loop.
    from_oracle : ndarray of bool, shape (L,)
        Loops whose batch the oracle chose (probability beta).
    aulc : float
        Area under the episode's learning curve (``metric``), in [0, 1].
    task : dict
        Task descriptors: name, model, regime, batch size, budget, pool size, classes, seed.
    seconds, oracle_seconds : float
        Wall time of the whole episode and of the oracle's look-ahead fits.
    key : tuple of int
        The spec's key.
    """

    candidates: np.ndarray
    context: np.ndarray
    mask: np.ndarray
    gains: np.ndarray
    log_loss_gains: np.ndarray
    chosen: np.ndarray
    from_oracle: np.ndarray
    aulc: float
    task: dict[str, Any]
    seconds: float = 0.0
    oracle_seconds: float = 0.0
    key: tuple[int, ...] = ()

    def __len__(self) -> int:
        return int(self.candidates.shape[0])


def _clip(values: np.ndarray) -> np.ndarray:
    return np.clip(values, -1.0, 1.0).astype(np.float32)


def select_candidates(extractor: Any, labeled: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Pre-select up to ``k`` unlabeled records as the PoolAL environment's ``"mixed"`` rule does.

    ceil(k/2) records with the smallest current margin (ties broken at random) plus records
    drawn uniformly from the other unlabeled ones; all of them when at most ``k`` remain.
    """
    available = np.flatnonzero(~labeled)
    if available.size <= k:
        return available.astype(np.int64)
    margin_of = getattr(extractor, "margin_of", None)  # ProbaPoolFeatures
    if margin_of is not None:
        return mixed_candidates(available, margin_of(available), k, rng)
    history = extractor.history
    return mixed_candidates(available, history.latest(history.margin)[available], k, rng)


def _task_descriptors(task: Task) -> dict[str, Any]:
    dataset = task.info.get("dataset", {}) if isinstance(task.info, dict) else {}
    return {
        "name": task.name,
        "model": task.model.name,
        "regime": task.regime,
        "batch_size": int(task.batch_size),
        "label_budget": int(task.label_budget),
        "n_pool": int(task.n_pool),
        "n_classes": int(task.n_classes),
        "n_features": int(task.n_features),
        "seed": int(task.seed),
        "generator": dataset.get("generator") if isinstance(dataset, dict) else None,
    }


def collect_episode(spec: EpisodeSpec) -> EpisodeSamples:
    """Play one active-learning episode with the spec's behaviour policy and record its states.

    At every loop:

    1. pre-select K candidates ("mixed", as :class:`~metalearn.envs.pool_al.PoolALEnv`;
       slots shuffled, padding at the end of the shuffle with zeros and mask 0);
    2. compute their features (K, F) and the context (G,), clipped to [-1, 1];
    3. ask the :class:`~metalearn.simulation.oracle.LookaheadOracle` for the gain of each
       candidate (the process's current model is the base and the warm start; look-ahead
       depth ``spec.oracle_horizon``);
    4. choose b = min(batch size, budget left, valid candidates) records: with probability
       beta the oracle's top-b by ranking score, else the current scorer's top-b, else (no
       scorer) b uniform candidates; ties at random;
    5. label them, retrain the task model, score it, and update the metadata history.

    With ``spec.schema == "proba"`` the features are those of the ``proba`` schema, from the
    current model's predictions on the unlabeled records: per tree for a random forest (the
    disagreement features), one pass otherwise; the labeled count is hidden from them in a
    fraction :data:`PROBA_HIDE_LABELED` of the episodes (drawn once per episode).

    Everything random derives from ``episode_seed(spec.seed, *spec.key)``: a task stream
    and an episode stream, so the same spec gives identical arrays in any process.
    """
    from metalearn.envs.common import fitted_process, process_aulc, start_process, update_extractor
    from metalearn.features.proba_features import ProbaPoolFeatures
    from metalearn.policies.numpy_scorer import NumpyScorer
    from metalearn.simulation.oracle import LookaheadOracle
    from metalearn.strategies.base import select_top

    start = time.perf_counter()
    k = check_positive_int(spec.n_candidates, "n_candidates")
    if not 0.0 <= float(spec.beta) <= 1.0:
        raise InvalidInputError(f"beta must lie in [0, 1], got {spec.beta}")
    # The third stream (the oracle's continuation tie-breaks, horizon > 1) leaves the first two
    # as they were before it existed: spawn(3)[:2] == spawn(2).
    task_seq, episode_seq, oracle_seq = episode_seed(spec.seed, *spec.key).spawn(3)
    task = spec.task if spec.task is not None else resolve_suite(spec.suite).sample_task(np.random.default_rng(task_seq))
    rng = np.random.default_rng(episode_seq)
    scorer = None
    if spec.params is not None:
        if spec.arch is None:
            raise InvalidInputError("an EpisodeSpec with params needs arch")
        scorer = NumpyScorer(ScorerArchitecture.from_dict(spec.arch), spec.params)

    schema = trainable_schema(spec.schema)
    n_f, n_g = schema.n_candidate_features, schema.n_context_features
    cand_rows: list[np.ndarray] = []
    ctx_rows: list[np.ndarray] = []
    mask_rows: list[np.ndarray] = []
    gain_rows: list[np.ndarray] = []
    loss_rows: list[np.ndarray] = []
    chosen_rows: list[np.ndarray] = []
    from_oracle: list[bool] = []
    oracle_seconds = 0.0
    with limited_threads():
        if schema.name == "proba":
            process = fitted_process(task)
            extractor: Any = ProbaPoolFeatures(reveal_labeled=bool(rng.random() >= PROBA_HIDE_LABELED))

            def update() -> None:
                if not process.done:  # after the last loop the pool may hold no unlabeled record
                    extractor.update_from_model(process.model, task.X_pool, process.labeled)

            update()
        else:
            process, extractor = start_process(task, spec.window, rng)

            def update() -> None:
                update_extractor(extractor, process)

        oracle = LookaheadOracle(
            task, n_candidates=k, metric=spec.metric, candidate_selection="mixed", warm_start=spec.oracle_warm_start,
            random_state=np.random.default_rng(oracle_seq), horizon=spec.oracle_horizon,
        )
        while not process.done:
            chosen_pool = select_candidates(extractor, process.labeled, k, rng)
            n_valid = chosen_pool.size
            slots = np.full(k, -1, dtype=np.int64)
            slots[:n_valid] = chosen_pool
            slots = slots[rng.permutation(k)]
            mask = slots >= 0
            features = np.zeros((k, n_f), dtype=np.float32)
            features[mask] = _clip(extractor.candidate_features(slots[mask]))
            context = _clip(extractor.context_features())

            t0 = time.perf_counter()
            result = oracle.gains(process.labeled, slots[mask], current_model=process.model)
            oracle_seconds += time.perf_counter() - t0
            gains = np.full(k, np.nan, dtype=np.float32)
            loss_gains = np.full(k, np.nan, dtype=np.float32)
            gains[mask] = result.gain
            loss_gains[mask] = result.log_loss_gain

            b = min(task.batch_size, process.budget_left, n_valid)
            valid = np.flatnonzero(mask)
            use_oracle = bool(rng.random() < spec.beta)  # always drawn: one stream whatever beta
            if use_oracle:
                picks = valid[select_top(result.ranking_score(), b, rng)]
            elif scorer is not None:
                picks = valid[select_top(scorer.scores(features, context, mask)[valid].astype(np.float64), b, rng)]
            else:
                picks = rng.choice(valid, size=b, replace=False)
            chosen = np.zeros(k, dtype=bool)
            chosen[picks] = True

            cand_rows.append(features)
            ctx_rows.append(context)
            mask_rows.append(mask)
            gain_rows.append(gains)
            loss_rows.append(loss_gains)
            chosen_rows.append(chosen)
            from_oracle.append(use_oracle)

            process.label(slots[picks])
            process.fit()
            process.evaluate()
            update()

    def _stack(rows: list[np.ndarray], shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        return np.stack(rows).astype(dtype) if rows else np.zeros((0, *shape), dtype=dtype)

    return EpisodeSamples(
        candidates=_stack(cand_rows, (k, n_f), np.float32),
        context=_stack(ctx_rows, (n_g,), np.float32),
        mask=_stack(mask_rows, (k,), bool),
        gains=_stack(gain_rows, (k,), np.float32),
        log_loss_gains=_stack(loss_rows, (k,), np.float32),
        chosen=_stack(chosen_rows, (k,), bool),
        from_oracle=np.asarray(from_oracle, dtype=bool),
        aulc=float(process_aulc(process, spec.metric)),
        task=_task_descriptors(task),
        seconds=time.perf_counter() - start,
        oracle_seconds=oracle_seconds,
        key=tuple(spec.key),
    )


# =============================================================================================
# The aggregated dataset (DAgger / LAL): arrays that grow by episodes, capped to the newest
# =============================================================================================
class SampleBuffer:
    """The aggregated states of every iteration so far, newest last, capped at ``max_size``.

    Arrays: ``candidates`` (N, K, F) float32, ``context`` (N, G), ``mask`` (N, K) bool,
    ``gains`` and ``log_loss_gains`` (N, K) float32 (NaN where masked), ``iteration`` (N,)
    int64 (the iteration that collected each state).
    """

    FIELDS: tuple[str, ...] = ("candidates", "context", "mask", "gains", "log_loss_gains", "iteration")

    def __init__(self, n_candidates: int, max_size: int | None = None, schema: FeatureSchema = POOL_SCHEMA) -> None:
        k, f, g = n_candidates, schema.n_candidate_features, schema.n_context_features
        self.max_size = max_size
        self.arrays: dict[str, np.ndarray] = {
            "candidates": np.zeros((0, k, f), np.float32),
            "context": np.zeros((0, g), np.float32),
            "mask": np.zeros((0, k), bool),
            "gains": np.zeros((0, k), np.float32),
            "log_loss_gains": np.zeros((0, k), np.float32),
            "iteration": np.zeros(0, np.int64),
        }

    def __len__(self) -> int:
        return int(self.arrays["iteration"].shape[0])

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def add(self, episodes: Sequence[EpisodeSamples], iteration: int) -> None:
        """Append the episodes' states (in the order given) and drop the oldest beyond max_size."""
        parts: dict[str, list[np.ndarray]] = {name: [self.arrays[name]] for name in self.FIELDS}
        for ep in episodes:
            for name in self.FIELDS[:-1]:
                parts[name].append(getattr(ep, name))
            parts["iteration"].append(np.full(len(ep), iteration, dtype=np.int64))
        self.arrays = {name: np.concatenate(parts[name], axis=0) for name in self.FIELDS}
        if self.max_size is not None and len(self) > self.max_size:
            self.arrays = {name: value[-self.max_size :] for name, value in self.arrays.items()}

    def to_tensors(self, prefix: str = "data.") -> dict[str, np.ndarray]:
        return {prefix + name: np.ascontiguousarray(value) for name, value in self.arrays.items()}

    def load_tensors(self, tensors: Mapping[str, np.ndarray], prefix: str = "data.") -> "SampleBuffer":
        self.arrays = {name: np.asarray(tensors[prefix + name]) for name in self.FIELDS}
        return self


def input_normalization(candidates: np.ndarray, context: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """Standardisation of the scorer's inputs from a set of states (valid candidates only).

    Returns ``cand_mean``, ``cand_std`` (F,), ``ctx_mean``, ``ctx_std`` (G,), float32, for
    :meth:`TorchScorer.set_normalization` (which floors the standard deviations at 1e-3).
    Trainers compute it once, from the first iteration's samples, and then freeze it: it is
    part of the policy file.
    """
    valid = candidates[mask.astype(bool)]
    if valid.shape[0] == 0 or context.shape[0] == 0:
        raise InvalidInputError("no state to compute the input normalisation from")
    return {
        "cand_mean": valid.mean(axis=0, dtype=np.float64).astype(np.float32),
        "cand_std": valid.std(axis=0, dtype=np.float64).astype(np.float32),
        "ctx_mean": context.mean(axis=0, dtype=np.float64).astype(np.float32),
        "ctx_std": context.std(axis=0, dtype=np.float64).astype(np.float32),
    }


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

    ``job``: ``(arch_dict, params, task, window, n_candidates, seed[, schema_name])``; without
    the schema name, the pool schema.
    """
    from metalearn.policies.strategy import PolicyStrategy
    from metalearn.simulation.loop import simulate
    from metalearn.strategies.registry import make_strategy

    arch_dict, params, task, window, n_candidates, seed = job[:6]
    schema = get_schema(str(job[6])) if len(job) > 6 else POOL_SCHEMA
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
    extra = () if schema == POOL_SCHEMA else (schema.name,)  # pool jobs keep their original form
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


# =============================================================================================
# Checkpoints without pickle: safetensors + JSON, written atomically
# =============================================================================================
_CHECKPOINT_JSON = "checkpoint.json"
_CHECKPOINT_FORMAT = "metalearn-checkpoint"
_CHECKPOINT_VERSION = 1


def _fsync_replace(tmp: Path, final: Path) -> None:
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, final)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def prepare_out_dir(out: str | os.PathLike[str]) -> Path:
    """Create a run's folder and check that files can be written there, before any training.

    Raises :class:`InvalidInputError` naming the folder when it is a file, read-only, or on a
    full disk, rather than failing after the first iteration's work.
    """
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-probe"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise InvalidInputError(
            f"cannot write the training run to {out}: {exc.strerror or exc}; choose a writable --out folder"
        ) from None
    return out


def checkpoint_exists(directory: str | os.PathLike[str]) -> bool:
    """Whether ``directory`` holds a checkpoint written by :func:`save_checkpoint`."""
    return (Path(directory) / _CHECKPOINT_JSON).is_file()


def save_checkpoint(directory: str | os.PathLike[str], tensors: Mapping[str, np.ndarray], state: Mapping[str, Any]) -> None:
    """Write a checkpoint: arrays to safetensors, everything else to JSON, both atomically.

    Files: ``checkpoint-NNNNNN.safetensors`` (a new number at every save) and
    ``checkpoint.json``, which names that tensor file and its SHA-256. The tensor file is
    written first (temp file, fsync, ``os.replace``), the JSON last, and only then are older
    tensor files removed: a crash at any point leaves a JSON that points at a complete tensor
    file of the same save, never a mismatched pair.

    Parameters
    ----------
    directory : path
        Created if missing.
    tensors : dict of str to ndarray
        Any numeric or bool arrays (made contiguous).
    state : dict
        JSON-serialisable values (numpy scalars are converted).
    """
    from safetensors import SafetensorError
    from safetensors.numpy import save_file

    directory = Path(directory)
    previous = _read_checkpoint_json(directory)
    step = int(previous["step"]) + 1 if previous else 0
    name = f"checkpoint-{step:06d}.safetensors"
    tmp = directory / f".{name}.tmp"
    tmp_json = directory / f".{_CHECKPOINT_JSON}.tmp"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # np.ascontiguousarray would turn 0-d arrays (Adam's step) into 1-d ones.
        save_file({k: np.asarray(v, order="C") for k, v in tensors.items()}, str(tmp))
        _fsync_replace(tmp, directory / name)
        payload = {
            "format": _CHECKPOINT_FORMAT,
            "version": _CHECKPOINT_VERSION,
            "step": step,
            "tensor_file": name,
            "tensor_sha256": _sha256(directory / name),
            "state": _jsonable(state),
        }
        tmp_json.write_text(json.dumps(payload, indent=1, sort_keys=True))
        _fsync_replace(tmp_json, directory / _CHECKPOINT_JSON)
    except (OSError, SafetensorError) as exc:
        # Disk full or folder gone read-only: drop this save's files. checkpoint.json still
        # names the previous, complete tensor file, so the previous checkpoint stays usable.
        for path in (tmp, tmp_json, directory / name):
            if path.name != (previous or {}).get("tensor_file"):
                with contextlib.suppress(OSError):
                    path.unlink()
        reason = getattr(exc, "strerror", None) or str(exc)
        kept = f"the checkpoint of step {previous['step']} is kept" if previous else "no checkpoint was written"
        raise InvalidInputError(
            f"cannot write the training checkpoint to {directory}: {reason}; {kept}. Free space (or fix the "
            "folder's permissions) and rerun with --resume"
        ) from None
    for old in directory.glob("checkpoint-*.safetensors"):
        if old.name != name:
            with contextlib.suppress(OSError):
                old.unlink()


def _read_checkpoint_json(directory: Path) -> dict[str, Any] | None:
    path = directory / _CHECKPOINT_JSON
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"checkpoint {path} is unreadable: {exc}") from None
    if not isinstance(payload, dict) or payload.get("format") != _CHECKPOINT_FORMAT:
        raise InvalidInputError(f"{path} is not a metalearn checkpoint")
    if payload.get("version") != _CHECKPOINT_VERSION:
        raise InvalidInputError(f"checkpoint {path} has version {payload.get('version')}; this release reads {_CHECKPOINT_VERSION}")
    return payload


def load_checkpoint(directory: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """Read the checkpoint of ``directory``: ``(tensors, state)``, or None when there is none.

    Raises :class:`InvalidInputError` when the JSON names a tensor file that is missing or
    whose checksum differs (the checkpoint is corrupt; nothing is guessed).
    """
    from safetensors.numpy import load_file

    directory = Path(directory)
    payload = _read_checkpoint_json(directory)
    if payload is None:
        return None
    tensor_path = directory / str(payload["tensor_file"])
    if not tensor_path.is_file():
        raise InvalidInputError(f"checkpoint {directory} names {tensor_path.name}, which is missing")
    if _sha256(tensor_path) != payload.get("tensor_sha256"):
        raise InvalidInputError(f"checkpoint tensor file {tensor_path} does not match its checksum: corrupt")
    return dict(load_file(str(tensor_path))), dict(payload["state"])


def _jsonable(value: Any) -> Any:
    """Plain JSON types from numpy scalars/arrays, tuples, paths and dataclasses."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# -- numpy generators ------------------------------------------------------------------------
def generator_to_state(rng: np.random.Generator) -> dict[str, Any]:
    """The JSON-able state of a numpy Generator (``bit_generator.state``; ints stay exact)."""
    return _jsonable(rng.bit_generator.state)


def generator_from_state(state: Mapping[str, Any]) -> np.random.Generator:
    """A Generator continuing exactly where the one saved by :func:`generator_to_state` was."""
    name = str(state["bit_generator"])
    try:
        bit_generator = getattr(np.random, name)()
    except AttributeError:
        raise InvalidInputError(f"unknown numpy bit generator {name!r} in checkpoint") from None
    bit_generator.state = dict(state)
    return np.random.Generator(bit_generator)


# -- torch RNG and optimiser -----------------------------------------------------------------
def torch_rng_to_array() -> np.ndarray:
    """torch's CPU RNG state as a uint8 array (for the checkpoint's tensors)."""
    import torch

    return torch.get_rng_state().numpy().copy()


def torch_rng_from_array(state: np.ndarray) -> None:
    """Restore torch's CPU RNG state saved by :func:`torch_rng_to_array`."""
    import torch

    torch.set_rng_state(torch.from_numpy(np.ascontiguousarray(state, dtype=np.uint8)))


def optimizer_to_checkpoint(optimizer: Any, prefix: str = "optimizer.") -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Split a torch optimiser's state into arrays and JSON.

    Returns ``(tensors, info)``: every tensor of ``optimizer.state_dict()["state"]`` (Adam's
    ``exp_avg``, ``exp_avg_sq`` and ``step``) as ``{prefix}{param_id}.{name}``, and ``info``
    with the param groups (learning rate, betas, ...) and the non-tensor state entries.
    """
    import torch

    sd = optimizer.state_dict()
    tensors: dict[str, np.ndarray] = {}
    entries: dict[str, dict[str, Any]] = {}
    for pid, per_param in sd["state"].items():
        entries[str(pid)] = {}
        for name, value in per_param.items():
            if torch.is_tensor(value):
                key = f"{prefix}{pid}.{name}"
                tensors[key] = value.detach().cpu().numpy().copy()
                entries[str(pid)][name] = {"tensor": key}
            else:
                entries[str(pid)][name] = {"value": _jsonable(value)}
    return tensors, {"param_groups": _jsonable(sd["param_groups"]), "state": entries}


def optimizer_from_checkpoint(optimizer: Any, tensors: Mapping[str, np.ndarray], info: Mapping[str, Any]) -> None:
    """Load into ``optimizer`` the state saved by :func:`optimizer_to_checkpoint`."""
    import torch

    state: dict[int, dict[str, Any]] = {}
    for pid, per_param in info["state"].items():
        state[int(pid)] = {
            name: torch.from_numpy(np.array(tensors[entry["tensor"]])) if "tensor" in entry else entry["value"]
            for name, entry in per_param.items()
        }
    groups = []
    for group in info["param_groups"]:
        # JSON turned tuples (Adam's betas) into lists; give them back their type.
        groups.append({k: (tuple(v) if isinstance(v, list) and k != "params" else v) for k, v in group.items()})
    optimizer.load_state_dict({"state": state, "param_groups": groups})


@contextlib.contextmanager
def deterministic_torch(n_threads: int = 1) -> Iterator[None]:
    """Single-threaded, deterministic torch inside the block (previous settings restored).

    ``torch.use_deterministic_algorithms(True, warn_only=True)``: operations without a
    deterministic implementation warn instead of failing (none is used by the scorer on CPU).
    """
    import torch

    threads = torch.get_num_threads()
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(n_threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


# =============================================================================================
# Policy files, configuration records, resume checks
# =============================================================================================
def config_settings(config: Any) -> dict[str, Any]:
    """A trainer configuration dataclass as a JSON-able dict (suite objects by name)."""
    settings = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name in ("suite", "validation_suite") and value is not None:
            value = suite_label(value)
        settings[f.name] = _jsonable(value)
    return settings


#: Configuration fields that may change between a run and its resume (budget, resources).
RESUMABLE_FIELDS: tuple[str, ...] = ("iterations", "generations", "total_timesteps", "time_budget_seconds", "n_jobs", "dask", "out_dir")


def check_resumable(saved: Mapping[str, Any], config: Any) -> None:
    """Refuse to resume a checkpoint made with different settings (budget and resources may change).

    A setting the checkpoint does not record (one added to the configuration after it was
    written, such as ``schema``) counts as its default value.
    """
    now = config_settings(config)
    defaults = {
        f.name: _jsonable(f.default) for f in dataclasses.fields(config) if f.default is not dataclasses.MISSING
    }
    saved = {**{k: v for k, v in defaults.items() if k not in saved}, **saved}
    changed = sorted(k for k in set(saved) | set(now) if k not in RESUMABLE_FIELDS and saved.get(k) != now.get(k))
    if changed:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in changed[:5])
        raise InvalidInputError(
            f"cannot resume: the checkpoint was made with other settings ({details}); "
            "only the budget (iterations, time budget) and resources (jobs, dask) may change"
        )


def should_stop(iteration: int, elapsed: float, durations: Sequence[float], iterations: int | None, time_budget: float | None) -> bool:
    """Whether a trainer stops before starting ``iteration`` (0-based; checked at boundaries).

    Stops when ``iterations`` are done, or when the time budget is spent or the next iteration
    (estimated as the mean of the earlier ones) would not finish within it. At least one
    iteration always runs.
    """
    if iterations is not None and iteration >= iterations:
        return True
    if time_budget is not None and iteration > 0:
        estimate = float(np.mean(durations)) if durations else 0.0
        return elapsed + estimate > time_budget
    return False


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
        "trainer": {"method": str(method), "settings": _jsonable(dict(settings))},
        "task_suite": suite_label(suite),
        "seed": int(seed),
        "training": _jsonable(dict(training)),
        "validation": _jsonable(validation_summary),
    }
    params32 = {name: np.asarray(value, dtype=np.float32) for name, value in params.items()}
    return Path(save_policy(path, arch, params32, metadata))


# =============================================================================================
# Progress log and result
# =============================================================================================
class ProgressLog:
    """A CSV file with one row per iteration, appended as training goes.

    On resume, :meth:`truncate` drops rows of iterations the checkpoint does not hold (written
    after the last checkpoint, before a crash), so rerunning them adds no duplicate.

    Parameters
    ----------
    path : path
    fields : sequence of str
        Column names; must include ``iteration``.
    """

    def __init__(self, path: str | os.PathLike[str], fields: Sequence[str]) -> None:
        self.path = Path(path)
        self.fields = list(fields)
        if "iteration" not in self.fields:
            raise InvalidInputError("a progress log needs an 'iteration' column")

    def rows(self) -> list[dict[str, str]]:
        if not self.path.is_file():
            return []
        with open(self.path, newline="") as handle:
            return list(csv.DictReader(handle))

    def records(self) -> list[dict[str, Any]]:
        """The rows with numbers parsed (integers where integral, empty cells as None)."""
        out = []
        for row in self.rows():
            parsed: dict[str, Any] = {}
            for key, value in row.items():
                if value in ("", None):
                    parsed[key] = None
                    continue
                try:
                    number = float(value)
                except ValueError:
                    parsed[key] = value
                else:
                    parsed[key] = int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number
            out.append(parsed)
        return out

    def truncate(self, next_iteration: int) -> None:
        """Keep only rows with ``iteration < next_iteration`` (rewritten atomically)."""
        kept = [r for r in self.rows() if int(r["iteration"]) < next_iteration]
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(kept)
        os.replace(tmp, self.path)

    def append(self, row: Mapping[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.is_file()
        with open(self.path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({k: ("" if v is None else v) for k, v in _jsonable(dict(row)).items()})


@dataclass
class TrainingResult:
    """What a ``train_*`` function returns.

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
