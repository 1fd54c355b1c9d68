"""Statistics and report of the benchmark, on synthetic runs/curves tables built with known answers."""

from __future__ import annotations

import math
from pathlib import Path
import re

import numpy as np
import pandas as pd
import pytest

from metalearn.benchmark.report import format_table, write_report
from metalearn.benchmark.stats import (
    PROBLEM_KEYS,
    SETTING_KEYS,
    critical_difference,
    failed_runs,
    friedman_test,
    gap_closed,
    labels_to_reach,
    mean_ranks,
    min_wilcoxon_p,
    nemenyi_groups,
    overall_comparison,
    paired_differences,
    paired_test,
    rank_table,
    run_differences,
    strategy_summary,
)
from metalearn.exceptions import InvalidInputError

DATASETS = ("alpha", "beta", "gamma")
SETTINGS = (("logreg", "cold", 1), ("rf", "warm", 10))
# offsets of the AULC to margin's, by construction
OFFSETS = {"oracle": 0.10, "better": 0.02, "similar": 0.0, "margin": 0.0, "random": -0.04}
BUDGET = 20


def make_tables(
    n_seeds: int = 8,
    datasets: tuple[str, ...] = DATASETS,
    settings: tuple[tuple[str, str, int], ...] = SETTINGS,
    strategies: tuple[str, ...] = tuple(OFFSETS),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Synthetic paired runs: score = problem base + seed effect + strategy offset (+ zero-mean jitter).

    ``better`` and ``similar`` get a +-0.001 jitter alternating over seeds (zero mean for an even
    number of seeds), so their per-problem mean differences to margin are exactly +2 and 0 points.
    """
    rng = np.random.default_rng(0)
    runs, curves = [], []
    for p, (dataset, (model, regime, batch)) in enumerate((d, s) for s in settings for d in datasets):
        base = 0.6 + 0.05 * p
        for seed in range(n_seeds):
            seed_effect = rng.normal(0, 0.01)
            jitter = 0.001 if seed % 2 == 0 else -0.001
            for strategy in strategies:
                score = base + seed_effect + OFFSETS[strategy] + (jitter if strategy in ("better", "similar") else 0.0)
                run_id = f"{dataset}|{model}|{regime}|{batch}|{seed}|{strategy}"
                full = base + 0.15
                n_bought = np.arange(0, BUDGET + 1, batch)
                acc = score - 0.1 + 0.15 * (1 - np.exp(-3 * n_bought / BUDGET))
                runs.append(
                    dict(
                        run_id=run_id, dataset=dataset, model=model, regime=regime, batch_size=batch, seed=seed,
                        strategy=strategy, status="ok", error="", aulc_accuracy=score, aulc_macro_f1=score - 0.03,
                        final_accuracy=acc[-1], final_macro_f1=acc[-1] - 0.03,
                        labels_to_98_accuracy=labels_to_reach(n_bought, acc, 0.98 * full),
                        labels_to_98_macro_f1=labels_to_reach(n_bought, acc - 0.03, 0.98 * (full - 0.03)),
                        full_pool_accuracy=full, full_pool_macro_f1=full - 0.03,
                        query_seconds_mean=0.001 * (1 + len(strategy)), wall_seconds=0.5, label_budget=BUDGET,
                    )
                )
                for loop, (nb, a) in enumerate(zip(n_bought, acc)):
                    curves.append(
                        dict(
                            run_id=run_id, dataset=dataset, model=model, regime=regime, batch_size=batch, seed=seed,
                            strategy=strategy, loop=loop, n_bought=int(nb), accuracy=a, macro_f1=a - 0.03,
                            query_seconds=0.001,
                        )
                    )
    return pd.DataFrame(runs), pd.DataFrame(curves)


def fail(runs: pd.DataFrame, curves: pd.DataFrame, mask: pd.Series, *, bogus: float = 0.0):
    """Mark runs failed; their metric is set to a bogus value to prove status, not NaN, excludes them."""
    runs = runs.copy()
    runs.loc[mask, "status"] = "failed"
    runs.loc[mask, "error"] = "RuntimeError: boom | with a pipe"
    metrics = [c for c in runs.columns if c.startswith(("aulc_", "final_", "labels_to_98", "full_pool"))]
    runs.loc[mask, metrics] = np.nan
    runs.loc[mask, "aulc_accuracy"] = bogus
    curves = curves.loc[~curves["run_id"].isin(runs.loc[mask, "run_id"])]
    return runs, curves


@pytest.fixture(scope="module")
def tables():
    return make_tables()


# ----------------------------------------------------------------------------- labels_to_reach


def test_labels_to_reach_edge_cases():
    n = np.array([0, 5, 10, 15])
    s = np.array([0.5, 0.7, 0.69, 0.9])
    assert labels_to_reach(n, s, 0.7) == 5.0  # first point >= target, inclusive
    assert labels_to_reach(n, s, 0.4) == 0.0  # initial model already there
    assert math.isnan(labels_to_reach(n, s, 0.95))  # never reached
    assert math.isnan(labels_to_reach([], [], 0.5))
    assert math.isnan(labels_to_reach(n, s, float("nan")))
    assert labels_to_reach(n, np.array([np.nan, 0.8, 0.8, 0.8]), 0.8) == 5.0
    assert isinstance(labels_to_reach([0, 1], [1.0, 1.0], 1.0), float)
    with pytest.raises(InvalidInputError):
        labels_to_reach([0, 1, 2], [0.1, 0.2], 0.1)


# ----------------------------------------------------------------------------- per problem


def test_paired_differences_known_values(tables):
    runs, _ = tables
    d = paired_differences(runs, reference="margin")
    assert set(d["strategy"]) == {"oracle", "better", "similar", "random"}
    assert len(d) == 4 * len(DATASETS) * len(SETTINGS)
    assert (d["n_seeds"] == 8).all()
    by = d.groupby("strategy")
    np.testing.assert_allclose(by["mean_diff"].mean()[["oracle", "better", "similar", "random"]], [10, 2, 0, -4], atol=1e-9)
    assert (d.loc[d["strategy"].isin(["oracle", "better"]), "outcome"] == "win").all()
    assert (d.loc[d["strategy"] == "random", "outcome"] == "loss").all()
    assert (d.loc[d["strategy"] == "similar", "outcome"] == "tie").all()
    # exact Wilcoxon, 8 equal-sign differences: p = 2 / 2**8
    np.testing.assert_allclose(d.loc[d["strategy"] == "random", "p_value"], 2 / 2**8)
    # constant differences: the CI is the point itself; jittered ones: a t interval around +2
    rnd = d.loc[d["strategy"] == "random"]
    np.testing.assert_allclose(rnd["ci_low"], -4, atol=1e-9)
    np.testing.assert_allclose(rnd["ci_high"], -4, atol=1e-9)
    better = d.loc[d["strategy"] == "better"]
    half = 2.3646242510102993 * 0.1 * math.sqrt(8 / 7) / math.sqrt(8)  # t(0.975, 7) * sd / sqrt(n)
    np.testing.assert_allclose(better["ci_low"], 2 - half, atol=1e-6)
    np.testing.assert_allclose(better["ci_high"], 2 + half, atol=1e-6)


def test_paired_test_small_and_degenerate_samples():
    assert math.isnan(paired_test([1.0]))
    assert math.isnan(paired_test([]))
    assert paired_test([0.0, 0.0, 0.0]) == 1.0
    assert paired_test([1e-15, -1e-15, 0.0]) == 1.0  # float noise is a tie
    assert paired_test([1.0] * 5) == pytest.approx(min_wilcoxon_p(5)) == pytest.approx(0.0625)
    assert paired_test([1.0] * 6) < 0.05
    assert paired_test([2.0, 2.0, 2.0], test="ttest") == 0.0
    assert 0 < paired_test([1.0, 2.0, 3.0], test="ttest") < 1
    with pytest.raises(InvalidInputError):
        paired_test([1.0, 2.0], test="sign")


def test_five_seeds_can_not_be_significant_with_wilcoxon():
    runs, _ = make_tables(n_seeds=5, datasets=("alpha",), settings=SETTINGS[:1])
    d = paired_differences(runs)
    assert (d["outcome"] == "tie").all()
    assert (d.loc[d["strategy"] == "random", "p_value"] == 0.0625).all()


def test_single_seed_gives_nan_test_and_tie():
    runs, _ = make_tables(n_seeds=1, datasets=("alpha",), settings=SETTINGS[:1])
    d = paired_differences(runs)
    assert (d["n_seeds"] == 1).all()
    assert d["p_value"].isna().all() and d["ci_low"].isna().all()
    assert (d["outcome"] == "tie").all()
    np.testing.assert_allclose(d.set_index("strategy").loc["random", "mean_diff"], -4, atol=1e-9)


def test_rank_table_and_mean_ranks(tables):
    runs, _ = tables
    ranks = rank_table(runs)
    assert len(ranks) == 5 * 6
    first = ranks.loc[(ranks["dataset"] == "alpha") & (ranks["model"] == "logreg")].set_index("strategy")["rank"]
    # better > similar == margin (average rank) > random; oracle first
    assert first.to_dict() == {"oracle": 1.0, "better": 2.0, "similar": 3.5, "margin": 3.5, "random": 5.0}
    m = mean_ranks(runs).set_index("strategy")
    assert list(m.index[:2]) == ["oracle", "better"] and m.index[-1] == "random"
    assert (m["n_problems"] == 6).all()
    by = mean_ranks(runs, by=SETTING_KEYS)
    assert len(by) == 5 * len(SETTINGS) and set(by.columns) >= {"model", "regime", "batch_size", "mean_rank"}
    with pytest.raises(InvalidInputError):
        mean_ranks(runs, by=["strategy"])


# ----------------------------------------------------------------------------- over problems


def test_overall_comparison(tables):
    runs, _ = tables
    o = overall_comparison(runs, reference="margin").set_index("strategy")
    assert list(o.index) == ["oracle", "better", "margin", "similar", "random"]  # by mean rank, then name
    assert o.loc["better", "wins"] == 6 and o.loc["better", "losses"] == 0
    assert o.loc["random", "losses"] == 6 and o.loc["random", "wins"] == 0
    assert o.loc["similar", "ties"] == 6
    assert o.loc["margin", "mean_diff"] == 0 and math.isnan(o.loc["margin", "p_value"])
    np.testing.assert_allclose(o.loc["better", "mean_diff"], 2.0, atol=1e-9)
    np.testing.assert_allclose(o.loc["better", "p_value"], 2 / 2**6)  # 6 problems, all positive
    assert o.loc["similar", "p_value"] == 1.0  # every per-problem difference is exactly zero
    # gap closed: (S - random) / (oracle - random) = (offset + 0.04) / 0.14
    np.testing.assert_allclose(o.loc["better", "gap_closed"], 0.06 / 0.14, atol=1e-9)
    np.testing.assert_allclose(o.loc["margin", "gap_closed"], 0.04 / 0.14, atol=1e-9)
    np.testing.assert_allclose(o.loc[["random", "oracle"], "gap_closed"], [0.0, 1.0], atol=1e-12)
    by = overall_comparison(runs, reference="margin", by=SETTING_KEYS)
    assert len(by) == 5 * len(SETTINGS)
    assert (by.loc[by["strategy"] == "better", "wins"] == 3).all()


def test_gap_is_a_ratio_of_means_and_absent_without_oracle(tables):
    runs, _ = tables
    assert "gap_closed" not in overall_comparison(runs[runs["strategy"] != "oracle"]).columns
    assert gap_closed(runs[runs["strategy"] != "oracle"]).empty
    flat = runs.copy()
    first = (flat["dataset"] == "alpha") & (flat["model"] == "logreg")
    rnd = flat.loc[first & (flat["strategy"] == "random")].set_index("seed")["aulc_accuracy"]
    oracle_rows = first & (flat["strategy"] == "oracle")
    # one problem of six where the oracle beats random by a hair: a mean of per-problem ratios
    # would be ~600 there; the ratio of means adds its gain to the numerator only
    flat.loc[oracle_rows, "aulc_accuracy"] = flat.loc[oracle_rows, "seed"].map(rnd).to_numpy() + 1e-4
    o = overall_comparison(flat).set_index("strategy")
    expected = 0.06 / ((5 * 0.14 + 1e-4) / 6)
    np.testing.assert_allclose(o.loc["better", "gap_closed"], expected, atol=1e-9)
    np.testing.assert_allclose(o.loc[["random", "oracle"], "gap_closed"], [0.0, 1.0], atol=1e-12)


def test_gap_closed_per_group_and_with_missing_runs(tables):
    runs, _ = tables
    gaps = gap_closed(runs, ["margin", "better", "absent"], by=["model"])
    assert list(gaps.columns) == ["model", "strategy", "n_runs", "gap_points", "gap_closed"]
    assert list(gaps["strategy"]) == ["margin", "better", "absent"] * 2
    assert (gaps["n_runs"] == 3 * 8).all()
    np.testing.assert_allclose(gaps["gap_points"], 14.0, atol=1e-9)
    by = gaps.set_index(["model", "strategy"])["gap_closed"]
    np.testing.assert_allclose(by.loc[("rf", "better")], 0.06 / 0.14, atol=1e-9)
    np.testing.assert_allclose(by.loc[("logreg", "margin")], 0.04 / 0.14, atol=1e-9)
    assert math.isnan(by.loc[("logreg", "absent")])
    # a strategy missing one paired run is NaN: its mean would be over other runs than the gap's
    missing = runs.drop(runs.index[(runs["strategy"] == "better") & (runs["seed"] == 0)][:1])
    assert math.isnan(gap_closed(missing, ["better"]).loc[0, "gap_closed"])
    with pytest.raises(InvalidInputError, match="problem columns"):
        gap_closed(runs, by=["strategy"])


def test_run_differences_keep_one_row_per_paired_run(tables):
    runs, _ = tables
    d = run_differences(runs, ["better", "random"], reference="margin")
    assert len(d) == 2 * 6 * 8 and list(d["strategy"].unique()) == ["better", "random"]
    np.testing.assert_allclose(d.loc[d["strategy"] == "random", "diff"], -4.0, atol=1e-9)
    np.testing.assert_allclose(d.loc[d["strategy"] == "better", "diff"].abs(), [2.1, 1.9] * 24, atol=1e-9)


def test_failed_runs_are_excluded_and_listed(tables):
    runs, curves = tables
    mask = (runs["strategy"] == "better") & (runs["dataset"] == "alpha") & (runs["model"] == "logreg") & (runs["seed"] < 2)
    mask |= (runs["strategy"] == "margin") & (runs["dataset"] == "beta") & (runs["model"] == "rf") & (runs["seed"] == 3)
    bad, _ = fail(runs, curves, mask)
    listed = failed_runs(bad)
    assert len(listed) == 3 and list(listed.columns) == ["run_id", *PROBLEM_KEYS, "seed", "strategy", "error"]
    assert (listed["error"] != "").all()
    d = paired_differences(bad).set_index([*PROBLEM_KEYS, "strategy"])
    assert d.loc[("alpha", "logreg", "cold", 1, "better"), "n_seeds"] == 6
    assert d.loc[("beta", "rf", "warm", 10, "random"), "n_seeds"] == 7  # the margin run of seed 3 failed
    # the bogus 0.0 of the failed runs never enters a mean: all differences are as constructed
    np.testing.assert_allclose(d.xs("random", level="strategy")["mean_diff"], -4, atol=1e-9)
    np.testing.assert_allclose(d.xs("better", level="strategy")["mean_diff"], 2, atol=0.001 * 100 / 6 + 1e-9)
    s = strategy_summary(bad).set_index("strategy")
    assert s.loc["better", "n_failed"] == 2 and s.loc["better", "n_ok"] == 46
    assert s.loc["margin", "n_failed"] == 1 and s.loc["random", "n_failed"] == 0
    ok = runs.loc[~mask]
    np.testing.assert_allclose(s.loc["better", "aulc_accuracy"], 100 * ok.loc[ok["strategy"] == "better", "aulc_accuracy"].mean())
    r = rank_table(bad).set_index([*PROBLEM_KEYS, "strategy"])
    assert r.loc[("alpha", "logreg", "cold", 1, "better"), "n_seeds"] == 6
    # a strategy failing on every seed of a problem has no rank there and n/a difference
    all_failed = (runs["strategy"] == "better") & (runs["dataset"] == "gamma") & (runs["model"] == "rf")
    bad2, _ = fail(runs, curves, all_failed)
    assert ("gamma", "rf", "warm", 10, "better") not in rank_table(bad2).set_index([*PROBLEM_KEYS, "strategy"]).index
    o = overall_comparison(bad2).set_index("strategy")
    assert o.loc["better", "n_problems"] == 5 and o.loc["better", "wins"] == 5
    assert friedman_test(bad2).n_problems == 5
    # the reference failing on every seed of a problem: rows stay, with no pair and outcome n/a
    ref_failed = (runs["strategy"] == "margin") & (runs["dataset"] == "beta") & (runs["model"] == "logreg")
    bad3, _ = fail(runs, curves, ref_failed)
    d3 = paired_differences(bad3)
    lost = d3.loc[(d3["dataset"] == "beta") & (d3["model"] == "logreg")]
    assert len(lost) == 4 and (lost["n_seeds"] == 0).all() and (lost["outcome"] == "n/a").all()
    assert lost["mean_diff"].isna().all()
    o3 = overall_comparison(bad3).set_index("strategy")
    assert o3.loc["better", "wins"] == 5 and o3.loc["margin", "n_problems"] == 5


def test_reference_without_ok_runs_is_an_error(tables):
    runs, _ = tables
    with pytest.raises(InvalidInputError, match="reference"):
        paired_differences(runs, reference="nope")


def test_strategy_summary(tables):
    runs, _ = tables
    s = strategy_summary(runs)
    assert s["strategy"].tolist()[:2] == ["oracle", "better"] and s["strategy"].iloc[-1] == "random"
    row = s.set_index("strategy").loc["margin"]
    m = runs.loc[runs["strategy"] == "margin"]
    np.testing.assert_allclose(row["aulc_accuracy"], 100 * m["aulc_accuracy"].mean())
    np.testing.assert_allclose(row["aulc_accuracy_std"], 100 * m["aulc_accuracy"].std())
    np.testing.assert_allclose(row["aulc_macro_f1"], 100 * m["aulc_macro_f1"].mean())
    np.testing.assert_allclose(row["query_ms"], 1000 * m["query_seconds_mean"].mean())
    np.testing.assert_allclose(row["reached_98"], m["labels_to_98_accuracy"].notna().mean())
    assert row["n_ok"] == 48 and row["n_failed"] == 0
    assert len(strategy_summary(runs, by=SETTING_KEYS)) == 10
    assert "aulc_macro_f1_std" in strategy_summary(runs, "aulc_macro_f1").columns


# ----------------------------------------------------------------------------- Friedman / Nemenyi


def test_critical_difference_matches_demsar():
    # Demsar (2006), Table 5(a): q_0.05 = 2.569 for k = 4 (so CD = 2.569 * sqrt(4*5/(6N)))
    for n in (1, 10, 30):
        assert critical_difference(4, n) == pytest.approx(2.569 * math.sqrt(20 / (6 * n)), rel=1e-3)
    assert critical_difference(2, 10) == pytest.approx(1.960 * math.sqrt(6 / 60), rel=1e-3)
    assert critical_difference(10, 10, alpha=0.10) == pytest.approx(2.920 * math.sqrt(110 / 60), rel=1e-3)
    with pytest.raises(InvalidInputError):
        critical_difference(1, 10)
    with pytest.raises(InvalidInputError):
        critical_difference(3, 0)


def test_friedman_and_groups(tables):
    runs, _ = tables
    fr = friedman_test(runs)
    assert fr.n_strategies == 5 and fr.n_problems == 6
    assert fr.p_value < 0.001
    assert fr.critical_difference == pytest.approx(critical_difference(5, 6))
    assert fr.mean_ranks.index[0] == "oracle"
    two = friedman_test(runs[runs["strategy"].isin(["margin", "random"])])
    assert math.isnan(two.p_value) and two.n_strategies == 2
    groups = nemenyi_groups(pd.Series({"a": 1.0, "b": 1.5, "c": 2.2, "d": 4.0}), cd=1.3)
    assert groups == [["a", "b", "c"]]
    groups = nemenyi_groups(pd.Series({"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}), cd=1.5)
    assert groups == [["a", "b"], ["b", "c"], ["c", "d"]]
    assert nemenyi_groups(pd.Series({"a": 1.0, "b": 3.0}), cd=1.0) == []


# ----------------------------------------------------------------------------- report


def test_format_table():
    df = pd.DataFrame(
        {"strategy": ["a|b", "c"], "mean_diff": [1.234, -0.5], "p_value": [0.0001, np.nan], "wins": [3, 0],
         "n_seeds": [5.0, 4.0], "tiny": [0.0004, 12.0]}
    )
    text = format_table(df)
    lines = text.splitlines()
    assert lines[0] == "| strategy | mean_diff | p_value | wins | n_seeds | tiny |"
    assert lines[1] == "|---|---:|---:|---:|---:|---:|"
    assert lines[2] == "| a\\|b | +1.23 | <0.001 | 3 | 5 | 0.0004 |"
    assert lines[3] == "| c | -0.50 | n/a | 0 | 4 | 12.00 |"
    assert format_table(pd.DataFrame({"x": [1.0]}, index=pd.Index(["r"], name="k"))).splitlines()[0] == "| k | x |"


def _check_report(files, out):
    assert files["md"].exists() and files["html"].exists()
    pngs = [p for k, p in files.items() if k not in ("md", "html")]
    assert pngs and all(p.suffix == ".png" and p.stat().st_size > 1000 for p in pngs)
    md = files["md"].read_text(encoding="utf-8")
    for p in pngs:
        assert f"]({p.name})" in md
    page = files["html"].read_text(encoding="utf-8")
    srcs = re.findall(r'src="([^"]*)"', page)
    assert len(srcs) == len(pngs) and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "http" not in page and "<link" not in page
    return md, page


def test_write_report(tmp_path, tables):
    runs, curves = tables
    mask = (runs["strategy"] == "better") & (runs["dataset"] == "alpha") & (runs["seed"] == 0)
    bad, bad_curves = fail(runs, curves, mask)
    out = tmp_path / "report"
    files = write_report(bad, bad_curves, out, reference="margin")
    md, page = _check_report(files, out)
    assert {"critical_difference", "differences", "curves_logreg_cold_b1", "curves_rf_warm_b10"} <= set(files)
    assert "## Failed runs (2)" in md and "RuntimeError: boom" in md and "boom \\| with a pipe" in md
    assert "logreg · cold start · batch 1" in md and "gap closed" in md
    assert "<table" in page and "Failed runs (2)" in page
    only_md = write_report(runs, curves, tmp_path / "md", formats=("md",))
    assert "html" not in only_md and not (tmp_path / "md" / "report.html").exists()
    with pytest.raises(InvalidInputError):
        write_report(runs, curves, tmp_path / "x", formats=("pdf",))


def test_write_report_single_problem(tmp_path):
    runs, curves = make_tables(n_seeds=3, datasets=("alpha",), settings=SETTINGS[:1])
    files = write_report(runs, curves, tmp_path)
    md, _ = _check_report(files, tmp_path)
    assert "Warning" in md  # 3 seeds: Wilcoxon can not reach significance
    assert "## Failed runs (0)" in md


def test_write_report_without_reference(tmp_path, tables):
    runs, curves = tables
    keep = runs["strategy"] != "margin"
    files = write_report(runs[keep], curves[curves["strategy"] != "margin"], tmp_path)
    md, _ = _check_report(files, tmp_path)
    assert "differences" not in files and "no successful run" in md


def test_duplicate_rows_keep_the_ok_run(tables):
    runs, _ = tables
    row = runs.iloc[[0]].copy()
    row["status"], row["aulc_accuracy"] = "failed", 0.0
    with pytest.warns(RuntimeWarning, match="several rows"):
        d = paired_differences(pd.concat([row, runs], ignore_index=True))
    assert (d["n_seeds"] == 8).all()
    with pytest.warns(RuntimeWarning):
        assert failed_runs(pd.concat([row, runs], ignore_index=True)).empty


def test_holm_adjust_matches_statsmodels():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    from metalearn.benchmark.stats import holm_adjust

    p = np.array([0.01, 0.04, 0.03, 0.2, np.nan, 0.005, 0.5])
    adjusted = holm_adjust(p)
    valid = ~np.isnan(p)
    np.testing.assert_allclose(adjusted[valid], multitest.multipletests(p[valid], method="holm")[1])
    assert np.isnan(adjusted[4]) and (adjusted[valid] >= p[valid]).all()
    assert holm_adjust([]).shape == (0,)


def test_overall_comparison_holm_corrects_the_tests_against_the_reference(tables):
    from metalearn.benchmark.stats import holm_adjust

    runs, _ = tables
    overall = overall_comparison(runs, reference="margin").set_index("strategy")
    others = overall.drop(index="margin")
    np.testing.assert_allclose(others["p_value_holm"], holm_adjust(others["p_value"].to_numpy()))
    assert (others["p_value_holm"] >= others["p_value"]).all() and math.isnan(overall.loc["margin", "p_value_holm"])
    by = overall_comparison(runs, reference="margin", by=SETTING_KEYS)
    for _, group in by.groupby(list(SETTING_KEYS)):  # one family per setting
        group = group.set_index("strategy").drop(index="margin")
        np.testing.assert_allclose(group["p_value_holm"], holm_adjust(group["p_value"].to_numpy()))


def test_nemenyi_p_values_match_scikit_posthocs_and_the_critical_difference(tables):
    sp = pytest.importorskip("scikit_posthocs")
    from metalearn.benchmark.stats import nemenyi_p_values

    rng = np.random.default_rng(0)
    scores = rng.normal(size=(30, 5)) + np.arange(5) * 0.3
    ranks = pd.DataFrame(scores).rank(axis=1, ascending=False).mean()
    np.testing.assert_allclose(nemenyi_p_values(ranks, 30).to_numpy(), sp.posthoc_nemenyi_friedman(scores).to_numpy(),
                               atol=1e-12)
    runs, _ = tables
    fr = friedman_test(runs)
    gaps = np.abs(fr.mean_ranks.to_numpy()[:, None] - fr.mean_ranks.to_numpy()[None, :])
    significant = fr.nemenyi_p.to_numpy() < fr.alpha
    assert ((gaps > fr.critical_difference + 1e-9) == significant).all()  # same decision as the CD


def test_a_report_that_fails_part_way_leaves_every_output_as_it_was(tmp_path, tables, monkeypatch):
    import errno

    from metalearn.benchmark import report as report_module

    runs, curves = tables
    out = tmp_path / "report"
    files = write_report(runs, curves, out, reference="margin")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert "report.md" in before and any(name.endswith(".png") for name in before)

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    # the plots and report.md are staged, then the page fails: nothing may have changed
    monkeypatch.setattr(report_module, "_render_html", full_disk)
    fewer = runs.loc[runs["seed"] != 0]
    with pytest.raises(OSError):
        write_report(fewer, curves.loc[curves["run_id"].isin(fewer["run_id"])], out, reference="margin")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no temporaries left either
    assert set(files) <= {Path(n).stem for n in before} | {"md", "html"}
