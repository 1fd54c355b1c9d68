"""Constructor parameters, scikit-learn style: what strategies, stopping rules and schedules share.

:class:`ParamsMixin` gives a class whose ``__init__`` only stores its keyword parameters
``get_params`` / ``set_params`` (so ``sklearn.base.clone`` works) and a ``repr`` naming them,
as :class:`sklearn.base.BaseEstimator` does, with metalearn's error for an unknown name.
"""

from __future__ import annotations

import inspect
from typing import Any, TypeVar

from metalearn.exceptions import InvalidInputError

__all__ = ["ParamsMixin"]

_Params = TypeVar("_Params", bound="ParamsMixin")


class ParamsMixin:
    """``get_params``, ``set_params`` and ``__repr__`` from the constructor's parameters.

    The parameters are the keyword (or positional-or-keyword) parameters of every
    ``__init__`` over the class hierarchy (a subclass may pass some on to its base), each
    stored under its own name.
    """

    @classmethod
    def _get_param_names(cls) -> list[str]:
        """Constructor parameter names, over the class hierarchy (a subclass may pass some on)."""
        names: list[str] = []
        for klass in cls.__mro__:
            if "__init__" in vars(klass) and klass is not object:
                for p in inspect.signature(vars(klass)["__init__"]).parameters.values():
                    if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
                        names.append(p.name)
        return list(dict.fromkeys(names))

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters, as scikit-learn's ``get_params`` (``sklearn.base.clone`` works).

        Parameters
        ----------
        deep : bool, default=True
            Also return the parameters of parameters that have ``get_params`` (an estimator
            passed as a parameter), as ``name__subparameter``.

        Returns
        -------
        dict of str to object
        """
        out: dict[str, Any] = {}
        for name in self._get_param_names():
            if not hasattr(self, name):
                continue
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{name}__{k}", v) for k, v in value.get_params(deep=True).items())
            out[name] = value
        return out

    def set_params(self: _Params, **params: Any) -> _Params:
        """Set constructor parameters (``name__subparameter`` for a nested one), as scikit-learn's.

        Validation happens at the next call, as for parameters given to ``__init__``.

        Returns
        -------
        self

        Raises
        ------
        InvalidInputError
            A name that is not a constructor parameter (the message lists the valid ones).
        """
        valid = self._get_param_names()
        nested: dict[str, dict[str, Any]] = {}
        for key, value in params.items():
            name, sep, sub = key.partition("__")
            if name not in valid:
                raise self._unknown_param_error(name, valid)
            if sep:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
        for name, sub_params in nested.items():
            getattr(self, name).set_params(**sub_params)
        return self

    def _unknown_param_error(self, name: str, valid: list[str]) -> InvalidInputError:
        """The error :meth:`set_params` raises for a name that is no parameter."""
        return InvalidInputError(
            f"invalid parameter {name!r} for {type(self).__name__}; valid parameters: {', '.join(valid)}"
        )

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params(deep=False).items())
        return f"{type(self).__name__}({params})"
