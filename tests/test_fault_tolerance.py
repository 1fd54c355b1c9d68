"""Faults: training killed with SIGKILL and resumed, benchmark workers killed mid-run, full disks.

- ``metalearn train`` is SIGKILLed at seeded random points (not only Ctrl-C) and continued with
  ``--resume``: the final policies and checkpoint equal an uninterrupted run's, bit for bit.
- A benchmark worker (a joblib/loky process, a Dask LocalCluster worker) is SIGKILLed in the
  middle of a run: the benchmark completes with every run stored exactly once, with the same
  results as an undisturbed run. A worker that keeps dying ends in a clear error.
- An output folder that is a file, read-only or on a full disk fails before any work where it
  can be checked; a disk that fills mid-run gives an error naming the folder and "no space",
  and leaves no partial result file; policy files and training checkpoints keep their previous
  version, loadable.

Disk-full cases are simulated by making writes fail with ``ENOSPC`` after part of the data (the
tests run as root in CI, where permissions cannot make a folder unwritable). Set
``METALEARN_TEST_TMPFS=1`` to also run the benchmark on a real, tiny tmpfs (needs root).
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import _fault_plugins as plugins
from metalearn.benchmark import BenchmarkConfig, run_benchmark
from metalearn.benchmark import runner as runner_module
from metalearn.common import atomic as atomic_module
from metalearn.benchmark.storage import write_table
from metalearn.cli import main
from metalearn.exceptions import InvalidInputError, MetalearnError, PolicyFileError
from metalearn.features.schema import POOL_SCHEMA
from metalearn.policies.architecture import ScorerArchitecture, parameter_shapes
from metalearn.policies.file import read_policy, save_policy
from metalearn.policies.trainers.checkpoints import load_checkpoint
from metalearn.policies.trainers.imitation import ImitationConfig, train_imitation

REPO_ROOT = Path(__file__).resolve().parents[1]
NO_SPACE = os.strerror(errno.ENOSPC)  # "No space left on device"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def enospc() -> OSError:
    return OSError(errno.ENOSPC, NO_SPACE)


def _same_arrays(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def _stray_temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp") or p.name == ".write-probe"]


# =============================================================================================
# Training killed with SIGKILL, then --resume
# =============================================================================================
TRAIN_ARGS = [
    "train", "--method", "imitation", "--suite", "smoke", "--seed", "2", "--iterations", "3", "--episodes", "2",
    "--candidates", "8", "--validation-tasks", "0", "--jobs", "1", "--schema", "pool",
]
# One BLAS/OpenMP thread: the runs must not differ by thread scheduling, and the machine is shared.
TRAIN_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _train_command(out: Path, resume: bool) -> list[str]:
    return [sys.executable, "-m", "metalearn.cli", *TRAIN_ARGS, "--out", str(out)] + (["--resume"] if resume else [])


def _checkpoint_step(out: Path) -> int | None:
    try:
        return int(json.loads((out / "checkpoint" / "checkpoint.json").read_text())["step"])
    except (OSError, ValueError, KeyError):
        return None


def _run_training(out: Path, resume: bool, timeout: float = 240) -> None:
    done = subprocess.run(_train_command(out, resume), cwd=REPO_ROOT, env=TRAIN_ENV, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]


def _start_and_kill(out: Path, event: str, delay: float, timeout: float = 240) -> bool:
    """Start (or resume) the training, SIGKILL it ``delay`` s after ``event``; whether it was killed."""
    step_before = _checkpoint_step(out)
    proc = subprocess.Popen(_train_command(out, resume=True), cwd=REPO_ROOT, env=TRAIN_ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout
        if event == "next_checkpoint":  # the next iteration boundary, then part of the next iteration
            while proc.poll() is None and time.monotonic() < deadline:
                step = _checkpoint_step(out)
                if step is not None and (step_before is None or step > step_before):
                    break
                time.sleep(0.02)
        time.sleep(delay)
        if proc.poll() is not None:
            assert proc.returncode == 0, proc.stderr.read().decode()[-3000:]
            return False  # it finished first: nothing was interrupted
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        return True
    finally:
        if proc.poll() is None:  # pragma: no cover - a failed assertion above
            proc.kill()
            proc.wait()
        proc.stderr.close()


@pytest.fixture(scope="module")
def uninterrupted_training(tmp_path_factory) -> tuple[Path, float]:
    """The run folder of an uninterrupted training and its wall time in seconds (start-up included)."""
    out = tmp_path_factory.mktemp("train") / "straight"
    start = time.monotonic()
    _run_training(out, resume=False)
    return out, time.monotonic() - start


@pytest.mark.parametrize("seed", [0, 1])
def test_training_killed_with_sigkill_resumes_to_the_same_policy(uninterrupted_training, tmp_path, seed):
    reference, duration = uninterrupted_training
    rnd = random.Random(seed)
    # seed 0: killed inside iteration 1, right after the first checkpoint; seed 1: killed twice at
    # random points of the run (start-up, collection, training or checkpointing), as fractions of
    # the uninterrupted run's wall time so that the kills land inside the run on any machine.
    plans = {
        0: [("next_checkpoint", rnd.uniform(0.0, 0.6))],
        1: [("start", rnd.uniform(0.3, 0.7) * duration), ("start", rnd.uniform(0.2, 0.5) * duration)],
    }
    out = tmp_path / "killed"
    kills = [_start_and_kill(out, event, delay) for event, delay in plans[seed]]
    assert kills[0], "the first kill came after the training had finished: nothing was tested"
    _run_training(out, resume=True)

    for name in ("last.safetensors", "policy.safetensors"):  # validation off: policy = last iteration's
        assert _same_arrays(read_policy(out / name).params, read_policy(reference / name).params), name
    ours, _ = load_checkpoint(out / "checkpoint")
    theirs, _ = load_checkpoint(reference / "checkpoint")
    assert _same_arrays(ours, theirs)  # weights, Adam moments, aggregated dataset, RNG state
    rows = (out / "progress.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [0, 1, 2]  # every iteration logged exactly once


# =============================================================================================
# Benchmark workers killed mid-run
# =============================================================================================
def _bench_config(**overrides) -> BenchmarkConfig:
    settings = dict(
        strategies=["random", plugins.KILL_STRATEGY], datasets=["sklearn:iris"], models=["logreg"],
        regimes=["cold"], batch_sizes=[5], label_budget=10, n_seeds=3, seed=5,
    )
    settings.update(overrides)
    return BenchmarkConfig(**settings)


@pytest.fixture
def armed(monkeypatch, tmp_path):
    """Datasets carry a KillSwitch to the workers: one worker SIGKILLs itself mid-run."""
    folder = tmp_path / "switch"
    folder.mkdir()
    switch = plugins.KillSwitch(folder)
    real = runner_module.resolve_datasets

    def with_switch(specs, seed=0):
        datasets = real(specs, seed=seed)
        for ds in datasets:
            ds.info["kill_switch"] = switch
        return datasets

    monkeypatch.setattr(runner_module, "resolve_datasets", with_switch)
    return folder


def _metrics(runs):
    return runs.set_index("run_id").sort_index()[["status", "aulc_accuracy", "final_accuracy", "full_pool_accuracy"]]


@pytest.fixture(scope="module")
def undisturbed_benchmark(tmp_path_factory):
    # In this process the strategy never kills (the switch is not armed here): plain results.
    return run_benchmark(_bench_config(), tmp_path_factory.mktemp("bench") / "ref", n_jobs=1, progress=False)


def _check_complete_and_unique(result, out: Path, delivered: list[str], reference) -> None:
    n_runs = 6
    assert len(result.runs) == n_runs and result.runs["run_id"].is_unique
    assert (result.runs["status"] == "ok").all(), result.runs["error"].tolist()
    assert sorted(delivered) == sorted(set(delivered)) and len(delivered) == n_runs  # none lost, none twice
    files = sorted((out / "runs").glob("*.json"))
    assert len(files) == n_runs
    for path in files:
        record = json.loads(path.read_text())
        assert record["summary"]["status"] == "ok" and record["curve"]["n_bought"][-1] == 10
    assert not _stray_temp_files(out)
    pd.testing.assert_frame_equal(_metrics(result.runs), _metrics(reference.runs))


def test_benchmark_completes_when_a_joblib_worker_is_killed(armed, tmp_path, undisturbed_benchmark):
    delivered: list[str] = []
    with pytest.warns(RuntimeWarning, match="worker died.*resubmitting"):
        result = run_benchmark(_bench_config(), tmp_path / "out", n_jobs=2, progress=False,
                               on_result=lambda r: delivered.append(r["summary"]["run_id"]))
    victims = plugins.KillSwitch.victims(armed)
    assert len(victims) == 1 and victims[0] != os.getpid()  # one worker really died, mid-run
    _check_complete_and_unique(result, tmp_path / "out", delivered, undisturbed_benchmark)


def test_benchmark_completes_when_a_dask_worker_is_killed(armed, tmp_path, undisturbed_benchmark):
    pytest.importorskip("distributed")
    delivered: list[str] = []
    result = run_benchmark(_bench_config(), tmp_path / "out", dask="local:2", progress=False,
                           on_result=lambda r: delivered.append(r["summary"]["run_id"]))
    assert len(plugins.KillSwitch.victims(armed)) == 1
    _check_complete_and_unique(result, tmp_path / "out", delivered, undisturbed_benchmark)


def test_benchmark_gives_up_with_a_clear_error_when_workers_keep_dying(armed, tmp_path, monkeypatch):
    monkeypatch.setattr(runner_module, "MAX_WORKER_RESTARTS", 1)
    (armed / "times").write_text("10")  # fire in every attempt, not once
    out = tmp_path / "out"
    with pytest.warns(RuntimeWarning, match="resubmitting"):
        with pytest.raises(MetalearnError, match=r"(?s)workers died 2 times.*rerun to resume"):
            run_benchmark(_bench_config(), out, n_jobs=2, progress=False)
    assert len(plugins.KillSwitch.victims(armed)) >= 2  # both workers may die in one attempt
    for path in (out / "runs").glob("*.json"):  # whatever finished is complete
        assert json.loads(path.read_text())["summary"]["status"] == "ok"
    assert not _stray_temp_files(out)


# =============================================================================================
# Unwritable output folders, full disks
# =============================================================================================
def _tiny_bench(**overrides) -> BenchmarkConfig:
    settings = dict(strategies=["random", "margin"], datasets=["sklearn:iris"], models=["logreg"], regimes=["cold"],
                    batch_sizes=[5], label_budget=10, n_seeds=2, seed=1)
    settings.update(overrides)
    return BenchmarkConfig(**settings)


def _no_run(*args, **kwargs):  # pragma: no cover - called only if work started
    raise AssertionError("a run was computed although the output folder is unusable")


def test_benchmark_out_folder_that_is_a_file_fails_before_any_run(tmp_path, capsys):
    out = tmp_path / "results"
    out.write_text("not a folder")
    with pytest.raises(InvalidInputError, match=f"cannot write benchmark results to {re.escape(str(out))}"):
        run_benchmark(_tiny_bench(), out, progress=False, on_result=_no_run)
    assert out.read_text() == "not a folder"
    code = main(["benchmark", "--datasets", "sklearn:iris", "--strategies", "random", "--models", "logreg",
                 "--regimes", "cold", "--batch-sizes", "5", "--budget", "10", "--seeds", "1", "--out", str(out)])
    assert code == 2 and "cannot write benchmark results" in capsys.readouterr().err


@pytest.mark.skipif(IS_ROOT or os.name != "posix", reason="root writes into read-only folders; see the ENOSPC variants")
def test_benchmark_read_only_out_folder_fails_before_any_run(tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    out.chmod(0o500)
    try:
        with pytest.raises(InvalidInputError, match="cannot write benchmark results"):
            run_benchmark(_tiny_bench(), out, progress=False, on_result=_no_run)
    finally:
        out.chmod(0o700)


def test_benchmark_on_a_full_disk_fails_before_any_run(tmp_path, monkeypatch):
    real_write_text = Path.write_text

    def full(self, *args, **kwargs):
        if self.name == ".write-probe":
            raise enospc()
        return real_write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    out = tmp_path / "results"
    with pytest.raises(InvalidInputError, match=f"{re.escape(str(out))}.*{NO_SPACE}"):
        run_benchmark(_tiny_bench(), out, progress=False, on_result=_no_run)


class _FillingDisk:
    """Stands in for the ``os`` module of one library module: after ``room`` files, a write
    stores part of its data and then fails with ENOSPC, as a filling disk does."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.failures = 0

    def __getattr__(self, name):
        return getattr(os, name)

    def fdopen(self, fd, *args, **kwargs):
        handle = os.fdopen(fd, *args, **kwargs)
        if self.room > 0:
            self.room -= 1
            return handle
        disk = self

        class Full:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                handle.close()
                return False

            def write(self, data):
                handle.write(data[: len(data) // 2])
                handle.flush()
                disk.failures += 1
                raise enospc()

            def __getattr__(self, name):
                return getattr(handle, name)

        return Full()


def test_benchmark_disk_full_mid_run_is_clear_and_leaves_no_partial_file(tmp_path, monkeypatch):
    out = tmp_path / "results"
    disk = _FillingDisk(room=3)  # benchmark.json, then two runs fit
    monkeypatch.setattr(atomic_module, "os", disk)
    delivered: list[str] = []
    with pytest.raises(InvalidInputError) as info:
        run_benchmark(_tiny_bench(), out, progress=False, on_result=lambda r: delivered.append(r["summary"]["run_id"]))
    message = str(info.value)
    assert str(out / "runs") in message and NO_SPACE.lower() in message.lower() and disk.failures == 1
    stored = sorted((out / "runs").glob("*.json"))
    assert len(stored) == 2 and len(delivered) == 2
    for path in stored:  # every file under runs/ is a complete record
        record = json.loads(path.read_text())
        assert set(record) == {"summary", "curve"} and record["summary"]["status"] == "ok"
    assert not _stray_temp_files(out)  # the half-written temporary file was removed

    # Space is freed: rerunning computes only the missing runs, once each.
    monkeypatch.setattr(atomic_module, "os", os)
    result = run_benchmark(_tiny_bench(), out, progress=False, on_result=lambda r: delivered.append(r["summary"]["run_id"]))
    assert result.computed == 2 and len(result.runs) == 4 and (result.runs["status"] == "ok").all()
    assert sorted(delivered) == sorted(set(delivered)) and len(delivered) == 4
    assert len(list((out / "runs").glob("*.json"))) == 4


def test_result_table_write_on_a_full_disk_keeps_the_previous_table(tmp_path, monkeypatch):
    path = tmp_path / "runs.csv"
    write_table(pd.DataFrame({"a": [1, 2]}), path)
    before = path.read_text()

    def full_to_csv(self, target, *args, **kwargs):
        Path(target).write_text("a\n1\n")  # part of the table, then the disk is full
        raise enospc()

    monkeypatch.setattr(pd.DataFrame, "to_csv", full_to_csv)
    with pytest.raises(InvalidInputError, match=f"{re.escape(str(tmp_path))}.*{NO_SPACE}"):
        write_table(pd.DataFrame({"a": [1, 2, 3]}), path)
    assert path.read_text() == before and not _stray_temp_files(tmp_path)


@pytest.mark.skipif(os.environ.get("METALEARN_TEST_TMPFS") != "1" or not IS_ROOT, reason="opt-in: mounts a tmpfs")
def test_benchmark_on_a_really_full_tmpfs(tmp_path):
    mount = tmp_path / "tiny"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        with pytest.raises(InvalidInputError, match=NO_SPACE):
            run_benchmark(_tiny_bench(n_seeds=20), mount / "out", progress=False)
        for path in (mount / "out" / "runs").glob("*.json"):
            json.loads(path.read_text())
        assert not _stray_temp_files(mount / "out")
    finally:
        subprocess.run(["umount", str(mount)], check=False)


# ---------------------------------------------------------------------------------- policy files
def _random_params(seed: int, arch: ScorerArchitecture) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: (rng.uniform(0.5, 1.5, shape) if name.endswith("_std") else rng.normal(0, 0.3, shape))
            for name, shape in parameter_shapes(arch).items()}


def test_save_policy_on_a_full_disk_keeps_the_previous_file(tmp_path, monkeypatch):
    arch = ScorerArchitecture(POOL_SCHEMA.n_candidate_features, POOL_SCHEMA.n_context_features, hidden=8)
    meta = {"feature_schema": POOL_SCHEMA.to_dict(), "window": 3}
    path = save_policy(tmp_path / "policy.safetensors", arch, _random_params(0, arch), meta)
    before = read_policy(path).params
    monkeypatch.setattr(atomic_module, "os", _FillingDisk(room=0))
    with pytest.raises(PolicyFileError, match=f"{re.escape(str(path))}.*{NO_SPACE}"):
        save_policy(path, arch, _random_params(1, arch), meta)
    monkeypatch.setattr(atomic_module, "os", os)
    assert _same_arrays(read_policy(path).params, before)  # intact and loadable
    assert [p.name for p in tmp_path.iterdir()] == ["policy.safetensors"]  # no temporary file left


# ---------------------------------------------------------------------------------- checkpoints
def _cli_equivalent_config(out: Path) -> ImitationConfig:
    """The settings of TRAIN_ARGS, so an in-process run can be compared with the CLI's."""
    return ImitationConfig(suite="smoke", seed=2, out_dir=str(out), n_candidates=8, iterations=3,
                           episodes_per_iteration=2, selection_tasks=0, n_jobs=1)


@pytest.mark.parametrize("phase", ["tensors", "json"])
def test_training_checkpoint_on_a_full_disk_keeps_the_previous_one(uninterrupted_training, tmp_path, monkeypatch, phase):
    import safetensors.numpy
    from safetensors import SafetensorError

    out = tmp_path / "run"
    saves = {"n": 0}
    real_save_file, real_replace = safetensors.numpy.save_file, atomic_module.fsync_replace

    def full_save_file(tensors, filename, *args, **kwargs):
        saves["n"] += 1
        if saves["n"] == 2:  # the checkpoint of iteration 1: half the file, then the disk is full
            Path(filename).write_bytes(safetensors.numpy.save(tensors)[:1000])
            raise SafetensorError(f"Error while serializing: I/O error: {NO_SPACE} (os error 28)")
        return real_save_file(tensors, filename, *args, **kwargs)

    def full_json(tmp, final):
        if final.name == "checkpoint.json" and _checkpoint_step(out) == 0:
            raise enospc()
        return real_replace(tmp, final)

    if phase == "tensors":
        monkeypatch.setattr(safetensors.numpy, "save_file", full_save_file)
    else:
        monkeypatch.setattr(atomic_module, "fsync_replace", full_json)
    with pytest.raises(MetalearnError, match=f"checkpoint to {re.escape(str(out / 'checkpoint'))}: .*{NO_SPACE}.*step 0 is kept"):
        train_imitation(_cli_equivalent_config(out), progress=False)
    monkeypatch.undo()

    tensors, state = load_checkpoint(out / "checkpoint")  # the previous checkpoint, complete
    assert state["run"]["iteration"] == 1
    assert sorted(p.name for p in (out / "checkpoint").iterdir()) == ["checkpoint-000000.safetensors", "checkpoint.json"]
    assert not _stray_temp_files(out)
    read_policy(out / "last.safetensors")  # the policy files stay loadable too

    result = train_imitation(_cli_equivalent_config(out), resume=True, progress=False)
    assert _same_arrays(read_policy(result.last_path).params, read_policy(uninterrupted_training[0] / "last.safetensors").params)


def test_training_out_folder_that_is_a_file_fails_before_any_work(tmp_path, monkeypatch):
    out = tmp_path / "run"
    out.write_text("not a folder")
    from metalearn.policies.trainers import oracle_learning

    monkeypatch.setattr(oracle_learning, "parallel_map", _no_run)
    with pytest.raises(InvalidInputError, match=f"cannot write the training run to {re.escape(str(out))}"):
        train_imitation(_cli_equivalent_config(out), progress=False)
