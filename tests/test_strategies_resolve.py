"""The one resolver from a name to a strategy, and every caller handing it the label budget."""

from __future__ import annotations

import inspect
import shutil

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris, make_classification

from metalearn.benchmark.config import BenchmarkConfig
from metalearn.benchmark.execute import build_strategy
from metalearn.exceptions import InvalidInputError, PolicyFileError, UnknownNameError
from metalearn.policies.file import read_policy, released_policy_dir
from metalearn.policies.strategy import PolicyStrategy
from metalearn.simulation.oracle import OracleStrategy
from metalearn.strategies import (
    ALBL,
    STRATEGIES,
    KCenterGreedy,
    MarginSampling,
    resolve_strategy,
    strategy_label,
)
from metalearn.tasks.task import make_task

DEFAULT = released_policy_dir() / "default.safetensors"


@pytest.fixture
def task():
    X, y = load_iris(return_X_y=True)
    return make_task(X, y, name="iris", model="nb", label_budget=12, batch_size=3, seed=0)


@pytest.fixture
def albl_budgets(monkeypatch):
    """The horizon (n_queries) of every ALBL that queries while the test runs."""
    seen: list[int] = []
    select = ALBL._select

    def spy(self, *args, **kwargs):
        seen.append(self.n_queries)
        return select(self, *args, **kwargs)

    monkeypatch.setattr(ALBL, "_select", spy)
    return seen


# ----------------------------------------------------------------------------- resolution order


def test_classic_names_and_aliases_build_registered_classes():
    margin = resolve_strategy("margin", label_budget=50, random_state=4, missing_label=-1)
    assert type(margin) is MarginSampling and margin.random_state == 4 and margin.missing_label == -1
    assert type(resolve_strategy("Core-Set", label_budget=50, random_state=0)) is KCenterGreedy
    assert resolve_strategy("density_weighted", label_budget=5, random_state=0, beta=2.0).beta == 2.0


def test_albl_gets_the_label_budget_and_none_keeps_its_default():
    assert resolve_strategy("albl", label_budget=37, random_state=0).n_queries == 37
    assert resolve_strategy("albl", label_budget=None, random_state=0).n_queries == 100
    with pytest.raises(InvalidInputError, match="label budget is given twice"):
        resolve_strategy("albl", label_budget=37, random_state=0, n_queries=5)


def test_budget_parameters_are_declared_constructor_parameters():
    declared = {name: cls.label_budget_parameter for name, cls in STRATEGIES.items() if cls.label_budget_parameter}
    assert declared.get("albl") == "n_queries"
    for name, parameter in declared.items():
        assert parameter in inspect.signature(STRATEGIES[name].__init__).parameters, name


@pytest.mark.parametrize("spec", ["default", "policy:default", f"policy:{DEFAULT}", str(DEFAULT), DEFAULT])
def test_policy_names_paths_and_prefix(spec):
    strategy = resolve_strategy(spec, label_budget=40, random_state=1, missing_label=None)
    assert isinstance(strategy, PolicyStrategy)
    assert strategy.label_budget == 40 and strategy.random_state == 1 and strategy.missing_label is None
    assert strategy_label(strategy).endswith("default.safetensors")


def test_a_policy_file_object_and_policy_parameters():
    policy = read_policy("default")
    strategy = resolve_strategy(policy, label_budget=9, random_state=0, n_candidates=16)
    assert isinstance(strategy, PolicyStrategy) and strategy.policy is policy
    assert strategy.n_candidates == 16 and strategy.label_budget == 9
    assert resolve_strategy(policy, label_budget=None, random_state=0).label_budget == 100


