"""Labelled tabular datasets that simulated active-learning tasks are cut from.

Sources
-------
- scikit-learn's bundled datasets (no download): :func:`load_sklearn_dataset`;
- one CSV (``.csv``, ``.csv.gz``, ``.tsv``, ``.tsv.gz``) or Parquet (``.parquet``, ``.pq``)
  file with a label column: :func:`load_table`;
- a folder of ``NAME.csv.gz`` files with a ``target`` column and a ``MANIFEST.csv`` that
  lists ``name`` and ``split`` (the format of the project's ``../shared/datasets``):
  :func:`list_manifest`, :func:`load_manifest_folder`, :func:`iter_manifest_folder`;
- a spec string resolving to any of those: :func:`load_dataset` / :func:`load_datasets`.

Dataset files are never copied into the repository: code takes the folder as a parameter,
and :func:`default_data_dir` resolves the usual default (environment variable
``METALEARN_DATA_DIR``, else ``../shared/datasets`` next to a source checkout).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from metalearn.exceptions import DatasetError, UnknownNameError

__all__ = [
    "Dataset",
    "DATA_DIR_ENV",
    "SKLEARN_DATASETS",
    "default_data_dir",
    "load_sklearn_dataset",
    "load_table",
    "list_manifest",
    "load_manifest_folder",
    "iter_manifest_folder",
    "load_dataset",
    "load_datasets",
]

#: Environment variable naming the default dataset folder.
DATA_DIR_ENV = "METALEARN_DATA_DIR"
#: Default label column of tables and manifest folders.
DEFAULT_LABEL_COLUMN = "target"
_MANIFEST = "MANIFEST.csv"
# File suffixes understood by load_table, longest first so ".csv.gz" wins over ".gz".
_TABLE_SUFFIXES = (".csv.gz", ".tsv.gz", ".csv", ".tsv", ".parquet", ".pq")


@dataclass
class Dataset:
    """A labelled table before any preprocessing.

    Attributes
    ----------
    name : str
        Short name (file stem, bundled name or generator name and seed).
    X : pandas.DataFrame of shape (n_samples, n_features)
        Raw features, possibly with missing values and non-numeric columns.
    y : ndarray of shape (n_samples,)
        Class labels of any type (ints, strings...).
    info : dict
        Provenance: source, path, manifest fields, generator parameters...
    """

    name: str
    X: pd.DataFrame
    y: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    @property
    def n_classes(self) -> int:
        return int(pd.unique(pd.Series(self.y)).size)

    def class_counts(self) -> pd.Series:
        """Number of records of each class, largest first."""
        return pd.Series(self.y).value_counts()


# ---------------------------------------------------------------------------------------------
# Default folder
# ---------------------------------------------------------------------------------------------
def _repo_root() -> Path:
    # metalearn/tasks/datasets.py -> the checkout (or site-packages) holding `metalearn/`.
    return Path(__file__).resolve().parents[2]


def default_data_dir() -> Path | None:
    """The default dataset folder, or ``None`` when there is none.

    ``$METALEARN_DATA_DIR`` when set (returned even if it does not exist, so that the loader
    reports the wrong path); otherwise ``../shared/datasets`` next to the source checkout,
    only if that folder exists (an installed package has none).
    """
    env = os.environ.get(DATA_DIR_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    candidate = (_repo_root() / ".." / "shared" / "datasets").resolve()
    return candidate if candidate.is_dir() else None


# ---------------------------------------------------------------------------------------------
# scikit-learn bundled datasets
# ---------------------------------------------------------------------------------------------
def _sklearn_loaders() -> dict[str, Callable[..., Any]]:
    from sklearn import datasets as skd

    return {
        "iris": skd.load_iris,
        "wine": skd.load_wine,
        "breast_cancer": skd.load_breast_cancer,
        "digits": skd.load_digits,
    }


#: Names of the scikit-learn datasets that ship with scikit-learn (no download needed).
SKLEARN_DATASETS: tuple[str, ...] = ("iris", "wine", "breast_cancer", "digits")


def load_sklearn_dataset(name: str) -> Dataset:
    """Load one of scikit-learn's bundled classification datasets.

    Parameters
    ----------
    name : str
        One of :data:`SKLEARN_DATASETS` (``iris``, ``wine``, ``breast_cancer``, ``digits``);
        case-insensitive, ``-`` accepted for ``_``.

    Returns
    -------
    Dataset
        ``X`` a DataFrame of shape (n_samples, n_features), ``y`` int labels of shape
        (n_samples,); ``info["target_names"]`` holds the class names.
    """
    key = str(name).strip().lower().replace("-", "_")
    loaders = _sklearn_loaders()
    if key not in loaders:
        raise UnknownNameError(
            f"unknown scikit-learn dataset {name!r}; valid names: {', '.join(SKLEARN_DATASETS)}"
        )
    bunch = loaders[key](as_frame=True)
    X = bunch.data.copy()
    y = np.asarray(bunch.target.to_numpy(), dtype=np.int64)
    info = {"source": f"sklearn:{key}", "target_names": [str(t) for t in bunch.target_names]}
    return Dataset(name=key, X=X, y=y, info=info)


# ---------------------------------------------------------------------------------------------
# Single files
# ---------------------------------------------------------------------------------------------
def _table_suffix(path: Path) -> str | None:
    lower = path.name.lower()
    return next((s for s in _TABLE_SUFFIXES if lower.endswith(s)), None)


def _table_stem(path: Path) -> str:
    suffix = _table_suffix(path)
    return path.name[: -len(suffix)] if suffix else path.stem


def _read_table(path: Path) -> pd.DataFrame:
    suffix = _table_suffix(path)
    if suffix is None:
        raise DatasetError(
            f"cannot read {path}: unsupported file type; use one of {', '.join(_TABLE_SUFFIXES)}"
        )
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        sep = "\t" if suffix.startswith(".tsv") else ","
        return pd.read_csv(path, sep=sep)  # compression inferred from ".gz"
    except ImportError as exc:
        raise DatasetError(
            f"cannot read {path}: {exc}; install pyarrow (pip install 'metalearn-al[parquet]')"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any parser/IO/arrow failure means "unreadable file"
        raise DatasetError(f"cannot read {path} as a {suffix} table: {type(exc).__name__}: {exc}") from None


def load_table(
    path: str | os.PathLike[str],
    label_column: str | None = None,
    *,
    name: str | None = None,
) -> Dataset:
    """Load a labelled table from a CSV or Parquet file.

    Parameters
    ----------
    path : str or path-like
        A ``.csv``, ``.csv.gz``, ``.tsv``, ``.tsv.gz``, ``.parquet`` or ``.pq`` file with a
        header row.
    label_column : str or None
        Column holding the class labels; ``None`` means ``"target"``.
    name : str or None
        Name of the dataset; defaults to the file name without its suffixes.

    Returns
    -------
    Dataset
        ``X`` the other columns, shape (n_samples, n_columns - 1); ``y`` the labels, shape
        (n_samples,). Rows without a label are dropped (simulation needs every label);
        ``info["dropped_unlabeled"]`` counts them.

    Raises
    ------
    DatasetError
        Missing or unreadable file, unknown label column, no feature column, or no labelled
        row.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise DatasetError(f"dataset file {p} does not exist; check the path (relative paths start at {Path.cwd()})")
    if p.is_dir():
        raise DatasetError(f"{p} is a folder, not a table file; use load_manifest_folder for folders")
    label = DEFAULT_LABEL_COLUMN if label_column is None else str(label_column)
    frame = _read_table(p)
    frame.columns = [str(c) for c in frame.columns]
    if label not in frame.columns:
        raise DatasetError(
            f"{p} has no label column {label!r}; its columns are {list(frame.columns)[:20]}"
            + ("..." if frame.shape[1] > 20 else "")
            + "; pass label_column=... naming the column with the classes"
        )
    if frame.shape[1] < 2:
        raise DatasetError(f"{p} has only the label column {label!r} and no feature column")
    labelled = frame[label].notna().to_numpy()
    if not labelled.any():
        raise DatasetError(f"{p} has no row with a label in column {label!r}")
    dropped = int((~labelled).sum())
    if dropped:
        frame = frame.loc[labelled].reset_index(drop=True)
    y = frame[label].to_numpy()
    X = frame.drop(columns=[label])
    info: dict[str, Any] = {"source": "file", "path": str(p), "label_column": label, "dropped_unlabeled": dropped}
    return Dataset(name=name or _table_stem(p), X=X, y=y, info=info)


