"""The evaluation protocol: paired benchmark runs, statistics, plots and reports.

``run_benchmark(BenchmarkConfig(...), out_dir)`` is the Python API under
``metalearn benchmark``; it returns the runs and curves as DataFrames.
"""

from metalearn.benchmark.config import ORACLE, BenchmarkConfig, RunKey, resolve_datasets
from metalearn.benchmark.runner import BenchmarkResult, check_feasible, run_benchmark
from metalearn.benchmark.storage import RUN_COLUMNS, ResultStore, tables_from_records

__all__ = [
    "BenchmarkConfig",
    "BenchmarkResult",
    "RunKey",
    "ORACLE",
    "RUN_COLUMNS",
    "ResultStore",
    "check_feasible",
    "resolve_datasets",
    "run_benchmark",
    "tables_from_records",
]
