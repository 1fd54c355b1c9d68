"""A labeling workflow without a framework: ``metalearn next-batch``.

Between labeling sessions a person has a table of records and a table of the labels gathered
so far. :func:`next_batch` reads both, fits a task model on the labeled records, asks the
strategy (a learned policy, by default the released ``default`` one, or a classic strategy)
for the next records and writes them, with their scores, to a table to label. Run it again
when the labels come in: the policy's multi-loop metadata history (the predictions of every
earlier run) is kept in a small state file beside the labels, so every loop benefits from
the earlier ones, as it would inside one program.

Tables
------
- records (CSV, TSV or Parquet): an id column (``id`` by default) and the feature columns,
  numeric or categorical, missing values allowed (``TabularPreprocessor`` imputes, one-hot
  encodes and standardises them, fitted on all records). A column named like the label
  column is ignored (never used as a feature).
- labels: the id column and a label column (``label``), for any subset of the records, in
  any order. Ids and labels are read as text (``007`` stays ``007``); rows with an empty label
  are ignored (a way to skip a record); the same id twice with the same label is fine,
  with two different labels an error.

The state file
--------------
``<labels>.metalearn-state`` by default: a :mod:`~metalearn.common.container` file
(safetensors: arrays and a JSON header, no pickle, nothing executable) with a fingerprint of the records (a 64-bit key per id and a hash
of each record's raw values, the feature column names), the loop count, the seed and label
budget of the first run, a log of each run (labeled count, picked ids) and, for a policy, its
metadata history keyed by record id. Records may be added to or removed from the table
between runs (the history follows ids; new records start with an empty history); a state
whose ids are all absent, whose records' values changed, or whose columns differ belongs to
another dataset and is refused (delete it, or pass another ``--state``, to start over). Every
field is checked at read (types, ranges, one log record per loop, the stopping rule's
section): a hand-edited or corrupted state is a :class:`StateFileError`, never a failure
deep in a run.

Several people, one state
-------------------------
Records handed out and not yet labeled are *pending* (the state lists them with the loop that
handed them out): the next run does not hand them out again, so people who ask one after the
other get different records. A record stops being pending when its label appears in the
labels table, or when it is released (``release_pending=True`` / ``--release-pending`` for all,
``release=[ids]`` / ``--release ID,...`` for some). Runs on one state at the same time are
serialised by an exclusive lock on ``<state>.lock`` (held from reading the state to writing
the outputs; a run that waits longer than ``lock_timeout`` stops with
:class:`StateLockedError`). The state and the table to label are written all or none
(:class:`~metalearn.common.atomic.AtomicGroup`, the state first: see :func:`_write_outputs`).

Classes
-------
Without ``classes``, any label value is a class, and a value seen for the first time is a new
class (the model and the history widen to it). With ``classes``, a label outside that list
is an error (a typo guard). At least two classes need labeled records before a model can be
fitted; until then ``policy="random"`` picks a first batch without a model.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metalearn.common import container
from metalearn.common.atomic import AtomicGroup, output_mode
from metalearn.common.csv_cells import restore_cell, write_csv
from metalearn.common.file_lock import ExclusiveFileLock
from metalearn.common.container import NUMPY_DTYPES, FileKind
from metalearn.common.record_identity import match_records, record_keys
from metalearn.common.text import printable
from metalearn.exceptions import DatasetError, InvalidInputError, InvalidTypeError, OutputFileError
from metalearn.policies.file import MAX_WINDOW, PolicyFile
from metalearn.policies.strategy import PolicyStrategy
from metalearn.strategies.base import QueryStrategy

__all__ = [
    "next_batch", "NextBatch", "StateFileError", "StateLockedError", "default_state_path", "read_state", "STATE_SUFFIX",
    "LOCK_TIMEOUT_SECONDS",
]

#: Suffix appended to the labels file name for the default state file.
STATE_SUFFIX = ".metalearn-state"
_STATE_FORMAT = "metalearn-next-batch-state"
_STATE_VERSION = 1
_TABLE_SUFFIXES = (".csv.gz", ".tsv.gz", ".csv", ".tsv", ".parquet", ".pq")
_STOP_PREFIX = "stop."
_SCHEDULE_PREFIX = "schedule."
_HISTORY_ARRAYS = ("proba", "margin", "entropy", "predicted", "loop_statistics", "fresh", "record_keys")


#: Seconds a run waits while another ``next-batch`` uses the same state file.
LOCK_TIMEOUT_SECONDS = 60.0
#: Records picked per run when neither ``batch_size`` nor a schedule says how many.
DEFAULT_BATCH_SIZE = 20


class StateFileError(InvalidInputError):
    """The state file is unreadable, from another dataset, or inconsistent with the labels."""


class StateLockedError(StateFileError):
    """Another ``next-batch`` process held the state file for longer than the run would wait."""


#: The state file's kind in the container. Its arrays hold ids, hashes and flags (any numpy
#: dtype); the history grows with the pool (n_records x window x n_classes floats) and the
#: metadata with a stopping rule's last predictions (one label per record), hence larger
#: limits than a policy's. Its metadata is written with Python's default JSON (ASCII, NaN
#: allowed), as every existing state file was.
STATE_KIND = FileKind(
    format=_STATE_FORMAT,
    version=_STATE_VERSION,
    label="state file",
    noun="metalearn next-batch state file",
    version_label="next-batch state",
    error=StateFileError,
    version_key="version",
    dtypes=NUMPY_DTYPES,
    max_file_bytes=16 * 2**30,
    max_header_bytes=256 * 2**20,
    allow_nan=True,
    ensure_ascii=True,
    expected="a next-batch state file (or another --state)",
    recovery="; delete it to start over",
    write_advice="; choose another --state",
)


@dataclass
class NextBatch:
    """The result of one :func:`next_batch` run.

    Attributes
    ----------
    table : pandas.DataFrame
        The records to label next: the id column, ``rank`` (1 = most useful) and ``score``
        (the policy's score of each pick when it was chosen, higher = more useful; for
        uncertainty strategies the uncertainty; NaN for strategies without scores).
    loop : int
        This run's loop number (1 for the first run with this state file).
    n_records, n_labeled : int
    classes : list of str
        Classes with labeled records.
    strategy : str
        The strategy used (policy file path or strategy name).
    history_loops : int
        Loops in the policy's metadata history after this run (0 for classic strategies).
    state_path : Path or None
    out_path : Path or None
    notes : list of str
        Things worth telling the user (ignored empty labels, unlabeled previous picks...).
    stop : bool or None
        The stopping rule's recommendation this run (None without a rule or a model).
    stop_rule : str or None
        The stopping rule used (its description).
    stop_estimate : dict or None
        A learned rule's estimate: expected gain (accuracy points) from its horizon of next
        labels, its quantiles, the threshold (see :class:`~metalearn.stopping.GainEstimate`).
    pending : dict of int to list of str
        Records handed out and not yet labeled, by the loop that handed them out (this run's
        batch included); they are not handed out again until labeled or released.
    batch_size : int or None
        Records picked this run.
    schedule : str or None
        The schedule's suggestion and why, one line (None without a schedule or its advice).
    """

    table: pd.DataFrame
    loop: int
    n_records: int
    n_labeled: int
    classes: list[str]
    strategy: str
    history_loops: int
    state_path: Path | None
    out_path: Path | None
    notes: list[str] = field(default_factory=list)
    stop: bool | None = None
    stop_rule: str | None = None
    stop_estimate: dict[str, Any] | None = None
    pending: dict[int, list[str]] = field(default_factory=dict)
    batch_size: int | None = None
    schedule: str | None = None


# ------------------------------------------------------------------------------------ tables
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


# ------------------------------------------------------------------------------------ state file
def default_state_path(labels: str | os.PathLike[str]) -> Path:
    """``<labels file>.metalearn-state``, beside the labels."""
    path = Path(labels).expanduser()
    return path.with_name(path.name + STATE_SUFFIX)


def read_state(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a state file: its JSON metadata and its arrays (safetensors; no pickle).

    Raises
    ------
    StateFileError
        Unreadable (a folder, a FIFO, too large, truncated, corrupted), not a next-batch state
        file (a policy...), written by a newer metalearn, or with fields out of range.
    """
    path = Path(path)
    data = container.read_bounded(path, STATE_KIND)
    meta = container.read_metadata(data, STATE_KIND, path)
    arrays = container.load_tensors(data, STATE_KIND, path)
    where = STATE_KIND.where(path)
    _check_state_content(meta, arrays, where)
    return meta, arrays


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


