"""One conversion of Python and numpy values to plain JSON types, for every JSON file metalearn
writes (policy metadata, checkpoints, progress logs, benchmark results)."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from metalearn.exceptions import InvalidTypeError

__all__ = ["json_safe"]


def json_safe(value: Any, where: str = "value", *, strict: bool = True) -> Any:
    """``value`` as plain JSON types, recursively.

    numpy scalars become Python numbers, arrays and tuples lists, paths strings, dataclasses
    and objects with ``to_dict()`` dicts (string keys); NaN and infinities become None (JSON
    has no such numbers, and metalearn reads None back as "missing").

    Parameters
    ----------
    value : object
    where : str, default="value"
        What ``value`` is, for the error message (extended with ``.key`` and ``[i]`` inside).
    strict : bool, default=True
        Raise on a value of another type; with False it is returned unchanged.

    Returns
    -------
    object
        None, bool, int, float, str, list or dict.

    Raises
    ------
    InvalidTypeError
        With ``strict``, for a value JSON cannot store (the message names ``where``).
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist(), where, strict=strict)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v, f"{where}.{k}", strict=strict) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, f"{where}[{i}]", strict=strict) for i, v in enumerate(value)]
    if hasattr(value, "to_dict") and callable(value.to_dict):  # the object's own form first
        return json_safe(value.to_dict(), where, strict=strict)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return json_safe(dataclasses.asdict(value), where, strict=strict)
    if isinstance(value, np.generic):
        return json_safe(value.item(), where, strict=strict)
    if strict:
        raise InvalidTypeError(f"{where} holds a {type(value).__name__}, which JSON cannot store")
    return value
