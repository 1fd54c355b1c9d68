'''Task suites: distributions of simulated active-learning tasks, defined in TOML.

A task suite says where datasets come from (synthetic generators, scikit-learn's bundled
datasets, manifest folders, single files) and how the rest of a task is drawn (task model,
start regime, label budget, batch size). Meta-training samples tasks from a suite;
benchmarks draw a fixed, seeded list of them with :meth:`TaskSuite.tasks`.

File format
-----------
.. code-block:: toml

    name = "synthetic"                # optional, defaults to the file name
    description = "..."               # optional

    [settings]                        # every key optional (defaults in brackets)
    models = ["logreg", "rf"]         # task models, drawn uniformly              [["logreg"]]
    regimes = ["cold", "warm"]        # start regimes, drawn uniformly            [["cold"]]
    n_warm = 20                       # initial labels in the warm regime         [20]
    label_budgets = [100]             # drawn uniformly                           [[100]]
    batch_sizes = [1, 10]             # drawn uniformly                           [[1]]
    test_size = 0.3                   # fraction (0, 1) or number of test records [0.3]
    max_pool = 2000                   # larger pools are subsampled (stratified)  [no limit]

    [[sources]]                       # one or more; a source is drawn with probability
    kind = "generator"                # proportional to its weight
    generator = "classification"      # a name of metalearn.tasks.synthetic.GENERATORS, or
                                      # "any" (the default): one drawn uniformly per task
    weight = 3.0                      # > 0                                        [1.0]
    n_samples = [300, 3000]           # [low, high], drawn uniformly (or one int)  [[200, 2000]]
    params = {}                       # fixed overrides of the generator's random parameters

    [[sources]]
    kind = "sklearn"
    names = ["iris", "wine"]          # bundled datasets, drawn uniformly          [all four]

    [[sources]]
    kind = "folder"                   # a folder with MANIFEST.csv and NAME.csv.gz files
    path = "$DATA_DIR"                # see "Paths" below
    split = "train"                   # a split of the manifest, or omitted for all
    names = ["pima"]                  # optional subset of the datasets
    label_column = "target"           # optional
    weight = 2.0

    [[sources]]
    kind = "file"                     # one CSV / Parquet table
    path = "data/my_table.csv.gz"
    label_column = "label"            # optional, default "target"

Paths: relative paths resolve against the folder of the TOML file (or ``base_dir`` of
:meth:`TaskSuite.from_dict`, else the working directory). A path ``"$DATA_DIR"`` (or
``"$DATA_DIR/sub"``) means the folder named by the environment variable
``METALEARN_DATA_DIR``, or else the default data folder (:func:`default_data_dir`).

Every field is validated when the suite is loaded: unknown keys, unknown model, regime or
generator names, bad ranges, missing folders and unknown splits raise
:class:`~metalearn.exceptions.TaskSuiteError` naming the field.

Limits, checked at load, before any work (a suite is a file anyone may hand over):

- a suite file is at most :data:`MAX_SUITE_FILE_BYTES` bytes, nested at most
  :data:`MAX_NESTING` levels deep;
- a generator's ``n_samples`` is at most :data:`MAX_SAMPLES` records;
- a ``weight`` is at most :data:`MAX_WEIGHT` (weights are relative: their sum must stay finite);
- counts of the settings (``n_warm``, ``label_budgets``, ``batch_sizes``, ``test_size`` as a
  count, ``max_pool``) are at most :data:`MAX_COUNT`;
- :meth:`TaskSuite.tasks` draws at most :data:`MAX_TASKS` tasks at once.

Sampling a task draws, from the ``rng`` given: a source (by weight), a dataset from it (a
generator's size and random parameters, or one of its real datasets, loaded once and cached
in the suite), a model, a regime, a budget, a batch size and a task seed, then calls
:func:`~metalearn.tasks.task.make_task`. A dataset whose smallest class is too small for a
stratified pool/test split is skipped and another draw is made, up to
:attr:`TaskSuite.max_tries` times.
'''

from __future__ import annotations

import importlib.resources
import math
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

