"""The residual scorer (architecture ``deepsets`` v2): a margin prior plus a learned correction.

At initialisation it must rank exactly as margin sampling; numpy and torch must agree; its
files must round-trip without torch; version-1 files must keep loading; malformed prior
metadata must be refused; and the trainers must write it (tiny runs on the ``smoke`` suite).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

torch = pytest.importorskip("torch")

from metalearn import load_policy  # noqa: E402
from metalearn.cli import main  # noqa: E402
from metalearn.common.uncertainty import margins  # noqa: E402
from metalearn.exceptions import InvalidInputError, PolicyFileError  # noqa: E402
from metalearn.features.schema import POOL_SCHEMA, PROBA_SCHEMA, get_schema  # noqa: E402
from metalearn.policies.architecture import (  # noqa: E402
    ARCHITECTURES,
    DEFAULT_PRIOR_SCALE,
    RESIDUAL_PRIORS,
    ScorerArchitecture,
    parameter_shapes,
)
from metalearn.policies.file import PolicyFile, format_model_card, read_policy, save_policy  # noqa: E402
from metalearn.policies.numpy_scorer import NumpyScorer  # noqa: E402
from metalearn.policies.torch_scorer import TorchScorer  # noqa: E402
from metalearn.strategies.registry import make_strategy  # noqa: E402

HIDDEN = 8


def residual_arch(schema=POOL_SCHEMA) -> ScorerArchitecture:
    return ScorerArchitecture.for_schema(schema, hidden=HIDDEN, residual=True)


def fresh_scorer(schema=POOL_SCHEMA, seed: int = 0) -> TorchScorer:
    """A freshly initialised v2 scorer with random input normalisation (as a trainer sets it)."""
    torch.manual_seed(seed)
    model = TorchScorer(residual_arch(schema))
    rng = np.random.default_rng(seed)
    f, g = schema.n_candidate_features, schema.n_context_features
    model.set_normalization(rng.normal(0, 0.2, f), rng.uniform(0.3, 2.0, f), rng.normal(0, 0.2, g), rng.uniform(0.3, 2.0, g))
    return model.eval()


def trained_scorer(seed: int = 1) -> TorchScorer:
    """A v2 scorer as after training: a non-zero correction and another prior scale."""
    model = fresh_scorer(seed=seed)
    with torch.no_grad():
        model.head[1].weight.normal_(0, 0.5)
        model.head[1].bias.fill_(0.3)
        model.prior_scale.fill_(3.7)
    return model


def card(schema=POOL_SCHEMA, **extra) -> dict:
    return {"feature_schema": schema.to_dict(), "window": 3, "n_candidates": 16, **extra}


def pool_data(seed: int = 0, n: int = 240):
    X, y = make_classification(
        n_samples=n, n_features=6, n_informative=4, n_redundant=0, n_classes=3, n_clusters_per_class=1,
        random_state=seed,
    )
    return X, y


# ------------------------------------------------------------------------------ architecture
def test_architecture_whitelist_and_shapes():
    assert ARCHITECTURES["deepsets"] == (1, 2)
    arch = residual_arch()
    assert arch.version == 2 and arch.residual
    assert (arch.prior_feature, arch.prior_sign) == RESIDUAL_PRIORS["pool"] == ("margin", -1)
    assert POOL_SCHEMA.candidate_features[arch.prior_index] == "margin"
    assert PROBA_SCHEMA.candidate_features[residual_arch(PROBA_SCHEMA).prior_index] == "margin"
    v1 = ScorerArchitecture.for_schema(POOL_SCHEMA, hidden=HIDDEN)
    assert v1 == ScorerArchitecture(POOL_SCHEMA.n_candidate_features, POOL_SCHEMA.n_context_features, hidden=HIDDEN)
    assert set(parameter_shapes(arch)) - set(parameter_shapes(v1)) == {"prior_scale"}
    assert parameter_shapes(arch)["prior_scale"] == (1,)
    # version 1 writes exactly the keys it always wrote; version 2 adds the prior's
    assert set(v1.to_dict()) == {"n_candidate_features", "n_context_features", "hidden", "name", "version"}
    assert ScorerArchitecture.from_dict(arch.to_dict()) == arch
    assert ScorerArchitecture.from_dict(v1.to_dict()) == v1


def test_fresh_v2_scorer_is_the_prior_and_shares_v1_initial_weights():
    model = fresh_scorer()
    arrays = model.arrays()
    assert not arrays["head.1.weight"].any() and not arrays["head.1.bias"].any()
    assert arrays["prior_scale"].tolist() == [DEFAULT_PRIOR_SCALE]
    torch.manual_seed(0)
    v1 = TorchScorer(ScorerArchitecture.for_schema(POOL_SCHEMA, hidden=HIDDEN)).arrays()
    for name in ("encoder.0.weight", "head.0.weight", "value.1.weight"):
        np.testing.assert_array_equal(arrays[name], v1[name])  # the prior draws no random numbers
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, (20, POOL_SCHEMA.n_candidate_features)).astype(np.float32)
    context = rng.uniform(0, 1, POOL_SCHEMA.n_context_features).astype(np.float32)
    scores = NumpyScorer(model.arch, arrays).scores(x, context)
    np.testing.assert_array_equal(scores, np.float32(-DEFAULT_PRIOR_SCALE) * x[:, 0])


# ------------------------------------------------------------------------------ = margin at init
@pytest.mark.parametrize("schema_name", ["pool", "proba"])
@pytest.mark.parametrize("batch_size", [1, 7])
def test_fresh_v2_policy_picks_exactly_what_margin_sampling_picks(tmp_path, schema_name, batch_size):
    schema = get_schema(schema_name)
    path = save_policy(tmp_path / "r.safetensors", residual_arch(schema), fresh_scorer(schema).arrays(), card(schema))
    X, y_true = pool_data()
    y = np.full(y_true.shape, np.nan)
    first = [int(np.flatnonzero(y_true == c)[0]) for c in range(3)]  # one label per class
    y[first] = y_true[first]
    policy = load_policy(path, candidate_selection="all", label_budget=60, random_state=0)
    margin = make_strategy("margin", random_state=1)
    for _ in range(4):
        labeled = ~np.isnan(y)
        clf = LogisticRegression(max_iter=1000).fit(X[labeled], y[labeled])
        ours = policy.query(X, y, clf, batch_size=batch_size)
        theirs = margin.query(X, y, clf, batch_size=batch_size)
        assert set(ours.tolist()) == set(theirs.tolist())
        # The whole ranking of the unlabeled records is margin's, not only the top of it.
        candidates, scores = policy.last_scores_
        assert candidates.size == int((~labeled).sum())
        m = margins(clf.predict_proba(X[candidates]))
        np.testing.assert_array_equal(np.argsort(-scores, kind="stable"), np.argsort(m, kind="stable"))
        y[ours] = y_true[ours]


# ------------------------------------------------------------------------------ numpy = torch
@pytest.mark.parametrize("k", [1, 5, 33])
def test_numpy_and_torch_v2_scores_agree(tmp_path, k):
    model = trained_scorer()
    pf = read_policy(save_policy(tmp_path / "t.safetensors", model.arch, model.arrays(), card()))
    rng = np.random.default_rng(k)
    x = rng.uniform(-1, 1, (k, POOL_SCHEMA.n_candidate_features)).astype(np.float32)
    context = rng.uniform(-1, 1, POOL_SCHEMA.n_context_features).astype(np.float32)
    mask = rng.random(k) < 0.7
    mask[0] = True
    with torch.no_grad():
        theirs, _ = model(torch.from_numpy(x)[None], torch.from_numpy(context)[None], torch.from_numpy(mask)[None])
    ours = pf.scorer.scores(x, context, mask)
    np.testing.assert_allclose(ours[mask], theirs[0].numpy()[mask], rtol=1e-5, atol=1e-5)
    assert np.all(np.isneginf(ours[~mask]))
    # the prior is part of the score: it moves with prior_scale and the raw margin column
    with torch.no_grad():
        model.prior_scale.fill_(0.0)
        no_prior, _ = model(torch.from_numpy(x)[None], torch.from_numpy(context)[None], torch.from_numpy(mask)[None])
    np.testing.assert_allclose(
        (ours - no_prior[0].numpy())[mask], (np.float32(-3.7) * x[:, 0])[mask], rtol=1e-4, atol=1e-4
    )


# ------------------------------------------------------------------------------ files
def test_v2_file_round_trips_and_loads_without_torch(tmp_path, run_without_torch):
    model = trained_scorer()
    path = save_policy(tmp_path / "v2.safetensors", model.arch, model.arrays(), card())
    pf = read_policy(path)
    assert pf.arch == model.arch and pf.metadata["architecture"] == model.arch.to_dict()
    for name, value in model.arrays().items():
        np.testing.assert_array_equal(pf.params[name], value)
    assert "residual prior: score = -3.7 x margin" in format_model_card(pf)
    code = f"""
