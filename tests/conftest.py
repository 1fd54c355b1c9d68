"""Shared fixtures: small, fast scikit-learn data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_iris, make_classification
from sklearn.linear_model import LogisticRegression

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO_ROOT.parent / "shared" / "datasets"


@pytest.fixture
def pool():
    """A 3-class pool of 150 records with 10 labeled ones and a fitted logistic regression.

    Returns (X, y_observed, clf) where y_observed is float with NaN for unlabeled rows.
    """
    X, y = load_iris(return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    rng = np.random.default_rng(0)
    labeled = np.concatenate([rng.choice(np.flatnonzero(y == c), 3, replace=False) for c in range(3)])
    y_obs = np.full(y.shape, np.nan)
    y_obs[labeled] = y[labeled]
    clf = LogisticRegression(max_iter=500).fit(X[labeled], y[labeled])
    return X, y_obs, clf


@pytest.fixture
def binary_pool():
    """A 2-class pool of 300 records, 20 labeled, fitted logistic regression: (X, y_observed, y_true, clf)."""
    X, y = make_classification(n_samples=300, n_features=6, n_informative=4, random_state=1)
    rng = np.random.default_rng(1)
    labeled = rng.choice(300, 20, replace=False)
    if np.unique(y[labeled]).size < 2:  # pragma: no cover - seed chosen so this does not happen
        labeled[0] = np.flatnonzero(y != y[labeled[1]])[0]
    y_obs = np.full(300, np.nan)
    y_obs[labeled] = y[labeled]
    clf = LogisticRegression(max_iter=500).fit(X[labeled], y[labeled])
    return X, y_obs, y, clf


@pytest.fixture
def run_without_torch():
    """Run a Python snippet in a fresh interpreter and assert it never imported torch.

    The snippet ends in that check itself (``"torch" not in sys.modules``) and prints ``ok``.
    """

    def run(code: str) -> None:
        code = 'import sys\n' + code + '\nassert "torch" not in sys.modules, sorted(m for m in sys.modules if m.startswith("torch"))\nprint("ok")\n'
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "ok"

    return run
