"""Batch schedules (issue 21, part 2): the rules, the spec parser, the learned schedule's file, and
where users meet them (simulate, the benchmark, next-batch)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.datasets import load_iris, make_classification
from sklearn.linear_model import LogisticRegression

import metalearn
from metalearn.benchmark import BenchmarkConfig, run_benchmark
from metalearn.benchmark.config import RunKey
from metalearn.benchmark.storage import ResultStore
from metalearn.cli import main
from metalearn.exceptions import InvalidInputError, InvalidTypeError, MetalearnError, ScheduleFileError, UnknownNameError
from metalearn.schedules import (
    SCHEDULE_RULES, FixedSchedule, GeometricSchedule, LearnedSchedule, SizeModelArchitecture, load_schedule,
    parse_schedule_spec, read_schedule, save_schedule, size_parameter_shapes,
)
from metalearn.schedules.features import SCHEDULE_FEATURES
from metalearn.simulation import simulate
from metalearn.strategies import MarginSampling
from metalearn.tasks.task import make_task
from metalearn.workflow import StateFileError, next_batch, read_state

#: One spec per registered rule (a new rule must add one: checked below).
RULE_SPECS = {"fixed": "fixed:3", "geometric": "geometric:2:2"}


def _pool(n: int = 60, n_labeled: int = 6, seed: int = 0):
    X, y = make_classification(n_samples=n, n_features=4, n_informative=3, n_redundant=0, random_state=seed)
    observed = np.full(n, np.nan)
    observed[:n_labeled] = y[:n_labeled]
    clf = LogisticRegression().fit(X[:n_labeled], y[:n_labeled])
    return X, observed, clf


def test_every_registered_rule_has_a_spec_here():
    assert set(RULE_SPECS) == set(SCHEDULE_RULES)


@pytest.mark.parametrize("spec", RULE_SPECS.values())
def test_rule_sizes_lie_in_one_to_budget_left_and_repeat(spec):
    X, y, clf = _pool()
    answers = []
    for _ in range(2):
        schedule = load_schedule(spec)
        answers.append([schedule.next_batch_size(X, y, clf, budget_left=b) for b in (50, 9, 3, 1, 2)])
    assert answers[0] == answers[1]
    assert all(1 <= n <= b for n, b in zip(answers[0], (50, 9, 3, 1, 2)))
    schedule = load_schedule(spec)
    assert schedule.next_batch_size(X, y, clf, budget_left=10**6) <= int(np.isnan(y).sum())  # capped by the pool too


@pytest.mark.parametrize("spec", RULE_SPECS.values())
def test_rule_errors_are_ours(spec):
    X, y, clf = _pool()
    schedule = load_schedule(spec)
    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises(MetalearnError):
            schedule.next_batch_size(X, y, clf, budget_left=bad)
    with pytest.raises(MetalearnError):
        schedule.next_batch_size(X[:, :2].tolist() + [["a", "b"]], y, clf, budget_left=5)
    with pytest.raises(MetalearnError):
        schedule.next_batch_size(X, y[:10], clf, budget_left=5)
    with pytest.raises(InvalidInputError, match="nothing left"):
        schedule.next_batch_size(X, np.zeros(len(X)), clf, budget_left=5)
    with pytest.raises(MetalearnError):
        schedule.next_batch_size(X, y, object(), budget_left=5)
    schedule.next_batch_size(X, y, clf, budget_left=5)
    with pytest.raises(InvalidInputError, match="features"):
        schedule.next_batch_size(X[:, :3], y, clf, budget_left=5)


@pytest.mark.parametrize("spec", RULE_SPECS.values())
def test_get_params_set_params_and_clone(spec):
    schedule = load_schedule(spec)
    copy = clone(schedule)
    assert type(copy) is type(schedule) and copy.get_params() == schedule.get_params()
    assert copy.describe() == spec
    with pytest.raises(InvalidInputError, match="valid parameters"):
        schedule.set_params(nonsense=1)
    X, y, clf = _pool()
    schedule.next_batch_size(X, y, clf, budget_left=5)
    assert schedule.reset() is schedule and not hasattr(schedule, "n_calls_")


def test_bad_parameters_fail_at_call_time_with_our_errors():
    assert FixedSchedule(batch_size=0).batch_size == 0  # __init__ only stores
    X, y, clf = _pool()
    with pytest.raises(InvalidInputError):
        FixedSchedule(batch_size=0).next_batch_size(X, y, clf, budget_left=5)
    with pytest.raises(InvalidTypeError):
        GeometricSchedule(ratio="2").next_batch_size(X, y, clf, budget_left=5)
    with pytest.raises(InvalidInputError):
        GeometricSchedule(ratio=0.5).next_batch_size(X, y, clf, budget_left=5)


def test_geometric_doubles_every_two_loops_and_is_capped_by_the_budget():
    X, y, clf = _pool(n=500)
    schedule = load_schedule("geometric:2:2")
    assert [schedule.next_batch_size(X, y, clf, budget_left=100) for _ in range(8)] == [1, 1, 2, 2, 4, 4, 8, 8]
    assert schedule.next_batch_size(X, y, clf, budget_left=5) == 5
    assert [load_schedule("geometric:2").next_batch_size(X, y, clf, budget_left=100)] == [1]
    started = load_schedule("geometric:3:1:start=2")
    assert [started.next_batch_size(X, y, clf, budget_left=100) for _ in range(3)] == [2, 6, 18]
    assert GeometricSchedule(ratio=2.0, every=1).size_at(10**6) == metalearn.schedules.MAX_BATCH_SIZE  # no overflow
    assert load_schedule("fixed:7").next_batch_size(X, y, clf, budget_left=100) == 7


def test_spec_parsing():
    assert parse_schedule_spec("fixed:10") == (FixedSchedule, {"batch_size": 10})
    assert parse_schedule_spec("geometric:2") == (GeometricSchedule, {"ratio": 2})
    assert parse_schedule_spec("geometric:1.5:3") == (GeometricSchedule, {"ratio": 1.5, "every": 3})
    assert parse_schedule_spec("geometric:2:2:start=4") == (GeometricSchedule, {"ratio": 2, "every": 2, "start": 4})
    assert parse_schedule_spec("geometric:start=4") == (GeometricSchedule, {"start": 4})
    with pytest.raises(UnknownNameError, match="fixed"):
        parse_schedule_spec("doubling:2")
    with pytest.raises(UnknownNameError, match="parameters"):
        parse_schedule_spec("geometric:2:colour=1")
    for bad in ("fixed:ten", "fixed:1:2", "geometric:start=2:3", "geometric:2:every=3:every=4", "fixed:" + "1" * 300):
        with pytest.raises(InvalidInputError):
            parse_schedule_spec(bad)
    with pytest.raises(InvalidTypeError):
        load_schedule("fixed:2.5")


def test_default_has_no_released_schedule_and_says_which_rules_to_use():
    with pytest.raises(UnknownNameError, match="no released schedule exists yet") as info:
        metalearn.load_schedule("default")
    assert "fixed:N" in str(info.value) and "geometric" in str(info.value)


# ----------------------------------------------------------------- the learned schedule's file

SIZES = [1, 2, 5, 10, 20, 50]


def _learned_params(arch: SizeModelArchitecture, favour: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    params = {name: (rng.normal(size=shape) * 0.1).astype(np.float32) for name, shape in size_parameter_shapes(arch).items()}
    params["x_std"] = np.ones(arch.n_features, dtype=np.float32)
    params["out.bias"] = np.zeros(arch.n_sizes, dtype=np.float32)
    params["out.bias"][favour] = 10.0  # a hand-made chooser: always the size at `favour`
    return params


@pytest.fixture
def learned_file(tmp_path):
    arch = SizeModelArchitecture(n_features=len(SCHEDULE_FEATURES), hidden=8, n_sizes=len(SIZES))
    path = save_schedule(tmp_path / "sched.safetensors", arch, _learned_params(arch, SIZES.index(5)),
                         {"window": 4, "sizes": SIZES, "notes": "hand-made"})
    return path


def test_learned_file_round_trip_and_inference(learned_file):
    read = read_schedule(learned_file)
    assert read.sizes == tuple(SIZES) and read.window == 4 and read.metadata["notes"] == "hand-made"
    schedule = load_schedule(learned_file)
    assert isinstance(schedule, LearnedSchedule)
    X, y, clf = _pool(n=80)
    assert [schedule.next_batch_size(X, y, clf, budget_left=100) for _ in range(3)] == [5, 5, 5]
    assert schedule.next_batch_size(X, y, clf, budget_left=3) == 3
    assert "capped from 5" in schedule.explain(3)
    arrays, meta = schedule.get_state()
    again = load_schedule(learned_file).load_history(X, arrays, meta)
    assert again.n_calls_ == 4 and again.next_batch_size(X, y, clf, budget_left=100) == 5
    with pytest.raises(MetalearnError):
        load_schedule(learned_file).next_batch_size(X, y, None, budget_left=5)  # it needs the model


def test_inspect_shows_a_schedule_files_model_card(learned_file, capsys):
    import json

    assert main(["inspect", str(learned_file)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("schedule:") and "chooses the next batch size among [1, 2, 5, 10, 20, 50]" in out
    assert "notes: hand-made" in out
    assert main(["inspect", str(learned_file), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["format"] == "metalearn-schedule"


def _tamper(path, edit):
    """Rewrite the file with its metadata and weights edited, bypassing save_schedule's checks."""
    from metalearn.common import container
    from metalearn.schedules.file import SCHEDULE_KIND

    data = path.read_bytes()
    meta = container.read_metadata(data, SCHEDULE_KIND, path)
    arrays = container.load_tensors(data, SCHEDULE_KIND, path)
    edit(meta, arrays)
    path.write_bytes(container.encode(arrays, meta, SCHEDULE_KIND, path))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m, a: m.update(window=10**9), "window"),
        (lambda m, a: m.update(window=True), "window"),
        (lambda m, a: m.update(sizes=[1, 2, 5, 10, 20, 0]), "sizes"),
        (lambda m, a: m.update(sizes=[1, 2, 5, 10, 50, 20]), "sizes"),
        (lambda m, a: m.update(sizes=[1, 2, 5, 10, 20, 10**9]), "sizes"),
        (lambda m, a: m.update(sizes=[1, 2, 5]), "sizes"),
        (lambda m, a: m.pop("sizes"), "sizes"),
        (lambda m, a: m["architecture"].update(hidden=10**6), "hidden"),
        (lambda m, a: m["architecture"].update(name="size-xyz"), "architecture"),
        (lambda m, a: m["feature_set"].update(version=99), "feature set"),
        (lambda m, a: m.update(format_version=99), "newer metalearn"),
        (lambda m, a: m.update(format="metalearn-policy"), "querying policy"),
        (lambda m, a: a.update({"l1.bias": np.full_like(a["l1.bias"], np.inf)}), "NaN or infinite"),
        (lambda m, a: a.update({"x_std": np.zeros_like(a["x_std"])}), "x_std"),
        (lambda m, a: a.pop("out.bias"), "lack"),
    ],
)
def test_a_tampered_file_gives_our_error(learned_file, edit, message):
    _tamper(learned_file, edit)
    with pytest.raises(ScheduleFileError, match=message):
        load_schedule(learned_file)


