"""Hostile input, generated: "the project's own error, or a valid result", for everything a user hands in.

Hypothesis generates, for every strategy the library registers (so a strategy registered later
is covered without editing this file) and the released policies:

- hostile pools: pandas Series, complex, datetime, timedelta, string and nullable columns,
  ragged lists, object arrays, sparse matrices; labels with ``pd.NA`` (``string`` and ``Int64``
  dtypes), ``None``, mixed int/str, lists, complex; classifiers whose ``predict_proba`` returns
  a string, a dict, ragged rows, no column, negative, > 1 or unnormalised values, whose
  ``classes_`` is 2-D or of the wrong length; constructor parameters (``random_state``,
  ``missing_label``) and batch sizes of every wrong kind;
- hostile policy files: every metadata and architecture field replaced by generated JSON
  (huge, fractional, string, nested, control characters), extreme and denormal weights,
  missing or reshaped tensors, truncated bytes;
- hostile CSVs for ``next-batch``: ids and labels such as ``NA``, ``None``, ``null``, ``nan``,
  blanks, quotes, separators, control characters, duplicates and conflicts;
- hand-edited ``next-batch`` state files: any field replaced or dropped, arrays cut, reshaped
  or retyped;
- every CLI command with hostile arguments (the expensive ones, ``demo``, ``train`` and
  ``benchmark``, always with at least one value that must be refused before any work).

The property: either the call returns a valid result (distinct unlabeled picks of the right
count; a policy whose model card has no control character and whose scores are finite; a
``next-batch`` table of unlabeled record ids; a CLI exit status 0) or it raises one of the
project's errors (a :class:`~metalearn.exceptions.MetalearnError` that is a ``ValueError`` or
``TypeError``; in the CLI: exit 2 with one line on stderr). Inputs that are certainly invalid
must be refused, well-formed ones must succeed, and no input file is ever changed.

Runs derandomized without an example database (the ``metalearn-hostile`` profile): CI tries the
same cases every time. Examples per test are counted and printed at the end of the module.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import string
import unicodedata
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load as safetensors_load
from safetensors.numpy import save as safetensors_save
from sklearn.naive_bayes import GaussianNB

from metalearn import load_policy
from metalearn.cli import main
from metalearn.exceptions import MetalearnError
from metalearn.features.schema import POOL_SCHEMA, PROBA_SCHEMA
from metalearn.policies.architecture import ScorerArchitecture, parameter_shapes
from metalearn.policies.file import FORMAT, FORMAT_VERSION, METADATA_KEY, format_model_card, read_policy
from metalearn.policies.strategy import PolicyStrategy
from metalearn.strategies import get_strategy_class, make_strategy, strategy_names
from metalearn.strategies.resolve import resolve_strategy
from metalearn.workflow import NextBatch, next_batch, read_state

PROFILE = "metalearn-hostile"
settings.register_profile(
    PROFILE,
    database=None,  # CI tries exactly these cases
    derandomize=True,  # examples derive from the test's name, not from a random seed
    deadline=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)


def SETTINGS(n: int) -> settings:
    return settings(settings.get_profile(PROFILE), max_examples=n)


LIBRARY_STRATEGIES = tuple(n for n in strategy_names() if get_strategy_class(n).__module__.startswith("metalearn."))
RELEASED = ("policy:default", "policy:default-proba")
ALL_STRATEGIES = LIBRARY_STRATEGIES + RELEASED

EXAMPLES: Counter[str] = Counter()
OUTCOMES: dict[str, Counter[str]] = {}


@pytest.fixture(scope="module", autouse=True)
def report_counts(request):
    yield
    if not EXAMPLES:
        return
    lines = [f"hostile-input examples in {__name__}: {sum(EXAMPLES.values())}"]
    for name, count in EXAMPLES.items():
        outcomes = ", ".join(f"{k}={v}" for k, v in sorted(OUTCOMES.get(name, {}).items()))
        lines.append(f"  {name}: {count} examples ({outcomes})")
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        with capture.global_and_fixture_disabled():
            print("\n" + "\n".join(lines))


def outcome(test: str, call: Callable[[], Any]) -> tuple[str, Any]:
    """("ok", result) or ("error", exc) for one of the project's errors; anything else fails the test."""
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            result = call()
    except MetalearnError as exc:
        assert isinstance(exc, (ValueError, TypeError)), f"{type(exc).__name__} is neither ValueError nor TypeError"
        assert str(exc).strip(), f"{type(exc).__name__} without a message"
        OUTCOMES.setdefault(test, Counter())[f"error:{type(exc).__name__}"] += 1
        return "error", exc
    OUTCOMES.setdefault(test, Counter())["ok"] += 1
    return "ok", result


def has_control_characters(text: str) -> bool:
    return any(c != "\n" and unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in text)


HOSTILE_TEXT = ["NA", "None", "null", "nan", "NaN", "n/a", "#N/A", "NULL", "", " ", "0", "007", "a,b", '"q"',
                "é", "\x1b[2J", "x\ty", "a\nb", "-1.5", "TRUE", "\u202e", "\r"]


# ============================================================================ 1. hostile pools
X_KINDS = ("float", "float", "float", "dataframe", "list", "sparse", "bool", "object_numbers", "nullable_ok",
           "series!", "complex!", "datetime!", "timedelta!", "string_column!", "nullable_na!", "ragged!",
           "object_strings!", "nan!")
Y_KINDS = ("float_nan", "float_nan", "string_na", "int64_na", "object_none", "object_pdna", "str_empty",
           "mixed_types!", "lists!", "complex!")
CLF_KINDS = ("good", "good", "good", "string", "dict", "ragged", "no_column", "negative", "above_one",
             "unnormalised", "classes_2d", "classes_wrong_length", "none")
