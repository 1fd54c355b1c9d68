"""The imitation and LAL trainers on the ``pool@2`` schema: episodes with cluster features,
representative candidates and batch-aware picks, and the policies they write."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from metalearn.cli import main
from metalearn.exceptions import InvalidInputError
from metalearn.features import POOL_SCHEMA, POOL_SCHEMA_V2, ClusterPoolFeatureExtractor
from metalearn.policies.architecture import ScorerArchitecture
from metalearn.policies.file import read_policy
from metalearn.policies.numpy_scorer import GatedLinearScorer
from metalearn import load_policy
from metalearn.policies.trainers.episodes import EpisodeSpec, _batch_aware_picks, collect_episode, trainable_schema
from metalearn.policies.trainers.imitation import ImitationConfig, train_imitation
from metalearn.policies.trainers.lal import LALConfig, train_lal
from metalearn.tasks.task import make_task

F, G = POOL_SCHEMA_V2.n_candidate_features, POOL_SCHEMA_V2.n_context_features
COL = POOL_SCHEMA_V2.candidate_features.index


def test_trainable_schemas_name_their_versions():
    assert trainable_schema("pool") is POOL_SCHEMA  # earlier runs resume on pool@1
    assert trainable_schema("pool@2") is POOL_SCHEMA_V2
    assert trainable_schema("pool@3").id == "pool@3"
    with pytest.raises(InvalidInputError, match="pool@2"):
        trainable_schema("pool@9")


def _task(batch_size: int = 3):
    X, y = make_classification(n_samples=240, n_features=6, n_informative=4, n_classes=3, random_state=1)
    return make_task(X, y, name="p2", model="logreg", regime="cold", label_budget=12, batch_size=batch_size, seed=0)


def test_pool2_episode_states_offer_representative_records():
    task = _task()
    spec = EpisodeSpec(suite=None, seed=0, key=(0, 1), n_candidates=12, window=2, beta=1.0, task=task, schema="pool@2")
    episode = collect_episode(spec)
    assert episode.candidates.shape == (4, 12, F) and episode.context.shape == (4, G)
    assert np.all(np.abs(episode.candidates) <= 1) and np.all(np.abs(episode.context) <= 1)
    np.testing.assert_equal(np.isfinite(episode.gains), episode.mask)
    # The pre-selection offers records of clusters without a label (a third of the slots),
    # which the smallest-margin-or-random rule of pool@1 does not aim for.
    offered = episode.candidates[0][episode.mask[0]]
    assert offered[:, COL("cluster_unlabeled")].sum() >= 4
    # The context's decaying functions of the labels bought fall as labels are bought.
    decay = episode.context[:, POOL_SCHEMA_V2.context_features.index("bought_decay_10")]
    assert decay[0] == pytest.approx(1.0) and np.all(np.diff(decay) < 0)
    again = collect_episode(spec)
    np.testing.assert_array_equal(again.candidates, episode.candidates)  # deterministic


def test_pool2_episode_with_a_scorer_fills_batches_with_distinct_records():
    task = _task(batch_size=4)
    torch = pytest.importorskip("torch")
    from metalearn.policies.torch_scorer import TorchScorer

    arch = ScorerArchitecture.for_schema(POOL_SCHEMA_V2, hidden=8)
    torch.manual_seed(0)
    spec = EpisodeSpec(
        suite=None, seed=0, key=(0, 2), n_candidates=16, window=2, beta=0.0, task=task, schema="pool@2",
        arch=arch.to_dict(), params=TorchScorer(arch).arrays(),
    )
    episode = collect_episode(spec)
    assert not episode.from_oracle.any()
    np.testing.assert_array_equal(episode.chosen.sum(axis=1), [4, 4, 4])
    assert np.all(episode.mask[episode.chosen])  # only valid slots are picked


def test_batch_aware_picks_spread_over_clusters():
    # Two tight blobs, equally uncertain; the scorer rewards distance to what is selected.
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal((0, 0), 0.05, (40, 2)), rng.normal((6, 0), 0.05, (40, 2)), [[4.0, 30.0]]])
    labeled = np.zeros(X.shape[0], dtype=bool)
    labeled[-1] = True  # far from both blobs, a little nearer to blob B
    extractor = ClusterPoolFeatureExtractor(X, window=2, label_budget=10, batch_size=2, seed=0)
    proba = np.full((X.shape[0], 2), 0.5)
    y_index = np.where(labeled, 0, -1)
    extractor.update(proba, np.array([0, 1]), labeled, y_index)
    candidates = np.concatenate([np.arange(6), [40, 41]])  # six records of blob A, two of blob B
    features = np.clip(extractor.candidate_features(candidates), -1, 1).astype(np.float32)
    context = np.clip(extractor.context_features(), -1, 1)
    arch = ScorerArchitecture.gated_linear(POOL_SCHEMA_V2)
    weights = np.zeros((F, G + 1), np.float32)
    weights[COL("distance_to_selected"), 0] = 5.0
    scorer = GatedLinearScorer(arch, {"weights": weights, "prior_scale": np.ones(1, np.float32)})
    mask = np.ones(candidates.size, dtype=bool)
    one_shot = np.argsort(-scorer.scores(features, context, mask))[:2]
    assert np.all(candidates[one_shot] < 40)  # scored once, the top two are both in blob A
    slots = _batch_aware_picks(scorer, extractor, features, context, mask, 2, np.random.default_rng(0))
    blobs = (X[candidates[slots], 0] > 3).astype(int)
    assert sorted(blobs.tolist()) == [0, 1]  # one pick per blob, not two near-duplicates


@pytest.mark.parametrize("method", ["imitation", "lal"])
def test_trainers_write_pool2_policies_that_query_with_cluster_features(tmp_path, method):
    common = dict(suite="smoke", seed=3, out_dir=str(tmp_path / method), n_candidates=8, window=2, hidden=16,
                  iterations=1, episodes_per_iteration=2, selection_tasks=1, schema="pool@2")
    if method == "imitation":
        result = train_imitation(ImitationConfig(epochs=2, batch_size=8, **common), progress=False)
    else:
        result = train_lal(LALConfig(**common), progress=False)
    policy = read_policy(result.policy_path)
    assert policy.schema is POOL_SCHEMA_V2 and (policy.arch.n_candidate_features, policy.arch.n_context_features) == (F, G)
    assert policy.metadata["trainer"]["settings"]["schema"] == "pool@2"
    assert result.best_validation is not None  # keep-the-best simulated the pool@2 policy
    X, y_true = make_classification(n_samples=200, n_features=5, n_informative=3, random_state=0)
    y = np.full(y_true.shape, np.nan)
    y[:10] = y_true[:10]
    clf = LogisticRegression().fit(X[:10], y_true[:10])
    strategy = load_policy(result.policy_path, random_state=0)
    picks = strategy.query(X, y, clf, batch_size=5)
    assert picks.shape == (5,) and np.unique(picks).size == 5 and np.all(np.isnan(y[picks]))
    assert isinstance(strategy.extractor_, ClusterPoolFeatureExtractor)


def test_cli_train_schema_pool2(tmp_path, capsys):
    out = tmp_path / "lal"
    code = main([
        "train", "--method", "lal", "--schema", "pool@2", "--suite", "smoke", "--selection-suite", "smoke",
        "--iterations", "1", "--episodes", "1", "--candidates", "8", "--validation-tasks", "1", "--out", str(out),
    ])
    assert code == 0
    policy = read_policy(out / "policy.safetensors")
    assert policy.schema.id == "pool@2"
    assert policy.metadata["trainer"]["settings"]["selection_suite"] == "smoke"


def test_cli_train_ppo_schema_pool2(tmp_path):
    pytest.importorskip("sb3_contrib")
    out = tmp_path / "ppo"
    code = main([
        "train", "--method", "ppo", "--schema", "pool@2", "--suite", "smoke", "--iterations", "1", "--candidates", "8",
        "--validation-tasks", "1", "--quiet", "--out", str(out),
    ])
    assert code == 0
    assert read_policy(out / "policy.safetensors").schema.id == "pool@2"
