"""The learned schedule's chooser: a small MLP over loop features that picks a batch size, in numpy.

Architecture ``size-mlp`` version 1: standardised features -> dense(H) -> tanh -> dense(H) ->
tanh -> dense(K): one score per size of the file's fixed set (for example 1, 2, 5, 10, 20,
50); the size with the highest score is chosen. A trainer fits it (out of this module);
inference needs numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from metalearn.common.weights import checked_weights
from metalearn.exceptions import InvalidInputError

__all__ = ["SizeModelArchitecture", "NumpySizeModel", "size_parameter_shapes"]

_ARCH_KEYS = {"name", "version", "n_features", "hidden", "n_sizes"}


@dataclass(frozen=True)
class SizeModelArchitecture:
    """Shape of the size chooser.

    Attributes
    ----------
    n_features : int
    hidden : int
    n_sizes : int
        Number of batch sizes it chooses among (the file's ``sizes``).
    name, version
        ``"size-mlp"``, 1.
    """

    n_features: int
    hidden: int
    n_sizes: int
    name: str = "size-mlp"
    version: int = 1

    def validate(self) -> "SizeModelArchitecture":
        if self.name != "size-mlp" or self.version != 1:
            raise InvalidInputError(
                f"unknown schedule architecture {str(self.name)[:60]!r} version {str(self.version)[:20]}; "
                "this release knows size-mlp v1"
            )
        for field_name, maximum in (("n_features", 4096), ("hidden", 4096), ("n_sizes", 64)):
            value = getattr(self, field_name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
                raise InvalidInputError(f"architecture {field_name} must be an integer in [1, {maximum}], got {value!r}"[:300])
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "n_features": self.n_features, "hidden": self.hidden,
                "n_sizes": self.n_sizes}

    @classmethod
    def from_dict(cls, d: Any) -> "SizeModelArchitecture":
        if not isinstance(d, dict) or set(d) != _ARCH_KEYS:
            raise InvalidInputError(
                f"metadata 'architecture' must hold exactly {', '.join(sorted(_ARCH_KEYS))}, got {str(d)[:200]}"
            )
        return cls(n_features=d["n_features"], hidden=d["hidden"], n_sizes=d["n_sizes"], name=d["name"],
                   version=d["version"]).validate()


def size_parameter_shapes(arch: SizeModelArchitecture) -> dict[str, tuple[int, ...]]:
    """Name and shape of every weight of the chooser."""
    f, h, k = arch.n_features, arch.hidden, arch.n_sizes
    return {
        "x_mean": (f,), "x_std": (f,),
        "l1.weight": (h, f), "l1.bias": (h,),
        "l2.weight": (h, h), "l2.bias": (h,),
        "out.weight": (k, h), "out.bias": (k,),
    }


class NumpySizeModel:
    """The chooser's forward pass in numpy.

    Parameters
    ----------
    arch : SizeModelArchitecture
    params : dict of str to ndarray
        Every entry of :func:`size_parameter_shapes`, finite, ``x_std`` positive.
    """

    def __init__(self, arch: SizeModelArchitecture, params: dict[str, np.ndarray]) -> None:
        self.arch = arch.validate()
        self.params: dict[str, np.ndarray] = checked_weights(size_parameter_shapes(arch), params, "schedule")
        if np.any(self.params["x_std"] <= 0):
            raise InvalidInputError("parameter 'x_std' must be positive")

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """Scores of the sizes, shape (n, n_sizes) for (n, n_features) input, (n_sizes,) for one vector."""
        x = np.asarray(features, dtype=np.float64)
        single = x.ndim == 1
        x = np.atleast_2d(x)
        if x.shape[1] != self.arch.n_features:
            raise InvalidInputError(f"the schedule model takes {self.arch.n_features} features, got {x.shape[1]}")
        p = {k: v.astype(np.float64) for k, v in self.params.items()}
        z = (x - p["x_mean"]) / p["x_std"]
        h = np.tanh(z @ p["l1.weight"].T + p["l1.bias"])
        h = np.tanh(h @ p["l2.weight"].T + p["l2.bias"])
        out = h @ p["out.weight"].T + p["out.bias"]
        return out[0] if single else out
