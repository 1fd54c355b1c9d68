"""``load_stopping_rule``: a released learned rule, a rule file, or a classic criterion by name."""

from __future__ import annotations

import inspect
import os
from typing import Any, TypeVar

from metalearn.common.text import printable
from metalearn.exceptions import UnknownNameError
from metalearn.policies.names import looks_like_path
from metalearn.stopping.base import StoppingRule
from metalearn.stopping.classic import CLASSIC_RULES
from metalearn.stopping.file import StoppingRuleFile, released_stopping_rule_names

__all__ = ["load_stopping_rule", "stopping_rule_names"]

RuleT = TypeVar("RuleT", bound=StoppingRule)


def stopping_rule_names() -> list[str]:
    """Names ``load_stopping_rule`` accepts: the classic criteria and the released learned rules."""
    return [*CLASSIC_RULES, *released_stopping_rule_names()]


def load_stopping_rule(name_or_path: str | os.PathLike[str] | StoppingRuleFile = "default", **params: Any) -> StoppingRule:
    """A stopping rule with ``should_stop(X, y, clf)`` (numpy only; torch is never imported).

    Parameters
    ----------
    name_or_path : str, path-like or StoppingRuleFile, default="default"
        A classic criterion's name (``stabilizing_predictions``, ``overall_uncertainty``,
        ``max_confidence``, ``classification_change``, ``fixed_budget``), the name of a
        released learned rule (``default``), or a learned rule's file. A classic name that is
        not clearly a path is the classic criterion; anything else is resolved as every
        released name is (:func:`~metalearn.policies.names.resolve_named_file`: a released
        rule wins over a file or folder of the same name in the working directory; write
        ``./name`` for that one).
    **params
        The rule's parameters: for the learned rule ``threshold`` (accuracy points; the
        knob), ``patience``, ``missing_label``, ``random_state``; for the classic ones their
        thresholds (see :mod:`metalearn.stopping.classic`).

    Returns
    -------
    StoppingRule
        Call ``rule.should_stop(X, y, clf)`` once per loop, after fitting ``clf``. A learned
        rule also exposes ``rule.estimate_`` (expected gain and its quantiles).

    Raises
    ------
    StoppingRuleFileError, UnknownNameError, InvalidInputError
        A bad or unknown file or name (checked here, not at the first call), or a bad parameter.
    """
    from metalearn.stopping.learned import LearnedStoppingRule

    if isinstance(name_or_path, StoppingRuleFile):
        rule: StoppingRule = _build(LearnedStoppingRule, params, name_or_path)
    else:
        text = os.fspath(name_or_path) if isinstance(name_or_path, (str, os.PathLike)) else None
        if text is not None and text in CLASSIC_RULES and not looks_like_path(name_or_path):
            rule = _build(CLASSIC_RULES[text], params)
        else:
            learned = _build(LearnedStoppingRule, params, name_or_path)
            try:
                learned.file  # noqa: B018 - read and check the file now
            except UnknownNameError as exc:
                raise UnknownNameError(f"{exc}; classic criteria: {', '.join(CLASSIC_RULES)}") from None
            rule = learned
    rule.check_params()
    return rule


def _build(cls: type[RuleT], params: dict[str, Any], *args: Any) -> RuleT:
    """``cls(*args, **params)``; a parameter the rule does not take is an :class:`UnknownNameError`
    (the same for every rule), listing those it takes."""
    accepted = [
        p.name for p in inspect.signature(cls.__init__).parameters.values()
        if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    ][len(args):]
    unknown = [name for name in params if name not in accepted]
    if unknown:
        raise UnknownNameError(
            f"{cls.name}: unknown parameter(s) {', '.join(printable(n) for n in unknown)}; it takes {', '.join(accepted)}"
        )
    return cls(*args, **params)
