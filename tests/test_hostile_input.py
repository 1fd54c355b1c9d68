"""Hostile and careless input (issue 13): one test per class of case, each pinned as an example.

- Lost or misread data: ``next-batch`` never overwrites an input, writes every output
  atomically (a kill leaves the previous file, and its temporary is cleaned next time), reads
  ids and labels as text (only an empty cell is "no label"); ``pd.NA`` labels are missing;
  complex and datetime features are refused.
- Files that lie or exhaust: ``inspect`` escapes control characters; every size a policy file
  sets is bounded at load; weights that could overflow are refused and scores are never NaN;
  integer fields are parsed strictly.
- Foreign exceptions: the README's bad-input table holds for every registered strategy (the
  tests are parametrised over the registry, so a strategy registered later is tested too) and
  the released policies; bad probabilities, classes and constructor parameters are the
  project's errors.
- The CLI: one line and exit 2 for every refused input, exit 130 on Ctrl-C, impossible sizes
  refused before any work.

The property-based counterpart (generated hostile inputs) is ``tests/test_hostile_properties.py``.
"""

from __future__ import annotations

import json
import os
import stat
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from safetensors.numpy import save as safetensors_save
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.svm import LinearSVC

from metalearn import load_policy
from metalearn.cli import main
from metalearn.common.atomic import atomic_write_bytes, remove_stale_temporaries
from metalearn.exceptions import (
    InvalidInputError,
    InvalidTypeError,
    MetalearnError,
    NotFittedClassifierError,
    PolicyFileError,
    PoolChangedWarning,
)
from metalearn.features.schema import POOL_SCHEMA
from metalearn.policies.architecture import ScorerArchitecture, parameter_shapes
from metalearn.policies.file import FORMAT, FORMAT_VERSION, METADATA_KEY, read_policy, save_policy
from metalearn.streaming import StreamingPolicy
from metalearn.strategies import get_strategy_class, make_strategy, strategy_names
from metalearn.strategies.resolve import resolve_strategy
from metalearn.workflow import StateFileError, default_state_path, next_batch, read_state

REPO_ROOT = Path(__file__).resolve().parents[1]

# Every strategy the library registers (other test modules register test-only strategies), and
# the released policies: a strategy registered later in metalearn/strategies is tested too.
LIBRARY_STRATEGIES = [n for n in strategy_names() if get_strategy_class(n).__module__.startswith("metalearn.")]
RELEASED = ["default", "default-proba"]
ALL_STRATEGIES = LIBRARY_STRATEGIES + [f"policy:{name}" for name in RELEASED]


def strategy(name: str, **params):
    # The one resolver from a name to a strategy, as the benchmark and next-batch use it.
    random_state, missing = params.pop("random_state", None), params.pop("missing_label", np.nan)
    return resolve_strategy(name, label_budget=None, random_state=random_state, missing_label=missing, **params)


def uses_classifier(name: str) -> bool:
    return name.startswith("policy:") or get_strategy_class(name).requires_classifier


