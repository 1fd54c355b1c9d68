"""The metadata history, the distance trackers and the pool feature schema."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from metalearn.common.geometry import NearestLabeledDistance, knn_reference_distance, typical_distance
from metalearn.exceptions import FeatureSchemaError, InvalidInputError
from metalearn.features import POOL_SCHEMA, POOL_SCHEMA_V2, SCHEMAS, PoolFeatureExtractor, get_schema, window_slope
from metalearn.simulation import ActiveLearningProcess, MetadataHistory
from metalearn.tasks.task import make_task


def _proba(rng, n, c):
    p = rng.random((n, c))
    return p / p.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------- schema
def test_schema_is_named_versioned_and_documented():
    assert POOL_SCHEMA.id == "pool@1"
    assert len(set(POOL_SCHEMA.candidate_features)) == POOL_SCHEMA.n_candidate_features == 16
    assert len(set(POOL_SCHEMA.context_features)) == POOL_SCHEMA.n_context_features == 16
    for name in POOL_SCHEMA.candidate_features + POOL_SCHEMA.context_features:
        assert POOL_SCHEMA.descriptions[name].strip(), name
    assert POOL_SCHEMA.to_dict()["candidate_features"][0] == "margin"
    assert get_schema("pool", 1) is POOL_SCHEMA and get_schema("pool", 2) is POOL_SCHEMA_V2
    assert get_schema("pool").version == max(SCHEMAS["pool"])  # newest version


def test_unknown_or_newer_schema_is_refused():
    with pytest.raises(FeatureSchemaError, match="unknown feature schema"):
        get_schema("images")
    with pytest.raises(FeatureSchemaError, match="newer metalearn"):
        get_schema("pool", 99)


# ---------------------------------------------------------------- history
def test_history_keeps_the_last_window_in_time_order():
    rng = np.random.default_rng(0)
    hist = MetadataHistory(6, np.array([0, 1, 2]), window=3)
    labeled = np.zeros(6, dtype=bool)
    labeled[0] = True
    y_index = np.full(6, -1)
    y_index[0] = 0
    probas = [_proba(rng, 6, 3) for _ in range(5)]
    for p in probas:
        hist.record(p, labeled, y_index, np.array([0, 1, 2]))
    assert hist.n_loops == 5 and hist.n_filled == 3
    window = hist.ordered(hist.proba)
    np.testing.assert_allclose(window, np.stack(probas[-3:]).astype(np.float32))
    np.testing.assert_allclose(hist.ordered(hist.margin, np.array([1, 4])).shape, (3, 2))
    assert hist.nbytes > 0


def test_history_loop_statistics():
    hist = MetadataHistory(4, np.array([0, 1]), window=4)
    labeled = np.array([True, False, False, False])
    y_index = np.array([1, -1, -1, -1])
    p1 = np.array([[0.2, 0.8], [0.9, 0.1], [0.5, 0.5], [0.3, 0.7]])
    p2 = np.array([[0.2, 0.8], [0.1, 0.9], [0.6, 0.4], [0.3, 0.7]])
    hist.record(p1, labeled, y_index, np.array([0, 1]))
    hist.record(p2, labeled, y_index, np.array([0, 1]))
    change = hist.statistic("prediction_change_rate")
    assert change[0] == 0.0
    # predictions of the 3 unlabeled: [0, 0(tie->0), 1] -> [1, 0, 1]: one of three changed
    assert np.isclose(change[1], 1 / 3)
    assert hist.statistic("labeled_accuracy")[-1] == 1.0
    np.testing.assert_allclose(hist.statistic("mean_margin")[-1], np.mean([0.8, 0.2, 0.4]), atol=1e-6)


def test_history_widens_when_a_class_is_discovered():
    hist = MetadataHistory(3, np.array(["a", "c"]), window=3)
    labeled = np.array([True, True, False])
    hist.record(np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]]), labeled, np.array([0, 1, -1]), np.array(["a", "c"]))
    hist.record(
        np.array([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3]]),
        labeled,
        np.array([0, 2, -1]),
        np.array(["a", "b", "c"]),
    )
    window = hist.ordered(hist.proba)
    assert window.shape == (2, 3, 3)
    np.testing.assert_allclose(window[0, 1], [0.2, 0.0, 0.8])  # old loop re-indexed, zero for "b"
    assert hist.ordered(hist.predicted)[0, 1] == 2  # old prediction "c" now at index 2
    with pytest.raises(InvalidInputError, match="no longer knows"):
        hist.record(np.full((3, 2), 0.5), labeled, np.array([0, 1, -1]), np.array(["a", "b"]))


def test_history_rejects_wrong_shapes():
    hist = MetadataHistory(3, np.array([0, 1]), window=2)
    with pytest.raises(InvalidInputError, match="shape"):
        hist.record(np.full((4, 2), 0.5), np.zeros(3, bool), np.full(3, -1), np.array([0, 1]))
    with pytest.raises(InvalidInputError, match="empty"):
        hist.latest(hist.margin)


# ---------------------------------------------------------------- geometry
def test_nearest_labeled_distance_incremental_equals_brute_force():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(500, 7))
    tracker = NearestLabeledDistance(X)
    assert np.all(np.isinf(tracker.distance))
    labeled = np.zeros(500, dtype=bool)
    for _ in range(4):
        labeled[rng.choice(500, 6, replace=False)] = True
        tracker.sync(labeled)
        brute = np.sqrt(((X[:, None] - X[None, labeled]) ** 2).sum(-1).min(axis=1))
        np.testing.assert_allclose(tracker.distance, brute, atol=1e-6)
    labeled[np.flatnonzero(labeled)[0]] = False  # a withdrawn label forces a recompute
    tracker.sync(labeled)
    brute = np.sqrt(((X[:, None] - X[None, labeled]) ** 2).sum(-1).min(axis=1))
    np.testing.assert_allclose(tracker.distance, brute, atol=1e-6)


def test_density_proxy_is_higher_in_dense_regions():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 0.1, size=(300, 2)), rng.normal(5, 2.0, size=(50, 2))])
    knn = knn_reference_distance(X, rng, n_reference=200, n_neighbors=5)
    assert knn.shape == (350,) and np.all(knn >= 0)
    assert np.median(knn[:300]) < np.median(knn[300:])
    assert typical_distance(X, rng) > 0
    assert typical_distance(np.zeros((5, 2)), rng) == 1.0  # all duplicates: a safe scale


def test_window_slope_matches_polyfit():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(5, 4))
    expected = [np.polyfit(np.arange(5), v[:, j], 1)[0] for j in range(4)]
    np.testing.assert_allclose(window_slope(v), expected)
    np.testing.assert_array_equal(window_slope(v[:1]), np.zeros(4))


# ---------------------------------------------------------------- extractor
@pytest.fixture(scope="module")
def digits_run():
    X, y = load_digits(return_X_y=True)
    task = make_task(X, y, model="logreg", regime="cold", label_budget=30, batch_size=5, seed=0)
    process = ActiveLearningProcess(task)
    process.fit()
    extractor = PoolFeatureExtractor(task.X_pool, window=3, label_budget=30, batch_size=5, seed=0)
    rng = np.random.default_rng(0)
    snapshots = []
    for _ in range(5):
        extractor.update(
            process.model.predict_proba(task.X_pool), process.model.classes_, process.labeled, process.label_indices()
        )
        candidates = rng.choice(process.unlabeled_indices, 12, replace=False)
        snapshots.append((candidates, extractor.candidate_features(candidates), extractor.context_features()))
        process.label(candidates[:5])
        process.fit()
    return task, process, extractor, snapshots


def test_features_have_schema_shape_and_stay_in_range(digits_run):
    _, _, _, snapshots = digits_run
    for candidates, cand, ctx in snapshots:
        assert cand.shape == (12, POOL_SCHEMA.n_candidate_features) and cand.dtype == np.float32
        assert ctx.shape == (POOL_SCHEMA.n_context_features,) and ctx.dtype == np.float32
        assert np.all(np.isfinite(cand)) and np.all(np.isfinite(ctx))
        assert cand.min() >= -1 and cand.max() <= 1
        assert ctx.min() >= -1 and ctx.max() <= 1


def test_features_mean_what_the_schema_says(digits_run):
    task, process, extractor, snapshots = digits_run
    col = {n: i for i, n in enumerate(POOL_SCHEMA.candidate_features)}
    ctx = {n: i for i, n in enumerate(POOL_SCHEMA.context_features)}
    candidates, cand, context = snapshots[-1]
    proba = extractor.history.latest(extractor.history.proba)[candidates]
    top2 = np.sort(proba, axis=1)[:, -2:]
    np.testing.assert_allclose(cand[:, col["margin"]], top2[:, 1] - top2[:, 0], atol=1e-6)
    # distance_to_labeled: r / (1 + r) with r the nearest labeled distance over the pool scale
    labeled = np.flatnonzero(extractor.labeled)
    d = np.sqrt(((task.X_pool[candidates, None] - task.X_pool[None, labeled]) ** 2).sum(-1).min(axis=1))
    r = d / extractor.distance_scale
    np.testing.assert_allclose(cand[:, col["distance_to_labeled"]], r / (1 + r), rtol=1e-4)
    # 4 loops of 5 labels were bought before the 5th snapshot, out of a budget of 30
    assert np.isclose(context[ctx["budget_used"]], 20 / 30)
    assert context[ctx["inverse_n_classes"]] == pytest.approx(0.1)
    assert context[ctx["history_fill"]] == 1.0  # window 3, 5 loops recorded
    assert snapshots[0][2][ctx["history_fill"]] == pytest.approx(1 / 3)
    assert np.all(snapshots[0][1][:, col["margin_trend"]] == 0)  # no trend from a single loop


def test_extractor_requires_an_update_first():
    extractor = PoolFeatureExtractor(np.random.default_rng(0).normal(size=(20, 3)), seed=0)
    with pytest.raises(InvalidInputError, match="update"):
        extractor.candidate_features(np.arange(3))
    with pytest.raises(InvalidInputError, match="NaN"):
        extractor.update(np.full((20, 2), np.nan), np.array([0, 1]), np.zeros(20, bool), np.full(20, -1))


def test_rank_of_many_values_equals_the_direct_search():
    from metalearn.features.pool_features import _rank_in

    rng = np.random.default_rng(0)
    reference = np.sort(rng.integers(0, 50, size=6000).astype(float))  # many ties
    values = rng.integers(-5, 55, size=5000).astype(float)
    direct = np.searchsorted(reference, values, side="left") / (reference.size - 1)
    np.testing.assert_array_equal(_rank_in(reference, values), direct)
    np.testing.assert_array_equal(_rank_in(reference, values[:10]), direct[:10])
