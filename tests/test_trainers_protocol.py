"""The run protocol every trainer shares (trainers/base.py): fresh or resumed start, the result
type, the progress log, resume after a crash, a finished run resumed, old checkpoints."""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("cma")

from metalearn.exceptions import InvalidInputError  # noqa: E402
from metalearn.policies.file import read_policy  # noqa: E402
from metalearn.policies.trainers import base  # noqa: E402
from metalearn.policies.trainers.base import COMMON_PROGRESS_FIELDS, RunConfig, TrainerConfig  # noqa: E402
from metalearn.policies.trainers.checkpoints import CHECKPOINT_DIR, save_checkpoint  # noqa: E402
from metalearn.policies.trainers.results import TrainingResult  # noqa: E402
from metalearn.schedules.file import read_schedule  # noqa: E402
from metalearn.stopping.file import read_stopping_rule  # noqa: E402

_SUITE_TOML = (
    'name = "tiny"\n[settings]\nmodels = ["logreg"]\nregimes = ["cold"]\nlabel_budgets = [40]\nbatch_sizes = [10]\n'
    'max_pool = 150\n[[sources]]\nkind = "generator"\ngenerator = "classification"\nn_samples = [150, 200]\n'
    '[[sources]]\nkind = "sklearn"\nnames = ["iris", "wine", "breast_cancer"]\n'
)


def _imitation(out: Path, tmp: Path) -> tuple[Any, Callable[..., TrainingResult]]:
    from metalearn.policies.trainers.imitation import ImitationConfig, train_imitation

    config = ImitationConfig(suite="smoke", seed=3, out_dir=str(out), n_candidates=8, window=3, hidden=16, iterations=2,
                             episodes_per_iteration=2, epochs=2, batch_size=8, selection_tasks=1)
    return config, train_imitation


def _lal(out: Path, tmp: Path) -> tuple[Any, Callable[..., TrainingResult]]:
    from metalearn.policies.trainers.lal import LALConfig, train_lal

    config = LALConfig(suite="smoke", seed=4, out_dir=str(out), n_candidates=8, window=3, hidden=16, iterations=2,
                       episodes_per_iteration=2, epochs=2, batch_size=8, selection_tasks=1)
    return config, train_lal


def _es(out: Path, tmp: Path) -> tuple[Any, Callable[..., TrainingResult]]:
    from metalearn.policies.trainers.es import ESConfig, train_es

    config = ESConfig(suite="smoke", selection_suite="smoke", out_dir=str(out), iterations=2, problems_per_generation=3,
                      population=4, selection_tasks=3, selection_every=1, n_candidates=16)
    return config, train_es


def _ppo(out: Path, tmp: Path) -> tuple[Any, Callable[..., TrainingResult]]:
    from metalearn.policies.trainers.ppo import PPOConfig, train_ppo

    config = PPOConfig(out_dir=str(out), suite="smoke", seed=3, n_candidates=8, window=3, hidden=16, n_envs=1, n_steps=16,
                       batch_size=8, n_epochs=2, n_normalization_steps=16, iterations=2, selection_tasks=2, selection_every=1)
    return config, train_ppo


def _schedule(out: Path, tmp: Path) -> tuple[Any, Callable[..., TrainingResult]]:
    from metalearn.policies.trainers.schedule import ScheduleTrainConfig, train_schedule

    config = ScheduleTrainConfig(suite="smoke", selection_suite="smoke", out_dir=str(out), iterations=2,
                                 problems_per_generation=2, population=4, selection_tasks=2, selection_every=1)
    return config, train_schedule


def _stopping(out: Path, tmp: Path) -> tuple[Any, Callable[..., TrainingResult]]:
    from metalearn.stopping.training import StoppingTrainConfig, train_stopping

    suite = tmp / "tiny.toml"
    suite.write_text(_SUITE_TOML, encoding="utf-8")
    config = StoppingTrainConfig(out_dir=str(out), suite=str(suite), n_tasks=12, models=["logreg"], strategies=["margin"],
                                 label_budget=100, horizon=20, epochs=5, hidden=8, held_in_fraction=0.5, seed=1)
    return config, train_stopping


TRAINERS = {"imitation": _imitation, "lal": _lal, "es": _es, "ppo": _ppo, "schedule": _schedule, "stopping": _stopping}
#: The reader of each trainer's best file (the others write policy files).
READERS: dict[str, Callable[..., Any]] = {"stopping": read_stopping_rule, "schedule": read_schedule}


