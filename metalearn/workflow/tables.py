"""The user's tables of the ``next-batch`` workflow: reading the records and the labels, writing the table to label.

Reads the records (an id column and features) and the labels (ids and labels, as text) from
CSV, TSV or Parquet files or DataFrames, fingerprints the records, refuses an output path that
is an input, and writes the records to label in the format its suffix names.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metalearn.common.atomic import output_mode
from metalearn.common.csv_cells import restore_cell, write_csv
from metalearn.common.record_identity import match_records, record_keys
from metalearn.common.text import printable
from metalearn.exceptions import DatasetError, InvalidInputError, OutputFileError

_TABLE_SUFFIXES = (".csv.gz", ".tsv.gz", ".csv", ".tsv", ".parquet", ".pq")


def _suffix(path: Path) -> str | None:
    lower = path.name.lower()
    return next((s for s in _TABLE_SUFFIXES if lower.endswith(s)), None)


def _read_table(source: Any, what: str, text_columns: Sequence[str]) -> tuple[pd.DataFrame, str]:
    """A table from a path (CSV/TSV/Parquet) or a DataFrame, with ``text_columns`` as strings."""
    if isinstance(source, pd.DataFrame):
        frame, name = source.copy(), f"the {what} table"
    else:
        path = Path(source).expanduser()
        name = printable(path)
        if not _is_file(path, what):
            hint = " (it may hold just the header line: id,label)" if what == "labels" else ""
            raise DatasetError(f"{what} file {name} does not exist{hint}")
        suffix = _suffix(path)
        if suffix is None:
            raise DatasetError(f"cannot read {name}: use a {', '.join(_TABLE_SUFFIXES)} file")
        try:
            if suffix in (".parquet", ".pq"):
                frame = pd.read_parquet(path)
            else:
                sep = "\t" if suffix.startswith(".tsv") else ","
                frame = pd.read_csv(path, sep=sep, dtype={c: str for c in text_columns}, keep_default_na=True)
                present = [c for c in dict.fromkeys(text_columns) if c in frame.columns]
                if present:
                    # Ids and labels are text: only an empty cell is missing ("NA", "None", "null"
                    # and "nan" are names), so they are read again without pandas' NA strings.
                    text = pd.read_csv(
                        path, sep=sep, usecols=present, dtype=str, keep_default_na=False, na_values=[""]
                    )
                    for column in present:
                        frame[column] = text[column].to_numpy(dtype=object)
        except ImportError:
            raise DatasetError(
                f"cannot read {name}: reading Parquet needs pyarrow, which is not installed "
                "(pip install 'metalearn-al[parquet]'), or save the table as CSV"
            ) from None
        except Exception as exc:  # noqa: BLE001 - any parser or IO failure means an unreadable table
            raise DatasetError(f"cannot read {name} as a {suffix} table: {type(exc).__name__}: {exc}") from None
    frame.columns = [str(c) for c in frame.columns]
    return frame, name


def _is_file(path: Path, what: str) -> bool:
    """Whether ``path`` is a file; a path the system cannot look up (too long...) is a DatasetError."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except (OSError, ValueError) as exc:
        text = str(path)
        shown = text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"
        raise DatasetError(
            f"{what} file {printable(shown)!r}: cannot look it up ({getattr(exc, 'strerror', None) or exc})"
        ) from None


def _text(values: pd.Series) -> np.ndarray:
    """Values as stripped strings (object array), None where missing or blank."""
    out = np.empty(len(values), dtype=object)
    missing = values.isna().to_numpy()
    for i, (value, miss) in enumerate(zip(values.astype(object).to_numpy(), missing)):
        text = None if miss else str(value).strip()
        out[i] = text if text else None
    return out


