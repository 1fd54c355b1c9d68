"""Pieces shared by the active-learning environments: argument checks, episode start, rewards."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from metalearn.common.threads import limited_threads
from metalearn.exceptions import InvalidInputError, InvalidTypeError
from metalearn.features.pool_features import PoolFeatureExtractor
from metalearn.features.registry import schema_entry
from metalearn.features.schema import POOL_SCHEMA
from metalearn.features.schema_spec import RegisteredSchema
from metalearn.simulation.metrics import area_under_learning_curve
from metalearn.simulation.process import ActiveLearningProcess
from metalearn.tasks.task import Task

__all__ = [
    "REWARDS",
    "METRICS",
    "check_choice",
    "check_discrete_action",
    "check_task_source",
    "resolve_task_suite",
    "sample_task",
    "curve_scores",
    "loop_reward",
    "tail_reward",
    "process_aulc",
    "update_extractor",
    "fitted_process",
    "start_process",
]

#: Reward modes: ``auc`` pays learning-curve area (return = AULC), ``improvement`` score gains.
REWARDS: tuple[str, ...] = ("auc", "improvement")
#: Test metrics a reward can be computed from.
METRICS: tuple[str, ...] = ("accuracy", "macro_f1")


class _SamplesTasks(Protocol):
    def sample_task(self, rng: np.random.Generator) -> Task: ...


def check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise a project error listing them."""
    if not isinstance(value, str):
        raise InvalidTypeError(f"{name} must be a string, one of {', '.join(choices)}; got {type(value).__name__}")
    if value not in choices:
        raise InvalidInputError(f"unknown {name} {value!r}; valid values: {', '.join(choices)}")
    return value


def check_discrete_action(action: Any, n: int, expected: str) -> int:
    """Return ``action`` as an int in ``[0, n)``, else raise a project error saying what was expected.

    Accepts Python and numpy integers (bools included), integral floats such as ``1.0`` and
    one-element arrays of those; refuses fractions, NaN, infinities, strings, ``None`` and
    several values, rather than truncating them to some other action.
    """
    try:
        value = np.asarray(action).item()
    except (TypeError, ValueError):  # not a single value
        raise InvalidInputError(f"action must be {expected}, got {action!r}") from None
    if isinstance(value, (bool, numbers.Integral)):
        integer = int(value)
    elif isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
        integer = int(float(value))
    else:
        raise InvalidInputError(f"action must be {expected}, got {action!r}")
    if not 0 <= integer < n:
        raise InvalidInputError(f"action {integer} is outside the action space [0, {n}): it must be {expected}")
    return integer


def check_task_source(task_suite: Any, tasks: Sequence[Task] | None) -> tuple[_SamplesTasks | None, tuple[Task, ...] | None]:
    """Validate the ``task_suite`` / ``tasks`` pair; returns ``(suite, None)`` or ``(None, tasks)``.

    A suite name or path is loaded here (parsing a TOML file is cheap; datasets are only read
    when a task is drawn), so a wrong name fails at construction rather than at the first reset.
    """
    if tasks is not None:
        if task_suite is not None:
            raise InvalidInputError("give either task_suite or tasks, not both")
        if isinstance(tasks, Task):  # a lone Task is a common slip; accept it as a one-task list
            tasks = [tasks]
        if isinstance(tasks, (str, bytes)) or not isinstance(tasks, Sequence):
            raise InvalidTypeError(f"tasks must be a sequence of Task objects, got {type(tasks).__name__}")
        tasks = tuple(tasks)
        if not tasks:
            raise InvalidInputError("tasks is empty: give at least one Task")
        bad = [type(t).__name__ for t in tasks if not isinstance(t, Task)]
        if bad:
            raise InvalidTypeError(f"tasks must contain only Task objects; found {', '.join(sorted(set(bad)))}")
        return None, tasks
    if task_suite is None or isinstance(task_suite, (str, os.PathLike)):
        return resolve_task_suite(task_suite), None
    if not callable(getattr(task_suite, "sample_task", None)):
        raise InvalidTypeError(
            "task_suite must be a TaskSuite (an object with sample_task(rng)), a suite name or path, or None; "
            f"got {type(task_suite).__name__}"
        )
    return task_suite, None


