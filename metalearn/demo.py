"""The main job on embedded defaults (``metalearn demo``, ``make demo``).

Four steps, each resumable, into one folder ``OUT``:

1. **Meta-train** a querying policy with evolution strategies
   (:mod:`metalearn.policies.trainers.es`: CMA-ES on the paired difference in area under the
   learning curve to margin sampling, searching the context-gated linear scorer of the
   ``pool@2`` features) on the built-in ``synthetic`` task suite (its tasks of batch sizes 5
   and 10, see :attr:`DemoConfig.train_batch_sizes`) for a wall-clock budget of a few
   minutes, into ``OUT/train``. The search starts at margin sampling and keeps a searched
   policy only if it beats margin on other tasks of the suite, so the fresh policy is margin
   sampling or better there. Rerunning continues an interrupted run or reuses the finished
   one; a larger budget trains on.
2. **Benchmark** the fresh policy (and the released ``default`` policy, when this
   installation has one) against random and margin sampling on scikit-learn's bundled
   datasets with :func:`metalearn.benchmark.run_benchmark` (paired runs, logistic regression
   and random forest, cold start), into ``OUT/benchmark``. Rerunning computes only missing
   runs; the policy's runs are recomputed only if its file changed.
3. **Report**: the summary table (printed), the runs and curves tables, and the Markdown/HTML
   report with its plots (:func:`metalearn.benchmark.write_report`) in ``OUT/benchmark``.
4. **Compute**: what a batch schedule saves (:mod:`metalearn.schedules`). The released
   ``default`` policy (else the fresh one) retrains after every label, after every
   :attr:`DemoConfig.batch_size` labels, and when the schedule says (the released ``default``
   schedule, else the rule :data:`FALLBACK_SCHEDULE`), with logistic regression, into
   ``OUT/compute``: task-model fits per run, their seconds and the step-curve AULC (the score a
   user holds while buying labels), printed against retraining after every label.

``DemoConfig(quick=True)`` shrinks both steps to seconds (one generation on the tiny
``smoke`` suite, a few runs on iris) for tests and a first look.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from metalearn.exceptions import InvalidInputError

__all__ = [
    "DemoConfig", "DemoResult", "run_demo", "compute_table", "FRESH_LABEL", "DEFAULT_LABEL", "DEFAULT_POLICY",
    "DEFAULT_SCHEDULE", "FALLBACK_SCHEDULE",
]

#: Name of the fresh policy in the demo's tables and plots.
FRESH_LABEL = "fresh policy"
#: Name of the released default policy in the demo's tables and plots.
DEFAULT_LABEL = "default policy"
#: The released policy the demo benchmarks beside the fresh one, when it exists.
DEFAULT_POLICY = "default"
#: The released schedule step 4 shows, when this installation has one.
DEFAULT_SCHEDULE = "default"
#: The rule step 4 shows otherwise: the batch doubles every second retrain (1, 1, 2, 2, 4, 4, ...).
FALLBACK_SCHEDULE = "geometric:2:2"


@dataclass
class DemoConfig:
    """Settings of the demo (CLI: ``metalearn demo``); the defaults take about 6 minutes on 2 cores."""

    out_dir: str = "out/demo"
    """Folder of the demo: ``train/`` (the training run) and ``benchmark/`` (runs, tables, report, plots)."""
    seed: int = 0
    """Master seed of the training run and of the benchmark."""
    train_minutes: float = 4.0
    """Wall-clock budget of the meta-training, in minutes over all sessions (checked at generation boundaries)."""
    n_jobs: int = -1
    """Local worker processes for training episodes and benchmark runs (-1: all cores)."""
    quick: bool = False
    """Seconds instead of minutes: one generation on the ``smoke`` suite and a tiny benchmark (for tests)."""
    suite: str = "synthetic"
    """Task suite the policy is trained on (the built-in synthetic suite)."""
    train_batch_sizes: list[int] | None = field(default_factory=lambda: [5, 10])
    """Batch sizes of the training tasks, replacing the suite's (None keeps them). The synthetic suite's batch
    size 1 retrains the task model after every single label: ten times the runs' cost, for a budget of minutes."""
    problems_per_generation: int = 12
    """Training tasks per generation, shared by every candidate (the trainer's default is 32): a short budget runs
    several generations."""
    selection_tasks: int = 24
    """Tasks of keep-the-best: other tasks of the training suite (fixed seed), on which the search's mean is
    compared with margin sampling every :attr:`selection_every` generations."""
    selection_every: int = 2
    """Generations between two keep-the-best evaluations (and after the last one)."""
    datasets: list[str] = field(
        default_factory=lambda: ["sklearn:breast_cancer", "sklearn:digits", "sklearn:wine", "sklearn:iris"]
    )
    """Benchmark datasets (specs as in ``metalearn benchmark --datasets``)."""
    models: list[str] = field(default_factory=lambda: ["logreg", "rf"])
    """Task models of the benchmark (each is also the query model)."""
    regime: str = "cold"
    """Start of each benchmark run: ``cold`` (one label per class) or ``warm``."""
    batch_size: int = 10
    """Records per query in the benchmark."""
    label_budget: int = 80
    """Labels bought per benchmark run."""
    n_seeds: int = 10
    """Paired seeds per (dataset, model); at least 6 let the per-problem Wilcoxon test reach significance."""
    include_default: bool = True
    """Also benchmark the released ``default`` policy when this installation has one."""
    compute_models: list[str] = field(default_factory=lambda: ["logreg"])
    """Task models of step 4 (compute): retraining after every label is its most expensive arm."""
    compute_seeds: int = 5
    """Paired seeds per dataset of step 4."""
    schedule: str | None = None
    """Batch schedule of step 4 (a spec such as ``geometric:2:2``, a released name or a file); None: the released
    ``default`` schedule when this installation has one, else :data:`FALLBACK_SCHEDULE`."""

    def validate(self) -> "DemoConfig":
        """Check the settings the steps do not check themselves; returns self."""
        from metalearn.common.validation import check_positive_int

        check_positive_int(self.seed, "seed", minimum=0)
        if not self.train_minutes > 0:
            raise InvalidInputError(f"train_minutes must be positive, got {self.train_minutes}")
        if self.n_jobs == 0:
            raise InvalidInputError("n_jobs must be a positive number of workers or -1 (all cores), got 0")
        return self

    @property
    def train_dir(self) -> Path:
        """``OUT/train``: the training run."""
        return Path(self.out_dir) / "train"

    @property
    def benchmark_dir(self) -> Path:
        """``OUT/benchmark``: the benchmark's runs, tables, report and plots."""
        return Path(self.out_dir) / "benchmark"

    @property
    def compute_dir(self) -> Path:
        """``OUT/compute``: the runs and tables of step 4."""
        return Path(self.out_dir) / "compute"

    @property
    def policy_path(self) -> Path:
        """The fresh policy file (the best by validation)."""
        return self.train_dir / "policy.safetensors"

    def training_suite(self) -> Any:
        """The task suite of step 1: :attr:`suite` with :attr:`train_batch_sizes` (a name when unchanged)."""
        if not self.train_batch_sizes:
            return self.suite
        from metalearn.tasks.suite import TaskSuite, load_task_suite

        base = load_task_suite(self.suite)
        definition = base.to_dict()
        sizes = [int(b) for b in self.train_batch_sizes]
        if sorted(sizes) == sorted(definition["settings"]["batch_sizes"]):
            return self.suite
        definition["settings"]["batch_sizes"] = sizes
        definition["name"] = f"{base.name} (batch sizes {', '.join(map(str, sizes))})"
        return TaskSuite.from_dict(definition, base_dir=base.base_dir)

    def training_config(self) -> Any:
        """The :class:`~metalearn.policies.trainers.es.ESConfig` of step 1."""
        from metalearn.policies.trainers.es import ESConfig

        if self.quick:
            return ESConfig(
                suite="smoke", selection_suite="smoke", seed=self.seed, out_dir=str(self.train_dir), iterations=1,
                problems_per_generation=2, population=3, selection_tasks=2, n_candidates=16, n_jobs=self.n_jobs,
            )
        suite = self.training_suite()
        return ESConfig(
            suite=suite, selection_suite=suite, seed=self.seed, out_dir=str(self.train_dir), iterations=None,
            time_budget=60.0 * float(self.train_minutes), problems_per_generation=self.problems_per_generation,
            selection_tasks=self.selection_tasks, selection_every=self.selection_every, n_jobs=self.n_jobs,
        )

    def benchmark_config(self, strategies: list[str]) -> Any:
        """The :class:`~metalearn.benchmark.BenchmarkConfig` of step 2 for these strategy names."""
        from metalearn.benchmark import BenchmarkConfig

        if self.quick:
            return BenchmarkConfig(
                strategies=strategies, datasets=["sklearn:iris"], models=["logreg"], regimes=["cold"],
                batch_sizes=[5], label_budget=10, n_seeds=2, seed=self.seed,
            )
        return BenchmarkConfig(
            strategies=strategies, datasets=list(self.datasets), models=list(self.models), regimes=[self.regime],
            batch_sizes=[self.batch_size], label_budget=self.label_budget, n_seeds=self.n_seeds, seed=self.seed,
        )

    def compute_config(self, strategy: str, schedule: str) -> Any:
        """The :class:`~metalearn.benchmark.BenchmarkConfig` of step 4: batch 1, :attr:`batch_size` and ``schedule``."""
        from metalearn.benchmark import BenchmarkConfig

        if self.quick:
            return BenchmarkConfig(
                strategies=[strategy], datasets=["sklearn:iris"], models=["logreg"], regimes=["cold"],
                batch_sizes=[1, 5], schedules=[schedule], label_budget=10, n_seeds=2, seed=self.seed,
            )
        return BenchmarkConfig(
            strategies=[strategy], datasets=list(self.datasets), models=list(self.compute_models),
            regimes=[self.regime], batch_sizes=sorted({1, self.batch_size}), schedules=[schedule],
            label_budget=self.label_budget, n_seeds=self.compute_seeds, seed=self.seed,
        )


