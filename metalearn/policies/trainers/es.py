"""Evolution strategies on the benchmark's own objective: the paired AULC difference to margin.

One training run, top to bottom:

1. The searched policy is the *context-gated linear* scorer (architecture ``gated_linear``,
   feature schema ``pool@2``): ``score = -margin + sum_f x_f * (a_f + sum_j b_fj * g_j)``, a
   weight per candidate feature that is a linear function of a few loop-context features.
   Only the (feature, context) pairs of :attr:`ESConfig.candidate_features` x
   :attr:`ESConfig.context_features` are searched; every other weight stays 0. All-zero
   weights rank exactly as margin sampling, and the search starts there.
2. Each generation draws ``problems_per_generation`` tasks from the training suite, seeded by
   the generation alone (common random numbers: every candidate of the generation runs on
   the same tasks with the same strategy seeds), and runs margin sampling once per task.
3. CMA-ES (the ``cma`` package) proposes ``population`` weight vectors; each runs a whole
   simulated active-learning process on every task (one job per task, so a generation
   parallelises over ``--jobs`` processes or a Dask cluster). The fitness of a candidate is
   its mean paired AULC difference to margin, in points; its standard error over the tasks
   is logged.
4. Every ``selection_every`` generations the distribution mean is scored on a fixed set of
   ``selection_problems`` held-in tasks (datasets never trained on; margin runs computed
   once), and the best mean so far is kept (keep-the-best).
5. Checkpoints hold no pickle: CMA-ES is deterministic given its seed and the fitness values
   it was told, so a checkpoint stores every generation's candidates and fitness (JSON) and a
   resume replays ``ask``/``tell`` without simulating, reaching the identical state (the
   replayed candidates are checked against the stored ones).

The ablation of the multi-loop history (:attr:`ESConfig.history` False) searches only
features computed from the current loop, the equivalent of a one-loop window.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metalearn.common.extras import require_extra
from metalearn.common.validation import check_positive_int
from metalearn.exceptions import InvalidInputError
from metalearn.features.registry import trainable_schema
from metalearn.policies.architecture import ScorerArchitecture
from metalearn.policies.trainers.checkpoints import (
    CHECKPOINT_DIR,
    check_resumable,
    config_settings,
    load_checkpoint,
    prepare_out_dir,
    save_checkpoint,
)
from metalearn.policies.trainers.evaluation import VALIDATION_SEED
from metalearn.policies.trainers.parallel import parallel_map
from metalearn.policies.trainers.progress import ProgressLog, should_stop
from metalearn.policies.trainers.results import TrainingResult, write_policy
from metalearn.policies.trainers.suites import resolve_suite
from metalearn.tasks.task import Task

__all__ = [
    "ESConfig",
    "train_es",
    "search_space",
    "weights_from_vector",
    "DEFAULT_SEARCH_FEATURES",
    "DEFAULT_SEARCH_CONTEXT",
    "HISTORY_FEATURES",
]

#: The schema the search runs in (the gated linear scorer over its features), from the registry.
ES_SCHEMA = trainable_schema("pool@2", "es").schema

#: Candidate features whose weights are searched by default: the low-budget signals (cluster
#: coverage, typicality, distance to the labeled records and the batch's earlier picks), the
#: uncertainty history (prediction flips) and class coverage. The margin itself is the prior.
DEFAULT_SEARCH_FEATURES: tuple[str, ...] = (
    "cluster_unlabeled",
    "typicality_in_cluster",
    "distance_to_selected",
    "prediction_flips",
    "predicted_class_labeled_share",
)
#: Context features that gate those weights by default ("bias" is the constant 1): two decaying
#: functions of the labels bought, so a weight can be large in the first loops and vanish later
#: (TypiClust first, margin later, with a learned switch), and the labels per class
#: (5 x 4 = 20 weights, small enough for CMA-ES to make progress in a few dozen generations).
DEFAULT_SEARCH_CONTEXT: tuple[str, ...] = ("bias", "bought_decay_10", "bought_decay_30", "labeled_per_class")
#: Features computed from earlier loops (the multi-loop history); the ablation searches none.
HISTORY_FEATURES: frozenset[str] = frozenset(
    {
        "margin_mean", "margin_std", "margin_trend", "entropy_trend", "prediction_flips",
        "probability_variance", "probability_change", "mean_margin_trend", "mean_entropy_trend",
        "prediction_change_rate", "prediction_change_trend", "history_fill",
    }
)
_PROGRESS_FIELDS = (
    "iteration", "seconds", "objective_mean", "objective_best", "objective_best_se",
    "sigma", "selection", "selection_se", "selection_best",
)


@dataclass
class ESConfig:
    """Settings of one evolution-strategies training run."""

    suite: Any = "meta_train"
    """Training task suite: a name (``envs/NAME.toml``), a TOML path or a TaskSuite."""
    selection_suite: Any = "held_in"
    """Suite of the held-in tasks of keep-the-best (datasets never trained on)."""
    out_dir: str = "runs/es"
    """Folder of the run: checkpoint, progress log and policy files."""
    seed: int = 0
    """Seeds CMA-ES and the training tasks of every generation."""
    generations: int | None = None
    """Generations to run (None: until the time budget is spent)."""
    time_budget_seconds: float | None = None
    """Wall-clock budget, checked between generations."""
    population: int | None = None
    """Candidates per generation (None: CMA-ES's default, 4 + 3 ln(dimension))."""
    problems_per_generation: int = 32
    """Training tasks per generation, shared by all candidates (common random numbers)."""
    sigma0: float = 0.5
    """Initial step size of CMA-ES, in margin units (features lie in [0, 1])."""
    candidate_features: tuple[str, ...] = DEFAULT_SEARCH_FEATURES
    """pool@2 candidate features whose weights are searched."""
    context_features: tuple[str, ...] = DEFAULT_SEARCH_CONTEXT
    """pool@2 context features that gate each weight; ``"bias"`` is a constant 1."""
    history: bool = True
    """Whether features of the multi-loop history may be searched (False: the ablation)."""
    window: int = 5
    """History length H of the features, in loops."""
    n_candidates: int = 64
    """Candidates scored per query (K), pre-selected by margin, representativeness and at random."""
    selection_problems: int = 200
    """Held-in tasks of keep-the-best (0: no selection; the final mean is the policy)."""
    selection_every: int = 5
    """Generations between two keep-the-best evaluations (and after the last generation)."""
    selection_seed: int = VALIDATION_SEED
    """Seed of the held-in tasks: the same set for every run."""
    n_jobs: int = 1
    """Worker processes (-1: all cores)."""
    dask: str | None = None
    """Dask scheduler address, or ``local[:N]``, instead of processes."""

    def validate(self) -> "ESConfig":
        check_positive_int(self.seed, "seed", minimum=0)
        check_positive_int(self.selection_seed, "selection_seed", minimum=0)
        check_positive_int(self.problems_per_generation, "problems_per_generation")
        check_positive_int(self.n_candidates, "n_candidates")
        check_positive_int(self.window, "window", minimum=2)
        check_positive_int(self.selection_problems, "selection_problems", minimum=0)
        check_positive_int(self.selection_every, "selection_every")
        if self.generations is not None:
            check_positive_int(self.generations, "generations")
        if self.population is not None:
            check_positive_int(self.population, "population", minimum=2)
        if not (isinstance(self.sigma0, (int, float)) and math.isfinite(self.sigma0) and self.sigma0 > 0):
            raise InvalidInputError(f"sigma0 must be a positive number, got {self.sigma0!r}")
        if self.time_budget_seconds is not None and not self.time_budget_seconds > 0:
            raise InvalidInputError(f"time_budget_seconds must be positive, got {self.time_budget_seconds!r}")
        search_space(self)  # checks the feature names
        return self


# =============================================================================================
# The search space: which weights of the gated linear scorer are free
# =============================================================================================
def search_space(config: ESConfig) -> list[tuple[int, int]]:
    """(candidate feature column, context column) of each searched weight, in vector order.

    Context column 0 is the constant; column ``1 + j`` is pool@2's context feature ``j``.
    Raises :class:`InvalidInputError` for unknown names, and for history features when
    ``config.history`` is False.
    """
    schema = ES_SCHEMA
    pairs: list[tuple[int, int]] = []
    for name in (*config.candidate_features, *config.context_features):
        if not isinstance(name, str):
            raise InvalidInputError(f"feature names must be strings, got {name!r}")
    if not config.candidate_features or not config.context_features:
        raise InvalidInputError("the search needs at least one candidate feature and one context feature")
    for name in config.candidate_features:
        if name not in schema.candidate_features or name == "margin":
            raise InvalidInputError(
                f"unknown candidate feature {name!r} to search (the margin is the prior); valid: "
                f"{', '.join(f for f in schema.candidate_features if f != 'margin')}"
            )
    for name in config.context_features:
        if name != "bias" and name not in schema.context_features:
            raise InvalidInputError(f"unknown context feature {name!r}; valid: bias, {', '.join(schema.context_features)}")
    if not config.history:
        used = sorted(HISTORY_FEATURES.intersection((*config.candidate_features, *config.context_features)))
        if used:
            raise InvalidInputError(f"history=False (the no-history ablation) cannot search history features {used}")
    for f in config.candidate_features:
        for g in config.context_features:
            column = 0 if g == "bias" else 1 + schema.context_features.index(g)
            pairs.append((schema.candidate_features.index(f), column))
    return pairs


def weights_from_vector(vector: np.ndarray, pairs: list[tuple[int, int]]) -> dict[str, np.ndarray]:
    """The gated linear scorer's parameters for one search vector (zeros outside the space)."""
    schema = ES_SCHEMA
    weights = np.zeros((schema.n_candidate_features, schema.n_context_features + 1), dtype=np.float32)
    for value, (f, g) in zip(np.asarray(vector, dtype=np.float64), pairs):
        weights[f, g] = value
    return {"weights": weights, "prior_scale": np.ones(1, dtype=np.float32)}


# =============================================================================================
# One job: margin and every candidate on one task (paired, the same strategy seed)
# =============================================================================================
def _problem_job(job: tuple[Task, int, list[dict[str, np.ndarray]], bool, int, int]) -> dict[str, Any]:
    """AULC of margin (if asked) and of each candidate policy on one task."""
    from metalearn.policies.file import PolicyFile
    from metalearn.policies.strategy import PolicyStrategy
    from metalearn.simulation.loop import simulate
    from metalearn.strategies.registry import make_strategy

    task, seed, candidates, with_margin, window, n_candidates = job
    arch = ScorerArchitecture.gated_linear(ES_SCHEMA)
    metadata = {"feature_schema": ES_SCHEMA.to_dict(), "window": window, "n_candidates": n_candidates}
    out: dict[str, Any] = {"task": task.name, "model": task.model.name, "batch_size": int(task.batch_size)}
    if with_margin:
        out["margin"] = float(simulate(task, make_strategy("margin", random_state=seed)).aulc_accuracy)
    scores = []
    for params in candidates:
        policy = PolicyFile(arch=arch, params=params, metadata=metadata)
        strategy = PolicyStrategy(policy, n_candidates=n_candidates, label_budget=task.label_budget, random_state=seed)
        scores.append(float(simulate(task, strategy).aulc_accuracy))
    out["policies"] = scores
    return out


def _task_seeds(tasks: list[Task], seed: int) -> list[int]:
    return [int(s.generate_state(1)[0] & 0x7FFFFFFF) for s in np.random.SeedSequence(seed).spawn(len(tasks))]


def _generation_seed(seed: int, generation: int) -> int:
    return int(np.random.SeedSequence(entropy=seed, spawn_key=(generation, 7)).generate_state(1)[0] & 0x7FFFFFFF)


def _run_candidates(
    tasks: list[Task],
    seeds: list[int],
    candidates: list[dict[str, np.ndarray]],
    margin: np.ndarray | None,
    config: ESConfig,
    desc: str | None,
) -> tuple[np.ndarray, np.ndarray]:
    """(margin AULC per task, candidate AULC (n_candidates, n_tasks)); margin computed if None."""
    jobs = [(t, s, candidates, margin is None, config.window, config.n_candidates) for t, s in zip(tasks, seeds)]
    results = parallel_map(_problem_job, jobs, n_jobs=config.n_jobs, dask=config.dask, desc=desc)
    margin_out = np.array([r["margin"] for r in results]) if margin is None else margin
    return margin_out, np.array([r["policies"] for r in results]).T


def _objective(aulc: np.ndarray, margin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean paired difference to margin in points, and its standard error, per candidate."""
    delta = 100.0 * (aulc - margin[None, :])
    se = delta.std(axis=1, ddof=1) / math.sqrt(delta.shape[1]) if delta.shape[1] > 1 else np.zeros(delta.shape[0])
    return delta.mean(axis=1), se


# =============================================================================================
# Checkpoint: every generation's candidates and fitness, replayed into a fresh CMA-ES
# =============================================================================================
def _new_search(config: ESConfig, dimension: int) -> Any:
    import cma

    options: dict[str, Any] = {"seed": int(config.seed) + 1, "verbose": -9, "CMA_diagonal": False}
    if config.population is not None:
        options["popsize"] = int(config.population)
    return cma.CMAEvolutionStrategy(np.zeros(dimension), float(config.sigma0), options)


def _replay(search: Any, generations: list[dict[str, Any]]) -> None:
    for record in generations:
        proposed = np.asarray(search.ask())
        stored = np.asarray(record["candidates"], dtype=np.float64)
        if proposed.shape != stored.shape or not np.allclose(proposed, stored, rtol=0, atol=1e-12):
            raise InvalidInputError(
                "cannot resume: CMA-ES does not replay to the stored candidates (another cma version?); "
                "start a fresh run in a new --out folder"
            )
        search.tell(list(stored), list(record["fitness"]))


def _save(out: Path, config: ESConfig, state: dict[str, Any], best: np.ndarray | None) -> None:
    tensors = {"best_vector": best if best is not None else np.zeros(0)}
    save_checkpoint(out / CHECKPOINT_DIR, tensors, {"config": config_settings(config), **state})


# =============================================================================================
# The training run
# =============================================================================================
def train_es(config: ESConfig, resume: bool = False, progress: bool = True) -> TrainingResult:
    """Search the gated linear scorer with CMA-ES on the paired AULC difference to margin.

    Parameters
    ----------
    config : ESConfig
    resume : bool
        Continue the checkpoint in ``config.out_dir`` (identical to an uninterrupted run).
    progress : bool
        Progress bars and one line per generation.

    Returns
    -------
    TrainingResult
        ``policy_path``: the best mean on the held-in tasks (``policy.safetensors``);
        ``last_path``: the final distribution mean (``last.safetensors``).
    """
    require_extra("train", "evolution-strategies training (metalearn train --method es)")
    config.validate()
    out = prepare_out_dir(config.out_dir)
    pairs = search_space(config)
    suite = resolve_suite(config.suite)
    log = ProgressLog(out / "progress.csv", _PROGRESS_FIELDS)

    # -- state: fresh, or replayed from the checkpoint ------------------------------------------
    search = _new_search(config, len(pairs))
    state: dict[str, Any] = {"generations": [], "selection_margin": None, "best": None, "wall_seconds": 0.0}
    best_vector: np.ndarray | None = None
    checkpoint = load_checkpoint(out / CHECKPOINT_DIR) if resume else None
    if resume and checkpoint is None:
        raise InvalidInputError(f"--resume: no checkpoint in {out / CHECKPOINT_DIR}; run without --resume first")
    if checkpoint is not None:
        tensors, saved = checkpoint
        check_resumable(saved["config"], config)
        state = {k: saved[k] for k in state}
        _replay(search, state["generations"])
        best_vector = tensors["best_vector"] if tensors["best_vector"].size else None
        log.truncate(len(state["generations"]))
    elif not resume and (out / CHECKPOINT_DIR).exists() and load_checkpoint(out / CHECKPOINT_DIR) is not None:
        raise InvalidInputError(f"{out} already holds a training run; pass --resume to continue it or choose another --out")

    # -- the held-in tasks of keep-the-best, with margin's runs computed once -----------------------
    selection_tasks: list[Task] = []
    selection_seeds: list[int] = []
    if config.selection_problems:
        selection_tasks = resolve_suite(config.selection_suite).tasks(config.selection_problems, seed=config.selection_seed)
        selection_seeds = _task_seeds(selection_tasks, config.selection_seed)
        if state["selection_margin"] is None:
            margin, _ = _run_candidates(
                selection_tasks, selection_seeds, [], None, config, "held-in margin" if progress else None
            )
            state["selection_margin"] = margin.tolist()
            _save(out, config, state, best_vector)
        if state["best"] is None:
            # Keep-the-best starts from the search's start: zero weights rank exactly as margin
            # sampling, whose paired difference to margin is 0 by construction. A searched mean
            # replaces it only by beating margin on the held-in tasks, so a short run never
            # keeps a policy that loses to margin there.
            state["best"] = {"generation": -1, "objective": 0.0, "se": 0.0}
            best_vector = np.zeros(len(pairs), dtype=np.float64)

    def select(vector: np.ndarray, generation: int) -> dict[str, float]:
        margin = np.asarray(state["selection_margin"])
        _, aulc = _run_candidates(
            selection_tasks, selection_seeds, [weights_from_vector(vector, pairs)], margin, config,
            f"held-in gen {generation}" if progress else None,
        )
        mean, se = _objective(aulc, margin)
        return {"generation": generation, "objective": float(mean[0]), "se": float(se[0])}

    # -- generations --------------------------------------------------------------------------------
    generations_at_start = len(state["generations"]) if checkpoint is not None else -1
    start = time.perf_counter() - float(state["wall_seconds"])
    durations: list[float] = []
    while not should_stop(
        len(state["generations"]), time.perf_counter() - start, durations, config.generations, config.time_budget_seconds
    ):
        generation = len(state["generations"])
        began = time.perf_counter()
        gen_seed = _generation_seed(config.seed, generation)
        tasks = suite.tasks(config.problems_per_generation, seed=gen_seed)
        seeds = _task_seeds(tasks, gen_seed)
        candidates = [np.asarray(x, dtype=np.float64) for x in search.ask()]
        margin, aulc = _run_candidates(
            tasks, seeds, [weights_from_vector(x, pairs) for x in candidates], None, config,
            f"generation {generation}" if progress else None,
        )
        objective, se = _objective(aulc, margin)
        fitness = (-objective).tolist()  # CMA-ES minimises
        search.tell(candidates, fitness)
        state["generations"].append(
            {"candidates": [c.tolist() for c in candidates], "fitness": fitness, "se": se.tolist()}
        )
        row: dict[str, Any] = {
            "iteration": generation,
            "objective_mean": float(objective.mean()),
            "objective_best": float(objective.max()),
            "objective_best_se": float(se[int(objective.argmax())]),
            "sigma": float(search.sigma),
        }
        last = should_stop(
            generation + 1, time.perf_counter() - start, durations + [time.perf_counter() - began],
            config.generations, config.time_budget_seconds,
        )
        if selection_tasks and ((generation + 1) % config.selection_every == 0 or last):
            mean_vector = np.asarray(search.mean, dtype=np.float64)
            chosen = select(mean_vector, generation)
            row["selection"], row["selection_se"] = chosen["objective"], chosen["se"]
            if state["best"] is None or chosen["objective"] > state["best"]["objective"]:
                state["best"], best_vector = chosen, mean_vector
        row["selection_best"] = None if state["best"] is None else state["best"]["objective"]
        durations.append(time.perf_counter() - began)
        state["wall_seconds"] = time.perf_counter() - start
        row["seconds"] = round(state["wall_seconds"], 1)
        log.append(row)  # before the checkpoint: a resume truncates rows the checkpoint lacks
        _save(out, config, state, best_vector)
        if progress:
            print(
                f"generation {generation}: objective mean {row['objective_mean']:+.3f}, best {row['objective_best']:+.3f} "
                f"(se {row['objective_best_se']:.3f}), sigma {row['sigma']:.3f}"
                + (f", held-in {row['selection']:+.3f} (se {row['selection_se']:.3f})" if "selection" in row else ""),
                flush=True,
            )

    # -- policy files: the final mean, and the best mean on the held-in tasks --------------------------
    final_vector = np.asarray(search.mean, dtype=np.float64)
    best = best_vector if best_vector is not None else final_vector
    arch = ScorerArchitecture.gated_linear(ES_SCHEMA)
    settings = config_settings(config)
    training = {
        "generations": len(state["generations"]),
        "seconds": round(float(state["wall_seconds"]), 1),
        "dimension": len(pairs),
        "population": int(search.popsize),
        "problems_per_generation": config.problems_per_generation,
    }
    validation = None
    if state["best"] is not None:
        validation = {
            "held_in_problems": len(selection_tasks),
            "held_in_delta_vs_margin": state["best"]["objective"],
            "held_in_se": state["best"]["se"],
            "best_generation": state["best"]["generation"],
        }
    common = dict(
        method="es", settings=settings, suite=config.suite, seed=config.seed, window=config.window,
        n_candidates=config.n_candidates, training=training, schema=ES_SCHEMA,
    )
    last_path, policy_path = out / "last.safetensors", out / "policy.safetensors"
    if not (generations_at_start == len(state["generations"]) and last_path.is_file() and policy_path.is_file()):
        # A resume of a finished run that ran nothing leaves its files as they are.
        write_policy(last_path, arch, weights_from_vector(final_vector, pairs), validation=None, **common)
        write_policy(policy_path, arch, weights_from_vector(best, pairs), validation=validation, **common)
    return TrainingResult(
        policy_path=policy_path,
        last_path=last_path,
        out_dir=out,
        method="es",
        iterations=len(state["generations"]),
        best_iteration=None if state["best"] is None else int(state["best"]["generation"]),
        best_validation=validation,
        history=log.records(),
        wall_seconds=float(state["wall_seconds"]),
    )

