"""The probabilities-only feature schema (``proba@1``), training for it, and the baal heuristic
run inside baal's own ``ActiveLearningLoop``.

baal is installed by ``make test`` (``pip install --no-deps baal==2.1.0``, see the Makefile);
the heuristic tests are skipped with the reason when it is missing.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

torch = pytest.importorskip("torch")

# baal 2.1 logs through a threading call Python deprecated.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:baal.*")

from metalearn import load_policy  # noqa: E402
from metalearn.cli import main  # noqa: E402
from metalearn.exceptions import FeatureSchemaError, InvalidInputError  # noqa: E402
from metalearn.features import POOL_SCHEMA, PROBA_SCHEMA, ProbaFeatureExtractor, get_schema  # noqa: E402
from metalearn.features.proba_features import check_predictions, ensemble_predictions  # noqa: E402
from metalearn.policies.architecture import ScorerArchitecture  # noqa: E402
from metalearn.policies.file import read_policy, save_policy  # noqa: E402
from metalearn.policies.torch_scorer import TorchScorer  # noqa: E402
from metalearn.policies.trainers.checkpoints import check_resumable, config_settings  # noqa: E402
from metalearn.policies.trainers.episodes import EpisodeSpec, collect_episode  # noqa: E402
from metalearn.policies.trainers.imitation import ImitationConfig, train_imitation  # noqa: E402
from metalearn.tasks.models import ModelFactory  # noqa: E402
from metalearn.tasks.task import make_task  # noqa: E402

F, G = PROBA_SCHEMA.n_candidate_features, PROBA_SCHEMA.n_context_features
DISAGREEMENT = ["bald", "bald_rank", "variation_ratio", "top_class_std"]
N_STEPS = 6
QUERY_SIZE = 5


def _col(name: str) -> int:
    return PROBA_SCHEMA.candidate_features.index(name)


def _ctx(name: str) -> int:
    return PROBA_SCHEMA.context_features.index(name)


def _random_policy(path: Path, schema=PROBA_SCHEMA, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    arch = ScorerArchitecture(schema.n_candidate_features, schema.n_context_features, 16)
    meta = {"feature_schema": schema.to_dict(), "window": 2, "n_candidates": 32}
    return save_policy(path, arch, TorchScorer(arch).arrays(), meta)


@pytest.fixture(scope="module")
def proba_policy():
    """The released ``default-proba`` policy (policies/default-proba.safetensors)."""
    return read_policy("default-proba").path


# ------------------------------------------------------------------------------- the schema
def test_proba_schema_is_registered_and_documented(capsys):
    assert get_schema("proba", 1) is PROBA_SCHEMA and get_schema("proba") is PROBA_SCHEMA
    assert PROBA_SCHEMA.id == "proba@1" and PROBA_SCHEMA.probabilities_only
    assert not POOL_SCHEMA.probabilities_only
    names = PROBA_SCHEMA.candidate_features + PROBA_SCHEMA.context_features
    assert (F, G) == (10, 12) and all(PROBA_SCHEMA.descriptions[n] for n in names)
    with pytest.raises(FeatureSchemaError, match="version"):
        get_schema("proba", 2)
    assert main(["features"]) == 0
    printed = capsys.readouterr().out
    assert "schema pool@1" in printed and "schema proba@1" in printed
    proba_part = printed[printed.index("schema proba@1"):]
    assert all(name in proba_part for name in names)


def test_proba_features_on_known_inputs():
    # 4 records, 3 classes, 2 passes.
    preds = np.array([
        [[0.6, 0.2], [0.3, 0.7], [0.1, 0.1]],   # passes disagree: argmax 0 then 1
        [[0.55, 0.55], [0.3, 0.3], [0.15, 0.15]],   # identical passes
        [[0.2, 0.2], [0.2, 0.2], [0.6, 0.6]],
        [[0.9, 0.7], [0.05, 0.2], [0.05, 0.1]],
    ])
    ext = ProbaFeatureExtractor()
    ext.update(preds, n_labeled=12)
    feats = ext.candidate_features(np.arange(4)).astype(np.float64)
    p = preds.mean(axis=2)
    top2 = np.sort(p, axis=1)[:, ::-1]
    margin = top2[:, 0] - top2[:, 1]
    np.testing.assert_allclose(feats[:, _col("margin")], margin, atol=1e-6)
    np.testing.assert_allclose(feats[:, _col("least_confidence")], (1 - p.max(axis=1)) * 1.5, atol=1e-6)
    entropy = -(p * np.log(p)).sum(axis=1) / np.log(3)
    np.testing.assert_allclose(feats[:, _col("entropy")], entropy, atol=1e-6)
    # margins 0.1, 0.25, 0.4, 0.675: fraction of the other records strictly below, over n - 1
    np.testing.assert_allclose(margin, [0.1, 0.25, 0.4, 0.675], atol=1e-12)
    np.testing.assert_allclose(feats[:, _col("margin_rank")], [0, 1 / 3, 2 / 3, 1], atol=1e-6)
    order = np.argsort(np.argsort(entropy))
    np.testing.assert_allclose(feats[:, _col("entropy_rank")], order / 3, atol=1e-6)
    predicted = p.argmax(axis=1)
    np.testing.assert_array_equal(predicted, [1, 0, 2, 0])
    share = np.bincount(predicted, minlength=3)[predicted] / 4 * 3
    np.testing.assert_allclose(feats[:, _col("predicted_class_share")], share / (1 + share), atol=1e-6)
    pass_entropy = -(preds * np.log(preds)).sum(axis=1).mean(axis=1)
    bald = (entropy * np.log(3) - pass_entropy) / np.log(3)
    np.testing.assert_allclose(feats[:, _col("bald")], bald, atol=1e-6)
    assert feats[1, _col("bald")] == pytest.approx(0.0, abs=1e-7)  # identical passes carry no disagreement
    assert feats[0, _col("bald_rank")] == pytest.approx(1.0) and feats[1, _col("bald_rank")] == 0.0
    # variation ratio: record 0's passes vote 0 then 1 -> 1 - 1/2 over its maximum 1 - 1/min(2, 3)
    np.testing.assert_allclose(feats[:, _col("variation_ratio")], [1, 0, 0, 0], atol=1e-6)
    std = preds[np.arange(4), predicted, :].std(axis=1)
    np.testing.assert_allclose(feats[:, _col("top_class_std")], np.minimum(2 * std, 1), atol=1e-6)

    ctx = ext.context_features().astype(np.float64)
    assert ctx[_ctx("inverse_n_classes")] == pytest.approx(1 / 3)
    assert ctx[_ctx("pool_size_log")] == pytest.approx(np.log1p(4) / np.log1p(1e6))
    assert ctx[_ctx("mean_margin")] == pytest.approx(margin.mean())
    assert ctx[_ctx("margin_std")] == pytest.approx(2 * margin.std())
    assert ctx[_ctx("mean_entropy")] == pytest.approx(entropy.mean(), abs=1e-6)
    assert ctx[_ctx("low_margin_fraction")] == pytest.approx(0.25)
    pc = np.bincount(predicted, minlength=3) / 4
    pc = pc[pc > 0]
    assert ctx[_ctx("predicted_class_balance")] == pytest.approx(-(pc * np.log(pc)).sum() / np.log(3), abs=1e-6)
    assert ctx[_ctx("mean_bald")] == pytest.approx(bald.mean(), abs=1e-6)
    assert ctx[_ctx("disagreement_available")] == 1.0 and ctx[_ctx("labeled_known")] == 1.0
    assert ctx[_ctx("labeled_per_class")] == pytest.approx(np.log1p(4) / np.log1p(200))
    assert ctx[_ctx("labeled_fraction")] == pytest.approx(12 / 16)


def test_one_pass_and_unknown_labels_give_zeros_and_flags():
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(4), size=30)
    ext = ProbaFeatureExtractor()
    ext.update(proba)  # 2-D: one pass; no labeled count
    feats = ext.candidate_features(np.arange(30))
    assert feats.shape == (30, F) and np.all((feats >= 0) & (feats <= 1))
    np.testing.assert_array_equal(feats[:, [_col(n) for n in DISAGREEMENT]], 0.0)
    ctx = ext.context_features()
    assert ctx.shape == (G,)
    for name in ("mean_bald", "disagreement_available", "labeled_known", "labeled_per_class", "labeled_fraction"):
        assert ctx[_ctx(name)] == 0.0
    # the same probabilities as a single-pass 3-D array give the same features
    same = ProbaFeatureExtractor()
    same.update(proba[:, :, None])
    np.testing.assert_array_equal(same.candidate_features(np.arange(30)), feats)
    # a pool subset: the pool size and labeled fraction describe the whole pool
    ext.update(proba, n_labeled=10, n_unlabeled=90)
    ctx = ext.context_features()
    assert ctx[_ctx("labeled_fraction")] == pytest.approx(0.1) and ctx[_ctx("pool_size_log")] == pytest.approx(
        np.log1p(90) / np.log1p(1e6)
    )


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.full(5, 0.5), "shape"),
        (np.full((2, 2, 2, 2), 0.5), "shape"),
        (np.zeros((0, 3)), "empty"),
        (np.ones((4, 1)), "class column"),
        (np.array([[0.5, np.nan]]), "NaN"),
        (np.array([[0.5, 0.6]]), "sum to 1"),
        (np.array([[1.5, -0.5]]), r"\[0, 1\]"),
    ],
)
def test_check_predictions_refuses_what_is_not_probabilities(bad, match):
    with pytest.raises(InvalidInputError, match=match):
        check_predictions(bad)


def test_ensemble_predictions_read_forest_trees_only():
    X, y = make_classification(n_samples=80, n_features=5, n_informative=3, n_classes=3, random_state=0)
    rf = RandomForestClassifier(n_estimators=12, random_state=0).fit(X, y)
    members = ensemble_predictions(rf, X)
    assert members.shape == (80, 3, 12)
    np.testing.assert_allclose(members.mean(axis=2), rf.predict_proba(X), atol=1e-12)
    assert ensemble_predictions(rf, X, max_members=4).shape == (80, 3, 4)
    assert ensemble_predictions(LogisticRegression(max_iter=500).fit(X, y), X) is None


# ------------------------------------------------------------------------------- training
def test_collect_episode_proba_states():
    X, y = make_classification(n_samples=150, n_features=5, n_informative=3, n_classes=3, random_state=2)
    task = make_task(X, y, name="rf3", model=ModelFactory("rf", 0, {"n_estimators": 10}), regime="warm",
                     n_warm=10, label_budget=4, batch_size=2, seed=0)
    flags = set()
    for e in range(4):
        ep = collect_episode(EpisodeSpec(suite=None, seed=0, key=(0, e), n_candidates=8, window=2, beta=1.0,
                                         task=task, schema="proba"))
        assert ep.candidates.shape == (2, 8, F) and ep.context.shape == (2, G)
        assert np.all(np.abs(ep.candidates) <= 1) and np.all(np.abs(ep.context) <= 1)
        assert np.all(ep.context[:, _ctx("disagreement_available")] == 1.0)  # a forest: per-tree passes
        assert ep.candidates[ep.mask][:, _col("bald")].max() > 0
        known = ep.context[:, _ctx("labeled_known")]
        assert known.min() == known.max()  # drawn once per episode
        flags.add(float(known[0]))
        np.testing.assert_equal(np.isfinite(ep.gains), ep.mask)
    assert flags == {0.0, 1.0}  # both cases a baal heuristic meets are in the training states
    again = collect_episode(EpisodeSpec(suite=None, seed=0, key=(0, 3), n_candidates=8, window=2, task=task, schema="proba"))
    np.testing.assert_array_equal(again.candidates, ep.candidates)  # deterministic


@pytest.fixture(scope="module")
def proba_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("imitation-proba")
    config = ImitationConfig(
        suite="smoke", seed=3, out_dir=str(out), n_candidates=8, window=2, hidden=16, iterations=1,
        episodes_per_iteration=2, epochs=2, batch_size=8, selection_tasks=1, schema="proba",
    )
    return config, train_imitation(config, progress=False)


def test_imitation_trains_a_proba_policy_that_loads_as_a_strategy(proba_run, pool):
    config, result = proba_run
    policy = read_policy(result.policy_path)
    assert policy.schema is PROBA_SCHEMA and (policy.arch.n_candidate_features, policy.arch.n_context_features) == (F, G)
    assert policy.metadata["trainer"]["settings"]["schema"] == "proba"
    assert result.best_validation is not None  # validation simulated the proba policy
    X, y, clf = pool
    strategy = load_policy(result.policy_path, random_state=0)
    for model in (clf, RandomForestClassifier(n_estimators=8, random_state=0).fit(X[~np.isnan(y)], y[~np.isnan(y)])):
        picks = strategy.query(X, y, model, batch_size=4)
        assert picks.shape == (4,) and np.unique(picks).size == 4 and np.all(np.isnan(y[picks]))
    assert not hasattr(strategy, "extractor_")  # no pool-schema history
    assert strategy.proba_features_.extractor.n_passes == 8  # the forest's trees
    assert strategy.history_state() is None
    assert load_policy(result.policy_path).load_history_state(X, {}, {}) == 0  # nothing to restore


def test_resume_accepts_a_checkpoint_from_before_the_schema_setting(tmp_path):
    config = ImitationConfig(suite="smoke", out_dir=str(tmp_path))
    saved = config_settings(config)
    del saved["schema"]  # written by a release without the setting: the pool schema
    check_resumable(saved, config)
    with pytest.raises(InvalidInputError, match="schema"):
        check_resumable(saved, dataclasses.replace(config, schema="proba"))
    with pytest.raises(InvalidInputError, match="valid values"):
        ImitationConfig(schema="images").validate()


def test_cli_train_schema_proba(tmp_path, capsys):
    out = tmp_path / "lal"
    code = main([
        "train", "--method", "lal", "--schema", "proba", "--suite", "smoke", "--iterations", "1", "--episodes", "1",
        "--candidates", "8", "--validation-tasks", "0", "--out", str(out),
    ])
    assert code == 0
    assert read_policy(out / "policy.safetensors").schema.id == "proba@1"
    capsys.readouterr()
    code = main(["train", "--method", "ppo", "--schema", "proba", "--suite", "smoke", "--out", str(tmp_path / "p")])
    assert code == 2 and "--schema proba needs --method imitation or --method lal" in capsys.readouterr().err


# ------------------------------------------------------------------------------- the baal heuristic
@pytest.fixture
def baal_parts():
    pytest.importorskip("baal", reason="baal is not installed (make test installs it with --no-deps)")
    from baal.active import ActiveLearningDataset, ActiveLearningLoop

    from metalearn.integrations.baal import PolicyHeuristic

    return ActiveLearningDataset, ActiveLearningLoop, PolicyHeuristic


@pytest.fixture
def labelled_data():
    X, y = make_classification(n_samples=240, n_features=6, n_informative=4, n_classes=3, random_state=3)
    X = X.astype(np.float32)
    initial = np.concatenate([np.flatnonzero(y == c)[:2] for c in range(3)])
    return X, y, initial


def _get_probabilities(X, y, kind, dataset):
    """baal's get_probabilities(pool): refit a scikit-learn model on the labeled part each step."""

    def get_probabilities(pool, **kwargs):
        labelled = dataset.labelled
        Xp = np.stack([np.asarray(pool[i][0]) for i in range(len(pool))])
        if kind == "rf":
            model = RandomForestClassifier(n_estimators=10, random_state=0).fit(X[labelled], y[labelled])
            return np.stack([tree.predict_proba(Xp) for tree in model.estimators_], axis=-1)  # (n, C, T)
        model = LogisticRegression(max_iter=500).fit(X[labelled], y[labelled])
        return model.predict_proba(Xp)  # (n, C)

    return get_probabilities