def test_a_truncated_file_gives_our_error(learned_file):
    learned_file.write_bytes(learned_file.read_bytes()[:-10])
    with pytest.raises(ScheduleFileError):
        load_schedule(learned_file)


def test_save_refuses_bad_weights_and_metadata(tmp_path):
    arch = SizeModelArchitecture(n_features=len(SCHEDULE_FEATURES), hidden=4, n_sizes=3)
    params = _learned_params(arch, 0)
    with pytest.raises(ScheduleFileError, match="sizes"):
        save_schedule(tmp_path / "a.safetensors", arch, params, {"window": 3, "sizes": [1, 2]})
    params["l1.bias"][0] = np.nan
    with pytest.raises(ScheduleFileError, match="NaN"):
        save_schedule(tmp_path / "b.safetensors", arch, params, {"window": 3, "sizes": [1, 2, 3]})
    assert not list(tmp_path.iterdir())


def test_a_policy_file_is_named_as_such(tmp_path):
    from metalearn.stopping import save_stopping_rule
    from metalearn.stopping.features import STOPPING_FEATURES
    from metalearn.stopping.model import GainModelArchitecture, parameter_shapes

    arch = GainModelArchitecture(len(STOPPING_FEATURES), 4, (0.1, 0.9))
    params = {k: np.ones(v, dtype=np.float32) for k, v in parameter_shapes(arch).items()}
    path = save_stopping_rule(tmp_path / "rule.safetensors", arch, params, {"window": 3, "horizon": 10, "threshold": 0.1})
    with pytest.raises(ScheduleFileError, match="it is a stopping rule"):
        load_schedule(path)


