"""One resolver from a name (or a policy file) to a ready querying strategy.

The benchmark, the stopping-rule trainer, ``metalearn next-batch`` and the scripts all turn
the strategy names their users write into strategies here, so a name means the same thing
everywhere and every strategy that depends on the label budget (ALBL's horizon, a learned
policy's budget features) receives it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from metalearn.exceptions import InvalidInputError, UnknownNameError
from metalearn.strategies.base import QueryStrategy
from metalearn.strategies.registry import get_strategy_class, strategy_names

if TYPE_CHECKING:  # metalearn.policies imports this package: imported lazily below
    from metalearn.policies.file import PolicyFile

__all__ = ["POLICY_PREFIX", "resolve_strategy", "classic_strategy_spec", "looks_like_policy_path", "strategy_label"]

#: Prefix that marks a learned policy in a strategy name: ``policy:PATH_OR_NAME``.
POLICY_PREFIX = "policy:"
#: Suffix of a policy file (the same as :data:`metalearn.policies.file.POLICY_SUFFIX`).
_POLICY_SUFFIX = ".safetensors"


def looks_like_policy_path(text: str) -> bool:
    """Whether ``text`` is clearly a path (:func:`metalearn.policies.names.looks_like_path`)."""
    from metalearn.policies.names import looks_like_path

    return looks_like_path(text, _POLICY_SUFFIX)


def resolve_strategy(
    name_or_policy: str | os.PathLike[str] | PolicyFile,
    *,
    label_budget: int | None,
    random_state: int | np.random.Generator | None,
    missing_label: Any = np.nan,
    **params: Any,
) -> QueryStrategy:
    """A fresh querying strategy from a classic strategy name, a policy name or a policy file.

    Resolution order (the first rule that applies wins):

    1. a :class:`~metalearn.policies.file.PolicyFile` (already read): that policy;
    2. a path object (:class:`os.PathLike`): the policy file at that path;
    3. ``"policy:PATH_OR_NAME"``: the policy file ``PATH_OR_NAME``, or the released policy of
       that name (see :func:`~metalearn.policies.file.resolve_policy_path`);
    4. a string that is clearly a path (:func:`~metalearn.policies.names.looks_like_path`:
       a folder separator, a leading ``.`` or ``~``, or the ``.safetensors`` suffix): the
       policy file at that path;
    5. a classic strategy name or alias of the registry
       (:func:`~metalearn.strategies.registry.get_strategy_class`, case-insensitive), optionally
       as ``NAME:VALUE`` for a strategy that declares a
       :attr:`~metalearn.strategies.base.QueryStrategy.shorthand_parameter`
       (``typiclust_margin:20``: TypiClust for 20 bought labels, then margin), see
       :func:`classic_strategy_spec`;
    6. anything else: a policy name, resolved as every released name is
       (:func:`~metalearn.policies.names.resolve_named_file`, whose docstring holds the one
       resolution order: a released policy of that name, e.g. ``"default"``, even when the
       working directory holds a file or folder of that name, else a file of that name in
       the working directory).

    So a classic strategy name wins over a file of the same name in the working directory and
    over a released policy of the same name: write ``./margin`` or ``policy:margin`` for the
    file. The benchmark's ``"oracle"`` is not a strategy (it needs the task's test labels);
    :func:`metalearn.benchmark.execute.build_strategy` builds it before calling this.

    Parameters
    ----------
    name_or_policy : str, path-like or PolicyFile
        What to build, see the resolution order.
    label_budget : int or None
        Labels the run will buy. Passed to every strategy that depends on it: a learned
        policy's ``label_budget``, and the constructor parameter a classic strategy declares in
        :attr:`~metalearn.strategies.base.QueryStrategy.label_budget_parameter` (ALBL's
        ``n_queries``). None keeps each strategy's default.
    random_state : int, numpy Generator or None
        Seed of the strategy's random choices.
    missing_label : scalar, default=np.nan
        Marker of unlabeled entries in ``y``.
    **params
        Further constructor parameters of the strategy (e.g. ``n_candidates`` of a policy,
        ``beta`` of density-weighted sampling).

    Returns
    -------
    QueryStrategy
        A :class:`~metalearn.policies.strategy.PolicyStrategy` for a policy, else an instance
        of the registered class.

    Raises
    ------
    UnknownNameError
        Neither a strategy name, a file nor a released policy name; the message lists both.
    PolicyFileError, FeatureSchemaError
        The policy file is missing (given as a path), unsafe, corrupted or incompatible.
    InvalidInputError
        The label budget is given twice (as ``label_budget`` and in ``params``).
    """
    from metalearn.policies.file import PolicyFile

    if isinstance(name_or_policy, PolicyFile):
        return _policy_strategy(name_or_policy, label_budget, random_state, missing_label, params)
    if not isinstance(name_or_policy, str):
        # a path object, or a value of another type that read_policy refuses with its own message
        return _policy_strategy(name_or_policy, label_budget, random_state, missing_label, params)
    text = name_or_policy
    if text.startswith(POLICY_PREFIX):
        return _policy_strategy(text[len(POLICY_PREFIX):], label_budget, random_state, missing_label, params)
    if looks_like_policy_path(text):
        return _policy_strategy(text, label_budget, random_state, missing_label, params)
    try:
        cls, shorthand = classic_strategy_spec(text)
    except UnknownNameError:
        pass
    else:
        if set(shorthand) & set(params):
            raise InvalidInputError(f"{text!r} sets {', '.join(shorthand)}, which is also given as a parameter")
        return _classic_strategy(cls, label_budget, random_state, missing_label, {**params, **shorthand})
    try:
        return _policy_strategy(text, label_budget, random_state, missing_label, params)
    except UnknownNameError as exc:
        raise UnknownNameError(f"{exc.args[0]}; nor is it a strategy name ({', '.join(strategy_names())})") from None


def classic_strategy_spec(text: str) -> tuple[type[QueryStrategy], dict[str, int]]:
    """The registered class and shorthand parameter of ``NAME`` or ``NAME:VALUE``.

    ``VALUE`` is a non-negative integer for the parameter the class declares in
    :attr:`~metalearn.strategies.base.QueryStrategy.shorthand_parameter`; the tuned fixed rules
    are written this way (``typiclust_margin:20``, ``probcover_margin:5``), so a results table
    names each variant.

    Raises
    ------
    UnknownNameError
        ``NAME`` is not a registered strategy.
    InvalidInputError
        ``:VALUE`` is given for a strategy without a shorthand parameter, or is not a
        non-negative integer, or is refused by the strategy's own parameter check.
    """
    name, sep, value = text.partition(":")
    cls = get_strategy_class(name)
    if not sep:
        return cls, {}
    parameter = cls.shorthand_parameter
    if parameter is None:
        raise InvalidInputError(f"strategy {cls.name!r} takes no ':VALUE' (got {text!r}); write it as {cls.name!r}")
    if not value.isdigit() or len(value) > 9:
        raise InvalidInputError(f"{text!r}: the value after ':' is the {parameter} of {cls.name}, a whole number such as 20")
    params = {parameter: int(value)}
    cls(**params)._validate_params()  # refused now, not at the first query
    return cls, params


def strategy_label(strategy: QueryStrategy) -> str:
    """What a resolved strategy is, for messages and records: a policy's file path, else the registry name."""
    from metalearn.policies.strategy import PolicyStrategy

    path = getattr(strategy.policy, "path", None) if isinstance(strategy, PolicyStrategy) else None
    if path is not None:
        return str(path)
    return strategy.name


def _with_budget(params: dict[str, Any], parameter: str, label_budget: int | None) -> dict[str, Any]:
    if label_budget is None:
        return params
    if parameter in params:
        raise InvalidInputError(
            f"the label budget is given twice: label_budget={label_budget!r} and {parameter}={params[parameter]!r}"
        )
    return {**params, parameter: label_budget}


def _classic_strategy(
    cls: type[QueryStrategy], label_budget: int | None, random_state: Any, missing_label: Any, params: dict[str, Any]
) -> QueryStrategy:
    if cls.label_budget_parameter is not None:
        params = _with_budget(params, cls.label_budget_parameter, label_budget)
    return cls(missing_label=missing_label, random_state=random_state, **params)


def _policy_strategy(
    policy: Any, label_budget: int | None, random_state: Any, missing_label: Any, params: dict[str, Any]
) -> QueryStrategy:
    from metalearn.policies.file import PolicyFile, read_policy
    from metalearn.policies.strategy import PolicyStrategy

    policy_file = policy if isinstance(policy, PolicyFile) else read_policy(policy)
    params = _with_budget(params, "label_budget", label_budget)
    return PolicyStrategy(policy_file, missing_label=missing_label, random_state=random_state, **params)
