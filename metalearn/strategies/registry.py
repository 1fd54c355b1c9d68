"""Strategies by name, so the CLI, the benchmark and the tests find every one of them."""

from __future__ import annotations

from typing import Any, TypeVar

from metalearn.exceptions import UnknownNameError
from metalearn.strategies.base import QueryStrategy

__all__ = ["register_strategy", "make_strategy", "strategy_names", "get_strategy_class", "STRATEGIES"]

#: Registered strategy classes by canonical name.
STRATEGIES: dict[str, type[QueryStrategy]] = {}
_ALIASES: dict[str, str] = {}

S = TypeVar("S", bound=type[QueryStrategy])


def register_strategy(cls: S, *, aliases: tuple[str, ...] = ()) -> S:
    """Register a strategy class under ``cls.name`` (and aliases). Usable as a decorator."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name to register under")
    STRATEGIES[cls.name] = cls
    for alias in aliases:
        _ALIASES[alias] = cls.name
    return cls


def strategy_names() -> list[str]:
    """Canonical names of the registered strategies."""
    return list(STRATEGIES)


def get_strategy_class(name: str) -> type[QueryStrategy]:
    """The class registered under ``name`` or an alias (case-insensitive)."""
    key = str(name).strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in STRATEGIES:
        raise UnknownNameError(
            f"unknown strategy {name!r}; valid names: {', '.join(STRATEGIES)}"
            + (f" (aliases: {', '.join(sorted(_ALIASES))})" if _ALIASES else "")
        )
    return STRATEGIES[key]


def make_strategy(name: str, **params: Any) -> QueryStrategy:
    """Instantiate a registered strategy with constructor parameters."""
    return get_strategy_class(name)(**params)
