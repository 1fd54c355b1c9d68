"""PPO trainer: the masked deepsets actor-critic, training, export, exact resume, init policy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sb3_contrib")

import metalearn  # noqa: E402
from metalearn.envs.pool_al import PoolALEnv  # noqa: E402
from metalearn.exceptions import InvalidInputError  # noqa: E402
from metalearn.features.schema import POOL_SCHEMA  # noqa: E402
from metalearn.policies.architecture import ScorerArchitecture  # noqa: E402
from metalearn.policies.file import read_policy  # noqa: E402
from metalearn.policies.torch_scorer import TorchScorer  # noqa: E402
from metalearn.policies.trainers.checkpoints import load_checkpoint  # noqa: E402
from metalearn.policies.trainers.results import write_policy  # noqa: E402
from metalearn.policies.trainers.ppo import DeepSetsMaskablePolicy, PPOConfig, train_ppo  # noqa: E402

K = 8
HIDDEN = 16


def tiny_config(out_dir: Path, **overrides) -> PPOConfig:
    """Smoke suite, K=8, 16-step chunks on one environment: a chunk takes well under a second."""
    settings = dict(
        out_dir=str(out_dir), suite="smoke", seed=3, n_candidates=K, window=3, hidden=HIDDEN,
        n_envs=1, n_steps=16, batch_size=8, n_epochs=2, n_normalization_steps=16,
        iterations=2, selection_tasks=0,
    )
    settings.update(overrides)
    return PPOConfig(**settings)


def make_policy(hidden: int = HIDDEN) -> DeepSetsMaskablePolicy:
    env = PoolALEnv(task_suite="smoke", n_candidates=K)
    torch.manual_seed(0)
    return DeepSetsMaskablePolicy(env.observation_space, env.action_space, lambda _: 1e-3, hidden=hidden)


def random_obs(rng: np.random.Generator, batch: int) -> dict[str, np.ndarray]:
    mask = rng.random((batch, K)) < 0.6
    mask[:, 0] |= ~mask.any(axis=1)  # at least one valid slot per row
    return {
        "candidates": rng.uniform(-1, 1, (batch, K, POOL_SCHEMA.n_candidate_features)).astype(np.float32),
        "context": rng.uniform(-1, 1, (batch, POOL_SCHEMA.n_context_features)).astype(np.float32),
        "mask": mask.astype(np.int8),
    }


def as_tensors(obs: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(v) for k, v in obs.items()}


# ------------------------------------------------------------------------------ the policy class
def test_policy_logits_are_permutation_equivariant():
    policy = make_policy()
    obs = random_obs(np.random.default_rng(0), 6)
    perm = np.random.default_rng(1).permutation(K)
    permuted = {"candidates": obs["candidates"][:, perm], "context": obs["context"], "mask": obs["mask"][:, perm]}
    with torch.no_grad():
        logits, values = policy.logits_and_values(as_tensors(obs))
        logits_p, values_p = policy.logits_and_values(as_tensors(permuted))
    assert logits.shape == (6, K) and values.shape == (6, 1)
    np.testing.assert_allclose(logits_p.numpy(), logits.numpy()[:, perm], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(values_p.numpy(), values.numpy(), rtol=1e-5, atol=1e-6)
    # the logits are the scorer's scores: no extra layer between them and the distribution
    with torch.no_grad():
        scores, _ = policy.scorer(*(as_tensors(obs)[k] for k in ("candidates", "context")), as_tensors(obs)["mask"].bool())
    np.testing.assert_array_equal(scores.numpy(), logits.numpy())


def test_masked_actions_are_never_sampled():
    policy = make_policy()
    obs = random_obs(np.random.default_rng(2), 16)
    masks = obs["mask"].astype(bool)
    tensors = as_tensors(obs)
    torch.manual_seed(0)
    for _ in range(50):
        with torch.no_grad():
            actions, values, log_prob = policy(tensors, action_masks=masks)
        assert masks[np.arange(16), actions.numpy()].all()
        assert torch.isfinite(log_prob).all() and values.shape == (16, 1)
    # evaluate_actions agrees with the distribution; masked slots carry no probability
    with torch.no_grad():
        _, log_prob, entropy = policy.evaluate_actions(tensors, actions, action_masks=torch.as_tensor(masks))
        probs = policy.get_distribution(tensors, action_masks=masks).distribution.probs.numpy()
    assert torch.isfinite(entropy).all() and torch.isfinite(log_prob).all()
    assert np.all(probs[~masks] == 0.0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    # predict() (what a user calls) honours the mask too
    predicted, _ = policy.predict(obs, action_masks=masks, deterministic=False)
    assert masks[np.arange(16), predicted].all()


# ------------------------------------------------------------------------------ training runs
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two chunks with a validation after each (the shared run of several tests)."""
    out = tmp_path_factory.mktemp("ppo")
    config = tiny_config(out, selection_every=1, selection_tasks=2)
    return config, train_ppo(config, progress=False)


