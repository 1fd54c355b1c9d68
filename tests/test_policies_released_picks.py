"""The released policies and stopping rule pick exactly what they picked when their picks were recorded.

A refactor of the feature extractors, the schema registry, the file format or the scorers must
not change a single pick of a released policy: ``tests/data/released_picks.json`` holds the
indices each released policy chose in a short active-learning loop on three scikit-learn
datasets with two task models (recorded before the architecture review of issue 19), and the
stopping rule's decisions and expected gains. Regenerate it only when a release changes on
purpose: ``python tests/test_policies_released_picks.py --write``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_iris, load_wine
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from metalearn import load_policy, load_stopping_rule

EXPECTED = Path(__file__).parent / "data" / "released_picks.json"
POLICIES = ("default", "ppo-synthetic", "default-proba")
DATASETS = {"iris": load_iris, "wine": load_wine, "breast_cancer": load_breast_cancer}
MODELS = {
    "logreg": lambda seed: LogisticRegression(max_iter=500),
    "rf": lambda seed: RandomForestClassifier(n_estimators=20, random_state=seed),
}
BATCHES = (1, 5)
LOOPS = 6


def _loop(dataset: str, model: str, batch_size: int, policy: str | None) -> dict[str, list]:
    X, y = DATASETS[dataset](return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    rng = np.random.default_rng(7)
    labeled = [int(rng.choice(np.flatnonzero(y == c))) for c in np.unique(y)]
    y_obs = np.full(y.shape, np.nan)
    y_obs[labeled] = y[labeled]
    strategy = load_policy(policy, random_state=3) if policy is not None else None
    rule = load_stopping_rule("default") if policy is None else None
    picks: list[list[int]] = []
    stops: list[list[float]] = []
    clf = MODELS[model](0)
    for _ in range(LOOPS):
        mask = ~np.isnan(y_obs)
        clf.fit(X[mask], y_obs[mask].astype(int))
        if rule is not None:
            decision = rule.should_stop(X, y_obs, clf)
            estimate = getattr(rule, "estimate_", None)
            gain = estimate["expected_gain"] if estimate else None
            stops.append([float(bool(decision)), float(gain) if gain is not None else float("nan")])
            idx = np.flatnonzero(~mask)[:batch_size]  # a fixed buying rule: only the rule's answers matter
        else:
            idx = strategy.query(X, y_obs, clf, batch_size=batch_size)
        picks.append([int(i) for i in idx])
        y_obs[idx] = y[idx]
    return {"picks": picks, "stops": stops}


def _cases() -> list[tuple[str, str, int, str | None]]:
    return [(d, m, b, p) for p in (*POLICIES, None) for d in DATASETS for m in MODELS for b in BATCHES]


def _key(case: tuple[str, str, int, str | None]) -> str:
    d, m, b, p = case
    return f"{p or 'stopping:default'}/{d}/{m}/batch{b}"


@pytest.mark.parametrize("case", _cases(), ids=_key)
def test_released_policy_picks_are_unchanged(case):
    expected = json.loads(EXPECTED.read_text())[_key(case)]
    got = _loop(*case)
    assert got["picks"] == expected["picks"]
    np.testing.assert_allclose(np.asarray(got["stops"], dtype=float).reshape(-1),
                               np.asarray(expected["stops"], dtype=float).reshape(-1), rtol=1e-9, atol=1e-12)


if __name__ == "__main__" and "--write" in sys.argv:
    EXPECTED.write_text(json.dumps({_key(c): _loop(*c) for c in _cases()}, indent=1) + "\n")
    print(f"wrote {EXPECTED}")