# ---------------------------------------------------------------------------------------------
# Manifest folders
# ---------------------------------------------------------------------------------------------
def _check_folder(path: str | os.PathLike[str]) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise DatasetError(
            f"dataset folder {p} does not exist; pass an existing folder (or set ${DATA_DIR_ENV})"
        )
    if not p.is_dir():
        raise DatasetError(f"{p} is not a folder; pass the folder holding MANIFEST.csv and the NAME.csv.gz files")
    return p


def _resolve_table_file(folder: Path, name: str) -> Path | None:
    for suffix in (".csv.gz", ".csv", ".parquet", ".pq", ".tsv.gz", ".tsv"):
        candidate = folder / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def list_manifest(path: str | os.PathLike[str], split: str | None = None) -> pd.DataFrame:
    """List the datasets of a folder, from its ``MANIFEST.csv``.

    Parameters
    ----------
    path : str or path-like
        Folder with ``MANIFEST.csv`` (columns ``name``, ``split`` and any others) and one
        ``NAME.csv.gz`` (or ``.csv`` / ``.parquet``) file per dataset. A folder without a
        manifest is listed from its table files, with no split.
    split : str or None
        Keep only the rows of this split (e.g. ``"train"`` or ``"validation"``); ``None``
        keeps all.

    Returns
    -------
    pandas.DataFrame
        One row per dataset, the manifest's columns, plus ``file`` (the path of the table).

    Raises
    ------
    DatasetError
        Missing folder, unreadable manifest, no ``name`` column, listed file missing, or a
        split filter on a manifest without ``split`` column.
    InvalidInputError
        ``split`` is not one of the splits of the manifest (the message lists them).
    """
    folder = _check_folder(path)
    manifest_path = folder / _MANIFEST
    if manifest_path.is_file():
        try:
            manifest = pd.read_csv(manifest_path)
        except Exception as exc:  # noqa: BLE001 - any parser failure means "unreadable manifest"
            raise DatasetError(f"cannot read {manifest_path}: {type(exc).__name__}: {exc}") from None
        if "name" not in manifest.columns:
            raise DatasetError(
                f"{manifest_path} has no 'name' column (columns: {list(manifest.columns)}); "
                "the manifest needs one row per dataset with its name"
            )
        manifest["name"] = manifest["name"].astype(str)
    else:
        files = sorted(p for p in folder.iterdir() if p.is_file() and _table_suffix(p) is not None)
        if not files:
            raise DatasetError(f"{folder} has neither {_MANIFEST} nor any table file (.csv, .csv.gz, .parquet)")
        manifest = pd.DataFrame({"name": [_table_stem(p) for p in files]})
    if split is not None:
        if "split" not in manifest.columns:
            raise DatasetError(
                f"{folder} has no split information ({_MANIFEST} with a 'split' column); use split=None"
            )
        valid = sorted(str(s) for s in manifest["split"].dropna().unique())
        if split not in valid:
            raise UnknownNameError(f"unknown split {split!r} for {folder}; valid splits: {', '.join(valid)} (or None for all)")
        manifest = manifest.loc[manifest["split"] == split]
    files_found: list[str] = []
    for name in manifest["name"]:
        f = _resolve_table_file(folder, name)
        if f is None:
            raise DatasetError(f"{folder / _MANIFEST} lists {name!r} but {folder} has no {name}.csv.gz (or .csv, .parquet)")
        files_found.append(str(f))
    manifest = manifest.assign(file=files_found).reset_index(drop=True)
    return manifest


