"""Bad input, tried systematically: property-based tests of the strategy API and the environments.

Every registered strategy, plus a :class:`~metalearn.policies.strategy.PolicyStrategy` built
from a random-weight policy file, is called on generated pools: 1 to 60 rows, 1 to 6 features,
float32 / float64 / int dtypes, ndarray / list / pandas / scipy sparse containers, NaN and
infinite entries, huge finite values, duplicate rows and constant columns; labels as floats with
NaN, ints with a -1 marker, objects with None and strings with ""; one class, nothing labeled,
everything labeled; classifiers fitted (logistic regression, naive Bayes, decision tree), not
fitted, fitted on other features or other labels, with ``decision_function`` only, or None;
batch sizes 0, 1, 2, all unlabeled records, one more, negative, float, bool and str.

The property: ``query`` either returns valid picks (int indices, distinct, unlabeled, the right
count) or raises one of the project's errors (a :class:`~metalearn.exceptions.MetalearnError`
that is a ``ValueError`` or ``TypeError``) with a message. Never a raw numpy/sklearn exception,
never a strategy's internal ``RuntimeError``. Inputs that are certainly invalid must raise, and
well-formed inputs must give picks. The same holds for strategies called on pools that shrink
or grow between calls, and for the environments stepped with random actions (out of range,
float, NaN, inf, str, None, arrays).

Hypothesis runs derandomized, without an example database (the ``metalearn-properties``
profile), so every run of the same command tries the same cases. (Hypothesis also draws
literals found in the local modules that are imported, so running this file alone and within
the whole suite tries slightly different cases, each reproducibly.) The number of cases each
test tried is counted and printed at the end of the module (``pytest -s`` not needed).
"""

from __future__ import annotations

import math
import warnings
from collections import Counter, defaultdict
from typing import Any, Callable

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeClassifier

import metalearn  # noqa: F401  (registers the environments)
from metalearn.envs import PoolALEnv, StreamALEnv
from metalearn.exceptions import MetalearnError
from metalearn.features.schema import POOL_SCHEMA
from metalearn.policies.architecture import ScorerArchitecture, parameter_shapes
from metalearn.policies.file import read_policy, save_policy
from metalearn.policies.strategy import PolicyStrategy
from metalearn.strategies import get_strategy_class, make_strategy, resolve_strategy, strategy_names
from metalearn.tasks.task import make_task

