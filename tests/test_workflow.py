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


def test_a_model_that_predicts_a_constant_gets_random_picks_and_says_so(tables, tmp_path):
    """scikit-learn's gradient boosting at its defaults gives every record the same
    probabilities with six labels: the policy picks at random and the notes say why."""
    records, truth = tables
    labels = tmp_path / "labels.csv"
    _write_labels(labels, truth, _first_ids(truth))
    result = next_batch(records, labels, policy="default", batch_size=5, model="hgb_sklearn", seed=0)
    assert len(result.table) == 5 and (result.table["score"] == 0).all()
    assert any("same probabilities" in note and "picked at random" in note for note in result.notes)
    informative = next_batch(records, labels, policy="default", batch_size=5, model="logreg", seed=0,
                             state=tmp_path / "other.state")
    assert not any("same probabilities" in note for note in informative.notes)


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


# ------------------------------------------------------------------ two people, one state (issue 22 item 2)
def _small_tables(tmp_path, n=40):
    rng = np.random.default_rng(0)
    records = tmp_path / "records.csv"
    pd.DataFrame({"id": [f"r{i:02d}" for i in range(n)], "f0": rng.normal(size=n), "f1": rng.normal(size=n)}).to_csv(
        records, index=False)
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\nr00,a\nr01,b\nr02,a\nr03,b\n")
    return records, labels


def test_records_handed_out_stay_reserved_until_labeled_or_released(tmp_path, capsys):
    records, labels = _small_tables(tmp_path)
    first = next_batch(records, labels, policy="margin", model="nb", batch_size=5, stop_rule=None)
    second = next_batch(records, labels, policy="margin", model="nb", batch_size=5, stop_rule=None)
    assert not set(first.table["id"]) & set(second.table["id"])  # the second person gets other records
    assert second.pending == {1: list(first.table["id"]), 2: list(second.table["id"])}
    meta, _ = read_state(default_state_path(labels))
    assert meta["pending"] == [{"loop": 1, "ids": list(first.table["id"])}, {"loop": 2, "ids": list(second.table["id"])}]
    assert any("still unlabeled and reserved (loop 1: 5)" in note for note in second.notes)
    # Labels of the first batch appear: those records are no longer pending.
    with labels.open("a") as handle:
        handle.writelines(f"{i},a\n" for i in first.table["id"])
    third = next_batch(records, labels, policy="margin", model="nb", batch_size=5, stop_rule=None)
    assert sorted(third.pending) == [2, 3] and not set(third.table["id"]) & set(second.table["id"])
    # One id released by hand, then all of them.
    released = second.table["id"].iloc[0]
    fourth = next_batch(records, labels, policy="margin", model="nb", batch_size=5, stop_rule=None, release=[released])
    assert released not in fourth.pending.get(2, []) and len(fourth.pending[2]) == 4
    fifth = next_batch(records, labels, policy="margin", model="nb", batch_size=5, stop_rule=None, release_pending=True)
    assert list(fifth.pending) == [5] and any("released 14 pending" in note for note in fifth.notes)
    # Asking for more than the unreserved records is one clear error naming the way out.
    with pytest.raises(InvalidInputError, match="not handed out already.*--release-pending"):
        next_batch(records, labels, policy="margin", model="nb", batch_size=27, stop_rule=None)  # 31 unlabeled, 5 pending
    # The CLI says which are pending.
    assert main(["next-batch", "--data", str(records), "--labels", str(labels), "--out", str(tmp_path / "o.csv"),
                 "--policy", "margin", "--model", "nb", "--batch-size", "2", "--stop-rule", "none"]) == 0
    printed = capsys.readouterr().out
    assert "pending: 5 record(s) of earlier loops handed out and not yet labeled (loop 5: 5)" in printed
    assert main(["next-batch", "--data", str(records), "--labels", str(labels), "--out", str(tmp_path / "o.csv"),
                 "--policy", "default", "--model", "nb", "--batch-size", "2", "--release-pending"]) == 0
    assert "pending:" not in capsys.readouterr().out


