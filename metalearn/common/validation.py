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

from metalearn.common.blocks import row_blocks
from metalearn.exceptions import InvalidInputError, InvalidTypeError, NotFittedClassifierError

__all__ = [
    "check_pool_features",
    "check_labels",
    "check_classifier",
    "check_batch_size",
    "check_positive_int",
    "check_random_state",
    "check_real",
    "check_missing_label",
    "check_probabilities",
    "is_missing",
    "PROBA_TOLERANCE",
]

#: How far class probabilities may stray from [0, 1] and their rows from summing to 1.
PROBA_TOLERANCE = 1e-3


def check_pool_features(X: Any, *, name: str = "X", keep_float32: bool = False) -> np.ndarray:
    """Return ``X`` as a finite 2-D float array of shape (n_samples, n_features).

    Accepts numpy arrays, lists, pandas DataFrames (numeric columns) and scipy sparse
    matrices (densified). Raises :class:`InvalidInputError` for empty, non-numeric,
    wrongly shaped or non-finite input.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    name : str
        What the messages call ``X``.
    keep_float32 : bool, default=False
        Return a float32 numpy array as it is instead of a float64 copy (twice its size). For
        callers whose arithmetic on ``X`` converts a block of rows at a time
        (:mod:`metalearn.common.blocks`); everything else is float64 either way.

    Returns
    -------
    ndarray of float64 (or the float32 array itself with ``keep_float32``), shape (n_samples, n_features)
    """
    if sp.issparse(X):
        X = _densify(X, name)
    elif hasattr(X, "to_numpy") and hasattr(X, "columns"):  # pandas DataFrame
        from pandas.api.types import is_bool_dtype, is_complex_dtype, is_numeric_dtype

        non_numeric = [
            str(c) for c, t in X.dtypes.items() if not (is_numeric_dtype(t) or is_bool_dtype(t)) or is_complex_dtype(t)
        ]
        if non_numeric:
            raise InvalidInputError(
                f"{name} has non-numeric columns {non_numeric[:5]}; encode them first "
                "(metalearn.tasks.preprocessing.TabularPreprocessor one-hot encodes categoricals)"
            )
        try:
            X = X.to_numpy(dtype=float, na_value=np.nan)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"{name} must be numeric; could not convert its columns: {exc}") from None
    elif hasattr(X, "to_numpy") and hasattr(X, "dtype"):  # pandas Series: one column or one row?
        raise InvalidInputError(
            f"{name} must be 2-D (n_samples, n_features), got a pandas Series of length {len(X)}; "
            "use X.to_frame() for a single feature"
        )
    kind = getattr(getattr(X, "dtype", None), "kind", None)
    if kind is None and not isinstance(X, (str, bytes)):
        try:  # lists and other array-likes: look at what numpy makes of them, unconverted
            kind = np.asarray(X).dtype.kind
        except (TypeError, ValueError):
            kind = None
    if kind == "c":
        raise InvalidInputError(
            f"{name} holds complex numbers; give real features (e.g. np.column_stack([X.real, X.imag]))"
        )
    if kind in ("M", "m"):
        raise InvalidInputError(
            f"{name} holds dates or durations (datetime64/timedelta64); encode them as numeric features first "
            "(e.g. days since a reference date)"
        )
    float32 = keep_float32 and isinstance(X, np.ndarray) and X.dtype == np.float32
    try:
        arr = np.asarray(X) if float32 else np.asarray(X, dtype=float)  # asarray: a view, never a copy
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"{name} must be numeric, array-like of shape (n_samples, n_features); could not convert it: {exc}"
        ) from None
    except MemoryError:
        raise InvalidInputError(f"{name} does not fit in memory as a float64 array; subsample the pool") from None
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
    if not _all_finite(arr):
        bad_rows = np.flatnonzero(~np.all(np.isfinite(arr), axis=1))
        raise InvalidInputError(
            f"{name} contains NaN or infinite values in {bad_rows.size} row(s) (first: {bad_rows[:5].tolist()}); "
            "impute or drop them first (metalearn.tasks.preprocessing.TabularPreprocessor imputes)"
        )
    return arr


