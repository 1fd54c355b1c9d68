"""A simulated active-learning task: a pool with hidden labels, a test split, a model, a budget."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from sklearn.model_selection import train_test_split

from metalearn.common.validation import check_positive_int
from metalearn.exceptions import InvalidInputError
from metalearn.tasks.models import ModelFactory
from metalearn.tasks.preprocessing import TabularPreprocessor

__all__ = ["Task", "make_task", "initial_labeled_set", "REGIMES"]

Regime = Literal["cold", "warm"]
#: Start regimes: ``cold`` labels one random record per class, ``warm`` ``n_warm`` random records.
REGIMES: tuple[str, ...] = ("cold", "warm")


@dataclass
class Task:
    """One active-learning problem with oracle labels, ready to simulate.

    Attributes
    ----------
    name : str
        Human-readable name (dataset or generator and its seed).
    X_pool : ndarray of shape (n_pool, n_features)
        Preprocessed (imputed, encoded, standardised) features of the pool.
    y_pool : ndarray of int, shape (n_pool,)
        Oracle labels of the pool, encoded as 0..n_classes-1. Strategies never see them.
    X_test : ndarray of shape (n_test, n_features)
        Features of the stratified held-out test split.
    y_test : ndarray of int, shape (n_test,)
        Labels of the test split.
    classes : ndarray of shape (n_classes,)
        Original class labels, ``classes[k]`` is the label encoded as ``k``.
    model : ModelFactory
        Builds a fresh task model; the query model is the same model.
    initial_labeled : ndarray of int, shape (n_initial,)
        Pool indices labeled before the first query.
    label_budget : int
        Number of labels the strategy may buy beyond the initial set.
    batch_size : int
        Records queried per loop.
    regime : str
        ``"cold"`` or ``"warm"``, how ``initial_labeled`` was drawn.
    seed : int
        Seed the split, initial set and model seeds were derived from.
    info : dict
        Free-form provenance (source, generator parameters, ...).
    """

    name: str
    X_pool: np.ndarray
    y_pool: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: np.ndarray
    model: ModelFactory
    initial_labeled: np.ndarray
    label_budget: int
    batch_size: int
    regime: str
    seed: int
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return int(self.classes.shape[0])

    @property
    def n_pool(self) -> int:
        return int(self.X_pool.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X_pool.shape[1])

    @property
    def n_loops(self) -> int:
        """Number of query loops the budget allows on this pool."""
        affordable = min(self.label_budget, self.n_pool - self.initial_labeled.size)
        return int(np.ceil(affordable / self.batch_size)) if affordable > 0 else 0

    def with_setting(
        self,
        *,
        model: ModelFactory | None = None,
        regime: str | None = None,
        n_warm: int = 20,
        label_budget: int | None = None,
        batch_size: int | None = None,
        seed: int | None = None,
    ) -> "Task":
        """Copy of the task with another model, regime, budget or batch size, on the same split."""
        seed = self.seed if seed is None else seed
        regime = self.regime if regime is None else regime
        if regime != self.regime or seed != self.seed:
            initial = initial_labeled_set(self.y_pool, regime, n_warm=n_warm, seed=seed)
        else:
            initial = self.initial_labeled
        return Task(
            name=self.name,
            X_pool=self.X_pool,
            y_pool=self.y_pool,
            X_test=self.X_test,
            y_test=self.y_test,
            classes=self.classes,
            model=self.model if model is None else model,
            initial_labeled=initial,
            label_budget=self.label_budget if label_budget is None else label_budget,
            batch_size=self.batch_size if batch_size is None else batch_size,
            regime=regime,
            seed=seed,
            info=dict(self.info),
        )


def initial_labeled_set(y_pool: np.ndarray, regime: str, *, n_warm: int = 20, seed: int = 0) -> np.ndarray:
    """Draw the initial labeled set.

    ``cold``: one random record of each class (the hardest realistic start). ``warm``:
    ``n_warm`` records drawn uniformly at random, topped up so that at least two classes are
    present (a classifier cannot be fitted on one class).
    """
    rng = np.random.default_rng(seed)
    classes = np.unique(y_pool)
    if regime == "cold":
        firsts = [rng.choice(np.flatnonzero(y_pool == c)) for c in classes]
        return np.sort(np.asarray(firsts, dtype=np.int64))
    if regime == "warm":
        n_warm = check_positive_int(n_warm, "n_warm", minimum=2)
        if n_warm >= y_pool.shape[0]:
            raise InvalidInputError(f"n_warm={n_warm} leaves no unlabeled record in a pool of {y_pool.shape[0]}")
        picks = rng.choice(y_pool.shape[0], size=n_warm, replace=False)
        if np.unique(y_pool[picks]).size < 2:
            other = np.flatnonzero(y_pool != y_pool[picks[0]])
            picks[-1] = rng.choice(other)
        return np.sort(picks.astype(np.int64))
    raise InvalidInputError(f"unknown regime {regime!r}; valid regimes: {', '.join(REGIMES)}")


def make_task(
    X: Any,
    y: Any,
    *,
    name: str = "task",
    model: str | ModelFactory = "logreg",
    regime: str = "cold",
    n_warm: int = 20,
    test_size: float | int = 0.3,
    label_budget: int = 100,
    batch_size: int = 1,
    max_pool: int | None = None,
    seed: int = 0,
    preprocess: bool = True,
    info: dict[str, Any] | None = None,
) -> Task:
    """Build a :class:`Task` from features and labels.

    Parameters
    ----------
    X : array-like or DataFrame of shape (n_samples, n_features)
        Raw features; categorical (object/category) columns are one-hot encoded, missing
        values imputed and everything standardised when ``preprocess`` is true. The
        preprocessing is fitted on the pool only, never on the test split.
    y : array-like of shape (n_samples,)
        Labels of any type (strings included); encoded as 0..n_classes-1.
    name : str
        Name of the task, used in reports.
    model : str or ModelFactory
        Task model (see :mod:`metalearn.tasks.models`); its seed is derived from ``seed``.
    regime : {"cold", "warm"}
        How the initial labeled set is drawn (see :func:`initial_labeled_set`).
    n_warm : int
        Size of the initial labeled set in the warm regime.
    test_size : float or int
        Fraction or number of records in the stratified test split.
    label_budget : int
        Labels the strategy may buy.
    batch_size : int
        Records per query loop.
    max_pool : int or None
        If given, the pool is subsampled (stratified) to at most this many records.
    seed : int
        Seeds the split, the initial set and the task model.
    preprocess : bool
        Whether to encode, impute and standardise the features.
    info : dict or None
        Provenance stored on the task.
    """
    label_budget = check_positive_int(label_budget, "label_budget")
    batch_size = check_positive_int(batch_size, "batch_size")
    y_arr = np.asarray(y.to_numpy() if hasattr(y, "to_numpy") else y)
    if y_arr.ndim != 1:
        raise InvalidInputError(f"y must be 1-D, got shape {y_arr.shape}")
    n = y_arr.shape[0]
    if getattr(X, "shape", (len(X),))[0] != n:
        raise InvalidInputError(f"X has {getattr(X, 'shape', (len(X),))[0]} rows but y has {n} labels")
    if y_arr.dtype.kind == "f" and np.isnan(y_arr).any():
        raise InvalidInputError("y has missing labels; a simulated task needs every label (drop those rows)")
    classes, y_enc = np.unique(y_arr, return_inverse=True)
    if classes.size < 2:
        raise InvalidInputError(f"a task needs at least two classes; y has only {classes.tolist()}")
    counts = np.bincount(y_enc)
    if counts.min() < 2:
        small = classes[counts < 2].tolist()
        raise InvalidInputError(
            f"class(es) {small[:5]} have a single record, too few for a stratified pool/test split; "
            "drop or merge them"
        )
    rng = np.random.default_rng(seed)
    split_seed, model_seed, init_seed, sub_seed = (int(s) for s in rng.integers(0, 2**31 - 1, size=4))
    idx = np.arange(n)
    try:
        pool_idx, test_idx = train_test_split(idx, test_size=test_size, stratify=y_enc, random_state=split_seed)
    except ValueError as exc:
        raise InvalidInputError(f"cannot make a stratified test split of size {test_size!r}: {exc}") from None
    if max_pool is not None and pool_idx.size > max_pool:
        check_positive_int(max_pool, "max_pool", minimum=classes.size)
        try:
            pool_idx, _ = train_test_split(
                pool_idx, train_size=max_pool, stratify=y_enc[pool_idx], random_state=sub_seed
            )
        except ValueError:
            pool_idx = np.random.default_rng(sub_seed).choice(pool_idx, size=max_pool, replace=False)
    pool_idx = np.sort(pool_idx)
    test_idx = np.sort(test_idx)
    if preprocess:
        pre = TabularPreprocessor()
        X_pool = pre.fit_transform(_take_rows(X, pool_idx))
        X_test = pre.transform(_take_rows(X, test_idx))
    else:
        X_arr = np.asarray(X, dtype=float)
        X_pool, X_test = X_arr[pool_idx], X_arr[test_idx]
    y_pool, y_test = y_enc[pool_idx].astype(np.int64), y_enc[test_idx].astype(np.int64)
    missing_in_pool = np.setdiff1d(np.arange(classes.size), y_pool)
    if missing_in_pool.size:
        raise InvalidInputError(
            f"class(es) {classes[missing_in_pool].tolist()[:5]} have no record in the pool after the split; "
            "use a larger dataset or a smaller test_size"
        )
    factory = model if isinstance(model, ModelFactory) else ModelFactory(str(model), random_state=model_seed)
    initial = initial_labeled_set(y_pool, regime, n_warm=n_warm, seed=init_seed)
    return Task(
        name=name,
        X_pool=np.ascontiguousarray(X_pool, dtype=float),
        y_pool=y_pool,
        X_test=np.ascontiguousarray(X_test, dtype=float),
        y_test=y_test,
        classes=classes,
        model=factory,
        initial_labeled=initial,
        label_budget=label_budget,
        batch_size=batch_size,
        regime=regime,
        seed=int(seed),
        info=dict(info or {}),
    )


def _take_rows(X: Any, rows: np.ndarray) -> Any:
    if hasattr(X, "iloc"):
        return X.iloc[rows]
    if hasattr(X, "tocsr"):
        return X.tocsr()[rows]
    return np.asarray(X)[rows]
