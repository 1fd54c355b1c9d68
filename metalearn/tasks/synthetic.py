"""Synthetic classification problems of randomised difficulty, for meta-training.

Every generator has the signature ``(rng, n_samples, **params) -> Dataset``:

- each parameter is drawn from ``rng`` within the range documented in its docstring, unless
  given as a keyword (an override must lie within the parameter's hard limits);
- the data themselves are drawn from a fresh generator seeded by one integer drawn from
  ``rng`` (recorded as ``info["seed"]``), so the same ``rng`` state and overrides always give
  identical data, and ``info`` alone is enough to regenerate a dataset;
- ``info["params"]`` records every parameter used (drawn or given).

Registered generators (:data:`GENERATORS`): ``classification``, ``xor``, ``checkerboard``,
``moons`` and ``circles``; and four for what real data exposed: ``variance`` (classes that
differ in spread, not location), ``imbalanced`` (rare classes), ``many_classes`` (8 to 20)
and ``noisy_labels`` (15% to 35% random labels). :func:`sample_synthetic_dataset` picks one at random.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import special_ortho_group
from sklearn.datasets import make_circles, make_classification, make_moons

from metalearn.common.validation import check_positive_int
from metalearn.exceptions import InvalidInputError, InvalidTypeError, UnknownNameError
from metalearn.tasks.datasets import Dataset

__all__ = [
    "GENERATORS",
    "GENERATOR_PARAMETERS",
    "MIN_SAMPLES",
    "classification",
    "xor",
    "checkerboard",
    "moons",
    "circles",
    "variance",
    "imbalanced",
    "many_classes",
    "noisy_labels",
    "sample_synthetic_dataset",
]

#: Smallest ``n_samples`` a generator accepts (fewer cannot make a stratified task).
MIN_SAMPLES = 10
#: Range of ``n_samples`` drawn by :func:`sample_synthetic_dataset` when not given.
DEFAULT_N_SAMPLES: tuple[int, int] = (200, 2000)
_SEED_HIGH = 2**31 - 1


class _Params:
    """Draws a generator's parameters from ``rng`` unless overridden, and records them.

    Ranges of the random draws may depend on parameters drawn before; the hard limits only
    guard overrides against values the generator cannot use.
    """

    def __init__(self, generator: str, rng: np.random.Generator, overrides: dict[str, Any]) -> None:
        if not isinstance(rng, np.random.Generator):
            raise InvalidTypeError(
                f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}"
            )
        allowed = GENERATOR_PARAMETERS[generator]
        unknown = sorted(set(overrides) - set(allowed))
        if unknown:
            raise InvalidInputError(
                f"unknown parameter(s) {unknown} for generator {generator!r}; valid: {', '.join(allowed)}"
            )
        self.generator = generator
        self.rng = rng
        self.overrides = overrides
        self.values: dict[str, Any] = {}

    def _check(self, key: str, value: float, lo: float, hi: float) -> None:
        if not lo <= value <= hi:
            raise InvalidInputError(f"{self.generator} parameter {key}={value!r} is outside its limits [{lo}, {hi}]")

    def int(self, key: str, low: int, high: int, *, limits: tuple[int, int]) -> int:
        """Integer uniform on [low, high] (clamped so the range is never empty)."""
        if key in self.overrides:
            raw = self.overrides[key]
            if isinstance(raw, bool) or not isinstance(raw, (int, np.integer)):
                raise InvalidInputError(f"{self.generator} parameter {key} must be an integer, got {raw!r}")
            value = int(raw)
            self._check(key, value, *limits)
        else:
            low = min(low, high)
            value = int(self.rng.integers(low, high + 1))
        self.values[key] = value
        return value

    def float(self, key: str, low: float, high: float, *, limits: tuple[float, float]) -> float:
        """Float uniform on [low, high]."""
        if key in self.overrides:
            raw = self.overrides[key]
            if isinstance(raw, bool) or not isinstance(raw, (int, float, np.integer, np.floating)):
                raise InvalidInputError(f"{self.generator} parameter {key} must be a number, got {raw!r}")
            value = float(raw)
            if not math.isfinite(value):
                raise InvalidInputError(f"{self.generator} parameter {key} must be finite, got {raw!r}")
            self._check(key, value, *limits)
        else:
            value = float(self.rng.uniform(low, min(max(low, high), limits[1])))
        self.values[key] = value
        return value

    def bool(self, key: str, p_true: builtins.float) -> builtins.bool:
        if key in self.overrides:
            raw = self.overrides[key]
            if not isinstance(raw, (bool, np.bool_)):
                raise InvalidInputError(f"{self.generator} parameter {key} must be true or false, got {raw!r}")
            value = bool(raw)
        else:
            value = bool(self.rng.random() < p_true)
        self.values[key] = value
        return value

    def seed(self) -> builtins.int:
        """Seed of the data draw (never overridable through params: pass another rng)."""
        return int(self.rng.integers(0, _SEED_HIGH))


def _check_n_samples(n_samples: Any) -> int:
    return check_positive_int(n_samples, "n_samples", minimum=MIN_SAMPLES)


def _add_noise_dims(X: np.ndarray, n_noise: int, data_rng: np.random.Generator) -> np.ndarray:
    """Append ``n_noise`` Gaussian columns as spread out as the informative ones (pure distractors)."""
    if n_noise == 0:
        return X
    scale = float(np.std(X)) or 1.0
    return np.hstack([X, data_rng.normal(0.0, scale, size=(X.shape[0], n_noise))])


def _rotate(X: np.ndarray, data_rng: np.random.Generator) -> np.ndarray:
    """Random rotation of all dimensions, so that no single axis carries the class boundary."""
    rotation = special_ortho_group.rvs(X.shape[1], random_state=data_rng)
    return X @ rotation


def _flip_labels(y: np.ndarray, rate: float, n_classes: int, data_rng: np.random.Generator) -> np.ndarray:
    """Replace a fraction ``rate`` of the labels by another class drawn uniformly."""
    y = y.copy()
    flip = data_rng.random(int(y.shape[0])) < rate
    if flip.any():
        shift = data_rng.integers(1, n_classes, size=int(flip.sum()))
        y[flip] = (y[flip] + shift) % n_classes
    return y


def _finish(generator: str, X: np.ndarray, y: np.ndarray, p: _Params, seed: int, n_samples: int) -> Dataset:
    y = np.asarray(y, dtype=np.int64)
    if np.unique(y).size < 2:
        raise InvalidInputError(
            f"{generator} produced a single class with n_samples={n_samples} and {p.values}; "
            "use more samples or less extreme parameters"
        )
    frame = pd.DataFrame(np.asarray(X, dtype=np.float64), columns=[f"x{j}" for j in range(X.shape[1])])
    info = {
        "source": "generator",
        "generator": generator,
        "n_samples": n_samples,
        "seed": seed,
        "params": dict(p.values),
    }
    return Dataset(name=f"{generator}-{seed}", X=frame, y=y, info=info)


def _minority_sizes(n_samples: int, minority_fraction: float) -> tuple[int, int]:
    n_minority = min(max(1, round(n_samples * minority_fraction)), n_samples // 2)
    return n_samples - n_minority, n_minority


# ---------------------------------------------------------------------------------------------
# Generators
# ---------------------------------------------------------------------------------------------
def classification(rng: np.random.Generator, n_samples: int, **params: Any) -> Dataset:
    """Gaussian clusters on hypercube vertices (``sklearn.datasets.make_classification``).

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of every random draw.
    n_samples : int
        Number of records (>= 10).
    **params
        Overrides of the random parameters, drawn in this order:

        - ``n_classes``: int in [2, min(6, n_samples // 2)];
        - ``n_clusters_per_class``: int in [1, min(3, n_samples // (2 * n_classes))];
        - ``n_features``: int in [2, 30], at least enough for the clusters;
        - ``n_informative``: int in [max(2, needed), min(n_features, 10)];
        - ``n_redundant``: int in [0, n_features - n_informative] (linear combinations of the
          informative features); the remaining features are useless noise;
        - ``minority_fraction``: float in [max(0.05, 2 * n_clusters_per_class / n_samples),
          1 / n_classes], share of the smallest class;
          the other classes share the rest at random (``weights`` records the result);
        - ``flip_y``: float in [0, 0.15], share of labels assigned at random;
        - ``class_sep``: float in [0.3, 2.0], distance between the clusters.

    Returns
    -------
    Dataset
        ``X`` of shape (n_samples, n_features), ``y`` int in 0..n_classes-1.
    """
    n_samples = _check_n_samples(n_samples)
    p = _Params("classification", rng, params)
    # Small samples get fewer classes and clusters, so that every cluster can hold two records.
    n_classes = p.int("n_classes", 2, min(6, n_samples // 2), limits=(2, 100))
    n_clusters = p.int("n_clusters_per_class", 1, min(3, n_samples // (2 * n_classes)), limits=(1, 100))
    needed = max(1, math.ceil(math.log2(n_classes * n_clusters)))
    n_features = p.int("n_features", max(2, needed), 30, limits=(1, 10_000))
    n_informative = p.int(
        "n_informative", min(max(2, needed), n_features), min(n_features, max(10, needed)), limits=(1, n_features)
    )
    n_redundant = p.int("n_redundant", 0, n_features - n_informative, limits=(0, n_features - n_informative))
    # At least two records per cluster of the smallest class (make_classification rounds down).
    low_minority = min(max(0.05, 2.0 * n_clusters / n_samples), 1.0 / n_classes)
    minority = p.float("minority_fraction", low_minority, 1.0 / n_classes, limits=(0.01, 1.0 / n_classes))
    # The smallest class gets exactly `minority`; the others split the rest at random, each
    # at least `minority`, so `minority` really is the minority share.
    raw = rng.uniform(0.0, 1.0, size=n_classes)
    raw[int(rng.integers(n_classes))] = 0.0
    weights = minority + (1.0 - n_classes * minority) * raw / raw.sum()
    p.values["weights"] = [float(w) for w in weights]
    flip_y = p.float("flip_y", 0.0, 0.15, limits=(0.0, 1.0))
    class_sep = p.float("class_sep", 0.3, 2.0, limits=(0.0, 100.0))
    seed = p.seed()
    try:
        X, y = make_classification(
            n_samples=n_samples,
            n_features=n_features,
            n_informative=n_informative,
            n_redundant=n_redundant,
            n_repeated=0,
            n_classes=n_classes,
            n_clusters_per_class=n_clusters,
            weights=list(weights),
            flip_y=flip_y,
            class_sep=class_sep,
            random_state=seed,
        )
    except ValueError as exc:
        raise InvalidInputError(f"classification parameters {p.values} are inconsistent: {exc}") from None
    return _finish("classification", X, y, p, seed, n_samples)


def xor(rng: np.random.Generator, n_samples: int, **params: Any) -> Dataset:
    """Parity of the signs of ``n_xor_dims`` uniform coordinates: the classic XOR, generalised.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of every random draw.
    n_samples : int
        Number of records (>= 10).
    **params
        Overrides of the random parameters:

        - ``n_xor_dims``: int in [2, 3], dimensions whose sign parity is the label;
        - ``n_noise_dims``: int in [0, 5], extra pure-noise dimensions;
        - ``feature_noise``: float in [0, 0.3], std of Gaussian noise added to the
          coordinates (which lie in [-1, 1]), blurring the boundary;
        - ``label_noise``: float in [0, 0.1], share of labels flipped;
        - ``rotate``: bool (probability 0.5), apply a random rotation to all dimensions.

    Returns
    -------
    Dataset
        ``X`` of shape (n_samples, n_xor_dims + n_noise_dims), ``y`` in {0, 1}.
    """
    n_samples = _check_n_samples(n_samples)
    p = _Params("xor", rng, params)
    n_xor = p.int("n_xor_dims", 2, 3, limits=(2, 20))
    n_noise = p.int("n_noise_dims", 0, 5, limits=(0, 1000))
    feature_noise = p.float("feature_noise", 0.0, 0.3, limits=(0.0, 10.0))
    label_noise = p.float("label_noise", 0.0, 0.1, limits=(0.0, 0.5))
    rotate = p.bool("rotate", 0.5)
    seed = p.seed()
    data_rng = np.random.default_rng(seed)
    Z = data_rng.uniform(-1.0, 1.0, size=(n_samples, n_xor))
    y = (Z > 0).sum(axis=1) % 2
    Z = Z + data_rng.normal(0.0, feature_noise, size=Z.shape)
    y = _flip_labels(y, label_noise, 2, data_rng)
    X = _add_noise_dims(Z, n_noise, data_rng)
    if rotate:
        X = _rotate(X, data_rng)
    return _finish("xor", X, y, p, seed, n_samples)


def checkerboard(rng: np.random.Generator, n_samples: int, **params: Any) -> Dataset:
    """A ``n_cells`` x ``n_cells`` checkerboard in 2-D; cell (i, j) has class (i + j) mod n_classes.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of every random draw.
    n_samples : int
        Number of records (>= 10).
    **params
        Overrides of the random parameters:

        - ``n_cells``: int in [2, 5], cells per side;
        - ``n_classes``: int in [2, 3];
        - ``feature_noise``: float in [0, 0.15], std of Gaussian noise in cell widths;
        - ``label_noise``: float in [0, 0.1], share of labels replaced by another class;
        - ``angle``: float in [0, 45], rotation of the board in degrees;
        - ``n_noise_dims``: int in [0, 3], extra pure-noise dimensions.

    Returns
    -------
    Dataset
        ``X`` of shape (n_samples, 2 + n_noise_dims), ``y`` in 0..n_classes-1.
    """
    n_samples = _check_n_samples(n_samples)
    p = _Params("checkerboard", rng, params)
    n_cells = p.int("n_cells", 2, 5, limits=(2, 100))
    n_classes = p.int("n_classes", 2, 3, limits=(2, 10))
    feature_noise = p.float("feature_noise", 0.0, 0.15, limits=(0.0, 10.0))
    label_noise = p.float("label_noise", 0.0, 0.1, limits=(0.0, 0.5))
    angle = p.float("angle", 0.0, 45.0, limits=(-360.0, 360.0))
    n_noise = p.int("n_noise_dims", 0, 3, limits=(0, 1000))
    seed = p.seed()
    data_rng = np.random.default_rng(seed)
    Z = data_rng.uniform(0.0, n_cells, size=(n_samples, 2))
    cells = np.floor(Z).astype(np.int64)
    y = (cells[:, 0] + cells[:, 1]) % n_classes
    Z = Z - n_cells / 2.0 + data_rng.normal(0.0, feature_noise, size=Z.shape)
    theta = np.deg2rad(angle)
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    Z = Z @ rotation.T
    y = _flip_labels(y, label_noise, n_classes, data_rng)
    X = _add_noise_dims(Z, n_noise, data_rng)
    return _finish("checkerboard", X, y, p, seed, n_samples)


def moons(rng: np.random.Generator, n_samples: int, **params: Any) -> Dataset:
    """Two interleaving half circles (``sklearn.datasets.make_moons``), possibly imbalanced.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of every random draw.
    n_samples : int
        Number of records (>= 10).
    **params
        Overrides of the random parameters:

        - ``noise``: float in [0.05, 0.4], std of the Gaussian noise;
        - ``minority_fraction``: float in [0.2, 0.5], share of the inner moon;
        - ``n_noise_dims``: int in [0, 5], extra pure-noise dimensions.

    Returns
    -------
    Dataset
        ``X`` of shape (n_samples, 2 + n_noise_dims), ``y`` in {0, 1}.
    """
    n_samples = _check_n_samples(n_samples)
    p = _Params("moons", rng, params)
    noise = p.float("noise", 0.05, 0.4, limits=(0.0, 10.0))
    minority = p.float("minority_fraction", 0.2, 0.5, limits=(0.0, 0.5))
    n_noise = p.int("n_noise_dims", 0, 5, limits=(0, 1000))
    seed = p.seed()
    X, y = make_moons(n_samples=_minority_sizes(n_samples, minority), noise=noise, random_state=seed)
    X = _add_noise_dims(X, n_noise, np.random.default_rng(seed))
    return _finish("moons", X, y, p, seed, n_samples)


def circles(rng: np.random.Generator, n_samples: int, **params: Any) -> Dataset:
    """A small circle inside a large one (``sklearn.datasets.make_circles``), possibly imbalanced.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of every random draw.
    n_samples : int
        Number of records (>= 10).
    **params
        Overrides of the random parameters:

        - ``noise``: float in [0.02, 0.25], std of the Gaussian noise;
        - ``factor``: float in [0.2, 0.8], ratio of the inner to the outer radius;
        - ``minority_fraction``: float in [0.2, 0.5], share of the inner circle;
        - ``n_noise_dims``: int in [0, 5], extra pure-noise dimensions.

    Returns
    -------
    Dataset
        ``X`` of shape (n_samples, 2 + n_noise_dims), ``y`` in {0, 1}.
    """
    n_samples = _check_n_samples(n_samples)
    p = _Params("circles", rng, params)
    noise = p.float("noise", 0.02, 0.25, limits=(0.0, 10.0))
    factor = p.float("factor", 0.2, 0.8, limits=(0.01, 0.99))
    minority = p.float("minority_fraction", 0.2, 0.5, limits=(0.0, 0.5))
    n_noise = p.int("n_noise_dims", 0, 5, limits=(0, 1000))
    seed = p.seed()
    X, y = make_circles(
        n_samples=_minority_sizes(n_samples, minority), noise=noise, factor=factor, random_state=seed
    )
    X = _add_noise_dims(X, n_noise, np.random.default_rng(seed))
    return _finish("circles", X, y, p, seed, n_samples)


def variance(rng: np.random.Generator, n_samples: int, **params: Any) -> Dataset:
    """Classes that differ in spread rather than in location (as ``ring`` on the validation split).

    Class ``c`` is drawn from a Gaussian of scale ``scale_ratio ** c`` around (almost) the same
    centre, so no linear boundary separates the classes and the most uncertain records of a
    linear model are not the informative ones.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of every random draw.
    n_samples : int
        Number of records (>= 10).
    **params
        Overrides of the random parameters:

        - ``n_classes``: int in [2, 3], nested shells of growing spread;
        - ``n_features``: int in [2, 20], informative dimensions (all of them carry spread);
        - ``scale_ratio``: float in [1.5, 4.0], ratio of consecutive classes' standard deviations;
        - ``mean_shift``: float in [0, 0.5], distance between the class centres, in units of the
          narrowest class's standard deviation;
        - ``n_noise_dims``: int in [0, 5], extra pure-noise dimensions;
        - ``label_noise``: float in [0, 0.05], share of labels replaced by another class.

    Returns
    -------
    Dataset
        ``X`` of shape (n_samples, n_features + n_noise_dims), ``y`` in 0..n_classes-1.
    """
    n_samples = _check_n_samples(n_samples)
    p = _Params("variance", rng, params)
    n_classes = p.int("n_classes", 2, 3, limits=(2, 10))
    n_features = p.int("n_features", 2, 20, limits=(1, 1000))
    ratio = p.float("scale_ratio", 1.5, 4.0, limits=(1.0, 100.0))
    shift = p.float("mean_shift", 0.0, 0.5, limits=(0.0, 100.0))
    n_noise = p.int("n_noise_dims", 0, 5, limits=(0, 1000))
    label_noise = p.float("label_noise", 0.0, 0.05, limits=(0.0, 0.5))
    seed = p.seed()
    data_rng = np.random.default_rng(seed)
    y = np.arange(n_samples) % n_classes
    data_rng.shuffle(y)
    direction = data_rng.normal(size=n_features)
    direction /= np.linalg.norm(direction)
    scales = ratio ** y.astype(np.float64)
    Z = data_rng.normal(size=(n_samples, n_features)) * scales[:, None] + shift * y[:, None] * direction
    y = _flip_labels(y, label_noise, n_classes, data_rng)
    X = _add_noise_dims(Z, n_noise, data_rng)
    return _finish("variance", X, y, p, seed, n_samples)


def _gaussian_classes(
    generator: str,
    p: _Params,
    n_samples: int,
    n_classes: int,
    weights: np.ndarray,
    flip_y: float,
) -> Dataset:
    """Shared body of the imbalanced, many-class and noisy-label generators (make_classification)."""
    # make_classification needs 2 ** n_informative >= n_classes.
    needed = max(2, math.ceil(math.log2(n_classes)))
    n_features = p.int("n_features", needed, 30, limits=(needed, 10_000))
    n_informative = p.int("n_informative", min(needed, n_features), min(n_features, max(10, needed)), limits=(1, n_features))
    class_sep = p.float("class_sep", 0.5, 2.0, limits=(0.0, 100.0))
    p.values["weights"] = [float(w) for w in weights]
    seed = p.seed()
    try:
        X, y = make_classification(
            n_samples=n_samples,
            n_features=n_features,
            n_informative=n_informative,
            n_redundant=0,
            n_repeated=0,
            n_classes=n_classes,
            n_clusters_per_class=1,
            weights=list(weights),
            flip_y=flip_y,
            class_sep=class_sep,
            random_state=seed,
        )
    except ValueError as exc:
        raise InvalidInputError(f"{generator} parameters {p.values} are inconsistent: {exc}") from None
    return _finish(generator, X, y, p, seed, n_samples)


def imbalanced(rng: np.random.Generator, n_samples: int, **params: Any) -> Dataset:
    """Gaussian classes with one or more rare classes (heavy imbalance).

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of every random draw.
    n_samples : int
        Number of records (>= 10).
    **params
        Overrides of the random parameters, drawn in this order:

        - ``n_classes``: int in [2, 4];
        - ``minority_fraction``: float in [max(0.005, 4 / n_samples), 0.06], share of each rare
          class; one to ``n_classes - 1`` classes are rare (``n_rare``), the others share the rest;
        - ``n_rare``: int in [1, n_classes - 1];
        - ``n_features``: int in [2, 30]; ``n_informative``: int in [2, min(n_features, 10)];
        - ``class_sep``: float in [0.5, 2.0].

    Returns
    -------
    Dataset
        ``X`` of shape (n_samples, n_features), ``y`` in 0..n_classes-1.
    """
    n_samples = _check_n_samples(n_samples)
    p = _Params("imbalanced", rng, params)
    n_classes = p.int("n_classes", 2, 4, limits=(2, 20))
    minority = p.float("minority_fraction", max(0.005, 4.0 / n_samples), 0.06, limits=(0.001, 0.5))
    n_rare = p.int("n_rare", 1, n_classes - 1, limits=(1, n_classes - 1))
    common = (1.0 - n_rare * minority) / (n_classes - n_rare)
    weights = np.array([minority] * n_rare + [common] * (n_classes - n_rare))
    return _gaussian_classes("imbalanced", p, n_samples, n_classes, weights, flip_y=0.0)


def many_classes(rng: np.random.Generator, n_samples: int, **params: Any) -> Dataset:
    """Many Gaussian classes (8 to 20), as pendigits-like problems have.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of every random draw.
    n_samples : int
        Number of records (>= 10).
    **params
        Overrides of the random parameters:

        - ``n_classes``: int in [8, min(20, n_samples // 10)];
        - ``n_features``: int in [log2(n_classes), 30]; ``n_informative``: int in
          [log2(n_classes), min(n_features, 10)];
        - ``class_sep``: float in [0.5, 2.0]; classes are balanced.

    Returns
    -------
    Dataset
        ``X`` of shape (n_samples, n_features), ``y`` in 0..n_classes-1.
    """
    n_samples = _check_n_samples(n_samples)
    p = _Params("many_classes", rng, params)
    n_classes = p.int("n_classes", 8, max(2, min(20, n_samples // 10)), limits=(2, 100))
    weights = np.full(n_classes, 1.0 / n_classes)
    return _gaussian_classes("many_classes", p, n_samples, n_classes, weights, flip_y=0.0)


def noisy_labels(rng: np.random.Generator, n_samples: int, **params: Any) -> Dataset:
    """Gaussian classes with many wrong labels (15% to 35% assigned at random).

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of every random draw.
    n_samples : int
        Number of records (>= 10).
    **params
        Overrides of the random parameters:

        - ``n_classes``: int in [2, 4];
        - ``flip_y``: float in [0.15, 0.35], share of labels assigned at random;
        - ``n_features``: int in [2, 30]; ``n_informative``: int in [2, min(n_features, 10)];
        - ``class_sep``: float in [0.5, 2.0]; classes are balanced.

    Returns
    -------
    Dataset
        ``X`` of shape (n_samples, n_features), ``y`` in 0..n_classes-1.
    """
    n_samples = _check_n_samples(n_samples)
    p = _Params("noisy_labels", rng, params)
    n_classes = p.int("n_classes", 2, 4, limits=(2, 20))
    flip_y = p.float("flip_y", 0.15, 0.35, limits=(0.0, 1.0))
    weights = np.full(n_classes, 1.0 / n_classes)
    return _gaussian_classes("noisy_labels", p, n_samples, n_classes, weights, flip_y=flip_y)


Generator = Callable[..., Dataset]

#: Synthetic generators by name: ``(rng, n_samples, **params) -> Dataset``.
GENERATORS: dict[str, Generator] = {
    "classification": classification,
    "xor": xor,
    "checkerboard": checkerboard,
    "moons": moons,
    "circles": circles,
    "variance": variance,
    "imbalanced": imbalanced,
    "many_classes": many_classes,
    "noisy_labels": noisy_labels,
}

#: Parameters each generator accepts as overrides (``weights`` is derived, not overridable).
GENERATOR_PARAMETERS: dict[str, tuple[str, ...]] = {
    "classification": (
        "n_classes",
        "n_clusters_per_class",
        "n_features",
        "n_informative",
        "n_redundant",
        "minority_fraction",
        "flip_y",
        "class_sep",
    ),
    "xor": ("n_xor_dims", "n_noise_dims", "feature_noise", "label_noise", "rotate"),
    "checkerboard": ("n_cells", "n_classes", "feature_noise", "label_noise", "angle", "n_noise_dims"),
    "moons": ("noise", "minority_fraction", "n_noise_dims"),
    "circles": ("noise", "factor", "minority_fraction", "n_noise_dims"),
    "variance": ("n_classes", "n_features", "scale_ratio", "mean_shift", "n_noise_dims", "label_noise"),
    "imbalanced": ("n_classes", "minority_fraction", "n_rare", "n_features", "n_informative", "class_sep"),
    "many_classes": ("n_classes", "n_features", "n_informative", "class_sep"),
    "noisy_labels": ("n_classes", "flip_y", "n_features", "n_informative", "class_sep"),
}


def sample_synthetic_dataset(
    rng: np.random.Generator,
    generator: str | None = None,
    n_samples: int | None = None,
    **params: Any,
) -> Dataset:
    """Draw a synthetic dataset.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of every random draw.
    generator : str or None
        Name in :data:`GENERATORS`; ``None`` (or ``"any"``) picks one uniformly.
    n_samples : int or None
        Number of records; ``None`` draws it uniformly in [200, 2000].
    **params
        Overrides passed to the generator.

    Returns
    -------
    Dataset
    """
    if not isinstance(rng, np.random.Generator):
        raise InvalidTypeError(
            f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}"
        )
    names = sorted(GENERATORS)
    if generator is None or generator == "any":
        generator = names[int(rng.integers(len(names)))]
    elif generator not in GENERATORS:
        raise UnknownNameError(f"unknown generator {generator!r}; valid names: {', '.join(names)} (or 'any')")
    if n_samples is None:
        n_samples = int(rng.integers(DEFAULT_N_SAMPLES[0], DEFAULT_N_SAMPLES[1] + 1))
    return GENERATORS[generator](rng, n_samples, **params)
