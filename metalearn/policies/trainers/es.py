"""Evolution strategies on the benchmark's own objective: the paired AULC difference to margin.

One training run, top to bottom:

1. The searched policy is the *context-gated linear* scorer (architecture ``gated_linear``,
   feature schema ``pool@2`` or ``pool@3``, :attr:`ESConfig.schema`): ``score = -margin + sum_f x_f * (a_f + sum_j b_fj * g_j)``, a
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
   its mean paired AULC difference to margin, in points (:attr:`ESConfig.fitness` ``"mean"``),
   or its mean rank among the generation's candidates and margin per task (``"rank"``), which
   keeps a few tasks with large differences from deciding the search. The objective's standard
   error over the tasks and the spread of the candidates' objectives are logged, so a reader
   sees whether the differences the search acts on stand above its noise. Mirrored sampling
   (:attr:`ESConfig.mirrored`) halves the noise of the step direction for the same tasks.
4. Every ``selection_every`` generations the distribution mean is scored on a fixed set of
   ``selection_tasks`` held-in tasks (datasets never trained on; margin runs computed
   once), and the best mean so far is kept (keep-the-best).
5. Checkpoints hold no pickle: CMA-ES is deterministic given its seed and the fitness values
   it was told, so a checkpoint stores every generation's candidates and fitness (JSON) and a
   resume replays ``ask``/``tell`` without simulating, reaching the identical state (the
   replayed candidates are checked against the stored ones).

The run protocol (folder, resume, budget, keep-the-best, result) is the trainers' skeleton
(:mod:`.base`); a generation is one of its iterations (``iterations``). The CMA-ES steps this
loop shares with the schedule trainer (:mod:`.schedule`) are in :mod:`.cma_search`.

The ablation of the multi-loop history (:attr:`ESConfig.history` False) searches only
features computed from the current loop, the equivalent of a one-loop window.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from metalearn.common.extras import require_extra
from metalearn.common.validation import check_positive_int
from metalearn.exceptions import InvalidInputError
from metalearn.features.registry import trainable_schema
from metalearn.features.schema import FeatureSchema
from metalearn.policies.architecture import ScorerArchitecture
from metalearn.policies.trainers import cma_search
from metalearn.policies.trainers.base import COMMON_PROGRESS_FIELDS, TrainerConfig, start_run
from metalearn.policies.trainers.parallel import parallel_map
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
    "FITNESS",
    "es_schema",
    "rank_fitness",
]

#: The schema the search runs in by default (the gated linear scorer over its features).
ES_SCHEMA = trainable_schema("pool@2", "es").schema
#: Fitness of a candidate on one generation's tasks: the mean paired difference to margin, or
#: its mean rank per task among the candidates and margin.
FITNESS = ("mean", "rank")

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
    *COMMON_PROGRESS_FIELDS, "objective_mean", "objective_best", "objective_best_se", "sigma", "selection_se",
    "objective_spread",
)


@dataclass
class ESConfig(TrainerConfig):
    """Settings of one evolution-strategies training run; the shared ones (budget, keep-the-best,
    workers) are documented on :class:`~metalearn.policies.trainers.base.TrainerConfig`."""

    suite: Any = "meta_train"
    """Training task suite: a name (``envs/NAME.toml``), a TOML path or a TaskSuite."""
    out_dir: str = "runs/es"
    """Folder of the run: checkpoint, progress log and policy files."""
    iterations: int | None = 10
    """Generations to run (None: until the time budget is spent)."""
    selection_suite: Any = "held_in"
    """Suite of the held-in tasks of keep-the-best (datasets never trained on)."""
    selection_tasks: int = 200
    """Held-in tasks of keep-the-best (0: no selection; the final mean is the policy)."""
    selection_every: int = 5
    """Generations between two keep-the-best evaluations (and after the last generation)."""
    population: int | None = None
    """Candidates per generation (None: CMA-ES's default, 4 + 3 ln(dimension))."""
    problems_per_generation: int = 32
    """Training tasks per generation, shared by all candidates (common random numbers)."""
    sigma0: float = 0.5
    """Initial step size of CMA-ES, in margin units (features lie in [0, 1])."""
    schema: str = "pool@2"
    """Feature schema of the searched scorer (one the registry lets ES train: pool@2, pool@3)."""
    candidate_features: tuple[str, ...] = DEFAULT_SEARCH_FEATURES
    """Candidate features of the schema whose weights are searched."""
    context_features: tuple[str, ...] = DEFAULT_SEARCH_CONTEXT
    """Context features of the schema that gate each weight; ``"bias"`` is a constant 1."""
    fitness: str = "mean"
    """``"mean"``: mean paired AULC difference to margin; ``"rank"``: mean per-task rank among the
    generation's candidates and margin (robust to a few tasks with large differences)."""
    mirrored: bool = False
    """Mirrored sampling: half of each generation are the other half reflected about the mean."""
    history: bool = True
    """Whether features of the multi-loop history may be searched (False: the ablation)."""
    window: int = 5
    """History length H of the features, in loops."""
    n_candidates: int = 64
    """Candidates scored per query (K), pre-selected by margin, representativeness and at random."""

    def validate(self) -> "ESConfig":
        self.check_trainer_settings()
        check_positive_int(self.problems_per_generation, "problems_per_generation")
        check_positive_int(self.n_candidates, "n_candidates")
        check_positive_int(self.window, "window", minimum=2)
        if self.population is not None:
            check_positive_int(self.population, "population", minimum=2)
        if not (isinstance(self.sigma0, (int, float)) and math.isfinite(self.sigma0) and self.sigma0 > 0):
            raise InvalidInputError(f"sigma0 must be a positive number, got {self.sigma0!r}")
        if self.fitness not in FITNESS:
            raise InvalidInputError(f"fitness must be one of {', '.join(FITNESS)}, got {self.fitness!r}")
        if not isinstance(self.mirrored, bool):
            raise InvalidInputError(f"mirrored must be True or False, got {self.mirrored!r}")
        trainable_schema(self.schema, "es")
        search_space(self)  # checks the feature names
        return self


# =============================================================================================
# The search space: which weights of the gated linear scorer are free
# =============================================================================================
def search_space(config: ESConfig) -> list[tuple[int, int]]:
    """(candidate feature column, context column) of each searched weight, in vector order.

    Context column 0 is the constant; column ``1 + j`` is the schema's context feature ``j``.
    Raises :class:`InvalidInputError` for unknown names, and for history features when
    ``config.history`` is False.
    """
    schema = es_schema(config)
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


def es_schema(config: ESConfig) -> FeatureSchema:
    """The feature schema of the searched scorer (:attr:`ESConfig.schema`, from the registry)."""
    return trainable_schema(config.schema, "es").schema


def weights_from_vector(
    vector: np.ndarray, pairs: list[tuple[int, int]], schema: FeatureSchema = ES_SCHEMA
) -> dict[str, np.ndarray]:
    """The gated linear scorer's parameters for one search vector (zeros outside the space)."""
    weights = np.zeros((schema.n_candidate_features, schema.n_context_features + 1), dtype=np.float32)
    for value, (f, g) in zip(np.asarray(vector, dtype=np.float64), pairs):
        weights[f, g] = value
    return {"weights": weights, "prior_scale": np.ones(1, dtype=np.float32)}


# =============================================================================================
# One job: margin and every candidate on one task (paired, the same strategy seed)
# =============================================================================================
def _problem_job(job: tuple[Task, int, list[dict[str, np.ndarray]], bool, int, int, str]) -> dict[str, Any]:
    """AULC of margin (if asked) and of each candidate policy on one task."""
    from metalearn.policies.file import PolicyFile
    from metalearn.policies.strategy import PolicyStrategy
    from metalearn.simulation.loop import simulate
    from metalearn.strategies.registry import make_strategy

    task, seed, candidates, with_margin, window, n_candidates, schema_id = job
    schema = trainable_schema(schema_id, "es").schema
    arch = ScorerArchitecture.gated_linear(schema)
    metadata = {"feature_schema": schema.to_dict(), "window": window, "n_candidates": n_candidates}
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


def _run_candidates(
    tasks: list[Task],
    seeds: list[int],
    candidates: list[dict[str, np.ndarray]],
    margin: np.ndarray | None,
    config: ESConfig,
    desc: str | None,
) -> tuple[np.ndarray, np.ndarray]:
    """(margin AULC per task, candidate AULC (n_candidates, n_tasks)); margin computed if None."""
    jobs = [(t, s, candidates, margin is None, config.window, config.n_candidates, config.schema) for t, s in zip(tasks, seeds)]
    results = parallel_map(_problem_job, jobs, n_jobs=config.n_jobs, dask=config.dask, desc=desc)
    margin_out = np.array([r["margin"] for r in results]) if margin is None else margin
    return margin_out, np.array([r["policies"] for r in results]).T


def _objective(aulc: np.ndarray, margin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean paired difference to margin in points, and its standard error, per candidate."""
    delta = 100.0 * (aulc - margin[None, :])
    se = delta.std(axis=1, ddof=1) / math.sqrt(delta.shape[1]) if delta.shape[1] > 1 else np.zeros(delta.shape[0])
    return delta.mean(axis=1), se


def rank_fitness(aulc: np.ndarray, margin: np.ndarray) -> np.ndarray:
    """Mean per-task rank of each candidate among the candidates and margin, centred on margin's.

    On every task, the candidates and margin are ranked by AULC (ties share their mean rank,
    scaled to [0, 1]); a candidate's fitness is its mean rank minus margin's mean rank over the
    tasks. A task counts the same however large its differences are, so a few tasks with large
    differences (an easy dataset where one strategy gains 7 points) cannot decide the search.

    Parameters
    ----------
    aulc : ndarray of shape (n_candidates, n_tasks)
    margin : ndarray of shape (n_tasks,)

    Returns
    -------
    ndarray of shape (n_candidates,)
        Higher is better; 0 = as good as margin on average.
    """
    from scipy.stats import rankdata

    table = np.vstack([aulc, margin[None, :]])
    ranks = rankdata(table, axis=0) - 1.0
    ranks /= max(table.shape[0] - 1, 1)
    mean = ranks.mean(axis=1)
    return mean[:-1] - mean[-1]


# =============================================================================================
# The training run
# =============================================================================================
def train_es(config: ESConfig, resume: bool = False, progress: bool = True) -> TrainingResult:
    """Search the gated linear scorer with CMA-ES on the paired AULC difference to margin.

    Parameters
    ----------
    config : ESConfig
    resume : bool
        Continue the checkpoint in ``config.out_dir`` (identical to an uninterrupted run);
        without a checkpoint, start fresh (said in one line).
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
    pairs = search_space(config)
    schema = es_schema(config)
    suite = resolve_suite(config.suite)
    run = start_run(config, "es", resume, _PROGRESS_FIELDS)

    # -- state: fresh, or replayed from the checkpoint ------------------------------------------
    search = cma_search.new_search(
        len(pairs), seed=config.seed, sigma0=config.sigma0, population=config.population, mirrored=config.mirrored
    )
    state, best_vector = cma_search.resume(run, search, {"generations": [], "selection_margin": None})

    # -- the held-in tasks of keep-the-best, with margin's runs computed once -----------------------
    selection_tasks, selection_seeds = cma_search.selection_tasks(config)
    if config.selection_tasks:
        if state["selection_margin"] is None:
            margin, _ = _run_candidates(
                selection_tasks, selection_seeds, [], None, config, "held-in margin" if progress else None
            )
            state["selection_margin"] = margin.tolist()
            cma_search.save(run, state, best_vector)
        if run.state.best_score is None:
            # Keep-the-best starts from the search's start: zero weights rank exactly as margin
            # sampling, whose paired difference to margin is 0 by construction. A searched mean
            # replaces it only by beating margin on the held-in tasks, so a short run never
            # keeps a policy that loses to margin there.
            run.keep_if_best(0.0, -1, {"generation": -1, "objective": 0.0, "se": 0.0})
            best_vector = np.zeros(len(pairs), dtype=np.float64)

    def select(vector: np.ndarray, generation: int) -> dict[str, float]:
        margin = np.asarray(state["selection_margin"])
        _, aulc = _run_candidates(
            selection_tasks, selection_seeds, [weights_from_vector(vector, pairs, schema)], margin, config,
            f"held-in gen {generation}" if progress else None,
        )
        mean, se = _objective(aulc, margin)
        return {"generation": generation, "objective": float(mean[0]), "se": float(se[0])}

    # -- generations --------------------------------------------------------------------------------
    while not run.should_stop(config):
        generation = run.state.iteration
        began = time.perf_counter()
        tasks, seeds = cma_search.generation_tasks(suite, config.problems_per_generation, config.seed, generation)
        candidates = cma_search.ask(search)
        margin, aulc = _run_candidates(
            tasks, seeds, [weights_from_vector(x, pairs, schema) for x in candidates], None, config,
            f"generation {generation}" if progress else None,
        )
        objective, se = _objective(aulc, margin)
        searched = objective if config.fitness == "mean" else rank_fitness(aulc, margin)
        fitness = (-searched).tolist()  # CMA-ES minimises
        cma_search.tell(search, state, candidates, fitness, se)
        row: dict[str, Any] = {
            "iteration": generation,
            "objective_mean": float(objective.mean()),
            "objective_best": float(objective.max()),
            "objective_best_se": float(se[int(objective.argmax())]),
            "sigma": float(search.sigma),
            "objective_spread": float(objective.std(ddof=1)) if objective.size > 1 else 0.0,
        }
        last = run.should_stop(config, extra_seconds=time.perf_counter() - began)
        if selection_tasks and (config.selection_due(generation) or last):
            mean_vector = cma_search.search_mean(search)
            chosen = select(mean_vector, generation)
            row["selection_delta"], row["selection_se"] = chosen["objective"], chosen["se"]
            if run.keep_if_best(chosen["objective"], generation, chosen):
                best_vector = mean_vector
        run.end_iteration(row, time.perf_counter() - began)
        cma_search.save(run, state, best_vector)
        if progress:
            print(
                f"generation {generation}: objective mean {row['objective_mean']:+.3f}, best {row['objective_best']:+.3f} "
                f"(se {row['objective_best_se']:.3f}), sigma {row['sigma']:.3f}"
                + (f", held-in {row['selection_delta']:+.3f} (se {row['selection_se']:.3f})" if "selection_delta" in row else ""),
                flush=True,
            )

    # -- policy files: the final mean, and the best mean on the held-in tasks --------------------------
    final_vector = cma_search.search_mean(search)
    best = best_vector if best_vector is not None else final_vector
    arch = ScorerArchitecture.gated_linear(schema)
    training = {
        "generations": run.state.iteration,
        "seconds": round(float(run.state.wall_seconds), 1),
        "dimension": len(pairs),
        "population": int(search.popsize),
        "problems_per_generation": config.problems_per_generation,
    }
    validation = None
    if run.state.best_validation is not None:
        chosen = run.state.best_validation
        validation = {
            "held_in_problems": len(selection_tasks),
            "held_in_delta_vs_margin": chosen["objective"],
            "held_in_se": chosen["se"],
            "best_generation": chosen["generation"],
        }
    common = dict(
        method="es", settings=run.settings, suite=config.suite, seed=config.seed, window=config.window,
        n_candidates=config.n_candidates, training=training, schema=schema,
    )
    if run.ran or not (run.last_path.is_file() and run.policy_path.is_file()):
        # A resume of a finished run runs nothing and leaves its files as they are.
        write_policy(run.last_path, arch, weights_from_vector(final_vector, pairs, schema), validation=None, **common)
        write_policy(run.policy_path, arch, weights_from_vector(best, pairs, schema), validation=validation, **common)
    result = run.result()
    result.best_validation = validation
    return result