# ---------------------------------------------------------------------------------- profile
PROFILE = "metalearn-properties"
settings.register_profile(
    PROFILE,
    database=None,  # nothing read or written between runs: CI tries exactly these cases
    derandomize=True,  # the examples derive from the test's name, not from a random seed
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


def BASE_SETTINGS(**overrides: Any) -> settings:
    """The module's profile with per-test overrides (max_examples)."""
    return settings(settings.get_profile(PROFILE), **overrides)


#: Hypothesis examples run per test; calls checked per test (a query, an env step); their outcomes.
EXAMPLES: Counter[str] = Counter()
CASES: Counter[str] = Counter()
OUTCOMES: dict[str, Counter[str]] = defaultdict(Counter)


@pytest.fixture(scope="module", autouse=True)
def report_case_counts(request):
    yield
    if not CASES:
        return
    lines = [
        f"hypothesis cases tried in {__name__}: {sum(EXAMPLES.values())} examples, "
        f"{sum(CASES.values())} checked calls (queries, env steps)"
    ]
    for name, count in CASES.items():
        outcomes = ", ".join(f"{k}={v}" for k, v in sorted(OUTCOMES[name].items()) if "->" not in k)
        lines.append(f"  {name}: {EXAMPLES[name]} examples, {count} calls ({outcomes})")
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        with capture.global_and_fixture_disabled():  # shown without -s
            print("\n" + "\n".join(lines))
    else:  # pragma: no cover
        print("\n".join(lines))


def expect_outcome(test: str, call: Callable[[], Any]) -> tuple[str, Any]:
    """Run ``call``; return ("picks", result) or ("error", exc) for a project error, else fail."""
    CASES[test] += 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning, PoolChangedWarning, overflow...
            with np.errstate(all="ignore"):
                result = call()
    except MetalearnError as exc:
        assert isinstance(exc, (ValueError, TypeError)), f"{type(exc).__name__} is neither ValueError nor TypeError"
        assert str(exc).strip(), f"{type(exc).__name__} has an empty message"
        OUTCOMES[test][f"error:{type(exc).__name__}"] += 1
        return "error", exc
    OUTCOMES[test]["ok"] += 1
    return "ok", result


# ---------------------------------------------------------------------------------- a random policy
F, G = POOL_SCHEMA.n_candidate_features, POOL_SCHEMA.n_context_features
ARCH = ScorerArchitecture(F, G, hidden=8)


@pytest.fixture(scope="module")
def random_policy(tmp_path_factory):
    """A policy file with random weights and random input normalisation (numpy only)."""
    rng = np.random.default_rng(11)
    params = {}
    for name, shape in parameter_shapes(ARCH).items():
        if name.endswith("_std"):
            params[name] = rng.uniform(0.3, 2.0, shape)
        elif name.endswith("_mean"):
            params[name] = rng.normal(0.0, 0.2, shape)
        else:
            params[name] = rng.normal(0.0, 0.5, shape)
    path = save_policy(
        tmp_path_factory.mktemp("policy") / "random.safetensors", ARCH, params,
        {"feature_schema": POOL_SCHEMA.to_dict(), "window": 3, "n_candidates": 8},
    )
    return read_policy(path)


# ---------------------------------------------------------------------------------- generators
# Each case has at most one defect, drawn first; ``None`` (a well-formed case) is listed first and
# repeated, because hypothesis favours the first entries, so the valid path is tried about as
# often as all the defects together. Defects that are errors for every strategy are marked "!".
DEFECTS = (None,) * 6 + (
    "nonfinite!", "huge", "overflow32", "wrong_length!", "all_labeled!", "int_labels_nan_marker!",
    "none_labeled", "one_labeled", "single_class", "bad_batch!", "bad_classifier", "other_labels",
)
CONTAINERS = ("ndarray", "dataframe", "csr", "list", "coo")
LABEL_KINDS = ("float_nan", "object_none", "int_marker", "str_empty")
GOOD_CLASSIFIERS = ("logreg", "nb", "tree")
BAD_CLASSIFIERS = ("unfitted", "linearsvc", "none", "other_features", "predict_only", "broken_proba")
GOOD_BATCHES = ("one", "two", "all", "np_int")
BAD_BATCHES = ("zero", "all+1", "negative", "float", "integral_float", "bool", "str")
# The library's strategies only: other test modules register test strategies (a worker killer),
# and the examples must not depend on which modules pytest collected.
STRATEGIES = tuple(n for n in strategy_names() if get_strategy_class(n).__module__.startswith("metalearn.")) + ("policy",)


@st.composite
def pools(draw, defect: str | None = None) -> dict[str, Any]:
    """A pool X in some container and dtype, with its float view and whether it is finite."""
    n = draw(st.integers(1, 60))
    d = draw(st.integers(1, 6))
    dtype = "float32" if defect == "overflow32" else draw(st.sampled_from(["float64", "float32", "int64"]))
    if defect == "nonfinite!":
        dtype = draw(st.sampled_from(["float64", "float32"]))
    elif defect == "huge":
        dtype = "float64"
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if dtype == "int64":
        X = rng.integers(-3, 4, size=(n, d))
    else:
        scale = draw(st.sampled_from([1.0, 1e-9, 1e6]))
        if defect == "huge":  # finite, but squares overflow: distances become inf or NaN
            scale = draw(st.sampled_from([1e300, 1e160, 1e200])) if dtype == "float64" else 1e30
        elif defect == "overflow32":  # float64 values that become inf in float32
            scale = 1e300
        with np.errstate(over="ignore"):  # float32 overflow to inf is intended ("overflow32")
            X = (rng.normal(size=(n, d)) * scale).astype(dtype)
    if n > 1 and draw(st.booleans()):  # duplicate rows
        src = rng.integers(0, n, size=max(1, n // 2))
        X[rng.integers(0, n, size=src.size)] = X[src]
    if d > 1 and draw(st.integers(0, 3)) == 3:  # a constant column
        X[:, rng.integers(d)] = X[0, 0]
    if defect == "nonfinite!":
        special = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        rows = rng.choice(n, size=draw(st.integers(1, n)), replace=False)
        X[rows, rng.integers(d)] = special
    as_float = X.astype(np.float64)
    container = draw(st.sampled_from(CONTAINERS))
    if container == "list":
        given_X: Any = X.tolist()
    elif container == "dataframe":
        given_X = pd.DataFrame(X, columns=[f"f{j}" for j in range(d)])
    elif container == "csr":
        given_X = sp.csr_matrix(X)
    elif container == "coo":
        given_X = sp.coo_matrix(X)
    else:
        given_X = X
    return {"X": given_X, "Xf": as_float, "finite": bool(np.isfinite(as_float).all()), "n": n, "d": d, "seed": seed}


@st.composite
def labels(draw, n: int, seed: int, defect: str | None = None) -> dict[str, Any]:
    """Labels with an unlabeled marker, the strategy's missing_label, and the truth for the check.

    Takes a seed, not a Generator: hypothesis caches strategies by their arguments, and a
    stateful argument would make the examples depend on that cache.
    """
    rng = np.random.default_rng([seed, 1])
    kind = "int_marker" if defect == "int_labels_nan_marker!" else draw(st.sampled_from(LABEL_KINDS))
    n_classes = 1 if defect == "single_class" else draw(st.integers(2, 4))
    true = rng.integers(0, n_classes, size=n)
    if defect == "none_labeled":
        labeled = np.zeros(n, dtype=bool)
    elif defect == "all_labeled!":
        labeled = np.ones(n, dtype=bool)
    elif defect == "one_labeled":
        labeled = np.zeros(n, dtype=bool)
        labeled[rng.integers(n)] = True
    else:  # some labeled, at least one unlabeled and, where possible, two classes labeled
        labeled = rng.random(n) < draw(st.sampled_from([0.3, 0.1, 0.6, 0.9]))
        if n >= 3 and n_classes >= 2:
            true[:2] = [0, 1]
            labeled[:2] = True
        labeled[-1] = False
    if kind == "float_nan":
        y: Any = np.where(labeled, true.astype(float), np.nan)
        missing: Any = np.nan
        values: Any = true.astype(float)
    elif kind == "int_marker":
        y = np.where(labeled, true, -1)
        values = true
        missing = -1
        if defect == "int_labels_nan_marker!":
            # int labels with the default NaN marker: no entry is missing, everything counts as labeled
            missing, labeled = np.nan, np.ones(n, dtype=bool)
    elif kind == "object_none":
        values = np.array([f"c{v}" for v in true], dtype=object)
        y = np.array([v if lab else None for v, lab in zip(values, labeled)], dtype=object)
        missing = draw(st.sampled_from([None, np.nan]))  # both mean None/NaN in object labels
    else:  # str_empty
        values = np.array([f"c{v}" for v in true])
        y = np.where(labeled, values, "")
        missing = ""
    wrong_length = defect == "wrong_length!"
    if wrong_length:
        y = np.concatenate([y, y[:1]])
    container = draw(st.sampled_from(["ndarray", "list", "series", "column"]))
    if container == "list":
        y = list(y)
    elif container == "series":
        y = pd.Series(y)
    elif container == "column":
        y = np.asarray(y).reshape(-1, 1)
    return {
        "y": y, "missing": missing, "labeled": labeled, "values": values, "true": true,
        "wrong_length": wrong_length, "n_labeled_classes": np.unique(true[labeled]).size,
    }


class PredictOnly:
    """A classifier with predict but neither predict_proba nor decision_function."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        return np.full(np.asarray(X).shape[0], self.classes_[0])


class BrokenProba(PredictOnly):
    """A duck-typed classifier whose predict_proba returns garbage: a 1-D array, or NaN."""

    def __init__(self, nan: bool) -> None:
        self.nan = nan

    def predict_proba(self, X):
        n = np.asarray(X).shape[0]
        return np.full((n, 2), np.nan) if self.nan else np.full(n, 0.5)


def make_classifier(kind: str, pool: dict[str, Any], lab: dict[str, Any]) -> tuple[Any, bool]:
    """A classifier of the given kind, and whether it is a proper fitted predict_proba model for this pool."""
    rng = np.random.default_rng([pool["seed"], 2])
    if kind == "none":
        return None, False
    if kind == "unfitted":
        return LogisticRegression(), False
    # Fitted on tame data where the pool is not usable: liblinear/lbfgs crawl on huge values.
    if kind == "linearsvc":  # fitted, decision_function only
        return LinearSVC().fit(rng.normal(size=(6, pool["d"])), [0, 1] * 3), False
    if kind == "other_features":
        return LogisticRegression().fit(rng.normal(size=(6, pool["d"] + 1)), [0, 1] * 3), False
    if kind == "predict_only":
        return PredictOnly().fit(None, lab["values"]), False
    if kind == "broken_proba":
        return BrokenProba(nan=bool(pool["seed"] % 2)).fit(None, lab["values"]), False
    if kind == "other_labels":  # fitted on the pool's features, with labels the pool does not use
        return GaussianNB().fit(rng.normal(size=(6, pool["d"])), ["x", "y", "z"] * 2), False
    Xc = np.nan_to_num(pool["Xf"], nan=0.0, posinf=1.0, neginf=-1.0)
    if np.abs(Xc).max() > 1e100:
        Xc = np.sign(Xc)
    rows = np.flatnonzero(lab["labeled"]) if lab["labeled"].any() else np.arange(pool["n"])
    Xfit, yfit = Xc[rows], lab["values"][rows]
    model = {"logreg": LogisticRegression(), "nb": GaussianNB(), "tree": DecisionTreeClassifier(random_state=0)}[kind]
    if kind == "logreg" and np.unique(yfit).size < 2:
        model = GaussianNB()  # logistic regression cannot fit one class; naive Bayes can
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        model.fit(Xfit, yfit)
    return model, True


def batch_value(kind: str, n_unlabeled: int) -> tuple[Any, int | None]:
    """The batch size to pass, and the valid integer it stands for (None: must be refused)."""
    table: dict[str, tuple[Any, int | None]] = {
        "zero": (0, None),
        "one": (1, 1),
        "two": (2, 2),
        "all": (n_unlabeled, n_unlabeled),
        "all+1": (n_unlabeled + 1, None),
        "negative": (-1, None),
        "float": (1.5, None),
        "integral_float": (1.0, None),  # documented: batch_size must be an integer
        "np_int": (np.int64(1), 1),
        "bool": (True, None),
        "str": ("1", None),
    }
    value, valid = table[kind]
    if valid is not None and not 1 <= valid <= n_unlabeled:
        valid = None
    return value, valid


def build_strategy(name: str, missing: Any, seed: int, policy: Any, draw) -> Any:
    # label_budget=100: the defaults of ALBL's horizon and of a policy's budget, as before the resolver
    if name == "policy":
        return resolve_strategy(
            policy,
            label_budget=100,
            n_candidates=draw(st.sampled_from([None, 1, 3, 16])),
            candidate_selection=draw(st.sampled_from(["mixed", "random", "all"])),
            missing_label=missing,
            random_state=seed,
        )
    return resolve_strategy(name, label_budget=100, missing_label=missing, random_state=seed)


def requires_classifier(name: str) -> bool:
    return True if name == "policy" else get_strategy_class(name).requires_classifier


def finite_proba(clf: Any, X: np.ndarray) -> bool:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return bool(np.isfinite(clf.predict_proba(X)).all())


def check_picks(picks: Any, batch: int, unlabeled: np.ndarray) -> None:
    assert isinstance(picks, np.ndarray), type(picks)
    assert picks.dtype.kind == "i", picks.dtype
    assert picks.shape == (batch,), (picks.shape, batch)
    assert np.unique(picks).size == batch, f"duplicate picks {picks}"
    assert np.all((picks >= 0) & (picks < unlabeled.size)), picks
    assert unlabeled[picks].all(), f"labeled rows picked: {picks[~unlabeled[picks]]}"


# ---------------------------------------------------------------------------------- one query
def one_query_case(data, policy, test: str, name: str | None = None) -> None:
    name = name or data.draw(st.sampled_from(STRATEGIES), label="strategy")
    defect = data.draw(st.sampled_from(DEFECTS), label="defect")
    pool = data.draw(pools(defect), label="pool")
    lab = data.draw(labels(pool["n"], pool["seed"], defect), label="labels")
    if defect == "bad_classifier":
        clf_kind = data.draw(st.sampled_from(BAD_CLASSIFIERS), label="classifier")
    else:
        clf_kind = "other_labels" if defect == "other_labels" else data.draw(st.sampled_from(GOOD_CLASSIFIERS), label="classifier")
    clf, proper_clf = make_classifier(clf_kind, pool, lab)
    unlabeled = ~lab["labeled"]
    n_unlabeled = int(unlabeled.sum())
    batches = BAD_BATCHES if defect == "bad_batch!" else GOOD_BATCHES
    batch, valid_batch = batch_value(data.draw(st.sampled_from(batches), label="batch"), n_unlabeled)
    seed = data.draw(st.integers(0, 2**31 - 1), label="seed")
    strategy = build_strategy(name, lab["missing"], seed, policy, data.draw)

    status, result = expect_outcome(test, lambda: strategy.query(pool["X"], lab["y"], clf, batch))
    OUTCOMES[test][f"{defect}->{status}"] += 1

    must_fail = (
        not pool["finite"]
        or lab["wrong_length"]
        or n_unlabeled == 0
        or valid_batch is None
        or (requires_classifier(name) and clf_kind in BAD_CLASSIFIERS)
    )
    assert must_fail or not (defect or "").endswith("!"), f"generator bug: defect {defect} is not invalid"
    well_formed = (
        not must_fail
        and proper_clf
        and lab["n_labeled_classes"] >= 2
        and np.abs(pool["Xf"]).max() < 1e100
        and finite_proba(clf, pool["Xf"])  # a model that predicts NaN is rightly refused
    )
    if status == "ok":
        assert not must_fail, f"{name} accepted invalid input and returned {result}"
        check_picks(result, valid_batch, unlabeled)
    else:
        assert not well_formed, f"{name} refused well-formed input: {result}"


def test_every_strategy_on_random_pools(random_policy):
    test = "strategies_on_random_pools"

    @BASE_SETTINGS(max_examples=400)
    @given(data=st.data())
    def run(data):
        EXAMPLES[test] += 1
        one_query_case(data, random_policy, test)

    run()
    assert EXAMPLES[test] >= 400


@pytest.mark.parametrize("name", ["margin", "kcenter_greedy", "policy"])
def test_key_strategies_on_random_pools(random_policy, name):
    """More cases for the baseline, the geometry-only strategy and the learned policy."""
    test = f"{name}_on_random_pools"

    @BASE_SETTINGS(max_examples=150)
    @given(data=st.data())
    def run(data):
        EXAMPLES[test] += 1
        one_query_case(data, random_policy, test, name=name)

    run()
    assert EXAMPLES[test] >= 150


# ---------------------------------------------------------------------------------- changing pools
def test_strategies_follow_pools_that_shrink_or_grow(random_policy):
    """One strategy object called on a pool whose size (or feature count) changes between calls."""
    test = "pools_that_shrink_or_grow"

    @BASE_SETTINGS(max_examples=120)
    @given(data=st.data())
    def run(data):
        EXAMPLES[test] += 1
        name = data.draw(st.sampled_from(STRATEGIES), label="strategy")
        seed = data.draw(st.integers(0, 2**31 - 1), label="seed")
        rng = np.random.default_rng(seed)
        d = data.draw(st.integers(1, 4), label="d")
        n = data.draw(st.integers(3, 40), label="n")
        X = rng.normal(size=(n, d))
        true = rng.integers(0, 2, size=n)
        true[:2] = [0, 1]
        labeled = np.zeros(n, dtype=bool)
        labeled[:2] = True
        strategy = build_strategy(name, np.nan, seed, random_policy, data.draw)
        has_state = False
        for _ in range(data.draw(st.integers(2, 4), label="calls")):
            change = data.draw(st.sampled_from(["same", "same", "shrink", "grow", "grow", "features"]), label="change")
            if change == "shrink" and n > 3:
                keep = np.sort(rng.choice(n, size=data.draw(st.integers(2, n - 1)), replace=False))
                keep = np.union1d(keep, [0, 1])  # rows 0 and 1 stay first, labeled, one per class
                X, true, labeled = X[keep], true[keep], labeled[keep]
            elif change == "grow":
                extra = data.draw(st.integers(1, 20))
                X = np.vstack([X, rng.normal(size=(extra, X.shape[1]))])
                true = np.concatenate([true, rng.integers(0, 2, size=extra)])
                labeled = np.concatenate([labeled, np.zeros(extra, dtype=bool)])
            elif change == "features":
                X = np.hstack([X, rng.normal(size=(X.shape[0], 1))])
            n = X.shape[0]
            y = np.where(labeled, true.astype(float), np.nan)
            n_unlabeled = int((~labeled).sum())
            if n_unlabeled == 0:
                break
            batch = data.draw(st.integers(1, n_unlabeled), label="batch")
            clf = LogisticRegression().fit(X[labeled], true[labeled]) if np.unique(true[labeled]).size > 1 else GaussianNB().fit(X[labeled], true[labeled])
            status, result = expect_outcome(test, lambda: strategy.query(X, y, clf, batch))
            if status == "ok":
                # a new feature count is the one change a strategy refuses (a different dataset)
                assert not (has_state and change == "features"), f"{name} accepted a pool with another feature count"
                check_picks(result, batch, ~labeled)
                labeled = labeled.copy()
                labeled[result] = True
                has_state = True
            else:
                assert has_state and change == "features", f"{name} refused a {change} pool: {result}"
                strategy.reset()
                has_state = False

    run()
    assert EXAMPLES[test] >= 120


# ---------------------------------------------------------------------------------- environments
def _tiny_tasks() -> list:
    rng = np.random.default_rng(3)
    out = []
    for i, (n, d, c, budget, batch, regime) in enumerate(
        [(40, 3, 2, 6, 1, "cold"), (30, 2, 3, 5, 2, "cold"), (36, 4, 2, 20, 3, "warm"), (24, 1, 2, 4, 4, "cold")]
    ):
        X = rng.normal(size=(n, d))
        y = rng.integers(0, c, size=n)
        y[:c] = np.arange(c)
        out.append(make_task(X, y, name=f"tiny{i}", label_budget=budget, batch_size=batch, regime=regime,
                             n_warm=4, test_size=0.25, seed=i))
    return out


TASKS = _tiny_tasks()

#: Actions beyond the valid ones: out of range, non-integral, non-numeric, several values.
ODD_ACTIONS: tuple[Any, ...] = (
    -1, 10**9, -(10**12), 1.5, 0.999, float("nan"), float("inf"), -float("inf"), "1", "one", None, b"0",
    [0, 1], [], np.array([0, 1]), object(), complex(1, 0), {"a": 1},
)


def _action_strategy(n: int) -> st.SearchStrategy:
    valid = st.integers(0, n - 1)
    return st.one_of(
        valid,
        valid,
        valid.map(np.int64),
        valid.map(float),  # integral floats are accepted
        valid.map(lambda a: np.array([a])),
        st.integers(-3, n + 3),
        st.sampled_from(ODD_ACTIONS),
    )


def _is_valid_action(action: Any, n: int) -> bool:
    if isinstance(action, (list, dict, str, bytes, complex)) or action is None:
        return False
    try:
        arr = np.asarray(action)
    except Exception:  # pragma: no cover
        return False
    if arr.size != 1 or arr.dtype.kind not in "biuf":
        return False
    value = float(arr.item())
    return math.isfinite(value) and value.is_integer() and 0 <= value < n


def _check_transition(env, out, n_slots: int | None) -> bool:
    obs, reward, terminated, truncated, info = out
    assert env.observation_space.contains(obs), "observation outside the declared space"
    assert isinstance(reward, float) and math.isfinite(reward)
    assert isinstance(terminated, bool) and truncated is False
    assert {"task", "n_bought", "accuracy", "macro_f1", "record", "retrained"} <= set(info)
    assert info["n_bought"] <= env.task.label_budget
    if terminated:
        assert "aulc" in info and 0.0 <= info["aulc"] <= 1.0
    return terminated


def test_pool_env_with_random_actions():
    test = "pool_env_random_actions"

    @BASE_SETTINGS(max_examples=100)
    @given(data=st.data())
    def run(data):
        EXAMPLES[test] += 1
        task = TASKS[data.draw(st.integers(0, len(TASKS) - 1), label="task")]
        k = data.draw(st.integers(1, 8), label="K")
        env = PoolALEnv(
            tasks=[task], n_candidates=k, window=data.draw(st.integers(2, 4)),
            reward=data.draw(st.sampled_from(["auc", "improvement"])),
            candidate_selection=data.draw(st.sampled_from(["mixed", "random"])),
        )
        obs, _ = env.reset(seed=data.draw(st.integers(0, 2**31 - 1), label="seed"))
        assert env.observation_space.contains(obs)
        labeled_before = env.process.labeled.copy()
        picked: list[int] = []
        for _ in range(data.draw(st.integers(1, 40), label="steps")):
            action = data.draw(_action_strategy(k), label="action")
            status, result = expect_outcome(test, lambda: env.step(action))
            if status == "error":
                assert not _is_valid_action(action, k), f"valid action {action!r} refused: {result}"
                continue
            assert _is_valid_action(action, k), f"invalid action {action!r} accepted"
            terminated = _check_transition(env, result, k)
            record = result[4]["record"]
            assert 0 <= record < task.n_pool and not labeled_before[record] and record not in picked
            picked.append(record)
            if terminated:
                status, _ = expect_outcome(test, lambda: env.step(0))
                assert status == "error"  # the episode is over
                break
        assert env.process.bought <= task.label_budget

    run()
    assert EXAMPLES[test] >= 100


def test_stream_env_with_random_actions():
    test = "stream_env_random_actions"

    @BASE_SETTINGS(max_examples=100)
    @given(data=st.data())
    def run(data):
        EXAMPLES[test] += 1
        task = TASKS[data.draw(st.integers(0, len(TASKS) - 1), label="task")]
        env = StreamALEnv(tasks=[task], window=data.draw(st.integers(2, 4)),
                          metric=data.draw(st.sampled_from(["accuracy", "macro_f1"])))
        obs, _ = env.reset(seed=data.draw(st.integers(0, 2**31 - 1), label="seed"))
        assert env.observation_space.contains(obs)
        seen: list[int] = []
        for _ in range(data.draw(st.integers(1, 40), label="steps")):
            action = data.draw(st.one_of(_action_strategy(2), st.booleans()), label="action")
            status, result = expect_outcome(test, lambda: env.step(action))
            if status == "error":
                assert not _is_valid_action(action, 2), f"valid action {action!r} refused: {result}"
                continue
            assert _is_valid_action(action, 2), f"invalid action {action!r} accepted"
            terminated = _check_transition(env, result, None)
            record = result[4]["record"]
            assert record not in seen  # a skipped record never comes back, a kept one is not offered twice
            seen.append(record)
            if terminated:
                status, _ = expect_outcome(test, lambda: env.step(1))
                assert status == "error"
                break
        assert env.process.bought <= task.label_budget

    run()
    assert EXAMPLES[test] >= 100


# ---------------------------------------------------------------------------------- regressions
# The bugs the properties found, pinned as plain examples.
def test_kcenter_greedy_never_repeats_a_pick_when_distances_overflow():
    """Squares of finite values past 1e154 overflow: NaN distances once made picks repeat."""
    rng = np.random.default_rng(19)
    X = rng.normal(size=(12, 2)) * 1e200
    y = np.full(12, np.nan)
    y[:2] = [0, 1]
    for seed in range(5):
        with np.errstate(all="ignore"):
            picks = make_strategy("kcenter_greedy", random_state=seed).query(X, y, None, batch_size=10)
        check_picks(picks, 10, np.isnan(y))


@pytest.mark.parametrize("name", [n for n in STRATEGIES if n == "policy" or get_strategy_class(n).requires_classifier])
def test_classifier_fitted_on_other_features_is_a_clear_error(name, random_policy):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 3)), np.full(20, np.nan)
    y[:4] = [0, 1, 0, 1]
    clf = LogisticRegression().fit(rng.normal(size=(8, 5)), [0, 1] * 4)
    strategy = PolicyStrategy(random_policy) if name == "policy" else make_strategy(name)
    with pytest.raises(MetalearnError, match="fitted on 5 features but the pool has 3"):
        strategy.query(X, y, clf, batch_size=2)


@pytest.mark.parametrize("name", ["margin", "entropy", "density_weighted", "qbc", "albl", "policy"])
def test_classifier_that_cannot_predict_a_finite_pool_is_a_clear_error(name, random_policy):
    """A decision tree predicts in float32: finite values past 3.4e38 become inf there."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(20, 2))
    y = np.full(20, np.nan)
    y[:4] = [0, 1, 0, 1]
    clf = DecisionTreeClassifier(random_state=0).fit(X[:4], y[:4])
    X[10] = 1e300  # finite in float64, so the pool itself is valid
    strategy = PolicyStrategy(random_policy) if name == "policy" else make_strategy(name, random_state=0)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        with pytest.raises(MetalearnError, match="failed|could not fit"):
            strategy.query(X, y, clf, batch_size=2)


@pytest.mark.parametrize("env_cls", [PoolALEnv, StreamALEnv])
@pytest.mark.parametrize("action", [float("inf"), -float("inf"), float("nan"), 0.5, 0.999, "1", None, [0, 1], 10**30])
def test_env_refuses_actions_that_are_not_integers(env_cls, action):
    """inf once raised OverflowError, and 0.999 was silently truncated to action 0."""
    env = env_cls(tasks=[TASKS[0]])
    env.reset(seed=0)
    with pytest.raises(MetalearnError, match="action"):
        env.step(action)
    # the refused action changed nothing: the episode goes on
    obs, reward, terminated, truncated, info = env.step(np.array([1.0]))
    assert env.observation_space.contains(obs) and info["record"] >= 0


class DuckClassifier:
    """Not a scikit-learn estimator: fit, predict and predict_proba only (a user's own model)."""

    def fit(self, X, y):
        self.model_ = LogisticRegression().fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict(self, X):
        return self.model_.predict(X)

    def predict_proba(self, X):
        return self.model_.predict_proba(X)


@pytest.mark.parametrize("name", STRATEGIES)
def test_duck_typed_classifiers_are_accepted(name, random_policy):
    """scikit-learn >= 1.6 raises AttributeError in check_is_fitted for a non-estimator; it escaped."""
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(30, 3)), np.full(30, np.nan)
    y[:4] = [0, 1, 0, 1]
    clf = DuckClassifier().fit(X[:4], y[:4])
    strategy = PolicyStrategy(random_policy, random_state=0) if name == "policy" else make_strategy(name, random_state=0)
    if name == "qbc":  # the committee clones the classifier, which needs get_params
        with pytest.raises(MetalearnError, match="cannot be cloned"):
            strategy.query(X, y, clf, batch_size=3)
    else:
        check_picks(strategy.query(X, y, clf, batch_size=3), 3, np.isnan(y))