@dataclass
class DemoResult:
    """What :func:`run_demo` produced.

    Attributes
    ----------
    training : TrainingResult
        The training run (over all sessions).
    trained_iterations : int
        Generations run by this call (0: the finished run was reused).
    benchmark : BenchmarkResult
        The benchmark (``computed`` = runs computed by this call).
    labels : dict of str to str
        Display name of each benchmarked strategy (``policy:...`` specs become
        :data:`FRESH_LABEL` and :data:`DEFAULT_LABEL`).
    table : pandas.DataFrame
        The summary table, one row per strategy, best mean rank first.
    report : dict of str to Path
        The report files (``md``, ``html``, and one entry per PNG).
    compute : pandas.DataFrame
        Step 4's table (:func:`compute_table`), one row per way of retraining.
    wall_seconds : float
        Wall time of this call.
    """

    training: Any
    trained_iterations: int
    benchmark: Any
    labels: dict[str, str]
    table: pd.DataFrame
    report: dict[str, Path]
    compute: pd.DataFrame
    wall_seconds: float

    @property
    def plots(self) -> list[Path]:
        """The PNG plots of the report."""
        return [p for p in self.report.values() if p.suffix == ".png"]


def _iterations_done(last_path: Path) -> int:
    """Generations (or iterations) recorded in a training run's ``last.safetensors`` (0 when there is none yet)."""
    if not last_path.is_file():
        return 0
    from metalearn.policies.file import read_policy

    try:
        training = read_policy(last_path).metadata.get("training", {})
        return int(training.get("generations", training.get("iterations", 0)))
    except Exception:  # an unreadable last policy: the trainer's resume decides what to do
        return 0


