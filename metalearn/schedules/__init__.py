"""How many records to buy before each retrain: batch schedules (fixed, geometric, learned).

``load_schedule("fixed:10")`` (a rule spec, a released learned schedule, or a schedule file)
returns a schedule whose ``next_batch_size(X, y, clf, budget_left=...)`` takes the same
arguments as a strategy's ``query`` and answers between 1 and ``budget_left``. Inference needs
numpy only; learned schedules are written with :func:`save_schedule` (the same container as
policies and stopping rules).
"""

from metalearn.schedules.base import MAX_BATCH_SIZE, BatchSchedule
from metalearn.schedules.file import (
    ScheduleFile,
    format_schedule_card,
    read_schedule,
    released_schedule_names,
    save_schedule,
)
from metalearn.schedules.learned import LearnedSchedule
from metalearn.schedules.loading import load_schedule
from metalearn.schedules.model import NumpySizeModel, SizeModelArchitecture, size_parameter_shapes
from metalearn.schedules.registry import (
    SCHEDULE_RULES,
    make_schedule,
    parse_schedule_spec,
    register_schedule,
    schedule_rule_names,
)
from metalearn.schedules.rules import FixedSchedule, GeometricSchedule

__all__ = [
    "BatchSchedule",
    "MAX_BATCH_SIZE",
    "FixedSchedule",
    "GeometricSchedule",
    "LearnedSchedule",
    "SCHEDULE_RULES",
    "register_schedule",
    "schedule_rule_names",
    "parse_schedule_spec",
    "make_schedule",
    "load_schedule",
    "ScheduleFile",
    "SizeModelArchitecture",
    "NumpySizeModel",
    "size_parameter_shapes",
    "save_schedule",
    "read_schedule",
    "released_schedule_names",
    "format_schedule_card",
]