def _manifest_info(row: pd.Series) -> dict[str, Any]:
    """Manifest row as plain Python values (NaN -> None), for ``Dataset.info``."""
    info: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, float) and math.isnan(value):
            value = None
        elif isinstance(value, np.generic):
            value = value.item()
        info[str(key)] = value
    return info


def _select_manifest(
    path: str | os.PathLike[str], split: str | None, names: Sequence[str] | None
) -> pd.DataFrame:
    manifest = list_manifest(path, split)
    if names is not None:
        if isinstance(names, str):
            names = [names]
        available = manifest["name"].tolist()
        unknown = [n for n in names if n not in available]
        if unknown:
            where = f" in split {split!r}" if split is not None else ""
            raise UnknownNameError(
                f"dataset(s) {unknown} not found{where} of {path}; available: {', '.join(sorted(available))}"
            )
        order = {n: i for i, n in enumerate(names)}
        manifest = manifest.loc[manifest["name"].isin(list(order))].copy()
        manifest = manifest.iloc[np.argsort([order[n] for n in manifest["name"]], kind="stable")]
    return manifest.reset_index(drop=True)


def iter_manifest_folder(
    path: str | os.PathLike[str],
    split: str | None = None,
    *,
    names: Sequence[str] | None = None,
    label_column: str | None = None,
) -> Iterator[Dataset]:
    """Lazily load the datasets of a manifest folder, one at a time.

    Same arguments as :func:`load_manifest_folder`; the manifest is checked up front, each
    file is read when the iterator reaches it.
    """
    manifest = _select_manifest(path, split, names)

    def _generate() -> Iterator[Dataset]:
        for _, row in manifest.iterrows():
            ds = load_table(row["file"], label_column, name=str(row["name"]))
            ds.info = {**ds.info, **_manifest_info(row), "source": "folder", "folder": str(Path(path))}
            yield ds

    return _generate()


