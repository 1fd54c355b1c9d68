"""Stopping rules: the classic criteria (against small-text), the learned rule, its file, its training."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_iris, make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import cohen_kappa_score

from metalearn import load_stopping_rule
from metalearn.exceptions import (
    InvalidInputError,
    InvalidTypeError,
    NotFittedClassifierError,
    StoppingRuleFileError,
    UnknownNameError,
)
from metalearn.stopping import (
    ClassificationChange,
    FixedBudget,
    LearnedStoppingRule,
    MaxConfidence,
    OverallUncertainty,
    StabilizingPredictions,
    cohen_kappa,
    read_stopping_rule,
    save_stopping_rule,
)
from metalearn.stopping.classic import CLASSIC_RULES
from metalearn.stopping.features import STOPPING_FEATURES
from metalearn.stopping.file import calibrated_quantiles, format_stopping_card, released_stopping_rule_names
from metalearn.stopping.model import GainModelArchitecture, parameter_shapes
from metalearn.stopping.training import (
    conformal_quantile_shifts,
    conformal_shifts_by_family,
    gain_targets,
    replay_stops,
    shifts_per_point,
)

REPO = Path(__file__).resolve().parents[1]


class _Scripted:
    """A 'fitted classifier' whose predict_proba returns a scripted array per loop (rows of the pool)."""

    def __init__(self, proba: np.ndarray, X: np.ndarray) -> None:
        self.proba = proba
        self.X = X
        self.classes_ = np.arange(proba.shape[1])
        self.n_features_in_ = X.shape[1]

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        # Look the rows up in the pool (the rule may ask for a subset, e.g. its stop set).
        index = {row.tobytes(): i for i, row in enumerate(self.X)}
        return self.proba[[index[r.tobytes()] for r in np.asarray(rows)]]


def _prediction_sequence(n: int = 120, n_classes: int = 3, loops: int = 14, seed: int = 0) -> list[np.ndarray]:
    """Probabilities per loop whose argmax changes less and less (the predictions stabilise)."""
    rng = np.random.default_rng(seed)
    base = rng.dirichlet(np.ones(n_classes), size=n)
    out = []
    for t in range(loops):
        flip = rng.random(n) < 0.4 * 0.6**t
        proba = base.copy()
        proba[flip] = rng.dirichlet(np.ones(n_classes), size=int(flip.sum()))
        proba = 0.5 * proba + 0.5 * base * (1 - 0.9**t) + 1e-3
        out.append(proba / proba.sum(axis=1, keepdims=True))
    return out


def _pool(n: int = 120) -> tuple[np.ndarray, np.ndarray]:
    X = np.random.default_rng(1).normal(size=(n, 4))
    y = np.full(n, np.nan)
    y[:6] = [0, 1, 2, 0, 1, 2]
    return X, y


# ------------------------------------------------------------------------------------ kappa
def test_cohen_kappa_matches_scikit_learn_and_is_one_for_identical_predictions() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    b[:120] = a[:120]
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))
    assert cohen_kappa(np.zeros(5), np.zeros(5)) == 1.0
    with pytest.raises(InvalidInputError):
        cohen_kappa(np.zeros(3), np.zeros(4))


# ------------------------------------------------------------------------------------ small-text agreement
def test_stabilizing_predictions_agrees_with_small_text_kappa_average() -> None:
    from small_text.stopping_criteria import KappaAverage

    X, y = _pool()
    ours = StabilizingPredictions(stop_set_size=10_000, window=3, kappa=0.9, random_state=0)
    theirs = KappaAverage(num_classes=3, window_size=3, kappa=0.9)
    unlabeled = np.flatnonzero(np.isnan(y))
    decisions = []
    for proba in _prediction_sequence():
        mine = ours.should_stop(X, y, _Scripted(proba, X))
        other = theirs.stop(predictions=proba[unlabeled].argmax(axis=1))
        decisions.append((mine, other))
    assert [m for m, _ in decisions] == [o for _, o in decisions]
    assert any(m for m, _ in decisions) and not all(m for m, _ in decisions)  # the sequence exercises both answers


@pytest.mark.parametrize("threshold", [0.0, 0.05])
def test_classification_change_agrees_with_small_text(threshold: float) -> None:
    from small_text.stopping_criteria import ClassificationChange as SmallTextChange

    X, y = _pool()
    ours = ClassificationChange(threshold=threshold)
    theirs = SmallTextChange(num_classes=3, threshold=threshold)
    unlabeled = np.flatnonzero(np.isnan(y))
    mine, other = [], []
    for proba in _prediction_sequence(seed=3, loops=20):
        mine.append(ours.should_stop(X, y, _Scripted(proba, X)))
        other.append(bool(theirs.stop(predictions=proba[unlabeled].argmax(axis=1))))
    assert mine == other
    assert any(mine) and not all(mine)


def test_overall_uncertainty_agrees_with_small_text() -> None:
    from small_text.stopping_criteria import OverallUncertainty as SmallTextUncertainty

    X, y = _pool()
    unlabeled = np.flatnonzero(np.isnan(y))
    for threshold in (0.3, 0.6, 0.9):
        ours = OverallUncertainty(threshold=threshold)
        theirs = SmallTextUncertainty(num_classes=3, threshold=threshold)
        for proba in _prediction_sequence(seed=5, loops=6):
            assert ours.should_stop(X, y, _Scripted(proba, X)) == bool(
                theirs.stop(proba=proba, indices_stopping=unlabeled)
            )


def test_max_confidence_stops_only_when_every_unlabeled_record_is_certain() -> None:
    X, y = _pool()
    certain = np.tile([0.9999, 0.00005, 0.00005], (X.shape[0], 1))
    rule = MaxConfidence(threshold=0.01)
    assert rule.should_stop(X, y, _Scripted(certain, X)) is True
    one_doubt = certain.copy()
    one_doubt[50] = [0.5, 0.3, 0.2]
    assert rule.should_stop(X, y, _Scripted(one_doubt, X)) is False
    labeled_doubt = certain.copy()
    labeled_doubt[2] = [0.5, 0.3, 0.2]  # a labeled row does not count
    assert MaxConfidence(threshold=0.01).should_stop(X, y, _Scripted(labeled_doubt, X)) is True


def test_fixed_budget_counts_labeled_records() -> None:
    X, y = _pool()
    proba = _prediction_sequence(loops=1)[0]
    assert FixedBudget(max_labeled=7).should_stop(X, y, _Scripted(proba, X)) is False
    y[6] = 0
    assert FixedBudget(max_labeled=7).should_stop(X, y, _Scripted(proba, X)) is True


# ------------------------------------------------------------------------------------ input checks
def test_bad_input_raises_the_projects_errors() -> None:
    X, y = _pool()
    clf = LogisticRegression().fit(X[:6], y[:6])
    rule = load_stopping_rule("stabilizing_predictions")
    with pytest.raises(InvalidInputError):
        rule.should_stop(X, np.full(X.shape[0], np.nan), clf)
    with pytest.raises(InvalidInputError):
        rule.should_stop(X, y[:-1], clf)
    with pytest.raises(InvalidTypeError):
        rule.should_stop(X, y, object())
    with pytest.raises(NotFittedClassifierError):
        rule.should_stop(X, y, LogisticRegression())
    with pytest.raises(InvalidInputError):
        load_stopping_rule("stabilizing_predictions", kappa=2.0)
    with pytest.raises(UnknownNameError):
        load_stopping_rule("no_such_rule")
    with pytest.raises(UnknownNameError):
        load_stopping_rule("fixed_budget", budget=3)  # the parameter is max_labeled
    rule.should_stop(X, y, clf)
    with pytest.raises(InvalidInputError):
        rule.should_stop(X[:, :3], y, LogisticRegression().fit(X[:6, :3], y[:6]))


@pytest.mark.parametrize("name", [*CLASSIC_RULES, *released_stopping_rule_names()])
def test_every_rule_answers_stop_once_the_pool_is_fully_labeled(name: str) -> None:
    # A loop that labels the whole pool and then asks gets "stop", not an error (issue 21), at
    # the first call as after a history of calls, with the call logged.
    X, y_true = make_classification(n_samples=60, n_features=5, n_informative=3, random_state=0)
    y = np.full(y_true.size, np.nan)
    y[:20] = y_true[:20]
    rule = load_stopping_rule(name, random_state=0)
    for _ in range(3):
        labeled = ~np.isnan(y)
        rule.should_stop(X, y, LogisticRegression().fit(X[labeled], y[labeled]))
        y[np.flatnonzero(np.isnan(y))[:10]] = y_true[np.flatnonzero(np.isnan(y))[:10]]
    full = y_true.astype(float)
    clf = LogisticRegression().fit(X, full)
    calls = rule.n_calls_
    assert rule.should_stop(X, full, clf) is True
    assert rule.n_calls_ == calls + 1 and rule.log_[-1]["stop"] is True and rule.log_[-1]["n_labeled"] == X.shape[0]
    assert rule.should_stop(X, full, clf) is True  # asked again: still stop
    assert load_stopping_rule(name, random_state=0).should_stop(X, full, clf) is True  # at a first call too
    if isinstance(rule, LearnedStoppingRule):
        assert rule.estimate_["stop"] is True and rule.estimate_["expected_gain"] == 0.0
    arrays, meta = rule.get_state()  # the state stays exportable (next-batch keeps it)
    json.dumps(meta)


def test_classic_state_round_trip_continues_the_same_decisions() -> None:
    X, y = _pool()
    sequence = _prediction_sequence(loops=12)
    straight = StabilizingPredictions(stop_set_size=50, window=3, kappa=0.9, random_state=4)
    restored = StabilizingPredictions(stop_set_size=50, window=3, kappa=0.9, random_state=4)
    for proba in sequence:
        clf = _Scripted(proba, X)
        expected = straight.should_stop(X, y, clf)
        state = restored.get_state()
        if state is not None:  # a fresh object from the saved state, as next-batch does between runs
            arrays, meta = state
            fresh = StabilizingPredictions(stop_set_size=50, window=3, kappa=0.9, random_state=4)
            restored = fresh.set_state(arrays, json.loads(json.dumps(meta)))
        assert restored.should_stop(X, y, clf) == expected
    assert straight.log_[-1]["stop"] is True


# ------------------------------------------------------------------------------------ learned rule
def _loop(rule, n_loops: int = 12, model=LogisticRegression, seed: int = 0):
    X, y_true = make_classification(n_samples=400, n_features=6, n_informative=4, random_state=seed)
    rng = np.random.default_rng(seed)
    y = np.full(len(y_true), np.nan)
    first = rng.choice(len(y), 10, replace=False)
    y[first] = y_true[first]
    stops, estimates = [], []
    for _ in range(n_loops):
        labeled = ~np.isnan(y)
        clf = model().fit(X[labeled], y[labeled])
        stops.append(rule.should_stop(X, y, clf))
        estimates.append(dict(rule.estimate_) if hasattr(rule, "estimate_") else None)
        picks = rng.choice(np.flatnonzero(~labeled), 10, replace=False)
        y[picks] = y_true[picks]
    return stops, estimates


def test_released_default_rule_exposes_its_estimate_and_the_threshold_knob_works() -> None:
    rule = load_stopping_rule("default")
    assert isinstance(rule, LearnedStoppingRule)
    stops, estimates = _loop(rule)
    for estimate in estimates:
        levels = sorted(estimate["quantiles"])
        values = [estimate["quantiles"][q] for q in levels]
        assert values == sorted(values)  # quantiles are monotone
        assert np.isfinite(estimate["expected_gain"])
        assert estimate["horizon"] == rule.file.horizon
        if estimate["decision"] != "mean":
            assert estimate["statistic"] == estimate["quantiles"][float(estimate["decision"][1:])]
    assert stops == [bool(e["stop"]) for e in estimates]
    # The knob: a threshold above every statistic stops at once (patience 1); one below never stops.
    high = max(e["statistic"] for e in estimates) + 1.0
    assert _loop(load_stopping_rule("default", threshold=high, patience=1))[0][0] is True
    low = min(e["statistic"] for e in estimates) - 1.0
    assert not any(_loop(load_stopping_rule("default", threshold=low))[0])
    with pytest.raises(InvalidTypeError):
        load_stopping_rule("default", threshold="high")


def test_learned_rule_needs_no_torch() -> None:
    code = (
        "import sys, numpy as np\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "import metalearn\n"
        "rule = metalearn.load_stopping_rule('default')\n"
        "X = np.random.default_rng(0).normal(size=(60, 3)); y = np.full(60, np.nan); y[:6] = [0, 1] * 3\n"
        "rule.should_stop(X, y, LogisticRegression().fit(X[:6], y[:6]))\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "False"


def test_learned_rule_history_restored_from_its_state_gives_the_same_estimates() -> None:
    X, y_true = make_classification(n_samples=300, n_features=5, random_state=2)
    rng = np.random.default_rng(2)
    y = np.full(len(y_true), np.nan)
    y[rng.choice(len(y), 12, replace=False)] = 0
    y[~np.isnan(y)] = y_true[~np.isnan(y)]
    straight = load_stopping_rule("default", random_state=1)
    state = None
    for _ in range(6):
        labeled = ~np.isnan(y)
        clf = LogisticRegression().fit(X[labeled], y[labeled])
        straight.should_stop(X, y, clf)
        restored = load_stopping_rule("default", random_state=1)
        if state is not None:
            arrays, meta = state
            restored.load_history(X, arrays, json.loads(json.dumps(meta)))
        restored.should_stop(X, y, clf)
        state = restored.get_state()
        assert restored.estimate_["expected_gain"] == pytest.approx(straight.estimate_["expected_gain"], abs=1e-5)
        picks = rng.choice(np.flatnonzero(~labeled), 10, replace=False)
        y[picks] = y_true[picks]


# ------------------------------------------------------------------------------------ the file
def _params(arch: GainModelArchitecture, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    params = {name: rng.normal(scale=0.1, size=shape).astype(np.float32) for name, shape in parameter_shapes(arch).items()}
    params["x_std"] = np.ones(arch.n_features, dtype=np.float32)
    return params


def test_rule_file_round_trip_and_refusals(tmp_path: Path) -> None:
    arch = GainModelArchitecture(len(STOPPING_FEATURES), 8, (0.1, 0.5, 0.9))
    params = _params(arch)
    path = save_stopping_rule(tmp_path / "r.safetensors", arch, params, {"window": 5, "horizon": 100, "threshold": 0.5})
    rule = read_stopping_rule(path)
    assert rule.horizon == 100 and rule.threshold == 0.5 and rule.arch == arch
    np.testing.assert_array_equal(rule.params["l1.weight"], params["l1.weight"])
    assert load_stopping_rule(path).file.path == path

    pickled = tmp_path / "p.safetensors"
    pickled.write_bytes(pickle.dumps({"weights": 1}))
    with pytest.raises(StoppingRuleFileError, match="pickle"):
        read_stopping_rule(pickled)
    with pytest.raises(StoppingRuleFileError, match="querying policy"):
        read_stopping_rule(REPO / "policies" / "default.safetensors")
    truncated = tmp_path / "t.safetensors"
    truncated.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(StoppingRuleFileError):
        read_stopping_rule(truncated)
    with pytest.raises(StoppingRuleFileError):
        read_stopping_rule(tmp_path / "missing.safetensors")
    bad = dict(params)
    bad["l2.bias"] = np.full_like(params["l2.bias"], np.nan)
    with pytest.raises(StoppingRuleFileError, match="NaN"):
        save_stopping_rule(tmp_path / "n.safetensors", arch, bad, {"window": 5, "horizon": 100, "threshold": 0.5})
    with pytest.raises(StoppingRuleFileError, match="feature"):
        save_stopping_rule(tmp_path / "f.safetensors", arch, params,
                           {"window": 5, "horizon": 100, "threshold": 0.5, "feature_set": {"name": "stopping", "version": 99}})
    with pytest.raises(StoppingRuleFileError, match="horizon"):
        save_stopping_rule(tmp_path / "h.safetensors", arch, params, {"window": 5, "threshold": 0.5})


def test_quantile_shifts_calibrate_the_estimate_and_a_file_without_them_is_unchanged(tmp_path: Path) -> None:
    arch = GainModelArchitecture(len(STOPPING_FEATURES), 8, (0.1, 0.5, 0.9))
    params = _params(arch)
    meta = {"window": 5, "horizon": 100, "threshold": 0.5, "decision": "q0.9", "patience": 1}
    plain = read_stopping_rule(save_stopping_rule(tmp_path / "plain.safetensors", arch, params, meta))
    shifts = [-1.0, 0.5, 2.0]
    shifted = read_stopping_rule(save_stopping_rule(tmp_path / "cal.safetensors", arch, params,
                                                    {**meta, "quantile_shifts": shifts}))
    assert plain.quantile_shifts is None
    np.testing.assert_array_equal(shifted.quantile_shifts, shifts)
    x = np.random.default_rng(0).uniform(size=(20, len(STOPPING_FEATURES)))
    raw, mean = plain.model(x)
    q_plain, mean_plain = plain.gain(x)
    q_cal, mean_cal = shifted.gain(x)
    np.testing.assert_array_equal(q_plain, raw)  # no shifts: the regressor's quantiles as they are
    np.testing.assert_array_equal(mean_cal, mean)  # the mean is never shifted
    np.testing.assert_allclose(q_cal, np.maximum.accumulate(raw + shifts, axis=1))
    assert np.all(np.diff(q_cal, axis=1) >= 0)
    # The rule decides on the calibrated quantile: the same features give a statistic 2 points higher.
    X, y = _pool()
    clf = LogisticRegression().fit(X[:6], y[:6])
    a, b = LearnedStoppingRule(plain, random_state=0), LearnedStoppingRule(shifted, random_state=0)
    a.should_stop(X, y, clf), b.should_stop(X, y, clf)
    assert b.estimate_["statistic"] == pytest.approx(max(a.estimate_["statistic"] + 2.0, b.estimate_["quantiles"][0.5]))
    assert "quantile calibration" in format_stopping_card(shifted) and "quantile calibration" not in format_stopping_card(plain)


@pytest.mark.parametrize("shifts", [[0.0, 1.0], [0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 1e300], [0.0, 1.0, 10**400],
                                    [0.0, True, 1.0], [0.0, "1", 1.0], {"q0.9": 1.0}, 2.0])
def test_quantile_shifts_are_bounded_at_load(tmp_path: Path, shifts: object) -> None:
    arch = GainModelArchitecture(len(STOPPING_FEATURES), 8, (0.1, 0.5, 0.9))
    with pytest.raises(StoppingRuleFileError, match="quantile_shifts"):
        save_stopping_rule(tmp_path / "s.safetensors", arch, _params(arch),
                           {"window": 5, "horizon": 100, "threshold": 0.5, "quantile_shifts": shifts})


def test_family_shifts_calibrate_their_family_and_other_models_get_the_pooled_ones(tmp_path: Path) -> None:
    arch = GainModelArchitecture(len(STOPPING_FEATURES), 8, (0.1, 0.5, 0.9))
    meta = {"window": 5, "horizon": 100, "threshold": 0.5, "decision": "q0.9", "patience": 1,
            "quantile_shifts": [0.0, 0.0, 1.0], "quantile_shifts_by_family": {"forest": [0.0, 0.0, 4.0]}}
    rule = read_stopping_rule(save_stopping_rule(tmp_path / "fam.safetensors", arch, _params(arch), meta))
    np.testing.assert_array_equal(rule.shifts_for("forest"), [0.0, 0.0, 4.0])
    np.testing.assert_array_equal(rule.shifts_for("linear"), [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(rule.shifts_for(None), [0.0, 0.0, 1.0])
    X, y = _pool()
    estimates = {}
    for name, clf in (("forest", RandomForestClassifier(n_estimators=5, random_state=0)), ("linear", LogisticRegression())):
        learned = LearnedStoppingRule(rule, random_state=0)
        learned.should_stop(X, y, clf.fit(X[:6], y[:6]))
        estimates[name] = learned.estimate_
        assert learned.estimate_["model_family"] == name
        raw = np.array(list(learned.estimate_["uncalibrated_quantiles"].values()))
        np.testing.assert_allclose(list(learned.estimate_["quantiles"].values()),
                                   np.maximum.accumulate(raw + rule.shifts_for(name)))
    assert "for forest models" in format_stopping_card(rule)


@pytest.mark.parametrize("table", [{"trees": [0.0, 0.0, 1.0]}, {"forest": [0.0, 1.0]}, {"forest": [0.0, 1.0, 1e300]},
                                   ["forest"], {"forest": "1,2,3"}])
def test_family_shifts_are_checked_at_load(tmp_path: Path, table: object) -> None:
    arch = GainModelArchitecture(len(STOPPING_FEATURES), 8, (0.1, 0.5, 0.9))
    with pytest.raises(StoppingRuleFileError, match="quantile_shifts_by_family"):
        save_stopping_rule(tmp_path / "s.safetensors", arch, _params(arch),
                           {"window": 5, "horizon": 100, "threshold": 0.5, "quantile_shifts_by_family": table})


def test_model_family_sees_through_the_wrappers_users_put_around_a_model() -> None:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.naive_bayes import GaussianNB
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    from metalearn.stopping.model_family import MODEL_FAMILIES, model_family, zoo_model_family
    from metalearn.tasks.models import MODEL_NAMES, make_model

    assert model_family(make_pipeline(StandardScaler(), RandomForestClassifier())) == "forest"
    assert model_family(CalibratedClassifierCV(LinearSVC())) == "linear"
    assert model_family(make_model("hgb", 0, warm_start=True)) == "boosting"
    assert model_family(HistGradientBoostingClassifier()) == "boosting"
    assert model_family(GaussianNB()) == "nb"
    assert model_family(object()) == "other"
    expected = {"logreg": "linear", "rf": "forest", "hgb": "boosting", "svm": "svm", "knn": "knn", "mlp": "mlp", "nb": "nb",
                "sgd": "linear"}
    for name in MODEL_NAMES:
        assert zoo_model_family(name) in MODEL_FAMILIES
        assert zoo_model_family(name) == expected.get(name, zoo_model_family(name))
    assert [zoo_model_family(n) for n in expected] == list(expected.values())


# ------------------------------------------------------------------------------------ training pieces
def test_gain_targets_censor_past_a_budget_end_and_extend_past_an_exhausted_pool() -> None:
    n_bought = np.array([0, 10, 20, 30, 40])
    accuracy = np.array([0.5, 0.6, 0.7, 0.7, 0.7])
    censored = gain_targets(n_bought, accuracy, horizon=20, pool_exhausted=False)
    assert np.isfinite(censored[:3]).all() and np.isnan(censored[3:]).all()
    smooth = np.array([(0.5 + 0.5 + 0.6) / 3, 0.6, (0.6 + 0.7 + 0.7) / 3, 0.7, 0.7])
    assert censored[0] == pytest.approx(100 * (smooth[2] - smooth[0]))
    exhausted = gain_targets(n_bought, accuracy, horizon=20, pool_exhausted=True)
    assert exhausted[4] == pytest.approx(0.0) and np.isfinite(exhausted).all()


def test_conformal_shifts_make_each_level_cover_its_share_on_new_points() -> None:
    rng = np.random.default_rng(0)
    levels = (0.1, 0.5, 0.9)
    truth = np.array([-1.2816, 0.0, 1.2816])  # quantiles of a standard normal
    predicted = np.tile(0.5 * truth - 0.7, (4000, 1))  # too narrow and too low, as the released rule's
    shifts = conformal_quantile_shifts(predicted, rng.normal(size=4000), levels)
    fresh = rng.normal(size=20000)
    raw_cover = (fresh[:, None] <= predicted[0]).mean(axis=0)
    cover = (fresh[:, None] <= calibrated_quantiles(predicted[0], shifts)).mean(axis=0)
    assert raw_cover[2] < 0.85  # miscalibrated before
    np.testing.assert_allclose(cover, levels, atol=0.02)
    with pytest.raises(InvalidInputError):
        conformal_quantile_shifts(predicted[:, :2], rng.normal(size=4000), levels)


def test_family_shifts_correct_each_familys_own_bias_and_small_families_use_the_pooled_ones() -> None:
    rng = np.random.default_rng(1)
    levels = (0.1, 0.5, 0.9)
    predicted = np.zeros((3000, 3)) + np.array([-1.2816, 0.0, 1.2816])
    families = np.array(["linear"] * 1500 + ["forest"] * 1450 + ["knn"] * 50)
    realised = rng.normal(size=3000) + np.where(families == "forest", 2.0, 0.0)  # forests keep gaining more
    pooled = conformal_quantile_shifts(predicted, realised, levels)
    by_family = conformal_shifts_by_family(predicted, realised, families, levels, min_points=200)
    assert set(by_family) == {"linear", "forest"}  # knn has too few points
    assert by_family["forest"][1] == pytest.approx(2.0, abs=0.15) and by_family["linear"][1] == pytest.approx(0.0, abs=0.15)
    per_point = shifts_per_point(families, pooled, by_family)
    np.testing.assert_array_equal(per_point[families == "knn"][0], pooled)
    calibrated = calibrated_quantiles(predicted, per_point)
    for family in ("linear", "forest"):
        mask = families == family
        cover = (realised[mask, None] <= calibrated[mask]).mean(axis=0)
        np.testing.assert_allclose(cover, levels, atol=0.03)
    pooled_cover = (realised[families == "forest", None] <= calibrated_quantiles(predicted, pooled)[families == "forest"]).mean(0)
    assert pooled_cover[2] < 0.85  # one pooled set of shifts leaves the forests under-covered
    assert conformal_shifts_by_family(predicted, realised, families, levels, min_points=0) == {}


def test_replay_stops_respects_threshold_and_patience() -> None:
    import pandas as pd

    loops = pd.DataFrame({"run_id": ["a"] * 5, "point": range(5), "n_bought": [0, 10, 20, 30, 40],
                          "accuracy": [0.5, 0.6, 0.65, 0.66, 0.7]})
    expected = np.array([5.0, 0.1, 3.0, 0.1, 0.1])
    once = replay_stops(loops, expected, threshold=0.5, patience=1).iloc[0]
    assert once["labels_at_stop"] == 10 and once["points_lost"] == pytest.approx(10.0)
    twice = replay_stops(loops, expected, threshold=0.5, patience=2).iloc[0]
    assert twice["labels_at_stop"] == 40 and twice["labels_saved"] == 0
