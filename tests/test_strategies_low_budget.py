"""The low-budget strategies (TypiClust, ProbCover, the TypiClust-then-margin switch) and the
synthetic generators added for what the validation split exposed."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from metalearn.common.clustering import kmeans_partition, typicality
from metalearn.common.uncertainty import margins
from metalearn.exceptions import InvalidInputError, InvalidTypeError
from metalearn.strategies import ProbCover, TypiClust, TypiClustThenMargin, make_strategy, strategy_names
from metalearn.tasks.synthetic import GENERATORS, imbalanced, many_classes, noisy_labels, variance


def _blobs(n_per: int = 60, centres=((0, 0), (8, 0), (0, 8), (8, 8)), seed: int = 0):
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(c, 0.7, size=(n_per, 2)) for c in centres])
    blob = np.repeat(np.arange(len(centres)), n_per)
    return X, blob


def test_registered_under_their_names():
    assert {"typiclust", "probcover", "typiclust_margin"} <= set(strategy_names())


def test_typicality_is_largest_at_the_centre_of_a_blob():
    X, _ = _blobs(n_per=200, centres=((0, 0),))
    t = typicality(X, 20)
    assert np.linalg.norm(X[np.argmax(t)]) < np.median(np.linalg.norm(X, axis=1))
    assert np.linalg.norm(X[np.argmin(t)]) > np.median(np.linalg.norm(X, axis=1))


def test_kmeans_partition_is_seeded_and_follows_blobs():
    X, blob = _blobs()
    a, b = kmeans_partition(X, 4, seed=3), kmeans_partition(X, 4, seed=3)
    np.testing.assert_array_equal(a, b)
    # Each blob falls into one cluster, and the four clusters differ.
    assert all(np.unique(a[blob == k]).size == 1 for k in range(4))
    assert np.unique(a).size == 4
    # Large pools: fitted on a subsample, every row assigned.
    assert kmeans_partition(X, 4, seed=3, max_fit=50).shape == (X.shape[0],)


def test_typiclust_picks_the_uncovered_blobs_near_their_centres():
    X, blob = _blobs()
    y = np.full(X.shape[0], np.nan)
    y[0] = 0  # blob 0 holds a label
    picks = TypiClust(random_state=0).query(X, y, batch_size=3)
    assert sorted(blob[picks]) == [1, 2, 3]
    centres = np.array([[8, 0], [0, 8], [8, 8]])
    for pick in picks:
        nearest = np.min(np.linalg.norm(centres - X[pick], axis=1))
        assert nearest < 0.7  # typical: within one standard deviation of its blob's centre


def test_typiclust_agrees_with_scikit_activeml_on_which_clusters():
    skpool = pytest.importorskip("skactiveml.pool")
    X, blob = _blobs()
    y = np.full(X.shape[0], np.nan)
    y[[0, 70]] = [0, 1]  # blobs 0 and 1 labeled
    ours = TypiClust(random_state=0).query(X, y, batch_size=2)
    theirs = skpool.TypiClust(random_state=0).query(X, y, batch_size=2)
    assert set(blob[ours]) == set(blob[theirs]) == {2, 3}


def test_typiclust_fills_a_batch_larger_than_the_clusters():
    X, _ = _blobs(n_per=10)
    y = np.full(X.shape[0], np.nan)
    picks = TypiClust(random_state=1).query(X, y, batch_size=30)
    assert np.unique(picks).size == 30


def test_probcover_covers_every_blob_first():
    X, blob = _blobs()
    y = np.full(X.shape[0], np.nan)
    y[0] = 0
    strategy = ProbCover(random_state=0)
    picks = strategy.query(X, y, batch_size=3)
    assert 0 < strategy.delta_ < 8  # a radius inside a blob: balls never reach a neighbour blob
    assert sorted(blob[picks]) == [1, 2, 3]


def test_probcover_falls_back_to_random_when_everything_is_covered():
    X, _ = _blobs(n_per=20, centres=((0, 0),))
    y = np.full(X.shape[0], np.nan)
    picks = ProbCover(random_state=0).query(X, y, batch_size=15)
    assert np.unique(picks).size == 15


@pytest.mark.parametrize("bad", [0.0, 1.5, "x"])
def test_probcover_refuses_a_bad_alpha(bad):
    X, _ = _blobs(n_per=10)
    with pytest.raises(InvalidInputError, match="alpha"):
        ProbCover(alpha=bad).query(X, np.full(X.shape[0], np.nan), batch_size=1)


def test_switch_is_typiclust_then_margin():
    X, blob = _blobs()
    y_true = (blob >= 2).astype(float)
    y = np.full(X.shape[0], np.nan)
    start = [0, 150]
    y[start] = y_true[start]
    clf = LogisticRegression().fit(X[start], y_true[start])
    switch = TypiClustThenMargin(switch_after=4, random_state=5)
    first = switch.query(X, y, clf, batch_size=4)
    np.testing.assert_array_equal(first, TypiClust(random_state=5).query(X, y, clf, batch_size=4))
    y[first] = y_true[first]
    clf = LogisticRegression().fit(X[~np.isnan(y)], y[~np.isnan(y)])
    second = switch.query(X, y, clf, batch_size=3)
    unlabeled = np.flatnonzero(np.isnan(y))
    expected = unlabeled[np.argsort(margins(clf.predict_proba(X[unlabeled])), kind="stable")[:3]]
    assert set(second) == set(expected)


# ---------------------------------------------------------------- the new generators
@pytest.mark.parametrize("name", ["variance", "imbalanced", "many_classes", "noisy_labels"])
def test_new_generators_are_registered_seeded_and_recorded(name):
    gen = GENERATORS[name]
    a = gen(np.random.default_rng(4), 400)
    b = gen(np.random.default_rng(4), 400)
    np.testing.assert_array_equal(a.X.to_numpy(), b.X.to_numpy())
    np.testing.assert_array_equal(a.y, b.y)
    assert a.info["generator"] == name and a.info["params"]
    # info alone regenerates the data
    c = gen(np.random.default_rng(4), 400, **{k: v for k, v in a.info["params"].items() if k != "weights"})
    assert c.X.shape == a.X.shape


def test_variance_classes_share_a_centre_and_differ_in_spread():
    d = variance(np.random.default_rng(0), 3000, n_classes=2, scale_ratio=3.0, mean_shift=0.0, label_noise=0.0, n_noise_dims=0)
    X = d.X.to_numpy()
    spread = [X[d.y == c].std() for c in (0, 1)]
    assert spread[1] / spread[0] == pytest.approx(3.0, rel=0.1)
    assert np.linalg.norm(X[d.y == 0].mean(axis=0) - X[d.y == 1].mean(axis=0)) < 0.5 * spread[1]


def test_imbalanced_has_rare_classes():
    d = imbalanced(np.random.default_rng(1), 2000, n_classes=3, minority_fraction=0.02, n_rare=1)
    counts = np.bincount(d.y)
    assert counts.min() / counts.sum() == pytest.approx(0.02, abs=0.01)


def test_many_classes_and_noisy_labels():
    d = many_classes(np.random.default_rng(2), 1500)
    assert 8 <= np.unique(d.y).size <= 20
    clean = noisy_labels(np.random.default_rng(3), 2000, flip_y=0.0)
    noisy = noisy_labels(np.random.default_rng(3), 2000, flip_y=0.3)
    assert noisy.info["params"]["flip_y"] == 0.3 and clean.info["params"]["flip_y"] == 0.0
    assert np.mean(noisy.y != clean.y) > 0.1  # same draw of records, many labels changed


def test_many_classes_refuses_impossible_overrides():
    with pytest.raises(InvalidInputError, match="n_features"):
        many_classes(np.random.default_rng(0), 500, n_classes=18, n_features=3)


def test_switch_after_must_be_an_integer():
    X, blob = _blobs(n_per=10)
    y = np.full(X.shape[0], np.nan)
    y[[0, 35]] = [0, 1]
    clf = LogisticRegression().fit(X[[0, 35]], [0, 1])
    with pytest.raises(InvalidTypeError, match="switch_after"):
        make_strategy("typiclust_margin", switch_after="3").query(X, y, clf, batch_size=1)