# ----------------------------------------------------------------- simulate and the benchmark


def test_simulate_with_a_schedule_fits_once_per_loop_and_spends_the_budget():
    X, y = load_iris(return_X_y=True)
    task = make_task(X, y, name="iris", label_budget=13, batch_size=50, seed=0)
    result = simulate(task, MarginSampling(random_state=0), schedule=load_schedule("geometric:2:2"))
    steps = np.diff(result.n_bought)
    assert steps.tolist() == [1, 1, 2, 2, 4, 3]  # the last batch capped by the budget left
    assert result.n_fits == len(result.picks) + 1 == result.n_bought.size
    assert result.n_bought[-1] - result.n_bought[0] == 13
    assert result.info["schedule"] == "geometric:2:2"
    plain = simulate(task, MarginSampling(random_state=0))
    assert "schedule" not in plain.info and np.diff(plain.n_bought).tolist() == [13]


def test_run_ids_without_a_schedule_are_unchanged():
    key = RunKey("iris", "logreg", "cold", 1, 0, "margin")
    assert key.run_id == "iris__logreg__cold__1__0__margin__" + __import__("hashlib").sha1(
        b"iris|logreg|cold|1|0|margin").hexdigest()[:8]
    scheduled = RunKey("iris", "logreg", "cold", 1, 0, "margin", "geometric:2:2")
    assert scheduled.run_id != key.run_id and scheduled.label == "margin@geometric:2:2" and key.label == "margin"
    assert "schedules" not in BenchmarkConfig().to_dict()


