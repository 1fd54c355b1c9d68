"""Drop-in integrations, each run inside the real library's own loop; records-not-rows history.

The libraries come with the ``integrations`` extra (also in ``dev``); a test whose library is
missing is skipped with the reason.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from metalearn import load_policy
from metalearn.exceptions import InvalidInputError, PoolChangedWarning
from metalearn.features import POOL_SCHEMA
from metalearn.policies.file import read_policy
from metalearn.policies.strategy import PolicyStrategy, match_records, record_keys, row_keys

N_LOOPS = 5

# small-text 1.4 calls its own deprecated helpers internally.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:small_text.*")


@pytest.fixture(scope="module")
def policy_path():
    """The released ``default`` policy (policies/default.safetensors): each adapter runs it."""
    return read_policy("default").path


@pytest.fixture
def data():
    X, y = make_classification(n_samples=240, n_features=6, n_informative=4, n_classes=3, random_state=3)
    return X, y


def _initial(y_true, per_class=2):
    return np.concatenate([np.flatnonzero(y_true == c)[:per_class] for c in np.unique(y_true)])


# ------------------------------------------------------------------------------ records, not rows
def test_row_keys_are_distinct_stable_and_follow_rows():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 7))
    X[10] = X[20]  # duplicated records still get distinct keys
    keys = row_keys(X)
    assert keys.dtype == np.uint64 and np.unique(keys).size == 500
    perm = rng.permutation(500)
    matched = match_records(keys, row_keys(X[perm]))
    twins = np.isin(perm, [10, 20])  # identical records are interchangeable: either copy matches either
    np.testing.assert_array_equal(matched[~twins], perm[~twins])
    assert sorted(matched[twins]) == [10, 20]
    assert row_keys(-0.0 * np.ones((1, 3)))[0] == row_keys(np.zeros((1, 3)))[0]
    new = match_records(keys, row_keys(rng.normal(size=(3, 7))))
    np.testing.assert_array_equal(new, [-1, -1, -1])
    with pytest.raises(InvalidInputError, match="unique"):
        record_keys(["a", "b", "a"], 3)


def test_a_shrinking_reordered_pool_keeps_each_records_history(policy_path, data):
    X, y_true = data
    y = np.full(X.shape[0], np.nan)
    start = _initial(y_true)
    y[start] = y_true[start]
    strategy = load_policy(policy_path, random_state=0)
    for _ in range(3):
        labeled = ~np.isnan(y)
        idx = strategy.query(X, y, LogisticRegression(max_iter=500).fit(X[labeled], y[labeled]), batch_size=4)
        y[idx] = y_true[idx]
    history = strategy.extractor_.history
    keep = np.random.default_rng(1).permutation(X.shape[0])[:170]  # 70 records leave, the rest reorder
    margins_before = history.ordered(history.margin, keep).copy()
    proba_before = history.ordered(history.proba, keep).copy()
    density_before = strategy.extractor_.density[keep].copy()

    X2, y2 = X[keep], y[keep]
    labeled = ~np.isnan(y2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PoolChangedWarning)  # a policy does not reset on a size change
        strategy.query(X2, y2, LogisticRegression(max_iter=500).fit(X2[labeled], y2[labeled]), batch_size=4)
    history = strategy.extractor_.history
    assert history.n_loops == 4 and history.n_records == 170
    np.testing.assert_array_equal(history.ordered(history.margin)[:-1], margins_before)  # 3 earlier loops + this one
    np.testing.assert_array_equal(history.ordered(history.proba)[:-1], proba_before)
    np.testing.assert_array_equal(strategy.extractor_.density, density_before)
    exact = np.sqrt(((X2[:, None, :] - X2[labeled][None]) ** 2).sum(axis=2)).min(axis=1)
    np.testing.assert_allclose(strategy.extractor_.nearest_labeled.distance, exact, atol=1e-6)


def test_new_records_start_with_an_empty_history(policy_path, data):
    X, y_true = data
    old, new = X[:200], X[200:]
    y = np.full(200, np.nan)
    start = _initial(y_true[:200])
    y[start] = y_true[start]
    strategy = load_policy(policy_path, random_state=0)
    clf = LogisticRegression(max_iter=500).fit(old[start], y[start])
    for _ in range(2):
        strategy.query(old, y, clf, batch_size=2)
    X2 = np.vstack([new, old])  # 40 new records in front
    y2 = np.concatenate([np.full(40, np.nan), y])
    strategy.query(X2, y2, clf, batch_size=2)
    history = strategy.extractor_.history
    window = history.ordered(history.margin)
    assert window.shape == (3, 240)
    # A new record's window holds its first values only: no trend, no flips.
    np.testing.assert_array_equal(window[:, :40], np.broadcast_to(window[-1, :40], (3, 40)))
    fresh_features = strategy.extractor_.candidate_features(np.arange(40))
    flips, trend = POOL_SCHEMA.candidate_features.index("prediction_flips"), POOL_SCHEMA.candidate_features.index("margin_trend")
    assert np.all(fresh_features[:, flips] == 0) and np.all(fresh_features[:, trend] == 0)
    assert np.isfinite(strategy.extractor_.nearest_labeled.distance).all()


def test_record_ids_match_records_and_a_disjoint_pool_starts_over(policy_path, data):
    X, y_true = data
    y = np.full(240, np.nan)
    start = _initial(y_true)
    y[start] = y_true[start]
    clf = LogisticRegression(max_iter=500).fit(X[start], y[start])
    ids = np.array([f"r{i}" for i in range(240)])
    strategy = load_policy(policy_path, random_state=0)
    strategy.query(X, y, clf, batch_size=2, record_ids=ids)
    before = strategy.extractor_.history.ordered(strategy.extractor_.history.margin).copy()
    order = np.arange(240)[::-1]
    strategy.query(X[order], y[order], clf, batch_size=2, record_ids=ids[order])
    after = strategy.extractor_.history.ordered(strategy.extractor_.history.margin)
    np.testing.assert_array_equal(after[0], before[0][order])
    other = np.random.default_rng(5).normal(size=(50, 6))
    with pytest.warns(PoolChangedWarning, match="none of the"):
        strategy.query(other, np.full(50, np.nan), clf, batch_size=2)
    assert strategy.extractor_.history.n_loops == 1


def test_history_state_round_trip_follows_records(policy_path, data):
    X, y_true = data
    y = np.full(240, np.nan)
    start = _initial(y_true)
    y[start] = y_true[start]
    clf = LogisticRegression(max_iter=500).fit(X[start], y[start])
    first = load_policy(policy_path, random_state=0)
    first.query(X, y, clf, batch_size=3)
    first.query(X, y, clf, batch_size=3)
    arrays, meta = first.history_state()
    order = np.random.default_rng(2).permutation(240)
    second = load_policy(policy_path, random_state=1)
    assert second.load_history_state(X[order], arrays, meta) == 240
    second.query(X[order], y[order], clf, batch_size=3)
    history = second.extractor_.history
    assert history.n_loops == 3
    np.testing.assert_array_equal(history.ordered(history.margin)[:2], first.extractor_.history.ordered(first.extractor_.history.margin)[:, order])


def test_candidates_restrict_the_picks(policy_path, data):
    X, y_true = data
    y = np.full(240, np.nan)
    start = _initial(y_true)
    y[start] = y_true[start]
    clf = LogisticRegression(max_iter=500).fit(X[start], y[start])
    allowed = np.arange(100, 130)
    picks = load_policy(policy_path, random_state=0).query(X, y, clf, batch_size=5, candidates=allowed)
    assert set(picks) <= set(allowed) and np.unique(picks).size == 5
    with pytest.raises(InvalidInputError, match="labeled"):
        load_policy(policy_path).query(X, y, clf, batch_size=1, candidates=start[:2])


# ------------------------------------------------------------------------------ scikit-activeml
def _skactiveml_setup(policy_path, data, missing_label=np.nan):
    pytest.importorskip("skactiveml", reason="scikit-activeml is not installed (pip install 'metalearn-al[integrations]')")
    from skactiveml.classifier import SklearnClassifier

    from metalearn.integrations.skactiveml import PolicyQueryStrategy

    X, y_true = data
    clf = SklearnClassifier(LogisticRegression(max_iter=500), classes=np.unique(y_true), missing_label=missing_label)
    qs = PolicyQueryStrategy(str(policy_path), missing_label=missing_label, random_state=0)
    return X, y_true, clf, qs


def test_skactiveml_loop_from_a_cold_start(policy_path, data):
    X, y_true, clf, qs = _skactiveml_setup(policy_path, data)
    from skactiveml.utils import MISSING_LABEL, is_unlabeled

    y = np.full(y_true.shape, MISSING_LABEL)
    seen: list[int] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # scikit-activeml warns while nothing is labeled
        clf.fit(X, y)
        for _ in range(N_LOOPS):
            idx = qs.query(X, y, clf, batch_size=4)
            assert idx.shape == (4,) and np.unique(idx).size == 4
            assert is_unlabeled(y[idx]).all()
            y[idx] = y_true[idx]
            seen.extend(idx.tolist())
            clf.fit(X, y)
    assert len(set(seen)) == 4 * N_LOOPS
    assert qs.policy_strategy_.extractor_.history.n_loops == N_LOOPS


def test_skactiveml_utilities_and_candidates_follow_its_conventions(policy_path, data):
    X, y_true, clf, qs = _skactiveml_setup(policy_path, data)
    from skactiveml.utils import MISSING_LABEL

    y = np.full(y_true.shape, MISSING_LABEL)
    start = _initial(y_true)
    y[start] = y_true[start]
    fitted = clf.fit(X, y)
    params_before = {k: v for k, v in vars(fitted).items() if not k.endswith("_")}

    idx, utilities = qs.query(X, y, fitted, fit_clf=False, batch_size=3, return_utilities=True)
    assert utilities.shape == (3, X.shape[0])
    labeled = ~np.isnan(y)
    assert np.isnan(utilities[:, labeled]).all()
    assert not np.isnan(utilities[0, ~labeled]).any()
    for i, pick in enumerate(idx):
        assert utilities[i, pick] == np.nanmax(utilities[i])
        assert np.isnan(utilities[i, idx[:i]]).all() and not np.isnan(utilities[i, idx[i:]]).any()
    assert {k: v for k, v in vars(fitted).items() if not k.endswith("_")}.keys() == params_before.keys()

    # Candidates as indices: picks and utilities index X; non-candidates are NaN.
    candidates = np.flatnonzero(~labeled)[:30]
    idx, utilities = qs.query(X, y, clf, candidates=candidates, batch_size=2, return_utilities=True)
    assert set(idx) <= set(candidates) and utilities.shape == (2, X.shape[0])
    outside = np.setdiff1d(np.arange(X.shape[0]), candidates)
    assert np.isnan(utilities[:, outside]).all() and not np.isnan(utilities[0, candidates]).any()
    with pytest.raises(ValueError, match="labeled"):
        qs.query(X, y, clf, candidates=start[:2])

    # Candidates as features: indices refer to the candidate rows, some of which are not in X.
    extra = np.random.default_rng(0).normal(size=(5, X.shape[1]))
    cand = np.vstack([X[candidates[:10]], extra])
    idx, utilities = qs.query(X, y, clf, candidates=cand, batch_size=3, return_utilities=True)
    assert utilities.shape == (3, 15) and idx.max() < 15 and np.unique(idx).size == 3
    assert not np.isnan(utilities[0]).any()

    # batch_size larger than the candidates: scikit-activeml's warning and reduction.
    with pytest.warns(UserWarning, match="batch_size"):
        idx = qs.query(X, y, clf, candidates=candidates[:2], batch_size=5)
    assert sorted(idx) == sorted(candidates[:2])


def test_skactiveml_string_labels_with_its_missing_label_marker(policy_path, data):
    X, y_true = data
    names = np.array(["a", "b", "c"], dtype=object)[y_true]
    pytest.importorskip("skactiveml")
    from skactiveml.classifier import SklearnClassifier

    from metalearn.integrations.skactiveml import PolicyQueryStrategy

    clf = SklearnClassifier(LogisticRegression(max_iter=500), classes=["a", "b", "c"], missing_label=None)
    qs = PolicyQueryStrategy(str(policy_path), missing_label=None, random_state=0)
    y = np.full(X.shape[0], None, dtype=object)
    start = _initial(y_true)
    y[start] = names[start]
    for _ in range(2):
        idx = qs.query(X, y, clf, batch_size=3)
        assert all(y[i] is None for i in idx)
        y[idx] = names[idx]
    with pytest.raises(TypeError):
        qs.query(X, y, LogisticRegression())  # scikit-activeml wants its own classifier wrapper
    with pytest.raises(ValueError):
        PolicyQueryStrategy(str(policy_path), missing_label=None, random_state="state").query(X, y, clf)


def test_skactiveml_parameter_checks_match_its_strategies(policy_path, data):
    """The argument checks scikit-activeml's own strategy tests apply (its test templates are not
    shipped in the wheel, so they are restated here)."""
    import copy

    X, y_true, clf, qs = _skactiveml_setup(policy_path, data)
    y = np.full(y_true.shape, np.nan)
    start = _initial(y_true)
    y[start] = y_true[start]
    fitted = clf.fit(X, y)
    reference = copy.deepcopy(fitted)
    for fit_clf in (True, False):
        qs.query(X, y, fitted, fit_clf=fit_clf, batch_size=2)
        np.testing.assert_array_equal(fitted.predict_proba(X), reference.predict_proba(X))  # clf never changed
        assert vars(fitted).keys() == vars(reference).keys()
    for bad, error in [(np.nan, TypeError), ("state", TypeError)]:
        with pytest.raises(error):
            qs.query(X, y, clf, fit_clf=bad)
    for bad in (np.nan, "state", object(), LogisticRegression()):
        with pytest.raises(TypeError):
            qs.query(X, y, bad)
    with pytest.raises((ValueError, TypeError)):
        qs.query("string", y, clf)
    with pytest.raises(ValueError):
        qs.query(np.vstack([X, X]), y, clf)
    with pytest.raises(TypeError):
        qs.query(X, np.nan, clf)
    with pytest.raises(ValueError):
        qs.query(X, y, clf, candidates=np.nan)
    with pytest.raises(ValueError):
        qs.query(X, y, clf, batch_size=0)
    with pytest.raises(TypeError):
        qs.query(X, y, clf, return_utilities="yes")
    unlabeled = np.flatnonzero(np.isnan(y))
    assert qs.query(X, y, clf, candidates=[unlabeled[0]]).tolist() == [unlabeled[0]]


def test_skactiveml_works_with_its_random_state_and_clone(policy_path, data):
    from sklearn.base import clone

    X, y_true, clf, qs = _skactiveml_setup(policy_path, data)
    y = np.full(y_true.shape, np.nan)
    start = _initial(y_true)
    y[start] = y_true[start]
    twin = clone(qs)
    assert not hasattr(twin, "policy_strategy_")
    np.testing.assert_array_equal(qs.query(X, y, clf, batch_size=3), twin.query(X, y, clf, batch_size=3))
    rs_qs = clone(qs).set_params(random_state=np.random.RandomState(0))
    assert rs_qs.query(X, y, clf, batch_size=2).shape == (2,)


# ------------------------------------------------------------------------------ modAL
@pytest.fixture
def modal_on_new_sklearn(monkeypatch):
    """modAL 0.4.2.1 (its latest release) passes ``force_all_finite`` to scikit-learn's check_X_y
    in ``teach``; scikit-learn 1.8 removed that argument (it is ``ensure_all_finite`` since 1.6).
    With such a scikit-learn, modAL's own ``teach`` fails whatever the strategy; this translates
    the argument inside modAL only, for the test's loop. Nothing of metalearn is patched."""
    pytest.importorskip("modAL", reason="modAL-python is not installed (pip install 'metalearn-al[integrations]')")
    import inspect

    import modAL.models.learners as learners
    from sklearn.utils import check_X_y

    if "force_all_finite" not in inspect.signature(check_X_y).parameters:

        def check_X_y_compat(*args, force_all_finite=True, **kwargs):
            return check_X_y(*args, ensure_all_finite=force_all_finite, **kwargs)

        monkeypatch.setattr(learners, "check_X_y", check_X_y_compat)


