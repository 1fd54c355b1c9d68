"""The project's own exception and warning types.

Every error a user can provoke with bad input is one of these, so callers can catch
``MetalearnError`` and still tell a wrong value (``InvalidInputError``, a ``ValueError``)
from a wrong type (``InvalidTypeError``, a ``TypeError``).
"""

from __future__ import annotations

__all__ = [
    "MetalearnError",
    "InvalidInputError",
    "InvalidTypeError",
    "NotFittedClassifierError",
    "UnknownNameError",
    "DatasetError",
    "TaskSuiteError",
    "FeatureSchemaError",
    "PolicyFileError",
    "MissingDependencyError",
    "StoppingRuleFileError",
    "ScheduleFileError",
    "OutputFileError",
    "ResultFolderError",
    "PoolChangedWarning",
]


class MetalearnError(Exception):
    """Base class of every error raised by metalearn."""


class InvalidInputError(MetalearnError, ValueError):
    """An argument has the right type but a value metalearn cannot use."""


class InvalidTypeError(MetalearnError, TypeError):
    """An argument is of a type metalearn cannot use (e.g. a classifier without ``predict_proba``)."""


class NotFittedClassifierError(InvalidInputError):
    """The classifier passed to a strategy has not been fitted yet."""


class UnknownNameError(InvalidInputError, KeyError):
    """A name (strategy, model, dataset, generator...) is not registered; the message lists valid ones."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class DatasetError(InvalidInputError):
    """A dataset file, folder or manifest cannot be read or does not fit the expected format."""


class TaskSuiteError(InvalidInputError):
    """A task-suite definition (TOML) is malformed or names something unknown."""


class FeatureSchemaError(InvalidInputError):
    """A feature schema is unknown, or its version cannot be computed by this release."""


class PolicyFileError(InvalidInputError):
    """A policy file cannot be used: missing, not a metalearn policy (e.g. a pickle or a zip
    checkpoint), truncated, corrupted, or holding weights or metadata this release refuses."""


class OutputFileError(InvalidInputError, OSError):
    """An output file cannot be written: the target is not a regular file (a device, a FIFO, a
    folder, or a symlink to one), or the write failed (disk full, file-size limit, read-only
    folder). The target is left as it was. An ``OSError`` too, so callers that catch write
    failures keep working."""


class ResultFolderError(InvalidInputError):
    """A benchmark result folder holds a file metalearn refuses: a configuration or results
    table of the wrong shape, or a run whose id is not a safe file name (ids become paths)."""


class MissingDependencyError(MetalearnError, ImportError):
    """A feature needs an optional dependency that is not installed; the message names the
    extra to install (e.g. ``pip install "metalearn-al[train]"``)."""
class StoppingRuleFileError(PolicyFileError):
    """A stopping-rule file cannot be used: missing, not a metalearn stopping rule (a querying
    policy, a pickle, a checkpoint), truncated, corrupted, or holding weights or metadata this
    release refuses."""


class ScheduleFileError(PolicyFileError):
    """A batch-schedule file cannot be used: missing, not a metalearn schedule (a policy, a
    stopping rule, a pickle), truncated, corrupted, or holding weights or metadata this release
    refuses."""


class PoolChangedWarning(UserWarning):
    """A stateful strategy saw a pool of a different size and started a fresh metadata history."""