#: Bounds of a state's counters: far beyond any labeling project, far below what breaks numpy.
_MAX_LOOPS = 10**6
_MAX_SEED = 2**64 - 1
_MAX_BUDGET = 10**9
#: Keys every state of this version holds (``pending`` and ``stopping`` are optional).
_REQUIRED_META = ("columns", "n_records", "id_column", "label_column", "seed", "label_budget", "loops", "history", "log")
_JSON_SCALAR = (str, int, float, bool, type(None))


def _check_state_content(meta: dict[str, Any], arrays: dict[str, np.ndarray], where: str) -> None:
    """Every field has the type, range and consistency this release writes; else StateFileError.

    Checked at read, before any work: the counters (``loops``, ``seed``, ``label_budget``), the
    log (one entry per loop), the pending records, the policy history's and the stopping rule's
    sections and the arrays they index, so that a tampered state is one error of ours rather
    than a failure deep in a run or a silently wrong history.
    """
    fix = "the file was edited or corrupted; delete it to start over"

    def bad(what: str, value: Any) -> StateFileError:
        return StateFileError(f"{where}: {what}, got {printable(repr(value)[:100])}; {fix}")

    def integer(value: Any, what: str, low: int, high: int) -> int:
        if not _is_int(value) or not low <= value <= high:
            raise bad(f"{what} must be an integer in [{low}, {high}]", value)
        return value

    def text_list(value: Any, what: str, *, unique: bool = False) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad(f"{what} must be a list of strings", value)
        if unique and len(set(value)) != len(value):
            raise bad(f"{what} must not repeat a value", value)
        return value

    missing = [key for key in _REQUIRED_META if key not in meta]
    if missing:
        raise bad(f"it lacks {', '.join(repr(k) for k in missing)}", sorted(meta))
    for key in ("id_keys", "record_hashes"):
        if key not in arrays:
            raise StateFileError(f"{where} lacks its {key!r} array (corrupted)")
        if arrays[key].ndim != 1 or arrays[key].dtype.kind not in "iu":
            raise bad(f"array {key!r} must be 1-D integers", f"shape {arrays[key].shape}, dtype {arrays[key].dtype}")
    n_saved = int(arrays["id_keys"].shape[0])
    if arrays["record_hashes"].shape != arrays["id_keys"].shape:
        raise bad(
            "arrays 'id_keys' and 'record_hashes' must have one entry per record",
            f"{arrays['id_keys'].shape[0]} and {arrays['record_hashes'].shape[0]}",
        )
    n_records = integer(meta["n_records"], "'n_records'", 1, 2**40)
    if n_records != n_saved:
        raise bad(f"'n_records' must equal the {n_saved} record ids of the file", n_records)
    text_list(meta["columns"], "'columns'", unique=True)
    for key in ("id_column", "label_column"):
        if not isinstance(meta[key], str):
            raise bad(f"{key!r} must be a column name", meta[key])
    integer(meta["seed"], "'seed'", 0, _MAX_SEED)
    integer(meta["label_budget"], "'label_budget'", 1, _MAX_BUDGET)
    loops = integer(meta["loops"], "'loops'", 1, _MAX_LOOPS)
    _check_log(meta["log"], loops, bad)
    _check_pending(meta.get("pending", []), loops, bad)
    _check_history(meta["history"], arrays, n_saved, bad)
    _check_stopping(meta.get("stopping"), arrays, n_saved, loops, bad)
    _check_schedule(meta.get("schedule"), arrays, n_saved, loops, bad)