def load_manifest_folder(
    path: str | os.PathLike[str],
    split: str | None = None,
    *,
    names: Sequence[str] | None = None,
    label_column: str | None = None,
) -> list[Dataset]:
    """Load the datasets of a folder in the ``../shared/datasets`` format.

    Parameters
    ----------
    path : str or path-like
        Folder with ``MANIFEST.csv`` and ``NAME.csv.gz`` files (see :func:`list_manifest`).
    split : str or None
        ``"train"``, ``"validation"`` (any split of the manifest), or ``None`` for all.
    names : sequence of str or None
        Load only these datasets, in this order.
    label_column : str or None
        Label column of the files; ``None`` means ``"target"``.

    Returns
    -------
    list of Dataset
        In manifest order (or ``names`` order); ``info`` holds the manifest row.
    """
    return list(iter_manifest_folder(path, split, names=names, label_column=label_column))


# ---------------------------------------------------------------------------------------------
# Spec strings
# ---------------------------------------------------------------------------------------------
def _parse_folder_spec(body: str) -> tuple[Path, str | None]:
    """``PATH`` or ``PATH:SELECTOR`` (a split or a dataset name); a path may contain ':'."""
    if not body:
        raise DatasetError("folder spec is empty; write folder:PATH or folder:PATH:SPLIT")
    p = Path(body).expanduser()
    if p.is_dir() or ":" not in body:
        return p, None
    head, _, selector = body.rpartition(":")
    return Path(head).expanduser(), (selector or None)


