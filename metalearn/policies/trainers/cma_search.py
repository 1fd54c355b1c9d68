"""The CMA-ES pieces the evolution-strategies trainers share (:mod:`.es`, :mod:`.schedule`).

Each trainer keeps its own generation loop, top to bottom; this module holds the steps both
loops take the same way: the tasks and strategy seeds of a generation (common random
numbers: seeded by the generation alone), a fresh search, asking and telling it while
recording the generation for the checkpoint, and replaying a checkpoint's generations into a
fresh search. Checkpoints hold no pickle: CMA-ES is deterministic given its seed and the
fitness values it was told, so a resume replays ``ask``/``tell`` without simulating and
reaches the identical state (the replayed candidates are checked against the stored ones).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from metalearn.exceptions import InvalidInputError
from metalearn.policies.trainers.base import Run, TrainerConfig
from metalearn.policies.trainers.suites import resolve_suite
from metalearn.tasks.task import Task

__all__ = [
    "task_seeds",
    "generation_seed",
    "generation_tasks",
    "selection_tasks",
    "new_search",
    "ask",
    "tell",
    "replay",
    "resume",
    "save",
    "search_mean",
]


def task_seeds(tasks: list[Task], seed: int) -> list[int]:
    """One strategy seed per task, spawned from ``seed``."""
    return [int(s.generate_state(1)[0] & 0x7FFFFFFF) for s in np.random.SeedSequence(seed).spawn(len(tasks))]


def generation_seed(seed: int, generation: int) -> int:
    """The seed of a generation's tasks: the run's seed and the generation alone."""
    return int(np.random.SeedSequence(entropy=seed, spawn_key=(generation, 7)).generate_state(1)[0] & 0x7FFFFFFF)


def generation_tasks(suite: Any, n_tasks: int, seed: int, generation: int) -> tuple[list[Task], list[int]]:
    """A generation's tasks from ``suite`` and their strategy seeds (every candidate runs on them)."""
    gen_seed = generation_seed(seed, generation)
    tasks = suite.tasks(n_tasks, seed=gen_seed)
    return tasks, task_seeds(tasks, gen_seed)


def selection_tasks(config: TrainerConfig) -> tuple[list[Task], list[int]]:
    """The fixed held-in tasks of keep-the-best and their seeds (none when ``selection_tasks`` is 0)."""
    if not config.selection_tasks:
        return [], []
    tasks = resolve_suite(config.selection_suite).tasks(config.selection_tasks, seed=config.selection_seed)
    return tasks, task_seeds(tasks, config.selection_seed)


def new_search(dimension: int, *, seed: int, sigma0: float, population: int | None, mirrored: bool = False) -> Any:
    """A fresh ``cma.CMAEvolutionStrategy`` starting at zero (seeded ``seed + 1``, silent, full covariance).

    Parameters
    ----------
    dimension : int
    seed : int
        The run's seed.
    sigma0 : float
        Initial step size.
    population : int or None
        Candidates per generation (None: CMA-ES's default, 4 + 3 ln(dimension)).
    mirrored : bool, default=False
        Unconditional mirrored sampling.
    """
    import cma

    # The search draws from a generator of its own, never numpy's global one: simulations run
    # in this process (--jobs 1) draw from the global generator too, and a resume, which replays
    # the generations without simulating, must be asked the same candidates.
    generator = np.random.default_rng(int(seed) + 1)

    def randn(lam: int, n: int) -> np.ndarray:
        return generator.standard_normal((lam, n))

    options: dict[str, Any] = {"seed": int(seed) + 1, "verbose": -9, "CMA_diagonal": False, "randn": randn}
    if population is not None:
        options["popsize"] = int(population)
    if mirrored:
        popsize = int(population) if population is not None else 4 + int(3 * math.log(dimension))
        # Unconditional mirroring: every other candidate is the previous one reflected about the
        # mean, so a pair's difference measures the step direction with the tasks' noise shared.
        options.update(CMA_mirrors=popsize // 2, CMA_mirrormethod=0)
    return cma.CMAEvolutionStrategy(np.zeros(dimension), float(sigma0), options)


def ask(search: Any) -> list[np.ndarray]:
    """The generation's candidate vectors (float64)."""
    return [np.asarray(x, dtype=np.float64) for x in search.ask()]


def tell(search: Any, state: dict[str, Any], candidates: list[np.ndarray], fitness: list[float], se: np.ndarray) -> None:
    """Tell the search the candidates' fitness (lower is better) and record the generation in ``state``."""
    search.tell(candidates, fitness)
    state["generations"].append({"candidates": [c.tolist() for c in candidates], "fitness": fitness, "se": se.tolist()})


def replay(search: Any, generations: list[dict[str, Any]]) -> None:
    """Replay a checkpoint's generations into a fresh search (no simulation).

    Raises
    ------
    InvalidInputError
        The search does not propose the stored candidates (another ``cma`` version).
    """
    for record in generations:
        proposed = np.asarray(search.ask())
        stored = np.asarray(record["candidates"], dtype=np.float64)
        if proposed.shape != stored.shape or not np.allclose(proposed, stored, rtol=0, atol=1e-12):
            raise InvalidInputError(
                "cannot resume: CMA-ES does not replay to the stored candidates (another cma version?); "
                "start a fresh run in a new --out folder"
            )
        search.tell(list(stored), list(record["fitness"]))


def resume(run: Run, search: Any, state: dict[str, Any]) -> tuple[dict[str, Any], np.ndarray | None]:
    """The state and kept best vector: ``state`` as given for a fresh run, else the checkpoint's, replayed into ``search``."""
    if run.saved is None:
        return state, None
    state = {k: run.saved[k] for k in state}
    replay(search, state["generations"])
    saved_best = run.saved_tensors["best_vector"]  # type: ignore[index]
    return state, (saved_best if saved_best.size else None)


def save(run: Run, state: dict[str, Any], best: np.ndarray | None) -> None:
    """Checkpoint the recorded generations and the kept best vector (empty when none)."""
    run.save({"best_vector": best if best is not None else np.zeros(0)}, **state)


def search_mean(search: Any) -> np.ndarray:
    """The search distribution's mean (float64)."""
    return np.asarray(search.mean, dtype=np.float64)
