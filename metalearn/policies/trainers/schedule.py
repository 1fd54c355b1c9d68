"""CMA-ES on the compute-charged objective: the learned batch schedule (``metalearn train --method schedule``).

One training run, top to bottom:

1. The searched schedule is the ``size-mlp`` chooser of :mod:`metalearn.schedules.model`
   (loop features -> dense(H) -> tanh -> dense(H) -> tanh -> one score per size of
   :attr:`ScheduleTrainConfig.sizes`), kept small (:attr:`ScheduleTrainConfig.hidden` 4:
   146 weights for 23 features and 6 sizes) so that CMA-ES makes progress in a few dozen
   generations. Every weight is searched except the input standardisation, which stays the
   identity (the features are already scaled to about [-1, 1]). The search starts at zero
   weights: every size scores the same and the first, 1, is chosen (retrain after every label).
2. The objective of a schedule on one task is its step-curve AULC in points
   (:attr:`~metalearn.simulation.loop.SimulationResult.step_aulc_accuracy`: the score a user
   has after each label bought) minus :attr:`ScheduleTrainConfig.price_per_fit` points per
   task-model fit, paired against a fixed baseline rule on the same task and strategy seed
   (:attr:`ScheduleTrainConfig.baseline_schedule`, default ``geometric:2:2``, the best simple
   rule of issue 21), so a positive objective beats the baseline at that price.
3. Each generation draws ``problems_per_generation`` tasks from the training suite, seeded by
   the generation alone (common random numbers: every candidate of the generation runs on
   the same tasks with the same strategy seeds), and runs the baseline once per task. The
   querying strategy is :attr:`ScheduleTrainConfig.strategy` (the released ``default``
   policy), resolved by :func:`~metalearn.strategies.resolve.resolve_strategy`, fresh for each
   run. The objective's standard error over the tasks and the candidates' mean fits are logged.
4. Every ``selection_every`` generations the distribution mean is scored on a fixed set of
   ``selection_tasks`` held-in tasks (baseline runs computed once), and the best mean so far
   is kept (keep-the-best). The first evaluation is the first kept schedule, whatever its
   objective: the card says where it stands against the baseline.
5. Checkpoints hold no pickle: as in :mod:`.es`, a checkpoint stores every generation's
   candidates and fitness (JSON) and a resume replays CMA-ES's ``ask``/``tell`` without
   simulating (:func:`metalearn.policies.trainers.cma_search.replay`).

Outputs: ``schedule.safetensors`` (the best mean on the held-in tasks) and ``last.safetensors``
(the final mean), written with :func:`~metalearn.schedules.file.save_schedule` with a model
card (training settings, the objective, the held-in figures and the baseline), loadable with
:func:`~metalearn.schedules.loading.load_schedule`.

The trainer lives beside the other ``metalearn train --method`` trainers (and the skeleton
and the CMA-ES pieces it shares with :mod:`.es`, :mod:`.cma_search`) rather than in :mod:`metalearn.schedules`, which
stays numpy-only for inference.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metalearn.common.extras import require_extra
from metalearn.common.validation import check_positive_int, check_real
from metalearn.exceptions import InvalidInputError
from metalearn.policies.trainers import cma_search
from metalearn.policies.trainers.base import COMMON_PROGRESS_FIELDS, TrainerConfig, start_run
from metalearn.policies.trainers.parallel import parallel_map
from metalearn.policies.trainers.results import TrainingResult
from metalearn.policies.trainers.suites import resolve_suite, suite_label
from metalearn.schedules.base import MAX_BATCH_SIZE
from metalearn.schedules.features import SCHEDULE_FEATURES
from metalearn.schedules.file import MAX_SIZES, ScheduleFile, save_schedule
from metalearn.schedules.model import SizeModelArchitecture, size_parameter_shapes
from metalearn.stopping.limits import MAX_WINDOW
from metalearn.tasks.task import Task

__all__ = ["ScheduleTrainConfig", "train_schedule", "schedule_architecture", "params_from_vector",
           "SCHEDULE_NAME", "SEARCHED_PARAMETERS", "PROGRESS_FIELDS"]

#: The best schedule of a run's folder (the last one is ``last.safetensors``, as for policies).
SCHEDULE_NAME = "schedule.safetensors"
#: Parameters of the chooser that CMA-ES searches, in vector order (the standardisation stays fixed).
SEARCHED_PARAMETERS: tuple[str, ...] = ("l1.weight", "l1.bias", "l2.weight", "l2.bias", "out.weight", "out.bias")
#: Columns of ``progress.csv``: one row per generation.
PROGRESS_FIELDS: tuple[str, ...] = (
    *COMMON_PROGRESS_FIELDS, "objective_mean", "objective_best", "objective_best_se", "fits_mean", "baseline_fits",
    "sigma", "selection_se", "selection_fits",
)
_OBJECTIVE = ("step-curve AULC of accuracy in points minus price_per_fit points per task-model fit, "
              "paired against the baseline schedule on the same task and strategy seed (positive: better than it)")


@dataclass
class ScheduleTrainConfig(TrainerConfig):
    """Settings of one schedule training run; the shared ones (budget, keep-the-best, workers)
    are documented on :class:`~metalearn.policies.trainers.base.TrainerConfig`."""

    suite: Any = "meta_train"
    """Training task suite: a name (``envs/NAME.toml``), a TOML path or a TaskSuite."""
    out_dir: str = "runs/schedule"
    """Folder of the run: checkpoint, progress log and schedule files."""
    iterations: int | None = 10
    """Generations to run (None: until the time budget is spent)."""
    selection_suite: Any = "held_in"
    """Suite of the held-in tasks of keep-the-best (datasets never trained on)."""
    selection_tasks: int = 50
    """Held-in tasks of keep-the-best (0: no selection; the final mean is the schedule)."""
    selection_every: int = 5
    """Generations between two keep-the-best evaluations (and after the last generation)."""
    population: int | None = None
    """Candidates per generation (None: CMA-ES's default, 4 + 3 ln(dimension))."""
    problems_per_generation: int = 16
    """Training tasks per generation, shared by all candidates (common random numbers)."""
    sigma0: float = 0.5
    """Initial step size of CMA-ES (the weights of a network whose inputs lie in about [-1, 1])."""
    strategy: str = "policy:default"
    """Querying strategy of every simulated run (a name :func:`~metalearn.strategies.resolve.resolve_strategy` knows)."""
    price_per_fit: float = 0.05
    """Points of step-curve AULC one task-model fit costs in the objective (>= 0)."""
    baseline_schedule: str = "geometric:2:2"
    """Rule the objective is paired against (``fixed:N``, ``geometric:R[:EVERY]``)."""
    sizes: tuple[int, ...] = (1, 2, 5, 10, 20, 50)
    """Batch sizes the schedule chooses among, increasing."""
    hidden: int = 4
    """Width H of the chooser's two hidden layers."""
    window: int = 5
    """History length of the loop features, in loops."""

    def validate(self) -> "ScheduleTrainConfig":
        from metalearn.schedules.registry import is_rule_spec, make_schedule
        from metalearn.strategies.resolve import resolve_strategy

        self.check_trainer_settings()
        check_positive_int(self.problems_per_generation, "problems_per_generation")
        check_positive_int(self.hidden, "hidden", maximum=64)
        check_positive_int(self.window, "window", minimum=2, maximum=MAX_WINDOW)
        if self.population is not None:
            check_positive_int(self.population, "population", minimum=2)
        sigma0 = check_real(self.sigma0, "sigma0")
        if not (math.isfinite(sigma0) and sigma0 > 0):
            raise InvalidInputError(f"sigma0 must be a positive number, got {self.sigma0!r}")
        price = check_real(self.price_per_fit, "price_per_fit")
        if not (math.isfinite(price) and price >= 0):
            raise InvalidInputError(f"price_per_fit must be a finite number of points >= 0, got {self.price_per_fit!r}")
        sizes = tuple(self.sizes) if isinstance(self.sizes, (tuple, list)) else ()
        if (not 1 <= len(sizes) <= MAX_SIZES
                or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and 1 <= s <= MAX_BATCH_SIZE
                           for s in sizes)
                or any(b <= a for a, b in zip(sizes, sizes[1:]))):
            raise InvalidInputError(
                f"sizes must be 1 to {MAX_SIZES} increasing integers in [1, {MAX_BATCH_SIZE}], got {str(self.sizes)[:100]}"
            )
        if not is_rule_spec(self.baseline_schedule):
            raise InvalidInputError(
                f"baseline_schedule must be a rule spec such as geometric:2:2 or fixed:10, got {str(self.baseline_schedule)[:100]!r}"
            )
        make_schedule(self.baseline_schedule)  # a bad value fails here, before any simulation
        if not isinstance(self.strategy, str):
            raise InvalidInputError(f"strategy must be a strategy or policy name, got {type(self.strategy).__name__}")
        resolve_strategy(self.strategy, label_budget=None, random_state=0)  # unknown names fail here
        return self