def pool(n: int = 40, d: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.full(n, np.nan)
    y[:6] = [0, 1, 0, 1, 0, 1]
    clf = LogisticRegression().fit(X[:6], y[:6])
    return X, y, clf


def quiet(call):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return call()


def assert_picks(picks, batch, unlabeled):
    assert picks.dtype.kind == "i" and picks.shape == (batch,)
    assert np.unique(picks).size == batch and unlabeled[picks].all()


# ============================================================================ the README's table
@pytest.mark.parametrize("name", ALL_STRATEGIES)
def test_bad_input_table_holds_for_every_registered_strategy(name):
    """Each row of README's "What happens with bad input", for this strategy."""
    X, y, clf = pool()
    unlabeled = np.isnan(y)

    def query(X=X, y=y, clf=clf, batch=2, **params):
        return quiet(lambda: strategy(name, random_state=0, **params).query(X, y, clf, batch))

    # empty pool, nothing unlabeled, batch too large, batch not a positive int
    for bad_X in (np.zeros((0, 3)),):
        with pytest.raises(InvalidInputError):
            query(X=bad_X, y=np.zeros(0))
    with pytest.raises(InvalidInputError, match="no unlabeled"):
        query(y=np.where(np.isnan(y), 0.0, y))
    with pytest.raises(InvalidInputError, match="larger than"):
        query(batch=int(unlabeled.sum()) + 1)
    for batch in (0, -1):
        with pytest.raises(InvalidInputError):
            query(batch=batch)
    for batch in (1.5, 2.0, "2", True, None):
        with pytest.raises(InvalidTypeError):
            query(batch=batch)
    # NaN/inf features, non-numeric columns, wrong shapes, y of the wrong length
    X_nan = X.copy()
    X_nan[7, 1] = np.nan
    with pytest.raises(InvalidInputError, match="NaN or infinite"):
        query(X=X_nan)
    frame = pd.DataFrame(X, columns=["a", "b", "c"]).assign(c=["x"] * X.shape[0])
    with pytest.raises(InvalidInputError, match="non-numeric"):
        query(X=frame)
    for bad_X in (X[:, 0], X[None]):
        with pytest.raises(InvalidInputError, match="2-D"):
            query(X=bad_X)
    with pytest.raises(InvalidInputError, match="entries but X has"):
        query(y=y[:-1])
    # new rows (issue 13): a pandas Series, complex and datetime features
    with pytest.raises(InvalidInputError, match="Series"):
        query(X=pd.Series(X[:, 0]))
    with pytest.raises(InvalidInputError, match="complex"):
        query(X=X + 1j)
    with pytest.raises(InvalidInputError, match="dates"):
        query(X=np.arange(X.size).reshape(X.shape).astype("datetime64[D]"))
    # classifier without predict_proba, not fitted; labels it does not know
    if uses_classifier(name):
        with pytest.raises(InvalidTypeError, match="predict_proba"):
            query(clf=LinearSVC().fit(X[:6], y[:6]))
        with pytest.raises(NotFittedClassifierError):
            query(clf=LogisticRegression())
        y_unknown = y.copy()
        y_unknown[6] = 7.0
        with pytest.raises(InvalidInputError, match="does not know"):
            query(y=y_unknown)
    # string/object labels, DataFrames/Series, sparse: handled
    y_text = np.array(["a" if v == 0 else "b" if v == 1 else "" for v in y])
    clf_text = LogisticRegression().fit(X[:6], y_text[:6])
    assert_picks(query(y=y_text, clf=clf_text, missing_label=""), 2, unlabeled)
    y_obj = np.array([None if np.isnan(v) else f"c{int(v)}" for v in y], dtype=object)
    clf_obj = LogisticRegression().fit(X[:6], y_obj[:6].astype(str))
    assert_picks(query(y=pd.Series(y_obj), clf=clf_obj, missing_label=None), 2, unlabeled)
    assert_picks(query(X=pd.DataFrame(X), y=pd.Series(y)), 2, unlabeled)
    assert_picks(query(X=sp.csr_matrix(X)), 2, unlabeled)
    # pd.NA (pandas string dtype) marks unlabeled rows like None
    y_na = pd.Series([pd.NA if v is None else v for v in y_obj], dtype="string")
    assert_picks(query(y=y_na, clf=clf_obj, missing_label=None), 2, unlabeled)
    # labels of a single class: handled (qbc raises, its committee needs two classes)
    y_one = np.where(np.isnan(y), np.nan, 1.0)
    clf_one = GaussianNB().fit(X[:6], y_one[:6])
    if name == "qbc":
        with pytest.raises(InvalidInputError, match="two classes"):
            query(y=y_one, clf=clf_one)
    else:
        assert_picks(query(y=y_one, clf=clf_one), 2, unlabeled)


@pytest.mark.parametrize("name", ALL_STRATEGIES)
def test_feature_count_and_pool_size_changes(name):
    X, y, clf = pool()
    s = strategy(name, random_state=0)
    quiet(lambda: s.query(X, y, clf, 2))
    X_more = np.hstack([X, X[:, :1]])
    clf_more = LogisticRegression().fit(X_more[:6], y[:6])
    with pytest.raises(InvalidInputError, match="features"):
        quiet(lambda: s.query(X_more, y, clf_more, 2))
    X2, y2 = np.vstack([X, X[:5] + 0.5]), np.concatenate([y, np.full(5, np.nan)])
    if name.startswith("policy:"):  # the history follows the records
        with warnings.catch_warnings():
            warnings.simplefilter("error", PoolChangedWarning)
            assert_picks(quiet(lambda: s.query(X2, y2, clf, 2)), 2, np.isnan(y2))
    else:
        with pytest.warns(PoolChangedWarning):
            picks = s.query(X2, y2, clf, 2)
        assert_picks(picks, 2, np.isnan(y2))


class FakeProba:
    """A fitted-looking classifier whose predict_proba returns what it is told to."""

    def __init__(self, answer, classes=(0.0, 1.0)):
        self.answer = answer
        self.classes_ = np.asarray(classes)

    def fit(self, X, y):
        return self

    def get_params(self, deep=True):
        return {"answer": self.answer, "classes": tuple(np.asarray(self.classes_).ravel().tolist())}

    def predict(self, X):
        return np.zeros(np.asarray(X).shape[0])

    def predict_proba(self, X):
        n = np.asarray(X).shape[0]
        return self.answer(n) if callable(self.answer) else self.answer


BAD_PROBA = {
    "string": lambda n: "0.5",
    "dict": lambda n: {"a": 1},
    "ragged": lambda n: [[0.5, 0.5]] * (n - 1) + [[1.0]],
    "no_column": lambda n: np.zeros((n, 0)),
    "negative": lambda n: np.tile([-0.2, 1.2], (n, 1)),
    "above_one": lambda n: np.tile([1.5, 0.5], (n, 1)),
    "unnormalised": lambda n: np.tile([0.7, 0.7], (n, 1)),
    "nan": lambda n: np.full((n, 2), np.nan),
    "one_dim": lambda n: np.full(n, 0.5),
    "three_columns_two_classes": lambda n: np.full((n, 3), 1 / 3),
}


@pytest.mark.parametrize("name", [n for n in ALL_STRATEGIES if uses_classifier(n)])
@pytest.mark.parametrize("kind", sorted(BAD_PROBA))
def test_bad_probabilities_are_a_clear_error(name, kind):
    X, y, _ = pool()
    # qbc fits copies of the classifier; this one cannot be cloned, which is its error
    with pytest.raises(InvalidTypeError if name == "qbc" else InvalidInputError, match="predict_proba|cloned"):
        quiet(lambda: strategy(name, random_state=0).query(X, y, FakeProba(BAD_PROBA[kind]), 2))


@pytest.mark.parametrize("kind", ["negative", "above_one", "unnormalised", "no_column"])
def test_committee_members_probabilities_are_checked(kind):
    X, y, _ = pool()

    class Member(FakeProba):
        def __init__(self, answer=BAD_PROBA[kind]):
            super().__init__(answer)

        def get_params(self, deep=True):
            return {"answer": self.answer}

    with pytest.raises(InvalidInputError, match="predict_proba"):
        quiet(lambda: make_strategy("qbc", method="kl_divergence", random_state=0).query(X, y, Member(), 2))


@pytest.mark.parametrize("name", [n for n in ALL_STRATEGIES if uses_classifier(n)])
def test_two_dimensional_classes_are_a_clear_error(name):
    X, y, _ = pool()
    clf = FakeProba(lambda n: np.full((n, 2), 0.5), classes=[[0.0, 1.0]])
    with pytest.raises(InvalidInputError, match="classes_"):
        quiet(lambda: strategy(name, random_state=0).query(X, y, clf, 2))


@pytest.mark.parametrize("name", ALL_STRATEGIES)
@pytest.mark.parametrize(
    "params, error",
    [
        ({"random_state": -1}, InvalidInputError),
        ({"random_state": "x"}, InvalidTypeError),
        ({"random_state": 1.5}, InvalidTypeError),
        ({"random_state": True}, InvalidTypeError),
        ({"missing_label": [1, 2]}, InvalidTypeError),
        ({"missing_label": {"a": 1}}, InvalidTypeError),
    ],
)
def test_constructor_parameters_are_checked_at_call_time(name, params, error):
    X, y, clf = pool()
    s = strategy(name, **params)  # __init__ only stores them
    with pytest.raises(error):
        quiet(lambda: s.query(X, y, clf, 2))


@pytest.mark.parametrize(
    "name, params, error",
    [
        ("albl", {"n_queries": -1}, InvalidInputError),
        ("albl", {"n_queries": 2.5}, InvalidTypeError),
        ("albl", {"p_min": 0.0}, InvalidInputError),
        ("albl", {"p_min": -0.5}, InvalidInputError),
        ("albl", {"p_min": "0.1"}, InvalidTypeError),
        ("albl", {"delta": "0.1"}, InvalidTypeError),
        ("albl", {"experts": "margin"}, InvalidTypeError),
        ("albl", {"experts": ("nope",)}, InvalidInputError),
        ("density_weighted", {"beta": "1"}, InvalidTypeError),
        ("density_weighted", {"beta": -1.0}, InvalidInputError),
        ("density_weighted", {"uncertainty": ["margin"]}, InvalidInputError),
        ("qbc", {"n_members": 1}, InvalidInputError),
        ("qbc", {"method": None}, InvalidInputError),
    ],
)
def test_strategy_parameters_are_checked_at_call_time(name, params, error):
    X, y, clf = pool()
    with pytest.raises(error):
        quiet(lambda: make_strategy(name, **params).query(X, y, clf, 2))


@pytest.mark.parametrize(
    "params, error",
    [({"random_state": -1}, InvalidInputError), ({"random_state": "x"}, InvalidTypeError), ({"label_budget": 1.5}, InvalidTypeError)],
)
def test_streaming_policy_parameters_are_checked(params, error):
    X, y, clf = pool()
    with pytest.raises(error):
        StreamingPolicy("margin", **params).decide(X[0], clf)


@pytest.mark.parametrize("name", [n for n in ALL_STRATEGIES if uses_classifier(n)])
def test_labels_mixing_types_are_a_clear_error(name):
    X, _, clf = pool()
    y = np.array([0, "1", 0, "1", 0, "1"] + [None] * 34, dtype=object)
    with pytest.raises(InvalidInputError, match="mixes label types|compared"):
        quiet(lambda: strategy(name, random_state=0, missing_label=None).query(X, y, clf, 2))


def test_sparse_pool_too_large_to_densify_says_how_large():
    X = sp.csr_matrix((10**5, 10**8))  # 72 TiB dense
    y = np.full(X.shape[0], np.nan)
    with pytest.raises(InvalidInputError, match=r"GiB.*TruncatedSVD"):
        make_strategy("random").query(X, y, None, 1)


def test_record_ids_holding_lists_are_a_clear_error():
    X, y, clf = pool(n=6)
    y[:] = np.nan
    y[:2] = [0, 1]
    s = load_policy("default", random_state=0)
    for ids in ([[1, 2]] * 6, [[1], [1, 2], [3], [4], [5], [6]], pd.Series([[i] for i in range(6)]), [None] * 6):
        with pytest.raises(InvalidInputError, match="record_ids"):
            quiet(lambda: s.query(X, y, clf, 1, record_ids=ids))


def test_policy_names_too_long_for_the_system(capsys):
    with pytest.raises(PolicyFileError, match="cannot look it up"):
        load_policy("a" * 5000)
    with pytest.raises(PolicyFileError, match="cannot look it up"):
        read_policy("b" * 300 + "/x.safetensors")
    assert main(["inspect", "a" * 5000]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


# ============================================================================ policy files
ARCH = ScorerArchitecture(POOL_SCHEMA.n_candidate_features, POOL_SCHEMA.n_context_features, hidden=8)


def random_params(seed: int = 0, arch: ScorerArchitecture = ARCH) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    params = {n: rng.normal(0.0, 0.3, s).astype(np.float32) for n, s in parameter_shapes(arch).items()}
    params["cand_std"] = np.ones_like(params["cand_std"])
    params["ctx_std"] = np.ones_like(params["ctx_std"])
    return params


def raw_policy(path: Path, params=None, arch=None, **meta_overrides) -> Path:
    """A policy file written byte for byte (bypassing save_policy's checks), as an attacker would."""
    params = random_params() if params is None else params
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": (arch or ARCH).to_dict(),
        "feature_schema": POOL_SCHEMA.to_dict(),
        "window": 3,
        "n_candidates": 8,
    }
    meta.update(meta_overrides)
    payload = safetensors_save({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in params.items()},
                               metadata={METADATA_KEY: json.dumps(meta)})
    path.write_bytes(payload)
    return path


SPOOF = "\x1b[2J\x1b[H\rvalidation: +9.99 points vs margin (fake)\u202e\x9b31m"


def test_inspect_escapes_control_characters(tmp_path, capsys):
    path = raw_policy(tmp_path / "spoof.safetensors", note=SPOOF, trainer={"method": SPOOF, "settings": {SPOOF: SPOOF}},
                      validation={"x": SPOOF}, seed=SPOOF, task_suite=[SPOOF])
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    for char in ("\x1b", "\r", "\u202e", "\x9b"):
        assert char not in out
    assert "\\x1b[2J" in out
    assert main(["inspect", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert not any(c in out for c in ("\x1b", "\r", "\u202e", "\x9b"))
    assert json.loads(out)["note"] == SPOOF  # still the same JSON


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"window": 10**9}, "window"),
        ({"window": 101}, "window"),
        ({"window": 3.0}, "window"),
        ({"n_candidates": 10**9}, "n_candidates"),
        ({"n_candidates": "8"}, "n_candidates"),
    ],
)
def test_every_size_a_policy_file_sets_is_bounded_at_load(tmp_path, overrides, match):
    with pytest.raises(PolicyFileError, match=match):
        read_policy(raw_policy(tmp_path / "p.safetensors", **overrides))


