"""Episode collection: play one simulated active-learning episode and record training samples.

:class:`EpisodeSpec` says what to play; :func:`collect_episode` plays it with a behaviour
policy (the look-ahead oracle with probability beta per loop, else the current scorer, else
random) and returns, as :class:`EpisodeSamples`, the candidates' features and the oracle's
gains at every loop: the training samples of DAgger and LAL. Also the feature schemas the
trainers can train for (:func:`trainable_schema`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from metalearn.common.threads import limited_threads
from metalearn.common.validation import check_positive_int
from metalearn.exceptions import InvalidInputError
from metalearn.features import registry
from metalearn.features.schema import FeatureSchema
from metalearn.features.schema_spec import RegisteredSchema
from metalearn.policies.architecture import ScorerArchitecture
from metalearn.policies.trainers.suites import resolve_suite
from metalearn.tasks.task import Task


__all__ = ["TRAINABLE_SCHEMAS", "PROBA_HIDE_LABELED", "trainable_schema", "episode_seed", "EpisodeSpec", "EpisodeSamples", "select_candidates", "collect_episode"]

#: Feature schemas the imitation and LAL trainers can train a policy for, by their trainer
#: configuration names (from the schema registry): ``"pool"`` is pool@1 (kept as the default so
#: earlier runs resume unchanged), ``"pool@2"`` adds the cluster and within-batch features,
#: ``"proba"`` the class probabilities only.
TRAINABLE_SCHEMAS: tuple[str, ...] = registry.trainable_names("imitation")
#: Probability, per episode, that a ``proba`` episode hides the labeled count from the features
#: (``labeled_known`` = 0), as a baal heuristic given no dataset sees it.
PROBA_HIDE_LABELED: float = 0.5


def trainable_schema(name: Any) -> FeatureSchema:
    """The schema a trainer configuration names (:data:`TRAINABLE_SCHEMAS`).

    Raises :class:`~metalearn.exceptions.FeatureSchemaError` (an ``InvalidInputError``) otherwise.
    """
    return registry.trainable_schema(name, "imitation").schema


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
        Feature schema of the states, by its trainer configuration name: ``"pool"``, ``"pool@2"``
        or ``"proba"`` (:data:`TRAINABLE_SCHEMAS`).
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


def select_candidates(
    extractor: Any, labeled: np.ndarray, k: int, rng: np.random.Generator, schema: RegisteredSchema | str | None = None
) -> np.ndarray:
    """Pre-select up to ``k`` unlabeled records by the rule the policy is queried with.

    The schema's :meth:`~metalearn.features.schema_spec.RegisteredSchema.preselect` (pool@1 and
    proba: ceil(k/2) records with the smallest current margin, ties broken at random, plus
    records drawn uniformly from the other unlabeled ones; pool@2: a third smallest-margin, a
    third representative, the rest random), as
    :class:`~metalearn.policies.strategy.PolicyStrategy` does. All of them when at most ``k``
    remain. ``schema``: the registered schema or its id; None: the extractor's schema.
    """
    available = np.flatnonzero(~labeled)
    if available.size <= k:
        return available.astype(np.int64)
    entry = registry.schema_entry(extractor.schema if schema is None else schema)
    if entry.probabilities_only:
        margin = extractor.margin_of(available)
    else:
        history = extractor.history
        margin = history.latest(history.margin)[available]
    return entry.preselect(extractor, available, margin, k, rng)


def _batch_aware_picks(
    scorer: Any,
    extractor: Any,
    features: np.ndarray,
    context: np.ndarray,
    mask: np.ndarray,
    b: int,
    rng: np.random.Generator,
    schema: RegisteredSchema | str | None = None,
) -> np.ndarray:
    """Slots of a batch-aware (pool@2) scorer's ``b`` picks, one at a time, re-scored after each pick.

    As :class:`~metalearn.policies.strategy.PolicyStrategy` fills a batch: the within-batch
    features (cluster coverage, distance to the batch's earlier picks) change with every pick
    (the schema's :meth:`~metalearn.features.schema_spec.RegisteredSchema.pick_batch`). The
    recorded state keeps the features before the first pick. ``schema``: the registered schema
    or its id; None: the extractor's schema.
    """
    from metalearn.strategies.base import select_top

    entry = registry.schema_entry(extractor.schema if schema is None else schema)
    valid = np.flatnonzero(mask)  # features[valid]: the rows given to candidate_features, in order
    positions, _, _ = entry.pick_batch(
        scorer, extractor, features[valid], context, b, lambda s: int(select_top(s, 1, rng)[0])
    )
    return valid[positions]


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

    With a probabilities-only schema (``"proba"``) the features are those of the ``proba`` schema, from the
    current model's predictions on the unlabeled records: per tree for a random forest (the
    disagreement features), one pass otherwise; the labeled count is hidden from them in a
    fraction :data:`PROBA_HIDE_LABELED` of the episodes (drawn once per episode).

    Everything random derives from ``episode_seed(spec.seed, *spec.key)``: a task stream
    and an episode stream, so the same spec gives identical arrays in any process.
    """
    from metalearn.envs.common import fitted_process, process_aulc, start_process, update_extractor
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

    entry = registry.trainable_schema(spec.schema, "imitation")
    schema = entry.schema
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
        if entry.probabilities_only:
            process = fitted_process(task)
            extractor: Any = entry.build_extractor(reveal_labeled=bool(rng.random() >= PROBA_HIDE_LABELED))

            def update() -> None:
                if not process.done:  # after the last loop the pool may hold no unlabeled record
                    extractor.update_from_model(process.model, task.X_pool, process.labeled)

            update()
        else:
            process, extractor = start_process(task, spec.window, rng, entry)

            def update() -> None:
                update_extractor(extractor, process)

        oracle = LookaheadOracle(
            task, n_candidates=k, metric=spec.metric, candidate_selection="mixed", warm_start=spec.oracle_warm_start,
            random_state=np.random.default_rng(oracle_seq), horizon=spec.oracle_horizon,
        )
        while not process.done:
            chosen_pool = select_candidates(extractor, process.labeled, k, rng, entry)
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
            elif scorer is not None and entry.batch_aware:
                picks = _batch_aware_picks(scorer, extractor, features, context, mask, b, rng, entry)
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
