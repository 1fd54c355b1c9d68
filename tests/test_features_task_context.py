"""The ``pool@3`` schema's task-describing context (issue 20): bounded, meaningful, and kept across loops.

The environment, the episodes and the deployed strategy see the same ``pool@3`` features by
construction (tests/test_features_registry.py runs over every registered schema); these tests
check what the new context says about a task and a model.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs, make_circles
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from metalearn.features import POOL_SCHEMA_V2, POOL_SCHEMA_V3, TaskContextFeatureExtractor
from metalearn.features.task_context_features import CONTEXT_GROUPS

NAMES = POOL_SCHEMA_V3.context_features


def _run(X, y, model, loops=6, batch=5, seed=0):
    rng = np.random.default_rng(seed)
    labeled = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        labeled[rng.choice(np.flatnonzero(y == c))] = True
    extractor = TaskContextFeatureExtractor(X, window=4, label_budget=60, batch_size=batch, seed=seed)
    contexts = []
    for _ in range(loops):
        model.fit(X[labeled], y[labeled])
        extractor.update(model.predict_proba(X), model.classes_, labeled, np.where(labeled, y, -1))
        contexts.append(dict(zip(NAMES, extractor.context_features().astype(float))))
        labeled[rng.choice(np.flatnonzero(~labeled), batch, replace=False)] = True
    return extractor, contexts


def test_schema_extends_pool2_and_groups_cover_the_new_features():
    assert POOL_SCHEMA_V3.candidate_features == POOL_SCHEMA_V2.candidate_features
    added = NAMES[len(POOL_SCHEMA_V2.context_features):]
    assert NAMES[: len(POOL_SCHEMA_V2.context_features)] == POOL_SCHEMA_V2.context_features
    assert sorted(added) == sorted(n for group in CONTEXT_GROUPS.values() for n in group)
    assert all(POOL_SCHEMA_V3.descriptions[n] for n in added)


def test_context_is_bounded_and_finite():
    X, y = make_blobs(300, centers=3, n_features=4, random_state=0)
    _, contexts = _run(X, y, LogisticRegression(max_iter=300))
    values = np.array([list(c.values()) for c in contexts])
    assert np.all(np.isfinite(values)) and values.min() >= -1.0 and values.max() <= 1.0


def test_uninformative_model_shows_as_zero_probability_resolution():
    # scikit-learn's default HistGradientBoosting needs 20 records per leaf: below ~40 labels it
    # gives every record the same probabilities; a logistic regression never does.
    X, y = make_blobs(400, centers=2, n_features=5, random_state=1)
    _, constant = _run(X, y, HistGradientBoostingClassifier(max_iter=5, random_state=0))
    _, smooth = _run(X, y, LogisticRegression(max_iter=300))
    assert all(c["probability_resolution"] == 0.0 for c in constant)
    assert all(c["probability_resolution"] > 0.9 for c in smooth)


def test_cluster_purity_is_higher_where_clusters_follow_the_labels():
    blobs_X, blobs_y = make_blobs(600, centers=[[-6, 0], [6, 0]], cluster_std=1.0, random_state=2)
    ring_X, ring_y = make_circles(600, factor=0.6, noise=0.25, random_state=2)
    _, blobs = _run(blobs_X, blobs_y, LogisticRegression(max_iter=300), loops=8)
    _, ring = _run(ring_X, ring_y, LogisticRegression(max_iter=300), loops=8)
    assert blobs[-1]["cluster_purity"] > ring[-1]["cluster_purity"]


def test_surprise_counts_the_previous_models_mistakes_on_the_bought_records():
    X, y = make_blobs(300, centers=2, n_features=3, random_state=3)
    extractor, contexts = _run(X, y, LogisticRegression(max_iter=300), loops=5)
    assert contexts[0]["surprise"] == 0.0  # nothing bought yet
    rows = np.asarray(extractor.feedback)
    assert rows.shape == (4, 6) and np.all(rows[:, 0] == 5)  # four purchases of 5 records
    assert np.all(rows[:, 1] <= rows[:, 0]) and np.all(rows[:, 2] + rows[:, 4] == rows[:, 0])
    assert contexts[-1]["surprise_window"] == pytest.approx(rows[:, 1].sum() / rows[:, 0].sum(), abs=1e-6)


def test_feedback_survives_saving_and_restoring_the_history():
    X, y = make_blobs(200, centers=2, n_features=3, random_state=4)
    extractor, _ = _run(X, y, LogisticRegression(max_iter=300), loops=4)
    arrays, meta = extractor.history_state()
    restored = TaskContextFeatureExtractor(X, window=4, label_budget=60, batch_size=5, seed=0)
    restored.load_history(arrays, meta)
    assert list(restored.feedback) == list(extractor.feedback)
    # A tampered feedback log is dropped row by row, never trusted.
    restored.load_history(arrays, {**meta, "feedback": [[1, 2, 3], "x", [-1, 0, 0, 0, 0, 0], [5, 1, 2, 1, 3, 0]]})
    assert list(restored.feedback) == [(5, 1, 2, 1, 3, 0)]