def test_modal_loop_with_a_shrinking_pool_runs_the_policy_once_per_query(policy_path, data, modal_on_new_sklearn):
    from modAL.models import ActiveLearner

    from metalearn.integrations.modal import policy_query_strategy

    X, y_true = data
    start = _initial(y_true)
    strategy = policy_query_strategy(policy_path, random_state=0)
    runs = []
    original = strategy.strategy.query

    def counting_query(*args, **kwargs):
        runs.append(1)
        return original(*args, **kwargs)

    strategy.strategy.query = counting_query
    learner = ActiveLearner(
        estimator=LogisticRegression(max_iter=500), X_training=X[start], y_training=y_true[start],
        query_strategy=strategy,
    )
    pool_ids = np.setdiff1d(np.arange(X.shape[0]), start)
    X_pool = X[pool_ids]
    labeled_ids = set(start.tolist())
    for loop, n_instances in enumerate([1, 2, 3, 2, 5]):
        idx, rows = learner.query(X_pool, n_instances=n_instances)
        assert len(runs) == loop + 1  # exactly one policy run per query, whatever n_instances
        assert idx.shape == (n_instances,) and np.unique(idx).size == n_instances and idx.max() < X_pool.shape[0]
        np.testing.assert_array_equal(rows, X_pool[idx])
        picked = pool_ids[idx]
        assert not labeled_ids & set(picked.tolist())
        labeled_ids |= set(picked.tolist())
        learner.teach(X_pool[idx], y_true[picked])
        X_pool, pool_ids = np.delete(X_pool, idx, axis=0), np.delete(pool_ids, idx)
    history = strategy.strategy.extractor_.history
    assert history.n_loops == N_LOOPS and history.n_records == X.shape[0]  # training set + pool, records followed
    assert strategy.n_runs == N_LOOPS
    # The policy saw the labeled set: the learner's training data are labeled records.
    assert strategy.strategy.extractor_.labeled.sum() == len(start) + 1 + 2 + 3 + 2