def test_training_writes_a_loadable_policy_with_metadata(trained):
    config, result = trained
    assert result.iterations == 2 and result.details["num_timesteps"] == 32 and result.method == "ppo"
    assert len(result.history) == 2 and result.history[-1]["timesteps"] == 32
    assert result.best_validation is not None and "delta_vs_margin" in result.best_validation
    assert result.best_iteration in (0, 1)
    for path in (result.policy_path, result.last_path):
        policy = read_policy(path)
        meta = policy.metadata
        assert meta["trainer"]["method"] == "ppo"
        assert meta["trainer"]["settings"]["n_candidates"] == K and meta["trainer"]["settings"]["seed"] == 3
        assert meta["task_suite"] == "smoke" and meta["seed"] == 3 and meta["window"] == 3
        assert policy.arch.hidden == HIDDEN
    rows = (config_path := Path(config.out_dir) / "progress.csv").read_text().strip().splitlines()
    assert len(rows) == 3, config_path  # header + one row per chunk
    strategy = metalearn.load_policy(result.policy_path)
    assert strategy is not None
    # the last file holds exactly the trained arrays
    last = read_policy(result.last_path)
    for name, value in result.details["params"].items():
        np.testing.assert_array_equal(last.params[name], value)


def test_numpy_scorer_matches_the_trained_actor(trained):
    _, result = trained
    policy = make_policy()
    policy.scorer.load_arrays(result.details["params"])
    numpy_scorer = read_policy(result.last_path).scorer
    env = PoolALEnv(task_suite="smoke", n_candidates=K, window=3)
    obs, _ = env.reset(seed=5)
    for _ in range(6):
        with torch.no_grad():
            logits, _ = policy.logits_and_values(as_tensors({k: v[None] for k, v in obs.items()}))
        mask = obs["mask"].astype(bool)
        scores = numpy_scorer.scores(obs["candidates"], obs["context"], mask)
        np.testing.assert_allclose(scores[mask], logits.numpy()[0][mask], atol=1e-5, rtol=1e-5)
        obs, _, done, _, _ = env.step(int(np.flatnonzero(mask)[0]))
        if done:
            obs, _ = env.reset(seed=6)


def test_checkpoint_holds_no_pickle(trained):
    config, _ = trained
    out = Path(config.out_dir)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} <= {".safetensors", ".json", ".csv"}
    for path in files:
        head = path.read_bytes()[:2]
        assert head[:1] != b"\x80", f"{path} looks like a pickle"  # pickle protocol 2+ header
    tensors, state = load_checkpoint(out / "checkpoint")
    assert state["method"] == "ppo" and state["run"]["iteration"] == 2 and state["num_timesteps"] == 32
    assert any(k.startswith("optimizer.") for k in tensors) and "rng.torch" in tensors
    json.dumps(state)  # plain JSON


def test_resume_replays_the_uninterrupted_run(tmp_path):
    straight = train_ppo(tiny_config(tmp_path / "straight", iterations=3), progress=False)
    first = train_ppo(tiny_config(tmp_path / "resumed", iterations=2), progress=False)
    assert first.iterations == 2
    with pytest.raises(InvalidInputError, match="resume=True"):
        train_ppo(tiny_config(tmp_path / "resumed", iterations=3), progress=False)
    with pytest.raises(InvalidInputError, match="learning_rate"):
        train_ppo(tiny_config(tmp_path / "resumed", iterations=3, learning_rate=1e-2), resume=True, progress=False)
    resumed = train_ppo(tiny_config(tmp_path / "resumed", iterations=3), resume=True, progress=False)
    assert straight.iterations == resumed.iterations == 3
    assert straight.details["num_timesteps"] == resumed.details["num_timesteps"] == 48
    assert set(straight.details["params"]) == set(resumed.details["params"])
    for name in straight.details["params"]:
        assert np.array_equal(straight.details["params"][name], resumed.details["params"][name]), name
    a, _ = load_checkpoint(tmp_path / "straight" / "checkpoint")
    b, _ = load_checkpoint(tmp_path / "resumed" / "checkpoint")
    for name in a:
        if name.startswith(("optimizer.", "rng.")):
            assert np.array_equal(a[name], b[name]), name
    # the progress log holds each chunk once
    assert [r["iteration"] for r in resumed.history] == [0, 1, 2]