from metalearn.common.validation import check_positive_int
from metalearn.exceptions import DatasetError, InvalidInputError, TaskSuiteError, UnknownNameError
from metalearn.tasks.datasets import (
    DATA_DIR_ENV,
    SKLEARN_DATASETS,
    Dataset,
    _table_suffix,
    default_data_dir,
    list_manifest,
    load_manifest_folder,
    load_sklearn_dataset,
    load_table,
)
from metalearn.tasks.models import canonical_model_name
from metalearn.tasks.synthetic import DEFAULT_N_SAMPLES, GENERATOR_PARAMETERS, GENERATORS, MIN_SAMPLES
from metalearn.tasks.task import REGIMES, Task, make_task

__all__ = [
    "SOURCE_KINDS",
    "SuiteSettings",
    "SuiteSource",
    "TaskSuite",
    "load_task_suite",
    "default_task_suite",
    "list_task_suites",
    "MAX_SUITE_FILE_BYTES",
    "MAX_NESTING",
    "MAX_SAMPLES",
    "MAX_WEIGHT",
    "MAX_COUNT",
    "MAX_TASKS",
]

#: Kinds of dataset sources a suite may use.
SOURCE_KINDS: tuple[str, ...] = ("generator", "sklearn", "folder", "file")
_DATA_DIR_TOKEN = "$DATA_DIR"
_TOP_KEYS = ("name", "description", "settings", "sources")
_SETTINGS_KEYS = ("models", "regimes", "n_warm", "label_budgets", "batch_sizes", "test_size", "max_pool")
_SOURCE_KEYS: dict[str, tuple[str, ...]] = {
    "generator": ("kind", "generator", "weight", "n_samples", "params"),
    "sklearn": ("kind", "names", "weight"),
    "folder": ("kind", "path", "split", "names", "label_column", "weight"),
    "file": ("kind", "path", "label_column", "weight"),
}
_SEED_HIGH = 2**31 - 1
#: Largest suite file read (the shipped ones are about 2 KB).
MAX_SUITE_FILE_BYTES = 1024 * 1024
#: Deepest nesting of tables and arrays in a suite definition (the format needs 3).
MAX_NESTING = 20
#: Most records a generator source may draw for one dataset.
MAX_SAMPLES = 1_000_000
#: Largest source weight (weights are relative; their sum must stay a finite float).
MAX_WEIGHT = 1e6
#: Largest count of the settings (warm labels, budgets, batch sizes, test records, pool cap).
MAX_COUNT = 2**31 - 1
#: Most tasks one call of :meth:`TaskSuite.tasks` draws.
MAX_TASKS = 100_000


def _suites_dir() -> Path:
    """The shipped task suites: the repository's ``envs/``, package data of :mod:`metalearn.suites` (in the wheel too)."""
    return Path(str(importlib.resources.files("metalearn.suites")))


# ---------------------------------------------------------------------------------------------
# Field validation: each helper names the field in its error
# ---------------------------------------------------------------------------------------------
def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_keys(mapping: Any, allowed: Sequence[str], where: str) -> Mapping[str, Any]:
    if not isinstance(mapping, Mapping):
        raise TaskSuiteError(f"{where} must be a table (mapping), got {type(mapping).__name__}")
    unknown = [k for k in mapping if k not in allowed]
    if unknown:
        raise TaskSuiteError(f"{where} has unknown key(s) {unknown}; allowed keys: {', '.join(allowed)}")
    return mapping


def _as_list(value: Any, where: str) -> list[Any]:
    """A list field; a single scalar is accepted as a one-element list."""
    if isinstance(value, (str, int, float)) or _is_int(value):
        return [value]
    if not isinstance(value, (list, tuple)):
        raise TaskSuiteError(f"{where} must be a list, got {type(value).__name__} {value!r}")
    if not value:
        raise TaskSuiteError(f"{where} must not be empty")
    return list(value)


def _positive_ints(value: Any, where: str, *, minimum: int = 1) -> tuple[int, ...]:
    items = _as_list(value, where)
    for v in items:
        if not _is_int(v) or not minimum <= v <= MAX_COUNT:
            raise TaskSuiteError(f"{where} must hold integers in [{minimum}, {MAX_COUNT}], got {_shown(v)}")
    return tuple(int(v) for v in items)


def _shown(value: Any) -> str:
    """A value for an error message: its repr, cut short (a file may hold anything)."""
    try:
        text = repr(value)
    except RecursionError:
        text = f"<{type(value).__name__} nested too deeply>"
    return text if len(text) <= 80 else text[:77] + "..."


