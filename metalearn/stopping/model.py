"""The learned rule's regressor: a small MLP of the future gain, in numpy.

Architecture ``quantile-mlp`` version 1: standardised features -> dense(H) -> tanh ->
dense(H) -> tanh -> dense(K + 1). The first K outputs give K quantiles of the gain, made
monotone by construction (the first output is the lowest quantile, each next one adds a
softplus increment), the last output is the expected (mean) gain. Gains are in accuracy
points (percent). Training (torch, :mod:`metalearn.stopping.training`) minimises the pinball
loss of the quantiles plus the squared error of the mean; inference needs numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from metalearn.common.weights import checked_weights
from metalearn.exceptions import InvalidInputError

__all__ = ["GainModelArchitecture", "NumpyGainModel", "parameter_shapes"]


@dataclass(frozen=True)
class GainModelArchitecture:
    """Shape of the gain regressor.

    Attributes
    ----------
    n_features : int
    hidden : int
    quantiles : tuple of float
        Increasing levels in (0, 1).
    name, version
        ``"quantile-mlp"``, 1.
    """

    n_features: int
    hidden: int
    quantiles: tuple[float, ...]
    name: str = "quantile-mlp"
    version: int = 1

    def validate(self) -> "GainModelArchitecture":
        if self.name != "quantile-mlp" or self.version != 1:
            raise InvalidInputError(
                f"unknown stopping-rule architecture {self.name!r} version {self.version}; this release knows quantile-mlp v1"
            )
        for field_name in ("n_features", "hidden"):
            value = getattr(self, field_name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4096:
                raise InvalidInputError(f"architecture {field_name} must be an integer in [1, 4096], got {value!r}")
        q = self.quantiles
        if (not isinstance(q, tuple) or not 1 <= len(q) <= 99
                or not all(isinstance(v, float) and 0.0 < v < 1.0 for v in q)
                or any(b <= a for a, b in zip(q, q[1:]))):
            raise InvalidInputError(f"architecture quantiles must be increasing levels in (0, 1), got {q!r}")
        return self

    @property
    def n_outputs(self) -> int:
        return len(self.quantiles) + 1

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "n_features": self.n_features, "hidden": self.hidden,
                "quantiles": list(self.quantiles)}

    @classmethod
    def from_dict(cls, d: Any) -> "GainModelArchitecture":
        if not isinstance(d, dict) or set(d) != {"name", "version", "n_features", "hidden", "quantiles"}:
            raise InvalidInputError(
                f"metadata 'architecture' must hold exactly name, version, n_features, hidden and quantiles, got {d!r}"
            )
        quantiles = d["quantiles"]
        if not isinstance(quantiles, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in quantiles):
            raise InvalidInputError(f"architecture quantiles must be a list of numbers, got {quantiles!r}")
        return cls(n_features=d["n_features"], hidden=d["hidden"], quantiles=tuple(float(v) for v in quantiles),
                   name=d["name"], version=d["version"]).validate()


def parameter_shapes(arch: GainModelArchitecture) -> dict[str, tuple[int, ...]]:
    """Name and shape of every weight of the regressor."""
    f, h, k = arch.n_features, arch.hidden, arch.n_outputs
    return {
        "x_mean": (f,), "x_std": (f,),
        "l1.weight": (h, f), "l1.bias": (h,),
        "l2.weight": (h, h), "l2.bias": (h,),
        "out.weight": (k, h), "out.bias": (k,),
    }


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


class NumpyGainModel:
    """The regressor's forward pass in numpy.

    Parameters
    ----------
    arch : GainModelArchitecture
    params : dict of str to ndarray
        Every entry of :func:`parameter_shapes`, finite, ``x_std`` positive.
    """

    def __init__(self, arch: GainModelArchitecture, params: dict[str, np.ndarray]) -> None:
        self.arch = arch.validate()
        self.params: dict[str, np.ndarray] = checked_weights(parameter_shapes(arch), params, "stopping-rule")
        if np.any(self.params["x_std"] <= 0):
            raise InvalidInputError("parameter 'x_std' must be positive")

    def __call__(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Quantiles and mean of the gain.

        Parameters
        ----------
        features : ndarray of shape (n, n_features) or (n_features,)

        Returns
        -------
        quantiles : ndarray of shape (n, K) (or (K,))
            Increasing along the last axis.
        mean : ndarray of shape (n,) (or scalar array)
        """
        x = np.asarray(features, dtype=np.float64)
        single = x.ndim == 1
        x = np.atleast_2d(x)
        if x.shape[1] != self.arch.n_features:
            raise InvalidInputError(f"the gain model takes {self.arch.n_features} features, got {x.shape[1]}")
        p = {k: v.astype(np.float64) for k, v in self.params.items()}
        z = (x - p["x_mean"]) / p["x_std"]
        h = np.tanh(z @ p["l1.weight"].T + p["l1.bias"])
        h = np.tanh(h @ p["l2.weight"].T + p["l2.bias"])
        out = h @ p["out.weight"].T + p["out.bias"]
        k = len(self.arch.quantiles)
        steps = np.concatenate([out[:, :1], _softplus(out[:, 1:k])], axis=1)
        quantiles = np.cumsum(steps, axis=1)
        mean = out[:, k]
        if single:
            return quantiles[0], mean[0]
        return quantiles, mean