def _all_finite(arr: np.ndarray) -> bool:
    """Whether every value of the 2-D ``arr`` is finite, a block of rows at a time (no (n, d) mask)."""
    return all(bool(np.isfinite(arr[block]).all()) for block in row_blocks(arr.shape[0]))


def is_missing(y: np.ndarray, missing_label: Any) -> np.ndarray:
    """Boolean mask of the entries of ``y`` equal to ``missing_label`` (NaN-aware, None-aware)."""
    y = np.asarray(y)
    if y.dtype.kind == "O":
        # pandas' NA (nullable and ``string`` dtypes), None and NaN are always missing in
        # object labels, whatever marker the user configured; others are compared one by one
        # (an elementwise == on objects may return NA, an array or raise).
        absent = np.array([_is_absent(v) for v in y.ravel()], dtype=bool).reshape(y.shape)
        if missing_label is None or _is_absent(missing_label):
            return absent
        present = ~absent
        out = absent.copy()
        out[present] = [_same_label(v, missing_label) for v in y[present]]
        return out
    if missing_label is None or _is_absent(missing_label):
        if y.dtype.kind == "f":
            return np.isnan(y)
        return np.zeros(y.shape, dtype=bool)
    if y.dtype.kind == "f" and np.isnan(y).any():
        # NaN is always missing in float labels, whatever marker the user configured.
        return np.isnan(y) | (y == missing_label)
    try:
        return np.asarray(y == missing_label, dtype=bool).reshape(y.shape)
    except (TypeError, ValueError):
        return np.zeros(y.shape, dtype=bool)


def _is_absent(value: Any) -> bool:
    """None, NaN or pandas' NA (the scalar itself, never an element-wise test)."""
    if value is None:
        return True
    if isinstance(value, (float, np.floating)):
        return bool(np.isnan(value))
    return type(value).__name__ == "NAType" or type(value).__name__ == "NaTType"


def _same_label(value: Any, marker: Any) -> bool:
    try:
        return bool(value == marker)
    except (TypeError, ValueError):  # an array-valued or NA comparison: not the marker
        return False


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
    check_missing_label(missing_label)
    if hasattr(y, "to_numpy"):
        y = y.to_numpy()
    try:
        y_arr = np.asarray(y)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"y must be 1-D of shape (n_samples,); could not convert it: {exc}") from None
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
    if y_arr.dtype.kind == "c":
        raise InvalidInputError("y holds complex numbers; labels must be class names or numbers")
    labeled = ~is_missing(y_arr, missing_label)
    if y_arr.dtype.kind == "O" and labeled.any():
        _check_label_values(y_arr[labeled])
    return labeled, y_arr


def _check_label_values(values: np.ndarray) -> None:
    """Labels in an object array must be hashable scalars of one comparable kind."""
    bad = next((v for v in values if isinstance(v, (list, tuple, dict, set, np.ndarray))), None)
    if bad is not None:
        raise InvalidInputError(f"y holds a {type(bad).__name__} as a label; each label must be one class value")
    try:
        np.unique(values)
    except TypeError:
        kinds = sorted({type(v).__name__ for v in values})
        raise InvalidInputError(
            f"y mixes label types that cannot be compared ({', '.join(kinds)}); give every label the same type "
            "(e.g. all strings: y.astype(str))"
        ) from None


def check_missing_label(missing_label: Any) -> Any:
    """``missing_label`` must be one scalar value (None, NaN, a number or a string)."""
    if missing_label is None or _is_absent(missing_label):
        return missing_label
    if isinstance(missing_label, (str, bytes, numbers.Number, np.generic)) and np.ndim(missing_label) == 0:  # type: ignore[arg-type]  # any object has a ndim
        return missing_label
    raise InvalidTypeError(
        f"missing_label must be one scalar marker of unlabeled entries (NaN, None, -1, \"\"...), "
        f"got {type(missing_label).__name__} {missing_label!r}"[:300]
    )


def check_random_state(random_state: Any, name: str = "random_state") -> Any:
    """``random_state`` must be None, an int >= 0 or a numpy Generator (or SeedSequence/BitGenerator)."""
    if random_state is None or isinstance(random_state, (np.random.Generator, np.random.SeedSequence, np.random.BitGenerator)):
        return random_state
    if isinstance(random_state, (bool, np.bool_)) or not isinstance(random_state, (numbers.Integral, np.integer)):
        raise InvalidTypeError(
            f"{name} must be None, a non-negative int or a numpy Generator, got {type(random_state).__name__} "
            f"{random_state!r}"[:300]
        )
    if random_state < 0:
        raise InvalidInputError(f"{name} must be a non-negative int, got {random_state}")
    return random_state


