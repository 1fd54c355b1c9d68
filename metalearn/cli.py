"""The ``metalearn`` command line.

Subcommands:

- ``metalearn demo``: the main job on embedded defaults: a short meta-training run on the
  synthetic suite, then a benchmark of the fresh policy (and the released default) against
  random and margin on scikit-learn data, with its table, report and plots (resumable).
- ``metalearn benchmark``: the evaluation protocol (paired runs, statistics, report).
- ``metalearn strategies``: the registered strategies and their parameters.
- ``metalearn features``: the feature schemas, one line per feature.
- ``metalearn inspect FILE_OR_NAME``: a policy file's (or a stopping-rule or schedule file's) model card
  (``--json``: raw metadata).
- ``metalearn train [--method es|imitation|lal|ppo|schedule] --out DIR``: meta-train a policy file
  (default: evolution strategies on the ``pool@2`` features; ``--resume`` continues a run);
  ``--method schedule`` learns a batch schedule file (``OUT/schedule.safetensors``).
- ``metalearn next-batch --data records.csv --labels labels.csv --out to_label.csv``: the next
  records to label, with the policy's history kept in a state file beside the labels, and
  the stopping rule's estimate and recommendation (``--stop-rule``), a batch schedule's
  suggestion (``--schedule``), and records handed out earlier kept reserved until labeled or
  released (``--release-pending``, ``--release``).
- ``metalearn train-stopping --out DIR``: learn the stopping rule from simulated runs (``--resume``
  continues a run).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence


from metalearn.common.dask_address import dask_address_argument
from metalearn.common.text import printable, printable_json
from metalearn.exceptions import InvalidInputError, MetalearnError, MissingDependencyError

__all__ = ["main", "build_parser"]

def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Appends every option's default to its help, unless the help already states it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings or action.required or "default" in text.lower()
            or default is None or default is False or default is argparse.SUPPRESS
        ):
            return text
        shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


class _Parser(argparse.ArgumentParser):
    """An argument parser whose help shows every option's default (:class:`_HelpFormatter`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def _version() -> str:
    from metalearn import __version__

    return f"metalearn {__version__}"


