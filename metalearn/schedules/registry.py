"""Schedule rules by name, and the one parser of rule specs (``fixed:10``, ``geometric:2:2:start=1``).

A spec is ``NAME[:VALUE...][:KEY=VALUE...]``: the rule's name, then values of its
``spec_parameters`` by position, then any constructor parameter by keyword. Values are numbers
(an integer where one is written, otherwise a float); the rule checks them at its first call.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

from metalearn.common.text import printable
from metalearn.exceptions import InvalidInputError, UnknownNameError
from metalearn.schedules.base import BatchSchedule
from metalearn.schedules.rules import FixedSchedule, GeometricSchedule

__all__ = ["SCHEDULE_RULES", "register_schedule", "schedule_rule_names", "parse_schedule_spec", "make_schedule",
           "is_rule_spec"]

#: Registered rule classes by name.
SCHEDULE_RULES: dict[str, type[BatchSchedule]] = {}

S = TypeVar("S", bound=type[BatchSchedule])

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_MAX_SPEC_LENGTH = 200


def register_schedule(cls: S) -> S:
    """Register a rule class under ``cls.name``. Usable as a decorator."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name to register under")
    SCHEDULE_RULES[cls.name] = cls
    return cls


register_schedule(FixedSchedule)
register_schedule(GeometricSchedule)


def schedule_rule_names() -> list[str]:
    """Names of the registered rules."""
    return list(SCHEDULE_RULES)


def is_rule_spec(text: object) -> bool:
    """Whether ``text`` names a registered rule (its part before the first ``:``)."""
    return isinstance(text, str) and text.split(":", 1)[0].strip().lower() in SCHEDULE_RULES


def _number(text: str, spec: str) -> int | float:
    if not _NUMBER.match(text):
        raise InvalidInputError(f"schedule spec {printable(spec)!r}: {printable(text)!r} is not a number")
    if re.match(r"^[+-]?\d+$", text):
        return int(text)
    return float(text)


def parse_schedule_spec(spec: str) -> tuple[type[BatchSchedule], dict[str, Any]]:
    """The rule class and constructor parameters a spec names.

    Parameters
    ----------
    spec : str
        ``fixed:N``, ``geometric:R``, ``geometric:R:EVERY``, ``geometric:R:EVERY:start=S``...

    Returns
    -------
    cls : type of BatchSchedule
    params : dict of str to number

    Raises
    ------
    UnknownNameError
        An unknown rule name or keyword (the message lists the valid ones).
    InvalidInputError
        A malformed spec: not text, too long, a value that is no number, too many values, a
        parameter given twice.
    """
    if not isinstance(spec, str):
        raise InvalidInputError(f"a schedule spec is text such as 'fixed:10', got {type(spec).__name__}")
    if len(spec) > _MAX_SPEC_LENGTH:
        raise InvalidInputError(f"schedule spec of {len(spec)} characters; at most {_MAX_SPEC_LENGTH}")
    name, *parts = [part.strip() for part in spec.strip().split(":")]
    cls = SCHEDULE_RULES.get(name.lower())
    if cls is None:
        raise UnknownNameError(
            f"unknown schedule rule {printable(name[:60])!r}; rules: {', '.join(f'{n}:...' for n in SCHEDULE_RULES)}"
        )
    positional: tuple[str, ...] = getattr(cls, "spec_parameters", ())
    valid = [p for p in cls._get_param_names() if p != "missing_label"]
    params: dict[str, Any] = {}
    for i, part in enumerate(parts):
        key, sep, value = part.partition("=")
        if sep:
            key = key.strip()
            if key not in valid:
                raise UnknownNameError(
                    f"schedule spec {printable(spec)!r}: {cls.name} has no parameter {printable(key[:60])!r}; "
                    f"parameters: {', '.join(valid)}"
                )
        else:
            if i >= len(positional) or any("=" in p for p in parts[:i]):
                raise InvalidInputError(
                    f"schedule spec {printable(spec)!r}: {cls.name} takes at most {len(positional)} value(s) by position "
                    f"({', '.join(positional)}), before any KEY=VALUE"
                )
            key, value = positional[i], part
        if key in params:
            raise InvalidInputError(f"schedule spec {printable(spec)!r}: {key} is given twice")
        params[key] = _number(value.strip(), spec)
    return cls, params


def make_schedule(spec: str, **params: Any) -> BatchSchedule:
    """A rule from its spec (``fixed:10``), with extra constructor parameters (``missing_label``).

    The parameters are checked here, so a bad value fails before the first loop.
    """
    cls, parsed = parse_schedule_spec(spec)
    clash = sorted(set(parsed) & set(params))
    if clash:
        raise InvalidInputError(f"schedule spec {printable(spec)!r} and the keyword arguments both set {clash}")
    unknown = sorted(set(params) - set(cls._get_param_names()))
    if unknown:
        raise UnknownNameError(f"{cls.name}: unknown parameter(s) {unknown}; it takes {', '.join(cls._get_param_names())}")
    schedule = cls(**parsed, **params)
    schedule.check_params()
    return schedule