@pytest.mark.parametrize("kind, max_sample", [("rf", -1), ("logreg", -1), ("rf", 60)])
def test_heuristic_runs_in_baals_own_loop(baal_parts, proba_policy, labelled_data, kind, max_sample):
    ActiveLearningDataset, ActiveLearningLoop, PolicyHeuristic = baal_parts
    X, y, initial = labelled_data
    labelled = np.zeros(len(X), dtype=bool)
    labelled[initial] = True
    dataset = ActiveLearningDataset(torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(y)),
                                    labelled=labelled)
    heuristic = PolicyHeuristic(proba_policy, query_size=QUERY_SIZE, dataset=dataset, random_state=0)
    seen = []
    original = heuristic.get_ranks

    def recording_get_ranks(predictions, target_predictions=None):
        ranks, scores = original(predictions, target_predictions)
        seen.append((np.asarray(predictions).shape, ranks, scores))
        return ranks, scores

    heuristic.get_ranks = recording_get_ranks
    loop = ActiveLearningLoop(dataset, _get_probabilities(X, y, kind, dataset), heuristic=heuristic,
                              query_size=QUERY_SIZE, max_sample=max_sample)
    for step in range(N_STEPS):
        before = dataset.labelled.copy()
        np.random.seed(step)  # baal draws its max_sample subset from numpy's global generator
        assert loop.step() is True
        after = dataset.labelled
        new = np.flatnonzero(after & ~before)
        assert new.size == QUERY_SIZE and not before[new].any()  # valid: previously unlabeled records
        shape, ranks, scores = seen[-1]
        n_scored = shape[0]
        assert n_scored == (int((~before).sum()) if max_sample == -1 else max_sample)
        assert len(shape) == (3 if kind == "rf" else 2)
        assert np.array_equal(np.sort(ranks), np.arange(n_scored))  # a full ranking of the predictions
        assert np.all(np.isfinite(scores)) and scores.shape == (n_scored,)
        if max_sample == -1:  # the records labeled are the head of the heuristic's ranking
            np.testing.assert_array_equal(np.sort(np.flatnonzero(~before)[ranks[:QUERY_SIZE]]), new)
        disagreement = heuristic.extractor_.context_features()[_ctx("disagreement_available")]
        assert disagreement == (1.0 if kind == "rf" else 0.0)
        assert heuristic.extractor_.context_features()[_ctx("labeled_known")] == 1.0
    assert int(dataset.n_labelled) == initial.size + N_STEPS * QUERY_SIZE


