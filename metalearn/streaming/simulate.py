"""Run a :class:`~metalearn.streaming.stream_policy.StreamingPolicy` over a whole labeled stream.

For evaluation: the records of ``X`` arrive in order, the policy decides on each with the
current model, a kept record's label is read from ``y`` (the oracle) and the model is refit
on every label bought so far.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import clone

from metalearn.common.validation import check_labels, check_pool_features
from metalearn.exceptions import InvalidInputError
from metalearn.streaming.stream_policy import StreamingPolicy

__all__ = ["StreamResult", "simulate_stream"]


@dataclass
class StreamResult:
    """What happened over one simulated stream.

    Attributes
    ----------
    decisions : ndarray of bool, shape (n_records,)
        True where the label was bought.
    quantiles : ndarray of float, shape (n_records,)
        Each record's quantile among the reference window (nan when it was not scored).
    rates : ndarray of float, shape (n_records,)
        The target keep rate at each record.
    model : classifier
        The model fitted on the initial and bought labels at the end.
    """

    decisions: np.ndarray
    quantiles: np.ndarray
    rates: np.ndarray
    model: Any

    @property
    def kept(self) -> np.ndarray:
        """Stream positions of the bought labels, shape (n_labels,)."""
        return np.flatnonzero(self.decisions)

    @property
    def n_labels(self) -> int:
        return int(self.decisions.sum())


def simulate_stream(
    policy: StreamingPolicy,
    X: Any,
    y: Any,
    clf: Any,
    X_initial: Any,
    y_initial: Any,
    *,
    refit: bool = True,
) -> StreamResult:
    """Decide on every record of a labeled stream, buying labels from ``y``.

    Parameters
    ----------
    policy : StreamingPolicy
        Used as is (call ``policy.reset()`` first to start it afresh).
    X : array-like of shape (n_records, n_features)
        The stream, in arrival order.
    y : array-like of shape (n_records,)
        The oracle's labels of the stream.
    clf : classifier
        An estimator with ``predict_proba``; clones of it are fitted on the labeled records.
    X_initial : array-like of shape (n_initial, n_features)
        Records labeled before the stream starts (at least one).
    y_initial : array-like of shape (n_initial,)
    refit : bool, default=True
        Refit the model after each bought label (else keep the initial model).

    Returns
    -------
    StreamResult
    """
    X_arr = check_pool_features(X)
    given, y_arr = check_labels(y, X_arr.shape[0], missing_label=None)
    X_lab = check_pool_features(X_initial, name="X_initial")
    given_initial, y_lab = check_labels(y_initial, X_lab.shape[0], missing_label=None)
    if not (given.all() and given_initial.all()):
        raise InvalidInputError("y and y_initial must hold a label for every record (found NaN or None)")
    if X_lab.shape[1] != X_arr.shape[1]:
        raise InvalidInputError(
            f"X_initial has {X_lab.shape[1]} features but X has {X_arr.shape[1]}; give both the same columns"
        )
    X_lab_list, y_lab_list = list(X_lab), list(y_lab)
    model = clone(clf).fit(X_lab, y_lab)
    n = X_arr.shape[0]
    decisions = np.zeros(n, dtype=bool)
    quantiles = np.full(n, np.nan)
    rates = np.full(n, np.nan)
    for i in range(n):
        decisions[i] = policy.decide(X_arr[i], model)
        quantiles[i], rates[i] = policy.quantile_, policy.rate_
        if decisions[i]:
            X_lab_list.append(X_arr[i])
            y_lab_list.append(y_arr[i])
            if refit:
                model = clone(clf).fit(np.asarray(X_lab_list), np.asarray(y_lab_list))
    return StreamResult(decisions=decisions, quantiles=quantiles, rates=rates, model=model)