def test_a_strategy_name_that_is_also_a_file_is_the_strategy(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(DEFAULT, tmp_path / "margin")  # a policy file named like a classic strategy
    shutil.copy(DEFAULT, tmp_path / "mine")  # and one named like nothing else
    assert type(resolve_strategy("margin", label_budget=10, random_state=0)) is MarginSampling
    for spec in ("./margin", "policy:margin", tmp_path / "margin"):  # an explicit path or prefix means the file
        assert isinstance(resolve_strategy(spec, label_budget=10, random_state=0), PolicyStrategy), spec
    mine = resolve_strategy("mine", label_budget=10, random_state=0)
    assert isinstance(mine, PolicyStrategy) and strategy_label(mine) == "mine"


def test_unknown_names_and_missing_files_say_what_was_looked_for():
    with pytest.raises(UnknownNameError, match=r"released policies: .*default.*; nor is it a strategy name \(.*margin"):
        resolve_strategy("no-such-thing", label_budget=10, random_state=0)
    with pytest.raises(UnknownNameError, match="unknown policy 'nope'"):
        resolve_strategy("policy:nope", label_budget=10, random_state=0)
    with pytest.raises(PolicyFileError, match="no such file"):
        resolve_strategy("missing.safetensors", label_budget=10, random_state=0)
    with pytest.raises(PolicyFileError, match="no such file"):
        resolve_strategy("folder/margin", label_budget=10, random_state=0)
    with pytest.raises(PolicyFileError, match="empty policy name"):
        resolve_strategy("", label_budget=10, random_state=0)


# ----------------------------------------------------------------------------- every caller


def test_benchmark_gives_albl_and_policies_the_task_budget(task):
    config = BenchmarkConfig(datasets=["sklearn:iris"], label_budget=12)
    assert build_strategy("albl", task, 3, config).n_queries == task.label_budget == 12
    policy = build_strategy("policy:default", task, 3, config)
    assert isinstance(policy, PolicyStrategy) and policy.label_budget == 12 and policy.random_state == 3
    assert isinstance(build_strategy("oracle", task, 3, config), OracleStrategy)


def test_stopping_training_gives_albl_the_run_budget(task, albl_budgets):
    from metalearn.stopping.training import StoppingTrainConfig, _run_one

    config = StoppingTrainConfig(label_budget=6, batch_size=3)
    record = _run_one(task, "nb", "albl", 0, config)
    assert record["n_bought"][-1] == 6
    assert albl_budgets and set(albl_budgets) == {6}


def test_next_batch_gives_albl_the_label_budget(tmp_path, albl_budgets):
    from metalearn.workflow import next_batch

    X, y = make_classification(n_samples=40, n_features=3, n_informative=2, n_redundant=0, random_state=0)
    ids = [f"r{i:02d}" for i in range(40)]
    records = tmp_path / "records.csv"
    pd.DataFrame({"id": ids, **{f"f{j}": X[:, j] for j in range(3)}}).to_csv(records, index=False)
    labeled = [int(np.flatnonzero(y == c)[k]) for c in (0, 1) for k in range(3)]
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"id": [ids[i] for i in labeled], "label": [f"c{y[i]}" for i in labeled]}).to_csv(labels, index=False)
    result = next_batch(records, labels, policy="albl", model="nb", batch_size=2, label_budget=37)
    assert result.strategy == "albl" and len(result.table) == 2
    assert albl_budgets == [37]


def test_a_tuned_switch_point_is_written_name_colon_value():
    from metalearn.strategies.resolve import classic_strategy_spec

    strategy = resolve_strategy("typiclust_margin:20", label_budget=100, random_state=0)
    assert type(strategy).__name__ == "TypiClustThenMargin" and strategy.switch_after == 20
    assert resolve_strategy("probcover_margin:5", label_budget=100, random_state=0).switch_after == 5
    assert classic_strategy_spec("typiclust_margin")[1] == {}
    with pytest.raises(InvalidInputError, match="takes no ':VALUE'"):
        classic_strategy_spec("margin:3")
    for bad in ("typiclust_margin:x", "typiclust_margin:-1", "typiclust_margin:", "typiclust_margin:1e3"):
        with pytest.raises(InvalidInputError, match="whole number"):
            classic_strategy_spec(bad)
    with pytest.raises(InvalidInputError, match="also given"):
        resolve_strategy("typiclust_margin:20", label_budget=None, random_state=0, switch_after=5)
