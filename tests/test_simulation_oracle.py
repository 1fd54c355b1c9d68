"""The greedy look-ahead oracle: gains, warm start, fallbacks, and the oracle strategy."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_classification
from threadpoolctl import threadpool_limits

from metalearn.common.uncertainty import margins
from metalearn.exceptions import InvalidInputError
from metalearn.simulation import simulate
from metalearn.simulation.metrics import test_scores as _test_scores
from metalearn.simulation.oracle import LookaheadOracle, OracleGains, OracleStrategy
from metalearn.strategies import RandomSampling, strategy_names
from metalearn.tasks.models import ModelFactory
from metalearn.tasks.task import make_task

EPS = float(np.finfo(np.float64).eps)


def _task(n_classes=3, model="logreg", seed=0, n=300, regime="warm", **kw):
    X, y = make_classification(
        n_samples=n, n_features=6, n_informative=4, n_redundant=0, n_classes=n_classes,
        n_clusters_per_class=1, class_sep=1.2, random_state=seed,
    )
    return make_task(X, y, model=model, regime=regime, n_warm=12, seed=seed, **kw)


def _mask(task, indices=None):
    mask = np.zeros(task.n_pool, dtype=bool)
    mask[task.initial_labeled if indices is None else indices] = True
    return mask


def _brute_force(task, mask, idx, metric):
    """(score, log-loss) of a fresh task model trained on the labeled records (+ idx)."""
    rows = np.flatnonzero(mask)
    if idx is not None:
        rows = np.append(rows, idx)
    model = task.model().fit(task.X_pool[rows], task.y_pool[rows])
    accuracy, macro_f1 = _test_scores(task.y_test, model.predict(task.X_test), task.n_classes)
    full = np.zeros((task.y_test.size, task.n_classes))
    full[:, model.classes_] = model.predict_proba(task.X_test)
    loss = -np.mean(np.log(np.clip(full[np.arange(task.y_test.size), task.y_test], EPS, 1.0)))
    return (accuracy if metric == "accuracy" else macro_f1), loss


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1"])
def test_gains_match_brute_force_fresh_fits(metric):
    task = _task(regime="cold")  # one label per class: many classes unpredicted, F1 zero-division paths
    mask = _mask(task)
    oracle = LookaheadOracle(task, metric=metric, warm_start=False)
    cand = oracle.candidates(mask, None, np.random.default_rng(0), n_candidates=6)
    result = oracle.gains(mask, cand)
    base_score, base_loss = _brute_force(task, mask, None, metric)
    assert result.base_score == pytest.approx(base_score, abs=1e-12)
    assert result.base_log_loss == pytest.approx(base_loss, rel=1e-9)
    for j, idx in enumerate(cand):
        score, loss = _brute_force(task, mask, idx, metric)
        assert result.gain[j] == pytest.approx(score - base_score, abs=1e-12)
        assert result.log_loss_gain[j] == pytest.approx(base_loss - loss, rel=1e-9, abs=1e-12)
    assert np.ptp(result.gain) > 0 or np.ptp(result.log_loss_gain) > 0  # not all the same


def test_warm_start_gains_close_to_fresh_fits():
    task = _task(n=400)
    rng = np.random.default_rng(3)
    n_test = task.y_test.size
    agree = 0
    n_states = 6
    for state in range(n_states):
        mask = _mask(task)
        mask[rng.choice(np.flatnonzero(~mask), 5 * state, replace=False)] = True
        cand = LookaheadOracle(task).candidates(mask, None, rng, n_candidates=12)
        warm = LookaheadOracle(task, warm_start=True).gains(mask, cand)
        fresh = LookaheadOracle(task, warm_start=False).gains(mask, cand)
        assert warm.base_score == fresh.base_score
        # Same convex optimum up to lbfgs's tolerance: at most a couple of test records flip.
        assert np.max(np.abs(warm.gain - fresh.gain)) <= 2.0 / n_test + 1e-12
        assert np.max(np.abs(warm.log_loss_gain - fresh.log_loss_gain)) < 0.01
        # The warm-start choice is (near) optimal for the fresh-fit oracle.
        chosen = int(np.argmax(warm.ranking_score()))
        assert fresh.gain[chosen] >= fresh.gain.max() - 1.0 / n_test - 1e-12
        agree += chosen == int(np.argmax(fresh.ranking_score()))
    assert agree >= n_states // 2 + 1


def test_oracle_strategy_picks_the_best_candidate():
    task = _task()
    strategy = OracleStrategy(task, n_candidates=8, random_state=1)
    y = np.full(task.n_pool, np.nan)
    y[task.initial_labeled] = task.y_pool[task.initial_labeled]
    clf = task.model().fit(task.X_pool[task.initial_labeled], task.y_pool[task.initial_labeled])
    pick = strategy.query(task.X_pool, y, clf, batch_size=1)
    result = strategy.last_gains_
    assert len(result) == 8
    assert pick[0] == result.best == result.candidates[np.argmax(result.ranking_score())]
    # The pick is the best for a brute-force recomputation too (warm start may move a record).
    mask = _mask(task)
    base, _ = _brute_force(task, mask, None, "accuracy")
    brute = np.array([_brute_force(task, mask, i, "accuracy")[0] - base for i in result.candidates])
    assert brute[result.candidates == pick[0]][0] >= brute.max() - 1.0 / task.y_test.size - 1e-12


def test_ranking_is_lexicographic_gain_then_log_loss():
    gains = OracleGains(
        candidates=np.array([10, 11, 12, 13]),
        gain=np.array([0.02, 0.05, 0.05, -0.01]),
        log_loss_gain=np.array([50.0, -0.3, 0.2, 40.0]),
        base_score=0.5,
    )
    assert list(gains.order()) == [2, 1, 0, 3]
    assert list(np.argsort(-gains.ranking_score(), kind="stable")) == [2, 1, 0, 3]
    assert gains.best == 12


def test_candidates_mixed_random_and_few():
    task = _task()
    mask = _mask(task)
    clf = task.model().fit(task.X_pool[mask], task.y_pool[mask])
    proba = clf.predict_proba(task.X_pool)
    oracle = LookaheadOracle(task, n_candidates=10)
    cand = oracle.candidates(mask, proba, np.random.default_rng(0))
    assert cand.size == 10 and np.unique(cand).size == 10 and not mask[cand].any()
    unl = np.flatnonzero(~mask)
    smallest = np.sort(margins(proba[unl]))[:5]
    assert np.allclose(np.sort(margins(proba[cand[:5]])), smallest)
    # Unlabeled-rows-only probabilities give the same candidates.
    same = oracle.candidates(mask, proba[unl], np.random.default_rng(0))
    assert np.array_equal(cand, same)
    rand = LookaheadOracle(task, n_candidates=10, candidate_selection="random").candidates(mask, None, np.random.default_rng(0))
    assert rand.size == 10 and not mask[rand].any()
    almost_all = np.ones(task.n_pool, dtype=bool)
    almost_all[[3, 7, 9]] = False
    assert np.array_equal(oracle.candidates(almost_all, None, np.random.default_rng(0)), [3, 7, 9])
    with pytest.raises(InvalidInputError):
        oracle.candidates(mask, proba[:5], np.random.default_rng(0))


@pytest.mark.parametrize(
    "model", [ModelFactory("logreg", random_state=0), ModelFactory("mlp", random_state=0, params={"hidden_layer_sizes": (8,), "max_iter": 60})]
)
def test_unknown_class_candidate_falls_back_to_a_fresh_fit(model):
    task = _task(model=model)
    # Labeled: three records of classes 0 and 1 each, none of class 2.
    labeled = np.concatenate([np.flatnonzero(task.y_pool == c)[:3] for c in (0, 1)])
    mask = _mask(task, labeled)
    new_class = np.flatnonzero(task.y_pool == 2)[:2]
    known = np.flatnonzero((task.y_pool == 0) & ~mask)[:1]
    cand = np.concatenate([new_class, known])
    warm = LookaheadOracle(task, warm_start=True).gains(mask, cand)
    fresh = LookaheadOracle(task, warm_start=False).gains(mask, cand)
    # A fresh fit either way for the new class: identical results.
    assert np.array_equal(warm.gain[:2], fresh.gain[:2])
    assert np.array_equal(warm.log_loss_gain[:2], fresh.log_loss_gain[:2])
    # Learning the missing class removes the eps-probability test records: a large log-loss decrease.
    assert np.all(warm.log_loss_gain[:2] > 1.0)
    assert np.all(np.isfinite(warm.gain))


def test_single_class_labeled_set_uses_a_constant_base():
    task = _task(n_classes=2)
    mask = _mask(task, np.flatnonzero(task.y_pool == 0)[:2])
    cand = np.flatnonzero(task.y_pool == 1)[:2]
    result = LookaheadOracle(task).gains(mask, cand)
    assert result.base_score == pytest.approx(np.mean(task.y_test == 0))
    assert np.all(result.gain > 0)


def test_oracle_beats_random_sampling_on_an_easy_task():
    diffs = []
    for seed in range(3):
        task = _task(n_classes=2, seed=seed, n=260, regime="cold", label_budget=16)
        # One BLAS thread: the simulator's own refits on a few labels are ~30x slower with
        # several threads on a busy machine (the oracle limits its own fits already).
        with threadpool_limits(limits=1, user_api="blas"):
            oracle = simulate(task, OracleStrategy(task, n_candidates=16, random_state=seed))
            random = simulate(task, RandomSampling(random_state=seed))
        assert oracle.strategy == "oracle" and oracle.n_bought[-1] == 16
        diffs.append(oracle.aulc_accuracy - random.aulc_accuracy)
    assert np.mean(diffs) > 0.01


def test_same_random_state_same_queries():
    task = _task(label_budget=6, batch_size=2)
    with threadpool_limits(limits=1, user_api="blas"):
        a = simulate(task, OracleStrategy(task, n_candidates=6, random_state=7))
        b = simulate(task, OracleStrategy(task, n_candidates=6, random_state=7))
    assert all(np.array_equal(p, q) for p, q in zip(a.picks, b.picks))
    assert np.array_equal(a.accuracy, b.accuracy)
    mask = _mask(task)
    c1 = LookaheadOracle(task, random_state=5).candidates(mask)
    c2 = LookaheadOracle(task, random_state=5).candidates(mask)
    assert np.array_equal(c1, c2)


@pytest.mark.parametrize("batch_size", [4, 9])
def test_oracle_strategy_returns_distinct_unlabeled_indices(batch_size):
    task = _task()
    y = np.full(task.n_pool, np.nan)
    y[task.initial_labeled] = task.y_pool[task.initial_labeled]
    clf = task.model().fit(task.X_pool[task.initial_labeled], task.y_pool[task.initial_labeled])
    strategy = OracleStrategy(task, n_candidates=5, random_state=0, batch_mode="top_k")
    picks = strategy.query(task.X_pool, y, clf, batch_size=batch_size)
    assert picks.shape == (batch_size,) and np.unique(picks).size == batch_size
    assert np.isnan(y[picks]).all()
    assert len(strategy.last_gains_) == max(5, batch_size)
    # Top-k of single-record ranking scores, best first.
    scores = dict(zip(strategy.last_gains_.candidates.tolist(), strategy.last_gains_.ranking_score()))
    picked = np.array([scores[i] for i in picks.tolist()])
    assert np.all(np.diff(picked) <= 0)
    assert picked.min() >= np.sort(strategy.last_gains_.ranking_score())[-batch_size]


def test_oracle_strategy_rejects_another_pool():
    task = _task()
    y = np.full(task.n_pool, np.nan)
    y[task.initial_labeled] = task.y_pool[task.initial_labeled]
    clf = task.model().fit(task.X_pool[task.initial_labeled], task.y_pool[task.initial_labeled])
    strategy = OracleStrategy(task, random_state=0)
    with pytest.raises(InvalidInputError, match="shape"):
        strategy.query(task.X_pool[:-1], y[:-1], clf, batch_size=1)
    with pytest.raises(InvalidInputError, match="shape"):
        strategy.query(task.X_pool[:, :-1], y, clf, batch_size=1)
    with pytest.raises(InvalidInputError, match="pool"):
        strategy.query(task.X_pool + 1.0, y, clf, batch_size=1)
    # Still usable on the right pool afterwards.
    assert strategy.query(task.X_pool, y, clf, batch_size=1).shape == (1,)


def test_invalid_arguments_and_not_registered():
    task = _task()
    mask = _mask(task)
    with pytest.raises(InvalidInputError):
        LookaheadOracle(task, metric="auc").gains(mask, np.flatnonzero(~mask)[:2])
    with pytest.raises(InvalidInputError):
        LookaheadOracle(task).gains(mask, np.flatnonzero(mask)[:1])  # already labeled
    with pytest.raises(InvalidInputError):
        LookaheadOracle(task).gains(np.zeros(task.n_pool, dtype=bool), [0])
    assert "oracle" not in strategy_names()


def test_sequential_batches_reevaluate_given_earlier_picks():
    from sklearn.datasets import load_breast_cancer

    from metalearn.simulation.oracle import LookaheadOracle, OracleStrategy
    from metalearn.tasks.task import make_task

    X, y = load_breast_cancer(return_X_y=True)
    task = make_task(X, y, model="logreg", regime="cold", label_budget=9, batch_size=3, max_pool=150, seed=2)
    y_obs = np.full(task.n_pool, np.nan)
    y_obs[task.initial_labeled] = task.y_pool[task.initial_labeled]
    clf = task.model().fit(task.X_pool[task.initial_labeled], task.y_pool[task.initial_labeled])
    strategy = OracleStrategy(task, n_candidates=8, random_state=0, warm_start=False)
    picks = strategy.query(task.X_pool, y_obs, clf, batch_size=3)
    assert np.unique(picks).size == 3 and np.all(np.isnan(y_obs[picks]))
    # The second pick is the best of the remaining candidates once the first is labeled.
    cand = strategy.last_gains_.candidates
    labeled = ~np.isnan(y_obs)
    labeled[picks[0]] = True
    second = LookaheadOracle(task, warm_start=False).gains(labeled, cand[cand != picks[0]])
    assert picks[1] in second.candidates[second.ranking_score() == second.ranking_score().max()]
    top_k = OracleStrategy(task, n_candidates=8, random_state=0, warm_start=False, batch_mode="top_k")
    assert top_k.query(task.X_pool, y_obs, clf, batch_size=3).size == 3