def _check_schedule(
    schedule: Any, arrays: dict[str, np.ndarray], n_saved: int, loops: int, bad: Callable[[str, Any], StateFileError]
) -> None:
    """A batch schedule's section: its spec, counters, log (one answer per call) and history arrays."""
    schedule_arrays = [k for k in arrays if k.startswith(_SCHEDULE_PREFIX)]
    if schedule is None:
        if schedule_arrays:
            raise bad("schedule arrays without a 'schedule' section", sorted(schedule_arrays))
        return
    if not isinstance(schedule, dict):
        raise bad("'schedule' must be an object", schedule)
    for key in ("spec", "schedule"):
        if not isinstance(schedule.get(key), str):
            raise bad(f"'schedule.{key}' must be text", schedule.get(key))
    for key, low, high in (("n_calls", 0, loops), ("n_pool", 1, 2**40), ("n_features", 1, 2**31)):
        value = schedule.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise bad(f"'schedule.{key}' must be an integer in [{low}, {high}]", value)
    if schedule["n_pool"] != n_saved:
        raise bad(f"'schedule.n_pool' must equal the {n_saved} records of the file", schedule["n_pool"])
    log = schedule.get("log")
    if not isinstance(log, list) or len(log) != schedule["n_calls"]:
        raise bad("'schedule.log' must hold one record per call ('n_calls')", log)
    for number, entry in enumerate(log, start=1):
        if not isinstance(entry, dict) or entry.get("call") != number:
            raise bad(f"'schedule.log' record {number} must be an object with 'call': {number}", entry)
        for key in ("batch_size", "budget_left", "n_labeled"):
            value = entry.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_BUDGET:
                raise bad(f"'schedule.log' record {number}: {key!r} must be an integer in [0, {_MAX_BUDGET}]", value)
        if any(not isinstance(value, _JSON_SCALAR) for value in entry.values()):
            raise bad(f"'schedule.log' record {number} must hold numbers or text", entry)
    if "features" in schedule and not isinstance(schedule["features"], dict):
        raise bad("'schedule.features' must be an object", schedule["features"])


def _check_log(log: Any, loops: int, bad: Callable[[str, Any], StateFileError]) -> None:
    """One run record per loop, numbered 1, 2, ...; picked ids are text."""
    if not isinstance(log, list) or not all(isinstance(entry, dict) for entry in log):
        raise bad("'log' must be a list of run records", log)
    if len(log) != loops:
        raise bad(f"'log' must hold one record per loop ({loops})", f"{len(log)} record(s)")
    for number, entry in enumerate(log, start=1):
        if entry.get("loop") != number or not _is_int(entry.get("loop")):
            raise bad(f"log record {number} must say 'loop': {number}", entry.get("loop"))
        picked = entry.get("picked")
        if not isinstance(picked, list) or not all(isinstance(i, str) for i in picked):
            raise bad("each 'log' entry's 'picked' must be a list of ids", picked)
        for key in ("n_labeled", "n_records"):
            if key in entry and (not _is_int(entry[key]) or entry[key] < 0):
                raise bad(f"log record {number}: {key!r} must be an integer >= 0", entry[key])
        for key in ("strategy", "model"):
            if key in entry and not isinstance(entry[key], str):
                raise bad(f"log record {number}: {key!r} must be text", entry[key])
        if "stop" in entry and entry["stop"] not in (True, False, None):
            raise bad(f"log record {number}: 'stop' must be true, false or null", entry["stop"])


def _check_pending(pending: Any, loops: int, bad: Callable[[str, Any], StateFileError]) -> None:
    """Reserved records: groups ``{"loop": n, "ids": [...]}`` of earlier loops, no id twice."""
    if not isinstance(pending, list) or not all(isinstance(g, dict) and set(g) == {"loop", "ids"} for g in pending):
        raise bad("'pending' must be a list of {'loop', 'ids'} records", pending)
    seen: set[str] = set()
    for group in pending:
        if not _is_int(group["loop"]) or not 1 <= group["loop"] <= loops:
            raise bad(f"a 'pending' loop must be an integer in [1, {loops}]", group["loop"])
        ids = group["ids"]
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or seen & set(ids) or len(set(ids)) != len(ids):
            raise bad("'pending' ids must be lists of distinct ids, each id in one loop", ids)
        seen.update(ids)


def _check_history(history: Any, arrays: dict[str, np.ndarray], n_saved: int, bad: Callable[[str, Any], StateFileError]) -> None:
    """A policy's history section (null for classic strategies) and its arrays' presence and shapes."""
    present = [name for name in _HISTORY_ARRAYS if name in arrays]
    if history is None:
        if present:
            raise bad("history arrays without a 'history' section", present)
        return
    if not isinstance(history, dict):
        raise bad("'history' must be an object or null", history)
    classes = history.get("classes")
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes) or len(set(classes)) != len(classes):
        raise bad("'history.classes' must be a list of distinct class names", classes)
    for key, minimum in (("window", 2), ("n_loops", 0), ("n_records", 1), ("n_queries", 0), ("label_budget", 1)):
        if key in history and (not _is_int(history[key]) or history[key] < minimum):
            raise bad(f"'history.{key}' must be an integer >= {minimum}", history[key])
    if not _is_int(history.get("window")) or not _is_int(history.get("n_records")):
        raise bad("'history' needs integer 'window' and 'n_records'", history)
    if history["window"] > MAX_WINDOW:
        raise bad(f"'history.window' must be at most {MAX_WINDOW} loops", history["window"])
    if history["n_records"] != n_saved:
        raise bad(f"'history.n_records' must equal the {n_saved} records of the file", history["n_records"])
    n_initial = history.get("n_initial_labeled")
    if n_initial is not None and (not _is_int(n_initial) or n_initial < 0):
        raise bad("'history.n_initial_labeled' must be an integer >= 0 or null", n_initial)
    if set(present) != set(_HISTORY_ARRAYS):
        raise bad("a 'history' section needs all its arrays", sorted(set(_HISTORY_ARRAYS) - set(present)))
    if arrays["record_keys"].ndim != 1 or arrays["record_keys"].shape[0] != n_saved:
        raise bad(f"array 'record_keys' must be 1-D with {n_saved} entries", arrays["record_keys"].shape)