def test_init_policy_copies_its_weights(tmp_path):
    arch = ScorerArchitecture(POOL_SCHEMA.n_candidate_features, POOL_SCHEMA.n_context_features, hidden=12)
    torch.manual_seed(7)
    scorer = TorchScorer(arch)
    rng = np.random.default_rng(0)
    scorer.set_normalization(
        rng.normal(size=arch.n_candidate_features), rng.uniform(0.5, 2, arch.n_candidate_features),
        rng.normal(size=arch.n_context_features), rng.uniform(0.5, 2, arch.n_context_features),
    )
    init_params = scorer.arrays()
    path = write_policy(
        tmp_path / "init.safetensors", arch, init_params, method="imitation", settings={}, suite="smoke",
        seed=0, window=3, n_candidates=K, training={}, validation=None,
    )
    # learning rate 0: the run must end with exactly the init policy's arrays (normalisation
    # buffers included: they are copied, not re-estimated); hidden=None takes the file's width
    result = train_ppo(
        tiny_config(tmp_path / "run", hidden=None, init_policy=str(path), learning_rate=0.0, iterations=1),
        progress=False,
    )
    assert read_policy(result.last_path).arch.hidden == 12
    for name, value in init_params.items():
        assert np.array_equal(result.details["params"][name], value), name
    with pytest.raises(InvalidInputError, match="window"):
        train_ppo(tiny_config(tmp_path / "other", hidden=None, init_policy=str(path), window=4), progress=False)
    with pytest.raises(InvalidInputError, match="pool@1 features, this run observes pool@2"):
        train_ppo(tiny_config(tmp_path / "p2", hidden=None, init_policy=str(path), schema="pool@2"), progress=False)


@pytest.mark.parametrize("residual", [False, True])
def test_pool2_training_writes_a_pool2_policy_that_queries(tmp_path, residual):
    from metalearn.features.cluster_features import ClusterPoolFeatureExtractor
    from metalearn.features.schema import POOL_SCHEMA_V2

    result = train_ppo(tiny_config(tmp_path, schema="pool@2", residual=residual, selection_every=1, selection_tasks=2), progress=False)
    policy = read_policy(result.policy_path)
    assert policy.schema is POOL_SCHEMA_V2 and policy.arch.n_candidate_features == POOL_SCHEMA_V2.n_candidate_features
    assert policy.arch.residual is residual
    assert policy.metadata["trainer"]["settings"]["schema"] == "pool@2"
    assert result.best_validation is not None  # validated as a pool@2 policy
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 4))
    y = np.full(120, np.nan)
    y[:6] = np.arange(6) % 2
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression().fit(X[:6], y[:6])
    strategy = metalearn.load_policy(result.policy_path, random_state=0)
    picks = strategy.query(X, y, clf, batch_size=4)
    assert np.unique(picks).size == 4 and isinstance(strategy.extractor_, ClusterPoolFeatureExtractor)


def test_config_is_validated(tmp_path):
    with pytest.raises(InvalidInputError, match="n_candidates"):
        train_ppo(tiny_config(tmp_path, n_candidates=0))
    with pytest.raises(InvalidInputError, match="iterations or time_budget"):
        train_ppo(tiny_config(tmp_path, iterations=None))
    with pytest.raises(InvalidInputError, match="PPOConfig.schema"):
        train_ppo(tiny_config(tmp_path, schema="proba"))


def test_subprocess_envs_and_time_budget(tmp_path):
    # Two SubprocVecEnv workers; a budget already spent after the first chunk stops there.
    config = tiny_config(tmp_path, n_envs=2, n_steps=8, iterations=None, time_budget=1e-3)
    result = train_ppo(config, progress=False)
    assert result.iterations == 1 and result.details["num_timesteps"] == 16
    assert read_policy(result.policy_path).metadata["trainer"]["settings"]["n_envs"] == 2