@pytest.mark.parametrize(
    "field, value",
    [("version", 1.5), ("version", "1"), ("hidden", "8"), ("hidden", 8.5), ("hidden", 8.0), ("hidden", 10**6),
     ("n_candidate_features", 16.0), ("hidden", True)],
)
def test_architecture_integers_are_parsed_strictly(tmp_path, field, value):
    arch = ARCH.to_dict()
    arch[field] = value
    with pytest.raises(PolicyFileError):
        read_policy(raw_policy(tmp_path / "p.safetensors", architecture=arch))


@pytest.mark.parametrize("defect", ["all_3e38", "cand_std_1e-45", "ctx_std_1e-40", "head_1e30"])
def test_weights_that_could_overflow_are_refused_at_load(tmp_path, defect):
    params = random_params()
    if defect == "all_3e38":
        params = {k: np.full_like(v, 3e38) for k, v in params.items()}
    elif defect == "cand_std_1e-45":
        params["cand_std"][:] = 1e-45
    elif defect == "ctx_std_1e-40":
        params["ctx_std"][3] = 1e-40
    else:
        params["head.0.weight"][:] = 1e30
    with pytest.raises(PolicyFileError, match="magnitude|positive"):
        read_policy(raw_policy(tmp_path / "p.safetensors", params=params))
    with pytest.raises(PolicyFileError):
        save_policy(tmp_path / "q.safetensors", ARCH, params, {"feature_schema": POOL_SCHEMA.to_dict(), "window": 3})