def _check_stopping(
    stopping: Any, arrays: dict[str, np.ndarray], n_saved: int, loops: int, bad: Callable[[str, Any], StateFileError]
) -> None:
    """A stopping rule's section: its name, counters, log and the arrays of its history."""
    from metalearn.stopping.classic import CLASSIC_RULES

    stop_arrays = {k[len(_STOP_PREFIX):]: v for k, v in arrays.items() if k.startswith(_STOP_PREFIX)}
    if stopping is None:
        if stop_arrays:
            raise bad("stopping-rule arrays without a 'stopping' section", sorted(stop_arrays))
        return
    if not isinstance(stopping, dict):
        raise bad("'stopping' must be an object", stopping)
    if stopping.get("rule") not in (*CLASSIC_RULES, "learned"):
        raise bad("'stopping.rule' must name a stopping rule", stopping.get("rule"))
    if not isinstance(stopping.get("spec"), str):
        raise bad("'stopping.spec' must be text", stopping.get("spec"))
    for key, low, high in (("n_features", 1, 2**31), ("n_pool", 1, 2**40), ("n_calls", 1, loops)):
        value = stopping.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise bad(f"'stopping.{key}' must be an integer in [{low}, {high}]", value)
    if stopping["n_pool"] != n_saved:
        raise bad(f"'stopping.n_pool' must equal the {n_saved} records of the file", stopping["n_pool"])
    log = stopping.get("log")
    if not isinstance(log, list) or len(log) != stopping["n_calls"]:
        raise bad("'stopping.log' must hold one record per call ('n_calls')", log)
    for number, entry in enumerate(log, start=1):
        if not isinstance(entry, dict) or entry.get("call") != number or not _is_int(entry.get("call")):
            raise bad(f"'stopping.log' record {number} must be an object with 'call': {number}", entry)
        if not _is_int(entry.get("n_labeled")) or entry["n_labeled"] < 0 or entry.get("stop") not in (True, False):
            raise bad(f"'stopping.log' record {number} needs an integer 'n_labeled' and a boolean 'stop'", entry)
        for key, value in entry.items():
            items = value if isinstance(value, list) else [value]
            if not all(isinstance(v, _JSON_SCALAR) for v in items):
                raise bad(f"'stopping.log' record {number}: {key!r} must be a number, text or a list of them", value)
    if "below" in stopping and (not _is_int(stopping["below"]) or not 0 <= stopping["below"] <= loops):
        raise bad(f"'stopping.below' must be an integer in [0, {loops}]", stopping["below"])
    kappas = stopping.get("kappas", [])
    if not isinstance(kappas, list) or len(kappas) > loops or not all(
        isinstance(k, (int, float)) and not isinstance(k, bool) and (k != k or -1.0 <= k <= 1.0) for k in kappas
    ):
        raise bad("'stopping.kappas' must be a list of agreements in [-1, 1], at most one per loop", kappas)
    if "features" in stopping and not isinstance(stopping["features"], dict):
        raise bad("'stopping.features' must be an object", stopping["features"])
    n_predicted = n_saved  # classification change: one prediction per record; stabilizing: per stop-set record
    if "stop_set" in stop_arrays:
        stop_set = stop_arrays["stop_set"]
        if (stop_set.ndim != 1 or stop_set.dtype.kind not in "iu" or stop_set.size == 0
                or np.any(np.diff(stop_set.astype(np.int64)) <= 0) or stop_set.min() < 0 or stop_set.max() >= n_saved):
            raise bad(f"array 'stop.stop_set' must hold distinct sorted record positions in [0, {n_saved})",
                      f"shape {stop_set.shape}, dtype {stop_set.dtype}")
        n_predicted = int(stop_set.size)
    if "last_predictions" in stopping:
        predictions = stopping["last_predictions"]
        if not isinstance(predictions, list) or len(predictions) != n_predicted or not all(
            isinstance(v, _JSON_SCALAR) for v in predictions
        ):
            raise bad(f"'stopping.last_predictions' must hold one label (or null) per predicted record ({n_predicted})",
                      "...")


def _check_fingerprint(
    meta: dict[str, Any], arrays: dict[str, np.ndarray], id_keys: np.ndarray, hashes: np.ndarray,
    columns: list[str], record_ids: np.ndarray, state_path: Path, records_name: str,
) -> np.ndarray:
    """Positions of the current records in the state (-1 for new ones); refuses another dataset."""
    fix = f"delete {state_path} (or pass another --state) to start a fresh history"
    saved_columns = meta.get("columns")
    if saved_columns != columns:
        raise StateFileError(
            f"state file {str(state_path)!r} was written for records with columns {saved_columns[:10] if isinstance(saved_columns, list) else saved_columns}, "
            f"but {records_name} has {columns[:10]}: it belongs to another dataset; {fix}"
        )
    saved_keys = arrays["id_keys"].astype(np.uint64)
    old = match_records(saved_keys, id_keys)
    if not np.any(old >= 0):
        raise StateFileError(
            f"state file {str(state_path)!r} is from a different dataset: none of its {saved_keys.size} record ids "
            f"is in {records_name}; {fix}"
        )
    kept = np.flatnonzero(old >= 0)
    changed = kept[arrays["record_hashes"].astype(np.uint64)[old[kept]] != hashes[kept]]
    if changed.size:
        raise StateFileError(
            f"state file {str(state_path)!r} does not match {records_name}: {changed.size} record(s) with the same id "
            f"hold different values than when it was written (e.g. {record_ids[changed[:3]].tolist()}); "
            f"it is from a different dataset or the records were edited; {fix}"
        )
    return old


# ------------------------------------------------------------------------------------ strategy
def _strategy(policy: Any, label_budget: int, seed: int) -> tuple[QueryStrategy, str]:
    """The strategy of ``--policy`` (see :func:`~metalearn.strategies.resolve.resolve_strategy`) and its label."""
    from metalearn.strategies.resolve import resolve_strategy, strategy_label

    strategy = resolve_strategy(policy, label_budget=label_budget, missing_label=None, random_state=seed)
    return strategy, strategy_label(strategy)


def _loop_seed(seed: int, loop: int) -> int:
    """The seed of one run: a stream of independent seeds from the first run's seed."""
    return int(np.random.SeedSequence([int(seed), int(loop)]).generate_state(1)[0])


