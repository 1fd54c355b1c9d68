"""Input validation shared by every public entry point.

Each check turns a user mistake into one of the project's own errors with a message that
says what was wrong and what to do, before numpy or scikit-learn fail somewhere deep.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from metalearn.exceptions import InvalidInputError, InvalidTypeError, NotFittedClassifierError

__all__ = [
    "check_pool_features",
    "check_labels",
    "check_classifier",
    "check_batch_size",
    "check_positive_int",
    "is_missing",
]


def check_pool_features(X: Any, *, name: str = "X") -> np.ndarray:
    """Return ``X`` as a finite 2-D float array of shape (n_samples, n_features).

    Accepts numpy arrays, lists, pandas DataFrames (numeric columns) and scipy sparse
    matrices (densified). Raises :class:`InvalidInputError` for empty, non-numeric,
    wrongly shaped or non-finite input.
    """
    if sp.issparse(X):
        X = X.toarray()
    elif hasattr(X, "to_numpy") and hasattr(X, "dtypes"):  # pandas DataFrame
        from pandas.api.types import is_bool_dtype, is_numeric_dtype

        non_numeric = [str(c) for c, t in X.dtypes.items() if not (is_numeric_dtype(t) or is_bool_dtype(t))]
        if non_numeric:
            raise InvalidInputError(
                f"{name} has non-numeric columns {non_numeric[:5]}; encode them first "
                "(metalearn.tasks.preprocessing.TabularPreprocessor one-hot encodes categoricals)"
            )
        X = X.to_numpy(dtype=float)
    try:
        arr = np.asarray(X, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"{name} must be numeric, array-like of shape (n_samples, n_features); could not convert it: {exc}"
        ) from None
    if arr.ndim == 1:
        raise InvalidInputError(
            f"{name} must be 2-D (n_samples, n_features), got a 1-D array of length {arr.shape[0]}; "
            "use X.reshape(-1, 1) for a single feature"
        )
    if arr.ndim != 2:
        raise InvalidInputError(f"{name} must be 2-D (n_samples, n_features), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise InvalidInputError(f"{name} is empty: the pool needs at least one record")
    if arr.shape[1] == 0:
        raise InvalidInputError(f"{name} has no features (shape {arr.shape})")
    if not np.all(np.isfinite(arr)):
        bad_rows = np.flatnonzero(~np.all(np.isfinite(arr), axis=1))
        raise InvalidInputError(
            f"{name} contains NaN or infinite values in {bad_rows.size} row(s) (first: {bad_rows[:5].tolist()}); "
            "impute or drop them first (metalearn.tasks.preprocessing.TabularPreprocessor imputes)"
        )
    return arr


def is_missing(y: np.ndarray, missing_label: Any) -> np.ndarray:
    """Boolean mask of the entries of ``y`` equal to ``missing_label`` (NaN-aware, None-aware)."""
    y = np.asarray(y)
    if missing_label is None or (isinstance(missing_label, float) and np.isnan(missing_label)):
        if y.dtype.kind == "f":
            return np.isnan(y)
        if y.dtype.kind == "O":
            return np.array([v is None or (isinstance(v, float) and np.isnan(v)) for v in y], dtype=bool)
        return np.zeros(y.shape, dtype=bool)
    if y.dtype.kind == "f" and np.isnan(y).any():
        # NaN is always missing in float labels, whatever marker the user configured.
        return np.isnan(y) | (y == missing_label)
    return np.asarray(y == missing_label, dtype=bool)


def check_labels(y: Any, n_samples: int, missing_label: Any = np.nan) -> tuple[np.ndarray, np.ndarray]:
    """Validate the pool labels and split them into a labeled mask and the labels themselves.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Labels of the pool; unlabeled entries hold ``missing_label`` (NaN for float labels).
    n_samples : int
        Number of rows of the pool.
    missing_label : scalar
        Marker of unlabeled entries.

    Returns
    -------
    labeled : ndarray of bool, shape (n_samples,)
    y_array : ndarray of shape (n_samples,)
    """
    if hasattr(y, "to_numpy"):
        y = y.to_numpy()
    y_arr = np.asarray(y)
    if y_arr.ndim == 2 and y_arr.shape[1] == 1:
        y_arr = y_arr.ravel()
    if y_arr.ndim != 1:
        raise InvalidInputError(f"y must be 1-D of shape (n_samples,), got shape {y_arr.shape}")
    if y_arr.shape[0] != n_samples:
        raise InvalidInputError(
            f"y has {y_arr.shape[0]} entries but X has {n_samples} rows; give one label (or the missing marker) per row"
        )
    if y_arr.dtype.kind == "f" and np.isinf(y_arr).any():
        raise InvalidInputError("y contains infinite values; mark unlabeled rows with NaN (or missing_label)")
    labeled = ~is_missing(y_arr, missing_label)
    return labeled, y_arr


def check_classifier(clf: Any, *, require_fitted: bool = True, n_features: int | None = None) -> None:
    """Check that ``clf`` is a classifier with ``predict_proba`` (and is fitted).

    With ``n_features``, a fitted classifier that records another number of input features
    (scikit-learn's ``n_features_in_``) is refused: it was fitted on another dataset.
    """
    if clf is None:
        raise InvalidTypeError("clf is None; pass a fitted scikit-learn classifier with predict_proba")
    if not callable(getattr(clf, "predict_proba", None)):
        hint = ""
        if callable(getattr(clf, "decision_function", None)):
            hint = (
                "; it has decision_function only: wrap it in sklearn.calibration.CalibratedClassifierCV, "
                "or use SVC(probability=True)"
            )
        raise InvalidTypeError(f"{type(clf).__name__} has no predict_proba, which every strategy needs{hint}")
    if require_fitted:
        try:
            check_is_fitted(clf)
        except NotFittedError:
            raise NotFittedClassifierError(
                f"{type(clf).__name__} is not fitted; fit it on the labeled records before calling query"
            ) from None
        except (TypeError, AttributeError):
            # Not a scikit-learn estimator (scikit-learn >= 1.6 raises AttributeError for an
            # object without __sklearn_tags__): trust the duck type.
            pass
    expected = getattr(clf, "n_features_in_", None)
    if n_features is not None and isinstance(expected, (numbers.Integral, np.integer)) and expected != n_features:
        raise InvalidInputError(
            f"{type(clf).__name__} was fitted on {int(expected)} features but the pool has {n_features}; "
            "fit it on the pool's features (the same columns, in the same order)"
        )


def check_positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    """Return ``value`` as an int >= ``minimum`` or raise a clear error."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise InvalidTypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise InvalidInputError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_batch_size(batch_size: Any, n_unlabeled: int) -> int:
    """Validate a batch size against the number of unlabeled records left."""
    batch_size = check_positive_int(batch_size, "batch_size")
    if n_unlabeled == 0:
        raise InvalidInputError("the pool has no unlabeled records left to query")
    if batch_size > n_unlabeled:
        raise InvalidInputError(
            f"batch_size={batch_size} is larger than the {n_unlabeled} unlabeled record(s) left in the pool; "
            f"ask for at most {n_unlabeled}"
        )
    return batch_size
