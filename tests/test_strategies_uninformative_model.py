"""Strategies with a task model whose probabilities carry no information (issue 20).

scikit-learn's ``HistGradientBoostingClassifier`` at its defaults needs 20 records per leaf, so
below about 40 labels it gives every record the labeled class shares. Its accuracy is then that
of predicting the labeled majority, which rests only on the labeled class proportions. Before
issue 20 the released ``default`` picked representative records there, balanced the classes,
and lost 12 points of AULC to random sampling on ``breast_cancer`` (the minority class won the
tie). What we ship must do no worse than random sampling with such a model: the released
policies and the tuned switch rules pick uniformly at random while the model ranks no record
above another (``uninformative_model="random"``), and the uncertainty strategies break their
all-equal scores at random.

The model-free published strategies (TypiClust, ProbCover, k-center greedy) and information
density keep their definitions; ``scripts/bench_uninformative_model.py`` measures them all.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.dummy import DummyClassifier
from sklearn.preprocessing import StandardScaler

from metalearn.common.uncertainty import same_for_every_row
from metalearn.exceptions import InvalidInputError
from metalearn.policies.names import released_policy_names
from metalearn.policies.strategy import PolicyStrategy
from metalearn.simulation.loop import simulate
from metalearn.simulation.metrics import area_under_learning_curve
from metalearn.strategies import make_strategy
from metalearn.strategies.base import QueryStrategy
from metalearn.tasks.models import ModelFactory
from metalearn.tasks.task import make_task

QUERYING_POLICIES = released_policy_names()
SWITCH_RULES = ["typiclust_margin", "probcover_margin"]


def _shipped(name: str, seed: int, rule: str = "random") -> QueryStrategy:
    if name in QUERYING_POLICIES:
        return PolicyStrategy(name, label_budget=60, uninformative_model=rule, random_state=seed)
    if name in SWITCH_RULES:
        return make_strategy(name, uninformative_model=rule, random_state=seed)
    return make_strategy(name, random_state=seed)


@pytest.fixture(scope="module")
def breast_cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def test_same_for_every_row():
    assert same_for_every_row(np.tile([[0.3, 0.7]], (5, 1)))
    assert same_for_every_row(np.array([[0.2, 0.8]]))  # one row ranks nothing
    assert same_for_every_row(np.tile([[0.3, 0.7]], (5, 1)) + 1e-12)
    varied = np.tile([[0.3, 0.7]], (5, 1))
    varied[3] = [0.31, 0.69]
    assert not same_for_every_row(varied)


@pytest.mark.parametrize("name", QUERYING_POLICIES + SWITCH_RULES)
def test_picks_keep_the_pools_class_shares_when_the_model_predicts_a_constant(name, breast_cancer):
    """Over 20 seeds of 20 picks each, the picked class shares are the pool's (random), not balanced."""
    X, y = breast_cancer
    pool_share = float(np.mean(y == 0))  # malignant, the minority: 37%
    shares = []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        labeled = np.concatenate([rng.choice(np.flatnonzero(y == c), 3, replace=False) for c in (0, 1)])
        y_obs = np.full(y.shape[0], np.nan)
        y_obs[labeled] = y[labeled]
        clf = DummyClassifier(strategy="prior").fit(X[labeled], y[labeled])
        strategy = _shipped(name, seed)
        picks = strategy.query(X, y_obs, clf, batch_size=20)
        assert strategy.last_uninformative_
        assert np.unique(picks).size == 20 and np.isnan(y_obs[picks]).all()
        shares.append(np.mean(y[picks] == 0))
    # 400 uniform picks: standard error 0.024 around the pool's share.
    assert abs(np.mean(shares) - pool_share) < 0.08


def test_an_informative_model_is_not_affected(breast_cancer):
    """With a model that ranks records, "random" and "score" pick the same records."""
    from sklearn.linear_model import LogisticRegression

    X, y = breast_cancer
    labeled = np.array([0, 1, 2, 19, 20, 21])
    y_obs = np.full(y.shape[0], np.nan)
    y_obs[labeled] = y[labeled]
    clf = LogisticRegression().fit(X[labeled], y[labeled])
    for name in ["default", "typiclust_margin"]:
        a = _shipped(name, 0, "random").query(X, y_obs, clf, batch_size=5)
        b = _shipped(name, 0, "score").query(X, y_obs, clf, batch_size=5)
        np.testing.assert_array_equal(a, b)


def _aulc_against_random(strategy_of_seed, n_seeds: int = 10) -> tuple[float, float]:
    """Mean AULC (points) of a strategy and of random sampling on the same breast_cancer tasks:
    scikit-learn's gradient boosting at its defaults, cold start, batch 5, 60 labels. (Binary: least confidence and entropy rank as margin does.)"""
    X, y = load_breast_cancer(return_X_y=True)
    ours, rand = [], []
    for seed in range(n_seeds):
        task = make_task(X, y, model=ModelFactory("hgb_sklearn", random_state=seed), regime="cold",
                         test_size=0.4, label_budget=60, batch_size=5, seed=seed)
        for strategy, out in ((strategy_of_seed(seed), ours), (make_strategy("random", random_state=seed), rand)):
            result = simulate(task, strategy)
            out.append(100 * area_under_learning_curve(result.n_bought, result.accuracy, 60))
    return float(np.mean(ours)), float(np.mean(rand))


@pytest.mark.parametrize("name", ["default", *SWITCH_RULES, "margin"])
def test_no_worse_than_random_with_gradient_boosting_at_its_defaults(name):
    ours, rand = _aulc_against_random(lambda seed: _shipped(name, seed))
    assert ours >= rand - 1.5


def test_scoring_a_constant_models_pool_is_what_lost_to_random():
    """The behaviour the guard replaces, in the same setting: the policy scoring anyway loses
    points to random sampling (it balanced the labeled classes; the minority won the tie)."""
    ours, rand = _aulc_against_random(lambda seed: _shipped("default", seed, rule="score"))
    assert ours < rand - 3.0


def test_unknown_rule_is_refused(breast_cancer):
    X, y = breast_cancer
    y_obs = np.full(y.shape[0], np.nan)
    y_obs[[0, 19]] = y[[0, 19]]
    clf = DummyClassifier(strategy="prior").fit(X[[0, 19]], y[[0, 19]])
    for strategy in (PolicyStrategy("default", uninformative_model="skip"),
                     make_strategy("typiclust_margin", uninformative_model="skip")):
        with pytest.raises(InvalidInputError, match="uninformative_model"):
            strategy.query(X, y_obs, clf, batch_size=2)


def test_a_stream_keeps_records_at_random_while_the_model_predicts_a_constant(breast_cancer):
    """Streaming scores every record the same while the model is constant, so which arrivals are
    kept depends on the seed alone, not on the records (the randomized quantile keeps them at
    the paced rate); scoring instead, the records decide."""
    from metalearn.streaming import StreamingPolicy

    X, y = breast_cancer
    clf = DummyClassifier(strategy="prior").fit(X[[0, 1, 19, 20]], y[[0, 1, 19, 20]])
    other = np.random.default_rng(1).permutation(X.shape[0])  # other records in the same slots

    def decisions(rule: str, rows: np.ndarray) -> list[bool]:
        stream = StreamingPolicy(PolicyStrategy("default", uninformative_model=rule), label_budget=40,
                                 expected_length=200, random_state=0)
        out = [stream.decide(X[i], clf) for i in rows[:200]]
        assert stream.scorer_.last_uninformative
        return out

    order = np.arange(X.shape[0])
    assert decisions("random", order) == decisions("random", other)
    assert decisions("score", order) != decisions("score", other)
