"""The learned schedule's trainer (issue 21, part 2): ``metalearn train --method schedule``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

pytest.importorskip("cma")

from metalearn.cli import main  # noqa: E402
from metalearn.exceptions import InvalidInputError, InvalidTypeError, MetalearnError  # noqa: E402
from metalearn.policies.trainers import base  # noqa: E402
from metalearn.policies.trainers.cma_search import task_seeds  # noqa: E402
from metalearn.policies.trainers.progress import ProgressLog  # noqa: E402
from metalearn.policies.trainers.schedule import (  # noqa: E402
    SCHEDULE_NAME,
    SEARCHED_PARAMETERS,
    ScheduleTrainConfig,
    _objective,
    _run_candidates,
    params_from_vector,
    schedule_architecture,
    train_schedule,
)
from metalearn.schedules import LearnedSchedule, load_schedule, read_schedule  # noqa: E402
from metalearn.schedules.model import size_parameter_shapes  # noqa: E402
from metalearn.tasks.suite import load_task_suite  # noqa: E402


def _config(out: Path, **overrides) -> ScheduleTrainConfig:
    settings = dict(suite="smoke", selection_suite="smoke", out_dir=str(out), iterations=2, problems_per_generation=2,
                    population=4, selection_tasks=2, selection_every=1)
    settings.update(overrides)
    return ScheduleTrainConfig(**settings)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    return train_schedule(_config(tmp_path_factory.mktemp("schedule") / "straight"), progress=False)


def _weights(path: Path) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in read_schedule(path).params.items()}


def test_a_tiny_run_writes_schedules_that_load_and_answer_within_the_budget(straight):
    assert straight.method == "schedule" and straight.iterations == 2
    assert straight.policy_path == straight.out_dir / SCHEDULE_NAME and straight.last_path.name == "last.safetensors"
    X, y = make_classification(n_samples=80, n_features=5, random_state=0)
    observed = np.full(len(y), np.nan)
    observed[:8] = y[:8]
    clf = LogisticRegression().fit(X[:8], y[:8])
    for path in (straight.policy_path, straight.last_path):
        schedule = load_schedule(path)
        assert isinstance(schedule, LearnedSchedule)
        for budget_left in (1, 3, 7, 100):
            assert 1 <= schedule.next_batch_size(X, observed, clf, budget_left=budget_left) <= budget_left
    card = read_schedule(straight.policy_path).metadata
    assert card["trainer"]["method"] == "schedule" and card["strategy"] == "policy:default"
    assert card["baseline_schedule"] == "geometric:2:2" and card["price_per_fit"] == 0.05
    assert "price_per_fit" in card["objective"] and card["sizes"] == [1, 2, 5, 10, 20, 50]
    held_in = card["validation"]
    assert held_in["held_in_problems"] == 2 and held_in["baseline_fits"] >= 1 and held_in["held_in_fits"] >= 1
    assert read_schedule(straight.last_path).metadata["validation"] is None


def test_progress_log_has_the_objective_its_error_and_the_fits(straight):
    assert [row["iteration"] for row in straight.history] == [0, 1]
    for row in straight.history:
        assert row["objective_best"] >= row["objective_mean"] and row["objective_best_se"] >= 0
        assert row["fits_mean"] >= 1 and row["baseline_fits"] >= 1 and row["selection_delta"] is not None
    state = json.loads((straight.out_dir / "checkpoint" / "checkpoint.json").read_text())["state"]
    assert len(state["generations"]) == 2 and len(state["generations"][0]["fitness"]) == 4
    assert len(state["selection_baseline"]) == 2  # (AULC points, fits) of the baseline per held-in task
    for path in (straight.out_dir / "checkpoint").iterdir():
        assert b"\x80\x04\x95" not in path.read_bytes()[:64]  # no pickle


def test_resume_after_a_crash_equals_the_uninterrupted_run(straight, tmp_path, monkeypatch):
    calls = {"n": 0}
    real_save = base.save_checkpoint

    def crashing_save(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # the held-in baseline, generation 0, then generation 1: killed mid-way
            raise KeyboardInterrupt
        real_save(*args, **kwargs)

    monkeypatch.setattr(base, "save_checkpoint", crashing_save)
    with pytest.raises(KeyboardInterrupt):
        train_schedule(_config(tmp_path / "crash"), progress=False)
    monkeypatch.setattr(base, "save_checkpoint", real_save)
    assert len(ProgressLog(tmp_path / "crash" / "progress.csv", ["iteration"]).rows()) == 2
    with pytest.raises(InvalidInputError, match="resume"):
        train_schedule(_config(tmp_path / "crash"), progress=False)
    with pytest.raises(InvalidInputError, match="price_per_fit"):
        train_schedule(_config(tmp_path / "crash", price_per_fit=0.1), resume=True, progress=False)
    resumed = train_schedule(_config(tmp_path / "crash"), resume=True, progress=False)
    assert [r["objective_mean"] for r in resumed.history] == [r["objective_mean"] for r in straight.history]
    for name in ("policy_path", "last_path"):
        a, b = _weights(getattr(resumed, name)), _weights(getattr(straight, name))
        assert set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)


def test_candidates_share_the_baselines_tasks_and_seeds():
    config = _config(Path("unused"))
    arch = schedule_architecture(config)
    tasks = load_task_suite("smoke").tasks(2, seed=5)
    seeds = task_seeds(tasks, 5)
    searched = sum(int(np.prod(shape)) for name, shape in size_parameter_shapes(arch).items() if name in SEARCHED_PARAMETERS)
    assert searched == 146  # 23 features, hidden 4, 6 sizes: small enough for CMA-ES
    zero = params_from_vector(np.zeros(searched), arch)
    baseline, scores = _run_candidates(tasks, seeds, [zero, zero], None, config, arch, None)
    assert baseline.shape == (2, 2) and scores.shape == (2, 2, 2)
    np.testing.assert_array_equal(scores[0], scores[1])  # the same task and seed: the same run
    # zero weights score every size the same and choose the first, 1: one fit per label bought, plus the first
    np.testing.assert_array_equal(scores[0][:, 1], [t.label_budget + 1 for t in tasks])
    objective, se = _objective(scores, baseline, 0.0)
    expected = (scores[0][:, 0] - baseline[:, 0]).mean()
    assert objective[0] == pytest.approx(expected) and se[0] >= 0
    charged, _ = _objective(scores, baseline, 1.0)  # a point per fit: batch 1 pays for its extra fits
    assert charged[0] == pytest.approx(expected - (scores[0][:, 1] - baseline[:, 1]).mean())


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        ({"price_per_fit": -0.1}, InvalidInputError, "price_per_fit"),
        ({"price_per_fit": float("nan")}, InvalidInputError, "price_per_fit"),
        ({"price_per_fit": "0.05"}, InvalidTypeError, "price_per_fit"),
        ({"baseline_schedule": "policy:default"}, InvalidInputError, "baseline_schedule"),
        ({"baseline_schedule": "geometric:0.5"}, InvalidInputError, "ratio"),
        ({"strategy": "no_such_strategy_or_policy"}, MetalearnError, "no_such"),
        ({"sizes": (5, 2)}, InvalidInputError, "sizes"),
        ({"sizes": ()}, InvalidInputError, "sizes"),
        ({"hidden": 0}, InvalidInputError, "hidden"),
        ({"window": 1}, InvalidInputError, "window"),
        ({"sigma0": 0.0}, InvalidInputError, "sigma0"),
        ({"population": 1}, InvalidInputError, "population"),
        ({"problems_per_generation": 0}, InvalidInputError, "problems_per_generation"),
        ({"iterations": None}, InvalidInputError, "time_budget"),
    ],
)
def test_config_validates_its_settings_with_our_errors(tmp_path, overrides, error, match):
    with pytest.raises(error, match=match):
        _config(tmp_path / "bad", **overrides).validate()
    assert not (tmp_path / "bad").exists()


def test_cli_train_schedule(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main([
        "train", "--method", "schedule", "--suite", "smoke", "--selection-suite", "smoke", "--selection-tasks", "2",
        "--iterations", "1", "--problems", "2", "--population", "2", "--price-per-fit", "0.2",
        "--baseline-schedule", "fixed:2", "--quiet", "--out", str(out),
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert str(out / SCHEDULE_NAME) in printed and "vs the baseline schedule" in printed
    card = read_schedule(out / SCHEDULE_NAME).metadata
    assert card["price_per_fit"] == 0.2 and card["baseline_schedule"] == "fixed:2"
    assert card["trainer"]["settings"]["population"] == 2 and card["trainer"]["settings"]["problems_per_generation"] == 2
    assert main(["train", "--method", "schedule", "--price-per-fit", "inf", "--out", str(tmp_path / "inf")]) == 2
    assert "--price-per-fit must be a finite number" in capsys.readouterr().err
    assert main(["train", "--method", "schedule", "--baseline-schedule", "fixed:0", "--out", str(tmp_path / "zero")]) == 2
    assert "batch_size" in capsys.readouterr().err and not (tmp_path / "zero").exists()