def summary_table(runs: pd.DataFrame, reference: str = "margin") -> pd.DataFrame:
    """The demo's table: paired comparison with the reference, pooled scores, and AULC per dataset.

    Parameters
    ----------
    runs : pandas.DataFrame
        The benchmark's runs table (strategy names as they should be displayed).
    reference : str
        The strategy the paired differences refer to.

    Returns
    -------
    pandas.DataFrame
        Indexed by strategy, best mean rank first; columns ``mean_rank``, ``mean_diff``
        (points to the reference, mean over problems), ``wins``/``ties``/``losses`` (problems),
        ``aulc_accuracy``, ``final_accuracy``, ``query_ms`` and one AULC column per dataset
        (points).
    """
    from metalearn.benchmark.stats import overall_comparison, strategy_summary

    ok = runs[runs["status"] == "ok"]
    overall = overall_comparison(runs, reference=reference).set_index("strategy")
    pooled = strategy_summary(runs).set_index("strategy")
    per_dataset = 100.0 * ok.pivot_table(index="strategy", columns="dataset", values="aulc_accuracy", aggfunc="mean")
    table = overall[["mean_rank", "mean_diff", "wins", "ties", "losses"]].join(
        pooled[["aulc_accuracy", "final_accuracy", "query_ms"]]
    )
    return table.join(per_dataset)


