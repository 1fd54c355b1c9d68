"""One simulated active-learning process: labeled set, task model, learning curve.

The environments and :func:`~metalearn.simulation.loop.simulate` both drive this class, so
a strategy is scored the same way whether it runs as a policy in an environment or as a
classic strategy in the benchmark.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.exceptions import ConvergenceWarning

from metalearn.common.threads import limited_threads
from metalearn.exceptions import InvalidInputError
from metalearn.simulation.metrics import segment_area, test_scores
from metalearn.tasks.task import Task

__all__ = ["ActiveLearningProcess"]


class ActiveLearningProcess:
    """The SELECT -> LABEL -> TRAIN -> INFER loop on a :class:`Task`, with oracle labels.

    Parameters
    ----------
    task : Task

    Attributes
    ----------
    labeled : ndarray of bool, shape (n_pool,)
    model : classifier or None
        The task model fitted on the labeled records (after :meth:`fit`).
    n_bought : list of int
        Labels bought at each recorded point of the learning curve.
    accuracy, macro_f1 : list of float
        Test scores at each recorded point.
    """

    def __init__(self, task: Task) -> None:
        self.task = task
        self.labeled = np.zeros(task.n_pool, dtype=bool)
        self.labeled[task.initial_labeled] = True
        self.n_initial = int(self.labeled.sum())
        self.model: ClassifierMixin | None = None
        self.n_bought: list[int] = []
        self.accuracy: list[float] = []
        self.macro_f1: list[float] = []

    @property
    def bought(self) -> int:
        """Labels bought beyond the initial set."""
        return int(self.labeled.sum()) - self.n_initial

    @property
    def budget_left(self) -> int:
        return self.task.label_budget - self.bought

    @property
    def unlabeled_indices(self) -> np.ndarray:
        return np.flatnonzero(~self.labeled)

    @property
    def done(self) -> bool:
        """True once the budget is spent or the pool has no unlabeled record left."""
        return self.budget_left <= 0 or not (~self.labeled).any()

    def observed_labels(self) -> np.ndarray:
        """Pool labels as a strategy sees them: float, NaN where unlabeled; shape (n_pool,)."""
        y = np.full(self.task.n_pool, np.nan)
        y[self.labeled] = self.task.y_pool[self.labeled]
        return y

    def label_indices(self) -> np.ndarray:
        """Index into the model's ``classes_`` of each labeled record's label, -1 elsewhere."""
        out = np.full(self.task.n_pool, -1, dtype=np.int64)
        classes = self.model.classes_ if self.model is not None else np.arange(self.task.n_classes)
        lookup = np.full(self.task.n_classes, -1, dtype=np.int64)
        lookup[np.asarray(classes, dtype=np.int64)] = np.arange(len(classes))
        out[self.labeled] = lookup[self.task.y_pool[self.labeled]]
        return out

    def label(self, indices: np.ndarray) -> None:
        """Reveal the oracle labels of unlabeled pool records."""
        indices = np.asarray(indices, dtype=np.int64)
        if np.unique(indices).size != indices.size:
            raise InvalidInputError("the same record was selected twice in one batch")
        if self.labeled[indices].any():
            raise InvalidInputError(f"records {indices[self.labeled[indices]].tolist()[:5]} are already labeled")
        self.labeled[indices] = True

    def fit(self) -> ClassifierMixin:
        """Train the task model on the labeled records.

        A fresh model each time (a fresh model keeps runs paired), unless the task's model
        factory asks for warm starts (``ModelFactory(..., warm_start=True)``): then the
        process keeps one :class:`~metalearn.tasks.warm_start.WarmStartClassifier` and refits
        it in place, continuing from its last solution (from scratch when a class is new).
        """
        warm = bool(getattr(self.task.model, "warm_start", False)) and self.model is not None
        model = self.model if warm and self.model is not None else self.task.model()
        with limited_threads(), warnings.catch_warnings():  # small fits: one BLAS thread is fastest (see common.threads)
            # A simulated task model is fitted after every batch, on few labels, where the
            # iterative solvers at scikit-learn's defaults (mlp_sklearn) often stop at max_iter:
            # the warning would repeat for every fit of every run of a training job or benchmark.
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(self.task.X_pool[self.labeled], self.task.y_pool[self.labeled])
        self.model = model
        return model

    def evaluate(self) -> tuple[float, float]:
        """Record and return the current model's test accuracy and macro-F1."""
        if self.model is None:
            raise InvalidInputError("fit() the model before evaluating it")
        with limited_threads():
            predicted = self.model.predict(self.task.X_test)
        accuracy, macro_f1 = test_scores(self.task.y_test, predicted, self.task.n_classes)
        self.n_bought.append(self.bought)
        self.accuracy.append(accuracy)
        self.macro_f1.append(macro_f1)
        return accuracy, macro_f1

    def last_segment_area(self, metric: str = "accuracy") -> float:
        """Normalised area of the last learning-curve segment (the per-loop reward)."""
        scores = self.accuracy if metric == "accuracy" else self.macro_f1
        if len(scores) < 2:
            return 0.0
        return segment_area(scores[-2], scores[-1], self.n_bought[-1] - self.n_bought[-2], self.task.label_budget)