# =============================================================================================
# The search space: every weight of the size chooser but its input standardisation
# =============================================================================================
def schedule_architecture(config: ScheduleTrainConfig) -> SizeModelArchitecture:
    """The searched chooser's shape: the schedule features in, one score per size out."""
    return SizeModelArchitecture(n_features=len(SCHEDULE_FEATURES), hidden=int(config.hidden),
                                 n_sizes=len(config.sizes)).validate()


def _dimension(arch: SizeModelArchitecture) -> int:
    shapes = size_parameter_shapes(arch)
    return int(sum(np.prod(shapes[name]) for name in SEARCHED_PARAMETERS))


def params_from_vector(vector: np.ndarray, arch: SizeModelArchitecture) -> dict[str, np.ndarray]:
    """The chooser's parameters for one search vector (standardisation: mean 0, scale 1)."""
    shapes = size_parameter_shapes(arch)
    values = np.asarray(vector, dtype=np.float64)
    if values.size != _dimension(arch):
        raise InvalidInputError(f"a search vector of {values.size} values for a chooser of {_dimension(arch)} weights")
    params = {"x_mean": np.zeros(shapes["x_mean"], dtype=np.float32), "x_std": np.ones(shapes["x_std"], dtype=np.float32)}
    start = 0
    for name in SEARCHED_PARAMETERS:
        size = int(np.prod(shapes[name]))
        params[name] = values[start:start + size].reshape(shapes[name]).astype(np.float32)
        start += size
    return params