def test_heuristic_inputs_as_baal_hands_them(baal_parts, proba_policy):
    *_, PolicyHeuristic = baal_parts
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(90, 3, 5))
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)

    def ranks_of(predictions, **kwargs):
        return PolicyHeuristic(proba_policy, random_state=1, **kwargs).get_ranks(predictions)

    reference, scores = ranks_of(proba)
    np.testing.assert_array_equal(ranks_of(logits)[0], reference)  # logits softmaxed as baal does
    np.testing.assert_array_equal(ranks_of(torch.from_numpy(proba))[0], reference)
    np.testing.assert_array_equal(ranks_of([proba])[0], reference)
    np.testing.assert_array_equal(ranks_of(chunk for chunk in np.array_split(proba, 3))[0], reference)
    heuristic = PolicyHeuristic(proba_policy, random_state=1)
    np.testing.assert_array_equal(heuristic(proba), reference)  # __call__: the ranks
    np.testing.assert_allclose(PolicyHeuristic(proba_policy, random_state=1).get_uncertainties(proba), scores)
    # one sigmoid output per record: a binary model
    sigmoid = rng.uniform(size=(40, 1))
    ranks, _ = PolicyHeuristic(proba_policy, random_state=0).get_ranks(sigmoid)
    assert np.array_equal(np.sort(ranks), np.arange(40))


