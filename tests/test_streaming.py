"""StreamingPolicy: record-by-record decisions under a paced label budget."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from metalearn.common.uncertainty import margins
from metalearn.exceptions import (
    InvalidInputError,
    InvalidTypeError,
    MetalearnError,
    NotFittedClassifierError,
    UnknownNameError,
)
from metalearn.features import POOL_SCHEMA
from metalearn.policies.architecture import ScorerArchitecture, parameter_shapes
from metalearn.policies.file import read_policy, save_policy
from metalearn.strategies import MarginSampling, QueryStrategy
from metalearn.streaming import StreamingPolicy, StreamResult, simulate_stream
from metalearn.streaming.stream_policy import check_record, randomized_quantile

N_STREAM, BUDGET = 500, 50


@pytest.fixture(scope="module")
def data():
    """(X_initial, y_initial, X_stream, y_stream): 10 labeled records, then a stream of 500."""
    X, y = make_classification(n_samples=510, n_features=6, n_informative=4, random_state=3)
    return X[:10], y[:10], X[10:], y[10:]


@pytest.fixture(scope="module")
def policy_path(tmp_path_factory):
    """A policy file with random weights (numpy only), written through save_policy."""
    F, G = POOL_SCHEMA.n_candidate_features, POOL_SCHEMA.n_context_features
    arch = ScorerArchitecture(F, G, hidden=8)
    rng = np.random.default_rng(0)
    params = {k: rng.normal(0, 0.5, s).astype(np.float32) for k, s in parameter_shapes(arch).items()}
    for k in ("cand_std", "ctx_std"):
        params[k] = np.abs(params[k]) + 0.5
    meta = {"feature_schema": POOL_SCHEMA.to_dict(), "window": 4, "n_candidates": 16}
    return save_policy(tmp_path_factory.mktemp("policy") / "p.safetensors", arch, params, meta)


def run(policy, data, **kwargs) -> StreamResult:
    X0, y0, X, y = data
    stream = StreamingPolicy(policy, label_budget=BUDGET, expected_length=N_STREAM, **kwargs)
    return simulate_stream(stream, X, y, LogisticRegression(), X0, y0)


def assert_paced(result: StreamResult, budget: int = BUDGET, n: int = N_STREAM) -> None:
    assert result.n_labels <= budget
    assert result.n_labels >= 0.8 * budget
    first_half = int(result.decisions[: n // 2].sum())
    assert first_half < 0.8 * budget, f"{first_half} of {budget} labels spent in the first half"
    assert first_half > 0.2 * budget, f"only {first_half} of {budget} labels spent in the first half"


@pytest.mark.parametrize("policy", ["margin", "entropy", "random", "density_weighted"])
def test_budget_respected_and_paced(data, policy):
    result = run(policy, data, random_state=0)
    assert_paced(result)


def test_learned_policy_paced_and_deterministic(data, policy_path):
    a = run(policy_path, data, random_state=1)
    assert_paced(a)
    b = run(read_policy(policy_path), data, random_state=1)  # a PolicyFile works the same
    np.testing.assert_array_equal(a.decisions, b.decisions)


def test_released_default_policy_streams_and_beats_random_picks(data):
    """The released ``default`` policy, by name: paced, and it keeps more uncertain records than it skips."""
    result = run("default", data, random_state=0)
    assert_paced(result)
    X0, y0, X, _ = data
    uncertainty = margins(LogisticRegression().fit(X0, y0).predict_proba(X))
    assert uncertainty[result.decisions].mean() < uncertainty[~result.decisions].mean()


def test_same_seed_same_decisions(data):
    a = run("margin", data, random_state=7)
    b = run("margin", data, random_state=7)
    np.testing.assert_array_equal(a.decisions, b.decisions)
    np.testing.assert_array_equal(a.quantiles, b.quantiles)
    c = run("random", data, random_state=7)
    d = run("random", data, random_state=8)
    assert not np.array_equal(c.decisions, d.decisions)


def test_prefers_uncertain_records(data):
    """The module docstring's loop: kept records have smaller margins than skipped ones."""
    X0, y0, X, y = data
    X_lab, y_lab = list(X0), list(y0)
    model = LogisticRegression().fit(X_lab, y_lab)
    stream = StreamingPolicy("margin", label_budget=BUDGET, expected_length=N_STREAM, random_state=0)
    kept, skipped = [], []
    for record, label in zip(X, y):
        margin = float(margins(model.predict_proba(record[None, :]))[0])
        if stream.decide(record, model):
            kept.append(margin)
            X_lab.append(record)
            y_lab.append(label)
            model = clone(model).fit(X_lab, y_lab)
        else:
            skipped.append(margin)
    assert len(kept) <= BUDGET
    assert np.mean(kept) < 0.5 * np.mean(skipped)


def test_never_over_budget_then_always_skips(data):
    X0, y0, X, _ = data
    model = LogisticRegression().fit(X0, y0)
    stream = StreamingPolicy("margin", label_budget=3, expected_length=10, min_reference=2, random_state=0)
    decisions = [stream.decide(x, model) for x in X[:100]]
    assert sum(decisions) == 3
    assert stream.labels_left == 0
    assert not any(decisions[np.flatnonzero(decisions)[-1] + 1 :])


def test_longer_stream_than_expected_keeps_spending_slowly(data):
    X0, y0, X, _ = data
    model = LogisticRegression().fit(X0, y0)
    stream = StreamingPolicy("random", label_budget=BUDGET, expected_length=100, random_state=0)
    decisions = np.array([stream.decide(x, model) for x in X])
    assert decisions.sum() <= BUDGET
    assert decisions[:100].sum() >= 0.6 * BUDGET  # paced over the expected 100 records
    assert stream.rate_ <= stream.labels_left / 400 + 1e-12  # past the end: a decreasing rate


