"""The one check of a weights file's arrays against the shapes its architecture expects.

Policy files and stopping-rule files hold float weights; before any inference both check that
every expected parameter is present, no unknown one is, and each has its shape, a floating
dtype and finite values. The check lives here once.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from metalearn.exceptions import InvalidInputError

__all__ = ["checked_weights"]


def checked_weights(
    expected: Mapping[str, tuple[int, ...]], params: Mapping[str, np.ndarray], what: str
) -> dict[str, np.ndarray]:
    """Every expected parameter as float32, in ``expected``'s order; raises otherwise.

    Parameters
    ----------
    expected : dict of str to tuple of int
        Name and shape of every parameter.
    params : dict of str to array-like
        The arrays read from a file (or given by a trainer).
    what : str
        Whose weights these are, for the messages (``"policy"``, ``"stopping-rule"``).

    Returns
    -------
    dict of str to ndarray of float32

    Raises
    ------
    InvalidInputError
        A missing or unknown parameter, a wrong shape or dtype, or NaN or infinite values.
    """
    missing = sorted(set(expected) - set(params))
    if missing:
        raise InvalidInputError(f"{what} weights lack parameter(s) {missing[:5]}")
    extra = sorted(set(params) - set(expected))
    if extra:
        raise InvalidInputError(f"{what} weights hold unknown parameter(s) {extra[:5]}")
    checked: dict[str, np.ndarray] = {}
    for name, shape in expected.items():
        value = np.asarray(params[name])
        if value.shape != shape:
            raise InvalidInputError(f"parameter {name!r} has shape {value.shape}, expected {shape}")
        if value.dtype.kind != "f":
            raise InvalidInputError(f"parameter {name!r} has dtype {value.dtype}, expected floating point")
        if not np.all(np.isfinite(value)):
            raise InvalidInputError(f"parameter {name!r} holds NaN or infinite values: the {what} file is corrupt")
        checked[name] = value.astype(np.float32)
    return checked
