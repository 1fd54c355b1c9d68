"""Where stopping rules show up: next-batch, the benchmark, and train-stopping (small synthetic data)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification

from metalearn.benchmark import BenchmarkConfig, run_benchmark
from metalearn.cli import main
from metalearn.exceptions import InvalidInputError, UnknownNameError
from metalearn.stopping import read_stopping_rule
from metalearn.stopping.evaluation import calibration_from_table, stopping_summary, stopping_table, write_stopping_report
from metalearn.stopping.training import StoppingTrainConfig, _check_split, train_stopping
from metalearn.workflow import read_state


@pytest.fixture
def tables(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    X, y = make_classification(n_samples=160, n_features=5, n_informative=3, n_classes=2, random_state=0)
    records = pd.DataFrame(X, columns=[f"f{i}" for i in range(5)])
    records.insert(0, "id", [f"r{i:03d}" for i in range(160)])
    path = tmp_path / "records.csv"
    records.to_csv(path, index=False)
    return path, dict(zip(records["id"], np.array(["no", "yes"])[y]))


def _label(path: Path, truth: dict[str, str], ids: list[str]) -> None:
    pd.DataFrame({"id": ids, "label": [truth[i] for i in ids]}).to_csv(path, index=False)


def test_next_batch_prints_the_stopping_estimate_and_keeps_its_history(tables, tmp_path, capsys) -> None:
    records, truth = tables
    labels, out = tmp_path / "labels.csv", tmp_path / "next.csv"
    ids = [i for i, v in truth.items() if v == "no"][:3] + [i for i, v in truth.items() if v == "yes"][:3]
    for run in range(3):
        _label(labels, truth, ids)
        assert main(["next-batch", "--data", str(records), "--labels", str(labels), "--out", str(out),
                     "--model", "logreg", "--policy", "margin", "--batch-size", "10"]) == 0
        printed = capsys.readouterr().out
        assert "stopping rule learned" in printed and "expected gain from the next" in printed
        assert ("STOP" in printed) or ("continue labeling" in printed)
        ids += pd.read_csv(out)["id"].tolist()
    meta, arrays = read_state(labels.with_name(labels.name + ".metalearn-state"))
    assert meta["stopping"]["n_calls"] == 3  # one call per run, the history carried over
    assert any(k.startswith("stop.") for k in arrays)
    assert [entry["stop"] in (True, False) for entry in meta["log"]] == [True] * 3


def test_next_batch_with_a_classic_rule_and_without_one(tables, tmp_path, capsys) -> None:
    records, truth = tables
    labels, out = tmp_path / "labels.csv", tmp_path / "next.csv"
    ids = [i for i, v in truth.items() if v == "no"][:3] + [i for i, v in truth.items() if v == "yes"][:3]
    _label(labels, truth, ids)
    base = ["next-batch", "--data", str(records), "--labels", str(labels), "--out", str(out), "--model", "logreg",
            "--policy", "margin", "--batch-size", "5"]
    assert main([*base, "--stop-rule", "stabilizing_predictions"]) == 0
    assert "stopping rule stabilizing_predictions" in capsys.readouterr().out
    assert main([*base, "--stop-rule", "stabilizing_predictions"]) == 0
    capsys.readouterr()
    meta, _ = read_state(labels.with_name(labels.name + ".metalearn-state"))
    assert meta["stopping"]["n_calls"] == 2 and len(meta["stopping"]["kappas"]) == 1
    assert main([*base, "--stop-rule", "none"]) == 0
    assert "stopping rule" not in capsys.readouterr().out
    assert main([*base, "--stop-rule", "no_such_rule"]) == 2
    assert "unknown stopping rule" in capsys.readouterr().err


def test_benchmark_records_stopping_metrics_and_writes_the_front(tmp_path) -> None:
    rules = ["default", "stabilizing_predictions", "fixed_budget"]
    config = BenchmarkConfig(strategies=["margin", "random"], datasets=["sklearn:breast_cancer"], models=["logreg"],
                             regimes=["cold"], batch_sizes=[10], label_budget=60, n_seeds=2, stop_rules=rules,
                             max_pool=62)  # 2 initial labels + 60 bought = the whole pool: the gains are known
    result = run_benchmark(config, tmp_path / "bench", n_jobs=1, progress=False)
    table = stopping_table(result.runs)
    assert len(table) == 4 * len(rules) and set(table["rule"]) == set(rules)
    assert (table["labels_at_stop"] <= table["labels_end"]).all()
    assert np.allclose(table["points_lost"], 100 * (table["accuracy_end"] - table["accuracy_at_stop"]))
    budget = table[table["rule"] == "fixed_budget"]  # 100 labeled records are never reached in 60 labels
    assert not budget["stopped"].any() and (budget["labels_saved"] == 0).all()
    summary = stopping_summary(table)
    assert set(summary["rule"]) == set(rules)
    learned = table[table["rule"] == "default"].iloc[0]
    assert len(learned["gain_quantiles"]) == len(learned["expected_gain"]) == learned["labels_end"] // 10 + 1
    calibration = calibration_from_table(table, result.curves)
    shares = calibration.filter(like="below_q").to_numpy()
    assert shares.size and np.all((shares >= 0) & (shares <= 1))
    files = write_stopping_report(result.runs, result.curves, tmp_path / "report")
    assert {"stopping_table", "stopping_summary", "stopping_front", "stopping_md"} <= set(files)
    assert files["stopping_front"].stat().st_size > 1000
    again = run_benchmark(config, tmp_path / "bench", n_jobs=1, progress=False)
    assert again.computed == 0  # resumed: the stopping rows are stored with the runs
    plain = BenchmarkConfig(**{**config.to_dict(), "stop_rules": []})
    assert run_benchmark(plain, tmp_path / "bench", n_jobs=1, progress=False).computed == 4
    with pytest.raises(UnknownNameError):
        BenchmarkConfig(**{**config.to_dict(), "stop_rules": ["nope"]}).validate()


def _suite(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(
        'name = "tiny"\n[settings]\nmodels = ["logreg"]\nregimes = ["cold"]\nlabel_budgets = [40]\nbatch_sizes = [10]\n'
        'max_pool = 150\n[[sources]]\nkind = "generator"\ngenerator = "classification"\nn_samples = [150, 200]\n'
        '[[sources]]\nkind = "sklearn"\nnames = ["iris", "wine", "breast_cancer"]\n',
        encoding="utf-8",
    )
    return path


def test_train_stopping_is_resumable_seeded_and_writes_a_valid_rule(tmp_path) -> None:
    common = dict(suite=str(_suite(tmp_path)), n_tasks=12, models=["logreg"], strategies=["margin"], label_budget=100,
                  horizon=20, epochs=5, hidden=8, held_in_fraction=0.5, seed=1)
    first = train_stopping(StoppingTrainConfig(out_dir=str(tmp_path / "a"), **common), progress=False)
    rule = read_stopping_rule(first.policy_path)
    assert rule.horizon == 20 and rule.patience in (1, 2, 3) and "held_in" in rule.metadata["validation"]
    assert rule.decision in ("mean", "q0.75", "q0.9")
    # The quantiles are calibrated on the held-in points: each level covers at least its share there.
    assert rule.quantile_shifts is not None and rule.quantile_shifts.size == len(rule.arch.quantiles)
    held_in = rule.metadata["validation"]["held_in"]
    for level in rule.arch.quantiles:
        assert held_in["quantile_coverage"][f"q{level:g}"] >= level
    assert set(held_in["quantile_coverage_uncalibrated"]) == set(held_in["quantile_coverage"])
    assert first.details["n_computed"] == first.details["n_runs"] == 12 and first.iterations == 12
    assert (tmp_path / "a" / "loops.csv.gz").exists()
    with pytest.raises(InvalidInputError, match="resume"):  # no hidden default resume
        train_stopping(StoppingTrainConfig(out_dir=str(tmp_path / "a"), **common), progress=False)
    written = first.policy_path.stat().st_mtime_ns
    resumed = train_stopping(StoppingTrainConfig(out_dir=str(tmp_path / "a"), **common), resume=True, progress=False)
    assert resumed.details["n_computed"] == 0 and first.policy_path.stat().st_mtime_ns == written  # finished: untouched
    assert resumed.details["threshold"] == first.details["threshold"]
    other = train_stopping(StoppingTrainConfig(out_dir=str(tmp_path / "b"), **common), progress=False)
    np.testing.assert_array_equal(read_stopping_rule(other.policy_path).params["out.weight"], rule.params["out.weight"])
    with pytest.raises(InvalidInputError, match="other settings"):
        train_stopping(StoppingTrainConfig(out_dir=str(tmp_path / "a"), **{**common, "label_budget": 50}), resume=True,
                       progress=False)


def test_an_unfinished_training_continues_from_its_runs_pack_on_another_machine(tmp_path) -> None:
    """What is committed of an unfinished run (checkpoint, progress, runs.jsonl.gz; not the
    per-run cache in runs/) continues it elsewhere without recomputing, also after a torn write."""
    import gzip
    import shutil

    from metalearn.stopping.training import RUNS_PACK, read_runs_pack

    common = dict(suite=str(_suite(tmp_path)), models=["logreg"], strategies=["margin"], label_budget=100,
                  horizon=20, epochs=5, hidden=8, held_in_fraction=0.5, seed=1)
    first = train_stopping(StoppingTrainConfig(out_dir=str(tmp_path / "a"), n_tasks=12, **common), progress=False)
    assert first.details["n_computed"] == 12
    assert len(read_runs_pack(tmp_path / "a" / RUNS_PACK)) == 12
    shutil.copytree(tmp_path / "a", tmp_path / "clone", ignore=shutil.ignore_patterns("runs"))  # a fresh clone
    with gzip.open(tmp_path / "clone" / RUNS_PACK, "ab") as pack:
        pack.write(b'{"run_id": "torn')  # a write cut short by a crash
    more = train_stopping(StoppingTrainConfig(out_dir=str(tmp_path / "clone"), n_tasks=16, **common), resume=True,
                          progress=False)
    assert more.details["n_computed"] == 4 and more.details["n_runs"] == 16  # the twelve packed runs were not recomputed
    whole = train_stopping(StoppingTrainConfig(out_dir=str(tmp_path / "whole"), n_tasks=16, **common), progress=False)
    np.testing.assert_array_equal(read_stopping_rule(more.policy_path).params["out.weight"],
                                  read_stopping_rule(whole.policy_path).params["out.weight"])


def test_training_refuses_validation_split_tasks() -> None:
    class _Task:
        name = "pima"
        info = {"source_kind": "folder", "dataset": {"name": "pima", "split": "validation"}}

    with pytest.raises(InvalidInputError, match="validation split"):
        _check_split(_Task())


def test_inspect_shows_a_stopping_rules_model_card(capsys) -> None:
    path = Path(__file__).resolve().parents[1] / "policies" / "stopping" / "default.safetensors"
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "stopping rule" in out and "recommended setting" in out and "horizon" not in out.split("\n")[0]
    assert main(["inspect", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["format"] == "metalearn-stopping-rule"