# ------------------------------------------------------------------------------------ the workflow
def next_batch(
    data: str | os.PathLike[str] | pd.DataFrame,
    labels: str | os.PathLike[str] | pd.DataFrame,
    *,
    model: str = "rf",
    batch_size: int | None = None,
    policy: str | os.PathLike[str] | PolicyFile = "default",
    out: str | os.PathLike[str] | None = None,
    state: str | os.PathLike[str] | None = None,
    id_column: str = "id",
    label_column: str = "label",
    classes: Sequence[str] | None = None,
    seed: int | None = None,
    label_budget: int | None = None,
    stop_rule: str | os.PathLike[str] | None = "default",
    release_pending: bool = False,
    release: Sequence[str] | None = None,
    lock_timeout: float = LOCK_TIMEOUT_SECONDS,
    schedule: str | os.PathLike[str] | None = None,
) -> NextBatch:
    """Pick the next records to label from the records and the labels gathered so far.

    Records handed out by an earlier run and still unlabeled are reserved (the state lists
    them as pending): they are not handed out again until their labels appear in the labels
    table or they are released, so two people who ask one after the other get different
    records. Two runs on one state at the same time are serialised by a lock on the state.

    Parameters
    ----------
    data : path or DataFrame
        The records: an id column and feature columns (CSV, TSV or Parquet).
    labels : path or DataFrame
        Labels gathered so far: the id column and the label column, any subset of records.
    model : str
        Task model of the zoo (``rf``, ``logreg``, ``hgb``, ``svm``, ``knn``, ``mlp``, ``nb``),
        fitted on the labeled records; it is also the query model.
    batch_size : int or None, default=None
        Records to pick (at most the number of unlabeled records). None: the schedule's
        suggestion with a ``schedule``, else 20.
    policy : str, path-like or PolicyFile
        A released policy name (``"default"``), a policy file, or a classic strategy name
        (``margin``, ``random``...), resolved by
        :func:`~metalearn.strategies.resolve.resolve_strategy` (a strategy name wins over a
        policy of the same name; write ``./name`` for a file).
    out : path, optional
        Where to write the table of records to label (CSV/TSV/Parquet by suffix).
    state : path, optional
        The state file; default ``<labels>.metalearn-state`` (required when ``labels`` is a
        DataFrame and the history should persist; without it nothing is persisted).
    id_column, label_column : str
        Column names.
    classes : sequence of str, optional
        The allowed label values; a label outside them is an error.
    seed : int, optional
        Seed of the first run (default 0); later runs continue the state's seed stream (a
        different value is ignored with a note).
    label_budget : int, optional
        Labels you intend to buy (default 100; kept in the state): scales the policy's
        ``budget_used`` feature.
    stop_rule : str, path-like or None, default="default"
        A stopping rule (:func:`metalearn.load_stopping_rule`: the released learned rule, a
        file, or a classic criterion's name) asked, after fitting, whether to stop buying
        labels; its history is kept in the state file. None: no stopping advice.
    schedule : str, path-like or None, default=None
        A batch schedule (:func:`metalearn.load_schedule`: a rule spec such as
        ``geometric:2:2`` or a learned schedule's file) asked, after fitting, how many records
        to buy before the next retrain (with the labels left in ``label_budget``); its answer
        is this run's batch size unless ``batch_size`` is given, and its history (loop count,
        metadata) is kept in the state file.
    release_pending : bool, default=False
        Hand out again every record of earlier runs that is still unlabeled (e.g. after an
        annotator dropped their batch).
    release : sequence of str, optional
        Ids of pending records to hand out again (the others stay reserved).
    lock_timeout : float, default=60
        Seconds to wait while another ``next-batch`` uses the same state file.

    Returns
    -------
    NextBatch

    Raises
    ------
    DatasetError
        Unreadable tables, missing columns, duplicate or missing ids, labeled ids not in the
        records, two labels for one id, labels outside ``classes``.
    StateFileError
        A state file from another dataset (no common id, changed records or columns), or
        unreadable.
    StateLockedError
        Another ``next-batch`` held the state for longer than ``lock_timeout``.
    OutputFileError
        ``out`` or ``state`` is not a regular file (a device, a FIFO, a symlink to one), or
        writing failed (full disk...): then neither output has changed.
    InvalidInputError
        Fewer than two classes labeled (for a strategy that needs a model), a batch larger
        than the unlabeled records not handed out already, or a class that lost all its
        labels since the last run.
    """
    from metalearn.common.validation import check_positive_int, check_real

    if schedule is not None:
        from metalearn.schedules import load_schedule

        load_schedule(schedule)  # a bad spec or file fails before any work
    if batch_size is not None:
        batch_size = check_positive_int(batch_size, "batch_size")
    elif schedule is None:
        batch_size = DEFAULT_BATCH_SIZE
    if seed is not None:
        check_positive_int(seed, "seed", minimum=0)
    if label_budget is not None:
        check_positive_int(label_budget, "label_budget")
    if not 0.0 <= check_real(lock_timeout, "lock_timeout") <= 24 * 3600:
        raise InvalidInputError(f"lock_timeout must be between 0 and 86400 seconds, got {lock_timeout!r}"[:200])
    if release is not None:
        if isinstance(release, str) or not all(isinstance(i, str) for i in release):
            raise InvalidTypeError("release must be a list of record ids (text)")
        release = [i.strip() for i in release if i.strip()]
    for option, column in (("id_column", id_column), ("label_column", label_column)):
        if not isinstance(column, str) or not column.strip():
            raise InvalidInputError(f"{option} must be a column name, got {column!r}"[:300])
    if id_column == label_column:
        raise InvalidInputError(
            f"the id column and the label column are both {id_column!r}; name the label column with --label-column"
        )
    out_path = None if out is None else Path(out).expanduser()
    if state is None and not isinstance(labels, pd.DataFrame):
        state = default_state_path(labels)
    state_path = None if state is None else Path(state).expanduser()
    _check_paths(data, labels, out_path, state_path)
    if classes is not None:
        classes = [str(c).strip() for c in classes if str(c).strip()]
        if len(set(classes)) < 2:
            raise InvalidInputError(f"classes must list at least two distinct values, got {classes}")
    ids, features, records_name, notes = _records(data, id_column, label_column)
    y, label_notes = _labels(labels, id_column, label_column, ids, classes)
    notes += label_notes
    n_records = ids.shape[0]
    n_unlabeled = n_records - sum(v is not None for v in y)
    if n_unlabeled == 0:
        raise InvalidInputError(f"every one of the {n_records} records is labeled: nothing left to pick")
    if batch_size is not None and batch_size > n_unlabeled:
        raise InvalidInputError(f"batch_size={batch_size} but only {n_unlabeled} record(s) are unlabeled; ask for at most {n_unlabeled}")

    lock: Any = contextlib.nullcontext()
    if state_path is not None:
        shown = printable(state_path)
        lock = ExclusiveFileLock(
            state_path, timeout=lock_timeout,
            busy=lambda: StateLockedError(
                f"another next-batch is using {shown}; try again (waited {lock_timeout:g} s for it to finish)"
            ),
        )
    with lock:  # from reading the state to writing every output: no lost update, no record handed out twice
        return _run_locked(
            ids=ids, features=features, records_name=records_name, notes=notes, y=y, model=model,
            batch_size=batch_size, policy=policy, out_path=out_path, state_path=state_path, id_column=id_column,
            label_column=label_column, seed=seed, label_budget=label_budget, stop_rule=stop_rule,
            release_pending=release_pending, release=release, schedule=schedule,
        )


