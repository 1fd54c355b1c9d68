"""The result folder: one committed table of every run, and a per-run resume cache.

Layout of ``OUT``::

    OUT/benchmark.json      the configuration (and its result fingerprint)
    OUT/results.parquet     every run: its summary and its learning curve, one row per run
                            (``results.csv`` where pyarrow is not installed); the file to commit
    OUT/runs/RUN_ID.json    the resume cache: one per finished run, written as it finishes
    OUT/runs.csv|parquet    all run summaries (tidy, rebuilt at the end)
    OUT/curves.csv|parquet  all learning curves, one row per run and loop
    OUT/report.md, .html, *.png

A run file appears under its final name only once complete (written to a temporary name
and renamed), so an interruption at any point loses at most the runs in flight, and
rerunning the same command computes only what is missing. The cache is the working store;
at the end of every benchmark the results table is rewritten from it. A folder without the
cache (a fresh clone of a repository that commits only the table), or whose cache lacks runs
the table holds (a cache left by an earlier, partial session), gets the missing runs unpacked
from the table first, so it resumes, and rebuilds its report, without recomputing anything and
without dropping a stored run when the table is rewritten.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from metalearn.benchmark.config import BenchmarkConfig
from metalearn.common.atomic import atomic_write, atomic_write_text
from metalearn.common.csv_cells import neutralise_formulas, restore_formulas
from metalearn.common.jsonable import json_safe
from metalearn.common.text import printable
from metalearn.exceptions import InvalidInputError, OutputFileError, ResultFolderError
from metalearn.simulation.metrics import step_area_under_learning_curve

__all__ = [
    "ResultStore", "RUN_COLUMNS", "COMPUTE_COLUMNS", "CURVE_COLUMNS", "check_run_id", "record_problem",
    "tables_from_records", "write_table", "derived_compute",
]

_CONFIG_FILE = "benchmark.json"
#: Columns of the runs table, in order (failed runs have NaN metrics).
RUN_COLUMNS = (
    "run_id", "dataset", "model", "regime", "batch_size", "seed", "strategy", "status", "error",
    "aulc_accuracy", "aulc_macro_f1", "final_accuracy", "final_macro_f1",
    "labels_to_98_accuracy", "labels_to_98_macro_f1", "full_pool_accuracy", "full_pool_macro_f1",
    "query_seconds_mean", "wall_seconds", "label_budget", "n_pool", "n_classes", "fingerprint", "strategy_version",
    "stopping",  # JSON rows of the stopping rules that watched the run (metalearn.stopping.evaluation), or empty
    "step_aulc_accuracy", "step_aulc_macro_f1", "n_fits", "fit_seconds", "query_seconds_total",
)
#: The compute columns of the runs table (:data:`RUN_COLUMNS`' last ones): step-curve AULC, task-model
#: fits and their seconds, and the seconds of every query of the run. Results stored before they were
#: recorded lack them (NaN in the runs table, absent from their results table).
COMPUTE_COLUMNS = RUN_COLUMNS[RUN_COLUMNS.index("stopping") + 1:]
_CURVE_KEYS = ("dataset", "model", "regime", "batch_size", "seed", "strategy")
#: The learning curve of a run, one list per column (a run's record, ``record["curve"]``).
CURVE_COLUMNS = ("loop", "n_bought", "accuracy", "macro_f1", "query_seconds", "fit_seconds")
#: Prefix of the learning-curve columns in the results table (one list per run and column).
_CURVE_PREFIX = "curve_"
_TABLE_STEM = "results"
# Columns of the results table read as text from CSV (a dataset named "123" stays a name).
_TEXT_COLUMNS = ("run_id", "dataset", "model", "regime", "strategy", "status", "error", "fingerprint",
                 "strategy_version", "traceback")


#: Longest run id accepted (a generated one is at most 130 characters).
MAX_RUN_ID_LENGTH = 200
#: Largest ``benchmark.json`` / run file read (a run file of a 10,000-label curve is ~1 MB).
MAX_JSON_BYTES = 64 * 1024 * 1024


def check_run_id(run_id: Any, where: str) -> str:
    """``run_id`` if it is a safe file name, else :class:`ResultFolderError`.

    Run ids read from a results table or a run file become paths (``runs/RUN_ID.json``): only
    the characters :attr:`RunKey.run_id` produces are accepted (letters, digits, ``-``, ``_``,
    ``.``, not first), so an id such as ``../../x``, ``/tmp/x`` or one holding control
    characters can never name a file outside the cache.
    """
    if not isinstance(run_id, str):
        raise ResultFolderError(f"{where}: a run id must be text, got {type(run_id).__name__}")
    if not run_id or len(run_id) > MAX_RUN_ID_LENGTH or run_id.startswith(".") or not all(
        c.isalnum() or c in "-_." for c in run_id
    ):
        raise ResultFolderError(
            f"{where}: run id {printable(run_id[:MAX_RUN_ID_LENGTH])!r} is not a run id metalearn writes "
            f"(letters, digits, '-', '_', '.', at most {MAX_RUN_ID_LENGTH} characters); the folder was modified"
        )
    return run_id


def record_problem(record: Any) -> str | None:
    """What makes ``record`` (a run file's or table row's content) unusable, or None if it is sound."""
    if not isinstance(record, dict) or not isinstance(record.get("summary"), dict):
        return "not a run record (an object with 'summary' and 'curve')"
    summary, curve = record["summary"], record.get("curve")
    if "run_id" not in summary:
        return "a run without 'run_id'"
    try:
        check_run_id(summary["run_id"], "run")
    except ResultFolderError as exc:
        return str(exc)
    lacking = [k for k in _CURVE_KEYS if k not in summary]
    if lacking:
        return f"run {summary['run_id']}: no {', '.join(lacking)}"
    if not isinstance(curve, dict):
        return f"run {summary['run_id']}: the curve is not an object"
    lengths = set()
    for column, values in curve.items():
        if not isinstance(values, list):
            return f"run {summary['run_id']}: curve column {printable(column)!r} is not a list"
        lengths.add(len(values))
    if len(lengths) > 1:
        return f"run {summary['run_id']}: curve columns of unequal length {sorted(lengths)}"
    return None


def _read_json(path: Path) -> Any:
    """The JSON of ``path``, read with a size bound; ValueError if too large, too deep or not JSON."""
    with path.open("rb") as handle:
        data = handle.read(MAX_JSON_BYTES + 1)
    if len(data) > MAX_JSON_BYTES:
        raise ValueError(f"larger than {MAX_JSON_BYTES} bytes")
    try:
        return json.loads(data.decode("utf-8"))
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _write_error(what: str, folder: Path, exc: OSError) -> InvalidInputError:
    """The project's error for a result file that cannot be written (disk full, read-only...)."""
    if isinstance(exc, OutputFileError) and exc.errno is None:
        return exc  # a refused target (a FIFO, a device...): its own message says what to do
    reason = exc.strerror or str(exc)
    return InvalidInputError(
        f"cannot write {what} to {folder}: {reason}; free space or choose a writable --out folder, then rerun "
        "the same command (finished runs are kept, no partial file is left)"
    )


