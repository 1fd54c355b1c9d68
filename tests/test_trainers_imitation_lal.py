"""Meta-training trainers: episodes, DAgger imitation, LAL, checkpoints, resume and the CLI.

Everything runs on the tiny ``smoke`` suite with K = 8 candidates, a hidden width of 16 and
one or two episodes per iteration, so the file stays fast on a busy machine.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import metalearn  # noqa: E402
from metalearn.cli import main  # noqa: E402
from metalearn.exceptions import InvalidInputError  # noqa: E402
from metalearn.features.schema import POOL_SCHEMA  # noqa: E402
from metalearn.policies.architecture import ScorerArchitecture  # noqa: E402
from metalearn.policies.file import read_policy  # noqa: E402
from metalearn.policies.torch_scorer import TorchScorer  # noqa: E402
from metalearn.policies.trainers import checkpoints, samples  # noqa: E402
from metalearn.policies.trainers.checkpoints import (
    generator_from_state,
    generator_to_state,
    load_checkpoint,
    optimizer_from_checkpoint,
    optimizer_to_checkpoint,
    save_checkpoint,
)
from metalearn.policies.trainers.episodes import EpisodeSpec, collect_episode
from metalearn.policies.trainers.evaluation import validation_tasks
from metalearn.policies.trainers.parallel import parallel_map
from metalearn.policies.trainers.progress import ProgressLog
from metalearn.policies.trainers.imitation import (  # noqa: E402
    ImitationConfig,
    listnet_loss,
    listnet_targets,
    train_imitation,
)
from metalearn.policies.trainers.lal import LALConfig, train_lal  # noqa: E402

K = 8
F, G = POOL_SCHEMA.n_candidate_features, POOL_SCHEMA.n_context_features
ARRAYS = ("candidates", "context", "mask", "gains", "log_loss_gains", "chosen", "from_oracle")


def _arch(hidden: int = 16) -> ScorerArchitecture:
    return ScorerArchitecture(F, G, hidden=hidden)


def _random_params(seed: int = 0) -> dict[str, np.ndarray]:
    torch.manual_seed(seed)
    return TorchScorer(_arch()).arrays()


def _imitation(out: Path, **overrides) -> ImitationConfig:
    settings = dict(
        suite="smoke", seed=3, out_dir=str(out), n_candidates=K, window=3, hidden=16, iterations=2,
        episodes_per_iteration=2, epochs=2, batch_size=8, selection_tasks=1,
    )
    settings.update(overrides)
    return ImitationConfig(**settings)


def _policy_arrays(path: Path) -> dict[str, np.ndarray]:
    return read_policy(path).params


def _same_arrays(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------- episodes
def test_collect_episode_shapes_and_values():
    spec = EpisodeSpec(suite="smoke", seed=0, key=(0, 1), n_candidates=K, window=3, beta=0.5,
                       arch=_arch().to_dict(), params=_random_params())
    ep = collect_episode(spec)
    n = len(ep)
    assert n > 0
    assert ep.candidates.shape == (n, K, F) and ep.candidates.dtype == np.float32
    assert ep.context.shape == (n, G) and ep.mask.shape == (n, K) and ep.mask.dtype == bool
    assert ep.gains.shape == ep.log_loss_gains.shape == ep.chosen.shape == (n, K)
    assert ep.from_oracle.shape == (n,)
    assert np.all(np.isfinite(ep.candidates)) and np.all(np.abs(ep.candidates) <= 1.0)
    assert np.all(np.isfinite(ep.context)) and np.all(np.abs(ep.context) <= 1.0)
    assert np.array_equal(np.isfinite(ep.gains), ep.mask)  # NaN exactly where masked
    assert np.array_equal(np.isfinite(ep.log_loss_gains), ep.mask)
    assert np.all(ep.candidates[~ep.mask] == 0)
    assert not np.any(ep.chosen & ~ep.mask)
    assert ep.chosen.sum() == ep.task["label_budget"]  # the whole budget is spent, each pick once
    assert 0.0 <= ep.aulc <= 1.0 and ep.task["name"]
    # beta = 0.5 per loop: both the oracle and the scorer acted (this seed)
    assert 0 < ep.from_oracle.sum() < n


def test_collect_episode_is_deterministic_and_independent_of_jobs():
    params = _random_params(1)
    specs = [
        EpisodeSpec(suite="smoke", seed=5, key=(1, e), n_candidates=K, window=3, beta=0.3,
                    arch=_arch().to_dict(), params=params)
        for e in range(2)
    ]
    inline = parallel_map(collect_episode, specs, n_jobs=1)
    again = collect_episode(specs[1])
    processes = parallel_map(collect_episode, specs, n_jobs=2)
    for name in ARRAYS:
        assert np.array_equal(getattr(inline[1], name), getattr(again, name), equal_nan=True), name
        for a, b in zip(inline, processes):
            assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True), name
    assert [ep.aulc for ep in inline] == [ep.aulc for ep in processes]
    assert [ep.key for ep in processes] == [(1, 0), (1, 1)]  # order kept
    # another key is another episode
    other = collect_episode(dataclasses.replace(specs[1], key=(2, 1)))
    assert other.task != again.task or not np.array_equal(other.candidates, again.candidates)


def test_validation_tasks_are_fixed():
    a = validation_tasks("smoke", 2, seed=11)
    b = validation_tasks("smoke", 3, seed=11)
    assert [t.name for t in a] == [t.name for t in b[:2]]
    assert validation_tasks("smoke", 0) == []


# ------------------------------------------------------------------------------- the loss
def test_listnet_targets_normalise_per_state():
    gains = np.array([[0.0, 0.1, 0.2, np.nan], [0.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    mask = np.array([[True, True, True, False], [True, True, True, True]])
    targets, weights = listnet_targets(gains, np.zeros_like(gains), mask, temperature=0.5, log_loss_weight=0.0)
    assert np.allclose(targets.sum(axis=1), 1.0) and targets[0, 3] == 0
    assert targets[0, 2] > targets[0, 1] > targets[0, 0]
    assert weights.tolist() == [1.0, 0.0]  # no preference, no weight
    # scale-free: gains 10x larger (another test-set size) give the same target
    scaled, _ = listnet_targets(10 * gains, np.zeros_like(gains), mask, temperature=0.5, log_loss_weight=0.0)
    assert np.allclose(scaled, targets, atol=1e-6)


def test_listwise_training_ranks_the_oracle_best_higher_than_chance():
    episodes = [
        collect_episode(EpisodeSpec(suite="smoke", seed=2, key=(0, e), n_candidates=K, window=3, beta=1.0))
        for e in range(3)
    ]
    cand = np.concatenate([ep.candidates for ep in episodes])
    ctx = np.concatenate([ep.context for ep in episodes])
    mask = np.concatenate([ep.mask for ep in episodes])
    gains = np.concatenate([ep.gains for ep in episodes])
    loss_gains = np.concatenate([ep.log_loss_gains for ep in episodes])
    targets, weights = listnet_targets(gains, loss_gains, mask, temperature=0.5, log_loss_weight=0.25)
    keep = weights > 0
    assert keep.sum() >= 10
    cand, ctx, mask, gains, loss_gains, targets = (a[keep] for a in (cand, ctx, mask, gains, loss_gains, targets))

    with checkpoints.deterministic_torch(n_threads=1):  # one thread: fast and stable on a busy machine
        percentiles, losses = _fit_listnet(cand, ctx, mask, gains, loss_gains, targets)
    print(f"mean percentile of the oracle's best: {np.mean(percentiles):.3f}")
    assert losses[-1] < losses[0] - 0.05
    assert np.mean(percentiles) > 0.75  # chance: 0.5


def _fit_listnet(cand, ctx, mask, gains, loss_gains, targets):
    torch.manual_seed(0)
    model = TorchScorer(_arch(32))
    stats = samples.input_normalization(cand, ctx, mask)
    model.set_normalization(stats["cand_mean"], stats["cand_std"], stats["ctx_mean"], stats["ctx_std"])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    inputs = (torch.from_numpy(cand), torch.from_numpy(ctx), torch.from_numpy(mask))
    t, w = torch.from_numpy(targets), torch.ones(len(targets))
    losses = []
    for _ in range(150):
        loss = listnet_loss(model(*inputs)[0], t, w)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))

    scores = model(*inputs)[0].detach().numpy()
    percentiles = []
    for s, m, g, lg in zip(scores, mask, gains, loss_gains):
        valid = np.flatnonzero(m)
        best = valid[np.lexsort((-lg[valid], -g[valid]))[0]]  # the oracle's order: gain, then log-loss
        percentiles.append(np.mean(s[valid] < s[best]) * len(valid) / max(len(valid) - 1, 1))
    return percentiles, losses


# ------------------------------------------------------------------------------- DAgger
@pytest.fixture(scope="module")
def imitation_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("imitation")
    config = _imitation(out)
    return config, train_imitation(config, progress=False)


def test_imitation_writes_a_loadable_policy(imitation_run, pool):
    config, result = imitation_run
    out = Path(config.out_dir)
    assert result.policy_path == out / "policy.safetensors" and result.policy_path.is_file()
    assert result.last_path == out / "last.safetensors" and result.last_path.is_file()
    assert result.iterations == 2 and len(result.history) == 2
    assert [row["iteration"] for row in result.history] == [0, 1]
    assert result.history[0]["beta"] == 1.0 and result.history[1]["beta"] == 0.5
    assert result.best_validation is not None and "delta_vs_margin" in result.best_validation

    X, y, clf = pool
    strategy = metalearn.policies.load_policy(result.policy_path)
    picks = strategy.query(X, y, clf, batch_size=4)
    assert picks.shape == (4,) and np.unique(picks).size == 4 and np.all(np.isnan(y[picks]))

    meta = read_policy(result.policy_path).metadata
    assert meta["trainer"]["method"] == "imitation"
    assert meta["trainer"]["settings"]["temperature"] == config.temperature
    assert "out_dir" not in meta["trainer"]["settings"]
    assert meta["task_suite"] == "smoke" and meta["seed"] == 3
    assert meta["window"] == 3 and meta["n_candidates"] == K
    assert meta["validation"]["delta_vs_margin"] == pytest.approx(result.best_validation["delta_vs_margin"])
    assert meta["training"]["iteration"] == result.best_iteration
    # the normalisation was set from the first iteration's samples (not the defaults)
    params = read_policy(result.last_path).params
    assert not np.allclose(params["cand_std"], 1.0)


def test_checkpoint_holds_no_pickle(imitation_run):
    from safetensors.numpy import load_file

    config, _ = imitation_run
    folder = Path(config.out_dir) / "checkpoint"
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["checkpoint-000001.safetensors", "checkpoint.json"]  # older saves removed
    state = json.loads((folder / "checkpoint.json").read_text())
    tensors = load_file(str(folder / state["tensor_file"]))
    assert state["state"]["run"]["iteration"] == 2
    assert state["state"]["method"] == "imitation"
    assert {"data.candidates", "data.gains", "torch_rng", "model.head.1.bias"} <= set(tensors)
    assert any(k.startswith("optimizer.") and k.endswith(".exp_avg") for k in tensors)
    assert tensors["data.candidates"].shape[1:] == (K, F)
    for path in folder.iterdir():
        assert b"\x80\x04\x95" not in path.read_bytes()[:64]  # no pickle header anywhere


def test_imitation_resume_equals_uninterrupted_run(tmp_path, monkeypatch):
    straight = train_imitation(_imitation(tmp_path / "straight", iterations=3), progress=False)

    # budget in iterations: 2, then resume with 3
    train_imitation(_imitation(tmp_path / "split"), progress=False)
    with pytest.raises(InvalidInputError, match="resume"):
        train_imitation(_imitation(tmp_path / "split", iterations=3), progress=False)
    with pytest.raises(InvalidInputError, match="learning_rate"):
        train_imitation(_imitation(tmp_path / "split", iterations=3, learning_rate=0.1), resume=True, progress=False)
    split = train_imitation(_imitation(tmp_path / "split", iterations=3), resume=True, progress=False)

    # a crash after iteration 2 was logged but before its checkpoint: the row is redone once
    from metalearn.policies.trainers import base

    calls = {"n": 0}
    real_save = base.save_checkpoint

    def crashing_save(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        real_save(*args, **kwargs)

    monkeypatch.setattr(base, "save_checkpoint", crashing_save)
    with pytest.raises(KeyboardInterrupt):
        train_imitation(_imitation(tmp_path / "crash", iterations=3), progress=False)
    monkeypatch.setattr(base, "save_checkpoint", real_save)
    assert len(ProgressLog(tmp_path / "crash" / "progress.csv", ["iteration"]).rows()) == 3
    crash = train_imitation(_imitation(tmp_path / "crash", iterations=3), resume=True, progress=False)

    expected = _policy_arrays(straight.last_path)
    for result in (split, crash):
        assert _same_arrays(_policy_arrays(result.last_path), expected)
        assert _same_arrays(_policy_arrays(result.policy_path), _policy_arrays(straight.policy_path))
        assert result.best_iteration == straight.best_iteration
        assert [r["iteration"] for r in result.history] == [0, 1, 2]
        assert [r["train_loss"] for r in result.history] == [r["train_loss"] for r in straight.history]
    a, _ = load_checkpoint(tmp_path / "straight" / "checkpoint")
    b, _ = load_checkpoint(tmp_path / "crash" / "checkpoint")
    assert _same_arrays(a, b)  # weights, Adam moments, dataset, RNG


def test_time_budget_stops_at_an_iteration_boundary(tmp_path):
    result = train_imitation(
        _imitation(tmp_path / "budget", iterations=None, time_budget=1e-3, selection_every=5), progress=False
    )
    assert result.iterations == 1  # at least one iteration, then the budget is spent
    assert result.best_iteration == 0 and result.best_validation is not None  # validated after the loop


# ------------------------------------------------------------------------------- LAL
def test_lal_writes_a_loadable_policy_and_resumes(tmp_path, pool):
    config = LALConfig(
        suite="smoke", seed=4, out_dir=str(tmp_path / "lal"), n_candidates=K, window=3, hidden=16, iterations=2,
        episodes_per_iteration=2, epochs=2, batch_size=8, selection_tasks=1,
    )
    result = train_lal(config, progress=False)
    train_lal(dataclasses.replace(config, out_dir=str(tmp_path / "split"), iterations=1), progress=False)
    split = train_lal(dataclasses.replace(config, out_dir=str(tmp_path / "split")), resume=True, progress=False)
    assert _same_arrays(_policy_arrays(split.last_path), _policy_arrays(result.last_path))
    with pytest.raises(InvalidInputError, match="a lal run, not imitation"):
        train_imitation(_imitation(tmp_path / "split", iterations=3), resume=True, progress=False)
    assert result.policy_path.is_file() and result.last_path.is_file() and result.iterations == 2
    assert all(row["train_loss"] is not None and np.isfinite(row["train_loss"]) for row in result.history)
    meta = read_policy(result.policy_path).metadata
    assert meta["trainer"]["method"] == "lal" and meta["trainer"]["settings"]["loss"] == "huber"
    assert meta["task_suite"] == "smoke" and meta["seed"] == 4 and meta["validation"] is not None
    X, y, clf = pool
    picks = metalearn.policies.load_policy(result.policy_path).query(X, y, clf, batch_size=2)
    assert np.unique(picks).size == 2 and np.all(np.isnan(y[picks]))
    tensors, state = load_checkpoint(tmp_path / "lal" / "checkpoint")
    assert state["method"] == "lal" and state["run"]["iteration"] == 2


# ------------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip_and_state_helpers(tmp_path):
    rng = np.random.default_rng(7)
    rng.random(3)
    torch.manual_seed(0)
    model = TorchScorer(_arch())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.zeros(2, K, F), torch.zeros(2, G), torch.ones(2, K, dtype=torch.bool))[0].sum().backward()
    optimizer.step()
    opt_tensors, opt_info = optimizer_to_checkpoint(optimizer)
    tensors = {"x": np.arange(6, dtype=np.float32).reshape(2, 3), "flags": np.array([True, False]), **opt_tensors}
    save_checkpoint(tmp_path, tensors, {"rng": generator_to_state(rng), "optimizer": opt_info, "big": 2**100})
    save_checkpoint(tmp_path, tensors, {"rng": generator_to_state(rng), "optimizer": opt_info, "big": 2**100})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-000001.safetensors", "checkpoint.json"]
    loaded, state = load_checkpoint(tmp_path)
    assert state["big"] == 2**100 and loaded["flags"].dtype == bool
    assert generator_from_state(state["rng"]).random() == rng.random()

    other = torch.optim.Adam(TorchScorer(_arch()).parameters(), lr=1e-3)
    optimizer_from_checkpoint(other, loaded, state["optimizer"])
    for (pid, a), (_, b) in zip(optimizer.state_dict()["state"].items(), other.state_dict()["state"].items()):
        for name in a:
            assert torch.equal(a[name], b[name]), (pid, name)

    assert load_checkpoint(tmp_path / "none") is None
    (tmp_path / "checkpoint-000001.safetensors").write_bytes(b"broken")
    with pytest.raises(InvalidInputError, match="checksum"):
        load_checkpoint(tmp_path)


# ------------------------------------------------------------------------------- CLI
def test_cli_train_writes_a_policy(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main([
        "train", "--method", "imitation", "--suite", "smoke", "--seed", "1", "--iterations", "1", "--episodes", "1",
        "--candidates", str(K), "--validation-tasks", "0", "--out", str(out),
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert str(out / "policy.safetensors") in printed
    meta = read_policy(out / "policy.safetensors").metadata
    assert meta["trainer"]["method"] == "imitation" and meta["n_candidates"] == K and meta["seed"] == 1


def test_cli_train_ppo_missing_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "metalearn.policies.trainers.ppo", None)  # import fails
    code = main(["train", "--method", "ppo", "--suite", "smoke", "--iterations", "1", "--out", str(tmp_path / "p")])
    assert code == 2
    assert "ppo" in capsys.readouterr().err