def test_modal_retry_of_a_failed_query_does_not_run_twice(policy_path, data, modal_on_new_sklearn):
    from modAL.models import ActiveLearner

    from metalearn.integrations.modal import policy_query_strategy

    X, y_true = data
    start = _initial(y_true)
    strategy = policy_query_strategy(policy_path, random_state=0)
    learner = ActiveLearner(LogisticRegression(max_iter=500), query_strategy=strategy, X_training=X[start], y_training=y_true[start])
    with pytest.raises(InvalidInputError, match="larger than"):
        learner.query(X[:3], n_instances=5)
    with pytest.raises(TypeError, match="unexpected"):
        learner.query(X[:10], n_instances=1, bogus=1)
    idx, _ = learner.query(X[100:140], n_instances=2)
    assert idx.shape == (2,) and strategy.n_runs == 1
    assert strategy.strategy.extractor_.history.n_loops == 1
    empty = ActiveLearner(LogisticRegression(), query_strategy=strategy)
    with pytest.raises(InvalidInputError, match="X_training"):
        empty.query(X, n_instances=1)


def test_modal_string_labels(policy_path, data, modal_on_new_sklearn):
    from modAL.models import ActiveLearner

    from metalearn.integrations.modal import policy_query_strategy

    X, y_true = data
    names = np.array(["x", "y", "z"])[y_true]
    start = _initial(y_true)
    learner = ActiveLearner(
        LogisticRegression(max_iter=500), query_strategy=policy_query_strategy(policy_path, random_state=0),
        X_training=X[start], y_training=names[start],
    )
    idx, _ = learner.query(np.delete(X, start, axis=0), n_instances=3)
    assert idx.shape == (3,)