def compute_table(runs: pd.DataFrame, strategy: str) -> pd.DataFrame:
    """Step 4's table: each way of retraining against retraining after every label.

    Parameters
    ----------
    runs : pandas.DataFrame
        The runs table of :meth:`DemoConfig.compute_config`'s benchmark: ``strategy`` at batch
        size 1 and other fixed sizes, and ``STRATEGY@SCHEDULE`` runs (at batch size 1).

    Returns
    -------
    pandas.DataFrame
        One row per arm (``retraining``: ``every label``, ``every N labels`` or
        ``schedule NAME``), columns ``fits`` (mean task-model fits per run), ``fits_saved`` (%
        fewer than batch 1), ``seconds`` (fit + query seconds per run), ``step_aulc`` (points) and
        ``vs_every_label`` (mean paired difference in step-AULC points to batch 1).
    """
    ok = runs.loc[runs["status"] == "ok"].copy()
    scheduled = ok["strategy"].str.startswith(strategy + "@")
    ok["retraining"] = [
        f"schedule {name[len(strategy) + 1:]}" if is_scheduled else ("every label" if b == 1 else f"every {b} labels")
        for name, is_scheduled, b in zip(ok["strategy"], scheduled, ok["batch_size"].astype(int))
    ]
    pair = ["dataset", "model", "regime", "seed"]
    score = ok.pivot_table(index=pair, columns="retraining", values="step_aulc_accuracy", aggfunc="first") * 100.0
    base = score["every label"] if "every label" in score else None
    ok["compute_seconds"] = ok["fit_seconds"] + ok["query_seconds_total"]
    means = ok.groupby("retraining").agg(fits=("n_fits", "mean"), seconds=("compute_seconds", "mean"))
    means["step_aulc"] = score.mean()
    if base is not None:
        means["fits_saved"] = 100.0 * (1.0 - means["fits"] / means.loc["every label", "fits"])
        means["vs_every_label"] = score.sub(base, axis=0).mean()
    order = sorted(means.index, key=lambda r: (r.startswith("schedule"), -means.loc[r, "fits"]))
    columns = [c for c in ("fits", "fits_saved", "seconds", "step_aulc", "vs_every_label") if c in means]
    return means.loc[order, columns]


