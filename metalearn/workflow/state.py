"""The ``next-batch`` state file: its container kind, its reading and the checks of every field.

The state is a :mod:`~metalearn.common.container` file (safetensors, no pickle). Every field
is checked at read (the counters, the log, the pending records, the policy history's, the
stopping rule's and the schedule's sections), and the records' fingerprint is compared with the
current records, so that a hand-edited, corrupted or foreign state is one :class:`StateFileError`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from metalearn.common import container
from metalearn.common.container import NUMPY_DTYPES, FileKind
from metalearn.common.record_identity import match_records
from metalearn.common.text import printable
from metalearn.exceptions import InvalidInputError
from metalearn.policies.file import MAX_WINDOW

#: Suffix appended to the labels file name for the default state file.
STATE_SUFFIX = ".metalearn-state"
_STATE_FORMAT = "metalearn-next-batch-state"
_STATE_VERSION = 1
_STOP_PREFIX = "stop."
_SCHEDULE_PREFIX = "schedule."
_HISTORY_ARRAYS = ("proba", "margin", "entropy", "predicted", "loop_statistics", "fresh", "record_keys")


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


def _exists(path: Path) -> bool:
    """Whether ``path`` names something (a dangling symlink does not); the reader refuses what is not a file."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except (OSError, ValueError):
        return True  # let the reader say why it cannot be read
    return True