def build_parser() -> argparse.ArgumentParser:
    from metalearn.features.registry import registered_schemas
    parser = _Parser(prog="metalearn", description="Learn and compare active-learning strategies.")
    parser.add_argument("--version", action="version", version=_version(), help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True)  # subcommand parsers are _Parser too

    demo = sub.add_parser(
        "demo",
        help="the main job: train a policy for a few minutes, benchmark it against random and margin, report",
        description=(
            "Meta-train a querying policy with evolution strategies (CMA-ES on the AULC difference to margin, "
            "starting from margin sampling) on the synthetic task suite for a few minutes (OUT/train), then "
            "benchmark it, and the released default policy if there is one, against "
            "random and margin sampling on scikit-learn datasets with logistic regression and random forests "
            "(OUT/benchmark); print the summary table and write the report with its plots. Rerunning resumes: a "
            "finished training run and stored benchmark runs are reused."
        ),
    )
    demo.add_argument("--out", default=None, help="demo folder (default out/demo; with --quick out/demo-quick)")
    demo.add_argument("--seed", type=int, default=0, help="master seed of training and benchmark")
    demo.add_argument(
        "--train-minutes", type=float, default=None, metavar="M",
        help="meta-training budget in minutes over all sessions (default 4; a larger one continues the run)",
    )
    demo.add_argument("--jobs", type=int, default=-1, help="local worker processes (-1: all cores)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.add_argument(
        "--quick", action="store_true",
        help="seconds instead of minutes: one training generation on the tiny smoke suite and a tiny benchmark",
    )

    bench = sub.add_parser(
        "benchmark",
        help="run the evaluation protocol: paired runs, statistics, report",
        description=(
            "Run every strategy on every (dataset, model, regime, batch size, seed), paired, store each run as it "
            "finishes, and write tables and a report. Rerunning the same command resumes: only missing runs are "
            "computed."
        ),
    )
    bench.add_argument(
        "--strategies", type=_csv, default=None,
        help="strategy names, comma-separated (default: all classic ones); 'oracle' adds the look-ahead upper reference",
    )
    bench.add_argument(
        "--datasets", type=_csv, required=True,
        help="dataset specs: sklearn:NAME, a CSV/Parquet path, folder:PATH[:SPLIT], suite:NAME[:N]",
    )
    bench.add_argument("--models", type=_csv, default=["logreg", "rf"], help="task models (= query models)")
    bench.add_argument("--regimes", type=_csv, default=["cold", "warm"], help="cold and/or warm start")
    bench.add_argument(
        "--batch-sizes", type=lambda t: [int(v) for v in _csv(t)], default=[1, 10], help="records per query, comma-separated"
    )
    bench.add_argument("--budget", type=int, default=100, help="labels bought per run")
    bench.add_argument("--seeds", type=int, default=10, help="paired seeds per setting")
    bench.add_argument("--seed", type=int, default=0, help="master seed")
    bench.add_argument("--test-size", type=float, default=0.3, help="fraction of each dataset held out for the learning curve")
    bench.add_argument("--n-warm", type=int, default=20, help="initial labels in the warm regime")
    bench.add_argument("--max-pool", type=int, default=None, help="subsample larger pools to this size (default: whole pools)")
    bench.add_argument("--oracle", action="store_true", help="add the greedy look-ahead oracle (expensive)")
    bench.add_argument(
        "--warm-start", action="store_true",
        help="refit logreg, mlp, sgd and hgb warm (one model kept across loops, continuing from its last solution); "
        "other models refit from scratch as by default",
    )
    bench.add_argument("--oracle-candidates", type=int, default=20, help="candidates the oracle evaluates per query")
    bench.add_argument(
        "--reference", default=None, help="strategy the statistics compare against (default margin); one of --strategies"
    )
    bench.add_argument("--out", required=True, help="result folder (resumable)")
    bench.add_argument("--jobs", type=int, default=-1, help="local worker processes (-1: all cores)")
    bench.add_argument(
        "--dask", default=None, metavar="ADDRESS", type=dask_address_argument,
        help="Dask scheduler address, or 'local[:N]' (default: no Dask, --jobs)",
    )
    bench.add_argument("--format", choices=["csv", "parquet"], default="csv", help="format of the result tables")
    bench.add_argument("--no-report", action="store_true", help="skip the Markdown/HTML report and plots")
    bench.add_argument(
        "--report-dir",
        default=None,
        metavar="DIR",
        help="write the tables and the report here instead of OUT (several reports, e.g. on subsets of the "
        "strategies, from one result folder; default: OUT)",
    )
    bench.add_argument("--quiet", action="store_true", help="no progress bar")
    bench.add_argument(
        "--stop-rules", type=_csv, default=[], metavar="RULES",
        help="stopping rules watching every run (e.g. default,stabilizing_predictions,fixed_budget): labels and "
        "scores at each rule's stop, a table and a plot of labels saved against points lost (default: none)",
    )
    bench.add_argument(
        "--schedules", type=_csv, default=[], metavar="SCHEDULES",
        help="batch schedules (e.g. geometric:2:2,fixed:5, or a schedule file): each strategy also runs under each, "
        "at the smallest --batch-sizes, named STRATEGY@SCHEDULE in the tables and the compute plots (default: none)",
    )
    bench.add_argument(
        "--stored-only",
        action="store_true",
        help="compute nothing: tables and report from the runs stored so far (a look at an unfinished benchmark)",
    )

    sub.add_parser("strategies", help="list the registered strategies")
    sub.add_parser("features", help="describe the feature schemas (pool@1, pool@2, pool@3, proba@1)")

    inspect = sub.add_parser(
        "inspect",
        help="show a policy file's (or a stopping-rule or schedule file's) model card",
        description=(
            "Read and check a policy file (or a released policy name) and print its model card: what it was "
            "trained on and how, its architecture, feature schema, window, candidates and validation scores. "
            "A stopping-rule file (e.g. policies/stopping/default.safetensors) or a batch-schedule file gets its own card."
        ),
    )
    inspect.add_argument("policy", metavar="FILE_OR_NAME", help="a .safetensors policy, stopping-rule or schedule file, or a released policy name")
    inspect.add_argument("--json", action="store_true", help="print the raw metadata as JSON")

    train = sub.add_parser(
        "train",
        help="meta-train a querying policy (imitation, LAL, PPO or evolution strategies) and write a policy file",
        description=(
            "Simulate active-learning loops on tasks from a task suite and learn a querying policy from them: "
            "imitation of the look-ahead oracle (DAgger), LAL regression of the oracle's gains, PPO, or evolution "
            "strategies (es: CMA-ES on the paired AULC difference to margin, searching a context-gated linear "
            "scorer of the pool@2 features). Writes "
            "OUT/policy.safetensors (best on the selection tasks), OUT/last.safetensors, OUT/progress.csv and "
            "a checkpoint at every iteration boundary; --resume continues an interrupted run (without a checkpoint "
            "it starts fresh). The default, es on the pool@2 features, is the strongest combination benchmarked."
        ),
    )
    train.add_argument(
        "--method", choices=["es", "imitation", "lal", "ppo", "schedule"], default="es",
        help="meta-training method (default es; schedule: the learned batch schedule, CMA-ES on step-curve AULC minus a price per fit)",
    )
    train.add_argument("--suite", default=None, metavar="NAME_OR_TOML", help="task suite: a shipped name (envs/NAME.toml: synthetic, synthetic_and_train, meta_train, held_in, meta_train_users, held_in_users, smoke) or a .toml path (default: es and schedule meta_train, the others synthetic)")
    train.add_argument("--seed", type=int, default=0, help="master seed")
    budget = train.add_mutually_exclusive_group()
    budget.add_argument(
        "--iterations", type=int, default=None,
        help="iterations to run (default 10; es: generations; ppo: rollout-and-update chunks, default 391)",
    )
    budget.add_argument(
        "--time-budget", type=float, default=None, metavar="SECONDS",
        help="wall-clock budget instead; checked at iteration boundaries",
    )
    train.add_argument("--out", required=True, help="run folder (policies, progress log, checkpoint)")
    train.add_argument("--resume", action="store_true", help="continue the run stored in --out (none: start fresh)")
    train.add_argument("--jobs", type=int, default=1, help="local worker processes (-1: all cores)")
    train.add_argument(
        "--dask", default=None, metavar="ADDRESS", type=dask_address_argument,
        help="Dask scheduler address, or 'local[:N]' (default: no Dask, --jobs)",
    )
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.add_argument("--selection-tasks", type=int, default=None, help="tasks of the keep-the-best selection (0: off; default: the method's)")
    train.add_argument("--validation-tasks", type=int, dest="selection_tasks", help=argparse.SUPPRESS)  # deprecated alias
    train.add_argument("--episodes", type=int, default=None, help="episodes collected per iteration (imitation, lal; default: the method's)")
    train.add_argument("--candidates", type=int, default=None, metavar="K", help="candidates scored per loop (default: the method's)")
    train.add_argument(
        "--schema", choices=[e.config_name for e in registered_schemas() if e.trainers], default=None,
        help=(
            "feature schema of the policy (default pool@2): pool (pool@1: feature values, labels, multi-loop "
            "history), pool@2 (plus cluster coverage, typicality and within-batch signals), pool@3 (plus a loop "
            "context that describes the task and the model) or proba (class probabilities only, for baal "
            "heuristics; imitation, lal); `metalearn features` lists them"
        ),
    )
    train.add_argument(
        "--oracle-horizon", type=int, default=None, metavar="H",
        help=(
            "look-ahead depth of the oracle's gains (imitation, lal; default 1): with H > 1 a candidate's gain is the "
            "mean test score over H models (the candidate, then H-1 margin-sampling picks) minus the base score; "
            "costs K*H fits per loop"
        ),
    )
    train.add_argument(
        "--selection-suite", default=None, metavar="NAME_OR_TOML",
        help=(
            "suite of the keep-the-best tasks (datasets never trained on): es and schedule default held_in; imitation and lal "
            "default the training suite"
        ),
    )
    train.add_argument("--population", type=int, default=None, help="es, schedule: candidates per generation (default: CMA-ES's)")
    train.add_argument(
        "--problems", type=int, default=None, metavar="N",
        help="es, schedule: training tasks per generation, shared by every candidate (default: es 32, schedule 16)",
    )
    train.add_argument(
        "--no-history", action="store_true",
        help="es: search only features of the current loop (the ablation of the multi-loop history)",
    )
    train.add_argument(
        "--search-features", type=_name_list, default=None, metavar="NAMES",
        help="es: comma-separated candidate features whose weights are searched (default: the five low-budget and history signals)",
    )
    train.add_argument(
        "--search-context", type=_name_list, default=None, metavar="NAMES",
        help="es: comma-separated context features that gate each weight, 'bias' for a constant (default: bias and the labels bought)",
    )
    train.add_argument(
        "--fitness", choices=["mean", "rank"], default=None,
        help="es: mean paired AULC difference to margin (default), or mean per-task rank among the candidates and margin",
    )
    train.add_argument("--mirrored", action="store_true", help="es: mirrored sampling (half of each generation reflected about the mean)")
    train.add_argument(
        "--price-per-fit", type=float, default=None, metavar="POINTS",
        help="schedule: step-curve AULC points one task-model fit costs in the objective (default 0.05)",
    )
    train.add_argument(
        "--baseline-schedule", default=None, metavar="SPEC",
        help="schedule: the rule the objective is paired against (default geometric:2:2; fixed:N, geometric:R[:EVERY])",
    )
    train.add_argument(
        "--residual", action="store_true",
        help=(
            "residual scorer (architecture deepsets v2): the score is a margin prior plus a learned correction that "
            "starts at zero, so training starts from margin sampling's ranking"
        ),
    )

    nb = sub.add_parser(
        "next-batch",
        help="pick the next records to label from a table of records and the labels so far",
        description=(
            "Read the records (an id column and feature columns) and the labels gathered so far (id and label, any "
            "subset), fit the model on the labeled records and write the next records to label with their rank and "
            "score. Run it again as labels come in: the policy's multi-loop history is kept in a state file beside "
            "the labels (LABELS.metalearn-state), so every loop benefits from the earlier ones."
        ),
    )
    nb.add_argument("--data", required=True, metavar="RECORDS", help="records table (CSV, TSV or Parquet) with an id column")
    nb.add_argument("--labels", required=True, help="labels table: id and label columns, any subset of the records")
    nb.add_argument("--out", required=True, help="where to write the records to label (CSV/TSV/Parquet by suffix)")
    nb.add_argument("--model", default="rf", help="task model fitted on the labeled records (= query model)")
    nb.add_argument(
        "--batch-size", type=int, default=None,
        help="records to pick (default: the --schedule's suggestion with a schedule, else 20)",
    )
    nb.add_argument(
        "--policy", default="default", metavar="NAME|PATH|STRATEGY",
        help="a released policy name, a policy file, or a classic strategy name such as margin or random",
    )
    nb.add_argument("--id-column", default="id", help="column of record ids in RECORDS and LABELS")
    nb.add_argument("--label-column", default="label", help="column of labels in LABELS")
    nb.add_argument(
        "--classes", type=_csv, default=None,
        help="allowed label values, comma-separated (typo guard; default: any value in LABELS)",
    )
    nb.add_argument("--state", default=None, help="state file (default: LABELS.metalearn-state)")
    nb.add_argument("--seed", type=int, default=None, help="seed of the first run (later runs continue its stream; default: fresh entropy)")
    nb.add_argument("--budget", type=int, default=None, help="labels you intend to buy (default 100; kept in the state)")
    nb.add_argument(
        "--stop-rule", default="default", metavar="NAME|PATH|none",
        help="stopping rule asked whether to stop buying labels: the released learned rule (default), a rule file, "
        "a classic criterion (stabilizing_predictions, overall_uncertainty, max_confidence, classification_change, "
        "fixed_budget), or none",
    )
    nb.add_argument(
        "--schedule", default=None, metavar="SPEC|PATH",
        help="batch schedule asked how many records to buy before the next retrain (fixed:N, geometric:R[:EVERY], or "
        "a learned schedule file); prints its suggestion and why, and picks that many unless --batch-size is given",
    )
    nb.add_argument(
        "--release-pending", action="store_true",
        help="hand out again the records of earlier runs that are still unlabeled (by default they stay reserved "
        "for whoever received them, so two people never get the same records)",
    )
    nb.add_argument(
        "--release", type=_csv, default=None, metavar="ID,...",
        help="ids of pending records to hand out again (the other pending records stay reserved)",
    )

    ts = sub.add_parser(
        "train-stopping",
        help="learn the stopping rule from simulated runs and write a stopping-rule file",
        description=(
            "Simulate active-learning runs on a task suite (synthetic tasks and the train split only) whose whole "
            "learning curves are known, learn the gain in test accuracy that the next labels bring from the multi-loop "
            "metadata features, calibrate its quantiles and choose the recommended threshold on held-in train "
            "datasets, and write OUT/stopping.safetensors (weights + JSON model card). Runs are stored as they "
            "finish: rerunning with --resume, also with a larger --tasks, computes only the missing ones (without "
            "--resume a folder that holds a run is refused)."
        ),
    )
    ts.add_argument("--out", required=True, help="run folder (runs cache, loops table, rule file)")
    ts.add_argument("--suite", default="synthetic_and_train", metavar="NAME_OR_TOML", help="task suite (default synthetic_and_train)")
    ts.add_argument("--tasks", type=int, default=120, help="tasks drawn from the suite (each run per model and strategy; default 120)")
    ts.add_argument("--models", type=_csv, default=["logreg", "nb"], help="task models (default logreg,nb)")
    ts.add_argument("--strategies", type=_csv, default=["margin", "policy:default"], help="querying strategies (default margin,policy:default)")
    ts.add_argument("--batch-size", type=int, default=10, help="records per query (default 10)")
    ts.add_argument("--budget", type=int, default=500, help="labels per run, or the whole pool (default 500)")
    ts.add_argument("--horizon", type=int, default=200, help="labels over which the gain is predicted (default 200)")
    ts.add_argument("--epochs", type=int, default=400, help="training epochs of the gain model (default 400)")
    ts.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    ts.add_argument("--resume", action="store_true", help="continue the run stored in --out (none: start fresh)")
    return parser