def _nesting_depth(value: Any, limit: int) -> int:
    """Depth of nested tables and arrays in ``value``, counted up to ``limit + 1`` (no recursion)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(item, Mapping):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def _names(value: Any, where: str) -> tuple[str, ...]:
    items = _as_list(value, where)
    for v in items:
        if not isinstance(v, str) or not v.strip():
            raise TaskSuiteError(f"{where} must hold non-empty strings, got {v!r}")
    if len(set(items)) != len(items):
        raise TaskSuiteError(f"{where} lists a name twice: {items}")
    return tuple(items)


def _weight(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TaskSuiteError(f"{where} must be a positive number, got {_shown(value)}")
    try:
        number = float(value)
    except OverflowError:  # an int such as 10**400
        number = math.inf
    if not math.isfinite(number) or not 0 < number <= MAX_WEIGHT:
        raise TaskSuiteError(f"{where} must be a positive number at most {MAX_WEIGHT:g}, got {_shown(value)}")
    return number


def _optional_str(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise TaskSuiteError(f"{where} must be a non-empty string, got {value!r}")
    return value


# ---------------------------------------------------------------------------------------------
# Settings and sources
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SuiteSettings:
    """How everything but the dataset is drawn (see the module docstring for the fields)."""

    models: tuple[str, ...] = ("logreg",)
    regimes: tuple[str, ...] = ("cold",)
    n_warm: int = 20
    label_budgets: tuple[int, ...] = (100,)
    batch_sizes: tuple[int, ...] = (1,)
    test_size: float | int = 0.3
    max_pool: int | None = None

    @classmethod
    def from_dict(cls, d: Any) -> "SuiteSettings":
        """Validate a ``[settings]`` table; missing keys take the defaults."""
        d = _check_keys({} if d is None else d, _SETTINGS_KEYS, "settings")
        kwargs: dict[str, Any] = {}
        if "models" in d:
            models = []
            for m in _names(d["models"], "settings.models"):
                try:
                    models.append(canonical_model_name(m))
                except UnknownNameError as exc:
                    raise TaskSuiteError(f"settings.models: {exc}") from None
            if len(set(models)) != len(models):
                raise TaskSuiteError(f"settings.models lists a model twice (aliases count): {list(d['models'])}")
            kwargs["models"] = tuple(models)
        if "regimes" in d:
            regimes = _names(d["regimes"], "settings.regimes")
            bad = [r for r in regimes if r not in REGIMES]
            if bad:
                raise TaskSuiteError(f"settings.regimes has unknown regime(s) {bad}; valid: {', '.join(REGIMES)}")
            kwargs["regimes"] = regimes
        if "n_warm" in d:
            n_warm = d["n_warm"]
            if not _is_int(n_warm) or not 2 <= n_warm <= MAX_COUNT:
                raise TaskSuiteError(f"settings.n_warm must be an integer in [2, {MAX_COUNT}], got {_shown(n_warm)}")
            kwargs["n_warm"] = int(n_warm)
        if "label_budgets" in d:
            kwargs["label_budgets"] = _positive_ints(d["label_budgets"], "settings.label_budgets")
        if "batch_sizes" in d:
            kwargs["batch_sizes"] = _positive_ints(d["batch_sizes"], "settings.batch_sizes")
        if "test_size" in d:
            ts = d["test_size"]
            if _is_int(ts):
                if not 1 <= ts <= MAX_COUNT:
                    raise TaskSuiteError(f"settings.test_size as a count must be in [1, {MAX_COUNT}], got {_shown(ts)}")
                kwargs["test_size"] = int(ts)
            elif isinstance(ts, float) and 0.0 < ts < 1.0:
                kwargs["test_size"] = float(ts)
            else:
                raise TaskSuiteError(
                    f"settings.test_size must be a fraction in (0, 1) or a count >= 1, got {ts!r}"
                )
        if "max_pool" in d:
            mp = d["max_pool"]
            if not _is_int(mp) or not 10 <= mp <= MAX_COUNT:
                raise TaskSuiteError(
                    f"settings.max_pool must be an integer in [10, {MAX_COUNT}] (omit it for no limit), got {_shown(mp)}"
                )
            kwargs["max_pool"] = int(mp)
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """TOML-ready table (``max_pool`` omitted when there is no limit)."""
        out: dict[str, Any] = {
            "models": list(self.models),
            "regimes": list(self.regimes),
            "n_warm": self.n_warm,
            "label_budgets": list(self.label_budgets),
            "batch_sizes": list(self.batch_sizes),
            "test_size": self.test_size,
        }
        if self.max_pool is not None:
            out["max_pool"] = self.max_pool
        return out


@dataclass(frozen=True)
class SuiteSource:
    """One ``[[sources]]`` entry, validated.

    Attributes
    ----------
    kind : str
        ``generator``, ``sklearn``, ``folder`` or ``file``.
    weight : float
        Relative probability of drawing this source.
    generator : str
        Generator name or ``"any"`` (kind ``generator``).
    n_samples : tuple of int
        ``(low, high)`` range of the generated dataset size (kind ``generator``).
    params : dict
        Fixed generator parameters (kind ``generator``).
    names : tuple of str or None
        Dataset subset (kinds ``sklearn`` and ``folder``).
    path : str or None
        Path as written in the file (kinds ``folder`` and ``file``).
    split : str or None
        Manifest split (kind ``folder``).
    label_column : str or None
        Label column (kinds ``folder`` and ``file``).
    resolved_path : Path or None
        Absolute path the source reads.
    dataset_names : tuple of str
        The datasets a real source draws from (uniformly).
    """

    kind: str
    weight: float = 1.0
    generator: str = "any"
    n_samples: tuple[int, int] = DEFAULT_N_SAMPLES
    params: dict[str, Any] = field(default_factory=dict)
    names: tuple[str, ...] | None = None
    path: str | None = None
    split: str | None = None
    label_column: str | None = None
    resolved_path: Path | None = field(default=None, compare=False)
    dataset_names: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def from_dict(cls, d: Any, where: str, base_dir: Path) -> "SuiteSource":
        """Validate a ``[[sources]]`` table; ``where`` names it in errors (e.g. ``sources[0]``)."""
        if not isinstance(d, Mapping):
            raise TaskSuiteError(f"{where} must be a table, got {type(d).__name__}")
        kind = d.get("kind")
        if kind not in SOURCE_KINDS:
            raise TaskSuiteError(f"{where}.kind must be one of {', '.join(SOURCE_KINDS)}, got {kind!r}")
        _check_keys(d, _SOURCE_KEYS[kind], f"{where} (kind {kind!r})")
        weight = _weight(d.get("weight", 1.0), f"{where}.weight")
        if kind == "generator":
            return cls._generator(d, where, weight)
        if kind == "sklearn":
            bundled = _names(d.get("names", list(SKLEARN_DATASETS)), f"{where}.names")
            bad = [n for n in bundled if n not in SKLEARN_DATASETS]
            if bad:
                raise TaskSuiteError(
                    f"{where}.names has unknown dataset(s) {bad}; bundled ones: {', '.join(SKLEARN_DATASETS)}"
                )
            return cls(kind=kind, weight=weight, names=bundled, dataset_names=bundled)
        path = _optional_str(d.get("path"), f"{where}.path")
        if path is None:
            raise TaskSuiteError(f"{where}.path is required for a {kind} source")
        resolved = _resolve_path(path, base_dir, f"{where}.path")
        label_column = _optional_str(d.get("label_column"), f"{where}.label_column")
        if kind == "file":
            if not resolved.is_file():
                raise TaskSuiteError(f"{where}.path: file {resolved} does not exist")
            if _table_suffix(resolved) is None:
                raise TaskSuiteError(f"{where}.path: {resolved} is not a .csv, .csv.gz, .tsv or .parquet file")
            return cls(
                kind=kind, weight=weight, path=path, label_column=label_column,
                resolved_path=resolved, dataset_names=(str(resolved),),
            )
        split = _optional_str(d.get("split"), f"{where}.split")
        names = _names(d["names"], f"{where}.names") if "names" in d else None
        if not resolved.is_dir():
            raise TaskSuiteError(f"{where}.path: folder {resolved} does not exist")
        try:
            manifest = list_manifest(resolved, split)
        except UnknownNameError as exc:
            raise TaskSuiteError(f"{where}.split: {exc}") from None
        except DatasetError as exc:
            raise TaskSuiteError(f"{where}.path: {exc}") from None
        available = list(manifest["name"])
        if names is not None:
            bad = [n for n in names if n not in available]
            if bad:
                raise TaskSuiteError(f"{where}.names: {bad} not in {resolved}; available: {', '.join(available)}")
            chosen = names
        else:
            chosen = tuple(available)
        if not chosen:
            raise TaskSuiteError(f"{where}: folder {resolved} has no dataset for split {split!r}")
        return cls(
            kind=kind, weight=weight, path=path, split=split, names=names, label_column=label_column,
            resolved_path=resolved, dataset_names=tuple(chosen),
        )

    @classmethod
    def _generator(cls, d: Mapping[str, Any], where: str, weight: float) -> "SuiteSource":
        generator = d.get("generator", "any")
        if generator != "any" and generator not in GENERATORS:
            raise TaskSuiteError(
                f"{where}.generator: unknown generator {generator!r}; valid: {', '.join(GENERATORS)} or 'any'"
            )
        raw = d.get("n_samples", list(DEFAULT_N_SAMPLES))
        if _is_int(raw):
            raw = [raw, raw]
        if (
            not isinstance(raw, (list, tuple)) or len(raw) != 2 or not all(_is_int(v) for v in raw)
            or raw[0] < MIN_SAMPLES or raw[0] > raw[1] or raw[1] > MAX_SAMPLES
        ):
            raise TaskSuiteError(
                f"{where}.n_samples must be [low, high] integers with {MIN_SAMPLES} <= low <= high <= {MAX_SAMPLES}, "
                f"got {_shown(raw)}"
            )
        n_samples = (int(raw[0]), int(raw[1]))
        params = d.get("params", {})
        if not isinstance(params, Mapping):
            raise TaskSuiteError(f"{where}.params must be a table, got {params!r}")
        params = dict(params)
        if params:
            if generator == "any":
                raise TaskSuiteError(f"{where}.params needs a named generator (parameters differ between generators)")
            unknown = [k for k in params if k not in GENERATOR_PARAMETERS[generator]]
            if unknown:
                raise TaskSuiteError(
                    f"{where}.params: unknown parameter(s) {unknown} for {generator!r}; "
                    f"valid: {', '.join(GENERATOR_PARAMETERS[generator])}"
                )
            # A dry run at both ends of the size range catches bad values now, not mid-training.
            for n in sorted(set(n_samples)):
                try:
                    GENERATORS[generator](np.random.default_rng(0), n, **params)
                except InvalidInputError as exc:
                    raise TaskSuiteError(f"{where}.params: {exc}") from None
        return cls(kind="generator", weight=weight, generator=generator, n_samples=n_samples, params=params)

    def to_dict(self) -> dict[str, Any]:
        """TOML-ready table with the fields of this kind only."""
        out: dict[str, Any] = {"kind": self.kind}
        if self.kind == "generator":
            out.update(generator=self.generator, n_samples=list(self.n_samples), params=dict(self.params))
        elif self.kind == "sklearn":
            out["names"] = list(self.names or ())
        else:
            out["path"] = self.path
            if self.split is not None:
                out["split"] = self.split
            if self.names is not None:
                out["names"] = list(self.names)
            if self.label_column is not None:
                out["label_column"] = self.label_column
        out["weight"] = self.weight
        return out


def _resolve_path(path: str, base_dir: Path, where: str) -> Path:
    if path == _DATA_DIR_TOKEN or path.startswith(_DATA_DIR_TOKEN + "/"):
        data_dir = default_data_dir()  # honours $METALEARN_DATA_DIR first
        if data_dir is None:
            raise TaskSuiteError(
                f"{where}: {_DATA_DIR_TOKEN} has no value; set the environment variable {DATA_DIR_ENV} "
                "to the dataset folder"
            )
        rest = path[len(_DATA_DIR_TOKEN) :].lstrip("/")
        return (data_dir / rest) if rest else data_dir
    p = Path(os.path.expandvars(path)).expanduser()
    return p if p.is_absolute() else (base_dir / p)


# ---------------------------------------------------------------------------------------------
# The suite
# ---------------------------------------------------------------------------------------------
class TaskSuite:
    """A distribution of simulated active-learning tasks.

    Build one with :meth:`from_toml`, :meth:`from_dict`, :func:`load_task_suite` or
    :func:`default_task_suite`; the constructor takes already validated parts.

    Parameters
    ----------
    name : str
        Name of the suite.
    description : str
        One-line description.
    settings : SuiteSettings
        How models, regimes, budgets and batch sizes are drawn.
    sources : sequence of SuiteSource
        Where datasets come from; at least one.
    base_dir : Path or None
        Folder relative paths were resolved against (kept for :meth:`to_dict` round trips).
    """

    #: Draws tried by :meth:`sample_task` before giving up.
    max_tries: int = 50

    def __init__(
        self,
        name: str,
        description: str,
        settings: SuiteSettings,
        sources: Sequence[SuiteSource],
        base_dir: Path | None = None,
    ) -> None:
        if not sources:
            raise TaskSuiteError("a task suite needs at least one [[sources]] entry")
        self.name = name
        self.description = description
        self.settings = settings
        self.sources: tuple[SuiteSource, ...] = tuple(sources)
        self.base_dir = base_dir
        weights = np.asarray([s.weight for s in self.sources], dtype=float)
        self._probabilities = weights / weights.sum()
        # Real datasets, loaded on first draw: (source index, dataset name) -> Dataset.
        self._cache: dict[tuple[int, str], Dataset] = {}

    def __repr__(self) -> str:
        kinds = ", ".join(s.kind if s.kind != "generator" else f"generator:{s.generator}" for s in self.sources)
        return f"TaskSuite(name={self.name!r}, sources=[{kinds}])"

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Mapping[str, Any], base_dir: str | os.PathLike[str] | None = None) -> "TaskSuite":
        """Validate a suite definition (the parsed TOML) and build the suite.

        Parameters
        ----------
        d : mapping
            Keys ``name``, ``description``, ``settings`` and ``sources`` (see the module
            docstring).
        base_dir : path-like or None
            Folder relative source paths resolve against; ``None`` means the working
            directory.

        Raises
        ------
        TaskSuiteError
            Any invalid field; the message names it.
        """
        if _nesting_depth(d, MAX_NESTING) > MAX_NESTING:
            raise TaskSuiteError(f"the task suite is nested more than {MAX_NESTING} levels deep")
        d = _check_keys(d, _TOP_KEYS, "task suite")
        base = Path(base_dir) if base_dir is not None else Path.cwd()
        name = d.get("name", "suite")
        if not isinstance(name, str) or not name.strip():
            raise TaskSuiteError(f"name must be a non-empty string, got {name!r}")
        description = d.get("description", "")
        if not isinstance(description, str):
            raise TaskSuiteError(f"description must be a string, got {description!r}")
        settings = SuiteSettings.from_dict(d.get("settings"))
        raw_sources = d.get("sources")
        if raw_sources is None:
            raise TaskSuiteError("sources is missing: add at least one [[sources]] table")
        if not isinstance(raw_sources, (list, tuple)) or not raw_sources:
            raise TaskSuiteError("sources must be a non-empty array of tables ([[sources]])")
        sources = [SuiteSource.from_dict(s, f"sources[{i}]", base) for i, s in enumerate(raw_sources)]
        return cls(name=name, description=description, settings=settings, sources=sources, base_dir=base)

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> "TaskSuite":
        """Load a suite from a TOML file; relative source paths resolve against its folder.

        The suite's name defaults to the file name without ``.toml``.
        """
        p = Path(path).expanduser()
        if not p.is_file():
            raise TaskSuiteError(f"task-suite file {p} does not exist")
        try:
            with p.open("rb") as fh:
                raw = fh.read(MAX_SUITE_FILE_BYTES + 1)
            if len(raw) > MAX_SUITE_FILE_BYTES:
                raise TaskSuiteError(f"{p} is larger than {MAX_SUITE_FILE_BYTES} bytes: not a task-suite file")
            data = tomllib.loads(raw.decode("utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise TaskSuiteError(f"{p} is not valid TOML: {exc}") from None
        except RecursionError:
            raise TaskSuiteError(f"{p} is nested too deeply to be a task suite") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise TaskSuiteError(f"cannot read {p}: {exc}") from None
        data.setdefault("name", p.name[: -len(".toml")] if p.name.endswith(".toml") else p.stem)
        try:
            return cls.from_dict(data, base_dir=p.resolve().parent)
        except TaskSuiteError as exc:
            raise TaskSuiteError(f"{p}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """The normalised definition (defaults filled in), ready for ``tomli_w`` or :meth:`from_dict`."""
        return {
            "name": self.name,
            "description": self.description,
            "settings": self.settings.to_dict(),
            "sources": [s.to_dict() for s in self.sources],
        }

    # -- sampling --------------------------------------------------------------------------
    def _real_dataset(self, index: int, name: str) -> Dataset:
        key = (index, name)
        if key not in self._cache:
            src = self.sources[index]
            if src.kind == "sklearn":
                ds = load_sklearn_dataset(name)
            elif src.kind == "file":
                ds = load_table(src.resolved_path, src.label_column)  # type: ignore[arg-type]
            else:
                ds = load_manifest_folder(src.resolved_path, names=[name], label_column=src.label_column)[0]  # type: ignore[arg-type]
            self._cache[key] = ds
        return self._cache[key]

    def _draw_dataset(self, index: int, rng: np.random.Generator) -> Dataset:
        src = self.sources[index]
        if src.kind == "generator":
            generator = src.generator
            if generator == "any":
                names = sorted(GENERATORS)
                generator = names[int(rng.integers(len(names)))]
            n_samples = int(rng.integers(src.n_samples[0], src.n_samples[1] + 1))
            return GENERATORS[generator](rng, n_samples, **src.params)
        name = src.dataset_names[int(rng.integers(len(src.dataset_names)))]
        return self._real_dataset(index, name)

    def _split_problem(self, dataset: Dataset) -> str | None:
        """Why ``dataset`` cannot give a stratified pool/test split with every class on both sides."""
        counts = dataset.class_counts()
        if counts.size < 2:
            return "fewer than two classes"
        ts = self.settings.test_size
        fraction = ts if isinstance(ts, float) else ts / max(dataset.n_samples, 1)
        if not 0.0 < fraction < 1.0:
            return f"test_size={ts} leaves no pool in {dataset.n_samples} records"
        needed = max(2, math.ceil(1.0 / min(fraction, 1.0 - fraction)))
        if int(counts.min()) < needed:
            return f"smallest class has {int(counts.min())} record(s), the split needs >= {needed}"
        return None

    def sample_task(self, rng: np.random.Generator) -> Task:
        """Draw one task.

        Parameters
        ----------
        rng : numpy.random.Generator
            Source of every draw: the same state gives the same task.

        Returns
        -------
        Task
            ``info`` records the suite, the source and the dataset's own ``info``.

        Raises
        ------
        TaskSuiteError
            When :attr:`max_tries` draws in a row gave no usable dataset (the message lists
            the reasons).
        """
        if not isinstance(rng, np.random.Generator):
            raise InvalidInputError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        s = self.settings
        reasons: list[str] = []
        for attempt in range(self.max_tries):
            index = int(rng.choice(len(self.sources), p=self._probabilities))
            try:
                dataset = self._draw_dataset(index, rng)
            except DatasetError:
                raise  # a broken file will not get better on the next draw
            except InvalidInputError as exc:  # a generator draw that cannot work
                reasons.append(f"sources[{index}]: {exc}")
                continue
            model = s.models[int(rng.integers(len(s.models)))]
            regime = s.regimes[int(rng.integers(len(s.regimes)))]
            budget = s.label_budgets[int(rng.integers(len(s.label_budgets)))]
            batch_size = s.batch_sizes[int(rng.integers(len(s.batch_sizes)))]
            seed = int(rng.integers(0, _SEED_HIGH))
            problem = self._split_problem(dataset)
            if problem is None:
                info = {
                    "suite": self.name,
                    "source_index": index,
                    "source_kind": self.sources[index].kind,
                    "dataset": dict(dataset.info),
                    "attempt": attempt,
                }
                try:
                    task = make_task(
                        dataset.X, dataset.y, name=dataset.name, model=model, regime=regime,
                        n_warm=s.n_warm, test_size=s.test_size, label_budget=budget,
                        batch_size=batch_size, max_pool=s.max_pool, seed=seed, info=info,
                    )
                except InvalidInputError as exc:
                    problem = str(exc)
                else:
                    all_classes = np.arange(task.n_classes)
                    if np.setdiff1d(all_classes, task.y_pool).size or np.setdiff1d(all_classes, task.y_test).size:
                        problem = "a class is missing from the pool or the test split"
                    else:
                        return task
            reasons.append(f"{dataset.name}: {problem}")
        shown = "; ".join(dict.fromkeys(reasons))  # unique reasons, in order
        raise TaskSuiteError(
            f"task suite {self.name!r}: no usable task in {self.max_tries} draws ({shown[:1000]}); "
            "use larger datasets, a smaller test_size or drop the offending sources"
        )

    def iter_tasks(self, seed: int) -> Iterator[Task]:
        """Endless stream of tasks; its first ``n`` are ``tasks(n, seed)``."""
        seq = np.random.SeedSequence(check_positive_int(seed, "seed", minimum=0))

        def _stream() -> Iterator[Task]:
            while True:
                yield self.sample_task(np.random.default_rng(seq.spawn(1)[0]))

        return _stream()

    def tasks(self, n: int, seed: int = 0) -> list[Task]:
        """Draw ``n`` tasks, deterministically.

        Each task gets its own child seed (``SeedSequence(seed).spawn``), so the first
        ``k`` tasks of ``tasks(n, seed)`` do not depend on ``n``.
        """
        n = check_positive_int(n, "n", minimum=0, maximum=MAX_TASKS)
        seed = check_positive_int(seed, "seed", minimum=0)
        children = np.random.SeedSequence(seed).spawn(n)
        return [self.sample_task(np.random.default_rng(child)) for child in children]


# ---------------------------------------------------------------------------------------------
# Built-in and named suites
# ---------------------------------------------------------------------------------------------
_DEFAULT_SUITE: dict[str, Any] = {
    "name": "synthetic",
    "description": "Synthetic tasks from all five generators, four task models, cold and warm starts.",
    "settings": {
        "models": ["logreg", "rf", "nb", "knn"],
        "regimes": ["cold", "warm"],
        "n_warm": 20,
        "label_budgets": [60, 100],
        "batch_sizes": [1, 5, 10],
        "test_size": 0.3,
        "max_pool": 1000,
    },
    "sources": [
        # classification has by far the widest parameter space, so it is drawn more often.
        {"kind": "generator", "generator": "classification", "weight": 2.0, "n_samples": [300, 1500], "params": {}},
        {"kind": "generator", "generator": "xor", "weight": 1.0, "n_samples": [300, 1500], "params": {}},
        {"kind": "generator", "generator": "checkerboard", "weight": 1.0, "n_samples": [300, 1500], "params": {}},
        {"kind": "generator", "generator": "moons", "weight": 1.0, "n_samples": [300, 1500], "params": {}},
        {"kind": "generator", "generator": "circles", "weight": 1.0, "n_samples": [300, 1500], "params": {}},
    ],
}


def default_task_suite() -> TaskSuite:
    """The built-in synthetic suite (same as ``envs/synthetic.toml``), needing no file.

    Models ``logreg``, ``rf``, ``nb``, ``knn``; cold and warm starts (20 warm labels);
    budgets 60 and 100; batch sizes 1, 5 and 10; test size 0.3; pools of at most 1000; all
    five generators (``classification`` with weight 2) with 300 to 1500 records.
    """
    return TaskSuite.from_dict(_DEFAULT_SUITE)


def list_task_suites() -> list[str]:
    """Names :func:`load_task_suite` accepts: ``default`` and the shipped ``envs/*.toml``."""
    names = {"default", "synthetic"}
    envs = _suites_dir()
    if envs.is_dir():
        names.update(p.name[: -len(".toml")] for p in envs.glob("*.toml"))
    return sorted(names)


def load_task_suite(name_or_path: str | os.PathLike[str] | TaskSuite) -> TaskSuite:
    """Load a task suite by file path or by name.

    Parameters
    ----------
    name_or_path : str, path-like or TaskSuite
        A ``.toml`` file path; or a name looked up as ``envs/NAME.toml`` (package data
        of :mod:`metalearn.suites`, shipped in the wheel); ``"default"`` is :func:`default_task_suite`, and so is
        ``"synthetic"`` should its file be absent. A :class:`TaskSuite` is returned as is.

    Raises
    ------
    UnknownNameError
        Unknown name (the message lists the available ones).
    TaskSuiteError
        Missing or invalid file.
    """
    if isinstance(name_or_path, TaskSuite):
        return name_or_path
    if isinstance(name_or_path, os.PathLike):
        return TaskSuite.from_toml(name_or_path)
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise TaskSuiteError(f"task suite must be a name or a .toml path, got {name_or_path!r}")
    spec = name_or_path.strip()
    if spec.endswith(".toml") or "/" in spec or os.sep in spec or Path(spec).is_file():
        return TaskSuite.from_toml(spec)
    if spec == "default":
        return default_task_suite()
    candidate = _suites_dir() / f"{spec}.toml"
    if candidate.is_file():
        return TaskSuite.from_toml(candidate)
    if spec == "synthetic":
        return default_task_suite()
    raise UnknownNameError(
        f"unknown task suite {spec!r}; available: {', '.join(list_task_suites())} (or a path to a .toml file)"
    )
