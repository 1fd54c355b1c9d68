"""The evaluation protocol: paired benchmark runs, statistics, plots and reports.

``run_benchmark(BenchmarkConfig(...), out_dir)`` is the Python API under
``metalearn benchmark``; it returns the runs and curves as DataFrames.
:mod:`metalearn.benchmark.stats` turns them into statistics (paired differences to the
reference, ranks, win/tie/loss, Wilcoxon, Friedman and Nemenyi tests) and
``write_report(runs, curves, out_dir)`` into plots and a Markdown/HTML report.
"""

from metalearn.benchmark.config import ORACLE, BenchmarkConfig, RunKey, resolve_datasets
from metalearn.benchmark.runner import BenchmarkResult, check_feasible, run_benchmark
from metalearn.benchmark.storage import RUN_COLUMNS, ResultStore, tables_from_records
from metalearn.benchmark.report import format_table, write_report
from metalearn.benchmark.stats import (
    PROBLEM_KEYS,
    SETTING_KEYS,
    FriedmanResult,
    critical_difference,
    failed_runs,
    friedman_test,
    labels_to_reach,
    mean_ranks,
    nemenyi_groups,
    overall_comparison,
    paired_differences,
    rank_table,
    strategy_summary,
)

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
    # statistics and report
    "PROBLEM_KEYS",
    "SETTING_KEYS",
    "FriedmanResult",
    "critical_difference",
    "failed_runs",
    "format_table",
    "friedman_test",
    "labels_to_reach",
    "mean_ranks",
    "nemenyi_groups",
    "overall_comparison",
    "paired_differences",
    "rank_table",
    "strategy_summary",
    "write_report",
]
