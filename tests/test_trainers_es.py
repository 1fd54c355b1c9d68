"""pool@2 features, the gated linear scorer and the evolution-strategies trainer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from metalearn.cli import main
from metalearn.exceptions import InvalidInputError, PolicyFileError
from metalearn.features import POOL_SCHEMA_V2, ClusterPoolFeatureExtractor
from metalearn.features.cluster_features import cluster_level
from metalearn.policies.architecture import ScorerArchitecture
from metalearn.policies.file import PolicyFile, format_model_card, read_policy, save_policy
from metalearn.policies.numpy_scorer import GatedLinearScorer
from metalearn.policies.strategy import PolicyStrategy
from metalearn.policies.trainers.progress import ProgressLog
from metalearn.policies.trainers.cma_search import task_seeds
from metalearn.policies.trainers.es import (
    DEFAULT_SEARCH_FEATURES,
    ESConfig,
    _run_candidates,
    search_space,
    train_es,
    weights_from_vector,
)
from metalearn.simulation import simulate
from metalearn.strategies import make_strategy
from metalearn.tasks.suite import load_task_suite

SCHEMA = POOL_SCHEMA_V2
ARCH = ScorerArchitecture.gated_linear(SCHEMA)


def _policy(weights: np.ndarray | None = None, window: int = 5, n_candidates: int = 64) -> PolicyFile:
    params = {
        "weights": np.zeros((SCHEMA.n_candidate_features, SCHEMA.n_context_features + 1), np.float32)
        if weights is None else weights.astype(np.float32),
        "prior_scale": np.ones(1, np.float32),
    }
    metadata = {"feature_schema": SCHEMA.to_dict(), "window": window, "n_candidates": n_candidates}
    return PolicyFile(arch=ARCH, params=params, metadata=metadata)


def _config(out: Path, **overrides) -> ESConfig:
    settings = dict(
        suite="smoke", selection_suite="smoke", out_dir=str(out), iterations=2, problems_per_generation=3,
        population=4, selection_tasks=3, selection_every=1, n_candidates=16,
    )
    settings.update(overrides)
    return ESConfig(**settings)


# ---------------------------------------------------------------- pool@2 features
def test_cluster_level_is_a_power_of_two_above_the_labels():
    assert cluster_level(3, 10, 1000) == 16
    assert cluster_level(16, 0, 1000) == 16
    assert cluster_level(0, 1, 1000) == 2
    assert cluster_level(900, 10, 1000) == 512  # capped
    assert cluster_level(40, 10, 30) == 30  # never more clusters than records


def test_pool_v2_features_and_their_batch_updates(pool):
    X, y, clf = pool
    labeled = ~np.isnan(y)
    extractor = ClusterPoolFeatureExtractor(X, window=3, label_budget=30, batch_size=5, seed=0)
    y_index = np.where(labeled, np.nan_to_num(y).astype(int), -1)
    extractor.update(clf.predict_proba(X), clf.classes_, labeled, y_index)
    candidates = np.flatnonzero(~labeled)[:40]
    features = extractor.candidate_features(candidates)
    assert features.shape == (40, SCHEMA.n_candidate_features) and np.all(np.isfinite(features))
    assert extractor.context_features().shape == (SCHEMA.n_context_features,)
    names = SCHEMA.candidate_features
    col = {n: names.index(n) for n in ("cluster_unlabeled", "distance_to_selected", "distance_to_labeled", "typicality_in_cluster")}
    assert set(np.unique(features[:, col["cluster_unlabeled"]])) <= {0.0, 1.0}
    np.testing.assert_allclose(features[:, col["distance_to_selected"]], features[:, col["distance_to_labeled"]], atol=1e-6)
    assert np.all((features[:, col["typicality_in_cluster"]] >= 0) & (features[:, col["typicality_in_cluster"]] <= 1))
    # pick the first candidate: its cluster is covered, distances to the selected shrink
    labels = extractor._cluster_arrays()["cluster_labels"]
    before = features.copy()
    extractor.note_pick(features, 0)
    same = labels[candidates] == labels[candidates[0]]
    assert np.all(features[same, col["cluster_unlabeled"]] == 0.0)
    np.testing.assert_array_equal(features[~same, col["cluster_unlabeled"]], before[~same, col["cluster_unlabeled"]])
    assert features[0, col["distance_to_selected"]] == 0.0
    assert np.all(features[:, col["distance_to_selected"]] <= before[:, col["distance_to_selected"]] + 1e-7)
    # partitions are cached per level: a second loop at the same level clusters nothing new
    extractor.update(clf.predict_proba(X), clf.classes_, labeled, y_index)
    assert len(extractor.partitions) == 1


def test_representative_records_are_typical_records_of_uncovered_clusters(pool):
    X, y, clf = pool
    labeled = ~np.isnan(y)
    extractor = ClusterPoolFeatureExtractor(X, window=3, label_budget=30, batch_size=20, seed=0)
    extractor.update(clf.predict_proba(X), clf.classes_, labeled, np.where(labeled, np.nan_to_num(y).astype(int), -1))
    available = np.flatnonzero(~labeled)
    picks = extractor.representative_records(available, 8)
    arrays = extractor._cluster_arrays()
    assert picks.size == 8 and np.unique(picks).size == 8 and not labeled[picks].any()
    assert not arrays["cluster_covered"][arrays["cluster_labels"][picks]].any()  # uncovered clusters first
    assert np.unique(arrays["cluster_labels"][picks]).size == 8  # one per cluster


# ---------------------------------------------------------------- gated linear scorer
def test_gated_linear_weights_are_a_function_of_the_context():
    rng = np.random.default_rng(0)
    weights = np.zeros((SCHEMA.n_candidate_features, SCHEMA.n_context_features + 1))
    f = SCHEMA.candidate_features.index("cluster_unlabeled")
    g = SCHEMA.context_features.index("budget_used")
    weights[f, 0], weights[f, 1 + g] = 1.0, -2.0
    scorer = _policy(weights).scorer
    assert isinstance(scorer, GatedLinearScorer)
    x = rng.random((6, SCHEMA.n_candidate_features))
    for budget in (0.0, 0.5, 1.0):
        ctx = np.zeros(SCHEMA.n_context_features)
        ctx[g] = budget
        expected = -x[:, 0] + x[:, f] * (1.0 - 2.0 * budget)
        np.testing.assert_allclose(scorer.scores(x, ctx), expected, rtol=1e-5, atol=1e-6)
    assert scorer.weight_lines(SCHEMA.candidate_features, SCHEMA.context_features) == [
        "cluster_unlabeled: +1.000 -2.000*budget_used"
    ]


def test_gated_linear_weights_that_could_overflow_are_refused_and_scores_never_nan():
    weights = np.full((SCHEMA.n_candidate_features, SCHEMA.n_context_features + 1), 3e38)
    with pytest.raises(InvalidInputError, match="extreme weights"):
        _policy(weights)
    # Within the bound, the scores are finite even where float32 arithmetic would overflow.
    large = np.full((SCHEMA.n_candidate_features, SCHEMA.n_context_features + 1), 1e27)
    large[::2] = -1e27
    scores = _policy(large).scorer.scores(np.ones((5, SCHEMA.n_candidate_features)), np.ones(SCHEMA.n_context_features))
    assert np.all(np.isfinite(scores))


def test_zero_weights_run_exactly_as_margin_sampling():
    task = [t for t in load_task_suite("smoke").tasks(8, seed=3) if t.model.name == "logreg"][0]
    policy = simulate(task, PolicyStrategy(_policy(), label_budget=task.label_budget, random_state=1))
    margin = simulate(task, make_strategy("margin", random_state=1))
    for a, b in zip(policy.picks, margin.picks):
        assert set(a) == set(b)
    assert policy.aulc_accuracy == margin.aulc_accuracy


def test_gated_linear_policy_file_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    weights = rng.normal(size=(SCHEMA.n_candidate_features, SCHEMA.n_context_features + 1)).astype(np.float32)
    path = save_policy(tmp_path / "g.safetensors", ARCH, _policy(weights).params, _policy().metadata)
    loaded = read_policy(path)
    assert loaded.arch.name == "gated_linear" and loaded.schema is SCHEMA
    np.testing.assert_array_equal(loaded.params["weights"], weights)
    card = format_model_card(loaded)
    assert "gated_linear v1" in card and "correction weights" in card and "pool@2" in card


def test_the_card_says_what_the_gates_learned_in_words():
    from metalearn.policies.card import gate_sentences

    weights = np.zeros((SCHEMA.n_candidate_features, SCHEMA.n_context_features + 1), dtype=np.float32)
    f = SCHEMA.candidate_features
    g = SCHEMA.context_features
    weights[f.index("typicality_in_cluster"), 1 + g.index("bought_decay_10")] = 1.2   # early: typical records
    weights[f.index("prediction_flips"), 1 + g.index("bought_decay_10")] = -0.4
    weights[f.index("density"), 0] = 0.5                                               # always: dense records
    weights[f.index("entropy"), 1 + g.index("labeled_per_class")] = 0.1                # below the cut: not named
    sentences = gate_sentences(_policy(weights))
    assert sentences[0] == "at every loop, on top of preferring small margins, it prefers records with higher `density` (+0.50)"
    assert len(sentences) == 2 and sentences[1].startswith("the higher `bought_decay_10` (exp(-labels bought / 10)")
    assert sentences[1].endswith("the more it prefers higher `typicality_in_cluster` (+1.20); lower `prediction_flips` (-0.40)")
    assert "what the gates learned, in words" in format_model_card(_policy(weights))
    assert gate_sentences(_policy()) == []  # all zero: ranks as margin, nothing to say


def test_a_long_feature_description_is_cut_at_a_word_in_the_card():
    from metalearn.features.task_context_features import POOL_SCHEMA_V3
    from metalearn.policies.card import _first_sentence

    description = POOL_SCHEMA_V3.descriptions["cluster_purity"]
    assert len(description.split(". ")[0]) > 140  # long enough to need the cut
    short = _first_sentence(description)
    assert len(short) <= 140 and short.endswith(" ...")
    assert description.startswith(short[: -len(" ...")])  # a prefix of the description, ending on a whole word
    assert description[len(short) - len(" ...")] == " "
    assert _first_sentence("Share of labels. More detail here.") == "Share of labels"


def test_gated_linear_architecture_is_validated(tmp_path):
    with pytest.raises(InvalidInputError, match="hidden"):
        ScorerArchitecture(SCHEMA.n_candidate_features, SCHEMA.n_context_features, hidden=8, name="gated_linear",
                           version=1, prior_feature="margin", prior_index=0, prior_sign=-1).validate()
    with pytest.raises(InvalidInputError, match="prior_feature"):
        ScorerArchitecture(SCHEMA.n_candidate_features, SCHEMA.n_context_features, hidden=0, name="gated_linear").validate()
    bad = {"weights": np.zeros((3, 3), np.float32), "prior_scale": np.ones(1, np.float32)}
    with pytest.raises(PolicyFileError, match="shape"):
        save_policy(tmp_path / "bad.safetensors", ARCH, bad, _policy().metadata)


def test_pool_v2_policy_queries_distinct_unlabeled_records(pool):
    X, y, clf = pool
    rng = np.random.default_rng(2)
    weights = rng.normal(size=(SCHEMA.n_candidate_features, SCHEMA.n_context_features + 1))
    strategy = PolicyStrategy(_policy(weights, n_candidates=32), random_state=0)
    picks = strategy.query(X, y, clf, batch_size=7, step_scores=True)
    assert picks.size == 7 and np.unique(picks).size == 7 and np.isnan(y[picks]).all()
    assert strategy.last_step_scores_.shape[0] == 7
    assert np.all(np.isfinite(strategy.last_pick_scores_))
    again = PolicyStrategy(_policy(weights, n_candidates=32), random_state=0).query(X, y, clf, batch_size=7)
    np.testing.assert_array_equal(picks, again)


# ---------------------------------------------------------------- the trainer
def test_search_space_and_its_ablation():
    config = ESConfig()
    pairs = search_space(config)
    assert len(pairs) == len(DEFAULT_SEARCH_FEATURES) * len(config.context_features)
    weights = weights_from_vector(np.arange(1, len(pairs) + 1), pairs)["weights"]
    assert np.count_nonzero(weights) == len(pairs) and weights[:, 0].any()  # the constant column is searched
    with pytest.raises(InvalidInputError, match="history"):
        search_space(ESConfig(history=False))  # prediction_flips is a history feature
    with pytest.raises(InvalidInputError, match="margin"):
        search_space(ESConfig(candidate_features=("margin",)))
    with pytest.raises(InvalidInputError, match="context"):
        search_space(ESConfig(context_features=("budget",)))


def test_margin_initialised_search_starts_at_zero_difference():
    # Logistic regression: no exact probability ties, so margin sampling's order is unique.
    config = _config(Path("unused"))
    tasks = [t for t in load_task_suite("smoke").tasks(12, seed=9) if t.model.name == "logreg"][:3]
    seeds = task_seeds(tasks, 9)
    zero = weights_from_vector(np.zeros(len(search_space(config))), search_space(config))
    margin, aulc = _run_candidates(tasks, seeds, [zero], None, config, "test")
    np.testing.assert_array_equal(aulc[0], margin)  # common random numbers: exactly margin's runs


@pytest.fixture(scope="module")
def es_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("es") / "straight"
    return train_es(_config(out, iterations=3), progress=False)


def test_es_writes_policies_progress_and_a_pickle_free_checkpoint(es_run):
    assert [r["iteration"] for r in es_run.history] == [0, 1, 2]
    for row in es_run.history:
        assert row["objective_best"] >= row["objective_mean"]
        assert row["objective_best_se"] >= 0 and row["selection_delta"] is not None
    policy = read_policy(es_run.policy_path)
    assert policy.metadata["trainer"]["method"] == "es" and policy.schema is SCHEMA
    assert policy.metadata["validation"]["held_in_problems"] == 3
    folder = es_run.out_dir / "checkpoint"
    state = json.loads((folder / "checkpoint.json").read_text())["state"]
    assert len(state["generations"]) == 3 and len(state["generations"][0]["fitness"]) == 4
    for path in folder.iterdir():
        assert b"\x80\x04\x95" not in path.read_bytes()[:64]


def test_es_resume_equals_uninterrupted_run(es_run, tmp_path, monkeypatch):
    split = tmp_path / "split"
    train_es(_config(split, iterations=2), progress=False)
    with pytest.raises(InvalidInputError, match="resume"):
        train_es(_config(split, iterations=3), progress=False)
    with pytest.raises(InvalidInputError, match="sigma0"):
        train_es(_config(split, iterations=3, sigma0=0.1), resume=True, progress=False)
    resumed = train_es(_config(split, iterations=3), resume=True, progress=False)

    # a crash after generation 1 was logged but before its checkpoint: the row is redone once
    from metalearn.policies.trainers import base, es

    calls = {"n": 0}
    real_save = base.save_checkpoint

    def crashing_save(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # the held-in margin, generation 0, then generation 1
            raise KeyboardInterrupt
        real_save(*args, **kwargs)

    monkeypatch.setattr(base, "save_checkpoint", crashing_save)
    with pytest.raises(KeyboardInterrupt):
        train_es(_config(tmp_path / "crash", iterations=3), progress=False)
    monkeypatch.setattr(base, "save_checkpoint", real_save)
    assert len(ProgressLog(tmp_path / "crash" / "progress.csv", ["iteration"]).rows()) == 2
    crashed = train_es(_config(tmp_path / "crash", iterations=3), resume=True, progress=False)

    expected = read_policy(es_run.last_path).params["weights"]
    for result in (resumed, crashed):
        np.testing.assert_array_equal(read_policy(result.last_path).params["weights"], expected)
        np.testing.assert_array_equal(
            read_policy(result.policy_path).params["weights"], read_policy(es_run.policy_path).params["weights"]
        )
        assert [r["objective_mean"] for r in result.history] == [r["objective_mean"] for r in es_run.history]


def test_keep_the_best_never_keeps_a_policy_that_loses_to_margin(tmp_path, monkeypatch, capsys):
    from metalearn.policies.trainers import es

    def losing(aulc, margin):  # every candidate and every searched mean loses by a point
        return -np.ones(np.asarray(aulc).shape[0]), np.zeros(np.asarray(aulc).shape[0])

    monkeypatch.setattr(es, "_objective", losing)
    result = train_es(_config(tmp_path / "floor", iterations=2), progress=False)
    assert result.best_iteration == -1
    assert result.best_validation["held_in_delta_vs_margin"] == 0.0
    np.testing.assert_array_equal(read_policy(result.policy_path).params["weights"], 0.0)  # margin sampling exactly
    assert np.abs(read_policy(result.last_path).params["weights"]).max() > 0  # the search did move
    assert [r["selection_best"] for r in result.history] == [0.0, 0.0]
    code = main([
        "train", "--method", "es", "--suite", "smoke", "--selection-suite", "smoke", "--iterations", "1",
        "--problems", "2", "--population", "2", "--validation-tasks", "2", "--candidates", "16",
        "--out", str(tmp_path / "cli"),
    ])
    assert code == 0 and "no searched policy beat margin" in capsys.readouterr().out


def test_cli_train_es(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main([
        "train", "--method", "es", "--suite", "smoke", "--selection-suite", "smoke", "--iterations", "1",
        "--problems", "2", "--population", "2", "--validation-tasks", "2", "--candidates", "16", "--no-history",
        "--out", str(out),
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert ("best held-in" in printed or "no searched policy beat margin" in printed)
    assert str(out / "policy.safetensors") in printed
    settings = read_policy(out / "policy.safetensors").metadata["trainer"]["settings"]
    assert settings["history"] is False and "prediction_flips" not in settings["candidate_features"]
    assert settings["population"] == 2 and settings["problems_per_generation"] == 2




# ---------------------------------------------------------------- issue 20: pool@3, rank fitness, mirrored sampling
def test_rank_fitness_counts_every_task_the_same():
    from metalearn.policies.trainers.es import rank_fitness

    margin = np.array([0.50, 0.50, 0.50])
    # candidate 0 wins one task by 30 points and loses two by a hair; candidate 1 wins two by a hair
    aulc = np.array([[0.80, 0.499, 0.499], [0.501, 0.501, 0.4995]])
    mean_delta = (aulc - margin).mean(axis=1)
    ranks = rank_fitness(aulc, margin)
    assert mean_delta[0] > mean_delta[1] and ranks[1] > ranks[0]
    assert rank_fitness(np.tile(margin, (2, 1)), margin) == pytest.approx([0.0, 0.0])  # ties: as good as margin


def test_es_searches_the_pool3_context_with_rank_fitness_and_mirrored_sampling(tmp_path):
    from metalearn.features import POOL_SCHEMA_V3

    config = _config(
        tmp_path / "es3", schema="pool@3", fitness="rank", mirrored=True, iterations=1, selection_tasks=0,
        context_features=("bias", "bought_decay_10", "probability_resolution", "surprise_window"),
    )
    result = train_es(config, progress=False)
    policy = read_policy(result.last_path)
    assert policy.schema == POOL_SCHEMA_V3 and policy.metadata["trainer"]["settings"]["fitness"] == "rank"
    # the first generation is mirrored about the start (zero weights): candidates come in +/- pairs
    state = json.loads((tmp_path / "es3" / "checkpoint" / "checkpoint.json").read_text())
    candidates = np.asarray(state["state"]["generations"][0]["candidates"])
    assert any(np.allclose(candidates[i], -candidates[j]) for i in range(len(candidates)) for j in range(len(candidates)) if i != j)
    with pytest.raises(InvalidInputError, match="unknown context feature"):
        _config(tmp_path / "x", context_features=("bias", "probability_resolution")).validate()  # a pool@3 name on pool@2
    with pytest.raises(InvalidInputError, match="fitness"):
        _config(tmp_path / "y", fitness="median").validate()


def test_the_search_replays_whatever_the_simulations_draw_from_numpys_global_generator():
    # Simulations in this process (--jobs 1) may draw from numpy's global generator; a resume
    # replays the generations without simulating and must be asked the same candidates.
    from metalearn.policies.trainers.cma_search import new_search

    first = new_search(6, seed=3, sigma0=0.5, population=None, mirrored=True)
    history = []
    for generation in range(3):
        np.random.rand(13 * (generation + 1))  # what a simulation may consume
        candidates = first.ask()
        fitness = [float(np.square(x).sum()) for x in candidates]
        first.tell(candidates, fitness)
        history.append((np.asarray(candidates), fitness))
    replay = new_search(6, seed=3, sigma0=0.5, population=None, mirrored=True)
    for candidates, fitness in history:
        asked = np.asarray(replay.ask())
        np.testing.assert_array_equal(asked, candidates)
        replay.tell(list(asked), fitness)
