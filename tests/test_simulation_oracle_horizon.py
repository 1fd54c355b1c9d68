"""The oracle's multi-step look-ahead (``horizon``): definition, determinism, validation, trainers and CLI."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sklearn.datasets import make_classification

from metalearn.common.uncertainty import margins
from metalearn.exceptions import InvalidInputError, InvalidTypeError, MetalearnError
from metalearn.simulation.oracle import LookaheadOracle
from metalearn.tasks.task import make_task

EPS = float(np.finfo(np.float64).eps)


def _task(n_classes=3, seed=0, n=300, regime="warm"):
    X, y = make_classification(
        n_samples=n, n_features=6, n_informative=4, n_redundant=0, n_classes=n_classes,
        n_clusters_per_class=1, class_sep=1.2, random_state=seed,
    )
    return make_task(X, y, model="logreg", regime=regime, n_warm=12, seed=seed)


def _mask(task):
    mask = np.zeros(task.n_pool, dtype=bool)
    mask[task.initial_labeled] = True
    return mask


def _fit_score(task, rows):
    """A fresh task model on ``rows``: (model, accuracy, log-loss) on the test split."""
    model = task.model().fit(task.X_pool[rows], task.y_pool[rows])
    accuracy = float(np.mean(model.predict(task.X_test) == task.y_test))
    full = np.zeros((task.y_test.size, task.n_classes))
    full[:, model.classes_] = model.predict_proba(task.X_test)
    loss = -np.mean(np.log(np.clip(full[np.arange(task.y_test.size), task.y_test], EPS, 1.0)))
    return model, accuracy, loss


def _brute_force_continuation(task, mask, idx, horizon):
    """Mean (accuracy, log-loss) over the ``horizon`` fresh models: idx, then margin picks."""
    labeled = mask.copy()
    labeled[idx] = True
    model, score, loss = _fit_score(task, np.flatnonzero(labeled))
    scores, losses = [score], [loss]
    for _ in range(horizon - 1):
        available = np.flatnonzero(~labeled)
        m = margins(model.predict_proba(task.X_pool[available]))
        assert np.sum(m == m.min()) == 1  # continuous data: no tie to break
        labeled[available[np.argmin(m)]] = True
        model, score, loss = _fit_score(task, np.flatnonzero(labeled))
        scores.append(score)
        losses.append(loss)
    return float(np.mean(scores)), float(np.mean(losses))


# ------------------------------------------------------------------------------- the oracle
def test_horizon_one_is_the_one_step_oracle_and_draws_nothing():
    task = _task()
    mask = _mask(task)
    cand = LookaheadOracle(task).candidates(mask, None, np.random.default_rng(0), n_candidates=8)
    default = LookaheadOracle(task).gains(mask, cand)
    rng = np.random.default_rng(1)
    before = rng.bit_generator.state
    explicit = LookaheadOracle(task, horizon=1).gains(mask, cand, rng=rng)
    assert rng.bit_generator.state == before  # horizon 1 consumes no randomness
    assert np.array_equal(default.gain, explicit.gain)
    assert np.array_equal(default.log_loss_gain, explicit.log_loss_gain)
    assert default.horizon == explicit.horizon == 1
    assert "horizon=1" in repr(LookaheadOracle(task))


@pytest.mark.parametrize("horizon", [2, 4])
def test_horizon_gains_match_a_brute_force_continuation(horizon):
    task = _task()
    mask = _mask(task)
    oracle = LookaheadOracle(task, warm_start=False, horizon=horizon, random_state=0)
    cand = oracle.candidates(mask, None, np.random.default_rng(2), n_candidates=5)
    result = oracle.gains(mask, cand)
    _, base_score, base_loss = _fit_score(task, np.flatnonzero(mask))
    assert result.horizon == horizon and result.base_score == pytest.approx(base_score, abs=1e-12)
    for j, idx in enumerate(cand):
        score, loss = _brute_force_continuation(task, mask, idx, horizon)
        assert result.gain[j] == pytest.approx(score - base_score, abs=1e-12)
        assert result.log_loss_gain[j] == pytest.approx(base_loss - loss, rel=1e-9, abs=1e-12)


def test_horizon_gains_are_deterministic_finite_and_warm_start_close():
    task = _task(n=400)
    mask = _mask(task)
    cand = LookaheadOracle(task).candidates(mask, None, np.random.default_rng(3), n_candidates=10)
    a = LookaheadOracle(task, horizon=3, random_state=7).gains(mask, cand)
    b = LookaheadOracle(task, horizon=3, random_state=7).gains(mask, cand)
    c = LookaheadOracle(task, horizon=3).gains(mask, cand, rng=np.random.default_rng(7))
    for result in (a, c):
        assert result.gain.shape == result.log_loss_gain.shape == (10,)
        assert np.all(np.isfinite(result.gain)) and np.all(np.isfinite(result.log_loss_gain))
    assert np.array_equal(a.gain, b.gain) and np.array_equal(a.log_loss_gain, b.log_loss_gain)
    assert np.array_equal(a.gain, c.gain)
    fresh = LookaheadOracle(task, horizon=3, warm_start=False, random_state=7).gains(mask, cand)
    # Warm starts follow the same convex optima up to lbfgs's tolerance: a few test records flip.
    assert np.max(np.abs(a.gain - fresh.gain)) <= 3.0 / task.y_test.size + 1e-12
    # evaluate() threads its rng through to the continuation's tie-breaks.
    e1 = LookaheadOracle(task, n_candidates=6, horizon=2).evaluate(mask, rng=np.random.default_rng(4))
    e2 = LookaheadOracle(task, n_candidates=6, horizon=2).evaluate(mask, rng=np.random.default_rng(4))
    assert np.array_equal(e1.candidates, e2.candidates) and np.array_equal(e1.gain, e2.gain)


def test_horizon_longer_than_the_pool_stops_early():
    task = _task(n_classes=2, n=120)
    mask = np.ones(task.n_pool, dtype=bool)
    left = np.array([0, 1, 2])
    mask[left] = False  # three unlabeled records: each continuation has two steps, not four
    result = LookaheadOracle(task, horizon=5, random_state=0, warm_start=False).gains(mask, left)
    assert result.gain.shape == (3,) and np.all(np.isfinite(result.gain)) and np.all(np.isfinite(result.log_loss_gain))
    assert result.horizon == 5
    # Every candidate averages the three models the pool allows: the same as horizon 3, exactly.
    three = LookaheadOracle(task, horizon=3, random_state=0, warm_start=False).gains(mask, left)
    assert np.array_equal(result.gain, three.gain) and np.array_equal(result.log_loss_gain, three.log_loss_gain)
    for j, idx in enumerate(left):
        score, loss = _brute_force_continuation(task, mask, idx, 3)
        assert result.gain[j] == pytest.approx(score - result.base_score, abs=1e-12)


@pytest.mark.parametrize(("horizon", "error"), [(0, InvalidInputError), (-2, InvalidInputError), (1.5, InvalidTypeError),
                                                 ("3", InvalidTypeError), (True, InvalidTypeError)])
def test_bad_horizon_is_refused_at_call_time(horizon, error):
    task = _task()
    mask = _mask(task)
    oracle = LookaheadOracle(task, horizon=horizon)  # scikit-learn style: stored, checked when used
    with pytest.raises(error, match="horizon"):
        oracle.gains(mask, np.flatnonzero(~mask)[:2])
    with pytest.raises(MetalearnError, match="horizon"):
        oracle.evaluate(mask, rng=np.random.default_rng(0))


# ------------------------------------------------------------------------------- trainers and CLI
def test_trainer_configs_accept_and_record_oracle_horizon():
    pytest.importorskip("torch")
    from metalearn.policies.trainers.checkpoints import check_resumable, config_settings
    from metalearn.policies.trainers.imitation import ImitationConfig
    from metalearn.policies.trainers.lal import LALConfig

    for Config in (ImitationConfig, LALConfig):
        assert Config().oracle_horizon == 1
        config = Config(oracle_horizon=3).validate()
        assert config_settings(config)["oracle_horizon"] == 3
        with pytest.raises(InvalidInputError, match="oracle_horizon"):
            Config(oracle_horizon=0).validate()
        # A checkpoint written before the setting existed resumes as horizon 1, and only as that.
        saved = config_settings(Config())
        del saved["oracle_horizon"]
        check_resumable(saved, Config())
        with pytest.raises(InvalidInputError, match="oracle_horizon"):
            check_resumable(saved, Config(oracle_horizon=3))


def test_episode_with_a_horizon_keeps_the_states_and_changes_only_the_gains():
    from metalearn.policies.trainers.episodes import EpisodeSpec, collect_episode

    spec = EpisodeSpec(suite="smoke", seed=0, key=(0, 2), n_candidates=6, window=3, beta=0.0)
    one = collect_episode(spec)
    assert dataclasses.replace(spec, oracle_horizon=1) == spec
    three = collect_episode(dataclasses.replace(spec, oracle_horizon=3))
    again = collect_episode(dataclasses.replace(spec, oracle_horizon=3))
    # beta = 0 (random picks): the oracle does not act, so the episode's states are the same.
    for name in ("candidates", "context", "mask", "chosen"):
        assert np.array_equal(getattr(one, name), getattr(three, name)), name
    assert np.array_equal(np.isfinite(three.gains), three.mask)
    assert np.array_equal(three.gains, again.gains, equal_nan=True)
    assert not np.array_equal(one.gains, three.gains, equal_nan=True)


def test_cli_train_oracle_horizon_is_recorded(tmp_path, capsys):
    pytest.importorskip("torch")
    from metalearn.cli import build_parser, main
    from metalearn.policies.file import read_policy

    assert build_parser().parse_args(["train", "--out", "x"]).oracle_horizon is None
    out = tmp_path / "imitation"
    code = main([
        "train", "--method", "imitation", "--suite", "smoke", "--iterations", "1", "--episodes", "1",
        "--candidates", "6", "--validation-tasks", "0", "--oracle-horizon", "2", "--out", str(out),
    ])
    assert code == 0
    assert read_policy(out / "policy.safetensors").metadata["trainer"]["settings"]["oracle_horizon"] == 2
    capsys.readouterr()
    code = main(["train", "--method", "lal", "--suite", "smoke", "--oracle-horizon", "0", "--out", str(tmp_path / "l")])
    assert code == 2 and "oracle_horizon" in capsys.readouterr().err