def run_demo(
    config: DemoConfig | None = None, *, progress: bool = True, echo: Callable[[str], None] | None = print
) -> DemoResult:
    """Train a policy, benchmark it (and the released default) against random and margin, and write the report.

    Parameters
    ----------
    config : DemoConfig, optional
        The settings (default: ``DemoConfig()``).
    progress : bool
        Show the trainer's and the benchmark's progress bars.
    echo : callable or None
        Receives each line of the narrative and the final table (None: silent).

    Returns
    -------
    DemoResult

    Raises
    ------
    InvalidInputError
        When ``OUT`` holds a training run or a benchmark made with other settings (another
        seed, or ``quick`` against the full demo): choose another ``out_dir``.
    """
    from metalearn.benchmark import format_table, run_benchmark, write_report
    from metalearn.benchmark.config import POLICY_PREFIX
    from metalearn.benchmark.storage import write_table
    from metalearn.policies.file import released_policy_names
    from metalearn.policies.trainers.suites import suite_label
    from metalearn.policies.trainers.checkpoints import CHECKPOINT_DIR, checkpoint_exists
    from metalearn.policies.trainers.es import train_es

    config = (config or DemoConfig()).validate()
    say = echo or (lambda _line: None)
    start = time.perf_counter()
    train_config = config.training_config()

    # -- 1. meta-train (resumable: continues or reuses OUT/train) ------------------------------
    budget = (
        f"{train_config.iterations} generation" if config.quick else f"a {config.train_minutes:g}-minute budget"
    )
    say(
        f"[1/4] meta-training: evolution strategies (CMA-ES on the AULC difference to margin, starting from margin "
        f"sampling) on the '{suite_label(train_config.suite)}' task suite, {train_config.problems_per_generation} "
        f"tasks per generation, {budget} -> {config.train_dir}"
    )
    before = _iterations_done(config.train_dir / "last.safetensors")
    resume = checkpoint_exists(config.train_dir / CHECKPOINT_DIR)
    training = train_es(train_config, resume=resume, progress=progress)
    trained = training.iterations - before
    if trained:
        say(f"      trained {trained} generation(s) now, {training.iterations} in all, in {training.wall_seconds:.0f} s")
    else:
        more = "" if config.quick else "; a larger --train-minutes trains on"
        say(f"      reused the finished run ({training.iterations} generation(s), {training.wall_seconds:.0f} s){more}")
    best = training.best_validation
    if best and training.best_iteration == -1:
        say(
            f"      policy: no searched policy beat margin on the {best['held_in_problems']} keep-the-best tasks yet: "
            "the fresh policy is the search's start, margin sampling"
        )
    elif best:
        say(
            f"      policy: generation {training.best_iteration}, best on {best['held_in_problems']} keep-the-best tasks: "
            f"{best['held_in_delta_vs_margin']:+.2f} AULC points vs margin (se {best['held_in_se']:.2f})"
        )

    # -- 2. benchmark the fresh (and released default) policy against random and margin -------
    fresh = f"{POLICY_PREFIX}{config.policy_path}"
    strategies = ["random", "margin", fresh]
    labels = {fresh: FRESH_LABEL}
    if config.include_default:
        if DEFAULT_POLICY in released_policy_names():
            default = f"{POLICY_PREFIX}{DEFAULT_POLICY}"
            strategies.append(default)
            labels[default] = DEFAULT_LABEL
        else:
            say(f"      no released policy named '{DEFAULT_POLICY}' in this installation: the fresh one only")
    bench_config = config.benchmark_config(strategies)
    b = bench_config
    say(
        f"\n[2/4] benchmark: {', '.join(labels.get(s, s) for s in strategies)} on {', '.join(b.datasets)}; "
        f"models {', '.join(b.models)}, {b.regimes[0]} start, batch {b.batch_sizes[0]}, budget {b.label_budget}, "
        f"{b.n_seeds} paired seeds -> {config.benchmark_dir}"
    )
    bench = run_benchmark(bench_config, config.benchmark_dir, n_jobs=config.n_jobs, progress=progress)
    out = config.benchmark_dir
    write_table(bench.runs, out / "runs.csv")  # the stored strategy names, as `metalearn benchmark` writes them
    write_table(bench.curves, out / "curves.csv")
    n_failed = len(bench.failed)
    say(
        f"      {len(bench.runs)} runs ({bench.computed} computed now, {len(bench.runs) - bench.computed} reused, "
        f"{n_failed} failed) in {bench.wall_seconds:.0f} s"
    )

    # -- 3. table and report (display names for the policies) ---------------------------------
    runs = bench.runs.assign(strategy=bench.runs["strategy"].replace(labels))
    curves = bench.curves.assign(strategy=bench.curves["strategy"].replace(labels))
    ok = runs[runs["status"] == "ok"]
    if ok.empty:
        raise InvalidInputError(f"every benchmark run failed; the errors are in {out / 'runs.csv'}")
    table = summary_table(runs, reference=bench_config.reference)
    report = write_report(
        runs, curves, out, reference=bench_config.reference,
        title="metalearn demo: a freshly meta-trained policy against random and margin sampling",
    )
    say(
        f"\n[3/4] area under the accuracy learning curve (x100; per dataset: mean over models and seeds), "
        f"best mean rank first; vs {bench_config.reference}: mean paired difference in points, "
        "W/T/L: problems won, tied, lost\n"
    )
    headers = {
        "mean_rank": "mean rank", "mean_diff": f"vs {bench_config.reference}", "wins": "W", "ties": "T", "losses": "L",
        "aulc_accuracy": "AULC acc.", "final_accuracy": "final acc.", "query_ms": "query ms",
    }
    headers.update({c: str(c) for c in table.columns if c not in headers})
    say(format_table(table.reset_index(), headers=headers))
    say(f"\n{FRESH_LABEL}: {config.policy_path}   (model card: metalearn inspect {config.policy_path})")
    if DEFAULT_LABEL in labels.values():
        say(f"{DEFAULT_LABEL}: the released policy '{DEFAULT_POLICY}'")
    documents = [str(report[k]) for k in ("html", "md") if k in report]
    plots = [p for p in report.values() if p.suffix == ".png"]
    say(f"report: {', '.join(documents)}")
    say(f"plots:  {', '.join(str(p) for p in plots)}")
    say(f"tables: {out / 'runs.csv'}, {out / 'curves.csv'}")

    # -- 4. compute: what a batch schedule saves against retraining after every label --------------
    from metalearn.schedules import released_schedule_names

    schedule = config.schedule or (DEFAULT_SCHEDULE if DEFAULT_SCHEDULE in released_schedule_names() else FALLBACK_SCHEDULE)
    picker = next((s for s, label in labels.items() if label == DEFAULT_LABEL), fresh)
    compute_config = config.compute_config(picker, schedule)
    c = compute_config
    say(
        f"\n[4/4] compute: the {labels[picker]} retraining after every label, after every {c.batch_sizes[-1]}, "
        f"and as the schedule '{schedule}' says; {', '.join(c.datasets)}, model {', '.join(c.models)}, budget "
        f"{c.label_budget}, {c.n_seeds} paired seeds -> {config.compute_dir}"
    )
    compute = run_benchmark(compute_config, config.compute_dir, n_jobs=config.n_jobs, progress=progress)
    write_table(compute.runs, config.compute_dir / "runs.csv")
    write_table(compute.curves, config.compute_dir / "curves.csv")
    saving = compute_table(compute.runs, picker)
    say(
        "      fits: task-model fits per run; saved: % fewer than after every label; seconds: fit + query per run; "
        "step AULC: the score a user holds while buying labels (x100), and its paired difference to retraining "
        "after every label\n"
    )
    say(format_table(saving.reset_index(), headers={
        "retraining": "retrain", "fits": "fits", "fits_saved": "saved %", "seconds": "seconds",
        "step_aulc": "step AULC", "vs_every_label": "vs every label",
    }))
    row = saving.loc[f"schedule {schedule}"] if f"schedule {schedule}" in saving.index else None
    if row is not None and "fits_saved" in saving:
        say(
            f"\nthe schedule '{schedule}' retrained {row['fits_saved']:.0f}% less often than after every label, for "
            f"{row['vs_every_label']:+.2f} step-AULC points (tables: {config.compute_dir / 'runs.csv'})"
        )
    return DemoResult(
        training=training, trained_iterations=trained, benchmark=bench, labels=labels, table=table, report=report,
        compute=saving, wall_seconds=time.perf_counter() - start,
    )