def test_a_tiny_benchmark_with_schedules(tmp_path):
    from metalearn.benchmark.stats import compute_summary

    config = BenchmarkConfig(
        strategies=["margin"], datasets=["sklearn:iris"], models=["logreg"], regimes=["cold"], batch_sizes=[1, 5],
        label_budget=10, n_seeds=1, seed=3, schedules=["geometric:2:2", "fixed:3"],
    )
    result = run_benchmark(config, tmp_path, progress=False)
    runs = result.runs.set_index("strategy")
    assert (result.runs["status"] == "ok").all()
    assert sorted(runs.index) == ["margin", "margin", "margin@fixed:3", "margin@geometric:2:2"]
    assert runs.loc["margin@fixed:3", "n_fits"] == 5 and runs.loc["margin@geometric:2:2", "n_fits"] == 6  # 3,3,3,1 / 1,1,2,2,4
    assert runs.loc["margin@fixed:3", "batch_size"] == 1  # paired with batch 1
    table = ResultStore(tmp_path).read_table()
    assert sorted(table["schedule"].fillna("").tolist()) == ["", "", "fixed:3", "geometric:2:2"]
    summary = compute_summary(result.runs)
    assert {"margin@fixed:3", "margin@geometric:2:2"} <= set(summary["strategy"])
    again = run_benchmark(config, tmp_path, progress=False)  # resumed: nothing recomputed, same ids
    assert sorted(again.runs["run_id"]) == sorted(result.runs["run_id"])
    with pytest.raises(MetalearnError):
        BenchmarkConfig(strategies=["margin"], schedules=["doubling"]).validate()