def test_shorter_stream_spends_its_share(data):
    result = run("margin", (data[0], data[1], data[2][:250], data[3][:250]), random_state=0)
    assert 0.3 * BUDGET <= result.n_labels <= 0.7 * BUDGET


class LastFirst(QueryStrategy):
    """A biased ranking: always puts the last row (the arriving record) first."""

    name = "last_first"
    requires_classifier = False

    def _select(self, ctx, batch_size):
        return ctx.unlabeled_indices[::-1][:batch_size]


def test_adaptation_corrects_a_biased_scorer(data):
    """A scorer that always rates the arriving record highest is still paced."""
    result = run(LastFirst(), data, random_state=0)
    assert_paced(result)
    unadapted = run(LastFirst(), data, random_state=0, adaptation=0.0)
    assert unadapted.decisions[: N_STREAM // 4].sum() == BUDGET  # without it: all spent early


def test_record_formats_agree(data):
    X0, y0, X, _ = data
    model = LogisticRegression().fit(X0, y0)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    formats = [
        lambda i: X[i],
        lambda i: X[i].tolist(),
        lambda i: X[i : i + 1],
        lambda i: frame.iloc[i],
        lambda i: frame.iloc[[i]],
    ]
    results = []
    for fmt in formats:
        stream = StreamingPolicy("margin", label_budget=10, expected_length=60, random_state=3)
        results.append([stream.decide(fmt(i), model) for i in range(60)])
    assert all(r == results[0] for r in results)


def test_randomized_quantile_uniform_under_exchangeability():
    rng = np.random.default_rng(0)
    q = np.array([randomized_quantile(rng.random(), rng.random(20), rng.random()) for _ in range(4000)])
    assert np.all((q >= 0) & (q < 1))
    assert abs((q >= 0.9).mean() - 0.1) < 0.02
    ties = np.array([randomized_quantile(1.0, np.ones(20), rng.random()) for _ in range(4000)])
    assert abs((ties >= 0.9).mean() - 0.1) < 0.02  # all tied: a fair coin with the rate


def test_reset_and_params(data):
    X0, y0, X, _ = data
    model = LogisticRegression().fit(X0, y0)
    stream = StreamingPolicy(MarginSampling(), label_budget=5, expected_length=20, random_state=0)
    first = [stream.decide(x, model) for x in X[:20]]
    assert stream.n_seen_ == 20 and stream.n_spent_ == sum(first)
    assert stream.reset() is stream and stream.labels_left == 5
    assert [stream.decide(x, model) for x in X[:20]] == first
    assert stream.get_params()["label_budget"] == 5
    assert "StreamingPolicy(" in repr(stream)


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ({"label_budget": 0}, InvalidInputError, "label_budget"),
        ({"label_budget": 2.5}, InvalidTypeError, "label_budget"),
        ({"expected_length": 0}, InvalidInputError, "expected_length"),
        ({"window": 1}, InvalidInputError, "window"),
        ({"min_reference": 50, "window": 20}, InvalidInputError, "min_reference"),
        ({"memory": -1}, InvalidInputError, "memory"),
        ({"adaptation": 2.0}, InvalidInputError, "adaptation"),
        ({"policy": "no_such_thing"}, UnknownNameError, "strategy names work too"),
        ({"policy": 42}, InvalidTypeError, "policy must be"),
    ],
)
def test_bad_parameters(data, params, error, match):
    X0, y0, X, _ = data
    model = LogisticRegression().fit(X0, y0)
    stream = StreamingPolicy(**{"policy": "margin", **params})  # __init__ only stores
    with pytest.raises(error, match=match):
        stream.decide(X[0], model)


def test_bad_records_and_classifiers(data):
    X0, y0, X, _ = data
    model = LogisticRegression().fit(X0, y0)
    stream = StreamingPolicy("margin", label_budget=5, expected_length=50)
    with pytest.raises(InvalidTypeError, match="predict_proba"):
        stream.decide(X[0], LinearSVC().fit(X0, y0))
    with pytest.raises(NotFittedClassifierError, match="not fitted"):
        stream.decide(X[0], LogisticRegression())
    with pytest.raises(InvalidTypeError, match="clf is None"):
        stream.decide(X[0], None)
    bad = X[0].copy()
    bad[2] = np.nan
    with pytest.raises(InvalidInputError, match="NaN or infinite"):
        stream.decide(bad, model)
    with pytest.raises(InvalidInputError, match="one row"):
        stream.decide(X[:2], model)
    with pytest.raises(InvalidInputError, match="numeric"):
        stream.decide(["a", "b"], model)
    with pytest.raises(InvalidInputError, match="no features"):
        check_record([])
    stream.decide(X[0], model)
    with pytest.raises(InvalidInputError, match="earlier records had 6"):
        stream.decide(X[1, :4], model)
    with pytest.raises(MetalearnError):
        stream.decide(np.append(X[1], 0.0), model)


def test_simulate_stream_checks_inputs(data):
    X0, y0, X, y = data
    stream = StreamingPolicy("margin", label_budget=5, expected_length=50)
    with pytest.raises(InvalidInputError, match="features"):
        simulate_stream(stream, X, y, LogisticRegression(), X0[:, :3], y0)
    with pytest.raises(InvalidInputError, match="entries"):
        simulate_stream(stream, X, y[:-1], LogisticRegression(), X0, y0)