def _check_jobs(jobs: int) -> None:
    """--jobs: -1 (all cores) or a positive number of workers, as joblib counts them."""
    if jobs == 0 or jobs < -1:
        raise InvalidInputError(f"--jobs must be -1 (all cores) or a positive number of worker processes, got {jobs}")


def _check_sizes(args: argparse.Namespace, limits: dict[str, tuple[int, int]]) -> None:
    """Refuse sizes no run can use before any work (out of range, exhausting memory, or never ending),
    whichever method would read them."""
    for option, (minimum, limit) in limits.items():
        field = option.lstrip("-").replace("-", "_")
        value = getattr(args, field, None)
        if value is not None and value < minimum:
            raise InvalidInputError(f"{option} ({field}) must be >= {minimum}, got {value}")
        if value is not None and value > limit:
            raise InvalidInputError(f"{option} ({field}) {value} is larger than any run can use (limit {limit})")


def _check_finite(value: float | None, option: str) -> None:
    if value is not None and not math.isfinite(value):
        raise InvalidInputError(f"{option} must be a finite number, got {value}")


def _demo(args: argparse.Namespace) -> int:
    from metalearn.demo import DemoConfig, run_demo

    _check_jobs(args.jobs)
    _check_finite(args.train_minutes, "--train-minutes")

    config = DemoConfig(seed=args.seed, n_jobs=args.jobs, quick=args.quick)
    config.out_dir = args.out or ("out/demo-quick" if args.quick else config.out_dir)
    if args.train_minutes is not None:
        if not args.train_minutes > 0:
            raise InvalidInputError(f"--train-minutes must be positive, got {args.train_minutes}")
        if args.quick:
            print("metalearn: note: --quick trains one generation; --train-minutes is not used", file=sys.stderr)
        config.train_minutes = args.train_minutes
    try:
        result = run_demo(config, progress=not args.quiet)
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: finished work is stored in {config.out_dir}; rerun the same command to resume",
            file=sys.stderr,
        )
        return 130
    print(f"\ndemo done in {result.wall_seconds:.0f} s")
    return 0