def test_scorer_never_returns_nan_scores(tmp_path):
    policy = read_policy(raw_policy(tmp_path / "p.safetensors"))
    F, G = ARCH.n_candidate_features, ARCH.n_context_features
    with pytest.raises(InvalidInputError, match="overflowed"):
        quiet(lambda: policy.scorer.scores(np.full((4, F), 1e38), np.zeros(G)))
    scores = policy.scorer.scores(np.ones((4, F)), -np.ones(G))
    assert np.all(np.isfinite(scores))


def test_released_and_trained_policies_pass_the_bound():
    for name in RELEASED:
        policy = read_policy(name)
        assert policy.scorer.score_bound() < 1e30


# ============================================================================ next-batch: lost data
@pytest.fixture
def tables(tmp_path):
    rng = np.random.default_rng(0)
    n = 40
    ids = [f"r{i:02d}" for i in range(n - 4)] + ["NA", "None", "null", "nan"]
    records = pd.DataFrame({"id": ids, "f0": rng.normal(size=n), "f1": rng.normal(size=n)})
    records_path = tmp_path / "records.csv"
    records.to_csv(records_path, index=False)
    labels_path = tmp_path / "labels.csv"
    labels_path.write_text("id,label\nr00,NA\nr01,EU\nr02,NA\nr03,EU\nNA,null\nNone,None\nnull,\nr04, \n")
    return records_path, labels_path