BAD_PROBA: dict[str, Callable[[int], Any]] = {
    "string": lambda n: "0.5",
    "dict": lambda n: {"p": [0.5] * n},
    "ragged": lambda n: [[0.5, 0.5]] * (n - 1) + [[1.0]],
    "no_column": lambda n: np.zeros((n, 0)),
    "negative": lambda n: np.tile([-0.3, 1.3], (n, 1)),
    "above_one": lambda n: np.tile([2.0, 0.5], (n, 1)),
    "unnormalised": lambda n: np.tile([0.9, 0.9], (n, 1)),
}
RANDOM_STATES = (0, None, 7, "np_int", "generator", -1, "x", 1.5, True, [1])
BATCHES = ("one", "one", "two", "all", "zero", "float", "str", "too_many")


class HostileClassifier:
    """Fitted-looking: classes_ and predict, with a predict_proba that returns what it is told."""

    def __init__(self, kind: str, classes: np.ndarray) -> None:
        self.kind = kind
        self.classes_ = classes

    def predict(self, X):
        return np.full(np.asarray(X).shape[0], np.asarray(self.classes_).ravel()[0])

    def predict_proba(self, X):
        n = np.asarray(X).shape[0]
        if self.kind in BAD_PROBA:
            return BAD_PROBA[self.kind](n)
        k = np.asarray(self.classes_).size
        return np.full((n, k), 1.0 / k)


def hostile_pool(draw, n: int, d: int, seed: int, hostile: bool) -> tuple[Any, str, np.ndarray]:
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from([k for k in X_KINDS if k.endswith("!") == hostile]))
    Xf = rng.normal(size=(n, d))
    if kind == "float":
        X: Any = Xf.astype(draw(st.sampled_from(["float64", "float32"])))
    elif kind == "dataframe":
        X = pd.DataFrame(Xf, columns=[f"f{j}" for j in range(d)])
    elif kind == "list":
        X = Xf.tolist()
    elif kind == "sparse":
        X = draw(st.sampled_from([sp.csr_matrix, sp.coo_matrix, sp.csc_matrix]))(Xf)
    elif kind == "bool":
        X = Xf > 0
    elif kind == "object_numbers":
        X = Xf.astype(object)
    elif kind == "nullable_ok":
        X = pd.DataFrame({f"f{j}": pd.array(np.round(Xf[:, j] * 10).astype(int), dtype="Int64") for j in range(d)})
    elif kind == "series!":
        X = pd.Series(Xf[:, 0])
    elif kind == "complex!":
        X = Xf + 1j * draw(st.sampled_from([0.0, 1.0]))
    elif kind == "datetime!":
        X = (np.round(Xf * 100).astype(np.int64)).astype("datetime64[D]")
        X = pd.DataFrame(X) if draw(st.booleans()) else X
    elif kind == "timedelta!":
        X = (np.round(Xf * 100).astype(np.int64)).astype("timedelta64[s]")
    elif kind == "string_column!":
        X = pd.DataFrame(Xf).assign(extra=pd.array([draw(st.sampled_from(HOSTILE_TEXT))] * n, dtype="string"))
    elif kind == "nullable_na!":
        column = pd.array(np.arange(n), dtype="Int64")
        column[rng.integers(n)] = pd.NA
        X = pd.DataFrame({"a": column, **{f"f{j}": Xf[:, j] for j in range(d)}})
    elif kind == "ragged!":
        X = Xf.tolist()
        X[-1] = X[-1] + [1.0]
    elif kind == "object_strings!":
        X = np.array([[draw(st.sampled_from(["a", "NA", "x"]))] * d] * n, dtype=object)
    else:  # nan!
        X = Xf.copy()
        X[rng.integers(n), rng.integers(d)] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    return X, kind, Xf  # Xf: the clean values, to fit the classifier on


def hostile_labels(draw, n: int, seed: int, hostile: bool) -> tuple[Any, Any, str, np.ndarray, np.ndarray]:
    """y, the missing_label to pass, its kind, the labeled mask and the labeled values as fitted."""
    rng = np.random.default_rng([seed, 1])
    kind = draw(st.sampled_from([k for k in Y_KINDS if k.endswith("!") == hostile]))
    truth = rng.integers(0, 2, size=n)
    truth[:2] = [0, 1]
    labeled = rng.random(n) < draw(st.sampled_from([0.2, 0.5]))
    labeled[:2] = True
    labeled[-1] = False
    names = np.array(["a", "NA"])[truth]  # "NA" is a class name, never a missing marker
    if kind == "float_nan":
        y: Any = np.where(labeled, truth.astype(float), np.nan)
        return y, np.nan, kind, labeled, truth.astype(float)
    if kind == "string_na":
        y = pd.Series([v if lab else pd.NA for v, lab in zip(names, labeled)], dtype="string")
        return y, draw(st.sampled_from([None, np.nan])), kind, labeled, names
    if kind == "int64_na":
        y = pd.Series([int(v) if lab else pd.NA for v, lab in zip(truth, labeled)], dtype="Int64")
        return y, np.nan, kind, labeled, truth
    if kind == "object_none":
        y = np.array([v if lab else None for v, lab in zip(names, labeled)], dtype=object)
        return y, None, kind, labeled, names
    if kind == "object_pdna":
        y = np.array([v if lab else pd.NA for v, lab in zip(names, labeled)], dtype=object)
        return y, draw(st.sampled_from([None, np.nan, -1])), kind, labeled, names
    if kind == "str_empty":
        y = np.where(labeled, names, "")
        return y, "", kind, labeled, names
    if kind == "mixed_types!":
        y = np.array([(int(v) if i % 2 else str(v)) if lab else None for i, (v, lab) in enumerate(zip(truth, labeled))],
                     dtype=object)
        return y, None, kind, labeled, truth
    if kind == "lists!":
        y = np.empty(n, dtype=object)
        for i in range(n):
            y[i] = [int(truth[i])] if labeled[i] else None
        return y, None, kind, labeled, truth
    y = np.where(labeled, truth + 1j, np.nan)  # complex!
    return y, np.nan, kind, labeled, truth