def _benchmark(args: argparse.Namespace) -> int:
    from metalearn.benchmark import BenchmarkConfig, run_benchmark
    from metalearn.benchmark.runner import ignore_further_interrupts
    from metalearn.benchmark.report import format_table, write_report
    from metalearn.benchmark.stats import overall_comparison, strategy_summary

    defaults = BenchmarkConfig()
    strategies = args.strategies or list(defaults.strategies)
    if args.oracle and "oracle" not in strategies:
        strategies.append("oracle")
    _check_jobs(args.jobs)
    if args.format == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise InvalidInputError(
                "--format parquet needs pyarrow, which is not installed (pip install 'metalearn-al[parquet]'); "
                "use --format csv"
            ) from None
    if args.reference is not None and args.reference not in strategies:
        raise InvalidInputError(
            f"--reference {printable(args.reference)!r} is not among the benchmark's strategies "
            f"({', '.join(strategies)}); the statistics compare every strategy with it"
        )
    reference = args.reference or defaults.reference
    config = BenchmarkConfig(
        strategies=strategies,
        datasets=args.datasets,
        models=args.models,
        regimes=args.regimes,
        batch_sizes=args.batch_sizes,
        label_budget=args.budget,
        n_seeds=args.seeds,
        seed=args.seed,
        test_size=args.test_size,
        n_warm=args.n_warm,
        max_pool=args.max_pool,
        oracle_candidates=args.oracle_candidates,
        reference=reference,
        stop_rules=args.stop_rules,
        warm_start=args.warm_start,
        schedules=args.schedules,
    )
    try:
        result = run_benchmark(
            config, args.out, n_jobs=args.jobs, dask=args.dask, progress=not args.quiet, stored_only=args.stored_only
        )
    except KeyboardInterrupt:
        ignore_further_interrupts()  # a second Ctrl-C during the exit must not kill it by signal
        print(
            f"\ninterrupted: finished runs are stored in {args.out}; rerun the same command to resume",
            file=sys.stderr,
        )
        return 130
    assert result.out_dir is not None
    out = Path(args.report_dir) if args.report_dir else result.out_dir
    from metalearn.benchmark.storage import write_table

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInputError(
            f"cannot create the report folder {out}: {exc.strerror or exc}; choose another --report-dir"
        ) from None
    write_table(result.runs, out / f"runs.{args.format}")  # atomic: a full disk leaves no truncated table
    write_table(result.curves, out / f"curves.{args.format}")
    ok = result.runs[result.runs["status"] == "ok"]
    print(
        f"\n{len(result.runs)} runs ({result.computed} computed now, {len(result.failed)} failed) "
        f"in {result.wall_seconds:.0f} s; results in {result.out_dir}"
        + (f", tables and report in {out}" if out != result.out_dir else "")
    )
    if not ok.empty:
        print("\n" + format_table(strategy_summary(result.runs)))
        if config.reference in set(ok["strategy"]):
            print("\n" + format_table(overall_comparison(result.runs, reference=config.reference)))
        elif config.reference not in strategies:
            print(f"metalearn: note: {config.reference} is not among --strategies: no comparison against it", file=sys.stderr)
    if not args.no_report and not ok.empty:
        files = write_report(result.runs, result.curves, out, reference=config.reference)
        print("\nreport: " + ", ".join(str(p) for p in files.values()))
    if config.stop_rules and not ok.empty:
        from metalearn.stopping.evaluation import stopping_summary, stopping_table, write_stopping_report

        columns = ["rule", "runs", "stopped", "labels_at_stop", "labels_saved", "points_lost", "p90_points_lost"]
        print("\nstopping rules:\n" + format_table(stopping_summary(stopping_table(result.runs))[columns]))
        stop_files = write_stopping_report(result.runs, result.curves, out)
        print("stopping report: " + ", ".join(str(p) for p in stop_files.values()))
    return 0