def write_table(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a results table atomically: Parquet for a ``.parquet`` path, else CSV.

    A disk that fills up while writing leaves the previous table (or none), never a truncated
    one, and raises :class:`InvalidInputError` naming the folder. CSV text cells that a
    spreadsheet would run as formulas are neutralised (:mod:`metalearn.common.csv_cells`).
    """
    path = Path(path)
    csv_frame = None if path.suffix == ".parquet" else neutralise_formulas(frame)

    def write(tmp: str) -> None:
        if csv_frame is None:
            frame.to_parquet(tmp, index=False, compression="zstd")
        else:
            csv_frame.to_csv(tmp, index=False)

    try:
        return atomic_write(path, write)
    except OSError as exc:
        raise _write_error(f"table {path.name}", path.parent, exc) from None


def _parquet_available() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def records_to_table(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """The results table of run records: one row per run, sorted by run id.

    The summary fields become columns (:data:`RUN_COLUMNS` first, then any others such as a
    failed run's ``traceback``), and each curve column a ``curve_*`` column holding the run's
    list of values (None for a failed run, which has no curve).
    """
    rows = []
    for record in records:
        row = {k: json_safe(v, strict=False) for k, v in record["summary"].items()}
        curve = record["curve"]
        for column in CURVE_COLUMNS:
            values = curve.get(column) if curve else None
            row[_CURVE_PREFIX + column] = list(values) if values is not None else None
        rows.append(row)
    frame = pd.DataFrame(rows)
    extra = [c for c in frame.columns if c not in RUN_COLUMNS and not c.startswith(_CURVE_PREFIX)]
    columns = list(RUN_COLUMNS) + sorted(extra) + [_CURVE_PREFIX + c for c in CURVE_COLUMNS]
    frame = frame.reindex(columns=columns)
    if len(frame):
        frame = frame.sort_values("run_id", kind="stable").reset_index(drop=True)
    return frame


def table_to_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The run records of a results table (the inverse of :func:`records_to_table`).

    Empty cells are left out of the summary, as a run record never holds them.
    """
    records = []
    curve_columns = [c for c in frame.columns if c.startswith(_CURVE_PREFIX)]
    summary_columns = [c for c in frame.columns if not c.startswith(_CURVE_PREFIX)]
    for row in frame.to_dict(orient="records"):
        summary = {}
        for k in summary_columns:
            value = row[k]
            if hasattr(value, "item"):
                value = value.item()
            if not _is_missing(value) and not (value == "" and k not in RUN_COLUMNS):
                summary[k] = value
        curve: dict[str, list[Any]] = {}
        for column in curve_columns:
            values = row[column]
            if values is None or (isinstance(values, float) and math.isnan(values)):
                continue
            curve[column[len(_CURVE_PREFIX):]] = [v.item() if hasattr(v, "item") else v for v in values]
        records.append({"summary": summary, "curve": curve})
    return records


def _encode_curves_for_csv(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for column in out.columns:
        if column.startswith(_CURVE_PREFIX):
            out[column] = [json.dumps(v) if v is not None else "" for v in out[column]]
    return out


def _decode_curves_from_csv(frame: pd.DataFrame) -> pd.DataFrame:
    for column in frame.columns:
        if column.startswith(_CURVE_PREFIX):
            frame[column] = [json.loads(v) if isinstance(v, str) and v else None for v in frame[column]]
    return frame


class ResultStore:
    """Reads and writes one benchmark's result folder.

    Parameters
    ----------
    out_dir : path
        The folder; created if missing.
    """

    def __init__(self, out_dir: str | os.PathLike[str]) -> None:
        self.out_dir = Path(out_dir)
        self.runs_dir = self.out_dir / "runs"

    @property
    def table_path(self) -> Path:
        """The results table: the folder's existing one, else Parquet where pyarrow is installed."""
        for suffix in (".parquet", ".csv"):
            path = self.out_dir / f"{_TABLE_STEM}{suffix}"
            if path.is_file():
                return path
        return self.out_dir / f"{_TABLE_STEM}{'.parquet' if _parquet_available() else '.csv'}"

    def prepare(self, config: BenchmarkConfig) -> None:
        """Create the folder (checking it is writable) and record or check the configuration.

        A folder holding results of a different configuration (another budget, master seed,
        test size...) is refused: its runs would not be comparable. Adding strategies,
        datasets, settings or seeds to the same configuration is allowed and reuses the runs.
        Runs of the results table that the cache lacks are unpacked into it first.
        """
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
            probe = self.runs_dir / ".write-probe"
            probe.write_text("ok", encoding="utf-8")
            probe.unlink()
        except OSError as exc:
            raise InvalidInputError(
                f"cannot write benchmark results to {self.out_dir}: {exc.strerror or exc}; choose a writable --out folder"
            ) from None
        path = self.out_dir / _CONFIG_FILE
        fingerprint = config.result_fingerprint()
        if path.exists():
            try:
                if not path.is_file():
                    raise ValueError("not a regular file")
                previous = _read_json(path)
            except (OSError, ValueError) as exc:
                raise ResultFolderError(f"{path} is not a readable benchmark configuration: {printable(exc)}") from None
            if not isinstance(previous, dict) or not isinstance(previous.get("config", {}), dict):
                raise ResultFolderError(
                    f"{path} is not a benchmark configuration (expected an object with 'fingerprint' and 'config'); "
                    "use another --out folder"
                )
            if previous.get("fingerprint") != fingerprint:
                old = previous.get("config", {})
                changed = [k for k in ("label_budget", "seed", "test_size", "n_warm", "max_pool", "oracle_candidates")
                           if old.get(k) != getattr(config, k)]
                raise InvalidInputError(
                    f"{self.out_dir} holds results of a different benchmark (changed: {', '.join(changed) or 'settings'}); "
                    "use another --out folder, or the same settings to resume"
                )
        try:
            atomic_write_text(path, json.dumps({"fingerprint": fingerprint, "config": config.to_dict()}, indent=2))
        except OSError as exc:
            raise _write_error("the benchmark configuration", self.out_dir, exc) from None
        self._unpack_table_into_cache()

    def _unpack_table_into_cache(self) -> None:
        """Add to the cache every run of the results table it lacks; the cache's own files win.

        The table is rewritten from the cache at the end of a benchmark, so a cache missing
        runs of the table (a fresh clone holds none; an earlier session may have left a few)
        would otherwise drop them from the table, and recompute them. Each file is written
        atomically, so an interrupted unpack leaves complete files only and the next call
        adds the rest.
        """
        if not self.table_path.is_file():
            return
        cached = {p.stem for p in self.runs_dir.glob("*.json")}
        if set(self._table_run_ids()) <= cached:
            return  # the usual case: only the id column is read, not every learning curve
        frame = self.read_table()
        missing = frame[~frame["run_id"].isin(cached)]
        records = table_to_records(missing)
        for record in records:  # every row is checked before any file is written
            problem = record_problem(record)
            if problem is not None:
                raise ResultFolderError(f"{self.table_path}: {problem}; restore the table or use another --out folder")
        try:
            for record in records:
                atomic_write_text(self.path(record["summary"]["run_id"]), _record_text(record))
        except OSError as exc:
            raise _write_error("the run cache unpacked from the results table", self.runs_dir, exc) from None

    def _table_run_ids(self) -> list[str]:
        """The run ids of the results table, each checked to be a safe file name."""
        try:
            ids = self.read_table(columns=["run_id"])["run_id"]
        except KeyError:
            raise ResultFolderError(f"{self.table_path} has no run_id column; restore the table") from None
        return [check_run_id(r.item() if hasattr(r, "item") else r, str(self.table_path)) for r in ids]

    def read_table(self, columns: list[str] | None = None) -> pd.DataFrame:
        """The results table as stored, all or some columns (an empty frame if there is none)."""
        path = self.table_path
        if not path.is_file():
            return records_to_table([]).reindex(columns=columns) if columns else records_to_table([])
        try:
            if path.suffix == ".parquet":
                if not _parquet_available():
                    raise InvalidInputError(
                        f"{path} is a Parquet table and pyarrow is not installed: pip install 'metalearn-al[parquet]'"
                    )
                return pd.read_parquet(path, columns=columns)
            frame = pd.read_csv(path, usecols=columns, dtype={c: str for c in _TEXT_COLUMNS}, keep_default_na=False,
                                na_values={c: [""] for c in RUN_COLUMNS if c not in _TEXT_COLUMNS})
            return _decode_curves_from_csv(restore_formulas(frame))
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"{path} is not a readable results table: {exc}") from None

    def save_table(self, run_ids: Iterable[str] | None = None) -> Path:
        """Rewrite the results table from the cache (every run, or the given ids), atomically."""
        paths = [self.path(r) for r in run_ids] if run_ids is not None else sorted(self.runs_dir.glob("*.json"))
        records = [r for r in (self._read(p) for p in paths if p.exists()) if r is not None]
        frame = records_to_table(records)
        path = self.table_path
        return write_table(frame if path.suffix == ".parquet" else _encode_curves_for_csv(frame), path)

    def table_is_current(self) -> bool:
        """Whether the results table holds exactly the runs of the cache."""
        if not self.table_path.is_file():
            return False
        stored = set(self._table_run_ids())
        return stored == {p.stem for p in self.runs_dir.glob("*.json")}

    def path(self, run_id: str) -> Path:
        """The cache file of ``run_id`` (checked to be a safe file name: ids come from files too)."""
        return self.runs_dir / f"{check_run_id(run_id, str(self.out_dir))}.json"

    def finished(self, fingerprint: str) -> dict[str, tuple[str, str]]:
        """``(status, strategy_version)`` of every stored run of this fingerprint, by run id."""
        out: dict[str, tuple[str, str]] = {}
        if not self.runs_dir.exists():
            return out
        for path in self.runs_dir.glob("*.json"):
            record = self._read(path)
            if record is not None and record["summary"].get("fingerprint") == fingerprint:
                summary = record["summary"]
                out[summary["run_id"]] = (summary.get("status", "failed"), summary.get("strategy_version") or "")
        return out

    def write(self, record: dict[str, Any]) -> None:
        """Store one run (summary and curve) under its run id, atomically.

        Raises :class:`InvalidInputError` naming the folder when the file cannot be written
        (disk full, folder made read-only); the temporary file is removed, so the folder only
        ever holds complete run files.
        """
        run_id = record["summary"]["run_id"]
        try:
            atomic_write_text(self.path(run_id), _record_text(record))
        except OSError as exc:
            raise _write_error(f"the result of run {run_id}", self.runs_dir, exc) from None

    @staticmethod
    def _read(path: Path) -> dict[str, Any] | None:
        """A cache file's record; None (recomputed, never trusted) if unreadable or unsound.

        A record must be sound (:func:`record_problem`) and carry the run id of its file name.
        """
        try:
            if not path.is_file():
                return None
            record = _read_json(path)
        except (OSError, ValueError, UnicodeDecodeError):
            return None
        if record_problem(record) is not None or record["summary"]["run_id"] != path.stem:
            return None
        return record

    def load(self, run_ids: Iterable[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The runs table and the curves table of stored runs (all, or the given ids)."""
        paths = (
            [self.path(r) for r in run_ids] if run_ids is not None else sorted(self.runs_dir.glob("*.json"))
        )
        records = [self._read(p) for p in paths if p.exists()]
        return tables_from_records([r for r in records if r is not None])


def _record_text(record: dict[str, Any]) -> str:
    summary = {k: json_safe(v, strict=False) for k, v in record["summary"].items()}
    return json.dumps({"summary": summary, "curve": record["curve"]}, allow_nan=False)


def derived_compute(summary: dict[str, Any], curve: dict[str, Any]) -> dict[str, Any]:
    """The compute columns a run stored before they were recorded can take from its curve.

    A successful run's curve has one point per task-model fit (the initial model's included)
    with the labels bought and the test scores, so ``n_fits``, the step-curve AULC
    (:func:`~metalearn.simulation.metrics.step_area_under_learning_curve`) and
    ``query_seconds_total`` follow from it exactly; ``fit_seconds`` was never measured and stays
    missing. Columns the summary already has are kept as they are.

    Parameters
    ----------
    summary : dict
        A run record's summary (needs ``status`` "ok" and ``label_budget``).
    curve : dict of str to list
        Its curve (``n_bought``, ``accuracy``, ``macro_f1``, ``query_seconds``).

    Returns
    -------
    dict
        The columns to add (empty when there is nothing to derive).
    """
    if summary.get("status") != "ok" or not curve or not curve.get("n_bought"):
        return {}
    added: dict[str, Any] = {}

    def missing(column: str) -> bool:
        value = summary.get(column)
        return value is None or (isinstance(value, float) and math.isnan(value))

    try:
        budget = int(summary["label_budget"])
        n_bought = np.asarray(curve["n_bought"], dtype=np.float64)
        if missing("n_fits"):
            added["n_fits"] = int(n_bought.size)
        for column, scores in (("step_aulc_accuracy", "accuracy"), ("step_aulc_macro_f1", "macro_f1")):
            if missing(column) and curve.get(scores):
                added[column] = step_area_under_learning_curve(
                    n_bought, np.asarray(curve[scores], dtype=np.float64), budget
                )
        if missing("query_seconds_total") and curve.get("query_seconds"):
            added["query_seconds_total"] = float(np.sum(np.asarray(curve["query_seconds"], dtype=np.float64)))
    except (KeyError, TypeError, ValueError, InvalidInputError):
        return {}  # an unsound stored curve: the columns stay missing rather than wrong
    return added


def tables_from_records(records: Iterable[dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Build the runs table (columns :data:`RUN_COLUMNS`) and the curves table from run records.

    Runs stored before compute was recorded get the compute columns their curve determines
    (:func:`derived_compute`), so they pair with newer runs on the step-curve AULC and fits.
    """
    summaries, curves = [], []
    for record in records:
        summary = {**record["summary"], **derived_compute(record["summary"], record["curve"])}
        summaries.append(summary)
        if record["curve"]:
            curve = pd.DataFrame(record["curve"])
            curve.insert(0, "run_id", summary["run_id"])
            for i, k in enumerate(_CURVE_KEYS):
                curve.insert(1 + i, k, summary[k])
            curves.append(curve)
    runs = pd.DataFrame(summaries).reindex(columns=list(RUN_COLUMNS))
    numeric = RUN_COLUMNS[RUN_COLUMNS.index("aulc_accuracy"):RUN_COLUMNS.index("query_seconds_mean") + 2]
    for column in (*numeric, *COMPUTE_COLUMNS):
        runs[column] = pd.to_numeric(runs[column], errors="coerce")
    runs["error"] = runs["error"].fillna("")
    return runs, (pd.concat(curves, ignore_index=True) if curves else pd.DataFrame())
