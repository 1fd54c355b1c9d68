"""Measured compute (issue 21, part 1): the step-curve AULC, fits and seconds per run, the report section."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris

from metalearn.benchmark import BenchmarkConfig, run_benchmark, write_report
from metalearn.benchmark.stats import (
    METRICS, compute_front, compute_summary, front_weights, has_compute, overall_comparison, strategy_summary,
)
from metalearn.benchmark.storage import COMPUTE_COLUMNS, ResultStore, derived_compute, write_table
from metalearn.exceptions import InvalidInputError
from metalearn.simulation import area_under_learning_curve, simulate, step_area_under_learning_curve
from metalearn.strategies import MarginSampling
from metalearn.tasks.task import make_task

# ----------------------------------------------------------------- the step curve, by hand

# One underlying learning curve: the score of a model trained on n labels is 0.5 + 0.1 n.
SCORE = {n: 0.5 + 0.1 * n for n in range(5)}


def _curve(batch: int, budget: int = 4) -> tuple[np.ndarray, np.ndarray]:
    n = np.arange(0, budget + 1, batch)
    n = np.append(n, budget) if n[-1] != budget else n
    return n, np.array([SCORE[int(k)] for k in n])


def test_batch_one_is_the_left_riemann_sum_of_the_plain_curve():
    n, s = _curve(1)
    assert step_area_under_learning_curve(n, s, 4) == pytest.approx((0.5 + 0.6 + 0.7 + 0.8) / 4)  # 0.65
    # the convention: the plain (trapezoidal) AULC less half the gain over the budget, per label
    assert step_area_under_learning_curve(n, s, 4) == pytest.approx(
        area_under_learning_curve(n, s, 4) - (s[-1] - s[0]) / (2 * 4)
    )


def test_bigger_batches_are_charged_for_the_labels_bought_before_the_retrain():
    plain = {b: area_under_learning_curve(*_curve(b), 4) for b in (1, 2, 4)}
    step = {b: step_area_under_learning_curve(*_curve(b), 4) for b in (1, 2, 4)}
    assert plain[1] == pytest.approx(plain[2]) == pytest.approx(plain[4]) == pytest.approx(0.7)  # a line: no charge
    assert step[2] == pytest.approx((0.5 * 2 + 0.7 * 2) / 4)  # 0.60
    assert step[4] == pytest.approx(0.5)  # one retrain, after the whole budget: the initial model all along
    assert step[1] > step[2] > step[4]


def test_step_curve_conventions_shared_with_the_plain_aulc():
    # pool exhausted at 2 labels: the last model is held up to the budget
    assert step_area_under_learning_curve([0, 2], [0.5, 0.9], 4) == pytest.approx((0.5 * 2 + 0.9 * 2) / 4)
    # points past the budget are ignored
    assert step_area_under_learning_curve([0, 3, 6], [0.5, 0.8, 1.0], 4) == pytest.approx((0.5 * 3 + 0.8) / 4)
    # of two models at the same label count, the later one is the user's
    assert step_area_under_learning_curve([0, 2, 2], [0.5, 0.1, 0.9], 4) == pytest.approx((0.5 * 2 + 0.9 * 2) / 4)
    assert step_area_under_learning_curve([0], [0.42], 10) == pytest.approx(0.42)
    assert np.isnan(step_area_under_learning_curve([5], [0.42], 4))


def test_step_curve_lies_between_the_curve_extremes():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = np.concatenate([[0], np.sort(rng.integers(1, 40, size=6))])
        s = rng.uniform(size=n.size)
        value = step_area_under_learning_curve(n, s, 30)
        within = s[n <= 30]
        assert within.min() - 1e-12 <= value <= within.max() + 1e-12


@pytest.mark.parametrize(
    "n_bought, scores, budget", [([0, 1], [0.5, 0.6], 0), ([0, 1], [0.5], 4)], ids=["budget", "lengths"]
)
def test_step_curve_rejects_bad_input(n_bought, scores, budget):
    with pytest.raises(InvalidInputError):
        step_area_under_learning_curve(n_bought, scores, budget)


# ----------------------------------------------------------------- the simulator counts fits


def test_simulation_counts_one_fit_per_point_and_times_it():
    X, y = load_iris(return_X_y=True)
    task = make_task(X, y, name="iris", label_budget=12, batch_size=5, seed=0)
    result = simulate(task, MarginSampling())
    assert result.n_fits == result.n_bought.size == 4  # the initial model, then after 5, 10 and 12 labels
    assert result.fit_seconds.shape == result.query_seconds.shape
    assert (result.fit_seconds > 0).all()
    assert result.step_aulc_accuracy == step_area_under_learning_curve(result.n_bought, result.accuracy, 12)
    assert result.step_aulc_macro_f1 == step_area_under_learning_curve(result.n_bought, result.macro_f1, 12)
    assert result.to_frame()["fit_seconds"].tolist() == result.fit_seconds.tolist()


# ----------------------------------------------------------------- benchmark columns and report


def _config() -> BenchmarkConfig:
    return BenchmarkConfig(
        strategies=["random", "margin"], datasets=["sklearn:iris"], models=["logreg"], regimes=["cold"],
        batch_sizes=[1, 5], label_budget=10, n_seeds=2, seed=3,
    )


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory):
    out = tmp_path_factory.mktemp("compute")
    return run_benchmark(_config(), out, progress=False), out


def test_every_run_records_its_fits_and_seconds(benchmark):
    result, out = benchmark
    runs, curves = result.runs, result.curves
    assert (runs["status"] == "ok").all() and len(runs) == 8
    per_run = curves.groupby("run_id").agg(
        points=("loop", "size"), fit=("fit_seconds", "sum"), query=("query_seconds", "sum")
    )
    runs = runs.set_index("run_id").join(per_run)
    assert (runs["n_fits"] == runs["points"]).all()
    assert sorted(runs.groupby("batch_size")["n_fits"].unique().map(list).tolist()) == [[3], [11]]
    np.testing.assert_allclose(runs["fit_seconds"], runs["fit"])
    np.testing.assert_allclose(runs["query_seconds_total"], runs["query"])
    assert (runs["fit_seconds"] > 0).all()
    for run_id, curve in curves.groupby("run_id"):
        expected = step_area_under_learning_curve(curve["n_bought"], curve["accuracy"], 10)
        assert runs.loc[run_id, "step_aulc_accuracy"] == pytest.approx(expected)
    table = ResultStore(out).read_table()
    assert {*COMPUTE_COLUMNS, "curve_fit_seconds"} <= set(table.columns)


def test_the_statistics_take_the_step_curve_aulc_as_a_metric(benchmark):
    runs = benchmark[0].runs
    assert {"step_aulc_accuracy", "step_aulc_macro_f1"} <= set(METRICS)
    summary = strategy_summary(runs, "step_aulc_accuracy").set_index("strategy")
    expected = runs.groupby("strategy")["step_aulc_accuracy"].mean() * 100
    np.testing.assert_allclose(summary["step_aulc_accuracy"], expected[summary.index])
    overall = overall_comparison(runs, "margin", "step_aulc_accuracy")
    assert set(overall["strategy"]) == {"random", "margin"}
    with pytest.raises(InvalidInputError, match="unknown metric"):
        compute_summary(runs, "aulc")


def test_compute_summary_means_per_strategy_and_batch_size():
    runs = pd.DataFrame(
        {
            "dataset": ["a", "b", "a", "b"], "model": "logreg", "regime": "cold", "batch_size": [1, 1, 5, 5],
            "seed": 0, "strategy": "margin", "status": "ok", "n_fits": [101.0, 101.0, 21.0, 23.0],
            "fit_seconds": [2.0, 4.0, 0.5, 0.5], "query_seconds_total": [1.0, 1.0, 0.25, 0.75],
            "step_aulc_accuracy": [0.8, 0.9, 0.7, 0.8],
        }
    )
    summary = compute_summary(runs).set_index("batch_size")
    assert summary.loc[1, "n_fits"] == 101 and summary.loc[5, "n_fits"] == 22
    assert summary.loc[1, "fit_seconds"] == 3.0 and summary.loc[5, "query_seconds"] == 0.5
    assert summary.loc[1, "compute_seconds"] == 4.0 and summary.loc[5, "compute_seconds"] == 1.0
    assert summary.loc[1, "step_aulc_accuracy"] == pytest.approx(85.0)
    assert (summary["n_runs"] == 2).all()
    assert compute_summary(runs.assign(n_fits=np.nan)).empty


def _section(path) -> str:
    return path.read_text(encoding="utf-8")


def test_the_compute_section_appears_only_when_runs_recorded_their_compute(benchmark, tmp_path):
    pytest.importorskip("matplotlib")
    result, _ = benchmark
    runs, curves = result.runs, result.curves
    files = write_report(runs, curves, tmp_path / "new", formats=("md",))
    text = _section(files["md"])
    assert "## Compute" in text and "compute_logreg_cold" in files
    assert "| logreg | cold | margin | 1 | 2 | 11 |" in text  # fits per run at batch 1: the initial model and 10

    # results stored before compute was recorded: no column at all, or only NaN (a table read back)
    old_curves = curves.drop(columns=["fit_seconds"])
    absent = write_report(runs.drop(columns=list(COMPUTE_COLUMNS)), old_curves, tmp_path / "absent", formats=("md",))
    empty = write_report(runs.assign(**{c: np.nan for c in COMPUTE_COLUMNS}), old_curves, tmp_path / "nan",
                         formats=("md",))
    assert "Compute" not in _section(absent["md"]) and not any(k.startswith("compute") for k in absent)
    assert _section(empty["md"]) == _section(absent["md"])
    assert not has_compute(runs.drop(columns=["n_fits"])) and has_compute(runs)


def test_an_old_results_table_gets_the_compute_its_curves_determine(benchmark, tmp_path):
    pytest.importorskip("pyarrow")
    pytest.importorskip("matplotlib")
    result, out = benchmark
    old = tmp_path / "old"
    old.mkdir()
    (old / "benchmark.json").write_bytes((out / "benchmark.json").read_bytes())
    table = ResultStore(out).read_table()
    write_table(table.drop(columns=[*COMPUTE_COLUMNS, "curve_fit_seconds"]), old / "results.parquet")
    before = (old / "results.parquet").read_bytes()
    looked = run_benchmark(_config(), old, progress=False, stored_only=True)
    assert looked.computed == 0 and len(looked.runs) == 8
    # fits, step-curve AULC and query seconds follow from the stored curve exactly; fit seconds were never measured
    new = result.runs.set_index("run_id").sort_index()
    derived = looked.runs.set_index("run_id").sort_index()
    for column in ("n_fits", "step_aulc_accuracy", "step_aulc_macro_f1", "query_seconds_total"):
        np.testing.assert_allclose(derived[column].to_numpy(float), new[column].to_numpy(float), err_msg=column)
    assert derived["fit_seconds"].isna().all()
    assert "fit_seconds" not in looked.curves.columns
    assert (old / "results.parquet").read_bytes() == before  # read, never rewritten
    files = write_report(looked.runs, looked.curves, old, formats=("md",))
    assert "## Compute" in _section(files["md"])


def test_derived_compute_keeps_what_a_run_recorded_and_skips_failed_runs():
    curve = {"n_bought": [0, 5, 10], "accuracy": [0.5, 0.7, 0.9], "macro_f1": [0.4, 0.6, 0.8],
             "query_seconds": [0.0, 0.25, 0.5]}
    summary = {"status": "ok", "label_budget": 10}
    added = derived_compute(summary, curve)
    assert added["n_fits"] == 3 and added["query_seconds_total"] == pytest.approx(0.75)
    assert added["step_aulc_accuracy"] == pytest.approx(0.6)  # 0.5 over labels 0-4, 0.7 over 5-9
    assert added["step_aulc_macro_f1"] == pytest.approx(0.5)
    assert derived_compute({**summary, "n_fits": 7, "step_aulc_accuracy": 0.1}, curve).keys() == {
        "step_aulc_macro_f1", "query_seconds_total"}
    assert derived_compute({**summary, "n_fits": float("nan")}, curve)["n_fits"] == 3
    assert derived_compute({"status": "failed", "label_budget": 10}, curve) == {}
    assert derived_compute(summary, {}) == {}
    assert derived_compute({"status": "ok"}, curve) == {}  # no budget: nothing is guessed


def test_the_front_keeps_only_points_no_cheaper_point_beats():
    fits = [101, 51, 21, 11, 6, 3, 13, 30]
    scores = [90.0, 89.9, 89.0, 88.0, 85.0, 80.0, 88.5, 88.9]  # 30 fits at 88.9: beaten by 21 fits at 89.0
    front = compute_front(fits, scores)
    assert [fits[i] for i in front] == [3, 6, 11, 13, 21, 51, 101]
    assert compute_front([5, 5, 10], [1.0, 2.0, 1.5]).tolist() == [1]  # equal fits: the better score only
    with pytest.raises(InvalidInputError, match="positive"):
        compute_front([0, 5], [1.0, 2.0])
    with pytest.raises(InvalidInputError, match="one length"):
        compute_front([1, 5], [1.0])


def test_the_front_is_read_in_log_fits_and_never_extrapolated():
    lo, hi, w = front_weights([10, 40], 20)
    assert (lo, hi) == (0, 1) and w == pytest.approx(0.5)  # 20 is halfway between 10 and 40 in log fits
    assert front_weights([10, 40], 10) == (0, 0, 1.0)
    assert front_weights([10, 40], 5) == (0, 0, 1.0)
    assert front_weights([10, 40], 80) == (1, 1, 1.0)
    assert front_weights([10, 20, 40], 20) == (1, 1, 1.0)
    with pytest.raises(InvalidInputError, match="increasing"):
        front_weights([40, 10], 20)