def test_scores_follow_the_ranking(baal_parts, proba_policy):
    *_, PolicyHeuristic = baal_parts
    proba = np.random.default_rng(2).dirichlet(np.ones(3), size=200)
    heuristic = PolicyHeuristic(proba_policy, query_size=4, n_candidates=16, random_state=0)
    ranks, scores = heuristic.get_ranks(proba)
    scored = heuristic.last_candidates_
    assert scored.size == 16 and np.array_equal(np.sort(ranks[:16]), np.sort(scored))  # candidates first
    tail = scores[ranks[4:]]
    assert np.all(np.diff(tail) <= 0)  # after the sequential head, best first by score
    assert scores[np.setdiff1d(np.arange(200), scored)].max() < scores[scored].min()
    everything = PolicyHeuristic(proba_policy, candidate_selection="all", random_state=0)
    everything.get_ranks(proba)
    assert everything.last_candidates_.size == 200


def test_heuristic_refuses_a_pool_schema_policy(baal_parts, tmp_path):
    *_, PolicyHeuristic = baal_parts
    pool_policy = _random_policy(tmp_path / "pool.safetensors", schema=POOL_SCHEMA)
    with pytest.raises(FeatureSchemaError, match=r"pool@1.*predictions only.*--schema proba"):
        PolicyHeuristic(pool_policy)
    with pytest.raises(FeatureSchemaError):
        PolicyHeuristic(read_policy(pool_policy))


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.full(10, 0.5), "shape"),
        (np.full((6, 3, 4, 2), 1 / 3), "shape"),
        (np.zeros((0, 3)), "shape"),
        (np.array([[0.5, np.nan], [0.5, 0.5]]), "NaN"),
        ([np.full((4, 2), 0.5), np.full((4, 2), 0.5)], "sequence of 2"),
        (np.array([["a", "b"]]), "numeric"),
    ],
)
def test_heuristic_refuses_bad_predictions(baal_parts, proba_policy, bad, match):
    *_, PolicyHeuristic = baal_parts
    with pytest.raises(InvalidInputError, match=match):
        PolicyHeuristic(proba_policy).get_ranks(bad)


def test_heuristic_argument_checks(baal_parts, proba_policy):
    *_, PolicyHeuristic = baal_parts
    with pytest.raises(InvalidInputError, match="candidate_selection"):
        PolicyHeuristic(proba_policy, candidate_selection="best")
    with pytest.raises(InvalidInputError):
        PolicyHeuristic(proba_policy, query_size=0)
    with pytest.raises(TypeError, match="ActiveLearningDataset"):
        PolicyHeuristic(proba_policy, dataset=object())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no baal deprecation warning from our constructor
        PolicyHeuristic(proba_policy)