def check_probabilities(proba: Any, n_rows: int, n_classes: int | None = None, *, name: str = "predict_proba") -> np.ndarray:
    """Class probabilities as a float array of shape (n_rows, n_classes), checked.

    Refuses what is not a numeric 2-D array of that shape (a string, a dict, ragged rows, no
    class column), NaN or infinite values, values outside [0, 1] and rows that do not sum to 1
    (each within :data:`PROBA_TOLERANCE`); returns the values clipped to [0, 1].
    """
    what = f"the classifier's {name}"
    if isinstance(proba, (str, bytes, dict)) or sp.issparse(proba):
        raise InvalidInputError(f"{what} returned a {type(proba).__name__}, expected an array of shape ({n_rows}, n_classes)")
    try:
        arr = np.asarray(proba, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{what} returned something that is not a numeric array ({exc})") from None
    if arr.ndim != 2 or arr.shape[0] != n_rows or arr.shape[1] == 0:
        raise InvalidInputError(f"{what} returned shape {arr.shape}, expected ({n_rows}, n_classes)")
    if n_classes is not None and arr.shape[1] != n_classes:
        raise InvalidInputError(
            f"{what} returned {arr.shape[1]} column(s) but the classifier has {n_classes} classes (classes_)"
        )
    if not np.all(np.isfinite(arr)):
        raise InvalidInputError(f"{what} returned NaN or infinite values")
    if arr.size and (arr.min() < -PROBA_TOLERANCE or arr.max() > 1.0 + PROBA_TOLERANCE):
        raise InvalidInputError(
            f"{what} returned values in [{arr.min():.3g}, {arr.max():.3g}]; class probabilities lie in [0, 1] "
            "(apply a softmax to scores first)"
        )
    worst = float(np.abs(arr.sum(axis=1) - 1.0).max()) if arr.size else 0.0
    if worst > PROBA_TOLERANCE:
        raise InvalidInputError(
            f"{what} returned rows that do not sum to 1 (the worst is off by {worst:.3g}); "
            "class probabilities of a record sum to 1"
        )
    return np.clip(arr, 0.0, 1.0)


def _densify(X: Any, name: str) -> np.ndarray:
    """A sparse matrix as a dense array, or a clear error when it cannot be allocated."""
    n_rows, n_cols = X.shape
    n_bytes = float(n_rows) * float(n_cols) * 8.0
    try:
        return X.toarray()
    except (MemoryError, ValueError) as exc:
        if isinstance(exc, ValueError) and "too big" not in str(exc) and "maximum" not in str(exc):
            raise InvalidInputError(f"{name}: cannot densify the sparse matrix ({exc})") from None
        raise InvalidInputError(
            f"{name} is a sparse matrix of shape {X.shape}, which needs {n_bytes / 2**30:.3g} GiB as a dense float64 "
            "array (strategies work on dense features) and cannot be allocated; reduce its features first "
            "(e.g. sklearn.decomposition.TruncatedSVD) or subsample the pool"
        ) from None


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


def check_positive_int(value: Any, name: str, *, minimum: int = 1, maximum: int | None = None) -> int:
    """Return ``value`` as an int in [``minimum``, ``maximum``] or raise a clear error."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise InvalidTypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}"[:300])
    if value < minimum:
        raise InvalidInputError(f"{name} must be >= {minimum}, got {value}"[:300])
    if maximum is not None and int(value) > maximum:
        raise InvalidInputError(f"{name} must be <= {maximum}, got {value}"[:300])
    return int(value)


def check_real(value: Any, name: str) -> float:
    """Return ``value`` as a float; a bool, a string or another non-number is an :class:`InvalidTypeError`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.integer, np.floating)):
        raise InvalidTypeError(f"{name} must be a number, got {type(value).__name__} {value!r}"[:300])
    try:
        return float(value)
    except OverflowError:  # an int such as 10**400
        raise InvalidInputError(f"{name} is too large for a float, got {str(value)[:40]}...") from None


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
