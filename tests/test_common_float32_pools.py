"""A float32 pool is not copied to float64, and working on it in row blocks changes no result.

Memory and time are measured by ``scripts/bench_query_memory.py``; these tests pin what that
measurement relies on: validation keeps a float32 pool as it is for the objects that ask, and
every blocked computation equals the one on a whole float64 copy, bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from metalearn import load_policy, load_stopping_rule
from metalearn.common import blocks, geometry
from metalearn.common.blocks import map_row_blocks, row_blocks
from metalearn.common.clustering import kmeans_partition
from metalearn.common.record_identity import row_keys
from metalearn.common.validation import check_pool_features
from metalearn.exceptions import InvalidInputError
from metalearn.strategies import MarginSampling
from metalearn.strategies.base import QueryContext


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> int:
    """Blocks of 256 rows, so pools of a few thousand rows span many blocks."""
    monkeypatch.setattr(blocks, "BLOCK_ROWS", 256)
    monkeypatch.setattr(blocks.row_blocks, "__defaults__", (256,))
    monkeypatch.setattr(blocks.map_row_blocks, "__kwdefaults__", {"rows": None, "block_rows": 256})
    return 256


def _pool(n: int = 3000, d: int = 7, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int) + (X[:, 2] > 1).astype(int)
    return X, y


def test_validation_keeps_a_float32_pool_only_when_asked() -> None:
    X, _ = _pool()
    kept = check_pool_features(X, keep_float32=True)
    assert kept.dtype == np.float32 and np.shares_memory(kept, X)
    assert check_pool_features(X).dtype == np.float64  # the default is unchanged
    assert check_pool_features(X.astype(np.float16), keep_float32=True).dtype == np.float64
    bad = X.copy()
    bad[1234, 3] = np.nan
    with pytest.raises(InvalidInputError, match="1 row"):
        check_pool_features(bad, keep_float32=True)


def test_row_blocks_cover_the_rows_with_no_small_block() -> None:
    for n in (0, 1, 255, 256, 511, 512, 513, 1000):
        slices = list(row_blocks(n, 256))
        assert np.array_equal(np.concatenate([np.arange(n)[s] for s in slices]), np.arange(n))
        assert all(s.stop - s.start >= 256 for s in slices) or len(slices) == 1


def test_map_row_blocks_gives_the_whole_float64_result(small_blocks: int) -> None:
    X, y = _pool()
    X64 = X.astype(np.float64)
    clf = LogisticRegression(max_iter=300).fit(X64[:200], y[:200])
    rows = np.arange(3, X.shape[0], 7)
    assert np.array_equal(map_row_blocks(clf.predict_proba, X), clf.predict_proba(X64))
    assert np.array_equal(map_row_blocks(clf.predict_proba, X, rows=rows), clf.predict_proba(X64[rows]))
    seen: list[np.dtype] = []
    map_row_blocks(lambda block: seen.append(block.dtype) or block[:, 0], X)
    assert set(seen) == {np.dtype(np.float64)} and len(seen) == X.shape[0] // small_blocks
    # A float64 pool goes through in one call, as it always did.
    calls: list[int] = []
    map_row_blocks(lambda block: calls.append(block.shape[0]) or block[:, 0], X64)
    assert calls == [X.shape[0]]
    assert map_row_blocks(lambda block: None, X) is None


def test_blocked_geometry_and_hashing_equal_the_float64_copy(small_blocks: int) -> None:
    X, _ = _pool()
    X64 = X.astype(np.float64)
    assert np.array_equal(geometry.squared_norms(X), geometry.squared_norms(X64))
    Y = np.arange(0, X.shape[0], 97)
    assert np.array_equal(geometry.min_sq_distances(X, X[Y]), geometry.min_sq_distances(X64, X64[Y]))
    rng = lambda: np.random.default_rng(5)  # noqa: E731
    assert geometry.typical_distance(X, rng()) == geometry.typical_distance(X64, rng())
    assert np.array_equal(geometry.knn_reference_distance(X, rng()), geometry.knn_reference_distance(X64, rng()))
    assert np.array_equal(geometry.knn_distance_to(X, X64[Y], 5), geometry.knn_distance_to(X64, X64[Y], 5))
    assert np.array_equal(kmeans_partition(X, 8, seed=3), kmeans_partition(X64, 8, seed=3))
    assert np.array_equal(row_keys(X), row_keys(X64))
    assert row_keys(np.array([[-0.0, 1.0]], dtype=np.float32))[0] == row_keys(np.array([[0.0, 1.0]]))[0]


def test_policy_margin_and_stopping_rule_see_the_float32_pool_and_decide_as_on_float64(small_blocks: int) -> None:
    X, y = _pool()
    X64 = X.astype(np.float64)
    seen: list[np.dtype] = []
    original = QueryContext.__init__

    def spy(self: QueryContext, X_arr: np.ndarray, *args: object) -> None:
        seen.append(X_arr.dtype)
        original(self, X_arr, *args)  # type: ignore[arg-type]

    results = {}
    for pool in (X, X64):
        y_obs = np.full(X.shape[0], np.nan)
        y_obs[np.arange(0, X.shape[0], 150)] = y[::150]
        policy = load_policy("default", random_state=0, label_budget=100)
        margin = MarginSampling(random_state=0)
        rule = load_stopping_rule("default")
        picks, logs = [], []
        for _ in range(2):
            labeled = ~np.isnan(y_obs)
            clf = LogisticRegression(max_iter=300).fit(X64[labeled], y_obs[labeled].astype(int))
            QueryContext.__init__ = spy  # type: ignore[method-assign]
            try:
                rule.should_stop(pool, y_obs, clf)
                chosen = policy.query(pool, y_obs, clf, batch_size=5)
                picks.append((chosen.tolist(), margin.query(pool, y_obs, clf, batch_size=5).tolist()))
            finally:
                QueryContext.__init__ = original  # type: ignore[method-assign]
            logs.append(rule.log_[-1])
            y_obs[chosen] = y[chosen]
        results[pool.dtype.name] = (picks, logs, policy.last_scores_[1].tolist())
    assert seen[:3] == [np.dtype(np.float32)] * 3  # no float64 copy reached the rule, the policy or margin
    assert results["float32"] == results["float64"]