def resolve_task_suite(spec: _SamplesTasks | str | os.PathLike[str] | None) -> _SamplesTasks:
    """Turn a suite name/path or ``None`` (the default suite) into a suite object."""
    # Imported here: only environments that sample from a suite need the suite machinery.
    from metalearn.tasks.suite import default_task_suite, load_task_suite

    if spec is None:
        return default_task_suite()
    if isinstance(spec, (str, os.PathLike)):
        return load_task_suite(spec)
    return spec


def sample_task(
    rng: np.random.Generator,
    suite: _SamplesTasks | None,
    tasks: tuple[Task, ...] | None,
    options: dict[str, Any] | None,
) -> Task:
    """The task of a new episode: ``options["task"]``, else one drawn from the tasks or the suite."""
    if options and options.get("task") is not None:
        task = options["task"]
        if not isinstance(task, Task):
            raise InvalidTypeError(f"options['task'] must be a Task, got {type(task).__name__}")
        return task
    if tasks is not None:
        return tasks[int(rng.integers(len(tasks)))]
    assert suite is not None  # check_task_source returns one of the two
    return suite.sample_task(rng)


def curve_scores(process: ActiveLearningProcess, metric: str) -> list[float]:
    """The recorded learning curve of ``metric``."""
    return process.accuracy if metric == "accuracy" else process.macro_f1


def loop_reward(process: ActiveLearningProcess, reward: str, metric: str) -> float:
    """Reward of the curve point just recorded (its segment area, or its score gain)."""
    if reward == "auc":
        return float(process.last_segment_area(metric))
    scores = curve_scores(process, metric)
    return float(scores[-1] - scores[-2]) if len(scores) >= 2 else 0.0


def tail_reward(process: ActiveLearningProcess, reward: str, metric: str) -> float:
    """Reward for budget left unused at episode end.

    ``area_under_learning_curve`` extends a curve that stops early flat at its last score;
    paying that flat area here keeps the ``auc`` return equal to it. A flat segment gains no
    score, so ``improvement`` pays nothing.
    """
    left = process.budget_left
    if reward != "auc" or left <= 0:
        return 0.0
    return float(curve_scores(process, metric)[-1] * left / process.task.label_budget)


def process_aulc(process: ActiveLearningProcess, metric: str) -> float:
    """Normalised area under the process's learning curve for ``metric``."""
    return area_under_learning_curve(
        np.asarray(process.n_bought), np.asarray(curve_scores(process, metric)), process.task.label_budget
    )


def update_extractor(extractor: PoolFeatureExtractor, process: ActiveLearningProcess) -> None:
    """Record the current model's predictions on the whole pool (the INFER step)."""
    model = process.model
    assert model is not None  # fit() always runs before this
    with limited_threads():
        proba = model.predict_proba(process.task.X_pool)
    extractor.update(proba, np.asarray(model.classes_), process.labeled, process.label_indices())


def fitted_process(task: Task) -> ActiveLearningProcess:
    """The task's process with its initial model fitted and scored; refuses a task with nothing to query."""
    process = ActiveLearningProcess(task)
    if process.done:
        raise InvalidInputError(
            f"task {task.name!r} has nothing to query: its pool has no unlabeled record beyond the initial set"
        )
    process.fit()
    process.evaluate()
    return process


def start_process(
    task: Task, window: int, rng: np.random.Generator, schema: RegisteredSchema | str = POOL_SCHEMA.id
) -> tuple[ActiveLearningProcess, PoolFeatureExtractor]:
    """Fit and score the initial model, and build the feature extractor with its first loop.

    ``schema``: the registered schema (or its id) whose extractor computes the features; one
    with a multi-loop history (not probabilities-only).
    """
    entry = schema if isinstance(schema, RegisteredSchema) else schema_entry(schema)
    if entry.probabilities_only:
        raise InvalidInputError(f"start_process builds a history extractor; schema {entry.id} is probabilities-only")
    process = fitted_process(task)
    # An int seed drawn from np_random keeps the extractor's reference samples on the episode seed.
    extractor: PoolFeatureExtractor = entry.build_extractor(
        task.X_pool,
        window=window,
        label_budget=task.label_budget,
        batch_size=task.batch_size,
        seed=int(rng.integers(0, 2**31 - 1)),
    )
    update_extractor(extractor, process)
    return process, extractor
