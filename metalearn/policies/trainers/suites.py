"""Task-suite resolution for the trainers: a suite name, TOML path or TaskSuite, and its label."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported lazily at run time
    from metalearn.tasks.suite import TaskSuite

__all__ = ["resolve_suite", "suite_label"]

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
