"""The benchmark runner: paired runs, seeds independent of workers, resume, failures, Dask."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from metalearn.benchmark import BenchmarkConfig, RunKey, run_benchmark
from metalearn.benchmark.config import strategy_seed, task_seed
from metalearn.cli import main
from metalearn.exceptions import DatasetError, InvalidInputError, UnknownNameError
from metalearn.strategies import STRATEGIES, RandomSampling, register_strategy

METRICS = ["aulc_accuracy", "aulc_macro_f1", "final_accuracy", "labels_to_98_accuracy", "full_pool_accuracy"]


def small_config(**overrides) -> BenchmarkConfig:
    settings = dict(
        strategies=["random", "margin"],
        datasets=["sklearn:iris", "sklearn:wine"],
        models=["logreg"],
        regimes=["cold"],
        batch_sizes=[5],
        label_budget=10,
        n_seeds=2,
        seed=3,
    )
    settings.update(overrides)
    return BenchmarkConfig(**settings)


def _metrics(runs: pd.DataFrame) -> pd.DataFrame:
    return runs.set_index("run_id").sort_index()[METRICS]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    return run_benchmark(small_config(), out, n_jobs=1, progress=False), out


def test_every_run_is_stored_with_its_curve(reference_run):
    result, out = reference_run
    assert len(result.runs) == 2 * 2 * 2  # datasets x seeds x strategies
    assert (result.runs["status"] == "ok").all()
    assert result.computed == 8
    assert len(list((out / "runs").glob("*.json"))) == 8
    # budget 10 in batches of 5: the initial point and two loops per run
    assert result.curves.groupby("run_id").size().eq(3).all()
    assert result.curves.groupby("run_id")["n_bought"].max().eq(10).all()
    assert result.runs["aulc_accuracy"].between(0, 1).all()
    assert json.loads((out / "benchmark.json").read_text())["config"]["label_budget"] == 10


def test_runs_are_paired_across_strategies(reference_run):
    result, _ = reference_run
    first = result.curves[result.curves["loop"] == 0]
    per_pair = first.groupby(["dataset", "seed"])["accuracy"].nunique()
    assert (per_pair == 1).all()  # same split, initial set and model for every strategy
    full = result.runs.groupby(["dataset", "seed"])["full_pool_accuracy"].nunique()
    assert (full == 1).all()
    # different seeds give different splits
    assert result.runs.groupby("dataset")["full_pool_accuracy"].nunique().max() >= 1


def test_results_do_not_depend_on_the_number_of_workers(reference_run, tmp_path):
    result, _ = reference_run
    parallel = run_benchmark(small_config(), tmp_path, n_jobs=2, progress=False)
    pd.testing.assert_frame_equal(_metrics(result.runs), _metrics(parallel.runs))


def test_seeds_derive_from_run_identity_only():
    key = RunKey("iris", "logreg", "cold", 5, 0, "margin")
    assert strategy_seed(0, key) == strategy_seed(0, RunKey("iris", "logreg", "cold", 5, 0, "margin"))
    assert strategy_seed(0, key) != strategy_seed(0, RunKey("iris", "logreg", "cold", 5, 1, "margin"))
    assert task_seed(0, "iris", 0) != task_seed(0, "iris", 1) != task_seed(1, "iris", 1)


def test_rerun_computes_only_missing_runs_and_gives_the_same_result(reference_run, tmp_path):
    result, _ = reference_run
    run_benchmark(small_config(), tmp_path, progress=False)
    for table in tmp_path.glob("results.*"):  # interrupted before the table was written
        table.unlink()
    files = sorted((tmp_path / "runs").glob("*.json"))
    for path in files[:3]:
        path.unlink()
    files[3].write_text("{ truncated")  # an unreadable file is recomputed, never trusted
    again = run_benchmark(small_config(), tmp_path, progress=False)
    assert again.computed == 4
    pd.testing.assert_frame_equal(_metrics(result.runs), _metrics(again.runs))
    assert run_benchmark(small_config(), tmp_path, progress=False).computed == 0


def _interrupted_after_three_runs(out) -> list[str]:
    """Run the small benchmark into ``out`` and interrupt it after 3 runs; their ids."""
    seen: list[str] = []

    def interrupt_after_three(record):
        seen.append(record["summary"]["run_id"])
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_benchmark(small_config(), out, progress=False, on_result=interrupt_after_three)
    return seen


def test_interruption_loses_no_finished_run(tmp_path):
    _interrupted_after_three_runs(tmp_path)
    assert len(list((tmp_path / "runs").glob("*.json"))) == 3
    assert not list((tmp_path / "runs").glob(".*.tmp"))  # no half-written file left behind
    resumed = run_benchmark(small_config(), tmp_path, progress=False)
    assert resumed.computed == 5 and len(resumed.runs) == 8


def test_stored_only_reads_an_unfinished_benchmark_and_computes_nothing(tmp_path):
    seen = _interrupted_after_three_runs(tmp_path)
    partial = run_benchmark(small_config(), tmp_path, progress=False, stored_only=True)
    assert partial.computed == 0 and sorted(partial.runs["run_id"]) == sorted(seen)
    assert len(list((tmp_path / "runs").glob("*.json"))) == 3  # nothing new was computed or written
    with pytest.raises(InvalidInputError, match="stored_only needs the result folder"):
        run_benchmark(small_config(), None, progress=False, stored_only=True)


def test_adding_a_strategy_reuses_the_stored_runs(reference_run, tmp_path):
    run_benchmark(small_config(), tmp_path, progress=False)
    bigger = run_benchmark(small_config(strategies=["random", "margin", "entropy"]), tmp_path, progress=False)
    assert bigger.computed == 4 and len(bigger.runs) == 12
    result, _ = reference_run
    common = _metrics(bigger.runs).loc[_metrics(result.runs).index]
    pd.testing.assert_frame_equal(common, _metrics(result.runs))


def test_a_folder_of_another_benchmark_is_refused(tmp_path):
    run_benchmark(small_config(n_seeds=1, datasets=["sklearn:iris"]), tmp_path, progress=False)
    with pytest.raises(InvalidInputError, match="label_budget"):
        run_benchmark(small_config(n_seeds=1, datasets=["sklearn:iris"], label_budget=5), tmp_path, progress=False)


class _Exploding(RandomSampling):
    """Fails on its second query of every run (a strategy bug)."""

    name = "exploding_test_strategy"
    calls = 0

    def _select(self, ctx, batch_size):
        type(self).calls += 1
        if self.n_queries_ >= 1:
            raise RuntimeError("boom")
        return super()._select(ctx, batch_size)


def test_failed_runs_are_retried_once_and_reported_not_scored(tmp_path):
    register_strategy(_Exploding)
    try:
        config = small_config(strategies=["margin", "exploding_test_strategy"], datasets=["sklearn:iris"], n_seeds=1)
        result = run_benchmark(config, tmp_path, progress=False)
    finally:
        STRATEGIES.pop("exploding_test_strategy")
    failed = result.runs[result.runs["status"] == "failed"]
    assert len(failed) == 1 and failed["strategy"].iloc[0] == "exploding_test_strategy"
    assert "RuntimeError: boom" in failed["error"].iloc[0]
    assert failed["aulc_accuracy"].isna().all()  # never scored as zero
    assert _Exploding.calls == 4  # two queries per attempt, two attempts
    assert set(result.curves["strategy"]) == {"margin"}
    stored = json.loads(next((tmp_path / "runs").glob("*exploding*.json")).read_text())
    assert "Traceback" in stored["summary"]["traceback"]


@pytest.mark.parametrize(
    "overrides, error, message",
    [
        (dict(strategies=["margin", "smartest"]), UnknownNameError, "valid names"),
        (dict(label_budget=500), InvalidInputError, "larger than"),
        (dict(datasets=["/nonexistent/data.csv"]), DatasetError, "data.csv"),
        (dict(models=["transformer"]), UnknownNameError, "logreg"),
        (dict(regimes=["lukewarm"]), InvalidInputError, "regime"),
        (dict(batch_sizes=[0]), InvalidInputError, "batch size"),
        (dict(test_size=1.5), InvalidInputError, "test_size"),
    ],
)
def test_bad_settings_fail_before_any_run(overrides, error, message, tmp_path):
    with pytest.raises(error, match=message):
        run_benchmark(small_config(**overrides), tmp_path / "out", progress=False)
    assert not list((tmp_path / "out" / "runs").glob("*.json")) if (tmp_path / "out").exists() else True


def test_a_class_too_small_for_the_split_is_reported_up_front(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(60, 3)), columns=list("abc"))
    frame["target"] = ["x"] * 30 + ["y"] * 29 + ["z"]
    path = tmp_path / "tiny.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(InvalidInputError, match="tiny"):
        run_benchmark(small_config(datasets=[str(path)]), tmp_path / "out", progress=False)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_folder_is_a_clear_error(tmp_path):  # pragma: no cover - CI runs as root
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(InvalidInputError, match="cannot write"):
        run_benchmark(small_config(), locked / "out", progress=False)


def test_output_path_that_is_a_file_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(InvalidInputError, match="cannot write"):
        run_benchmark(small_config(), blocker / "out", progress=False)


def test_in_memory_benchmark_without_a_folder(reference_run):
    result, _ = reference_run
    memory = run_benchmark(small_config(), None, progress=False)
    assert memory.out_dir is None
    pd.testing.assert_frame_equal(_metrics(result.runs), _metrics(memory.runs))


def test_dask_local_cluster_gives_the_same_results(reference_run, tmp_path):
    pytest.importorskip("distributed")
    result, _ = reference_run
    dask_result = run_benchmark(small_config(), tmp_path, dask="local:2", progress=False)
    pd.testing.assert_frame_equal(_metrics(result.runs), _metrics(dask_result.runs))


def test_suite_datasets(tmp_path):
    config = small_config(datasets=["suite:smoke:2"], n_seeds=1, label_budget=6, batch_sizes=[3])
    result = run_benchmark(config, tmp_path, progress=False)
    assert result.runs["dataset"].nunique() == 2 and (result.runs["status"] == "ok").all()


def test_cli_benchmark_writes_tables_and_report(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main([
        "benchmark", "--datasets", "sklearn:iris", "--strategies", "random,margin", "--models", "logreg",
        "--regimes", "cold", "--batch-sizes", "5", "--budget", "10", "--seeds", "2", "--jobs", "1", "--out", str(out),
    ])
    assert code == 0
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 4 and set(runs["strategy"]) == {"random", "margin"}
    assert len(pd.read_csv(out / "curves.csv")) == 12
    assert (out / "report.md").exists() and (out / "report.html").exists()
    assert "margin" in capsys.readouterr().out

    # A second report, on a subset of the strategies, from the same stored runs.
    subset = tmp_path / "margin-only"
    code = main([
        "benchmark", "--datasets", "sklearn:iris", "--strategies", "margin", "--models", "logreg",
        "--regimes", "cold", "--batch-sizes", "5", "--budget", "10", "--seeds", "2", "--jobs", "1", "--out", str(out),
        "--stored-only", "--report-dir", str(subset),
    ])
    assert code == 0
    assert set(pd.read_csv(subset / "runs.csv")["strategy"]) == {"margin"}
    assert (subset / "report.md").exists()
    assert set(pd.read_csv(out / "runs.csv")["strategy"]) == {"random", "margin"}  # the first report is kept
    assert f"tables and report in {subset}" in capsys.readouterr().out


def test_cli_reports_bad_input_without_a_traceback(tmp_path, capsys):
    code = main(["benchmark", "--datasets", "sklearn:iris", "--strategies", "nonsense", "--out", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown strategy 'nonsense'" in err and "Traceback" not in err


# ------------------------------------------------------------------ the committed results table
def _curves(curves: pd.DataFrame) -> pd.DataFrame:
    return curves.sort_values(["run_id", "loop"]).reset_index(drop=True)


@pytest.mark.parametrize("parquet", [True, False], ids=["parquet", "csv"])
def test_results_table_alone_resumes_and_rebuilds_without_recomputing(tmp_path, monkeypatch, parquet):
    import shutil

    from metalearn.benchmark import storage

    if parquet:
        pytest.importorskip("pyarrow")
    else:
        monkeypatch.setattr(storage, "_parquet_available", lambda: False)
    out = tmp_path / "out"
    result = run_benchmark(small_config(), out, progress=False)
    table = out / ("results.parquet" if parquet else "results.csv")
    assert table.is_file() and not (out / ("results.csv" if parquet else "results.parquet")).exists()
    stored = storage.ResultStore(out).read_table()
    assert len(stored) == 8 and stored["run_id"].is_unique
    assert all(len(curve) == 3 for curve in stored["curve_accuracy"])  # every run with its learning curve

    clone = tmp_path / "clone"  # what a fresh clone holds: the configuration and the table
    clone.mkdir()
    shutil.copy(out / "benchmark.json", clone)
    shutil.copy(table, clone)
    looked = run_benchmark(small_config(), clone, progress=False, stored_only=True)
    assert looked.computed == 0
    pd.testing.assert_frame_equal(looked.runs.set_index("run_id").sort_index(), result.runs.set_index("run_id").sort_index())
    pd.testing.assert_frame_equal(_curves(looked.curves), _curves(result.curves), check_like=True)
    assert len(list((clone / "runs").glob("*.json"))) == 8  # the cache, unpacked from the table
    resumed = run_benchmark(small_config(strategies=["random", "margin", "entropy"]), clone, progress=False)
    assert resumed.computed == 4 and len(resumed.runs) == 12
    assert len(storage.ResultStore(clone).read_table()) == 12  # the table follows the new runs


def test_a_partial_cache_gets_the_tables_other_runs_and_the_table_keeps_them(tmp_path):
    from metalearn.benchmark import storage

    out = tmp_path / "out"
    first = run_benchmark(small_config(), out, progress=False)
    runs = sorted((out / "runs").glob("*.json"))
    kept = runs[0]
    kept_text = kept.read_text()
    for path in runs[1:]:  # an earlier session's cache held one run; the table holds all 8
        path.unlink()
    resumed = run_benchmark(small_config(strategies=["random", "margin", "entropy"]), out, progress=False)
    assert resumed.computed == 4  # entropy's runs only: nothing of the table is recomputed
    assert len(storage.ResultStore(out).read_table()) == 12  # and nothing of it is dropped
    assert kept.read_text() == kept_text  # the cache's own file is left as it was
    pd.testing.assert_frame_equal(
        resumed.runs[resumed.runs["strategy"] != "entropy"].set_index("run_id").sort_index(),
        first.runs.set_index("run_id").sort_index(),
    )


def test_an_unchanged_results_table_is_not_rewritten(tmp_path):
    run_benchmark(small_config(n_seeds=1, datasets=["sklearn:iris"]), tmp_path, progress=False)
    table = next(tmp_path.glob("results.*"))
    before = table.stat().st_mtime_ns
    assert run_benchmark(small_config(n_seeds=1, datasets=["sklearn:iris"]), tmp_path, progress=False).computed == 0
    assert table.stat().st_mtime_ns == before