def test_only_an_empty_cell_means_no_label_or_no_id(tables, tmp_path):
    records, labels = tables
    result = next_batch(records, labels, policy="margin", model="nb", batch_size=3, out=tmp_path / "to_label.csv")
    # NA, None, null are class names and ids; the empty label (null) and the blank one (r04) are skipped
    assert result.classes == ["EU", "NA", "None", "null"]
    assert result.n_labeled == 6
    assert any("empty label" in note for note in result.notes)


@pytest.mark.parametrize("which", ["data", "labels", "state", "symlink", "relative", "hardlink"])
def test_out_that_is_an_input_is_refused_and_the_input_kept(tables, tmp_path, which, monkeypatch):
    records, labels = tables
    before = {p: p.read_bytes() for p in (records, labels)}
    state = default_state_path(labels)
    if which == "data":
        out = records
    elif which == "labels":
        out = labels
    elif which == "state":
        out = state
    elif which == "symlink":
        out = tmp_path / "link.csv"
        out.symlink_to(labels)
    elif which == "hardlink":
        out = tmp_path / "hard.csv"
        os.link(labels, out)
    else:
        monkeypatch.chdir(tmp_path)
        out = Path("sub/../labels.csv")
        (tmp_path / "sub").mkdir()
    with pytest.raises(InvalidInputError, match="overwrite|state file"):
        next_batch(records, labels, policy="margin", model="nb", out=out)
    assert {p: p.read_bytes() for p in (records, labels)} == before
    assert not state.exists()


