"""What a benchmark runs: the configuration, the datasets it resolves to, and the run keys."""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Sequence

import numpy as np
import pandas as pd

from metalearn.common.text import printable
from metalearn.common.validation import check_positive_int
from metalearn.exceptions import InvalidInputError, UnknownNameError
from metalearn.strategies.registry import get_strategy_class, strategy_names
from metalearn.strategies.resolve import POLICY_PREFIX, classic_strategy_spec
from metalearn.tasks.datasets import Dataset, load_datasets
from metalearn.tasks.models import canonical_model_name
from metalearn.tasks.task import REGIMES

__all__ = ["BenchmarkConfig", "RunKey", "resolve_datasets", "ORACLE", "POLICY_PREFIX", "task_seed", "strategy_seed"]

#: Name of the greedy look-ahead upper reference in strategy lists.
ORACLE = "oracle"

#: Most runs one benchmark may list (the full protocol of the released default is 960 runs):
#: the run list is built in memory before any work, so an impossible size is refused up front.
MAX_RUNS = 1_000_000
#: Largest label budget, batch size, warm start or oracle candidate count accepted.
MAX_COUNT = 10_000_000

# Fields that change what a run computes: a result folder is only resumed with equal values.
_RESULT_FIELDS = ("label_budget", "seed", "test_size", "n_warm", "max_pool", "oracle_candidates")