def _column(frame: pd.DataFrame, column: str, name: str, what: str) -> np.ndarray:
    if column not in frame.columns:
        option = "--id-column" if what == "id" else "--label-column"
        raise DatasetError(
            f"{name} has no {what} column {column!r}; its columns are {list(frame.columns)[:20]} "
            f"(name the right one with {option})"
        )
    return _text(frame[column])


def _records(data: Any, id_column: str, label_column: str) -> tuple[np.ndarray, pd.DataFrame, str, list[str]]:
    frame, name = _read_table(data, "records", [id_column])
    ids = _column(frame, id_column, name, "id")
    missing = np.flatnonzero(np.array([v is None for v in ids], dtype=bool))
    if missing.size:
        raise DatasetError(f"{name}: {missing.size} record(s) have no id (first rows: {(missing[:5] + 1).tolist()})")
    values, counts = np.unique(ids.astype(str), return_counts=True)
    if (counts > 1).any():
        repeated = values[counts > 1]
        raise DatasetError(
            f"{name}: ids must be unique, but {repeated.size} id(s) appear more than once: {repeated[:5].tolist()}"
        )
    notes = []
    if label_column in frame.columns and label_column != id_column:
        notes.append(f"column {label_column!r} of {name} is not used as a feature (labels come from the labels table)")
    features = frame.drop(columns=[c for c in (id_column, label_column) if c in frame.columns])
    if features.shape[1] == 0:
        raise DatasetError(f"{name} has no feature column besides the id column {id_column!r}")
    if len(frame) < 2:
        raise DatasetError(f"{name} holds {len(frame)} record(s); active learning needs a pool of records")
    return ids.astype(str), features, name, notes


def _labels(
    labels: Any, id_column: str, label_column: str, record_ids: np.ndarray, classes: Sequence[str] | None
) -> tuple[np.ndarray, list[str]]:
    """Labels aligned with the records (None where unlabeled) and notes."""
    frame, name = _read_table(labels, "labels", [id_column, label_column])
    ids = _column(frame, id_column, name, "id")
    values = _column(frame, label_column, name, "label")
    notes: list[str] = []
    no_id = np.array([v is None for v in ids], dtype=bool)
    if no_id.any():
        raise DatasetError(f"{name}: {int(no_id.sum())} row(s) have a label but no id (first rows: {(np.flatnonzero(no_id)[:5] + 1).tolist()})")
    empty = np.array([v is None for v in values], dtype=bool)
    if empty.any():
        notes.append(f"{int(empty.sum())} row(s) of {name} have an empty label and were ignored")
    ids, values = ids[~empty].astype(str), values[~empty]
    keys = record_keys(record_ids, record_ids.shape[0])
    position = match_records(keys, _id_keys(ids))
    quoted = np.flatnonzero(position < 0)
    if quoted.size:
        # An id copied from a to_label.csv, where formula-like ids carry a leading quote.
        restored = np.array([restore_cell(i) for i in ids[quoted]], dtype=object)
        position[quoted] = match_records(keys, _id_keys(restored))
    unknown = np.flatnonzero(position < 0)
    if unknown.size:
        shown = ", ".join(repr(v) for v in ids[unknown][:5].tolist())
        raise DatasetError(
            f"{name}: {unknown.size} labeled id(s) are not in the records: {shown}"
            + (" ..." if unknown.size > 5 else "")
            + "; check the id column (ids are compared as text)"
        )
    aligned = np.full(record_ids.shape[0], None, dtype=object)
    conflicts: list[str] = []
    for pos, value in zip(position, values):
        if aligned[pos] is not None and aligned[pos] != value:
            conflicts.append(record_ids[pos])
        aligned[pos] = value
    if conflicts:
        raise DatasetError(
            f"{name}: {len(set(conflicts))} id(s) have two different labels: {sorted(set(conflicts))[:5]}; keep one label per id"
        )
    if classes is not None:
        allowed = set(classes)
        bad = sorted({v for v in aligned if v is not None and v not in allowed})
        if bad:
            raise DatasetError(
                f"{name}: label(s) {bad[:5]} are not among the classes given ({', '.join(classes)}); "
                "fix the labels, or add the class to --classes"
            )
    return aligned, notes