def test_state_that_is_an_input_is_refused(tables):
    records, labels = tables
    with pytest.raises(InvalidInputError, match="overwrite"):
        next_batch(records, labels, policy="margin", model="nb", state=records)


def test_out_that_is_a_folder_or_unwritable_is_one_line(tables, tmp_path, capsys, monkeypatch):
    records, labels = tables
    argv = ["next-batch", "--data", str(records), "--labels", str(labels), "--policy", "margin", "--model", "nb"]
    assert main(argv + ["--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    from metalearn.common import atomic

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)
    assert main(argv + ["--out", str(tmp_path / "to_label.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Permission denied" in err


def test_out_write_that_fails_keeps_the_previous_file_and_leaves_no_temporary(tables, tmp_path, monkeypatch):
    records, labels = tables
    out = tmp_path / "to_label.csv"
    next_batch(records, labels, policy="margin", model="nb", out=out, batch_size=2)
    previous = out.read_bytes()

    def half_write(self, path, *args, **kwargs):
        Path(path).write_text("id,rank,score\nr10,1,")  # a partial line, then the "disk" fails
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_write)
    with pytest.raises(InvalidInputError, match="No space"):
        next_batch(records, labels, policy="margin", model="nb", out=out, batch_size=2)
    assert out.read_bytes() == previous
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_temporaries_of_killed_writers_are_removed(tmp_path):
    target = tmp_path / "state.bin"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".state.bin.{int(dead.stdout)}.abc123.tmp"
    stale.write_bytes(b"partial")
    alive = tmp_path / f".state.bin.{os.getpid()}.zzz.tmp"  # this process: a write in progress
    alive.write_bytes(b"in progress")
    other = tmp_path / ".other.bin.1.abc.tmp"
    other.write_bytes(b"not ours")
    legacy_old = tmp_path / "state.bin.k3j4h5g6.tmp"  # metalearn 0.1.0's name, an hour old
    legacy_old.write_bytes(b"partial")
    os.utime(legacy_old, (0, 0))
    legacy_new = tmp_path / "state.bin.abcdefgh.tmp"  # maybe a 0.1.0 write in progress
    legacy_new.write_bytes(b"partial")
    atomic_write_bytes(target, b"complete")
    assert target.read_bytes() == b"complete"
    assert not stale.exists() and alive.exists() and other.exists()
    assert not legacy_old.exists() and legacy_new.exists()
    assert remove_stale_temporaries(target) == []


_KILL_DURING_WRITE = r"""
import os, signal, sys
import pandas as pd
from metalearn.common import atomic
from metalearn.workflow import next_batch

which = sys.argv[4]
original = atomic.os.replace

def killed_replace(src, dst):
    if os.path.basename(str(dst)).endswith(which):
        with open(src, "r+b") as handle:  # keep half of the new content, then die
            handle.truncate(max(1, os.path.getsize(src) // 2))
        os.kill(os.getpid(), signal.SIGKILL)
    return original(src, dst)

atomic.os.replace = killed_replace
next_batch(sys.argv[1], sys.argv[2], policy="margin", model="nb", batch_size=3, out=sys.argv[3])
"""


@pytest.mark.parametrize("which", ["to_label.csv", ".metalearn-state"])
def test_sigkill_while_writing_leaves_complete_files_and_the_next_run_cleans_up(tables, tmp_path, which):
    records, labels = tables
    out = tmp_path / "to_label.csv"
    first = next_batch(records, labels, policy="margin", model="nb", batch_size=3, out=out)
    state = first.state_path
    before = {p: p.read_bytes() for p in (out, state)}
    proc = subprocess.run(
        [sys.executable, "-c", _KILL_DURING_WRITE, str(records), str(labels), str(out), which],
        capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    for path, content in before.items():
        if path.name.endswith(which):
            assert path.read_bytes() == content  # the kill left the previous, complete file
    assert [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # the killed writer's temporary
    pd.read_csv(out)  # complete either way
    read_state(state)
    next_batch(records, labels, policy="margin", model="nb", batch_size=3, out=out)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_pd_na_and_string_dtype_labels(tables):
    records, _ = tables
    frame = pd.read_csv(records, dtype={"id": str}, keep_default_na=False)
    labels = pd.DataFrame({"id": frame["id"][:6], "label": pd.array(["a", "b", pd.NA, "a", "b", None], dtype="string")})
    result = next_batch(records, labels, policy="margin", model="nb", batch_size=2)
    assert result.n_labeled == 4 and result.classes == ["a", "b"]


# ============================================================================ hand-edited state files
def _edit_state(state: Path, edit) -> None:
    from safetensors.numpy import load

    data = state.read_bytes()
    arrays = load(data)
    n = int.from_bytes(data[:8], "little")
    meta = json.loads(json.loads(data[8 : 8 + n])["__metadata__"]["metalearn"])
    edit(meta, arrays)
    state.write_bytes(safetensors_save(arrays, metadata={"metalearn": json.dumps(meta)}))


STATE_EDITS = {
    "version_str": lambda m, a: m.update(version="1"),
    "version_null": lambda m, a: m.update(version=None),
    "version_float": lambda m, a: m.update(version=1.0),
    "loops_str": lambda m, a: m.update(loops="2"),
    "loops_float": lambda m, a: m.update(loops=1.5),
    "loops_negative": lambda m, a: m.update(loops=-3),
    "seed_str": lambda m, a: m.update(seed="0"),
    "seed_negative": lambda m, a: m.update(seed=-1),
    "budget_str": lambda m, a: m.update(label_budget="100"),
    "budget_zero": lambda m, a: m.update(label_budget=0),
    "log_dict": lambda m, a: m.update(log={"a": 1}),
    "log_strings": lambda m, a: m.update(log=["x"]),
    "log_picked_int": lambda m, a: m.update(log=[{"picked": 5}]),
    "history_list": lambda m, a: m.update(history=[1, 2]),
    "history_classes_str": lambda m, a: m["history"].update(classes="ab") if m["history"] else m.update(history={"classes": "ab"}),
    "history_window_huge": lambda m, a: m["history"].update(window=10**9) if m["history"] else m.update(history={"classes": [], "window": 10**9}),
    "columns_str": lambda m, a: m.update(columns="f0,f1"),
    "hashes_short": lambda m, a: a.update(record_hashes=a["record_hashes"][:-3]),
    "id_keys_2d": lambda m, a: a.update(id_keys=a["id_keys"].reshape(1, -1)),
    "history_arrays_wrong": lambda m, a: a.update(proba=np.zeros((2, 2), dtype=np.float32)),
}


@pytest.mark.parametrize("edit", sorted(STATE_EDITS))
def test_hand_edited_state_files_are_one_line_errors(tmp_path, edit, capsys):
    rng = np.random.default_rng(0)
    records = tmp_path / "records.csv"
    pd.DataFrame({"id": [f"r{i}" for i in range(30)], "f0": rng.normal(size=30), "f1": rng.normal(size=30)}).to_csv(records, index=False)
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\nr0,a\nr1,b\nr2,a\nr3,b\n")
    out = tmp_path / "to_label.csv"
    argv = ["next-batch", "--data", str(records), "--labels", str(labels), "--out", str(out), "--model", "nb", "--batch-size", "2"]
    assert main(argv) == 0
    capsys.readouterr()
    _edit_state(default_state_path(labels), STATE_EDITS[edit])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("metalearn: error:") and err.count("\n") == 1, err


# ============================================================================ the CLI
@pytest.mark.parametrize(
    "argv, match",
    [
        (["next-batch", "--seed", "-1"], "seed"),
        (["next-batch", "--budget", "0"], "label_budget"),
        (["next-batch", "--label-column", "id"], "label column"),
        (["next-batch", "--batch-size", "0"], "batch_size"),
        (["benchmark", "--datasets", "sklearn:iris", "--jobs", "0", "--out", "{tmp}/b"], "jobs"),
        (["benchmark", "--datasets", "sklearn:iris", "--seeds", "1000000000000", "--out", "{tmp}/b"], "limit"),
        (["benchmark", "--datasets", "sklearn:iris", "--seeds", "100000", "--out", "{tmp}/b"], "runs"),
        (["benchmark", "--datasets", "sklearn:iris", "--reference", "bogus", "--out", "{tmp}/b"], "reference"),
        (["benchmark", "--datasets", "sklearn:iris", "--strategies", "random,entropy", "--reference", "margin", "--out", "{tmp}/b"], "reference"),
        (["train", "--jobs", "0", "--out", "{tmp}/t"], "jobs"),
        (["demo", "--jobs", "-2", "--out", "{tmp}/d"], "jobs"),
        (["inspect", "{tmp}/missing.safetensors"], "no such file"),
        (["next-batch", "--policy", "p" * 5000], "cannot look it up"),
        (["next-batch", "--out", "{tmp}/o\x00.csv"], "NUL"),
    ],
)
def test_cli_refuses_with_one_line_and_exit_2(tables, tmp_path, capsys, argv, match):
    records, labels = tables
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if argv[0] == "next-batch":
        defaults = ["--data", str(records), "--labels", str(labels), "--out", str(tmp_path / "o.csv"), "--model", "nb"]
        argv = argv[:1] + defaults + argv[1:]  # the case's options last: they override
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("metalearn: error:") and err.count("\n") == 1 and match in err, err
    assert not (tmp_path / "b").exists() and not (tmp_path / "t").exists() and not (tmp_path / "d").exists()


def test_parquet_without_pyarrow_is_one_line(tables, tmp_path, capsys, monkeypatch):
    records, labels = tables
    parquet = tmp_path / "records.parquet"
    parquet.write_bytes(b"PAR1")

    def no_engine(*args, **kwargs):
        raise ImportError("Unable to find a usable engine; tried using: 'pyarrow', 'fastparquet'.\n"
                          "A suitable version of pyarrow or fastparquet is required for parquet support.\n"
                          "Trying to import the above resulted in these errors:\n - Missing optional dependency 'pyarrow'.")

    monkeypatch.setattr(pd, "read_parquet", no_engine)
    assert main(["next-batch", "--data", str(parquet), "--labels", str(labels), "--out", str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pyarrow" in err
    import builtins

    real_import = builtins.__import__

    def without_pyarrow(name, *args, **kwargs):
        if name == "pyarrow" or name.startswith("pyarrow."):
            raise ImportError("No module named 'pyarrow'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_pyarrow)
    assert main(["benchmark", "--datasets", "sklearn:iris", "--format", "parquet", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pyarrow" in err and not (tmp_path / "b").exists()
    argv = ["next-batch", "--data", str(records), "--labels", str(labels), "--out", str(tmp_path / "o.parquet"),
            "--policy", "margin", "--model", "nb"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pyarrow" in err


def test_ctrl_c_in_next_batch_is_one_line_and_exit_130(tables, tmp_path, capsys, monkeypatch):
    records, labels = tables
    import metalearn.workflow as workflow

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(workflow, "next_batch", interrupted)
    assert main(["next-batch", "--data", str(records), "--labels", str(labels), "--out", str(tmp_path / "o.csv")]) == 130
    err = capsys.readouterr().err.strip()
    assert err.startswith("interrupted") and "\n" not in err


def test_error_messages_quoting_file_content_are_escaped(tmp_path, capsys):
    path = raw_policy(tmp_path / "p.safetensors", format="evil\x1b[2J\nsecond line")
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and err.count("\n") == 1


# ============================================================================ next-batch: special files (issue 22 item 3)
@pytest.mark.parametrize("which", ["state_device", "state_fifo", "state_link_to_device", "out_device", "out_fifo",
                                   "out_link_to_fifo"])
def test_next_batch_refuses_special_files_for_state_and_out(tables, tmp_path, which, capsys):
    records, labels = tables
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link"
    target = {"state_device": "/dev/zero", "state_fifo": str(fifo), "out_device": "/dev/null", "out_fifo": str(fifo)}
    if which == "state_link_to_device":
        link.symlink_to("/dev/zero")
    elif which == "out_link_to_fifo":
        link.symlink_to(fifo)
    path = target.get(which, str(link))
    option = "--state" if which.startswith("state") else "--out"
    argv = ["next-batch", "--data", str(records), "--labels", str(labels), "--policy", "margin", "--model", "nb",
            "--out", str(tmp_path / "o.csv"), option, path]
    assert main(argv) == 2  # refused at once: /dev/zero is never read, a FIFO never blocks
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a regular file" in err and option in err, err
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode) and stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert not (tmp_path / "o.csv").exists() and not default_state_path(labels).exists()