def test_benchmark_cli_takes_schedules(tmp_path, capsys):
    code = main([
        "benchmark", "--strategies", "margin", "--datasets", "sklearn:iris", "--models", "logreg", "--regimes", "cold",
        "--batch-sizes", "2", "--budget", "6", "--seeds", "1", "--schedules", "geometric:2", "--out", str(tmp_path),
        "--no-report", "--quiet", "--jobs", "1",
    ])
    assert code == 0
    assert set(ResultStore(tmp_path).read_table()["strategy"]) == {"margin", "margin@geometric:2"}


# ----------------------------------------------------------------- next-batch --schedule


@pytest.fixture
def records(tmp_path):
    X, y = make_classification(n_samples=120, n_features=4, n_informative=3, n_redundant=0, random_state=1)
    data = pd.DataFrame(X, columns=[f"f{i}" for i in range(4)])
    data.insert(0, "id", [f"r{i:03d}" for i in range(120)])
    path = tmp_path / "records.csv"
    data.to_csv(path, index=False)
    truth = dict(zip(data["id"], np.array(["a", "b"])[y]))
    return path, truth


def _label(path, truth, ids):
    pd.DataFrame({"id": list(ids), "label": [truth[i] for i in ids]}).to_csv(path, index=False)


def test_next_batch_schedule_sets_the_batch_and_keeps_its_loop_count(records, tmp_path, capsys):
    data, truth = records
    labels = tmp_path / "labels.csv"
    labeled = [i for i, v in truth.items() if v == "a"][:2] + [i for i, v in truth.items() if v == "b"][:2]
    sizes = []
    for loop in range(5):
        _label(labels, truth, labeled)
        out = tmp_path / f"next{loop}.csv"
        code = main(["next-batch", "--data", str(data), "--labels", str(labels), "--out", str(out), "--policy", "margin",
                     "--model", "logreg", "--stop-rule", "none", "--schedule", "geometric:2:2", "--budget", "50"])
        assert code == 0
        picked = pd.read_csv(out)["id"].tolist()
        sizes.append(len(picked))
        labeled += picked
        assert f"schedule geometric:2:2: buy {len(picked)} record(s) before the next retrain (loop {loop + 1})" in capsys.readouterr().out
    assert sizes == [1, 1, 2, 2, 4]
    meta, _ = read_state(tmp_path / "labels.csv.metalearn-state")
    assert meta["schedule"]["n_calls"] == 5 and meta["schedule"]["spec"] == "geometric:2:2"
    # --batch-size given explicitly wins; the schedule still advises
    _label(labels, truth, labeled)
    result = next_batch(data, labels, model="logreg", policy="margin", stop_rule=None, schedule="geometric:2:2",
                        batch_size=3, out=tmp_path / "x.csv")
    assert len(result.table) == 3 and "buy 4 record(s)" in result.schedule and "(loop 6)" in result.schedule


def test_next_batch_schedule_state_is_validated_at_read(records, tmp_path):
    from metalearn.common import container
    from metalearn.workflow import STATE_KIND

    data, truth = records
    labels = tmp_path / "labels.csv"
    _label(labels, truth, [i for i, v in truth.items() if v == "a"][:2] + [i for i, v in truth.items() if v == "b"][:2])
    next_batch(data, labels, model="logreg", policy="margin", stop_rule=None, schedule="fixed:4", out=tmp_path / "o.csv")
    state = tmp_path / "labels.csv.metalearn-state"
    meta, arrays = read_state(state)
    meta["schedule"]["n_calls"] = 7  # more calls than loops
    container.write_atomic(state, container.encode(arrays, meta, STATE_KIND, state), STATE_KIND)
    with pytest.raises(StateFileError, match="schedule.n_calls"):
        read_state(state)