def _run_locked(
    *, ids: np.ndarray, features: pd.DataFrame, records_name: str, notes: list[str], y: np.ndarray, model: str,
    batch_size: int | None, policy: Any, out_path: Path | None, state_path: Path | None, id_column: str,
    label_column: str, seed: int | None, label_budget: int | None, stop_rule: Any, release_pending: bool,
    release: Sequence[str] | None, schedule: Any = None,
) -> NextBatch:
    """The part of :func:`next_batch` that reads the state and writes the outputs (under the state's lock)."""
    from metalearn.common.validation import check_positive_int
    from metalearn.strategies.uncertainty import UncertaintySampling
    from metalearn.tasks.models import make_model
    from metalearn.tasks.preprocessing import TabularPreprocessor

    labeled = np.array([v is not None for v in y], dtype=bool)
    n_records, n_labeled = ids.shape[0], int(labeled.sum())
    id_keys = record_keys(ids, n_records)
    hashes = _record_hashes(features)
    columns = [str(c) for c in features.columns]
    saved: dict[str, Any] | None = None
    saved_arrays: dict[str, np.ndarray] = {}
    old_positions = None
    if state_path is not None and _exists(state_path):
        saved, saved_arrays = read_state(state_path)
        old_positions = _check_fingerprint(saved, saved_arrays, id_keys, hashes, columns, ids, state_path, records_name)
        n_new, n_gone = int((old_positions < 0).sum()), saved_arrays["id_keys"].size - int((old_positions >= 0).sum())
        if n_new or n_gone:
            notes.append(f"records changed since the last run: {n_new} new, {n_gone} removed (the history follows ids)")
    first_seed = 0 if seed is None else int(seed)
    if saved is not None:
        if seed is not None and int(seed) != int(saved["seed"]):
            notes.append(f"--seed {seed} ignored: this state continues the seed stream of its first run (seed {saved['seed']})")
        first_seed = int(saved["seed"])
    budget = int(saved["label_budget"]) if saved is not None else 100
    if label_budget is not None:
        budget = check_positive_int(label_budget, "label_budget")
    loop = int(saved["loops"]) + 1 if saved is not None else 1
    run_seed = _loop_seed(first_seed, loop)

    pending = _still_pending(saved.get("pending", []) if saved is not None else [], ids, labeled, release_pending,
                             release, notes)
    reserved = np.isin(ids, [i for group in pending for i in group["ids"]])
    available = np.flatnonzero(~labeled & ~reserved)
    if batch_size is not None and batch_size > available.size:
        held = _pending_summary(pending)
        raise InvalidInputError(
            f"batch_size={batch_size} but only {available.size} unlabeled record(s) are not handed out already "
            f"({held}); ask for at most {available.size}, or hand the pending ones out again with --release-pending "
            "(release_pending=True) or --release ID,..."
        )

    strategy, strategy_name = _strategy(policy, budget, run_seed)
    label_values = sorted({v for v in y if v is not None})
    X = TabularPreprocessor().fit_transform(features)
    clf = None
    if strategy.requires_classifier:
        if len(label_values) < 2:
            raise InvalidInputError(
                f"the model needs labeled records of at least two classes, but the labels hold {n_labeled} labeled "
                f"record(s) of {len(label_values)} class(es) {label_values[:5]}; label a few records of another class "
                "(a first batch without a model: --policy random)"
            )
        clf = make_model(model, random_state=run_seed).fit(X[labeled], y[labeled].astype(str))

    history_meta = saved.get("history") if saved is not None else None
    if isinstance(strategy, PolicyStrategy) and history_meta is not None:
        _restore_policy_history(strategy, X, ids, label_values, history_meta, saved_arrays, state_path, notes)

    stop, stop_name, stop_estimate, stop_state = _stopping_advice(
        stop_rule, X, y, clf, saved, saved_arrays, old_positions, run_seed, notes, state_path
    )
    suggested, schedule_advice, schedule_state = _schedule_advice(
        schedule, X, y, clf, budget - n_labeled, saved, saved_arrays, old_positions, notes, state_path
    )
    if batch_size is None:
        batch_size = DEFAULT_BATCH_SIZE if suggested is None else suggested
        if batch_size > available.size:
            notes.append(f"{batch_size} record(s) suggested but only {available.size} are not handed out already: "
                         f"{available.size} picked")
            batch_size = int(available.size)

    restrict = available if reserved.any() else None
    if isinstance(strategy, PolicyStrategy):
        picks = strategy.query(X, y, clf, batch_size=batch_size, record_ids=ids, candidates=restrict, step_scores=True)
        scores = strategy.last_pick_scores_.astype(np.float64)
    else:
        # A classic strategy picks from the pool without the reserved records (a fresh strategy each run).
        rows = np.arange(n_records) if restrict is None else np.flatnonzero(labeled | ~reserved)
        picks = rows[strategy.query(X[rows], y[rows], clf, batch_size=batch_size)]
        if isinstance(strategy, UncertaintySampling) and clf is not None:
            scores = np.asarray(type(strategy).uncertainty(clf.predict_proba(X[picks])), dtype=np.float64)
        else:
            scores = np.full(picks.shape[0], np.nan)
    table = pd.DataFrame({id_column: ids[picks], "rank": np.arange(1, picks.shape[0] + 1), "score": scores})
    picked = ids[picks].tolist()
    pending = [*pending, {"loop": loop, "ids": picked}]

    history_loops = 0
    arrays: dict[str, np.ndarray] = {"id_keys": id_keys, "record_hashes": hashes}
    meta: dict[str, Any] = {
        "format": _STATE_FORMAT,
        "version": _STATE_VERSION,
        "columns": columns,
        "n_records": n_records,
        "id_column": id_column,
        "label_column": label_column,
        "seed": first_seed,
        "label_budget": budget,
        "loops": loop,
        "history": None,
        "log": list(saved["log"]) if saved is not None else [],
        "pending": pending,
    }
    if isinstance(strategy, PolicyStrategy):
        exported = strategy.history_state()
        if exported is not None:
            history_arrays, history_meta = exported
            arrays.update(history_arrays)
            meta["history"] = history_meta
            history_loops = int(history_meta["n_loops"])
    elif history_meta is not None and saved is not None:
        # A classic strategy this run: keep the policy's history for later runs, following ids.
        kept = {name: saved_arrays[name] for name in _HISTORY_ARRAYS if name in saved_arrays}
        arrays.update(kept)
        meta["history"] = history_meta
    if schedule_state is not None:
        schedule_arrays, meta["schedule"] = schedule_state
        arrays.update({f"{_SCHEDULE_PREFIX}{name}": value for name, value in schedule_arrays.items()})
    if stop_state is not None:
        stop_arrays, meta["stopping"] = stop_state
        arrays.update({f"{_STOP_PREFIX}{name}": value for name, value in stop_arrays.items()})
    meta["log"].append(
        {"loop": loop, "strategy": strategy_name, "model": model, "n_labeled": n_labeled, "n_records": n_records,
         "picked": picked, "stop": stop}
    )
    _write_outputs(table, out_path, state_path, meta, arrays)
    return NextBatch(
        table=table, loop=loop, n_records=n_records, n_labeled=n_labeled, classes=label_values,
        strategy=strategy_name, history_loops=history_loops, state_path=state_path, out_path=out_path, notes=notes,
        stop=stop, stop_rule=stop_name, stop_estimate=stop_estimate, batch_size=batch_size,
        schedule=schedule_advice,
        pending={int(group["loop"]): list(group["ids"]) for group in pending},
    )


