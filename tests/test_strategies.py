"""Common tests run on every registered strategy, plus behaviour specific to each one.

A new strategy is covered by the common tests as soon as it is registered.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from metalearn.common.uncertainty import margins, normalized_entropy
from metalearn.exceptions import (
    InvalidInputError,
    InvalidTypeError,
    MetalearnError,
    NotFittedClassifierError,
    PoolChangedWarning,
    UnknownNameError,
)
from metalearn.simulation import simulate
from metalearn.strategies import (
    ALBL,
    KCenterGreedy,
    QueryByCommittee,
    make_strategy,
    select_top,
    strategy_names,
)
from metalearn.tasks.task import make_task

ALL = strategy_names()


def test_registry_has_every_classic_strategy():
    expected = {
        "random", "least_confidence", "margin", "entropy", "density_weighted", "kcenter_greedy", "qbc", "albl",
    }
    assert expected <= set(ALL)


def test_unknown_strategy_lists_valid_names():
    with pytest.raises(UnknownNameError, match="margin"):
        make_strategy("smallest_uncertainty_ever")


def test_aliases_resolve():
    assert make_strategy("coreset").name == "kcenter_greedy"
    assert make_strategy("Query-By-Committee").name == "qbc"


# ---------------------------------------------------------------- common tests over all strategies
@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("batch_size", [1, 7])
def test_returns_distinct_unlabeled_indices(name, batch_size, pool):
    X, y, clf = pool
    picks = make_strategy(name, random_state=0).query(X, y, clf, batch_size=batch_size)
    assert picks.shape == (batch_size,)
    assert picks.dtype == np.int64
    assert np.unique(picks).size == batch_size
    assert np.all(np.isnan(y[picks]))


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_picks_over_loops(name):
    X, y = load_iris(return_X_y=True)
    task = make_task(X, y, model="logreg", regime="cold", label_budget=12, batch_size=3, seed=5)
    first = simulate(task, make_strategy(name, random_state=11))
    second = simulate(task, make_strategy(name, random_state=11))
    assert len(first.picks) == 4
    for a, b in zip(first.picks, second.picks):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(first.accuracy, second.accuracy)


@pytest.mark.parametrize("name", ALL)
def test_reusing_a_strategy_object_after_reset_repeats_the_run(name):
    X, y = load_iris(return_X_y=True)
    task = make_task(X, y, model="logreg", regime="warm", n_warm=10, label_budget=6, batch_size=2, seed=1)
    strategy = make_strategy(name, random_state=3)
    first = simulate(task, strategy)
    second = simulate(task, strategy)  # simulate() resets the strategy
    for a, b in zip(first.picks, second.picks):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ALL)
def test_string_labels_with_custom_missing_marker(name):
    X, y_int = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"], dtype=object)[y_int]
    labeled = np.array([0, 1, 2, 50, 51, 52, 100, 101, 102])
    y = np.full(150, None, dtype=object)
    y[labeled] = names[labeled]
    clf = LogisticRegression(max_iter=500).fit(X[labeled], names[labeled])
    picks = make_strategy(name, missing_label=None, random_state=0).query(X, y, clf, batch_size=4)
    assert not np.isin(picks, labeled).any()
    assert np.unique(picks).size == 4


@pytest.mark.parametrize("name", ALL)
def test_pandas_input(name, pool):
    X, y, clf = pool
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    picks = make_strategy(name, random_state=0).query(frame, pd.Series(y), clf, batch_size=2)
    assert np.all(np.isnan(y[picks]))


@pytest.mark.parametrize("name", ALL)
def test_batch_larger_than_unlabeled_pool_is_a_clear_error(name, pool):
    X, y, clf = pool
    n_unlabeled = int(np.isnan(y).sum())
    with pytest.raises(InvalidInputError, match=f"at most {n_unlabeled}"):
        make_strategy(name).query(X, y, clf, batch_size=n_unlabeled + 1)


@pytest.mark.parametrize("name", ALL)
def test_batch_equal_to_unlabeled_pool_takes_everything(name, pool):
    X, y, clf = pool
    rows = np.flatnonzero(np.isnan(y))
    y_small = y.copy()
    y_small[rows[5:]] = 0.0  # leave 5 unlabeled
    clf = LogisticRegression(max_iter=500).fit(X[~np.isnan(y_small)], y_small[~np.isnan(y_small)])
    picks = make_strategy(name, random_state=0).query(X, y_small, clf, batch_size=5)
    assert set(picks.tolist()) == set(rows[:5].tolist())


@pytest.mark.parametrize("name", ALL)
def test_fully_labeled_pool_is_a_clear_error(name, pool):
    X, _, clf = pool
    y = np.zeros(X.shape[0])
    with pytest.raises(InvalidInputError, match="no unlabeled"):
        make_strategy(name).query(X, y, clf, batch_size=1)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_features_are_a_clear_error(name, bad, pool):
    X, y, clf = pool
    X = X.copy()
    X[3, 1] = bad
    with pytest.raises(InvalidInputError, match="NaN or infinite"):
        make_strategy(name).query(X, y, clf)


@pytest.mark.parametrize("name", ALL)
def test_empty_pool_is_a_clear_error(name, pool):
    _, _, clf = pool
    with pytest.raises(InvalidInputError, match="empty"):
        make_strategy(name).query(np.empty((0, 4)), np.empty(0), clf)


@pytest.mark.parametrize("name", [n for n in ALL if make_strategy(n).requires_classifier])
def test_classifier_without_predict_proba_is_a_type_error(name, binary_pool):
    X, y, _, _ = binary_pool
    rows = ~np.isnan(y)
    svc = LinearSVC().fit(X[rows], y[rows])
    with pytest.raises(InvalidTypeError, match="decision_function"):
        make_strategy(name).query(X, y, svc)


@pytest.mark.parametrize("name", [n for n in ALL if make_strategy(n).requires_classifier])
def test_unfitted_classifier_is_a_clear_error(name, pool):
    X, y, _ = pool
    with pytest.raises(NotFittedClassifierError, match="not fitted"):
        make_strategy(name).query(X, y, LogisticRegression())


@pytest.mark.parametrize("name", ALL)
def test_feature_count_change_between_calls_is_an_error(name, pool):
    X, y, clf = pool
    strategy = make_strategy(name, random_state=0)
    strategy.query(X, y, clf)
    with pytest.raises(InvalidInputError, match="features"):
        strategy.query(np.hstack([X, X[:, :1]]), y, clf)


@pytest.mark.parametrize("name", ALL)
def test_pool_size_change_warns_and_starts_fresh(name, pool):
    X, y, clf = pool
    strategy = make_strategy(name, random_state=0)
    strategy.query(X, y, clf)
    with pytest.warns(PoolChangedWarning):
        picks = strategy.query(X[:120], y[:120], clf, batch_size=3)
    assert picks.max() < 120 and np.all(np.isnan(y[picks]))


@pytest.mark.parametrize("name", ALL)
def test_label_count_mismatch_is_an_error(name, pool):
    X, y, clf = pool
    with pytest.raises(InvalidInputError, match="entries but X has"):
        make_strategy(name).query(X, y[:-1], clf)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("batch_size", [0, 2.5, "3", True])
def test_bad_batch_size(name, batch_size, pool):
    X, y, clf = pool
    with pytest.raises(MetalearnError):
        make_strategy(name).query(X, y, clf, batch_size=batch_size)


@pytest.mark.parametrize("name", ALL)
def test_get_params_and_repr(name):
    strategy = make_strategy(name, random_state=4)
    params = strategy.get_params()
    assert params["random_state"] == 4
    assert type(strategy).__name__ in repr(strategy)


@pytest.mark.parametrize("name", ALL)
def test_strategies_follow_scikit_learn_estimator_conventions(name, pool):
    from sklearn.base import clone

    X, y, clf = pool
    strategy = make_strategy(name, random_state=4)
    copy = clone(strategy)
    assert type(copy) is type(strategy) and copy is not strategy
    assert copy.get_params(deep=False).keys() == strategy.get_params(deep=False).keys()
    assert copy.get_params(deep=False)["random_state"] == 4
    strategy.query(X, y, clf, batch_size=2)
    fresh = clone(strategy)  # parameters only: the state of the earlier loop is not copied
    assert not [a for a in vars(fresh) if a.endswith("_") and not a.startswith("__")]
    np.testing.assert_array_equal(fresh.query(X, y, clf, batch_size=2), clone(copy).query(X, y, clf, batch_size=2))
    assert copy.set_params(random_state=7) is copy and copy.get_params()["random_state"] == 7
    with pytest.raises(InvalidInputError, match="invalid parameter 'no_such_param'.*random_state"):
        copy.set_params(no_such_param=1)


def test_get_params_deep_reaches_the_parameters_of_a_nested_estimator():
    from metalearn.strategies import RandomSampling

    class WithModel(RandomSampling):
        def __init__(self, model=None, *, missing_label=np.nan, random_state=None):
            super().__init__(missing_label=missing_label, random_state=random_state)
            self.model = model

    strategy = WithModel(model=LogisticRegression(C=2.0))
    assert strategy.get_params(deep=True)["model__C"] == 2.0
    assert "model__C" not in strategy.get_params(deep=False)
    strategy.set_params(model__C=0.5)
    assert strategy.model.C == 0.5


# ---------------------------------------------------------------- behaviour of specific strategies
def test_select_top_is_exact_and_breaks_ties_at_random():
    scores = np.array([0.1, 0.9, 0.5, 0.9, 0.9, 0.2])
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(30):
        top = select_top(scores, 2, rng)
        assert set(top.tolist()) <= {1, 3, 4}
        seen.add(tuple(sorted(top.tolist())))
    assert len(seen) > 1  # ties are not always resolved the same way
    np.testing.assert_array_equal(select_top(np.array([3.0, 1.0, 2.0]), 3, rng), [0, 2, 1])
    assert select_top(np.array([np.nan, 0.0, 1.0]), 1, rng)[0] == 2


@pytest.mark.parametrize(
    "name, score",
    [
        ("margin", lambda p: -margins(p)),
        ("least_confidence", lambda p: 1 - p.max(axis=1)),
        ("entropy", normalized_entropy),
    ],
)
def test_uncertainty_strategies_pick_the_most_uncertain(name, score, pool):
    X, y, clf = pool
    unlabeled = np.flatnonzero(np.isnan(y))
    s = score(clf.predict_proba(X[unlabeled]))
    picks = make_strategy(name, random_state=0).query(X, y, clf, batch_size=5)
    assert np.allclose(np.sort(score(clf.predict_proba(X[picks])))[::-1], np.sort(s)[::-1][:5])


def test_density_weighting_with_beta_zero_is_entropy_sampling(pool):
    X, y, clf = pool
    a = make_strategy("density_weighted", beta=0.0, random_state=0).query(X, y, clf, batch_size=5)
    b = make_strategy("entropy", random_state=0).query(X, y, clf, batch_size=5)
    assert set(a.tolist()) == set(b.tolist())


def test_density_weighting_rejects_bad_parameters(pool):
    X, y, clf = pool
    with pytest.raises(InvalidInputError, match="uncertainty"):
        make_strategy("density_weighted", uncertainty="variance").query(X, y, clf)
    with pytest.raises(InvalidInputError, match="beta"):
        make_strategy("density_weighted", beta=-1.0).query(X, y, clf)


def test_kcenter_greedy_picks_farthest_points_first():
    X = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 0.0], [10.0, 0.0], [0.2, 0.0]])
    y = np.array([0.0, np.nan, np.nan, np.nan, np.nan])
    picks = KCenterGreedy(random_state=0).query(X, y, None, batch_size=2)
    np.testing.assert_array_equal(picks, [3, 2])  # 10 is farthest from 0; then 5 is farthest from {0, 10}


def test_kcenter_greedy_distance_is_updated_incrementally():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = np.full(200, np.nan)
    y[:5] = 0
    strategy = KCenterGreedy(random_state=0)
    picks = strategy.query(X, y, None, batch_size=4)
    y[picks] = 1
    strategy.query(X, y, None, batch_size=4)
    labeled = np.flatnonzero(~np.isnan(y))
    brute = ((X[:, None, :] - X[None, labeled, :]) ** 2).sum(-1).min(axis=1)
    np.testing.assert_allclose(strategy.nearest_labeled_.sq_distance, brute, atol=1e-9)


@pytest.mark.parametrize("method", ["vote_entropy", "kl_divergence"])
def test_committee_picks_maximal_disagreement(method, binary_pool):
    X, y, _, clf = binary_pool
    strategy = QueryByCommittee(n_members=7, method=method, random_state=0)
    picks = strategy.query(X, y, clf, batch_size=5)
    assert len(strategy.committee_) == 7
    unlabeled = np.flatnonzero(np.isnan(y))
    scores = strategy.disagreement(X[unlabeled])
    assert scores.max() > 0  # bootstrap members do disagree somewhere
    assert np.isclose(np.sort(strategy.disagreement(X[picks]))[0], np.sort(scores)[::-1][4])


def test_committee_vote_entropy_concentrates_near_the_boundary(binary_pool):
    X, y, _, clf = binary_pool
    picks = QueryByCommittee(n_members=7, random_state=0).query(X, y, clf, batch_size=5)
    unlabeled = np.isnan(y)
    assert margins(clf.predict_proba(X[picks])).mean() < margins(clf.predict_proba(X[unlabeled])).mean()


def test_committee_rejects_unknown_method(binary_pool):
    X, y, _, clf = binary_pool
    with pytest.raises(InvalidInputError, match="method"):
        QueryByCommittee(method="majority").query(X, y, clf)


def test_albl_learns_weights_over_loops(binary_pool):
    X, y, y_true, clf = binary_pool
    strategy = ALBL(n_queries=20, random_state=0)
    y = y.copy()
    for _ in range(5):
        picks = strategy.query(X, y, clf, batch_size=2)
        y[picks] = y_true[picks]
        rows = ~np.isnan(y)
        clf = LogisticRegression(max_iter=500).fit(X[rows], y[rows])
    assert strategy.expert_names_[-1] == "uniform"
    assert len(strategy.queried_) == 10
    assert not np.allclose(strategy.log_weights_, 0.0)  # rewards moved the weights
    assert np.all(np.isfinite(strategy.log_weights_))


def test_albl_rejects_itself_as_expert(pool):
    X, y, clf = pool
    with pytest.raises(InvalidInputError, match="own expert"):
        ALBL(experts=("albl",)).query(X, y, clf)


def test_random_needs_no_classifier(pool):
    X, y, _ = pool
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        picks = make_strategy("random", random_state=0).query(X, y, None, batch_size=3)
    assert picks.size == 3
