"""Issue 22: files that lie, special and full outputs, formula cells, bounded parameters.

One test (or a few) per class of failure; the property tests of the same surfaces are in
tests/test_hostile_properties.py.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from metalearn.benchmark.config import resolve_datasets
from metalearn.benchmark.runner import _interrupts_deferred, ignore_further_interrupts
from metalearn.benchmark.storage import ResultStore, check_run_id, write_table
from metalearn.cli import main
from metalearn.common.atomic import atomic_write_bytes, atomic_write_text
from metalearn.common.csv_cells import neutralise_cell, neutralise_formulas, restore_cell, write_csv
from metalearn.common.dask_address import parse_dask_address
from metalearn.exceptions import (
    InvalidInputError,
    InvalidTypeError,
    MetalearnError,
    OutputFileError,
    ResultFolderError,
    StoppingRuleFileError,
    TaskSuiteError,
    UnknownNameError,
)
from metalearn.stopping import load_stopping_rule
from metalearn.stopping.file import read_stopping_rule
from metalearn.strategies import make_strategy
from metalearn.streaming import StreamingPolicy
from metalearn.tasks.suite import MAX_SAMPLES, TaskSuite

REPO = Path(__file__).resolve().parents[1]
RELEASED_RULE = REPO / "policies" / "stopping" / "default.safetensors"


# ------------------------------------------------------------------ 1. names from files become paths
def _benchmark_folder(tmp_path: Path, run_id: object, **record_changes: object) -> ResultStore:
    """A result folder whose results table holds one run (no run cache), as a fresh clone has."""
    store = ResultStore(tmp_path / "out")
    store.out_dir.mkdir()
    curve = {"loop": [0, 1], "n_bought": [1, 2], "accuracy": [0.5, 0.6], "macro_f1": [0.5, 0.6], "query_seconds": [0.0, 0.0]}
    curve.update(record_changes.pop("curve", {}))
    row = {"run_id": run_id, "dataset": "d", "model": "logreg", "regime": "cold", "batch_size": 1, "seed": 0,
           "strategy": "margin", "status": "ok", "error": "", "fingerprint": "f"}
    row.update(record_changes)
    table = pd.DataFrame([{**row, **{f"curve_{k}": json.dumps(v) for k, v in curve.items()}}])
    table.to_csv(store.out_dir / "results.csv", index=False)
    return store


@pytest.mark.parametrize("run_id", ["/tmp/x", "../../x", "a/b", ".hidden", "a\x1b[2Jb", "", "x" * 500])
def test_a_run_id_from_the_results_table_never_becomes_a_path_outside_the_cache(tmp_path, run_id):
    store = _benchmark_folder(tmp_path, run_id)
    with pytest.raises(ResultFolderError, match="run id"):
        store._unpack_table_into_cache()
    assert not list(store.runs_dir.glob("*")) if store.runs_dir.exists() else True
    assert not Path("/tmp/x.json").exists() or Path("/tmp/x.json").stat().st_mtime < time.time() - 60
    with pytest.raises(ResultFolderError):
        store.path(run_id)


def test_generated_run_ids_pass_the_check():
    from metalearn.benchmark.config import RunKey

    key = RunKey("=cmd|' /C calc'!A0", "logreg", "cold", 10, 3, "policy:default")
    assert check_run_id(key.run_id, "here") == key.run_id


def test_a_table_whose_curves_have_unequal_length_is_refused_in_one_line(tmp_path):
    store = _benchmark_folder(tmp_path, "ok-id__00000000", curve={"loop": [0, 1, 2]})
    with pytest.raises(ResultFolderError, match="unequal length"):
        store._unpack_table_into_cache()
    assert not list(store.runs_dir.glob("*.json")) if store.runs_dir.exists() else True


def test_a_table_without_run_id_is_refused(tmp_path):
    store = _benchmark_folder(tmp_path, "ok-id__00000000")
    table = pd.read_csv(store.out_dir / "results.csv").drop(columns=["run_id"])
    table.to_csv(store.out_dir / "results.csv", index=False)
    with pytest.raises(MetalearnError):
        store._unpack_table_into_cache()


@pytest.mark.parametrize("content", ["[1, 2]", '"text"', "[" * 100_000 + "]" * 100_000, '{"config": 3}'])
def test_a_benchmark_json_of_the_wrong_shape_is_our_error_and_exit_2(tmp_path, content, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "benchmark.json").write_text(content)
    code = main(["benchmark", "--datasets", "sklearn:iris", "--strategies", "random", "--seeds", "1", "--budget", "5",
                 "--models", "logreg", "--regimes", "cold", "--batch-sizes", "1", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "metalearn: error:" in err


def test_a_tampered_cache_file_is_recomputed_not_trusted(tmp_path):
    store = ResultStore(tmp_path / "out")
    store.runs_dir.mkdir(parents=True)
    (store.runs_dir / "a__00000000.json").write_text(json.dumps({"summary": {"run_id": "../../elsewhere"}, "curve": {}}))
    (store.runs_dir / "b__00000000.json").write_text(json.dumps({"summary": {"fingerprint": "f"}, "curve": {}}))
    assert store.finished("f") == {}


# ------------------------------------------------------------------ 2. formula injection
def test_text_cells_are_neutralised_and_numbers_stay_numbers(tmp_path):
    frame = pd.DataFrame({"dataset": ["=cmd|' /C calc'!A0", "+1", "-x", "@SUM(A1)", "\tx", "plain", "'=q"],
                          "delta": [-1.5, -2.0, 0.0, 3.0, -0.25, -7.0, 2.0]})
    path = write_csv(frame, tmp_path / "t.csv")
    back = pd.read_csv(path, keep_default_na=False)
    assert back["dataset"].tolist()[:5] == ["'=cmd|' /C calc'!A0", "'+1", "'-x", "'@SUM(A1)", "'\tx"]
    assert back["dataset"].tolist()[5:] == ["plain", "''=q"]
    assert neutralise_cell("\rx") == "'\rx"
    assert back["delta"].tolist() == frame["delta"].tolist()  # negative numbers untouched
    assert [restore_cell(v) for v in back["dataset"]] == frame["dataset"].tolist()


def test_runs_and_curves_csv_neutralise_a_hostile_dataset_name_and_results_csv_round_trips(tmp_path):
    hostile = "=cmd|' /C calc'!A0"
    runs = pd.DataFrame({"run_id": ["r__00000000"], "dataset": [hostile], "aulc_accuracy": [-0.5]})
    write_table(runs, tmp_path / "runs.csv")
    text = (tmp_path / "runs.csv").read_text()
    assert "'=cmd" in text and ",=cmd" not in text and "-0.5" in text
    write_table(runs, tmp_path / "runs.parquet")  # Parquet is data, not a spreadsheet: unchanged
    assert pd.read_parquet(tmp_path / "runs.parquet")["dataset"].tolist() == [hostile]
    store = ResultStore(tmp_path / "store")
    store.out_dir.mkdir()
    write_table(runs, store.out_dir / "results.csv")
    assert store.read_table()["dataset"].tolist() == [hostile]  # read back as written


def test_every_csv_writer_goes_through_the_shared_one():
    offenders = []
    for path in (REPO / "metalearn").rglob("*.py"):
        if path.name == "csv_cells.py":
            continue  # the shared writer itself
        text = path.read_text()
        if ".to_csv(" in text and path.name != "storage.py":
            offenders.append(str(path.relative_to(REPO)))
    assert offenders == []


def test_neutralise_formulas_leaves_numeric_columns_alone():
    frame = pd.DataFrame({"a": [-1, 2], "b": ["-1", "x"]})
    out = neutralise_formulas(frame)
    assert out["a"].tolist() == [-1, 2] and out["b"].tolist() == ["'-1", "x"]
    assert neutralise_cell(-3.0) == -3.0


# ------------------------------------------------------------------ 3. permissions, special files, full disk
def test_atomic_writes_give_the_mode_of_a_plain_write(tmp_path):
    old = os.umask(0o022)
    try:
        new = atomic_write_text(tmp_path / "new.csv", "a\n")
        assert stat.S_IMODE(new.stat().st_mode) == 0o644
        os.umask(0o077)
        assert stat.S_IMODE(atomic_write_text(tmp_path / "private.csv", "a\n").stat().st_mode) == 0o600
        existing = tmp_path / "to_label.csv"
        existing.write_text("old\n")
        existing.chmod(0o640)
        atomic_write_text(existing, "new\n")
        assert stat.S_IMODE(existing.stat().st_mode) == 0o640 and existing.read_text() == "new\n"
    finally:
        os.umask(old)


def test_special_files_are_refused_never_replaced(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link.csv"
    link.symlink_to("/dev/null")
    for target in (fifo, link, Path("/dev/null"), tmp_path):
        with pytest.raises(OutputFileError, match="not a regular file"):
            atomic_write_text(target, "x")
    assert stat.S_ISFIFO(fifo.stat().st_mode) and link.is_symlink() and os.readlink(link) == "/dev/null"
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_cli_out_given_a_device_is_refused_with_exit_2(tmp_path, capsys):
    fifo = tmp_path / "runs.csv"
    os.mkfifo(fifo)
    with pytest.raises(OutputFileError):
        write_table(pd.DataFrame({"a": [1]}), fifo)
    assert stat.S_ISFIFO(fifo.stat().st_mode)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EFBIG])
def test_a_failed_write_leaves_the_target_and_says_so_in_one_line(tmp_path, monkeypatch, code):
    target = tmp_path / "report.html"
    target.write_text("old report")

    real_fdopen = os.fdopen

    class Full:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            self.handle.write(data[:3])
            raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fdopen", lambda *a, **k: Full(real_fdopen(*a, **k)))
    with pytest.raises(OutputFileError) as caught:
        atomic_write_text(target, "new report that does not fit")
    assert isinstance(caught.value, OSError) and caught.value.errno == code
    assert "\n" not in str(caught.value) and "report.html" in str(caught.value)
    monkeypatch.undo()
    assert target.read_text() == "old report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_the_report_is_written_atomically():
    # Every output of the report goes through one writer, staged in the report's AtomicGroup
    # (the behaviour itself: test_benchmark_stats.py::test_a_report_that_fails_part_way_...).
    source = (REPO / "metalearn" / "benchmark" / "report.py").read_text()
    assert ".write_text(" not in source and "palette.save(path" not in source
    assert '_write_output(written["md"]' in source and '_write_output(written["html"]' in source


def test_bytes_writer_keeps_mode_too(tmp_path):
    target = tmp_path / "p.safetensors"
    target.write_bytes(b"x")
    target.chmod(0o664)
    atomic_write_bytes(target, b"y")
    assert stat.S_IMODE(target.stat().st_mode) == 0o664


# ------------------------------------------------------------------ 4. stopping rules
def _tampered_rule(tmp_path: Path, **changes: object) -> Path:
    with safe_open(str(RELEASED_RULE), "np") as handle:
        meta = json.loads(handle.metadata()["metalearn"])
    for key, value in changes.items():
        if key == "quantiles":
            meta["architecture"]["quantiles"] = value
        else:
            meta[key] = value
    path = tmp_path / "rule.safetensors"
    save_file(load_file(str(RELEASED_RULE)), str(path), metadata={"metalearn": json.dumps(meta)})
    return path


@pytest.mark.parametrize("changes", [
    {"window": 10**9}, {"window": 2**63}, {"horizon": 10**12}, {"patience": 10**9},
    {"threshold": 10**400}, {"threshold": 1e300},
    {"quantiles": [0.1, 0.25, 0.5, 0.75, 0.912345678], "decision": "q0.912346"},
])
def test_a_stopping_rule_file_is_bounded_at_load(tmp_path, changes):
    with pytest.raises(StoppingRuleFileError):
        read_stopping_rule(_tampered_rule(tmp_path, **changes))


def test_the_released_stopping_rule_still_loads():
    assert read_stopping_rule("default").window == 5


@pytest.mark.parametrize("name", ["default", "max_confidence", "stabilizing_predictions", "fixed_budget"])
def test_an_unknown_keyword_is_the_same_error_for_every_rule(name):
    with pytest.raises(UnknownNameError, match="unknown parameter"):
        load_stopping_rule(name, bogus=1)


@pytest.mark.parametrize("params, error", [
    ({"threshold": 10**400}, InvalidInputError), ({"threshold": 1e9}, InvalidInputError),
    ({"random_state": -1}, InvalidInputError), ({"random_state": "x"}, InvalidTypeError),
    ({"patience": 2**63}, InvalidInputError),
])
def test_learned_rule_parameters_are_validated(params, error):
    with pytest.raises(error):
        load_stopping_rule("default", **params)


def test_classic_rule_parameters_are_validated_at_call_too():
    X, y = make_classification(n_samples=60, n_features=4, random_state=0)
    labels = np.full(60, np.nan)
    labels[:10] = y[:10]
    clf = LogisticRegression().fit(X[:10], y[:10])
    rule = load_stopping_rule("stabilizing_predictions")
    rule.window = 2**63
    with pytest.raises(InvalidInputError, match="window"):
        rule.should_stop(X, labels, clf)
    rule = load_stopping_rule("max_confidence")
    rule.threshold = 10**400
    with pytest.raises(InvalidInputError):
        rule.should_stop(X, labels, clf)
    rule = load_stopping_rule("max_confidence")
    rule.random_state = "x"
    with pytest.raises(InvalidTypeError):
        rule.should_stop(X, labels, clf)


# ------------------------------------------------------------------ 5. streaming
@pytest.mark.parametrize("param", ["window", "memory", "min_reference"])
def test_stream_sizes_are_bounded_at_the_first_decision(param):
    X, y = make_classification(n_samples=40, n_features=4, random_state=0)
    clf = LogisticRegression().fit(X, y)
    stream = StreamingPolicy("margin", **{param: 2**63})  # stored, as scikit-learn does
    with pytest.raises(InvalidInputError, match=param):
        stream.decide(X[0], clf)


@pytest.mark.parametrize("seed", [0, 1])  # seed 0 hit "two classes", seed 1 "Unknown label type" before
def test_qbc_streams_an_ordinary_two_class_stream(seed):
    X, y = make_classification(n_samples=100, n_features=5, random_state=seed)
    clf = LogisticRegression().fit(X[:20], y[:20])
    stream = StreamingPolicy("qbc", label_budget=30, expected_length=80, window=20, random_state=seed)
    scored = 0
    for record in X[20:]:
        stream.decide(record, clf)
        scored += int(np.isfinite(stream.quantile_))
    assert 0 < stream.n_spent_ <= 40
    assert scored > 0  # the committee did score records once the kept ones covered both classes


def test_qbc_fits_object_labels_of_a_pool_with_none_as_missing():
    X, y = make_classification(n_samples=80, n_features=4, random_state=1)
    labels = np.full(80, None, dtype=object)
    labels[:10] = y[:10]
    clf = LogisticRegression().fit(X[:10], y[:10])
    picks = make_strategy("qbc", missing_label=None, random_state=0).query(X, labels, clf, batch_size=3)
    assert len(set(picks.tolist())) == 3 and all(p >= 10 for p in picks)


# ------------------------------------------------------------------ 6. task suites
@pytest.mark.parametrize("source", [
    {"kind": "generator", "n_samples": 10**8}, {"kind": "generator", "n_samples": 10**23},
    {"kind": "generator", "n_samples": [100, MAX_SAMPLES + 1]}, {"kind": "sklearn", "weight": 1.7e308},
    {"kind": "sklearn", "weight": 10**400},
])
def test_suite_sizes_and_weights_are_bounded_at_load(source):
    with pytest.raises(TaskSuiteError):
        TaskSuite.from_dict({"sources": [source, dict(source)]})


def test_deeply_nested_suites_are_refused(tmp_path):
    nested: list = []
    for _ in range(5000):
        nested = [nested]
    with pytest.raises(TaskSuiteError, match="nested"):
        TaskSuite.from_dict({"sources": [{"kind": "generator", "generator": "moons", "params": {"noise": nested}}]})
    path = tmp_path / "deep.toml"
    path.write_text("a = " + "[" * 5000 + "]" * 5000)
    with pytest.raises(TaskSuiteError, match="nested"):
        TaskSuite.from_toml(path)
    big = tmp_path / "big.toml"
    big.write_text("# " + "x" * 2_000_000)
    with pytest.raises(TaskSuiteError, match="larger"):
        TaskSuite.from_toml(big)


def test_a_huge_suite_dataset_count_is_refused_before_any_work():
    start = time.perf_counter()
    with pytest.raises(InvalidInputError, match="at most"):
        resolve_datasets(["suite:smoke:100000000"])
    assert time.perf_counter() - start < 5


def test_the_shipped_suites_still_load():
    from metalearn.tasks.suite import list_task_suites, load_task_suite

    for name in list_task_suites():
        assert load_task_suite(name).sources


# ------------------------------------------------------------------ 7. still open from last round
@pytest.mark.parametrize("scale", [1e200, 1.7e308])
def test_probcover_on_huge_feature_values(scale):
    X, y = make_classification(n_samples=120, n_features=4, random_state=0)
    labels = np.full(120, np.nan)
    labels[:6] = y[:6]
    clf = LogisticRegression().fit(X[:6], y[:6])
    X = X / np.abs(X).max() * scale
    picks = make_strategy("probcover", random_state=0).query(X, labels, clf, batch_size=4)
    assert len(set(picks.tolist())) == 4 and all(p >= 6 for p in picks)


def test_probcover_leaves_ordinary_pools_exactly_as_before():
    from metalearn.strategies.probcover import _geometry_scale

    X = np.random.default_rng(0).normal(size=(50, 3)) * 1e6
    assert _geometry_scale(X) == 1.0


def test_qbc_committee_size_is_bounded():
    X, y = make_classification(n_samples=40, n_features=4, random_state=0)
    labels = np.full(40, np.nan)
    labels[:10] = y[:10]
    clf = LogisticRegression().fit(X[:10], y[:10])
    start = time.perf_counter()
    with pytest.raises(InvalidInputError, match="n_members"):
        make_strategy("qbc", n_members=10**6).query(X, labels, clf, batch_size=1)
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("address", ["bogus", "local:0", "local:abc", "local:-1", "local:99999", "ftp://h:1", "h:70000"])
def test_bad_dask_addresses_are_refused_by_the_parser(address, capsys):
    with pytest.raises(InvalidInputError):
        parse_dask_address(address)
    with pytest.raises(SystemExit) as caught:
        main(["benchmark", "--datasets", "sklearn:iris", "--out", "unused", "--dask", address])
    assert caught.value.code == 2 and "--dask" in capsys.readouterr().err


@pytest.mark.parametrize("address", ["local", "local:2", "tcp://10.0.0.1:8786", "scheduler:8786", "tls://[::1]:8786"])
def test_good_dask_addresses_are_accepted(address):
    assert parse_dask_address(address).text == address


def test_the_skactiveml_adapter_gives_our_errors_for_bad_input():
    pytest.importorskip("skactiveml")
    from skactiveml.classifier import SklearnClassifier

    from metalearn.integrations.skactiveml import PolicyQueryStrategy

    X, y_true = make_classification(n_samples=60, n_features=4, random_state=0)
    y = np.full(60, np.nan)
    y[:4] = y_true[:4]
    clf = SklearnClassifier(LogisticRegression(), classes=[0, 1])
    bad_calls = [
        dict(X=X[:, 0]), dict(y=y[:10]), dict(clf=LogisticRegression()), dict(batch_size=-1), dict(batch_size="a"),
        dict(fit_clf="yes"), dict(candidates=[0, 5]), dict(candidates=np.ones((3, 7))), dict(candidates=[1000]),
        dict(sample_weight=[1, 2]), dict(return_utilities="x"), dict(X=[["a"] * 4] * 60),
    ]
    for changes in bad_calls:
        args = {"X": X, "y": y, "clf": clf, **changes}
        with pytest.raises(MetalearnError):
            PolicyQueryStrategy(random_state=0).query(**args)
    for params in (dict(random_state="x"), dict(missing_label=[1]), dict(n_candidates=-3), dict(label_budget="x")):
        with pytest.raises(MetalearnError):
            PolicyQueryStrategy(**params).query(X, y, clf)


# ------------------------------------------------------------------ 8. a second Ctrl-C
def test_interrupts_are_held_back_while_workers_stop_then_restored():
    before = signal.getsignal(signal.SIGINT)
    with _interrupts_deferred():
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGINT)  # ignored: no KeyboardInterrupt here
    assert signal.getsignal(signal.SIGINT) is before


def test_ignore_further_interrupts_survives_interpreter_shutdown():
    # Python resets Python-level handlers to the default at shutdown, but not SIG_IGN: a
    # child that ignores SIGINT and is signalled during its exit still exits with its status.
    code = (
        "import os, signal, sys, atexit\n"
        "from metalearn.benchmark.runner import ignore_further_interrupts\n"
        "ignore_further_interrupts()\n"
        "atexit.register(lambda: os.kill(os.getpid(), signal.SIGINT))\n"
        "sys.exit(130)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=60)
    assert result.returncode == 130


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_second_ctrl_c_during_benchmark_exits_130(tmp_path):
    argv = [sys.executable, "-m", "metalearn.cli", "benchmark", "--datasets", "sklearn:digits", "--strategies",
            "margin,random", "--models", "logreg", "--regimes", "cold", "--batch-sizes", "1", "--seeds", "20",
            "--budget", "40", "--out", str(tmp_path / "out"), "--jobs", "2", "--no-report", "--quiet"]
    # A test run started in the background (nohup, `cmd &`) inherits SIGINT ignored, and Python
    # keeps an ignored SIGINT ignored: give the child the default disposition, as a terminal does.
    process = subprocess.Popen(argv, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 60
    while time.time() < deadline and not list((tmp_path / "out" / "runs").glob("*.json")):
        time.sleep(0.1)  # wait until runs are under way
    os.killpg(process.pid, signal.SIGINT)
    time.sleep(0.05)
    try:
        os.killpg(process.pid, signal.SIGINT)  # the second Ctrl-C, while it stops
    except ProcessLookupError:
        pass
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err.decode()[-500:]


def test_control_characters_in_names_are_escaped_in_the_markdown_and_html_reports():
    from metalearn.benchmark.report import _Block, _render_html, _render_markdown, format_table

    name = "evil\x1b[2J\x07name|x"
    table = format_table(pd.DataFrame({"dataset": [name], "aulc": [0.5]}))
    assert "\x1b" not in table and "\x07" not in table and "\\\\x1b" in table and "\\|" in table
    blocks = [_Block("h2", f"Dataset {name}"), _Block("p", f"about {name}\nnext line"), _Block("ul", [name]),
              _Block("table", pd.DataFrame({name: [name]}))]
    markdown = _render_markdown(blocks, Path("."))
    page = _render_html(blocks, "report")
    for text in (markdown, page):
        assert "\x1b" not in text and "\x07" not in text
    assert "\nnext line" in markdown  # the report's own line breaks stay
    # ordinary names are written exactly as before
    assert format_table(pd.DataFrame({"dataset": ["pima"]})).splitlines()[-1] == "| pima |"