def _schedule_metadata(config: ScheduleTrainConfig) -> dict[str, Any]:
    return {"window": int(config.window), "sizes": [int(s) for s in config.sizes]}


# =============================================================================================
# One job: the baseline (if asked) and every candidate schedule on one task, paired
# =============================================================================================
def _task_job(job: tuple[Task, int, list[dict[str, np.ndarray]], bool, dict[str, Any]]) -> dict[str, Any]:
    """(step-curve AULC in points, fits) of the baseline (if asked) and of each candidate on one task."""
    from metalearn.schedules.learned import LearnedSchedule
    from metalearn.schedules.registry import make_schedule
    from metalearn.simulation.loop import simulate
    from metalearn.strategies.resolve import resolve_strategy

    task, seed, candidates, with_baseline, setup = job
    arch = SizeModelArchitecture.from_dict(setup["architecture"])

    def run(schedule: Any) -> list[float]:
        # A fresh strategy per run: every schedule meets the same picks' random stream.
        strategy = resolve_strategy(setup["strategy"], label_budget=task.label_budget, random_state=seed)
        result = simulate(task, strategy, schedule=schedule)
        return [100.0 * float(result.step_aulc_accuracy), float(result.n_fits)]

    out: dict[str, Any] = {"task": task.name}
    if with_baseline:
        out["baseline"] = run(make_schedule(setup["baseline"]))
    out["candidates"] = [
        run(LearnedSchedule(ScheduleFile(arch=arch, params=params, metadata=dict(setup["metadata"]))))
        for params in candidates
    ]
    return out


