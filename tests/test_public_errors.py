"""Bad input to the public entry points gets the project's own, specific errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.naive_bayes import GaussianNB

from metalearn.common.validation import (
    check_batch_size,
    check_classifier,
    check_labels,
    check_pool_features,
    is_missing,
)
from metalearn.exceptions import (
    InvalidInputError,
    InvalidTypeError,
    MetalearnError,
    NotFittedClassifierError,
    UnknownNameError,
)
from metalearn.strategies import make_strategy, strategy_names


def test_error_types_are_value_and_type_errors():
    assert issubclass(InvalidInputError, ValueError) and issubclass(InvalidInputError, MetalearnError)
    assert issubclass(InvalidTypeError, TypeError) and issubclass(InvalidTypeError, MetalearnError)
    assert issubclass(NotFittedClassifierError, InvalidInputError)
    assert str(UnknownNameError("no such thing")) == "no such thing"  # not KeyError's quoted repr


def test_pool_features_accepts_common_containers():
    X = np.arange(12, dtype=np.int32).reshape(4, 3)
    assert check_pool_features(X).dtype == np.float64
    np.testing.assert_array_equal(check_pool_features(sp.csr_matrix(X)), X)
    np.testing.assert_array_equal(check_pool_features(pd.DataFrame(X)), X)
    np.testing.assert_array_equal(check_pool_features(X.tolist()), X)


@pytest.mark.parametrize(
    "X, message",
    [
        (np.arange(5.0), "1-D"),
        (np.zeros((2, 2, 2)), "2-D"),
        (np.zeros((0, 3)), "empty"),
        (np.zeros((3, 0)), "no features"),
        (np.array([["a", "b"], ["c", "d"]]), "numeric"),
        (pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]}), "non-numeric columns"),
        (np.array([[1.0, np.inf]]), "NaN or infinite"),
    ],
)
def test_pool_features_errors(X, message):
    with pytest.raises(InvalidInputError, match=message):
        check_pool_features(X)


def test_missing_markers():
    np.testing.assert_array_equal(is_missing(np.array([1.0, np.nan]), np.nan), [False, True])
    np.testing.assert_array_equal(is_missing(np.array(["a", ""], dtype=object), ""), [False, True])
    np.testing.assert_array_equal(is_missing(np.array([3, -1, 2]), -1), [False, True, False])
    np.testing.assert_array_equal(is_missing(np.array(["a", None], dtype=object), None), [False, True])
    # NaN in float labels is missing even when another marker is configured
    np.testing.assert_array_equal(is_missing(np.array([1.0, np.nan, -1.0]), -1), [False, True, True])


def test_check_labels_errors():
    labeled, y = check_labels([0, np.nan, 1], 3)
    np.testing.assert_array_equal(labeled, [True, False, True])
    with pytest.raises(InvalidInputError, match="1-D"):
        check_labels(np.zeros((3, 2)), 3)
    with pytest.raises(InvalidInputError, match="infinite"):
        check_labels([0.0, np.inf, 1.0], 3)


def test_check_classifier_and_batch_size():
    with pytest.raises(InvalidTypeError, match="None"):
        check_classifier(None)
    with pytest.raises(InvalidTypeError, match="predict_proba"):
        check_classifier(object())
    with pytest.raises(NotFittedClassifierError):
        check_classifier(GaussianNB())
    assert check_batch_size(np.int64(3), 5) == 3
    with pytest.raises(InvalidInputError, match="no unlabeled"):
        check_batch_size(1, 0)


@pytest.mark.parametrize("name", [n for n in strategy_names() if n != "qbc"])
def test_single_labeled_class_is_handled(name):
    """A model fitted on one class is certain everywhere: the strategies still return valid picks."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3))
    y = np.full(50, np.nan)
    y[:4] = 1.0
    clf = GaussianNB().fit(X[:4], y[:4])
    picks = make_strategy(name, random_state=0).query(X, y, clf, batch_size=3)
    assert np.all(picks >= 4) and np.unique(picks).size == 3


def test_committee_needs_two_labeled_classes():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3))
    y = np.full(50, np.nan)
    y[:4] = 1.0
    clf = GaussianNB().fit(X[:4], y[:4])
    with pytest.raises(InvalidInputError, match="two classes"):
        make_strategy("qbc").query(X, y, clf)


def test_labels_unknown_to_the_classifier_are_a_clear_error():
    from metalearn.strategies.base import QueryContext

    X = np.zeros((4, 2))
    y = np.array([0.0, 5.0, np.nan, np.nan])
    clf = GaussianNB().fit(np.array([[0.0, 0.0], [1.0, 1.0]]), np.array([0.0, 1.0]))
    ctx = QueryContext(X, y, ~np.isnan(y), clf, np.random.default_rng(0))
    with pytest.raises(InvalidInputError, match="does not know"):
        ctx.label_indices()