def _load_folder_selection(folder: Path, selector: str | None, label_column: str | None) -> list[Dataset]:
    if selector is None:
        return load_manifest_folder(folder, label_column=label_column)
    manifest = list_manifest(folder)
    splits = set(manifest["split"].dropna().astype(str)) if "split" in manifest.columns else set()
    if selector in splits:
        return load_manifest_folder(folder, selector, label_column=label_column)
    if selector in set(manifest["name"]):
        return load_manifest_folder(folder, names=[selector], label_column=label_column)
    raise UnknownNameError(
        f"{selector!r} is neither a split ({', '.join(sorted(splits)) or 'none'}) nor a dataset of {folder}; "
        f"datasets: {', '.join(sorted(manifest['name']))}"
    )


def load_datasets(spec: str | os.PathLike[str], *, label_column: str | None = None) -> list[Dataset]:
    """Resolve a dataset spec to a list of datasets.

    Spec forms, tried in this order:

    - ``sklearn:NAME``: a bundled scikit-learn dataset (see :func:`load_sklearn_dataset`);
    - ``folder:PATH`` or ``folder:PATH:SELECTOR``: a manifest folder, all of it, one split
      (``train``, ``validation``...) or one dataset name;
    - ``file:PATH``: a table file;
    - an existing directory: like ``folder:PATH``; an existing file: like ``file:PATH``;
    - a bare name: a bundled scikit-learn dataset, else a dataset of the default data
      folder (:func:`default_data_dir`).

    Parameters
    ----------
    spec : str or path-like
        The spec.
    label_column : str or None
        Label column of table files; ``None`` means ``"target"``.

    Returns
    -------
    list of Dataset
    """
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str) or not spec.strip():
        raise DatasetError(f"dataset spec must be a non-empty string, got {spec!r}")
    spec = spec.strip()
    kind, sep, body = spec.partition(":")
    if sep and kind == "sklearn":
        return [load_sklearn_dataset(body)]
    if sep and kind == "folder":
        folder, selector = _parse_folder_spec(body)
        return _load_folder_selection(folder, selector, label_column)
    if sep and kind == "file":
        return [load_table(body, label_column)]
    p = Path(spec).expanduser()
    if p.is_dir():
        return load_manifest_folder(p, label_column=label_column)
    if p.is_file():
        return [load_table(p, label_column)]
    key = spec.lower().replace("-", "_")
    if key in SKLEARN_DATASETS:
        return [load_sklearn_dataset(key)]
    looks_like_path = any(ch in spec for ch in "/\\") or _table_suffix(p) is not None
    if looks_like_path:
        raise DatasetError(f"dataset path {spec!r} does not exist")
    data_dir = default_data_dir()
    available: list[str] = []
    if data_dir is not None and data_dir.is_dir():
        try:
            available = list_manifest(data_dir)["name"].tolist()
        except DatasetError:
            available = []
        if spec in available:
            return load_manifest_folder(data_dir, names=[spec], label_column=label_column)
    where = f"; datasets of {data_dir}: {', '.join(sorted(available))}" if available else ""
    raise UnknownNameError(
        f"unknown dataset {spec!r}: not a file, folder or known name. Use sklearn:NAME "
        f"({', '.join(SKLEARN_DATASETS)}), a file path, folder:PATH[:SPLIT], or a name{where}"
    )


def load_dataset(spec: str | os.PathLike[str], *, label_column: str | None = None) -> Dataset:
    """Resolve a spec naming exactly one dataset (see :func:`load_datasets` for the forms).

    Raises
    ------
    DatasetError
        When the spec resolves to several datasets (a folder or a split); use
        :func:`load_datasets` for those, or ``folder:PATH:NAME`` for one of them.
    """
    found = load_datasets(spec, label_column=label_column)
    if len(found) != 1:
        raise DatasetError(
            f"dataset spec {spec!r} resolves to {len(found)} datasets; use load_datasets for several, "
            "or folder:PATH:NAME for one"
        )
    return found[0]