@dataclass
class BenchmarkConfig:
    """The evaluation protocol's settings.

    Every (dataset, model, regime, batch size, seed) combination is run once per strategy,
    paired: all strategies get the same split, initial labeled set and task model, and the
    query model is the task model.

    Attributes
    ----------
    strategies : list of str
        Registered strategy names, plus ``"oracle"`` for the greedy look-ahead upper reference
        and ``"policy:PATH_OR_NAME"`` for a learned policy file (read and checked by
        :meth:`validate`).
    datasets : list of str
        Dataset specs: ``sklearn:NAME``, a CSV/Parquet path, ``folder:PATH[:SPLIT_OR_NAME]``
        (e.g. ``folder:../shared/datasets:validation``), or ``suite:NAME_OR_TOML[:N]`` for N
        datasets drawn from a task suite (default 10).
    models : list of str
        Task models (= query models).
    regimes : list of str
        ``cold`` (one label per class) and/or ``warm`` (``n_warm`` random labels).
    batch_sizes : list of int
        Records per query.
    label_budget : int
        Labels bought per run.
    n_seeds : int
        Paired seeds per (dataset, model, regime, batch size).
    seed : int
        Master seed: every split, initial set, model seed and strategy seed derives from it
        and the run's identity, never from the order or the number of workers.
    test_size : float
        Fraction of each dataset held out (stratified) for the learning curve.
    n_warm : int
        Initial labels in the warm regime.
    max_pool : int or None
        Pools larger than this are subsampled (stratified); None keeps whole pools.
    oracle_candidates : int
        Candidates the oracle evaluates per query (it retrains once per candidate).
    reference : str
        Strategy the statistics compare against.
    stop_rules : list of str
        Stopping rules watching every run (:func:`metalearn.stopping.load_stopping_rule`
        names or files); each run then records, per rule, the labels and scores at its stop
        and at the end (:mod:`metalearn.stopping.evaluation`). Empty: none.
    warm_start : bool
        Refit the task models that allow it (:data:`~metalearn.tasks.models.WARM_STARTABLE_MODELS`)
        warm, one model kept across the loops of a run (issue 21); the others refit from
        scratch as by default. Off by default.
    schedules : list of str
        Batch schedules (:func:`metalearn.schedules.load_schedule` specs, names or files): each
        strategy also runs under each schedule, which decides every loop's batch size, at the
        smallest of ``batch_sizes`` (its task, split and seeds; the batch size itself is the
        schedule's). Such a run is named ``STRATEGY@SCHEDULE`` in the tables and plots, so it is
        its own entry (its own point of the compute section), and the results table's
        ``schedule`` column names the schedule (``""`` for the fixed-batch runs). Empty: none.
    """

    strategies: list[str] = field(
        default_factory=lambda: [
            "random", "least_confidence", "margin", "entropy", "density_weighted", "kcenter_greedy", "qbc", "albl",
        ]
    )
    datasets: list[str] = field(default_factory=lambda: ["sklearn:breast_cancer", "sklearn:wine"])
    models: list[str] = field(default_factory=lambda: ["logreg", "rf"])
    regimes: list[str] = field(default_factory=lambda: ["cold", "warm"])
    batch_sizes: list[int] = field(default_factory=lambda: [1, 10])
    label_budget: int = 100
    n_seeds: int = 10
    seed: int = 0
    test_size: float = 0.3
    n_warm: int = 20
    max_pool: int | None = None
    oracle_candidates: int = 20
    reference: str = "margin"
    stop_rules: list[str] = field(default_factory=list)
    warm_start: bool = False
    schedules: list[str] = field(default_factory=list)

    def validate(self) -> "BenchmarkConfig":
        """Check every field; raises the project's errors naming the field. Returns self."""
        if not self.strategies:
            raise InvalidInputError("strategies is empty: name at least one strategy")
        valid = strategy_names() + [ORACLE]
        for name in self.strategies:
            if name == ORACLE:
                continue
            if name.startswith(POLICY_PREFIX):
                # Read and check the policy now, so a bad file fails before any compute.
                from metalearn.policies.file import read_policy

                read_policy(name[len(POLICY_PREFIX):])
                continue
            try:
                classic_strategy_spec(name)
            except UnknownNameError:
                raise UnknownNameError(f"unknown strategy {name!r}; valid names: {', '.join(valid)}") from None
        if len(set(self.strategies)) != len(self.strategies):
            raise InvalidInputError(f"strategies lists a name twice: {self.strategies}")
        if not self.datasets:
            raise InvalidInputError("datasets is empty: give at least one dataset spec")
        self.models = [canonical_model_name(m) for m in self.models]
        if not self.models:
            raise InvalidInputError("models is empty")
        for regime in self.regimes:
            if regime not in REGIMES:
                raise InvalidInputError(f"unknown regime {regime!r}; valid regimes: {', '.join(REGIMES)}")
        if not self.regimes:
            raise InvalidInputError("regimes is empty")
        self.batch_sizes = [check_positive_int(b, "batch size") for b in self.batch_sizes]
        if not self.batch_sizes:
            raise InvalidInputError("batch_sizes is empty")
        check_positive_int(self.label_budget, "label_budget")
        check_positive_int(self.n_seeds, "n_seeds")
        check_positive_int(self.seed, "seed", minimum=0)
        check_positive_int(self.n_warm, "n_warm", minimum=2)
        check_positive_int(self.oracle_candidates, "oracle_candidates")
        if self.max_pool is not None:
            check_positive_int(self.max_pool, "max_pool", minimum=2)
        if isinstance(self.test_size, bool) or not isinstance(self.test_size, (int, float, np.integer, np.floating)):
            raise InvalidInputError(f"test_size must be a fraction in (0, 1), got {self.test_size!r}")
        if not 0.0 < float(self.test_size) < 1.0:
            raise InvalidInputError(f"test_size must be a fraction in (0, 1), got {self.test_size}")
        for name, value in (
            ("label_budget", self.label_budget), ("n_warm", self.n_warm), ("oracle_candidates", self.oracle_candidates),
            ("batch size", max(self.batch_sizes)), ("n_seeds", self.n_seeds),
        ):
            if value > MAX_COUNT:
                raise InvalidInputError(f"{name}={value} is larger than any benchmark can run (limit {MAX_COUNT})")
        if not isinstance(self.reference, str) or not self.reference:
            raise InvalidInputError(f"reference must be a strategy name, got {self.reference!r}")
        if self.reference not in (ORACLE, *self.strategies) and not self.reference.startswith(POLICY_PREFIX):
            try:
                classic_strategy_spec(self.reference)
            except UnknownNameError:
                raise UnknownNameError(
                    f"unknown reference strategy {self.reference!r}; valid names: {', '.join(valid)}"
                ) from None
        if not isinstance(self.warm_start, (bool, np.bool_)):
            raise InvalidInputError(f"warm_start must be true or false, got {self.warm_start!r}"[:300])
        self.n_runs(len(self.datasets))  # each spec names at least one dataset: refuse impossible sizes now
        if self.stop_rules:
            from metalearn.stopping.evaluation import check_stop_rules

            check_stop_rules(self.stop_rules)
        if self.schedules:
            from metalearn.schedules import load_schedule

            for spec in self.schedules:
                if not isinstance(spec, str) or not spec.strip():
                    raise InvalidInputError(f"schedules lists {spec!r}; give schedule specs such as 'geometric:2:2'"[:300])
                load_schedule(spec)  # a bad spec or file fails before any compute
            if len(set(self.schedules)) != len(self.schedules):
                raise InvalidInputError(f"schedules lists a name twice: {self.schedules}")
            if self.stop_rules:
                raise InvalidInputError("stopping rules do not watch scheduled runs; give either stop_rules or schedules")
        return self

    def n_runs(self, n_datasets: int) -> int:
        """Runs the benchmark lists for ``n_datasets`` datasets; refuses more than :data:`MAX_RUNS`."""
        n_runs = (
            int(self.n_seeds) * int(n_datasets) * len(self.models) * len(self.regimes)
            * (len(self.batch_sizes) + len(self.schedules)) * len(self.strategies)
        )
        if n_runs > MAX_RUNS:
            raise InvalidInputError(
                f"the benchmark lists {n_runs:,} runs ({self.n_seeds} seeds x {n_datasets} dataset(s) x "
                f"{len(self.models)} model(s) x {len(self.regimes)} regime(s) x {len(self.batch_sizes)} batch size(s) "
                f"and {len(self.schedules)} schedule(s) x "
                f"{len(self.strategies)} strateg(ies)), more than the {MAX_RUNS:,} one benchmark may hold; "
                "use fewer seeds or settings"
            )
        return n_runs

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not self.warm_start:
            # Only a warm-start benchmark names the setting: stored configurations stay as they were.
            del d["warm_start"]
        if not self.schedules:  # likewise: benchmarks without schedules store what they stored
            del d["schedules"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BenchmarkConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise InvalidInputError(f"unknown benchmark settings {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)

    def strategy_versions(self) -> dict[str, str]:
        """What each strategy name stands for beyond its name: a policy's behaviour digest.

        Stored with every run, so a run of a policy file overwritten by different weights is
        recomputed on resume instead of being reused. The digest covers what decides the
        picks (:meth:`PolicyFile.behaviour_digest`), not the model card: re-releasing the same
        weights with new notes keeps the stored runs. Classic strategies have version ``""``.
        """
        versions: dict[str, str] = {}
        for name in self.strategies:
            if name.startswith(POLICY_PREFIX):
                from metalearn.policies.file import read_policy

                versions[name] = read_policy(name[len(POLICY_PREFIX):]).behaviour_digest()
            else:
                versions[name] = ""
        if self.stop_rules:
            # A stored run counts only if the same stopping rules watched it.
            from metalearn.stopping.evaluation import stop_rules_digest

            digest = stop_rules_digest(self.stop_rules)
            versions = {name: f"{version}|stop:{digest}" for name, version in versions.items()}
        return versions

    def result_fingerprint(self) -> str:
        """Hash of the settings that change what a run computes (not which runs exist)."""
        settings = {k: getattr(self, k) for k in _RESULT_FIELDS}
        if self.warm_start:  # absent when off, so cold benchmarks keep their fingerprints
            settings["warm_start"] = True
        payload = json.dumps(settings, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def run_keys(self, dataset_names: Sequence[str]) -> list["RunKey"]:
        """Every run, seed by seed: an interrupted benchmark has whole paired seeds of every problem."""
        self.n_runs(len(dataset_names))
        scheduled_at = min(self.batch_sizes) if self.batch_sizes else 1
        return [
            key
            for s in range(self.n_seeds)
            for d in dataset_names
            for m in self.models
            for r in self.regimes
            for key in (
                *(RunKey(d, m, r, b, s, strategy) for b in self.batch_sizes for strategy in self.strategies),
                *(RunKey(d, m, r, scheduled_at, s, strategy, schedule)
                  for schedule in self.schedules for strategy in self.strategies),
            )
        ]


@dataclass(frozen=True)
class RunKey:
    """The identity of one run; its paired siblings differ in ``strategy`` (and ``schedule``) only.

    ``schedule`` is the batch schedule that decides the run's batch sizes, ``""`` for a run at
    the fixed ``batch_size``; only a scheduled run's id names it, so every other run keeps the
    id it always had (stored results keep matching).
    """

    dataset: str
    model: str
    regime: str
    batch_size: int
    seed: int
    strategy: str
    schedule: str = ""

    @property
    def label(self) -> str:
        """The run's entry in tables and plots: the strategy, ``STRATEGY@SCHEDULE`` under a schedule."""
        return f"{self.strategy}@{self.schedule}" if self.schedule else self.strategy

    @property
    def run_id(self) -> str:
        """A file-system-safe, unique name (readable prefix plus a hash of the exact key)."""
        raw = f"{self.dataset}|{self.model}|{self.regime}|{self.batch_size}|{self.seed}|{self.strategy}"
        if self.schedule:
            raw += f"|schedule={self.schedule}"
        readable = "".join(c if c.isalnum() or c in "-_." else "-" for c in raw.replace("|", "__"))[:120]
        return f"{readable}__{hashlib.sha1(raw.encode()).hexdigest()[:8]}"


def _stable_int(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def task_seed(master_seed: int, dataset: str, seed_index: int) -> int:
    """Seed of a dataset's split and initial sets for one paired seed.

    It does not depend on the model, regime, batch size or strategy, so every strategy and
    setting of a seed sees the same split.
    """
    seq = np.random.SeedSequence(entropy=master_seed, spawn_key=(_stable_int(dataset), seed_index))
    return int(seq.generate_state(1)[0] & 0x7FFFFFFF)


def strategy_seed(master_seed: int, key: RunKey) -> int:
    """Seed of the strategy's own randomness in one run, from the run's identity alone."""
    parts = (key.dataset, key.model, key.regime, str(key.batch_size), key.strategy)
    seq = np.random.SeedSequence(entropy=master_seed, spawn_key=(*map(_stable_int, parts), key.seed, 1))
    return int(seq.generate_state(1)[0] & 0x7FFFFFFF)


#: Most datasets a ``suite:NAME:N`` spec draws (each is a benchmark dataset, run with every
#: strategy, setting and seed; all are held in memory).
MAX_SUITE_DATASETS = 1000


def _suite_datasets(body: str, seed: int) -> list[Dataset]:
    from metalearn.tasks.suite import load_task_suite

    name, _, count = body.rpartition(":") if body.rsplit(":", 1)[-1].isdigit() else (body, "", "10")
    if not count.isascii() or len(count) > 12 or int(count) > MAX_SUITE_DATASETS:
        raise InvalidInputError(
            f"suite:{printable(body[:200])}: at most {MAX_SUITE_DATASETS} datasets from a task suite, got {printable(count[:20])}"
        )
    suite = load_task_suite(name)
    datasets = []
    for i, task in enumerate(suite.tasks(int(count), seed=seed)):
        X = pd.DataFrame(np.vstack([task.X_pool, task.X_test]))
        X.columns = [f"x{j}" for j in range(X.shape[1])]
        y = task.classes[np.concatenate([task.y_pool, task.y_test])]
        datasets.append(Dataset(name=f"{suite.name}-{i:03d}-{task.name}", X=X, y=y, info=dict(task.info)))
    return datasets


def resolve_datasets(specs: Sequence[str], seed: int = 0) -> list[Dataset]:
    """Load every dataset the specs name, in order, without duplicates (by name)."""
    out: dict[str, Dataset] = {}
    for spec in specs:
        spec = str(spec).strip()
        found = _suite_datasets(spec[len("suite:"):], seed) if spec.startswith("suite:") else load_datasets(spec)
        for ds in found:
            out.setdefault(ds.name, ds)
    return list(out.values())
