"""``load_schedule``: a released learned schedule, a schedule file, or a rule spec (``fixed:N``, ``geometric:...``)."""

from __future__ import annotations

import os
from typing import Any

from metalearn.exceptions import UnknownNameError
from metalearn.policies.names import looks_like_path
from metalearn.schedules.base import BatchSchedule
from metalearn.schedules.file import ScheduleFile
from metalearn.schedules.learned import LearnedSchedule
from metalearn.schedules.registry import is_rule_spec, make_schedule

__all__ = ["load_schedule"]


def load_schedule(name_or_path: str | os.PathLike[str] | ScheduleFile = "default", **params: Any) -> BatchSchedule:
    """A batch schedule with ``next_batch_size(X, y, clf, budget_left=...)`` (numpy only).

    Parameters
    ----------
    name_or_path : str, path-like or ScheduleFile, default="default"
        A rule spec (``fixed:N``, ``geometric:R``, ``geometric:R:EVERY``,
        ``geometric:R:EVERY:start=S``), the name of a released learned schedule, or a schedule
        file. A rule spec that is not clearly a path is the rule; anything else is resolved as
        every released name is (:func:`~metalearn.policies.names.resolve_named_file`).
    **params
        Constructor parameters (``missing_label``).

    Returns
    -------
    BatchSchedule
        Call ``schedule.next_batch_size(X, y, clf, budget_left=B - n_labeled)`` once per loop,
        after fitting ``clf``; it answers between 1 and ``budget_left``.

    Raises
    ------
    ScheduleFileError, UnknownNameError, InvalidInputError
        A bad or unknown file, name or spec (checked here, not at the first call), or a bad
        parameter. No learned schedule is released yet: ``"default"`` raises an
        :class:`UnknownNameError` naming the rules to use.
    """
    if isinstance(name_or_path, ScheduleFile):
        schedule: BatchSchedule = LearnedSchedule(name_or_path, **params)
    elif is_rule_spec(name_or_path) and not looks_like_path(name_or_path):
        return make_schedule(str(name_or_path), **params)
    else:
        unknown = sorted(set(params) - set(LearnedSchedule._get_param_names()) - {"schedule_file"})
        if unknown:
            raise UnknownNameError(f"learned schedule: unknown parameter(s) {unknown}; it takes missing_label")
        schedule = LearnedSchedule(name_or_path, **params)
    schedule.check_params()
    return schedule