def _run_candidates(
    tasks: list[Task],
    seeds: list[int],
    candidates: list[dict[str, np.ndarray]],
    baseline: np.ndarray | None,
    config: ScheduleTrainConfig,
    arch: SizeModelArchitecture,
    desc: str | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Baseline (n_tasks, 2) and candidates (n_candidates, n_tasks, 2) of (AULC points, fits); baseline run if None."""
    setup = {"architecture": arch.to_dict(), "strategy": config.strategy, "baseline": config.baseline_schedule,
             "metadata": _schedule_metadata(config)}
    jobs = [(t, s, candidates, baseline is None, setup) for t, s in zip(tasks, seeds)]
    results = parallel_map(_task_job, jobs, n_jobs=config.n_jobs, dask=config.dask, desc=desc)
    baseline_out = np.array([r["baseline"] for r in results], dtype=np.float64) if baseline is None else baseline
    scores = np.array([r["candidates"] for r in results], dtype=np.float64).reshape(len(tasks), len(candidates), 2)
    return baseline_out, scores.transpose(1, 0, 2)


def _objective(scores: np.ndarray, baseline: np.ndarray, price: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean paired objective (points) of each candidate against the baseline, and its standard error."""
    charged = scores[..., 0] - price * scores[..., 1]
    delta = charged - (baseline[:, 0] - price * baseline[:, 1])[None, :]
    se = delta.std(axis=1, ddof=1) / math.sqrt(delta.shape[1]) if delta.shape[1] > 1 else np.zeros(delta.shape[0])
    return delta.mean(axis=1), se


# =============================================================================================
# The training run
# =============================================================================================
def train_schedule(config: ScheduleTrainConfig, resume: bool = False, progress: bool = True) -> TrainingResult:
    """Search the size chooser with CMA-ES on step-curve AULC minus a price per fit, against a baseline rule.

    Parameters
    ----------
    config : ScheduleTrainConfig
    resume : bool
        Continue the checkpoint in ``config.out_dir`` (identical to an uninterrupted run);
        without a checkpoint, start fresh (said in one line).
    progress : bool
        Progress bars and one line per generation.

    Returns
    -------
    TrainingResult
        ``policy_path``: the best mean on the held-in tasks (``schedule.safetensors``);
        ``last_path``: the final distribution mean (``last.safetensors``).
    """
    require_extra("train", "schedule training (metalearn train --method schedule)")
    config.validate()
    arch = schedule_architecture(config)
    dimension = _dimension(arch)
    price = float(config.price_per_fit)
    suite = resolve_suite(config.suite)
    run = start_run(config, "schedule", resume, PROGRESS_FIELDS)
    schedule_path = run.out / SCHEDULE_NAME

    # -- state: fresh, or replayed from the checkpoint ------------------------------------------
    search = cma_search.new_search(dimension, seed=config.seed, sigma0=config.sigma0, population=config.population)
    state, best_vector = cma_search.resume(run, search, {"generations": [], "selection_baseline": None})

    # -- the held-in tasks of keep-the-best, with the baseline's runs computed once ------------------
    selection_tasks, selection_seeds = cma_search.selection_tasks(config)
    if config.selection_tasks:
        if state["selection_baseline"] is None:
            baseline, _ = _run_candidates(selection_tasks, selection_seeds, [], None, config, arch,
                                          "held-in baseline" if progress else None)
            state["selection_baseline"] = baseline.tolist()
            cma_search.save(run, state, best_vector)

    def select(vector: np.ndarray, generation: int) -> dict[str, float]:
        baseline = np.asarray(state["selection_baseline"], dtype=np.float64)
        _, scores = _run_candidates(selection_tasks, selection_seeds, [params_from_vector(vector, arch)], baseline,
                                    config, arch, f"held-in gen {generation}" if progress else None)
        mean, se = _objective(scores, baseline, price)
        return {
            "generation": generation, "objective": float(mean[0]), "se": float(se[0]),
            "step_aulc": float(scores[0, :, 0].mean()), "fits": float(scores[0, :, 1].mean()),
            "baseline_step_aulc": float(baseline[:, 0].mean()), "baseline_fits": float(baseline[:, 1].mean()),
        }

    # -- generations --------------------------------------------------------------------------------
    while not run.should_stop(config):
        generation = run.state.iteration
        began = time.perf_counter()
        tasks, seeds = cma_search.generation_tasks(suite, config.problems_per_generation, config.seed, generation)
        candidates = cma_search.ask(search)
        baseline, scores = _run_candidates(
            tasks, seeds, [params_from_vector(x, arch) for x in candidates], None, config, arch,
            f"generation {generation}" if progress else None,
        )
        objective, se = _objective(scores, baseline, price)
        fitness = (-objective).tolist()  # CMA-ES minimises
        cma_search.tell(search, state, candidates, fitness, se)
        best = int(objective.argmax())
        row: dict[str, Any] = {
            "iteration": generation,
            "objective_mean": float(objective.mean()),
            "objective_best": float(objective[best]),
            "objective_best_se": float(se[best]),
            "fits_mean": float(scores[..., 1].mean()),
            "baseline_fits": float(baseline[:, 1].mean()),
            "sigma": float(search.sigma),
        }
        last = run.should_stop(config, extra_seconds=time.perf_counter() - began)
        if selection_tasks and (config.selection_due(generation) or last):
            mean_vector = cma_search.search_mean(search)
            chosen = select(mean_vector, generation)
            row.update(selection_delta=chosen["objective"], selection_se=chosen["se"], selection_fits=chosen["fits"])
            if run.keep_if_best(chosen["objective"], generation, chosen):
                best_vector = mean_vector
        run.end_iteration(row, time.perf_counter() - began)
        cma_search.save(run, state, best_vector)
        if progress:
            print(
                f"generation {generation}: objective mean {row['objective_mean']:+.3f}, best {row['objective_best']:+.3f} "
                f"(se {row['objective_best_se']:.3f}), fits {row['fits_mean']:.1f} (baseline {row['baseline_fits']:.1f}), "
                f"sigma {row['sigma']:.3f}"
                + (f", held-in {row['selection_delta']:+.3f} (se {row['selection_se']:.3f}, fits {row['selection_fits']:.1f})"
                   if "selection_delta" in row else ""),
                flush=True,
            )

    # -- schedule files: the final mean, and the best mean on the held-in tasks ------------------------
    final_vector = cma_search.search_mean(search)
    best_params = params_from_vector(best_vector if best_vector is not None else final_vector, arch)
    validation = None
    if run.state.best_validation is not None:
        chosen = run.state.best_validation
        validation = {
            "held_in_problems": len(selection_tasks),
            "held_in_delta_vs_baseline": chosen["objective"],
            "held_in_se": chosen["se"],
            "held_in_step_aulc": chosen["step_aulc"],
            "held_in_fits": chosen["fits"],
            "baseline_step_aulc": chosen["baseline_step_aulc"],
            "baseline_fits": chosen["baseline_fits"],
            "best_generation": chosen["generation"],
        }
    card = {
        **_schedule_metadata(config),
        "trainer": {"method": "schedule", "settings": run.settings},
        "task_suite": suite_label(config.suite),
        "seed": int(config.seed),
        "strategy": config.strategy,
        "objective": _OBJECTIVE,
        "price_per_fit": price,
        "baseline_schedule": config.baseline_schedule,
        "training": {
            "generations": run.state.iteration,
            "seconds": round(float(run.state.wall_seconds), 1),
            "dimension": dimension,
            "population": int(search.popsize),
            "problems_per_generation": config.problems_per_generation,
        },
    }
    if run.ran or not (run.last_path.is_file() and schedule_path.is_file()):
        # A resume of a finished run runs nothing and leaves its files as they are.
        save_schedule(run.last_path, arch, params_from_vector(final_vector, arch), {**card, "validation": None})
        save_schedule(schedule_path, arch, best_params, {**card, "validation": validation})
    result = run.result(policy_path=schedule_path)
    result.best_validation = validation
    return result