def test_a_policy_skips_reserved_records_too(tmp_path, policy_path):
    records, labels = _small_tables(tmp_path)
    first = next_batch(records, labels, policy=policy_path, model="nb", batch_size=6)
    second = next_batch(records, labels, policy=policy_path, model="nb", batch_size=6)
    assert not set(first.table["id"]) & set(second.table["id"]) and second.history_loops == 2


_CONCURRENT_RUN = r"""
import sys
from metalearn.cli import main
sys.exit(main(["next-batch", "--data", sys.argv[1], "--labels", sys.argv[2], "--out", sys.argv[3], "--policy", "margin",
               "--model", "nb", "--batch-size", "4", "--stop-rule", "none"]))
"""


def test_concurrent_runs_on_one_state_lose_no_update_and_share_no_record(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    records, labels = _small_tables(tmp_path)
    root = Path(__file__).resolve().parents[1]
    procs = [
        subprocess.Popen([sys.executable, "-c", _CONCURRENT_RUN, str(records), str(labels), str(tmp_path / f"out{k}.csv")],
                         cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for k in range(4)
    ]
    results = [(proc.wait(timeout=300), proc.stderr.read()) for proc in procs]
    for proc in procs:
        proc.stdout.close()
        proc.stderr.close()
    ok = [k for k, (code, _) in enumerate(results) if code == 0]
    for code, err in results:  # every call succeeds and is recorded, or fails with our one-line error
        assert code == 0 or (code == 2 and "another next-batch is using" in err), err
    assert ok
    meta, _ = read_state(default_state_path(labels))
    assert meta["loops"] == len(ok) == len(meta["log"])  # no lost update
    handed = [i for k in ok for i in pd.read_csv(tmp_path / f"out{k}.csv", dtype={"id": str})["id"]]
    assert len(handed) == 4 * len(ok) and len(set(handed)) == len(handed)  # no record handed out twice
    assert sorted(handed) == sorted(i for group in meta["pending"] for i in group["ids"])


def test_a_state_held_by_another_run_is_a_clear_error_after_the_wait(tmp_path, capsys, monkeypatch):
    import fcntl

    import metalearn.workflow as workflow
    from metalearn.common.file_lock import lock_path_of
    from metalearn.workflow import StateLockedError, flow

    records, labels = _small_tables(tmp_path)
    state = default_state_path(labels)
    with open(lock_path_of(state), "w") as holder:
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX)  # another next-batch in progress
        with pytest.raises(StateLockedError, match="another next-batch is using .*; try again"):
            next_batch(records, labels, policy="margin", model="nb", batch_size=2, lock_timeout=0.2)
        monkeypatch.setattr(flow, "LOCK_TIMEOUT_SECONDS", 0.1)
        monkeypatch.setattr(workflow.next_batch, "__kwdefaults__", {**workflow.next_batch.__kwdefaults__, "lock_timeout": 0.1})
        assert main(["next-batch", "--data", str(records), "--labels", str(labels), "--out", str(tmp_path / "o.csv"),
                     "--policy", "margin", "--model", "nb", "--batch-size", "2"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "another next-batch is using" in err and "try again" in err
    assert not state.exists() and not (tmp_path / "o.csv").exists()
    assert next_batch(records, labels, policy="margin", model="nb", batch_size=2).loop == 1  # released: runs again


# ------------------------------------------------------------------ all outputs or none (issue 22 item 7)
def test_a_full_disk_on_the_second_output_leaves_both_outputs_as_they_were(tmp_path, monkeypatch):
    from metalearn.common import csv_cells

    records, labels = _small_tables(tmp_path)
    out = tmp_path / "to_label.csv"
    next_batch(records, labels, policy="margin", model="nb", batch_size=2, out=out)
    state = default_state_path(labels)
    before = {p: p.read_bytes() for p in (out, state)}

    def full_disk(frame, path, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(csv_cells, "atomic_write", lambda path, write: full_disk(None, path))
    with pytest.raises(InvalidInputError, match=r"^cannot write the records to label .*No space left.*nothing was written"):
        next_batch(records, labels, policy="margin", model="nb", batch_size=2, out=out)
    assert {p: p.read_bytes() for p in (out, state)} == before  # the state (first output) is unchanged too
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_failed_rename_of_the_second_output_restores_the_first(tmp_path, monkeypatch, capsys):
    from metalearn.common import atomic

    records, labels = _small_tables(tmp_path)
    out = tmp_path / "to_label.csv"
    next_batch(records, labels, policy="margin", model="nb", batch_size=2, out=out)
    state = default_state_path(labels)
    before = {p: p.read_bytes() for p in (out, state)}
    real_replace = atomic.os.replace

    def replace(src, dst):
        if str(dst) == str(out):
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)
    code = main(["next-batch", "--data", str(records), "--labels", str(labels), "--out", str(out), "--policy", "margin",
                 "--model", "nb", "--batch-size", "2"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "No space left" in err and "nothing was written" in err
    assert {p: p.read_bytes() for p in (out, state)} == before  # the state was put back
    assert read_state(state)[0]["loops"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# ------------------------------------------------------------------ formulas and the terminal (items 4, 5)
def test_out_goes_through_the_shared_csv_writer_and_quoted_ids_read_back(tmp_path):
    rng = np.random.default_rng(0)
    records = tmp_path / "records.csv"
    ids = [f"=cmd{i}" for i in range(10)] + [f"-{i}" for i in range(10)]
    pd.DataFrame({"id": ids, "f0": rng.normal(size=20)}).to_csv(records, index=False)
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"id": ids[:2] + ids[10:12], "label": ["a", "b", "a", "b"]}).to_csv(labels, index=False)
    out = tmp_path / "to_label.csv"
    result = next_batch(records, labels, policy="margin", model="nb", batch_size=6, out=out)
    text = out.read_text()
    written = pd.read_csv(out, dtype={"id": str})["id"].tolist()
    assert all(cell.startswith("'") for cell in written) and ",=" not in text and "\n=" not in text
    # Labels copied from that table (ids with their leading quote) match the records.
    pd.DataFrame({"id": ids[:2] + ids[10:12] + written[:2], "label": ["a", "b", "a", "b", "a", "b"]}).to_csv(labels, index=False)
    again = next_batch(records, labels, policy="margin", model="nb", batch_size=2, out=out)
    assert again.n_labeled == 6 and set(result.table["id"][:2]) <= set(ids)


def test_the_success_lines_escape_control_characters(tmp_path, capsys, monkeypatch):
    records, labels = _small_tables(tmp_path)
    monkeypatch.chdir(tmp_path)
    out = "a\x1b[2J\x07.csv"
    assert main(["next-batch", "--data", str(records), "--labels", str(labels), "--out", out, "--policy", "margin",
                 "--model", "nb", "--batch-size", "2", "--state", "s\x1b]0;x\x07.state"]) == 0
    printed = capsys.readouterr()
    assert "\x1b" not in printed.out + printed.err and "\x07" not in printed.out + printed.err
    assert "a\\x1b[2J\\x07.csv" in printed.out and "s\\x1b]0;x\\x07.state" in printed.out


# ------------------------------------------------------------------ a folder named default (issue 22)
def test_a_default_folder_in_the_working_directory_does_not_shadow_the_released_files(tmp_path, monkeypatch, capsys):
    from metalearn import load_policy, load_stopping_rule
    from metalearn.policies.names import released_policy_dir
    from metalearn.stopping import LearnedStoppingRule

    records, labels = _small_tables(tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "default").mkdir()
    (tmp_path / "stabilizing_predictions").mkdir()
    assert load_policy("default").policy_file.path == released_policy_dir() / "default.safetensors"
    assert isinstance(load_stopping_rule("default"), LearnedStoppingRule)
    assert load_stopping_rule("stabilizing_predictions").name == "stabilizing_predictions"
    assert main(["next-batch", "--data", str(records), "--labels", str(labels), "--out", str(tmp_path / "o.csv"),
                 "--policy", "default", "--stop-rule", "default", "--model", "nb", "--batch-size", "2"]) == 0
    assert "default.safetensors" in capsys.readouterr().out
    # Clearly a path: the folder itself, refused as one.
    with pytest.raises(Exception, match="folder"):
        load_policy("./default")