def _arrays(result: TrainingResult, method: str) -> dict[str, np.ndarray]:
    reader = READERS.get(method, read_policy)
    return {k: np.asarray(v) for k, v in reader(result.policy_path).params.items()}


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module", params=sorted(TRAINERS))
def straight(request, tmp_path_factory) -> tuple[str, Path, TrainingResult]:
    """An uninterrupted tiny run of each trainer."""
    tmp = tmp_path_factory.mktemp(request.param)
    config, train = TRAINERS[request.param](tmp / "straight", tmp)
    return request.param, tmp, train(config, progress=False)


def test_every_config_extends_the_base_with_the_same_names(straight) -> None:
    method, tmp, _ = straight
    config, _ = TRAINERS[method](tmp / "unused", tmp)
    assert isinstance(config, RunConfig)
    names = {f.name for f in dataclasses.fields(config)}
    assert {"suite", "seed", "out_dir"} <= names
    if method != "stopping":  # the stopping trainer has no iterations: a task's runs are its step
        assert isinstance(config, TrainerConfig)
        assert {f.name for f in dataclasses.fields(TrainerConfig)} <= names
    for old in ("generations", "total_timesteps", "validation_tasks", "n_validation_tasks", "selection_problems",
                "validation_suite", "validate_every", "time_budget_seconds"):
        assert old not in names


def test_result_type_and_progress_log_have_the_same_fields(straight) -> None:
    method, _, result = straight
    assert type(result) is TrainingResult and result.method == method
    assert result.policy_path.is_file() and result.last_path.is_file() and result.iterations > 0
    with open(result.out_dir / "progress.csv", newline="") as handle:
        header = next(csv.reader(handle))
    assert tuple(header[: len(COMMON_PROGRESS_FIELDS)]) == COMMON_PROGRESS_FIELDS
    assert [row["iteration"] for row in result.history] == list(range(result.iterations))
    assert all(row["wall_seconds"] is not None for row in result.history)


def test_resume_without_checkpoint_starts_fresh_and_says_so(straight, capsys) -> None:
    method, tmp, result = straight
    config, train = TRAINERS[method](tmp / "fresh-resume", tmp)
    resumed = train(config, resume=True, progress=False)
    err = capsys.readouterr().err
    assert f"{method}: no checkpoint in" in err and "starting a fresh run" in err
    assert resumed.iterations == result.iterations and _same(_arrays(resumed, method), _arrays(result, method))


def test_a_run_without_resume_refuses_a_folder_holding_one(straight) -> None:
    method, tmp, result = straight
    config, train = TRAINERS[method](result.out_dir, tmp)
    with pytest.raises(InvalidInputError, match="already holds a training run"):
        train(config, progress=False)


def test_finished_run_resumed_leaves_its_outputs_untouched(straight) -> None:
    method, tmp, result = straight
    config, train = TRAINERS[method](result.out_dir, tmp)
    files = [p for p in result.out_dir.iterdir() if p.is_file()]
    stamps = {p: p.stat().st_mtime_ns for p in files if p.suffix in (".safetensors", ".csv")}
    again = train(config, resume=True, progress=False)
    assert again.iterations == result.iterations and again.best_iteration == result.best_iteration
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_resume_after_a_crash_equals_the_uninterrupted_run(straight, monkeypatch) -> None:
    method, tmp, result = straight
    config, train = TRAINERS[method](tmp / "crash", tmp)
    real_save, calls = base.save_checkpoint, {"n": 0}

    def crashing_save(*args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint of the run: killed mid-way
            raise KeyboardInterrupt
        real_save(*args, **kwargs)

    monkeypatch.setattr(base, "save_checkpoint", crashing_save)
    with pytest.raises(KeyboardInterrupt):
        train(config, progress=False)
    monkeypatch.setattr(base, "save_checkpoint", real_save)
    resumed = train(config, resume=True, progress=False)
    assert resumed.iterations == result.iterations
    assert _same(_arrays(resumed, method), _arrays(result, method))


def test_a_checkpoint_of_an_earlier_release_is_refused_clearly(straight) -> None:
    method, tmp, _ = straight
    config, train = TRAINERS[method](tmp / "old", tmp)
    # What the earlier trainers wrote: their own state layout, no protocol record.
    save_checkpoint(Path(config.out_dir) / CHECKPOINT_DIR, {"x": np.zeros(1)}, {"method": method, "loop": {"iteration": 1}})
    with pytest.raises(InvalidInputError, match="earlier metalearn release"):
        train(config, resume=True, progress=False)