def build(name: str, **params):
    # The one resolver from a name to a strategy, as the benchmark and next-batch use it.
    random_state, missing = params.pop("random_state", None), params.pop("missing_label", np.nan)
    return resolve_strategy(name, label_budget=None, random_state=random_state, missing_label=missing, **params)


def uses_classifier(name: str) -> bool:
    return name.startswith("policy:") or get_strategy_class(name).requires_classifier


def test_every_strategy_on_hostile_pools():
    test = "strategies_on_hostile_pools"

    @SETTINGS(700)
    @given(data=st.data())
    def run(data):
        EXAMPLES[test] += 1
        draw = data.draw
        name = draw(st.sampled_from(ALL_STRATEGIES), label="strategy")
        # At most one hostile part per case, none in about half of them: valid input is tried as often.
        defect = draw(st.sampled_from([None] * 6 + ["X", "X", "y", "y", "clf", "clf", "random_state", "missing", "batch"]),
                      label="defect")
        n, d = draw(st.integers(4, 30), label="n"), draw(st.integers(1, 4), label="d")
        seed = draw(st.integers(0, 2**32 - 1), label="seed")
        X, x_kind, Xf = hostile_pool(draw, n, d, seed, defect == "X")
        y, missing, y_kind, labeled, values = hostile_labels(draw, n, seed, defect == "y")
        clf_kind = draw(st.sampled_from([k for k in CLF_KINDS if (k != "good") == (defect == "clf")]), label="classifier")
        if clf_kind == "good":
            clf: Any = GaussianNB().fit(Xf[labeled], values[labeled] if y_kind != "mixed_types!" else values[labeled])
        elif clf_kind == "none":
            clf = None
        elif clf_kind == "classes_2d":
            clf = HostileClassifier(clf_kind, np.unique(values[labeled]).reshape(1, -1))
        elif clf_kind == "classes_wrong_length":
            clf = HostileClassifier(clf_kind, np.unique(values[labeled]))
            clf.predict_proba = lambda X: np.full((np.asarray(X).shape[0], 3), 1 / 3)  # 3 columns, 2 classes
        else:
            clf = HostileClassifier(clf_kind, np.unique(values[labeled]))
        state = draw(st.sampled_from(RANDOM_STATES[5:] if defect == "random_state" else RANDOM_STATES[:5]), label="random_state")
        random_state = {"np_int": np.int64(3), "generator": np.random.default_rng(1)}.get(state, state) if isinstance(state, str) else state
        bad_missing = defect == "missing"
        if bad_missing:
            missing = draw(st.sampled_from([[1, 2], {"a": 1}, (None,)]))
        n_unlabeled = int((~labeled).sum())
        batch_kind = draw(st.sampled_from(BATCHES[4:] if defect == "batch" else BATCHES[:4]), label="batch")
        batch: Any = {"one": 1, "two": 2, "all": n_unlabeled, "zero": 0, "float": 1.5, "str": "1",
                      "too_many": n_unlabeled + 1}[batch_kind]
        strategy = build(name, missing_label=missing, random_state=random_state)

        status, result = outcome(test, lambda: strategy.query(X, y, clf, batch))
        OUTCOMES[test][f"{defect}->{status}"] += 1

        must_fail = (
            x_kind.endswith("!")
            or y_kind.endswith("!")
            or bad_missing
            or state in (-1, "x", 1.5, True)
            or [1] == state
            or batch_kind in ("zero", "float", "str", "too_many")
            or (uses_classifier(name) and clf_kind != "good")
        )
        well_formed = not must_fail and n_unlabeled >= 1
        if status == "ok":
            assert not must_fail, f"{name} accepted {x_kind}/{y_kind}/{clf_kind}/{state}/{batch_kind}: {result}"
            size = {"one": 1, "two": 2, "all": n_unlabeled}[batch_kind]
            assert result.dtype.kind == "i" and result.shape == (size,)
            assert np.unique(result).size == size and not labeled[result].any()
        else:
            assert not (well_formed and size_ok(batch_kind, n_unlabeled)), f"{name} refused well-formed input: {result}"

    run()
    assert EXAMPLES[test] >= 700


def size_ok(batch_kind: str, n_unlabeled: int) -> bool:
    return {"one": 1, "two": 2, "all": n_unlabeled}.get(batch_kind, 0) <= n_unlabeled


# ============================================================================ 2. hostile policy files
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.sampled_from([10**9, 2**63, -1, 0, 1, 2, 64])
    | st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([1.5, 64.5, 3e38, 1e-45, 2.0])
    | st.text(max_size=12) | st.sampled_from(HOSTILE_TEXT + ["64", "1", "deepsets", "margin", "pool"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6,
)
META_FIELDS = ("window", "n_candidates", "format_version", "feature_schema", "architecture", "format", "note",
               "trainer", "validation", "training", "release", "task_suite", "seed", "created", "package_version")
ARCH_FIELDS = ("hidden", "version", "n_candidate_features", "n_context_features", "name", "prior_feature",
               "prior_index", "prior_sign")
WEIGHT_VALUES = (1e-45, 1e-30, 1e-8, 1e10, 1e20, 1e30, 3e38, -3e38, 0.0, -1.0, np.nan, np.inf)


def base_policy(schema, residual: bool, hidden: int = 4) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    arch = (ScorerArchitecture.for_schema(schema, hidden=hidden, residual=residual))
    rng = np.random.default_rng(5)
    params = {k: rng.normal(0, 0.5, s).astype(np.float32) for k, s in parameter_shapes(arch).items()}
    for k in ("cand_std", "ctx_std"):
        params[k] = rng.uniform(0.5, 2.0, params[k].shape).astype(np.float32)
    if residual:
        params["prior_scale"] = np.array([10.0], dtype=np.float32)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "architecture": arch.to_dict(),
            "feature_schema": schema.to_dict(), "window": 3, "n_candidates": 8}
    return meta, params


