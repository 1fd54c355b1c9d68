"""Tests of the Gymnasium environments metalearn/PoolAL-v0 and metalearn/StreamAL-v0."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_iris, load_wine

import metalearn  # noqa: F401  (registers the environments)
from metalearn.envs import PoolALEnv, StreamALEnv
from metalearn.exceptions import InvalidInputError, InvalidTypeError
from metalearn.features.schema import POOL_SCHEMA
from metalearn.tasks.task import Task, make_task

REPO = Path(__file__).resolve().parents[1]
SMOKE_SUITE = REPO / "envs" / "smoke.toml"
F, G = POOL_SCHEMA.n_candidate_features, POOL_SCHEMA.n_context_features


# ---------------------------------------------------------------------------------------------
# Tiny tasks: a few dozen retrains of a logistic regression keep each episode in milliseconds.
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tasks() -> list[Task]:
    X, y = load_iris(return_X_y=True)
    iris = make_task(X, y, name="iris", label_budget=8, batch_size=2, seed=0)
    X, y = load_breast_cancer(return_X_y=True)
    cancer = make_task(X, y, name="cancer", label_budget=6, batch_size=1, regime="warm", n_warm=10, max_pool=120, seed=1)
    X, y = load_wine(return_X_y=True)
    wine = make_task(X, y, name="wine", label_budget=9, batch_size=3, max_pool=90, seed=2)
    return [iris, cancer, wine]


@pytest.fixture(scope="module")
def small_pool_task() -> Task:
    """A pool with fewer unlabeled records than the budget, and fewer than K=32 (padding)."""
    X, y = load_iris(return_X_y=True)
    return make_task(X, y, name="iris-small", label_budget=40, batch_size=4, max_pool=24, seed=3)


def run_episode(env: gymnasium.Env, seed: int, policy: Any) -> dict[str, Any]:
    """Run one episode; ``policy(step, obs, env)`` returns the action."""
    obs, info = env.reset(seed=seed)
    observations, rewards, infos = [obs], [], [info]
    terminated = truncated = False
    step = 0
    while not (terminated or truncated):
        obs, reward, terminated, truncated, info = env.step(policy(step, obs, env))
        observations.append(obs)
        rewards.append(float(reward))
        infos.append(info)
        step += 1
        assert step < 10_000, "episode does not end"
    return {"obs": observations, "rewards": rewards, "infos": infos, "truncated": truncated}


def first_valid(step: int, obs: dict[str, np.ndarray], env: gymnasium.Env) -> int:
    return int(np.flatnonzero(obs["mask"])[0])


def cycling(step: int, obs: dict[str, np.ndarray], env: gymnasium.Env) -> int:
    # Fixed sequence regardless of masks: exercises the invalid-action fallback as well.
    return (3 * step + 1) % env.action_space.n


def alternate(step: int, obs: dict[str, np.ndarray], env: gymnasium.Env) -> int:
    return step % 2


def skip_all(step: int, obs: dict[str, np.ndarray], env: gymnasium.Env) -> int:
    return 0


def same(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b)
    return a == b


# ---------------------------------------------------------------------------------------------
# API conformance
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make",
    [
        lambda t: PoolALEnv(tasks=t, n_candidates=8),
        lambda t: PoolALEnv(tasks=t, n_candidates=8, feature_schema="pool@2"),
        lambda t: StreamALEnv(tasks=t),
    ],
)
def test_env_checkers(tasks: list[Task], make: Any) -> None:
    from gymnasium.utils.env_checker import check_env as gym_check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = make(tasks)
    with warnings.catch_warnings():
        # Render modes are only checked through gymnasium.make; the (K, F) candidates matrix
        # is deliberately 2-D (a set of candidates for a permutation-invariant scorer).
        warnings.simplefilter("ignore", UserWarning)
        gym_check_env(env)
        sb3_check_env(env, warn=True)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)


def test_make_after_import(tasks: list[Task]) -> None:
    assert "metalearn/PoolAL-v0" in gymnasium.registry and "metalearn/StreamAL-v0" in gymnasium.registry
    env = gymnasium.make("metalearn/PoolAL-v0", tasks=tasks, n_candidates=6, render_mode="ansi")
    obs, info = env.reset(seed=1)
    assert isinstance(env.unwrapped, PoolALEnv)
    assert obs["candidates"].shape == (6, F) and obs["context"].shape == (G,) and obs["mask"].shape == (6,)
    assert env.observation_space.contains(obs)
    assert info["task"] in {t.name for t in tasks}
    assert info["task"] in env.render()
    stream = gymnasium.make("metalearn/StreamAL-v0", tasks=tasks)
    obs, _ = stream.reset(seed=1)
    assert obs["candidate"].shape == (F,) and obs["context"].shape == (G + 2,)
    assert isinstance(stream.unwrapped, StreamALEnv)


def test_reimport_does_not_reregister() -> None:
    import importlib

    import metalearn.envs

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # gymnasium warns when an id is registered twice
        importlib.reload(metalearn.envs)
    assert gymnasium.spec("metalearn/PoolAL-v0").entry_point == "metalearn.envs.pool_al:PoolALEnv"


def test_argument_validation(tasks: list[Task]) -> None:
    with pytest.raises(InvalidInputError):
        PoolALEnv(tasks=tasks, reward="accuracy")
    with pytest.raises(InvalidInputError):
        PoolALEnv(tasks=tasks, metric="f1")
    with pytest.raises(InvalidInputError):
        PoolALEnv(tasks=tasks, candidate_selection="best")
    with pytest.raises(InvalidInputError):
        PoolALEnv(tasks=tasks, n_candidates=0)
    with pytest.raises(InvalidInputError, match="pool@2"):
        PoolALEnv(tasks=tasks, feature_schema="proba@1")
    with pytest.raises(InvalidInputError):
        StreamALEnv(tasks=tasks, window=1)
    with pytest.raises(InvalidInputError):
        StreamALEnv(tasks=[])
    with pytest.raises(InvalidInputError):
        PoolALEnv(task_suite="smoke", tasks=tasks)
    with pytest.raises(InvalidTypeError):
        PoolALEnv(tasks=[tasks[0], "iris"])  # type: ignore[list-item]
    with pytest.raises(InvalidTypeError):
        StreamALEnv(task_suite=42)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        PoolALEnv(tasks=tasks, render_mode="human")
    env = PoolALEnv(tasks=tasks, n_candidates=4)
    with pytest.raises(InvalidInputError):
        env.step(0)  # before reset
    env.reset(seed=0)
    with pytest.raises(InvalidInputError):
        env.step(4)  # outside the action space
    stream = StreamALEnv(tasks=tasks)
    stream.reset(seed=0)
    with pytest.raises(InvalidInputError):
        stream.step(2)


# ---------------------------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make, policy",
    [(lambda t: PoolALEnv(tasks=t, n_candidates=5), cycling), (lambda t: StreamALEnv(tasks=t), alternate)],
)
def test_same_seed_same_episode(tasks: list[Task], make: Any, policy: Any) -> None:
    a = run_episode(make(tasks), 11, policy)
    b = run_episode(make(tasks), 11, policy)
    assert same(a["obs"], b["obs"]) and a["rewards"] == b["rewards"] and same(a["infos"], b["infos"])
    # Seeds that pick the same task still differ in the candidates or the stream order.
    env = make(tasks)
    others = [run_episode(env, seed, policy) for seed in (12, 13, 14)]
    assert any(not same(a["obs"], o["obs"]) for o in others)


# ---------------------------------------------------------------------------------------------
# Rewards
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["pool", "stream"])
@pytest.mark.parametrize("metric", ["accuracy", "macro_f1"])
def test_auc_return_equals_aulc(tasks: list[Task], kind: str, metric: str) -> None:
    for seed in range(3):
        if kind == "pool":
            env: gymnasium.Env = PoolALEnv(tasks=tasks, n_candidates=8, metric=metric)
            episode = run_episode(env, seed, cycling)
        else:
            env = StreamALEnv(tasks=tasks, metric=metric)
            episode = run_episode(env, seed, alternate)
        final = episode["infos"][-1]
        assert "aulc" in final and 0.0 <= final["aulc"] <= 1.0
        assert np.isclose(sum(episode["rewards"]), final["aulc"], atol=1e-9)
        assert not episode["truncated"]


@pytest.mark.parametrize("kind", ["pool", "stream"])
def test_improvement_return_equals_score_gain(tasks: list[Task], kind: str) -> None:
    for seed in range(3):
        env: gymnasium.Env
        if kind == "pool":
            env = PoolALEnv(tasks=tasks, n_candidates=8, reward="improvement", metric="macro_f1")
            episode = run_episode(env, seed, first_valid)
        else:
            env = StreamALEnv(tasks=tasks, reward="improvement", metric="macro_f1")
            episode = run_episode(env, seed, alternate)
        first, last = episode["infos"][0], episode["infos"][-1]
        assert np.isclose(sum(episode["rewards"]), last["macro_f1"] - first["macro_f1"], atol=1e-9)
        # The improvement reward is not the area: a learning curve above zero has a positive area.
        assert last["aulc"] > 0.0


def test_rewards_only_on_retrain(tasks: list[Task]) -> None:
    env = PoolALEnv(tasks=[tasks[2]], n_candidates=8)  # wine: batches of 3
    episode = run_episode(env, 0, first_valid)
    retrained = [info["retrained"] for info in episode["infos"][1:]]
    assert retrained == [False, False, True] * 3
    assert all(r == 0.0 for r, flag in zip(episode["rewards"], retrained) if not flag)
    assert [info["n_bought"] for info in episode["infos"][1:]] == [0, 0, 3, 3, 3, 6, 6, 6, 9]


# ---------------------------------------------------------------------------------------------
# PoolAL: masks, picks, invalid actions, episode end
# ---------------------------------------------------------------------------------------------
def expected_mask(env: PoolALEnv) -> np.ndarray:
    slots = env._slots
    valid = slots >= 0
    valid[valid] = ~env.process.labeled[slots[valid]] & ~env._in_batch[slots[valid]]
    return valid


@pytest.mark.parametrize("selection", ["mixed", "random"])
def test_masks_mark_unlabeled_unpicked_slots(tasks: list[Task], small_pool_task: Task, selection: str) -> None:
    env = PoolALEnv(tasks=tasks + [small_pool_task], n_candidates=32, candidate_selection=selection)
    seen_padding = False
    for seed in range(4):
        obs, info = env.reset(seed=seed)
        terminated = False
        while not terminated:
            mask = obs["mask"].astype(bool)
            assert np.array_equal(env.action_masks(), mask)
            assert np.array_equal(mask, expected_mask(env))
            # Distinct records in the valid slots; padding slots are all zeros.
            records = env._slots[mask]
            assert np.unique(records).size == records.size
            padding = env._slots < 0
            assert not obs["candidates"][padding].any()
            seen_padding |= bool(padding.any())
            obs, _, terminated, _, info = env.step(first_valid(0, obs, env))
        assert not obs["mask"].any() and not env.action_masks().any()
    assert seen_padding  # the small pool has fewer unlabeled records than K


def test_mixed_selection_includes_smallest_margins(tasks: list[Task]) -> None:
    env = PoolALEnv(tasks=[tasks[1]], n_candidates=8, candidate_selection="mixed")
    env.reset(seed=5)
    history = env.extractor.history
    margin = history.latest(history.margin)
    unlabeled = np.flatnonzero(~env.process.labeled)
    threshold = np.sort(margin[unlabeled])[3]  # the 4th smallest: ceil(8/2) = 4 uncertain slots
    assert (margin[env._slots] <= threshold).sum() >= 4
    # Slots are shuffled: over seeds the smallest-margin record is not always in slot 0.
    positions = set()
    for seed in range(8):
        env.reset(seed=seed)
        positions.add(int(np.argmin(margin[env._slots])))
    assert len(positions) > 1


def test_picks_never_labeled_twice(tasks: list[Task], small_pool_task: Task) -> None:
    for task in tasks + [small_pool_task]:
        env = PoolALEnv(tasks=[task], n_candidates=5)
        episode = run_episode(env, 0, cycling)
        records = [info["record"] for info in episode["infos"][1:]]
        assert len(records) == len(set(records))
        assert not np.isin(records, task.initial_labeled).any()
        assert env.process.labeled.sum() == task.initial_labeled.size + len(records)
        assert episode["infos"][-1]["n_bought"] == len(records)


def test_invalid_action_replaced_by_lowest_valid_slot(tasks: list[Task]) -> None:
    env = PoolALEnv(tasks=[tasks[2]], n_candidates=6)  # batches of 3, so a picked slot stays masked
    obs, _ = env.reset(seed=0)
    obs, _, _, _, info = env.step(4)
    assert info["invalid_action"] is False and not obs["mask"][4]
    expected_slot = int(np.flatnonzero(obs["mask"])[0])
    expected_record = int(env._slots[expected_slot])
    obs, _, _, _, info = env.step(4)  # slot 4 is masked now
    assert info["invalid_action"] is True
    assert info["record"] == expected_record
    assert not obs["mask"][expected_slot]


def test_batch_larger_than_candidate_set(tasks: list[Task]) -> None:
    task = tasks[0].with_setting(batch_size=5, label_budget=10)
    env = PoolALEnv(tasks=[task], n_candidates=2)
    episode = run_episode(env, 0, first_valid)
    records = [info["record"] for info in episode["infos"][1:]]
    assert len(records) == 10 == len(set(records))
    assert [info["retrained"] for info in episode["infos"][1:]].count(True) == 2
    assert not any(info["invalid_action"] for info in episode["infos"][1:])


def test_episode_ends_within_budget(tasks: list[Task]) -> None:
    for task in tasks:
        env = PoolALEnv(tasks=[task], n_candidates=8)
        episode = run_episode(env, 0, cycling)
        assert len(episode["rewards"]) == task.label_budget
        assert episode["infos"][-1]["n_bought"] == task.label_budget
        assert env.process.n_bought[-1] == task.label_budget
        with pytest.raises(InvalidInputError):
            env.step(0)  # the episode is over


def test_pool_exhausted_before_budget(small_pool_task: Task) -> None:
    n_unlabeled = small_pool_task.n_pool - small_pool_task.initial_labeled.size
    assert n_unlabeled < small_pool_task.label_budget
    env = PoolALEnv(tasks=[small_pool_task], n_candidates=32)
    episode = run_episode(env, 0, first_valid)
    final = episode["infos"][-1]
    assert final["n_bought"] == n_unlabeled == len(episode["rewards"])
    assert env.process.labeled.all()
    assert np.isclose(sum(episode["rewards"]), final["aulc"])  # flat extension paid at the end
    # The last batch is partial (21 unlabeled records in batches of 4): it holds what is left.
    assert n_unlabeled % 4 != 0
    assert env.process.n_bought[-1] - env.process.n_bought[-2] == n_unlabeled % 4


# ---------------------------------------------------------------------------------------------
# StreamAL
# ---------------------------------------------------------------------------------------------
def test_stream_skip_everything(tasks: list[Task]) -> None:
    for reward in ("auc", "improvement"):
        env = StreamALEnv(tasks=[tasks[1]], reward=reward)
        episode = run_episode(env, 0, skip_all)
        first, final = episode["infos"][0], episode["infos"][-1]
        n_stream = tasks[1].n_pool - tasks[1].initial_labeled.size
        assert len(episode["rewards"]) == n_stream
        assert final["n_bought"] == 0 and env.process.n_bought == [0]
        assert np.isclose(final["aulc"], first["accuracy"])  # a flat curve at the initial score
        expected = final["aulc"] if reward == "auc" else 0.0
        assert np.isclose(sum(episode["rewards"]), expected)
        assert np.isclose(episode["obs"][-1]["context"][G], 1.0)  # stream_position at the end


def test_stream_records_and_context(tasks: list[Task]) -> None:
    task = tasks[2]  # budget 9, batches of 3
    env = StreamALEnv(tasks=[task])
    episode = run_episode(env, 3, alternate)
    records = [info["record"] for info in episode["infos"][1:]]
    kept = [info["record"] for info in episode["infos"][1:] if info["kept"]]
    assert len(records) == len(set(records)) and not np.isin(records, task.initial_labeled).any()
    assert len(kept) == task.label_budget == episode["infos"][-1]["n_bought"]  # ended by the budget
    assert np.array_equal(np.sort(kept), np.flatnonzero(env.process.labeled & ~np.isin(np.arange(task.n_pool), task.initial_labeled)))
    n_stream = task.n_pool - task.initial_labeled.size
    positions = [obs["context"][G] for obs in episode["obs"]]
    assert np.allclose(positions, np.arange(len(positions)) / n_stream)
    pace = episode["obs"][0]["context"][G + 1]
    assert np.isclose(pace, task.label_budget / n_stream)


def test_stream_partial_batch_at_stream_end(tasks: list[Task]) -> None:
    task = tasks[2].with_setting(batch_size=4, label_budget=500)
    env = StreamALEnv(tasks=[task])
    episode = run_episode(env, 0, lambda step, obs, env: int(step % 10 == 0))
    n_stream = task.n_pool - task.initial_labeled.size
    n_kept = sum(info["kept"] for info in episode["infos"][1:])
    assert len(episode["rewards"]) == n_stream
    assert env.process.n_bought[-1] == n_kept and n_kept % 4 != 0  # the last batch was partial
    assert np.isclose(sum(episode["rewards"]), episode["infos"][-1]["aulc"])


# ---------------------------------------------------------------------------------------------
# Task suites and RL training
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [PoolALEnv, StreamALEnv])
def test_smoke_suite_episodes(cls: type) -> None:
    from gymnasium.utils.env_checker import check_env as gym_check_env

    assert SMOKE_SUITE.is_file()
    kwargs = {"n_candidates": 8} if cls is PoolALEnv else {}
    env = cls(task_suite=SMOKE_SUITE, **kwargs)  # a path
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        gym_check_env(env)
    by_name = cls(task_suite="smoke", **kwargs)  # a name, resolved by load_task_suite
    names = set()
    for seed in range(4):
        episode = run_episode(by_name, seed, first_valid if cls is PoolALEnv else alternate)
        assert all(by_name.observation_space.contains(obs) for obs in episode["obs"])
        final = episode["infos"][-1]
        assert np.isclose(sum(episode["rewards"]), final["aulc"])
        assert final["n_bought"] <= by_name.task.label_budget
        names.add(final["task"])
    assert len(names) > 1  # tasks are sampled from the suite with np_random


def test_default_suite_and_unknown_suite() -> None:
    env = gymnasium.make("metalearn/PoolAL-v0")  # no argument: the built-in default suite
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs) and obs["mask"].any()
    obs, reward, terminated, truncated, info = env.step(int(np.flatnonzero(obs["mask"])[0]))
    assert env.observation_space.contains(obs) and truncated is False
    with pytest.raises(InvalidInputError):  # UnknownNameError, raised at construction
        StreamALEnv(task_suite="no-such-suite")


def test_knn_cold_start_task() -> None:
    # Cold start gives one label per class, fewer than kNN's 5 neighbours.
    X, y = load_iris(return_X_y=True)
    task = make_task(X, y, name="iris-knn", model="knn", regime="cold", label_budget=4, seed=0)
    episode = run_episode(PoolALEnv(tasks=[task], n_candidates=4), 0, first_valid)
    assert np.isclose(sum(episode["rewards"]), episode["infos"][-1]["aulc"])


def test_maskable_ppo_smoke(tasks: list[Task]) -> None:
    from sb3_contrib import MaskablePPO

    env = PoolALEnv(tasks=tasks, n_candidates=8)
    model = MaskablePPO("MultiInputPolicy", env, n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=64)
    assert model.num_timesteps >= 64
    obs, _ = env.reset(seed=0)
    action, _ = model.predict(obs, action_masks=env.action_masks(), deterministic=True)
    assert env.action_masks()[int(action)]


def test_pool2_observations_update_the_within_batch_features_after_each_pick(tasks: list[Task]) -> None:
    from metalearn.features.schema import POOL_SCHEMA_V2

    env = PoolALEnv(tasks=[tasks[2]], n_candidates=8, feature_schema="pool@2")  # wine: batches of 3
    obs, _ = env.reset(seed=0)
    assert obs["candidates"].shape == (8, POOL_SCHEMA_V2.n_candidate_features)
    assert obs["context"].shape == (POOL_SCHEMA_V2.n_context_features,)
    distance = POOL_SCHEMA_V2.candidate_features.index("distance_to_selected")
    slot = int(np.flatnonzero(obs["mask"])[0])
    after, _, _, _, info = env.step(slot)
    assert not info["retrained"]
    # Every other slot is at most as far from the selection as before, and the picked record
    # is at distance 0 from itself.
    assert np.all(after["candidates"][:, distance] <= obs["candidates"][:, distance] + 1e-6)
    assert after["candidates"][slot, distance] == 0.0
    assert env.observation_space.contains(after)