# ------------------------------------------------------------------------------ small-text
def test_small_text_loop_exposes_scores(policy_path, data):
    pytest.importorskip("small_text", reason="small-text is not installed (pip install 'metalearn-al[integrations]')")
    from small_text import PoolBasedActiveLearner, SklearnClassifierFactory, SklearnDataset

    from metalearn.integrations.small_text import PolicyQueryStrategy

    X, y_true = data
    train = SklearnDataset(X, y_true, target_labels=np.arange(3))
    factory = SklearnClassifierFactory(LogisticRegression(max_iter=500), 3)
    strategy = PolicyQueryStrategy(policy_path, random_state=0)
    learner = PoolBasedActiveLearner(factory, strategy, train)
    start = _initial(y_true)
    learner.initialize_data(start, y_true[start])
    labeled = set(start.tolist())
    for _ in range(N_LOOPS):
        indices = learner.query(num_samples=4)
        assert indices.shape == (4,) and np.unique(indices).size == 4
        assert not labeled & set(indices.tolist())
        scores = strategy.scores_
        assert scores.shape == (X.shape[0],)
        assert np.isnan(scores[sorted(labeled)]).all() and np.isfinite(scores[indices]).all()
        labeled |= set(indices.tolist())
        learner.update(y_true[indices])
    assert strategy.strategy.extractor_.history.n_loops == N_LOOPS
    assert "PolicyQueryStrategy" in str(strategy)


