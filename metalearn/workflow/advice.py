"""Advice of one ``next-batch`` run: the stopping rule's and the batch schedule's, their histories kept in the state."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from metalearn.common.text import printable
from metalearn.exceptions import InvalidInputError
from metalearn.workflow.state import _SCHEDULE_PREFIX, _STOP_PREFIX, StateFileError


@contextlib.contextmanager
def _restoring(what: str, state_path: Path | None) -> Iterator[None]:
    """Turn a failure to restore a rule's history from the state into a :class:`StateFileError`."""
    try:
        yield
    except (InvalidInputError, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise StateFileError(
            f"state file {printable(state_path)!r}: its {what} history cannot be restored ({printable(exc)}); "
            "delete it to start over"
        ) from None


def _stopping_advice(
    stop_rule: Any, X: np.ndarray, y: np.ndarray, clf: Any, saved: dict[str, Any] | None,
    saved_arrays: dict[str, np.ndarray], old_positions: np.ndarray | None, seed: int, notes: list[str],
    state_path: Path | None = None,
) -> tuple[bool | None, str | None, dict[str, Any] | None, tuple[dict[str, np.ndarray], dict[str, Any]] | None]:
    """Ask the stopping rule (its history restored from the state) whether to stop; its new state."""
    if stop_rule is None:
        return None, None, None, None
    from metalearn.stopping import LearnedStoppingRule, load_stopping_rule

    rule = load_stopping_rule(stop_rule, missing_label=None, random_state=seed)
    if clf is None:
        notes.append("no stopping advice without a model (label records of two classes first)")
        return None, rule.describe(), None, None
    previous = saved.get("stopping") if saved is not None else None
    if isinstance(previous, dict) and previous.get("rule") == rule.name and previous.get("spec") == str(stop_rule):
        rule_arrays = {k[len(_STOP_PREFIX):]: v for k, v in saved_arrays.items() if k.startswith(_STOP_PREFIX)}
        identity = old_positions is not None and np.array_equal(old_positions, np.arange(X.shape[0]))
        with _restoring("stopping-rule", state_path):
            if isinstance(rule, LearnedStoppingRule):
                rule.load_history(X, rule_arrays, previous, old_positions)
            elif identity:
                rule.set_state(rule_arrays, previous)
            else:
                notes.append(f"the records changed since the last run: the {rule.name} stopping rule starts a fresh history")
    elif isinstance(previous, dict):
        notes.append(f"stopping rule changed ({previous.get('spec')} -> {printable(stop_rule)}): it starts a fresh history")
    stop = rule.should_stop(X, y, clf)
    estimate = dict(rule.estimate_) if isinstance(rule, LearnedStoppingRule) else None
    state = rule.get_state()
    assert state is not None
    arrays, meta = state
    return stop, rule.describe(), estimate, (arrays, {**meta, "spec": str(stop_rule)})


def _schedule_advice(
    schedule: Any, X: np.ndarray, y: np.ndarray, clf: Any, budget_left: int, saved: dict[str, Any] | None,
    saved_arrays: dict[str, np.ndarray], old_positions: np.ndarray | None, notes: list[str],
    state_path: Path | None = None,
) -> tuple[int | None, str | None, tuple[dict[str, np.ndarray], dict[str, Any]] | None]:
    """Ask the schedule (its history restored from the state) for the next batch size; its line and new state."""
    if schedule is None:
        return None, None, None
    from metalearn.schedules import load_schedule

    rule = load_schedule(schedule, missing_label=None)
    previous = saved.get("schedule") if saved is not None else None
    if budget_left < 1:
        notes.append(f"the label budget is spent ({budget_left} left): no schedule advice (raise --budget to go on)")
        return None, None, _kept_schedule_state(previous, saved_arrays, old_positions)
    if rule.requires_classifier and clf is None:
        notes.append("no schedule advice without a model (label records of two classes first)")
        return None, None, _kept_schedule_state(previous, saved_arrays, old_positions)
    if isinstance(previous, dict) and previous.get("spec") == str(schedule):
        rule_arrays = {k[len(_SCHEDULE_PREFIX):]: v for k, v in saved_arrays.items() if k.startswith(_SCHEDULE_PREFIX)}
        with _restoring("schedule", state_path):
            rule.load_history(X, rule_arrays, previous, old_positions)
    elif isinstance(previous, dict):
        notes.append(f"schedule changed ({printable(previous.get('spec'))} -> {printable(schedule)}): it starts again at loop 1")
    size = rule.next_batch_size(X, y, clf, budget_left=budget_left)
    state = rule.get_state()
    assert state is not None
    arrays, meta = state
    return size, rule.explain(size), (arrays, {**meta, "spec": str(schedule)})


def _kept_schedule_state(
    previous: Any, saved_arrays: dict[str, np.ndarray], old_positions: np.ndarray | None
) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """The saved schedule section, kept as it is when the schedule was not asked (same records only)."""
    if not isinstance(previous, dict):
        return None
    arrays = {k[len(_SCHEDULE_PREFIX):]: v for k, v in saved_arrays.items() if k.startswith(_SCHEDULE_PREFIX)}
    if arrays and (old_positions is None or not np.array_equal(old_positions, np.arange(old_positions.size))):
        return None  # a history of other records cannot be kept as it is
    return arrays, previous
