"""Warm-started refits (issue 21, part 3): the wrapper, the zoo option and the simulator's use of it."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, SGDClassifier

from metalearn import load_policy
from metalearn.exceptions import InvalidInputError
from metalearn.simulation.loop import simulate
from metalearn.strategies.resolve import resolve_strategy
from metalearn.tasks.models import (
    WARM_STARTABLE_MODELS,
    ModelFactory,
    WarmStartClassifier,
    make_model,
    warm_started,
)
from metalearn.tasks.task import make_task


def _data(n: int = 240, n_classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    X, y = make_classification(
        n_samples=n, n_features=6, n_informative=4, n_redundant=0, n_classes=n_classes, random_state=seed
    )
    return X, y


def _growing_fits(model: object, X: np.ndarray, y: np.ndarray, sizes: list[int]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for n in sizes:
            model.fit(X[:n], y[:n])


@pytest.mark.parametrize("name", WARM_STARTABLE_MODELS)
def test_warm_refits_have_the_cold_fits_classes_and_shapes(name: str) -> None:
    X, y = _data()
    warm = make_model(name, random_state=0, warm_start=True)
    assert isinstance(warm, WarmStartClassifier)
    _growing_fits(warm, X, y, [30, 40, 50])
    cold = make_model(name, random_state=0)
    _growing_fits(cold, X, y, [50])
    assert warm.n_cold_fits_ == 1 and warm.n_warm_fits_ == 2 and warm.n_fallbacks_ == 0
    np.testing.assert_array_equal(warm.classes_, cold.classes_)
    proba = warm.predict_proba(X[200:])
    assert proba.shape == cold.predict_proba(X[200:]).shape == (40, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-8)
    assert set(np.unique(warm.predict(X[200:]))) <= set(cold.classes_)


def test_a_newly_discovered_class_falls_back_to_a_cold_fit() -> None:
    X, y = _data()
    binary = np.flatnonzero(y < 2)
    model = make_model("logreg", random_state=0, warm_start=True)
    model.fit(X[binary[:20]], y[binary[:20]])
    first = model.estimator_
    model.fit(X[binary[:30]], y[binary[:30]])  # same classes: warm, same object
    assert model.estimator_ is first and model.n_warm_fits_ == 1
    model.fit(X[:60], y[:60])  # class 2 appears: the coefficient shape changes
    assert model.estimator_ is not first
    assert (model.n_cold_fits_, model.n_warm_fits_, model.n_fallbacks_) == (2, 1, 1)
    np.testing.assert_array_equal(model.classes_, [0, 1, 2])
    assert model.predict_proba(X[200:]).shape == (40, 3)
    model.fit(X[:70], y[:70])  # and warm again after it
    assert (model.n_cold_fits_, model.n_warm_fits_, model.n_fallbacks_) == (2, 2, 1)


def test_a_changed_feature_width_falls_back_to_a_cold_fit() -> None:
    X, y = _data()
    model = warm_started(LogisticRegression(max_iter=1000))
    model.fit(X[:40], y[:40])
    model.fit(X[:50, :4], y[:50])
    assert model.n_fallbacks_ == 1 and model.n_features_in_ == 4


def test_logreg_warm_refit_converges_to_the_cold_coefficients() -> None:
    X, y = _data()
    warm = make_model("logreg", random_state=0, warm_start=True, tol=1e-10)
    _growing_fits(warm, X, y, [20, 40, 60, 80, 100])
    cold = make_model("logreg", random_state=0, tol=1e-10).fit(X[:100], y[:100])
    assert warm.n_warm_fits_ == 4
    np.testing.assert_allclose(warm.estimator_.coef_, cold.coef_, atol=1e-4)
    np.testing.assert_allclose(warm.estimator_.intercept_, cold.intercept_, atol=1e-4)


def test_sgd_warm_refit_is_one_partial_fit_epoch() -> None:
    X, y = _data()
    model = make_model("sgd", random_state=0, warm_start=True)
    _growing_fits(model, X, y, [30])
    steps = model.estimator_.t_  # SGD updates so far, one per record and epoch
    first = model.estimator_
    _growing_fits(model, X, y, [40])
    assert model.estimator_ is first and model.estimator_.t_ == steps + 40


def test_hgb_warm_refit_adds_boosting_iterations() -> None:
    X, y = _data()
    model = make_model("hgb", random_state=0, warm_start=True, max_iter=20)
    _growing_fits(model, X, y, [40, 50, 60])
    assert model.estimator_.n_iter_ == 20 + 2 * model.extra_iter


def test_warm_start_is_opt_in_and_refused_where_unsupported() -> None:
    assert isinstance(make_model("logreg", random_state=0), LogisticRegression)
    assert isinstance(ModelFactory("logreg", 0)(), LogisticRegression)
    assert ModelFactory("logreg", 0).warm_start is False
    assert isinstance(ModelFactory("logreg", 0, warm_start=True)(), WarmStartClassifier)
    with pytest.raises(InvalidInputError, match="no warm-started refits"):
        make_model("rf", warm_start=True)
    with pytest.raises(InvalidInputError, match="no warm-started refits"):
        ModelFactory("knn", warm_start=True)
    with pytest.raises(InvalidInputError, match="True or False"):
        ModelFactory("logreg", warm_start="yes")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="cannot be warm-started"):
        warm_started(RandomForestClassifier())
    with pytest.raises(InvalidInputError, match="cannot be warm-started"):
        warm_started(SGDClassifier(loss="hinge"))
    X, y = _data()
    with pytest.raises(InvalidInputError, match="cannot be warm-started"):
        WarmStartClassifier(RandomForestClassifier()).fit(X, y)


def test_the_wrapper_clones_and_serves_a_users_loop_with_strategy_query() -> None:
    X, y = _data()
    clf = warm_started(LogisticRegression(max_iter=1000))
    assert not hasattr(clone(clf), "estimator_")
    labeled = np.zeros(y.size, dtype=bool)
    labeled[[int(np.flatnonzero(y == c)[0]) for c in range(3)]] = True
    for strategy in (resolve_strategy("margin", label_budget=15, random_state=0), load_policy("default")):
        strategy.reset()
        for _ in range(3):
            clf.fit(X[labeled], y[labeled])
            y_seen = np.where(labeled, y, np.nan)
            idx = strategy.query(X, y_seen, clf, batch_size=5)
            assert idx.size == 5 and not labeled[idx].any()
            labeled[idx] = True
    assert clf.n_warm_fits_ >= 5


def _run(warm_start: bool, seed: int = 3) -> tuple[list[object], object]:
    X, y = _data(300)
    task = make_task(
        X, y, model=ModelFactory("logreg", random_state=seed, warm_start=warm_start),
        regime="warm", n_warm=6, label_budget=30, batch_size=5, seed=seed,
    )
    models: list[object] = []
    result = simulate(task, resolve_strategy("margin", label_budget=30, random_state=seed), on_loop=lambda p: models.append(p.model))
    return models, result


def test_the_simulator_keeps_one_model_only_when_asked() -> None:
    models, _ = _run(warm_start=True)
    assert len(models) == 7 and all(m is models[0] for m in models)
    assert models[0].n_cold_fits_ + models[0].n_warm_fits_ == 7
    cold_models, _ = _run(warm_start=False)
    assert len({id(m) for m in cold_models}) == len(cold_models) == 7
    assert all(isinstance(m, LogisticRegression) for m in cold_models)


def test_warm_started_simulations_reproduce_with_the_same_seed() -> None:
    _, first = _run(warm_start=True, seed=5)
    _, second = _run(warm_start=True, seed=5)
    assert len(first.picks) == len(second.picks) == 6
    for a, b in zip(first.picks, second.picks):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(first.accuracy, second.accuracy)


def test_the_benchmark_option_is_opt_in_and_keeps_cold_fingerprints() -> None:
    from metalearn.benchmark.config import BenchmarkConfig, RunKey
    from metalearn.benchmark.execute import build_task
    from metalearn.tasks.datasets import Dataset

    cold = BenchmarkConfig(models=["logreg", "rf"])
    warm = BenchmarkConfig(models=["logreg", "rf"], warm_start=True).validate()
    assert "warm_start" not in cold.to_dict() and warm.to_dict()["warm_start"] is True
    assert cold.result_fingerprint() != warm.result_fingerprint()
    X, y = _data(120)
    dataset = Dataset(name="toy", X=pd.DataFrame(X), y=y)
    for model, expected in (("logreg", True), ("rf", False)):
        key = RunKey("toy", model, "cold", 10, 0, "margin")
        cold_task, warm_task = build_task(dataset, key, cold), build_task(dataset, key, warm)
        assert cold_task.model.warm_start is False and warm_task.model.warm_start is expected
        assert warm_task.model.random_state == cold_task.model.random_state
        np.testing.assert_array_equal(warm_task.initial_labeled, cold_task.initial_labeled)
    with pytest.raises(InvalidInputError, match="warm_start"):
        BenchmarkConfig(warm_start="yes").validate()  # type: ignore[arg-type]