def test_small_text_sparse_text_features(policy_path):
    pytest.importorskip("small_text")
    from scipy.sparse import csr_matrix
    from small_text import PoolBasedActiveLearner, SklearnClassifierFactory, SklearnDataset

    from metalearn.integrations.small_text import PolicyQueryStrategy

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 60)
    counts = rng.poisson(0.3, size=(120, 300)).astype(float)
    counts[y == 1, :20] += rng.poisson(1.0, size=(60, 20))
    train = SklearnDataset(csr_matrix(counts), y, target_labels=np.arange(2))
    for max_dense in (2048, 50):  # densified, then reduced by the truncated SVD
        strategy = PolicyQueryStrategy(policy_path, random_state=0, max_dense_features=max_dense, n_components=8)
        learner = PoolBasedActiveLearner(SklearnClassifierFactory(LogisticRegression(max_iter=500), 2), strategy, train)
        learner.initialize_data(np.array([0, 1, 60, 61]), y[[0, 1, 60, 61]])
        for _ in range(2):
            indices = learner.query(num_samples=3)
            learner.update(y[indices])
        assert strategy.strategy.extractor_.X.shape[1] == (300 if max_dense == 2048 else 8)


# ------------------------------------------------------------------------------ plain code
def test_plain_code_contract_by_released_name(data):
    X, y_true = data
    y = np.full(X.shape[0], np.nan)
    start = _initial(y_true)
    y[start] = y_true[start]
    strategy = load_policy("default", random_state=0)  # resolves through the policy folders
    for _ in range(N_LOOPS):
        labeled = ~np.isnan(y)
        idx = strategy.query(X, y, LogisticRegression(max_iter=500).fit(X[labeled], y[labeled]), batch_size=5)
        assert idx.shape == (5,) and np.unique(idx).size == 5 and np.isnan(y[idx]).all()
        y[idx] = y_true[idx]
    assert isinstance(strategy, PolicyStrategy)


def test_importing_the_integrations_package_imports_no_library():
    code = (
        "import sys, metalearn, metalearn.integrations\n"
        "bad = [m for m in ('skactiveml', 'modAL', 'small_text') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_missing_library_names_the_extra(monkeypatch):
    import importlib

    from metalearn.integrations import MissingDependencyError

    monkeypatch.setitem(sys.modules, "modAL", None)  # makes `import modAL` fail
    monkeypatch.delitem(sys.modules, "metalearn.integrations.modal", raising=False)
    with pytest.raises(MissingDependencyError, match=r"metalearn-al\[integrations\]"):
        importlib.import_module("metalearn.integrations.modal")
