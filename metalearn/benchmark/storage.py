"""The result folder: one small JSON file per finished run, written atomically.

Layout of ``OUT``::

    OUT/benchmark.json      the configuration (and its result fingerprint)
    OUT/runs/RUN_ID.json    one per finished run: summary and learning curve
    OUT/runs.csv|parquet    all run summaries (tidy, rebuilt at the end)
    OUT/curves.csv|parquet  all learning curves, one row per run and loop
    OUT/report.md, .html, *.png

A run file appears under its final name only once complete (written to a temporary name
and renamed), so an interruption at any point loses at most the runs in flight, and
rerunning the same command computes only what is missing.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from metalearn.benchmark.config import BenchmarkConfig
from metalearn.exceptions import InvalidInputError

__all__ = ["ResultStore", "RUN_COLUMNS", "tables_from_records", "write_table"]

_CONFIG_FILE = "benchmark.json"
#: Columns of the runs table, in order (failed runs have NaN metrics).
RUN_COLUMNS = (
    "run_id", "dataset", "model", "regime", "batch_size", "seed", "strategy", "status", "error",
    "aulc_accuracy", "aulc_macro_f1", "final_accuracy", "final_macro_f1",
    "labels_to_98_accuracy", "labels_to_98_macro_f1", "full_pool_accuracy", "full_pool_macro_f1",
    "query_seconds_mean", "wall_seconds", "label_budget", "n_pool", "n_classes", "fingerprint", "strategy_version",
    "stopping",  # JSON rows of the stopping rules that watched the run (metalearn.stopping.evaluation), or empty
)
_CURVE_KEYS = ("dataset", "model", "regime", "batch_size", "seed", "strategy")


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _write_error(what: str, folder: Path, exc: OSError) -> InvalidInputError:
    """The project's error for a result file that cannot be written (disk full, read-only...)."""
    reason = exc.strerror or str(exc)
    return InvalidInputError(
        f"cannot write {what} to {folder}: {reason}; free space or choose a writable --out folder, then rerun "
        "the same command (finished runs are kept, no partial file is left)"
    )


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _json_safe(value.item())
    return value


def write_table(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a results table atomically: Parquet for a ``.parquet`` path, else CSV.

    A disk that fills up while writing leaves the previous table (or none), never a truncated
    one, and raises :class:`InvalidInputError` naming the folder.
    """
    path = Path(path)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        if path.suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise _write_error(f"table {path.name}", path.parent, exc) from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return path


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

    def prepare(self, config: BenchmarkConfig) -> None:
        """Create the folder (checking it is writable) and record or check the configuration.

        A folder holding results of a different configuration (another budget, master seed,
        test size...) is refused: its runs would not be comparable. Adding strategies,
        datasets, settings or seeds to the same configuration is allowed and reuses the runs.
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
                previous = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise InvalidInputError(f"{path} is not a readable benchmark configuration: {exc}") from None
            if previous.get("fingerprint") != fingerprint:
                old = previous.get("config", {})
                changed = [k for k in ("label_budget", "seed", "test_size", "n_warm", "max_pool", "oracle_candidates")
                           if old.get(k) != getattr(config, k)]
                raise InvalidInputError(
                    f"{self.out_dir} holds results of a different benchmark (changed: {', '.join(changed) or 'settings'}); "
                    "use another --out folder, or the same settings to resume"
                )
        try:
            _atomic_write_text(path, json.dumps({"fingerprint": fingerprint, "config": config.to_dict()}, indent=2))
        except OSError as exc:
            raise _write_error("the benchmark configuration", self.out_dir, exc) from None

    def path(self, run_id: str) -> Path:
        return self.runs_dir / f"{run_id}.json"

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
        summary = {k: _json_safe(v) for k, v in record["summary"].items()}
        text = json.dumps({"summary": summary, "curve": record["curve"]}, allow_nan=False)
        try:
            _atomic_write_text(self.path(summary["run_id"]), text)
        except OSError as exc:
            raise _write_error(f"the result of run {summary['run_id']}", self.runs_dir, exc) from None

    @staticmethod
    def _read(path: Path) -> dict[str, Any] | None:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # unreadable files are recomputed, never trusted
        if not isinstance(record, dict) or "summary" not in record or "curve" not in record:
            return None
        return record

    def load(self, run_ids: Iterable[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The runs table and the curves table of stored runs (all, or the given ids)."""
        paths = (
            [self.path(r) for r in run_ids] if run_ids is not None else sorted(self.runs_dir.glob("*.json"))
        )
        records = [self._read(p) for p in paths if p.exists()]
        return tables_from_records([r for r in records if r is not None])


def tables_from_records(records: Iterable[dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Build the runs table (columns :data:`RUN_COLUMNS`) and the curves table from run records."""
    summaries, curves = [], []
    for record in records:
        summary = record["summary"]
        summaries.append(summary)
        if record["curve"]:
            curve = pd.DataFrame(record["curve"])
            curve.insert(0, "run_id", summary["run_id"])
            for i, k in enumerate(_CURVE_KEYS):
                curve.insert(1 + i, k, summary[k])
            curves.append(curve)
    runs = pd.DataFrame(summaries).reindex(columns=list(RUN_COLUMNS))
    numeric = RUN_COLUMNS[RUN_COLUMNS.index("aulc_accuracy"):RUN_COLUMNS.index("query_seconds_mean") + 2]
    for column in numeric:
        runs[column] = pd.to_numeric(runs[column], errors="coerce")
    runs["error"] = runs["error"].fillna("")
    return runs, (pd.concat(curves, ignore_index=True) if curves else pd.DataFrame())