import sys
import numpy as np
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from metalearn import load_policy
from metalearn.policies.file import read_policy
pf = read_policy({str(path)!r})
assert pf.arch.version == 2 and pf.params["prior_scale"].shape == (1,)
X, y_true = make_classification(n_samples=120, n_features=5, random_state=0)
y = np.full(120, np.nan)
y[:6] = y_true[:6]
strategy = load_policy({str(path)!r}, random_state=0)
for _ in range(2):
    labeled = ~np.isnan(y)
    clf = LogisticRegression().fit(X[labeled], y[labeled])
    idx = strategy.query(X, y, clf, batch_size=4)
    assert idx.shape == (4,) and np.isnan(y[idx]).all()
    y[idx] = y_true[idx]
"""
    run_without_torch(code)


def test_v1_files_still_load_and_score_identically(tmp_path):
    arch = ScorerArchitecture(POOL_SCHEMA.n_candidate_features, POOL_SCHEMA.n_context_features, hidden=HIDDEN)
    torch.manual_seed(5)
    model = TorchScorer(arch).eval()
    path = save_policy(tmp_path / "v1.safetensors", arch, model.arrays(), card())
    meta = read_policy(path).metadata
    assert meta["architecture"] == {
        "n_candidate_features": arch.n_candidate_features, "n_context_features": arch.n_context_features,
        "hidden": HIDDEN, "name": "deepsets", "version": 1,
    }
    pf = read_policy(path)
    assert pf.arch == arch and "prior_scale" not in pf.params
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (9, arch.n_candidate_features)).astype(np.float32)
    context = rng.uniform(-1, 1, arch.n_context_features).astype(np.float32)
    with torch.no_grad():
        theirs, _ = model(torch.from_numpy(x)[None], torch.from_numpy(context)[None], torch.ones(1, 9, dtype=torch.bool))
    np.testing.assert_allclose(pf.scorer.scores(x, context), theirs[0].numpy(), rtol=1e-5, atol=1e-5)
    assert "residual prior" not in format_model_card(pf)


def _rewrite(path: Path, out: Path, *, arch=None, drop=(), add=None) -> Path:
    """A copy of a policy file with its architecture metadata or tensors changed (bypassing save_policy)."""
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    meta = json.loads(json.loads(data[8 : 8 + n])["__metadata__"]["metalearn"])
    if arch is not None:
        meta["architecture"] = arch
    tensors = {k: v for k, v in st_load(data).items() if k not in drop}
    tensors.update(add or {})
    out.write_bytes(st_save(tensors, metadata={"metalearn": json.dumps(meta)}))
    return out


@pytest.mark.parametrize(
    "change, match",
    [
        ({"prior_feature": "nope"}, "prior feature 'nope' is not a candidate feature of schema pool@1"),
        ({"prior_index": 3}, "prior reads column 3 as 'margin'"),
        ({"prior_index": 99}, "prior_index"),
        ({"prior_index": "0"}, "prior_index"),
        ({"prior_sign": 0}, "prior_sign"),
        ({"prior_feature": None}, "prior_feature"),
        ({"version": 3}, "version 3 is not supported"),
    ],
)
def test_malformed_v2_metadata_is_a_policy_file_error(tmp_path, change, match):
    model = fresh_scorer()
    good = save_policy(tmp_path / "good.safetensors", model.arch, model.arrays(), card())
    bad = _rewrite(good, tmp_path / "bad.safetensors", arch={**model.arch.to_dict(), **change})
    with pytest.raises(PolicyFileError, match=match) as info:
        read_policy(bad)
    assert "bad.safetensors" in str(info.value)
    with pytest.raises(PolicyFileError):
        load_policy(bad)


def test_prior_and_weights_must_match_the_version(tmp_path):
    model = fresh_scorer()
    good = save_policy(tmp_path / "good.safetensors", model.arch, model.arrays(), card())
    v1_dict = {k: v for k, v in model.arch.to_dict().items() if not k.startswith("prior_")}
    with pytest.raises(PolicyFileError, match="prior_scale"):  # v1 header, v2 weights
        read_policy(_rewrite(good, tmp_path / "a.safetensors", arch={**v1_dict, "version": 1}))
    with pytest.raises(PolicyFileError, match="lack parameter"):  # v2 header, no prior_scale
        read_policy(_rewrite(good, tmp_path / "b.safetensors", drop=("prior_scale",)))
    with pytest.raises(PolicyFileError, match="has no prior"):  # v1 with prior fields
        read_policy(_rewrite(good, tmp_path / "c.safetensors", arch={**model.arch.to_dict(), "version": 1}))
    with pytest.raises(PolicyFileError, match="NaN"):
        read_policy(_rewrite(good, tmp_path / "d.safetensors", add={"prior_scale": np.array([np.nan], np.float32)}))
    # save_policy and in-memory policies check the prior against the schema too
    wrong = ScorerArchitecture(
        POOL_SCHEMA.n_candidate_features, POOL_SCHEMA.n_context_features, hidden=HIDDEN, version=2,
        prior_feature="entropy", prior_index=0, prior_sign=-1,
    )
    with pytest.raises(PolicyFileError, match="column 0 as 'entropy'"):
        save_policy(tmp_path / "e.safetensors", wrong, model.arrays(), card())
    with pytest.raises(PolicyFileError, match="column 0 as 'entropy'"):
        PolicyFile(arch=wrong, params=model.arrays(), metadata=card())
    with pytest.raises(InvalidInputError, match="prior_sign"):
        ScorerArchitecture(16, 16, version=2, prior_feature="margin", prior_index=0, prior_sign=2).validate()


# ------------------------------------------------------------------------------ trainers
def test_cli_imitation_with_residual_writes_a_v2_policy(tmp_path):
    out = tmp_path / "imitation"
    code = main([
        "train", "--method", "imitation", "--suite", "smoke", "--seed", "2", "--iterations", "1", "--episodes", "1",
        "--candidates", "8", "--validation-tasks", "0", "--residual", "--out", str(out),
    ])
    assert code == 0
    pf = read_policy(out / "policy.safetensors")
    assert pf.arch.version == 2 and pf.arch.prior_feature == "margin"
    assert pf.metadata["trainer"]["settings"]["residual"] is True
    assert np.isfinite(pf.params["prior_scale"]).all()
    assert float(pf.params["prior_scale"][0]) != DEFAULT_PRIOR_SCALE  # learned like any weight
    # the checkpoint resumes into the same architecture
    code = main([
        "train", "--method", "imitation", "--suite", "smoke", "--seed", "2", "--iterations", "2", "--episodes", "1",
        "--candidates", "8", "--validation-tasks", "0", "--residual", "--out", str(out), "--resume",
    ])
    assert code == 0
    assert read_policy(out / "last.safetensors").metadata["training"]["iterations"] == 2


def test_lal_with_residual_starts_from_a_small_prior(tmp_path):
    from metalearn.policies.trainers.lal import LAL_PRIOR_SCALE, LALConfig, train_lal

    config = LALConfig(
        suite="smoke", seed=1, out_dir=str(tmp_path / "lal"), n_candidates=8, window=3, hidden=HIDDEN, iterations=1,
        episodes_per_iteration=1, epochs=1, batch_size=8, selection_tasks=0, residual=True,
    )
    pf = read_policy(train_lal(config, progress=False).policy_path)
    assert pf.arch.version == 2
    # one short epoch of Adam (lr 1e-3) moves the scale only a little from its start
    assert 0 < abs(float(pf.params["prior_scale"][0]) - LAL_PRIOR_SCALE) < 0.1


def test_ppo_residual_actor_starts_as_margin_and_inits_from_a_v2_file(tmp_path):
    pytest.importorskip("sb3_contrib")
    from metalearn.envs.pool_al import PoolALEnv
    from metalearn.policies.trainers.results import write_policy
    from metalearn.policies.trainers.ppo import DeepSetsMaskablePolicy, PPOConfig, train_ppo

    env = PoolALEnv(task_suite="smoke", n_candidates=8)
    torch.manual_seed(0)
    policy = DeepSetsMaskablePolicy(env.observation_space, env.action_space, lambda _: 1e-3, hidden=HIDDEN, residual=True)
    assert policy.arch.version == 2
    rng = np.random.default_rng(0)
    obs = {
        "candidates": torch.as_tensor(rng.uniform(0, 1, (3, 8, POOL_SCHEMA.n_candidate_features)).astype(np.float32)),
        "context": torch.as_tensor(rng.uniform(0, 1, (3, POOL_SCHEMA.n_context_features)).astype(np.float32)),
        "mask": torch.ones(3, 8, dtype=torch.int8),
    }
    with torch.no_grad():
        logits, _ = policy.logits_and_values(obs)
    torch.testing.assert_close(logits, -DEFAULT_PRIOR_SCALE * obs["candidates"][..., 0])

    init = trained_scorer()
    path = write_policy(
        tmp_path / "init.safetensors", init.arch, init.arrays(), method="imitation", settings={}, suite="smoke",
        seed=0, window=3, n_candidates=8, training={}, validation=None,
    )
    config = PPOConfig(
        out_dir=str(tmp_path / "ppo"), suite="smoke", seed=3, n_candidates=8, window=3, hidden=None,
        n_envs=1, n_steps=16, batch_size=8, n_epochs=1, iterations=1, selection_tasks=0,
        init_policy=str(path), learning_rate=0.0,
    )
    result = train_ppo(config, progress=False)  # residual=None: the init policy's version
    assert read_policy(result.last_path).arch == init.arch
    for name, value in init.arrays().items():
        assert np.array_equal(result.details["params"][name], value), name
    with pytest.raises(InvalidInputError, match="architecture"):
        train_ppo(PPOConfig(**{**config.to_dict(), "out_dir": str(tmp_path / "ppo2"), "residual": False}), progress=False)