def write_raw(path: Path, meta: Any, params: dict[str, np.ndarray], dumps: Callable[[Any], str] = json.dumps) -> bytes:
    payload = safetensors_save({k: np.ascontiguousarray(v) for k, v in params.items()}, metadata={METADATA_KEY: dumps(meta)})
    path.write_bytes(payload)
    return payload


def hostile_policy(draw, path: Path) -> str:
    schema = draw(st.sampled_from([POOL_SCHEMA, PROBA_SCHEMA]), label="schema")
    meta, params = base_policy(schema, residual=draw(st.booleans(), label="residual"))
    mutation = draw(st.sampled_from(["none", "meta", "meta", "arch", "arch", "weights", "weights", "tensor", "truncate",
                                     "spoof"]), label="mutation")
    if mutation == "meta":
        for _ in range(draw(st.integers(1, 3))):
            meta[draw(st.sampled_from(META_FIELDS))] = draw(json_values)
    elif mutation == "arch":
        arch = dict(meta["architecture"])
        for _ in range(draw(st.integers(1, 2))):
            arch[draw(st.sampled_from(ARCH_FIELDS))] = draw(json_values)
        meta["architecture"] = arch
    elif mutation == "weights":
        for _ in range(draw(st.integers(1, 3))):
            key = draw(st.sampled_from(sorted(params)))
            value = draw(st.sampled_from(WEIGHT_VALUES))
            if draw(st.booleans()):
                params[key] = np.full_like(params[key], value)
            else:
                params[key] = params[key].copy()
                params[key].flat[draw(st.integers(0, params[key].size - 1))] = value
    elif mutation == "tensor":
        key = draw(st.sampled_from(sorted(params)))
        if draw(st.booleans()):
            del params[key]
        else:
            params[key] = np.zeros(params[key].size + 1, dtype=np.float32)
    elif mutation == "spoof":
        meta["note"] = draw(st.sampled_from(HOSTILE_TEXT)) + "\x1b[2J\x1b[H\rvalidation: +9.99 (fake)\x9b\u2028"
        meta["trainer"] = {"method": "\x1b]0;title\x07", "settings": {"\x1b[31m": "\u202eevil"}}
    payload = write_raw(path, meta, params)
    if mutation == "truncate":
        path.write_bytes(payload[: draw(st.integers(0, len(payload) - 1))])
    return mutation


@pytest.fixture(scope="module")
def small_pool():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(25, 3))
    y = np.full(25, np.nan)
    y[:4] = [0, 1, 0, 1]
    return X, y, GaussianNB().fit(X[:4], y[:4])


def test_hostile_policy_files(tmp_path_factory, small_pool):
    test = "hostile_policy_files"
    folder = tmp_path_factory.mktemp("hostile-policies")
    X, y, clf = small_pool

    @SETTINGS(450)
    @given(data=st.data())
    def run(data):
        EXAMPLES[test] += 1
        path = folder / "policy.safetensors"
        mutation = hostile_policy(data.draw, path)
        status, policy = outcome(test, lambda: read_policy(path))
        OUTCOMES[test][f"{mutation}->{status}"] += 1
        if mutation == "none":
            assert status == "ok", policy
        if status != "ok":
            return
        card = format_model_card(policy)
        assert not has_control_characters(card), card
        strategy = PolicyStrategy(policy, random_state=0)
        status, picks = outcome(test, lambda: strategy.query(X, y, clf, 3))
        assert status == "ok", f"a policy that loads must query: {picks}"
        assert np.unique(picks).size == 3 and np.all(picks >= 4)
        assert np.all(np.isfinite(strategy.last_scores_[1]))

    run()
    assert EXAMPLES[test] >= 450


# ============================================================================ 3. hostile CSVs for next-batch
def csv_text(frame: pd.DataFrame) -> str:
    # Text quoted: unquoted, a lone "\r" in a cell would end the line for any CSV reader.
    return frame.to_csv(index=False, quoting=csv.QUOTE_NONNUMERIC)


def test_next_batch_on_hostile_csvs(tmp_path_factory):
    test = "next_batch_on_hostile_csvs"
    folder = tmp_path_factory.mktemp("hostile-csv")
    nonblank = [t for t in HOSTILE_TEXT if t.strip()]
    id_text = st.sampled_from(nonblank) | st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=4)

    @SETTINGS(300)
    @given(data=st.data())
    def run(data):
        EXAMPLES[test] += 1
        draw = data.draw
        for p in folder.iterdir():
            p.unlink()
        defect = draw(st.sampled_from([None] * 5 + ["duplicate_id", "blank_id", "unknown_label_id", "conflict"]), label="defect")
        n = draw(st.integers(3, 14), label="n")
        ids = draw(st.lists(id_text, min_size=n, max_size=n, unique_by=str.strip), label="ids")
        if defect == "duplicate_id":
            ids[-1] = " " + ids[0]  # the same id once stripped
        elif defect == "blank_id":
            ids[draw(st.integers(0, n - 1))] = draw(st.sampled_from(["", " ", "\t"]))
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="seed"))
        features = pd.DataFrame({"id": ids, "f0": rng.normal(size=n)})
        if draw(st.booleans()):
            features["f1"] = [draw(st.sampled_from(["1.5", "NA", "", "2", "nan", "-3"])) for _ in range(n)]
        records = folder / "records.csv"
        records.write_text(csv_text(features))
        chosen = draw(st.lists(st.integers(0, n - 2), max_size=n + 2), label="labeled rows")  # the last row stays unlabeled
        label_ids = [ids[i] for i in chosen]
        label_values = [draw(st.sampled_from(HOSTILE_TEXT[:14]), label="label") for _ in chosen]
        if defect == "unknown_label_id":
            label_ids.append("not-a-record-" + ids[0])
            label_values.append("x")
        elif defect == "conflict":
            label_ids += [ids[0], ids[0]]
            label_values += ["one", "two"]
        labels = folder / "labels.csv"
        labels.write_text(csv_text(pd.DataFrame({"id": label_ids, "label": label_values}, columns=["id", "label"])))
        before = {p: p.read_bytes() for p in (records, labels)}
        policy = draw(st.sampled_from(["random", "margin", "default"]), label="policy")
        batch = draw(st.integers(1, 3), label="batch")

        status, result = outcome(test, lambda: next_batch(records, labels, policy=policy, model="nb", batch_size=batch,
                                                          out=folder / "to_label.csv"))
        OUTCOMES[test][f"{defect}->{status}"] += 1
        assert {p: p.read_bytes() for p in (records, labels)} == before, "an input file changed"

        # What the tables mean: ids and labels are stripped text; only a blank label is "no label".
        given = {}
        conflict = False
        for i, v in zip(label_ids, label_values):
            if v.strip():
                conflict |= given.get(i.strip(), v.strip()) != v.strip()
                given[i.strip()] = v.strip()
        n_unlabeled = n - len(given)
        if defect is not None:
            assert status == "error", f"{defect} accepted: {ids!r}"
        elif not conflict and batch <= n_unlabeled and (policy == "random" or len(set(given.values())) >= 2):
            assert status == "ok", f"well-formed tables refused: {result}"
        if status == "ok":
            table = pd.read_csv(folder / "to_label.csv", dtype=str, keep_default_na=False)
            assert len(table) == batch and table["rank"].tolist() == [str(i) for i in range(1, batch + 1)]
            assert set(result.table["id"]) <= {i.strip() for i in ids} - set(given)
            assert result.n_labeled == len(given) and result.classes == sorted(set(given.values()))

    run()
    assert EXAMPLES[test] >= 300


