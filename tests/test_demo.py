"""The main job (``metalearn demo``) in its quick mode: train, benchmark, report, resume."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")

from metalearn.cli import main  # noqa: E402
from metalearn.demo import DEFAULT_LABEL, DEFAULT_POLICY, FRESH_LABEL, DemoConfig, run_demo  # noqa: E402
from metalearn.exceptions import InvalidInputError  # noqa: E402
from metalearn.policies.file import POLICY_DIR_ENV, released_policy_names  # noqa: E402


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """(mtime_ns, size) of every file under ``folder``, by relative path."""
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*") if p.is_file()
    }


def test_quick_demo_trains_benchmarks_reports_and_resumes(tmp_path, capsys, monkeypatch):
    out = tmp_path / "demo"
    code = main(["demo", "--quick", "--out", str(out), "--jobs", "1"])
    assert code == 0
    printed = capsys.readouterr().out
    table = [line for line in printed.splitlines() if line.startswith("| ")]
    listed = {line.split("|")[1].strip() for line in table[1:]}
    assert {FRESH_LABEL, "random", "margin"} <= listed
    policy = out / "train" / "policy.safetensors"
    bench = out / "benchmark"
    assert policy.is_file()
    assert (bench / "report.md").is_file() and (bench / "report.html").is_file()
    assert list(bench.glob("*.png"))
    assert (bench / "runs.csv").is_file() and (bench / "curves.csv").is_file()
    assert str(bench / "report.html") in printed and ".png" in printed
    # Step 4: retraining after every label against a batch size and a schedule, on the same problems.
    assert "[4/4] compute" in printed and (out / "compute" / "runs.csv").is_file()
    assert "| schedule geometric:2:2 |" in printed and "retrained" in printed

    # Rerunning reuses everything: no training iteration, no benchmark run, no stored file rewritten.
    training_files = _snapshot(out / "train")
    progress_log = (out / "train" / "progress.csv").read_bytes()
    run_files = _snapshot(bench / "runs")
    compute_files = _snapshot(out / "compute" / "runs")
    assert run_files and compute_files
    result = run_demo(DemoConfig(out_dir=str(out), quick=True, n_jobs=1), progress=False, echo=None)
    assert result.trained_iterations == 0 and result.training.iterations == 1
    assert result.benchmark.computed == 0
    assert _snapshot(bench / "runs") == run_files
    assert _snapshot(out / "compute" / "runs") == compute_files
    fits = result.compute["fits"]
    assert list(result.compute.index) == ["every label", "every 5 labels", "schedule geometric:2:2"]
    assert fits["every label"] == 11 and fits["every 5 labels"] == 3  # the initial model and one per retrain
    assert fits["every 5 labels"] < fits["schedule geometric:2:2"] < fits["every label"]
    assert result.compute.loc["every label", "vs_every_label"] == 0.0
    assert result.compute.loc["schedule geometric:2:2", "fits_saved"] == pytest.approx(100 * (1 - 6 / 11))
    after = _snapshot(out / "train")
    for name in ("policy.safetensors", "last.safetensors"):
        assert after[name] == training_files[name]
    assert (out / "train" / "progress.csv").read_bytes() == progress_log  # rewritten on resume, same rows
    assert set(result.table.index) >= {FRESH_LABEL, "random", "margin"}
    assert result.plots and all(p.is_file() for p in result.plots)

    # A released default policy joins the benchmark, and the stored runs of the others are reused.
    if DEFAULT_POLICY not in released_policy_names():
        released = tmp_path / "released"
        released.mkdir()
        shutil.copy(policy, released / f"{DEFAULT_POLICY}.safetensors")
        monkeypatch.setenv(POLICY_DIR_ENV, str(released))
        result = run_demo(DemoConfig(out_dir=str(out), quick=True, n_jobs=1), progress=False, echo=None)
        assert DEFAULT_LABEL in result.table.index
        assert result.benchmark.computed == len(result.benchmark.runs) // 4  # its runs only
        assert _snapshot(bench / "runs").items() >= run_files.items()

    # A folder of other settings is refused with a message naming the setting, not mixed.
    with pytest.raises(InvalidInputError, match="seed"):
        run_demo(DemoConfig(out_dir=str(out), quick=True, n_jobs=1, seed=1), progress=False, echo=None)


def test_demo_config_checks_its_settings():
    with pytest.raises(InvalidInputError, match="train_minutes"):
        DemoConfig(train_minutes=0).validate()
    quick = DemoConfig(quick=True)
    assert quick.training_config().suite == "smoke" and quick.training_config().iterations == 1
    full = DemoConfig(train_minutes=2.5)
    train = full.training_config()
    assert train.iterations is None and train.time_budget == 150.0
    assert train.selection_suite is train.suite  # keep-the-best on other tasks of the embedded suite
    assert train.suite.name.startswith("synthetic") and train.suite.settings.batch_sizes == (5, 10)
    assert DemoConfig(train_batch_sizes=None).training_config().suite == "synthetic"
    bench = full.benchmark_config(["random", "margin"])
    assert bench.regimes == ["cold"] and bench.batch_sizes == [10] and bench.models == ["logreg", "rf"]
    compute = full.compute_config("policy:default", "geometric:2:2")
    assert compute.batch_sizes == [1, 10] and compute.schedules == ["geometric:2:2"] and compute.models == ["logreg"]
    assert compute.label_budget == bench.label_budget and compute.n_seeds == full.compute_seeds