def _id_keys(ids: np.ndarray) -> np.ndarray:
    """64-bit keys of text ids; unlike :func:`record_keys`, repeated ids are allowed (labels)."""
    return pd.util.hash_array(np.asarray(ids, dtype=object), categorize=False).astype(np.uint64)


def _record_hashes(features: pd.DataFrame) -> np.ndarray:
    """A 64-bit hash of each record's raw feature values (independent of preprocessing).

    Numbers are hashed as float64 and everything else as text, so a column that a later
    table reads as float (an integer column that gained a missing value) hashes alike.
    """
    canonical = {}
    for name, column in features.items():
        if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
            canonical[name] = column.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            canonical[name] = _text(column)
    frame = pd.DataFrame(canonical, index=np.arange(len(features)))
    return pd.util.hash_pandas_object(frame, index=False).to_numpy().astype(np.uint64)


def _check_paths(data: Any, labels: Any, out: Path | None, state: Path | None) -> None:
    """Refuse an output that is an input: ``--out`` or the state file must never overwrite the records or labels."""
    inputs = {"--data": data, "--labels": labels}
    outputs = {"--out": out, "--state": state}
    for name, path in {**inputs, **outputs}.items():
        if isinstance(path, (str, os.PathLike)) and "\x00" in os.fspath(path):
            raise InvalidInputError(f"{name} {printable(os.fspath(path)[:100])!r} contains a NUL character")
    for out_name, target in outputs.items():
        if target is None:
            continue
        try:
            is_dir = target.is_dir()
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"{out_name} {printable(str(target)[:80])}: cannot look it up ({exc})") from None
        if is_dir:
            raise InvalidInputError(f"{out_name} {printable(target)} is a folder; give a file name")
        # A device, FIFO or socket (or a symlink to one) is refused before any work: never read
        # without bound (--state /dev/zero), never replaced by a regular file (--out /dev/null).
        try:
            output_mode(target)
        except OutputFileError as exc:
            raise OutputFileError(f"{out_name} {printable(exc)}") from None
        for in_name, source in inputs.items():
            if isinstance(source, pd.DataFrame) or source is None:
                continue
            if _same_file(target, Path(source).expanduser()):
                raise InvalidInputError(
                    f"{out_name} {printable(target)} is the {in_name} file: writing it would overwrite your "
                    f"{'records' if in_name == '--data' else 'labels'}; choose another {out_name}"
                )
    if out is not None and state is not None and _same_file(out, state):
        raise InvalidInputError(f"--out {printable(out)} is the state file; choose another --out")


def _same_file(a: Path, b: Path) -> bool:
    """The same file: equal resolved paths (symlinks followed) or, for existing files, the same inode."""
    try:
        if os.path.realpath(a) == os.path.realpath(b):
            return True
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def _table_writer(table: pd.DataFrame, path: Path) -> Callable[[str], None]:
    """A function writing the records to label to a path (CSV through the shared writer, TSV, Parquet)."""
    suffix = _suffix(path)
    if suffix in (".parquet", ".pq"):
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise InvalidInputError(
                f"cannot write {printable(path)}: writing Parquet needs pyarrow, which is not installed "
                "(pip install 'metalearn-al[parquet]'); use a .csv or .tsv --out"
            ) from None

        def write_parquet(tmp: str) -> None:
            table.to_parquet(tmp, index=False)

        return write_parquet
    compression = "gzip" if suffix and suffix.endswith(".gz") else None
    sep = "\t" if suffix and suffix.startswith(".tsv") else ","

    def write(tmp: str) -> None:
        # Ids that start like a formula (=, +, -, @) get a leading quote (see metalearn.common.csv_cells).
        write_csv(table, tmp, sep=sep, compression=compression)

    return write
