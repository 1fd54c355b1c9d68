"""``metalearn next-batch``: a labeling workflow across runs, with the history in a state file."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import make_classification

from metalearn.cli import main
from metalearn.exceptions import DatasetError, InvalidInputError, UnknownNameError
from metalearn.features import POOL_SCHEMA
from metalearn.policies.architecture import ScorerArchitecture
from metalearn.policies.file import POLICY_DIR_ENV, save_policy
from metalearn.policies.torch_scorer import TorchScorer
from metalearn.workflow import StateFileError, default_state_path, next_batch, read_state


@pytest.fixture(scope="module")
def policy_path(tmp_path_factory):
    torch.manual_seed(1)
    arch = ScorerArchitecture(16, 16, 16)
    path = tmp_path_factory.mktemp("policies") / "default.safetensors"
    return save_policy(path, arch, TorchScorer(arch).arrays(), {"feature_schema": POOL_SCHEMA.to_dict(), "window": 5, "n_candidates": 64})


@pytest.fixture
def tables(tmp_path):
    """records.csv (ids like 'r007', a categorical column, missing values) and truth labels."""
    X, y = make_classification(n_samples=150, n_features=5, n_informative=3, n_classes=3, random_state=0)
    records = pd.DataFrame(X, columns=[f"f{i}" for i in range(5)])
    records.insert(0, "id", [f"r{i:03d}" for i in range(150)])
    records["color"] = np.where(X[:, 0] > 0, "red", "blue")
    records.loc[3, "f1"] = np.nan
    records = records.sample(frac=1.0, random_state=0)  # the table's order is not the ids' order
    path = tmp_path / "records.csv"
    records.to_csv(path, index=False)
    truth = dict(zip([f"r{i:03d}" for i in range(150)], np.array(["ant", "bee", "cat"])[y]))
    return path, truth


def _write_labels(path, truth, ids):
    pd.DataFrame({"id": list(ids), "label": [truth[i] for i in ids]}).to_csv(path, index=False)


def _first_ids(truth, per_class=2):
    out = []
    for name in ("ant", "bee", "cat"):
        out += [i for i, v in truth.items() if v == name][:per_class]
    return out


def test_five_runs_with_labels_added_between_runs(tables, tmp_path, policy_path, capsys):
    records, truth = tables
    labels = tmp_path / "labels.csv"
    labeled = _first_ids(truth)
    _write_labels(labels, truth, labeled)
    out = tmp_path / "to_label.csv"
    for run in range(1, 6):
        code = main([
            "next-batch", "--data", str(records), "--labels", str(labels), "--model", "logreg", "--batch-size", "6",
            "--policy", str(policy_path), "--out", str(out), "--seed", "3",
        ])
        assert code == 0
        assert f"loop {run}:" in capsys.readouterr().out
        batch = pd.read_csv(out, dtype={"id": str})
        assert list(batch.columns) == ["id", "rank", "score"]
        assert batch["id"].is_unique and len(batch) == 6
        assert not set(batch["id"]) & set(labeled)  # only unlabeled records
        assert set(batch["id"]) <= set(truth)
        assert list(batch["rank"]) == list(range(1, 7)) and np.isfinite(batch["score"]).all()
        meta, arrays = read_state(default_state_path(labels))
        assert meta["loops"] == run and meta["history"]["n_loops"] == run  # the history grows by one loop per run
        assert arrays["proba"].shape == (5, 150, 3)
        labeled += list(batch["id"])
        _write_labels(labels, truth, labeled)
    assert [entry["n_labeled"] for entry in meta["log"]] == [6, 12, 18, 24, 30]


def test_history_follows_ids_when_records_change(tables, tmp_path, policy_path):
    records, truth = tables
    labels = tmp_path / "labels.csv"
    labeled = _first_ids(truth)
    _write_labels(labels, truth, labeled)
    for _ in range(2):
        result = next_batch(records, labels, model="logreg", batch_size=3, policy=policy_path, seed=0)
        labeled += list(result.table["id"])
        _write_labels(labels, truth, labeled)
    _, before = read_state(default_state_path(labels))
    frame = pd.read_csv(records, dtype={"id": str})
    gone = [i for i in sorted(truth) if i not in labeled][-2:]
    smaller = frame[~frame["id"].isin(gone)].iloc[::-1]  # two unlabeled records gone, order reversed
    smaller.to_csv(records, index=False)
    result = next_batch(records, labels, model="logreg", batch_size=3, policy=policy_path)
    assert any("2 removed" in note for note in result.notes)
    meta, after = read_state(default_state_path(labels))
    assert meta["history"]["n_loops"] == 3 and after["margin"].shape == (5, 148)
    # Each record's two earlier loops moved with it.
    old_keys, new_keys = before["record_keys"], after["record_keys"]
    for key_pos in (0, 57, 120):
        key = new_keys[key_pos]
        old_pos = int(np.flatnonzero(old_keys == key)[0])
        np.testing.assert_array_equal(after["margin"][:2, key_pos], before["margin"][:2, old_pos])


def test_classic_strategy_names_and_the_random_first_batch(tables, tmp_path):
    records, truth = tables
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\n")  # nothing labeled yet
    with pytest.raises(InvalidInputError, match="two classes"):
        next_batch(records, labels, policy="margin")
    first = next_batch(records, labels, policy="random", batch_size=10, seed=1)
    assert len(first.table) == 10 and first.table["score"].isna().all() and first.history_loops == 0
    _write_labels(labels, truth, _first_ids(truth))
    second = next_batch(records, labels, policy="margin", batch_size=4, model="logreg")
    assert second.loop == 2 and (second.table["score"].diff().dropna() <= 1e-12).all()  # most uncertain first


def test_default_policy_by_name(tables, tmp_path):
    records, truth = tables
    labels = tmp_path / "labels.csv"
    _write_labels(labels, truth, _first_ids(truth))
    result = next_batch(records, labels, policy="default", batch_size=2, model="nb")  # the released policy
    assert result.strategy.endswith("default.safetensors")
    assert len(result.table) == 2
    with pytest.raises(UnknownNameError, match="released policies: .*default"):
        next_batch(records, labels, policy="no-such-policy")


def test_clear_errors(tables, tmp_path, policy_path, capsys):
    records, truth = tables
    labels = tmp_path / "labels.csv"
    base = _first_ids(truth)

    pd.DataFrame({"id": base + ["nope", "r999"], "label": [truth[i] for i in base] + ["ant", "bee"]}).to_csv(labels, index=False)
    with pytest.raises(DatasetError, match=r"2 labeled id\(s\) are not in the records: 'nope', 'r999'"):
        next_batch(records, labels, policy=policy_path)

    pd.DataFrame({"id": base + [base[0]], "label": [truth[i] for i in base] + ["zebra"]}).to_csv(labels, index=False)
    with pytest.raises(DatasetError, match="two different labels"):
        next_batch(records, labels, policy=policy_path)

    _write_labels(labels, truth, base)
    with pytest.raises(DatasetError, match=r"not among the classes given"):
        next_batch(records, labels, policy=policy_path, classes=["ant", "bee"])
    assert next_batch(records, labels, policy=policy_path, classes=["ant", "bee", "cat", "dog"], state=tmp_path / "s1").loop == 1

    dup = tmp_path / "dup.csv"
    frame = pd.read_csv(records, dtype={"id": str})
    pd.concat([frame, frame.iloc[:1]]).to_csv(dup, index=False)
    with pytest.raises(DatasetError, match="appear more than once"):
        next_batch(dup, labels, policy=policy_path)

    one_class = tmp_path / "one.csv"
    _write_labels(one_class, truth, [i for i, v in truth.items() if v == "ant"][:3])
    with pytest.raises(InvalidInputError, match="at least two classes"):
        next_batch(records, one_class, policy=policy_path)

    # A state file from a different dataset: other ids, or the same ids with other values.
    next_batch(records, labels, policy=policy_path, batch_size=2)
    other = tmp_path / "other.csv"
    X, _ = make_classification(n_samples=40, n_features=5, random_state=9)
    other_frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(5)])
    other_frame.insert(0, "id", [f"x{i}" for i in range(40)])
    other_frame["color"] = "red"
    other_frame.to_csv(other, index=False)
    other_labels = tmp_path / "other_labels.csv"
    pd.DataFrame({"id": ["x0", "x1"], "label": ["a", "b"]}).to_csv(other_labels, index=False)
    with pytest.raises(StateFileError, match="different dataset"):
        next_batch(other, other_labels, policy=policy_path, state=default_state_path(labels))
    edited = frame.copy()
    edited["f0"] = edited["f0"] + 1.0
    edited.to_csv(other, index=False)
    with pytest.raises(StateFileError, match="hold different values"):
        next_batch(other, labels, policy=policy_path)  # the labels' default state file, with edited records
    with pytest.raises(StateFileError, match="columns"):
        frame.drop(columns=["color"]).to_csv(other, index=False)
        next_batch(other, labels, policy=policy_path)

    not_a_state = tmp_path / "junk.state"
    not_a_state.write_bytes(b"\x80\x04pickle?")
    with pytest.raises(StateFileError, match="cannot be read|not a metalearn"):
        next_batch(records, labels, policy=policy_path, state=not_a_state)

    # The CLI reports them as errors with exit status 2.
    code = main(["next-batch", "--data", str(records), "--labels", str(one_class), "--out", str(tmp_path / "o.csv"), "--policy", str(policy_path)])
    assert code == 2 and "at least two classes" in capsys.readouterr().err


def test_state_file_is_safetensors_with_json_metadata(tables, tmp_path, policy_path):
    records, truth = tables
    labels = tmp_path / "labels.csv"
    _write_labels(labels, truth, _first_ids(truth))
    next_batch(records, labels, policy=policy_path, batch_size=2, label_budget=40)
    data = default_state_path(labels).read_bytes()
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    meta = json.loads(header["__metadata__"]["metalearn"])
    assert meta["format"] == "metalearn-next-batch-state" and meta["label_budget"] == 40
    assert {"id_keys", "record_hashes", "proba", "record_keys"} <= set(header)
    assert b"pickle" not in data[:8 + int.from_bytes(data[:8], "little")]


def test_new_records_with_missing_values_keep_the_state(tmp_path, policy_path):
    rng = np.random.default_rng(0)
    records = pd.DataFrame({"id": range(60), "count": rng.integers(0, 9, 60), "x": rng.normal(size=60), "label": "?"})
    path, labels = tmp_path / "records.csv", tmp_path / "labels.csv"
    records.to_csv(path, index=False)
    pd.DataFrame({"id": [0, 1, 2, 3], "label": ["a", "b", "a", "b"]}).to_csv(labels, index=False)
    first = next_batch(path, labels, policy=policy_path, batch_size=2, model="logreg")
    assert any("not used as a feature" in note for note in first.notes)
    grown = pd.concat([records, pd.DataFrame({"id": [60], "count": [np.nan], "x": [0.5], "label": ["?"]})])
    grown.to_csv(path, index=False)  # the integer column now reads as float
    second = next_batch(path, labels, policy=policy_path, batch_size=2, model="logreg")
    assert second.loop == 2 and second.history_loops == 2 and any("1 new" in note for note in second.notes)