def _strategies() -> int:
    from metalearn.strategies import STRATEGIES

    for name, cls in STRATEGIES.items():
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        print(f"{name:18s} {doc}")
    return 0


def _features() -> int:
    from metalearn.features import SCHEMAS

    for i, versions in enumerate(SCHEMAS.values()):
        for schema in versions.values():
            if i:
                print()
            print(f"schema {schema.id}: {schema.summary}" if schema.summary else f"schema {schema.id}")
            for group, names in (("candidate", schema.candidate_features), ("context", schema.context_features)):
                print(f"\n{group} features:")
                for name in names:
                    print(f"  {name:32s} {schema.descriptions[name]}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    import json

    from metalearn.policies.file import format_model_card, read_policy

    try:
        policy = read_policy(args.policy)
    except MetalearnError as policy_error:
        from metalearn.stopping.file import format_stopping_card, read_stopping_rule

        from metalearn.schedules.file import format_schedule_card, read_schedule

        # A stopping-rule or schedule file (the same safe container) gets its own model card.
        def stopping_card() -> tuple[dict[str, Any], str]:
            rule = read_stopping_rule(args.policy)
            return rule.metadata, format_stopping_card(rule)

        def schedule_card() -> tuple[dict[str, Any], str]:
            schedule = read_schedule(args.policy)
            return schedule.metadata, format_schedule_card(schedule)

        for card in (stopping_card, schedule_card):
            try:
                metadata, text = card()
            except MetalearnError:
                continue
            # JSON escapes C0 controls itself; the card is escaped line by line
            print(printable_json(json.dumps(metadata, indent=2, ensure_ascii=False)) if args.json else text)
            return 0
        raise policy_error from None
    if args.json:  # JSON escapes C0 controls itself; C1 and format characters are escaped here
        print(printable_json(json.dumps(policy.metadata, indent=2, ensure_ascii=False)))
    else:
        print(format_model_card(policy))
    return 0


#: ``metalearn train --method``: the module, configuration class and function of each trainer.
_TRAINERS = {
    "es": ("metalearn.policies.trainers.es", "ESConfig", "train_es"),
    "imitation": ("metalearn.policies.trainers.imitation", "ImitationConfig", "train_imitation"),
    "lal": ("metalearn.policies.trainers.lal", "LALConfig", "train_lal"),
    "ppo": ("metalearn.policies.trainers.ppo", "PPOConfig", "train_ppo"),
    "schedule": ("metalearn.policies.trainers.schedule", "ScheduleTrainConfig", "train_schedule"),
}
#: Configuration field of each ``metalearn train`` option whose name differs from the field's.
_TRAIN_FIELDS = {"out": "out_dir", "jobs": "n_jobs", "candidates": "n_candidates", "episodes": "episodes_per_iteration",
                 "problems": "problems_per_generation", "no_history": "history",  # --no-history: history=False
                 "search_features": "candidate_features", "search_context": "context_features"}


def _name_list(text: str) -> tuple[str, ...]:
    """A comma-separated list of names (argparse type), without empty entries."""
    names = tuple(part.strip() for part in str(text).split(","))
    if not names or any(not n for n in names):
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {printable(text)!r}")
    return names


def _train(args: argparse.Namespace) -> int:
    from metalearn.policies.file import MAX_N_CANDIDATES

    _check_jobs(args.jobs)
    _check_finite(args.time_budget, "--time-budget")
    _check_finite(args.price_per_fit, "--price-per-fit")
    _check_sizes(args, {"--candidates": (1, MAX_N_CANDIDATES), "--episodes": (1, 10**6), "--iterations": (1, 10**6),
                        "--oracle-horizon": (1, 1000), "--selection-tasks": (0, 10**5), "--seed": (0, 2**63 - 1)})
    from metalearn.features.registry import trainable_names
    from metalearn.features.schema_spec import TRAINERS

    # A method that trains no feature schema (schedule: its own loop features) only notes --schema as unused.
    if args.schema is not None and args.method in TRAINERS and args.schema not in trainable_names(args.method):
        methods = " or ".join(f"--method {m}" for m in TRAINERS if args.schema in trainable_names(m))
        raise InvalidInputError(
            f"--method {args.method} trains {', '.join(trainable_names(args.method))}"
            + (" (the PoolAL-v0 observations)" if args.method == "ppo" else "")
            + f"; --schema {args.schema} needs {methods}"
        )
    module, config_name, train_name = _TRAINERS[args.method]
    try:
        Config, trainer = (getattr(importlib.import_module(module), name) for name in (config_name, train_name))
    except ImportError as exc:
        if isinstance(exc, MissingDependencyError):
            raise  # names the extra to install
        raise InvalidInputError(f"--method {args.method} is not available in this installation ({exc})") from None
    fields = {f.name for f in dataclasses.fields(Config)}
    given = {k: v for k, v in vars(args).items() if k not in ("command", "method", "resume", "quiet") and v is not None and v is not False}
    given.setdefault("schema", "pool@2")
    unused = [k for k in given if _TRAIN_FIELDS.get(k, k) not in fields and (k != "schema" or args.schema)]
    settings = {_TRAIN_FIELDS.get(k, k): v for k, v in given.items() if _TRAIN_FIELDS.get(k, k) in fields and k != "no_history"}
    if args.time_budget is not None:
        settings["iterations"] = None
    if args.no_history and "history" in fields:  # the es ablation: no multi-loop history feature is searched
        settings.update(history=False, candidate_features=tuple(f for f in Config.candidate_features if f not in _es_history()))
    config = Config(**settings)
    (getattr(config, "validate", None) or config.validated)()  # a bad value is refused before any note
    for option in unused:
        print(f"metalearn: note: --{option.replace('_', '-')} is not used by --method {args.method}", file=sys.stderr)
    start = time.perf_counter()
    try:
        result = trainer(config, resume=args.resume, progress=not args.quiet)
    except KeyboardInterrupt:
        print(f"\ninterrupted: the last finished iteration is checkpointed in {args.out}; rerun the same command with "
              "--resume to continue", file=sys.stderr)
        return 130
    print(f"\n{args.method}: {result.iterations} iteration(s) in {time.perf_counter() - start:.0f} s")
    print(f"{'schedule' if args.method == 'schedule' else 'policy'}: {result.policy_path}\nlast:   {result.last_path}")
    print(_selection_line(args.method, result))
    return 0


def _es_history() -> frozenset[str]:
    from metalearn.policies.trainers.es import HISTORY_FEATURES

    return HISTORY_FEATURES


def _selection_line(method: str, result: Any) -> str:
    """One line on the kept policy: its keep-the-best figures, or why there are none."""
    best = result.best_validation
    if best and method == "es" and result.best_iteration == -1:
        return (f"no searched policy beat margin on the {best['held_in_problems']} held-in tasks: the policy kept is the "
                "search's start, which ranks exactly as margin sampling")
    if best and method == "schedule":
        return (f"best held-in (generation {result.best_iteration}, {best['held_in_problems']} tasks): "
                f"{best['held_in_delta_vs_baseline']:+.2f} points vs the baseline schedule (se {best['held_in_se']:.2f}), "
                f"{best['held_in_fits']:.1f} fits per run against its {best['baseline_fits']:.1f}")
    if best and method == "es":
        return (f"best held-in (generation {result.best_iteration}, {best['held_in_problems']} tasks): "
                f"{best['held_in_delta_vs_margin']:+.2f} points vs margin (se {best['held_in_se']:.2f})")
    if best:
        return (f"best selection (iteration {result.best_iteration}, {best.get('n_tasks')} tasks): "
                f"AULC policy {100 * best['policy']:.2f}, margin {100 * best['margin']:.2f}, "
                f"random {100 * best['random']:.2f}; {best['delta_vs_margin']:+.2f} points vs margin")
    kept = "schedule" if method == "schedule" else "policy"
    return f"no selection (--selection-tasks 0): the {kept} is the last iteration's"


def _next_batch(args: argparse.Namespace) -> int:
    from metalearn.workflow import next_batch

    try:
        result = next_batch(
            args.data, args.labels, model=args.model, batch_size=args.batch_size, policy=args.policy, out=args.out,
            state=args.state, id_column=args.id_column, label_column=args.label_column, classes=args.classes,
            seed=args.seed, label_budget=args.budget, stop_rule=None if args.stop_rule.lower() == "none" else args.stop_rule,
            release_pending=args.release_pending, release=args.release, schedule=args.schedule,
        )
    except KeyboardInterrupt:
        print(
            "\ninterrupted: no file is partly written (--out and the state file are replaced whole or not at all); "
            "rerun the same command",
            file=sys.stderr,
        )
        return 130
    for note in result.notes:
        print(f"metalearn: note: {printable(note)}", file=sys.stderr)
    history = f", history of {result.history_loops} loop(s)" if result.history_loops else ""
    # Paths, names and ids come from the user or from files: escaped before they reach the terminal.
    print(
        f"loop {result.loop}: {len(result.table)} record(s) to label written to {printable(result.out_path)} "
        f"({result.n_labeled} of {result.n_records} labeled, {len(result.classes)} classes; "
        f"{printable(result.strategy)}{history})"
    )
    if result.schedule is not None:
        print(printable(result.schedule))
    if result.stop_rule is not None and result.stop is not None:
        from metalearn.stopping import GainEstimate

        advice = "STOP buying labels" if result.stop else "continue labeling"
        estimate = f"; {GainEstimate(result.stop_estimate)}" if result.stop_estimate is not None else ""
        print(printable(f"stopping rule {result.stop_rule}: {advice}{estimate}"))
    earlier = {loop: ids for loop, ids in result.pending.items() if loop != result.loop}
    if earlier:
        n_earlier = sum(len(ids) for ids in earlier.values())
        first = [i for ids in earlier.values() for i in ids][:5]
        shown = ", ".join(printable(i) for i in first) + (", ..." if n_earlier > len(first) else "")
        by_loop = ", ".join(f"loop {loop}: {len(ids)}" for loop, ids in earlier.items())
        print(f"pending: {n_earlier} record(s) of earlier loops handed out and not yet labeled ({by_loop}): {shown}; "
              "reserved until labeled (--release-pending hands them out again)")
    if result.state_path is not None:
        print(f"state: {printable(result.state_path)}")
    return 0


def _train_stopping(args: argparse.Namespace) -> int:
    from metalearn.stopping.file import format_stopping_card, read_stopping_rule
    from metalearn.stopping.training import StoppingTrainConfig, train_stopping

    config = StoppingTrainConfig(
        out_dir=args.out, suite=args.suite, n_tasks=args.tasks, models=args.models, strategies=args.strategies,
        batch_size=args.batch_size, label_budget=args.budget, horizon=args.horizon, epochs=args.epochs, seed=args.seed,
    )
    try:
        result = train_stopping(config, resume=args.resume, progress=True)
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished runs are stored in {args.out}/runs; rerun the same command with --resume to continue",
              file=sys.stderr)
        return 130
    print(f"\n{result.details['n_runs']} runs ({result.details['n_computed']} computed now) in {result.wall_seconds:.0f} s")
    print(format_stopping_card(read_stopping_rule(result.policy_path)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``metalearn`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            return _demo(args)
        if args.command == "benchmark":
            return _benchmark(args)
        if args.command == "strategies":
            return _strategies()
        if args.command == "features":
            return _features()
        if args.command == "inspect":
            return _inspect(args)
        if args.command == "train":
            return _train(args)
        if args.command == "next-batch":
            return _next_batch(args)
        if args.command == "train-stopping":
            return _train_stopping(args)
    except MetalearnError as exc:
        # One line, control characters escaped: messages quote names and values from files.
        print(f"metalearn: error: {printable(' '.join(str(exc).split()))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("metalearn: error: out of memory; use smaller sizes (fewer records, candidates or seeds)", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (``metalearn inspect default | head``): nothing more to say. Point
        # stdout at devnull so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return 1  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