def _exists(path: Path) -> bool:
    """Whether ``path`` names something (a dangling symlink does not); the reader refuses what is not a file."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except (OSError, ValueError):
        return True  # let the reader say why it cannot be read
    return True


def _restore_policy_history(
    strategy: PolicyStrategy, X: np.ndarray, ids: np.ndarray, label_values: list[str], history_meta: dict[str, Any],
    saved_arrays: dict[str, np.ndarray], state_path: Path | None, notes: list[str],
) -> None:
    """Load the policy's multi-loop history of the state into ``strategy`` (or start a fresh one, with a note)."""
    lost = sorted(set(history_meta.get("classes", [])) - set(label_values))
    if lost:
        raise StateFileError(
            f"class(es) {lost[:5]} had labeled records in earlier runs but have none now (labels removed or changed?); "
            f"restore them, or delete {printable(state_path)} to start a fresh history"
        )
    history_arrays = {name: saved_arrays[name] for name in _HISTORY_ARRAYS}
    if int(history_meta["window"]) != strategy.policy_file.window:
        notes.append(
            f"the saved history has a window of {history_meta['window']} loops but this policy uses "
            f"{strategy.policy_file.window}: starting a fresh history"
        )
        return
    try:
        strategy.load_history_state(X, history_arrays, history_meta, record_ids=ids)
    except (InvalidInputError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise StateFileError(
            f"state file {printable(state_path)!r}: its policy history cannot be restored ({printable(exc)}); "
            "delete it to start over"
        ) from None


def _still_pending(
    pending: list[dict[str, Any]], ids: np.ndarray, labeled: np.ndarray, release_all: bool,
    release: Sequence[str] | None, notes: list[str],
) -> list[dict[str, Any]]:
    """The reserved records of earlier loops that stay reserved: unlabeled, still in the records, not released."""
    unlabeled = set(ids[~labeled].tolist())
    all_ids = set(ids.tolist())
    to_release = set(release or [])
    kept: list[dict[str, Any]] = []
    released: list[str] = []
    n_gone = 0
    for group in pending:
        still: list[str] = []
        for i in group["ids"]:
            if i not in all_ids:
                n_gone += 1
            elif i not in unlabeled:
                continue  # its label came in: no longer pending
            elif release_all or i in to_release:
                released.append(i)
            else:
                still.append(i)
        if still:
            kept.append({"loop": int(group["loop"]), "ids": still})
    if n_gone:
        notes.append(f"{n_gone} record(s) handed out earlier are no longer in the records: no longer pending")
    if released:
        notes.append(f"released {len(released)} pending record(s) handed out earlier: they may be picked again")
    unknown = sorted(to_release - set(released))
    if unknown:
        shown = ", ".join(printable(i) for i in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        notes.append(f"--release: {len(unknown)} id(s) are not pending (labeled, released or never handed out): {shown}")
    if kept:
        notes.append(
            f"{sum(len(g['ids']) for g in kept)} record(s) handed out earlier are still unlabeled and reserved "
            f"({_pending_summary(kept)}): they are not handed out again; --release-pending hands them out again"
        )
    return kept


def _pending_summary(pending: list[dict[str, Any]]) -> str:
    """``loop 2: 5, loop 3: 10`` (or ``none pending``)."""
    if not pending:
        return "none pending"
    return ", ".join(f"loop {group['loop']}: {len(group['ids'])}" for group in pending)


def _write_outputs(
    table: pd.DataFrame, out_path: Path | None, state_path: Path | None, meta: dict[str, Any],
    arrays: dict[str, np.ndarray],
) -> None:
    """Write the state and the table to label all or none (:class:`~metalearn.common.atomic.AtomicGroup`).

    Both are written to temporaries first (a full disk fails before anything changes), then
    renamed: the state first, the table second, and the state is restored if the table's rename
    fails. The state first because it is the ledger of what was handed out: a process killed
    between the two renames leaves a state that reserves records the table does not show yet
    (they stay pending and ``--release-pending`` frees them), never a table handing out records
    that the state does not reserve (the next person would get them too).
    """
    outputs = " and ".join(name for name, path in (("the state file", state_path), ("--out", out_path)) if path)
    unchanged = f"nothing was written ({outputs} as before)"
    with AtomicGroup() as group:
        if state_path is not None:
            payload = container.encode({k: np.ascontiguousarray(v) for k, v in arrays.items()}, meta, STATE_KIND, state_path)
            try:
                state_path.parent.mkdir(parents=True, exist_ok=True)
                group.add(state_path, lambda tmp: _write_bytes(tmp, payload))
            except OSError as exc:
                raise StateFileError(
                    f"cannot write {STATE_KIND.where(state_path)}: {_reason(exc)}{STATE_KIND.write_advice}; {unchanged}"
                ) from None
        if out_path is not None:
            try:
                out_path.parent.mkdir(parents=True, exist_ok=True)
                group.add(out_path, _table_writer(table, out_path))
            except OSError as exc:
                raise OutputFileError(
                    f"cannot write the records to label to {str(out_path)!r}: {_reason(exc)}; choose another --out; "
                    f"{unchanged}"
                ) from None
        try:
            group.commit()
        except OSError as exc:
            raise OutputFileError(f"{printable(exc)}; {unchanged}") from None


def _reason(exc: OSError) -> str:
    """Why a write failed, in a few words (``No space left on device``)."""
    return printable(exc.strerror or " ".join(str(exc).split()))


def _write_bytes(path: str, payload: bytes) -> None:
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_TRUNC), "wb") as out:
        out.write(payload)


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