# ============================================================================ 4. hand-edited state files
STATE_META_KEYS = ("version", "loops", "seed", "label_budget", "n_records", "columns", "log", "history", "id_column",
                   "label_column", "format", "pending", "stopping")
HISTORY_KEYS = ("classes", "window", "n_loops", "n_records", "n_queries", "label_budget", "n_initial_labeled")
STOPPING_KEYS = ("rule", "spec", "n_features", "n_pool", "n_calls", "log", "below", "kappas", "last_predictions",
                 "features")
LOG_KEYS = ("loop", "picked", "n_labeled", "stop", "call", "strategy")
#: The states edited: (policy, stopping rule) of the runs that wrote them.
STATE_RUNS = {"margin": ("margin", "default"), "default": ("default", "default"),
              "stabilizing": ("margin", "stabilizing_predictions"), "change": ("margin", "classification_change")}


@pytest.fixture(scope="module")
def workflow_tables(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile-state-base")
    rng = np.random.default_rng(0)
    records = folder / "records.csv"
    pd.DataFrame({"id": [f"r{i}" for i in range(30)], "f0": rng.normal(size=30), "f1": rng.normal(size=30)}).to_csv(records, index=False)
    labels = folder / "labels.csv"
    labels.write_text("id,label\nr0,NA\nr1,b\nr2,NA\nr3,b\nr4,None\n")
    states = {}
    for name, (policy, rule) in STATE_RUNS.items():
        state = folder / f"{name}.state"
        for _ in range(2):  # two runs: a history, a log, pending records and a stopping section to edit
            next_batch(records, labels, policy=policy, model="nb", batch_size=2, state=state, stop_rule=rule)
        states[name] = state.read_bytes()
    return records, labels, states


def split_state(payload: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    arrays = safetensors_load(payload)
    n = int.from_bytes(payload[:8], "little")
    return json.loads(json.loads(payload[8 : 8 + n])["__metadata__"]["metalearn"]), arrays


def test_next_batch_on_hand_edited_state_files(tmp_path_factory, workflow_tables):
    test = "next_batch_on_edited_state_files"
    records, labels, states = workflow_tables
    folder = tmp_path_factory.mktemp("hostile-state")

    @SETTINGS(500)
    @given(data=st.data())
    def run(data):
        EXAMPLES[test] += 1
        draw = data.draw
        name = draw(st.sampled_from(sorted(STATE_RUNS)), label="state")
        policy, rule = STATE_RUNS[name]
        meta, arrays = split_state(states[name])
        n_edits = draw(st.sampled_from([0, 1, 1, 2, 3]), label="edits")
        for _ in range(n_edits):
            what = draw(st.sampled_from(["meta", "meta", "history", "stopping", "stopping", "log", "pending", "drop",
                                         "array"]), label="what")
            if what == "meta":
                meta[draw(st.sampled_from(STATE_META_KEYS))] = draw(json_values)
            elif what == "history" and isinstance(meta.get("history"), dict):
                meta["history"][draw(st.sampled_from(HISTORY_KEYS))] = draw(json_values)
            elif what == "stopping" and isinstance(meta.get("stopping"), dict):
                key = draw(st.sampled_from(STOPPING_KEYS))
                if draw(st.booleans()):
                    meta["stopping"][key] = draw(json_values | st.sampled_from([0, 1, 2, 3, 30, 31, -1, 10**9]))
                else:
                    meta["stopping"].pop(key, None)
            elif what == "log":
                section = meta.get("stopping") if draw(st.booleans()) else meta
                log = section.get("log") if isinstance(section, dict) else None
                if isinstance(log, list) and log and isinstance(log[-1], dict):
                    log[draw(st.integers(0, len(log) - 1))] = (
                        {**log[-1], draw(st.sampled_from(LOG_KEYS)): draw(json_values)} if draw(st.booleans())
                        else draw(json_values))
            elif what == "pending":
                meta["pending"] = draw(st.sampled_from([
                    [{"loop": 1, "ids": ["r9"]}, {"loop": 2, "ids": ["r9"]}], [{"loop": 9, "ids": ["r9"]}],
                    [{"loop": 1, "ids": ["no-such-id", "r10"]}], [{"loop": 1, "ids": ["r0"]}], [],
                    [{"loop": 1}], [{"loop": True, "ids": []}]]) | json_values)
            elif what == "drop":
                meta.pop(draw(st.sampled_from(STATE_META_KEYS)), None)
            elif arrays:
                key = draw(st.sampled_from(sorted(arrays)))
                change = draw(st.sampled_from(["cut", "reshape", "retype", "drop", "empty"]))
                value = arrays[key]
                if change == "cut":
                    arrays[key] = value[: max(0, value.shape[0] - draw(st.integers(1, 3)))] if value.ndim else value
                elif change == "reshape":
                    arrays[key] = value.reshape(1, -1)
                elif change == "retype":
                    arrays[key] = value.astype(draw(st.sampled_from([np.float32, np.int8, np.float64])))
                elif change == "drop":
                    del arrays[key]
                else:
                    arrays[key] = np.zeros((0,), dtype=value.dtype)
        state = folder / "edited.state"
        state.write_bytes(safetensors_save({k: np.ascontiguousarray(v) for k, v in arrays.items()},
                                           metadata={"metalearn": json.dumps(meta)}))
        status, result = outcome(test, lambda: next_batch(records, labels, policy=policy, model="nb", batch_size=2,
                                                          state=state, stop_rule=rule))
        OUTCOMES[test][f"{n_edits} edit(s)->{status}"] += 1
        if n_edits == 0:
            assert status == "ok", result
        if status == "ok":
            assert len(result.table) == 2 and not set(result.table["id"]) & {"r0", "r1", "r2", "r3", "r4"}
            written, _ = read_state(state)  # the state it wrote is readable, and consistent
            assert written["loops"] == len(written["log"]) and written["pending"][-1]["ids"] == list(result.table["id"])
            reserved = [i for group in written["pending"][:-1] for i in group["ids"]]
            assert not set(reserved) & set(result.table["id"])  # a record still pending is not handed out again

    run()
    assert EXAMPLES[test] >= 500


# ============================================================================ 5. every CLI command
# Values each expensive command must refuse before any work (checked one by one in
# tests/test_hostile_input.py and here by the absence of any output folder).
REFUSED = {
    "train": [["--jobs", "0"], ["--jobs", "-3"], ["--iterations", "0"], ["--iterations", "-1"], ["--time-budget", "-1"],
              ["--time-budget", "nan"], ["--time-budget", "inf"], ["--candidates", "0"], ["--candidates", "10000000"],
              ["--episodes", "0"], ["--episodes", "1000000000000"], ["--validation-tasks", "-1"],
              ["--oracle-horizon", "0"], ["--oracle-horizon", "1000000000"], ["--suite", "bogus"], ["--seed", "-1"],
              ["--iterations", "100000000"]],
    "demo": [["--jobs", "0"], ["--seed", "-1"], ["--train-minutes", "-1"], ["--train-minutes", "nan"],
             ["--train-minutes", "inf"]],
    "benchmark": [["--jobs", "0"], ["--seeds", "0"], ["--seeds", "1000000000000"], ["--budget", "0"], ["--seed", "-1"],
                  ["--test-size", "2"], ["--n-warm", "0"], ["--max-pool", "1"], ["--oracle-candidates", "0"],
                  ["--batch-sizes", "0"], ["--models", "bogus"], ["--regimes", "bogus"], ["--strategies", "bogus"],
                  ["--reference", "bogus"], ["--strategies", "random,random"], ["--budget", "100000000000"]],
}
OTHER = {
    "train": [["--method", "imitation"], ["--method", "lal"], ["--method", "ppo"], ["--schema", "proba"], ["--residual"],
              ["--seed", "3"], ["--jobs", "1"]],
    "demo": [["--quick"], ["--seed", "2"], ["--jobs", "1"]],
    "benchmark": [["--models", "nb"], ["--regimes", "cold"], ["--format", "parquet"], ["--no-report"], ["--seed", "4"],
                  ["--strategies", "random,margin"]],
}
ARG_TEXT = st.sampled_from(HOSTILE_TEXT + ["-1", "0", "1.5", "1e309", "nan", "999999999999999999999", "a" * 300,
                                         "x" * 5000, "default", "margin", "random", "policy", "..", "/", "\x00"])


def run_cli(test: str, argv: list[str], capsys) -> tuple[int, str]:
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            code = main(argv)
    except SystemExit as exc:  # argparse: a usage error
        code = exc.code if isinstance(exc.code, int) else 2
        assert code in (0, 2), f"argparse exit {exc.code}"
        OUTCOMES.setdefault(test, Counter())[f"usage:{code}"] += 1
        return int(code), capsys.readouterr().err
    err = capsys.readouterr().err
    assert code in (0, 2), f"exit {code} for {argv}: {err}"
    if code == 2:
        lines = err.strip("\n").splitlines()
        assert len(lines) == 1 and lines[0].startswith("metalearn: error:"), f"{argv}: {err!r}"
        assert not has_control_characters(lines[0]), lines[0]
    OUTCOMES.setdefault(test, Counter())[f"exit:{code}"] += 1
    return int(code), err


def test_every_cli_command_with_hostile_arguments(tmp_path_factory, workflow_tables, capsys):
    test = "cli_with_hostile_arguments"
    folder = tmp_path_factory.mktemp("hostile-cli")
    records, labels, _ = workflow_tables
    before = {p: p.read_bytes() for p in (records, labels)}
    spoof = folder / "spoof.safetensors"
    meta, params = base_policy(POOL_SCHEMA, residual=False)
    meta["note"] = "\x1b[2J\rvalidation: +9.99\x9b"
    write_raw(spoof, meta, params)
    garbage = folder / "garbage.safetensors"
    garbage.write_bytes(b"\x80\x04K\x01." * 10)
    commands = ("strategies", "features", "inspect", "inspect", "next-batch", "next-batch", "next-batch", "train",
                "demo", "benchmark")

    @SETTINGS(450)
    @given(data=st.data())
    def run(data):
        EXAMPLES[test] += 1
        draw = data.draw
        command = draw(st.sampled_from(commands), label="command")
        work = folder / "work"
        shutil.rmtree(work, ignore_errors=True)
        argv = [command]
        if command in ("strategies", "features"):
            if draw(st.booleans()):
                argv.append(draw(ARG_TEXT))
        elif command == "inspect":
            target = draw(st.sampled_from([str(spoof), str(garbage), str(folder), "default", "default-proba", "nope",
                                           str(folder / "missing.safetensors")]) | ARG_TEXT, label="target")
            argv += ([target, "--json"] if draw(st.booleans()) else [target])
        elif command == "next-batch":
            work.mkdir()
            argv += ["--data", str(records), "--labels", str(labels), "--state", str(work / "s.state"), "--model", "nb"]
            out = draw(st.sampled_from(["ok", "ok", "labels", "data", "folder", "hostile"]), label="out")
            argv += ["--out", {"ok": str(work / "o.csv"), "labels": str(labels), "data": str(records), "folder": str(work),
                               "hostile": str(work / "x") + draw(ARG_TEXT)}[out]]
            for _ in range(draw(st.integers(0, 3))):
                option = draw(st.sampled_from(["--seed", "--budget", "--batch-size", "--policy", "--label-column",
                                               "--id-column", "--classes"]))
                argv += [option, draw(ARG_TEXT | st.sampled_from(["1", "2", "margin", "random", "default", "id", "label",
                                                                   "NA,b", "b"]))]
        else:
            refused = draw(st.sampled_from(REFUSED[command]), label="refused")
            for _ in range(draw(st.integers(0, 2))):
                argv += draw(st.sampled_from(OTHER[command] + REFUSED[command]))
            argv += refused  # last: a later repeat of an option would override it
            if command == "benchmark":
                argv += ["--datasets", "sklearn:iris"]
            argv += ["--out", str(work / "out")]
        code, err = run_cli(test, argv, capsys)
        assert {p: p.read_bytes() for p in (records, labels)} == before, "an input file changed"
        if command in REFUSED:
            # refused before any work: no file written (a trainer may create the empty folder first)
            assert code == 2 and not [p for p in (work / "out").rglob("*") if p.is_file()], f"{argv} was not refused up front"

    run()
    assert EXAMPLES[test] >= 450


# ============================================================================ 7. issue 22: files that lie
HOSTILE_NUMBERS = st.sampled_from([0, 1, 2, 5, -1, 10**9, 2**63, 10**400, 1e300, -1e300, 1.5, float("nan"), True, None,
                                   "5", "x", [5], {"a": 1}, 0.912345678, 1e-320])


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def test_hostile_stopping_rule_files(tmp_path_factory):
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    from metalearn.stopping import load_stopping_rule
    from metalearn.stopping.file import read_stopping_rule
    from metalearn.stopping.limits import MAX_HORIZON, MAX_WINDOW

    test = "hostile_stopping_rule_files"
    folder = tmp_path_factory.mktemp("hostile-stopping")
    released = Path(__file__).resolve().parents[1] / "policies" / "stopping" / "default.safetensors"
    with safe_open(str(released), "np") as handle:
        base = json.loads(handle.metadata()["metalearn"])
    tensors = load_file(str(released))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = np.full(40, np.nan)
    y[:6] = [0, 1, 0, 1, 0, 1]
    clf = GaussianNB().fit(X[:6], y[:6])

    @SETTINGS(120)
    @given(data=st.data())
    def run(data):
        EXAMPLES[test] += 1
        meta = json.loads(json.dumps(base))
        key = data.draw(st.sampled_from(["window", "horizon", "patience", "threshold", "decision", "quantiles", "none"]),
                        label="key")
        if key == "quantiles":
            meta["architecture"]["quantiles"] = data.draw(st.sampled_from([
                [0.1, 0.25, 0.5, 0.75, 0.912345678], [0.1, 0.25, 0.5, 0.75, 1e-320], [0.1, 0.25, 0.5, 0.75, 0.95],
                [0.1, 0.25, 0.5, 0.75, 2.0]]))
            meta["decision"] = data.draw(st.sampled_from(["q0.9", "q0.912346", "q0.95", "mean"]))
        elif key == "decision":
            meta["decision"] = data.draw(st.sampled_from(["q0.9", "q0.90000000001", "q1e-320", "mean", "", 5, None]))
        elif key != "none":
            meta[key] = data.draw(HOSTILE_NUMBERS | st.builds(_nested, st.integers(1, 3000)), label="value")
        path = folder / "rule.safetensors"
        try:
            text = json.dumps(meta)
        except (ValueError, RecursionError):
            return  # not JSON: cannot be written as a rule file at all
        save_file(tensors, str(path), metadata={"metalearn": text})
        status, rule_file = outcome(test, lambda: read_stopping_rule(path))
        OUTCOMES[test][f"{key}->{status}"] += 1
        if key == "none":
            assert status == "ok", rule_file
        if status != "ok":
            return
        assert 2 <= rule_file.window <= MAX_WINDOW and 1 <= rule_file.horizon <= MAX_HORIZON
        rule = load_stopping_rule(rule_file)
        for _ in range(2):  # a rule that loads must answer
            status, answer = outcome(test, lambda: rule.should_stop(X, y, clf))
            assert status == "ok" and isinstance(answer, bool), answer

    run()
    assert EXAMPLES[test] >= 120


def test_hostile_streaming_parameters(small_pool):
    from metalearn.streaming import StreamingPolicy

    test = "hostile_streaming_parameters"
    X, _, clf = small_pool
    values = st.sampled_from([1, 2, 3, 10, 0, -1, 2**63, 10**9, 10**400, 1.5, float("nan"), True, None, "5"])

    @SETTINGS(150)
    @given(data=st.data())
    def run(data):
        EXAMPLES[test] += 1
        params = {name: data.draw(values, label=name) for name in data.draw(
            st.sets(st.sampled_from(["window", "memory", "min_reference", "label_budget", "expected_length"]), max_size=3),
            label="params")}
        if data.draw(st.booleans(), label="adaptation"):
            params["adaptation"] = data.draw(st.sampled_from([0.0, 0.5, 2.0, -1.0, float("inf"), "x"]))
        if data.draw(st.booleans(), label="random_state"):
            params["random_state"] = data.draw(st.sampled_from([0, -1, 2**64, "x", 1.5]))
        policy = data.draw(st.sampled_from(["margin", "qbc", "random"]), label="policy")
        stream = StreamingPolicy(policy, **params)

        def decide_all() -> int:
            for record in X[:15]:
                stream.decide(record, clf)
            return stream.n_spent_

        status, spent = outcome(test, decide_all)
        if status == "ok":
            assert 0 <= spent <= stream.label_budget

    run()
    assert EXAMPLES[test] >= 150


def test_hostile_task_suite_files():
    from metalearn.tasks.suite import MAX_SAMPLES, MAX_WEIGHT, TaskSuite

    test = "hostile_task_suite_files"
    sizes = st.sampled_from([10, 200, 2000, 10**6, 10**6 + 1, 10**8, 10**23, 9, -5, [100, 10**8], [300, 200], "x", 1.5])
    weights = st.sampled_from([1.0, 3, 1e6, 1e6 + 1, 1.7e308, 10**400, 0, -1, float("nan"), "x", True])
    counts = st.sampled_from([1, 10, 100, 2**31, 10**23, 0, -1, "x", [1, 2**40]])

    @SETTINGS(200)
    @given(data=st.data())
    def run(data):
        EXAMPLES[test] += 1
        sources = []
        for _ in range(data.draw(st.integers(1, 3), label="n_sources")):
            source: dict[str, Any] = {"kind": data.draw(st.sampled_from(["generator", "sklearn"]), label="kind")}
            if data.draw(st.booleans(), label="has weight"):
                source["weight"] = data.draw(weights, label="weight")
            if source["kind"] == "generator" and data.draw(st.booleans(), label="has n_samples"):
                source["n_samples"] = data.draw(sizes, label="n_samples")
            if data.draw(st.integers(0, 9), label="nest") == 0:
                source["generator"], source["params"] = "moons", {"noise": _nested(data.draw(st.integers(1, 5000)))}
            sources.append(source)
        settings_table = {k: data.draw(counts, label=k) for k in data.draw(
            st.sets(st.sampled_from(["n_warm", "label_budgets", "batch_sizes", "max_pool", "test_size"]), max_size=2))}
        status, suite = outcome(test, lambda: TaskSuite.from_dict({"settings": settings_table, "sources": sources}))
        if status != "ok":
            return
        assert all(s.n_samples[1] <= MAX_SAMPLES for s in suite.sources if s.kind == "generator")
        assert all(0 < s.weight <= MAX_WEIGHT for s in suite.sources)
        assert np.isclose(suite._probabilities.sum(), 1.0)

    run()
    assert EXAMPLES[test] >= 200


def test_hostile_result_folders(tmp_path_factory):
    from metalearn.benchmark.storage import ResultStore

    test = "hostile_result_folders"
    root = tmp_path_factory.mktemp("hostile-results")
    run_ids = st.sampled_from(["ok__00000000", "/tmp/x", "../../x", "../escape", "a/b", ".x", "a\x1b[2Jb", "a\x00b", "",
                               "x" * 300, "é__1", 5, None]) | st.text(max_size=20)

    @SETTINGS(200)
    @given(data=st.data())
    def run(data):
        EXAMPLES[test] += 1
        folder = root / "case"
        shutil.rmtree(folder, ignore_errors=True)
        (folder / "out").mkdir(parents=True)
        store = ResultStore(folder / "out")
        rows = []
        for i in range(data.draw(st.integers(0, 3), label="n_rows")):
            loops = data.draw(st.integers(0, 3), label="loops")
            curve = {"loop": list(range(loops)), "accuracy": [0.5] * data.draw(st.sampled_from([loops, loops, loops + 1]))}
            row = {"dataset": data.draw(st.sampled_from(["d", "=cmd|' /C calc'!A0", "-x"])), "status": "ok",
                   "fingerprint": "f", **{f"curve_{k}": json.dumps(v) for k, v in curve.items()}}
            if data.draw(st.integers(0, 5), label="without the run's key") != 0:
                row.update(model="logreg", regime="cold", batch_size=1, seed=i, strategy="margin")
            if data.draw(st.integers(0, 5), label="without run_id") != 0:
                row["run_id"] = data.draw(run_ids, label="run_id")
            rows.append(row)
        pd.DataFrame(rows).to_csv(folder / "out" / "results.csv", index=False)
        if data.draw(st.booleans(), label="cache file"):
            store.runs_dir.mkdir(exist_ok=True)
            cached = data.draw(st.sampled_from([{"summary": {"run_id": "../../x"}, "curve": {}}, [1], "x",
                                                {"summary": {}, "curve": {"a": [1], "b": []}}]))
            (store.runs_dir / "c__00000000.json").write_text(json.dumps(cached))

        def use() -> Any:
            store._unpack_table_into_cache()
            return store.finished("f"), store.table_is_current(), store.load()

        outcome(test, use)
        outside = {p.relative_to(folder) for p in folder.rglob("*")}
        assert all(str(p).startswith("out") for p in outside), outside
        if store.runs_dir.exists():
            for path in store.runs_dir.iterdir():
                assert path.name.isprintable() and path.parent == store.runs_dir

    run()
    assert EXAMPLES[test] >= 200
