"""Turn a raw tabular table into the dense numeric matrix every task model and strategy needs.

:class:`TabularPreprocessor` is a plain scikit-learn transformer built on
:class:`~sklearn.compose.ColumnTransformer`:

- numeric columns: median imputation, then standardisation (``StandardScaler``; a constant
  column becomes all zeros, never NaN);
- categorical columns (object, string, category or bool dtype): most-frequent imputation,
  then one-hot encoding with ``handle_unknown="ignore"`` (a category first seen at transform
  time encodes as all zeros) and at most ``max_categories`` output columns per feature.

It is fitted on the pool of a task only, never on its test split, so no information about
the test records leaks into the features.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from sklearn.utils.validation import check_is_fitted

from metalearn.exceptions import InvalidInputError

__all__ = ["TabularPreprocessor"]


def _as_float(X: Any) -> np.ndarray:
    """Numeric block as float64 with NaN for missing values (pandas nullable dtypes use pd.NA)."""
    if isinstance(X, pd.DataFrame):
        return X.to_numpy(dtype=np.float64, na_value=np.nan)
    return np.asarray(X, dtype=np.float64)


def _as_category_strings(X: Any) -> np.ndarray:
    """Categorical block as an object array of strings with ``np.nan`` for missing values.

    ``SimpleImputer`` only recognises ``np.nan`` (not ``None`` or ``pd.NA``) as missing, and
    ``OneHotEncoder`` refuses columns mixing strings and numbers, so every present value is
    turned into its string form.
    """
    frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(X)
    out = np.empty(frame.shape, dtype=object)
    for j, (_, col) in enumerate(frame.items()):
        missing = col.isna().to_numpy()
        values = col.astype(object).to_numpy()
        out[:, j] = [np.nan if m else str(v) for v, m in zip(values, missing)]
    return out


class TabularPreprocessor(TransformerMixin, BaseEstimator):
    """Impute, one-hot encode and standardise a table into a dense float matrix.

    Parameters
    ----------
    max_categories : int or None, default=20
        Upper bound on the one-hot columns of each categorical feature; rarer categories are
        grouped into one "infrequent" column (see ``OneHotEncoder``). ``None`` keeps them all.
    scale : bool, default=True
        Standardise numeric columns to zero mean and unit variance (after imputation).

    Attributes
    ----------
    numeric_columns_ : list of str
        Names of the input columns treated as numeric.
    categorical_columns_ : list of str
        Names of the input columns treated as categorical.
    column_transformer_ : ColumnTransformer
        The fitted scikit-learn transformer doing the work.
    n_features_in_ : int
        Number of input columns seen in :meth:`fit`.
    n_features_out_ : int
        Number of output columns of :meth:`transform`.

    Notes
    -----
    Arrays are accepted as well as DataFrames: a numeric array is all numeric; an object
    array is converted column by column (``DataFrame.infer_objects``), so columns holding
    numbers become numeric and the others categorical. Columns are identified by name for
    DataFrames and by position for arrays.
    """

    def __init__(self, max_categories: int | None = 20, scale: bool = True) -> None:
        self.max_categories = max_categories
        self.scale = scale

    # -- helpers ---------------------------------------------------------------------------
    @staticmethod
    def _to_frame(X: Any) -> pd.DataFrame:
        """Input as a DataFrame with string column names (scikit-learn rejects mixed names)."""
        if isinstance(X, pd.DataFrame):
            frame = X
        elif isinstance(X, pd.Series):
            frame = X.to_frame()
        else:
            if hasattr(X, "toarray"):  # scipy sparse: tables here are small enough to densify
                X = X.toarray()
            arr = np.asarray(X)
            if arr.ndim == 1:
                raise InvalidInputError(
                    f"X must be 2-D (n_samples, n_features), got a 1-D array of length {arr.shape[0]}; "
                    "use X.reshape(-1, 1) for a single feature"
                )
            if arr.ndim != 2:
                raise InvalidInputError(f"X must be 2-D (n_samples, n_features), got shape {arr.shape}")
            frame = pd.DataFrame(arr)
            if arr.dtype == object:
                frame = frame.infer_objects()
        names = [str(c) for c in frame.columns]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise InvalidInputError(f"X has duplicated column names {dup[:5]}; rename them so each is unique")
        if list(frame.columns) != names:
            frame = frame.set_axis(names, axis=1)
        return frame

    @staticmethod
    def _is_numeric(col: pd.Series) -> bool:
        # bool is numeric to pandas, but it is a two-level categorical feature for us.
        return pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype)

    # -- scikit-learn API ------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None) -> "TabularPreprocessor":
        """Learn the column types, imputation values, scales and categories.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Raw features; may hold missing values and non-numeric columns.
        y : ignored
            Present for scikit-learn API compatibility.

        Returns
        -------
        self : TabularPreprocessor
        """
        if self.max_categories is not None and (
            isinstance(self.max_categories, bool) or not isinstance(self.max_categories, (int, np.integer))
            or self.max_categories < 2
        ):
            raise InvalidInputError(f"max_categories must be an integer >= 2 or None, got {self.max_categories!r}")
        frame = self._to_frame(X)
        if frame.shape[0] == 0:
            raise InvalidInputError("X is empty: the preprocessor needs at least one record to fit")
        if frame.shape[1] == 0:
            raise InvalidInputError(f"X has no features (shape {frame.shape})")
        self.numeric_columns_ = [c for c in frame.columns if self._is_numeric(frame[c])]
        self.categorical_columns_ = [c for c in frame.columns if c not in set(self.numeric_columns_)]

        numeric_steps: list[tuple[str, Any]] = [
            ("to_float", FunctionTransformer(_as_float, feature_names_out="one-to-one")),
            # keep_empty_features: an all-missing column stays (as zeros) so the output width
            # does not depend on which records happen to be in the fit set.
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
        ]
        if self.scale:
            numeric_steps.append(("scale", StandardScaler()))
        categorical_steps: list[tuple[str, Any]] = [
            ("to_str", FunctionTransformer(_as_category_strings, feature_names_out="one-to-one")),
            ("impute", SimpleImputer(strategy="most_frequent", keep_empty_features=True)),
            (
                "onehot",
                OneHotEncoder(handle_unknown="ignore", max_categories=self.max_categories, sparse_output=False),
            ),
        ]
        transformers: list[tuple[str, Any, list[str]]] = []
        if self.numeric_columns_:
            transformers.append(("numeric", Pipeline(numeric_steps), self.numeric_columns_))
        if self.categorical_columns_:
            transformers.append(("categorical", Pipeline(categorical_steps), self.categorical_columns_))
        self.column_transformer_ = ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)
        try:
            out = self.column_transformer_.fit_transform(frame)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"cannot preprocess X: {exc}") from None
        self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        self.n_features_in_ = frame.shape[1]
        self.n_features_out_ = int(out.shape[1])
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Apply the fitted preprocessing.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features_in_)
            Raw features with the columns seen in :meth:`fit` (extra DataFrame columns are
            ignored).

        Returns
        -------
        X_out : ndarray of float64, shape (n_samples, n_features_out_)
            Dense, finite feature matrix.
        """
        check_is_fitted(self, "column_transformer_")
        frame = self._to_frame(X)
        if isinstance(X, pd.DataFrame):
            missing = [c for c in self.feature_names_in_ if c not in frame.columns]
            if missing:
                raise InvalidInputError(
                    f"X lacks column(s) {missing[:5]} seen when the preprocessor was fitted; "
                    "pass a table with the same columns"
                )
            frame = frame[list(self.feature_names_in_)]
        elif frame.shape[1] != self.n_features_in_:
            raise InvalidInputError(
                f"X has {frame.shape[1]} columns but the preprocessor was fitted on {self.n_features_in_}"
            )
        else:
            frame = frame.set_axis(list(self.feature_names_in_), axis=1)
        try:
            out = self.column_transformer_.transform(frame)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"cannot preprocess X: {exc}") from None
        out = np.asarray(out, dtype=np.float64)
        # Median imputation and the scaler leave no NaN; an infinite input value would survive,
        # and every consumer downstream needs finite features.
        if not np.all(np.isfinite(out)):
            raise InvalidInputError("X contains infinite values; replace them (e.g. by NaN, which is imputed)")
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the output columns, shape (n_features_out_,)."""
        check_is_fitted(self, "column_transformer_")
        return self.column_transformer_.get_feature_names_out()