def _stopping_advice(
    stop_rule: Any, X: np.ndarray, y: np.ndarray, clf: Any, saved: dict[str, Any] | None,
    saved_arrays: dict[str, np.ndarray], old_positions: np.ndarray | None, seed: int, notes: list[str],
    state_path: Path | None = None,
) -> tuple[bool | None, str | None, dict[str, Any] | None, tuple[dict[str, np.ndarray], dict[str, Any]] | None]:
    """Ask the stopping rule (its history restored from the state) whether to stop; its new state."""
    if stop_rule is None:
        return None, None, None, None
    from metalearn.stopping import LearnedStoppingRule, load_stopping_rule

    rule = load_stopping_rule(stop_rule, missing_label=None, random_state=seed)
    if clf is None:
        notes.append("no stopping advice without a model (label records of two classes first)")
        return None, rule.describe(), None, None
    previous = saved.get("stopping") if saved is not None else None
    if isinstance(previous, dict) and previous.get("rule") == rule.name and previous.get("spec") == str(stop_rule):
        rule_arrays = {k[len(_STOP_PREFIX):]: v for k, v in saved_arrays.items() if k.startswith(_STOP_PREFIX)}
        identity = old_positions is not None and np.array_equal(old_positions, np.arange(X.shape[0]))
        try:
            if isinstance(rule, LearnedStoppingRule):
                rule.load_history(X, rule_arrays, previous, old_positions)
            elif identity:
                rule.set_state(rule_arrays, previous)
            else:
                notes.append(f"the records changed since the last run: the {rule.name} stopping rule starts a fresh history")
        except (InvalidInputError, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            raise StateFileError(
                f"state file {printable(state_path)!r}: its stopping-rule history cannot be restored ({printable(exc)}); "
                "delete it to start over"
            ) from None
    elif isinstance(previous, dict):
        notes.append(f"stopping rule changed ({previous.get('spec')} -> {printable(stop_rule)}): it starts a fresh history")
    stop = rule.should_stop(X, y, clf)
    estimate = dict(rule.estimate_) if isinstance(rule, LearnedStoppingRule) else None
    state = rule.get_state()
    assert state is not None
    arrays, meta = state
    return stop, rule.describe(), estimate, (arrays, {**meta, "spec": str(stop_rule)})


def _schedule_advice(
    schedule: Any, X: np.ndarray, y: np.ndarray, clf: Any, budget_left: int, saved: dict[str, Any] | None,
    saved_arrays: dict[str, np.ndarray], old_positions: np.ndarray | None, notes: list[str],
    state_path: Path | None = None,
) -> tuple[int | None, str | None, tuple[dict[str, np.ndarray], dict[str, Any]] | None]:
    """Ask the schedule (its history restored from the state) for the next batch size; its line and new state."""
    if schedule is None:
        return None, None, None
    from metalearn.schedules import load_schedule

    rule = load_schedule(schedule, missing_label=None)
    previous = saved.get("schedule") if saved is not None else None
    if budget_left < 1:
        notes.append(f"the label budget is spent ({budget_left} left): no schedule advice (raise --budget to go on)")
        return None, None, _kept_schedule_state(previous, saved_arrays, old_positions)
    if rule.requires_classifier and clf is None:
        notes.append("no schedule advice without a model (label records of two classes first)")
        return None, None, _kept_schedule_state(previous, saved_arrays, old_positions)
    if isinstance(previous, dict) and previous.get("spec") == str(schedule):
        rule_arrays = {k[len(_SCHEDULE_PREFIX):]: v for k, v in saved_arrays.items() if k.startswith(_SCHEDULE_PREFIX)}
        try:
            rule.load_history(X, rule_arrays, previous, old_positions)
        except (InvalidInputError, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            raise StateFileError(
                f"state file {printable(state_path)!r}: its schedule history cannot be restored ({printable(exc)}); "
                "delete it to start over"
            ) from None
    elif isinstance(previous, dict):
        notes.append(f"schedule changed ({printable(previous.get('spec'))} -> {printable(schedule)}): it starts again at loop 1")
    size = rule.next_batch_size(X, y, clf, budget_left=budget_left)
    state = rule.get_state()
    assert state is not None
    arrays, meta = state
    return size, rule.explain(size), (arrays, {**meta, "spec": str(schedule)})


def _kept_schedule_state(
    previous: Any, saved_arrays: dict[str, np.ndarray], old_positions: np.ndarray | None
) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """The saved schedule section, kept as it is when the schedule was not asked (same records only)."""
    if not isinstance(previous, dict):
        return None
    arrays = {k[len(_SCHEDULE_PREFIX):]: v for k, v in saved_arrays.items() if k.startswith(_SCHEDULE_PREFIX)}
    if arrays and (old_positions is None or not np.array_equal(old_positions, np.arange(old_positions.size))):
        return None  # a history of other records cannot be kept as it is
    return arrays, previous
