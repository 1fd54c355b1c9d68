"""Release a trained policy under a name, with its validation table in the model card.

Copies the policy's weights and metadata into ``policies/NAME.safetensors`` and adds a
``release`` section to the metadata: the name, how the policy was chosen, and the overall
comparison of the benchmark it was chosen on (mean rank, difference to the reference,
win/tie/loss per strategy). ``metalearn inspect NAME`` prints it; ``policies/NAME.md`` gets
the same card in Markdown with the benchmark's learning-curve plots.

Run: ``.venv/bin/python scripts/release_policy.py SOURCE --name default --benchmark DIR
--strategy policy:NAME --chosen-by "..." [--command "the benchmark command"] [--report DIR]
[--strategies A,B,...] [--label SPEC=NAME ...]``. ``--strategies`` restricts the comparison to
the strategies of the final comparison when the folder holds more; ``--label`` renames a
strategy in the card (e.g. the previous ``policy:default`` once this one takes its name).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
from pathlib import Path

import pandas as pd

from metalearn.benchmark import ResultStore, format_table, overall_comparison, strategy_summary
from metalearn.policies.file import POLICY_SUFFIX, format_model_card, read_policy, save_policy

REPO = Path(__file__).resolve().parents[1]
# The released policies: the checkout's policies/ folder, shipped in the wheel as the package
# data of metalearn.policies.released (pyproject.toml maps it).
RELEASED = REPO / "policies"


def validation_tables(
    benchmark: Path, reference: str, strategies: list[str] | None = None, labels: dict[str, str] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    runs, _ = ResultStore(benchmark).load()
    if strategies:
        missing = sorted(set(strategies) - set(runs["strategy"]))
        if missing:
            raise SystemExit(f"{benchmark} holds no runs of {missing}")
        runs = runs[runs["strategy"].isin(strategies)]
    if labels:
        runs = runs.assign(strategy=runs["strategy"].replace(labels))
    overall = overall_comparison(runs, reference=reference)
    summary = strategy_summary(runs)
    return overall, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="the trained policy file")
    parser.add_argument("--name", required=True, help="released name (policies/NAME.safetensors)")
    parser.add_argument("--benchmark", required=True, type=Path, help="benchmark folder it was chosen on")
    parser.add_argument("--strategy", required=True, help="its strategy name in that benchmark")
    parser.add_argument(
        "--report", type=Path, default=None,
        help="folder of that benchmark's report and plots, if written with --report-dir (default: the benchmark folder)",
    )
    parser.add_argument("--reference", default="margin")
    parser.add_argument("--chosen-by", required=True, help="how it was chosen, one sentence")
    parser.add_argument("--command", default="", help="the command that reproduces the benchmark")
    parser.add_argument("--strategies", default=None, help="comma-separated strategies of the comparison (default: all)")
    parser.add_argument("--label", action="append", default=[], metavar="SPEC=NAME", help="display name of a strategy")
    args = parser.parse_args()

    policy = read_policy(args.source)
    labels = dict(item.split("=", 1) for item in args.label)
    strategies = args.strategies.split(",") if args.strategies else None
    overall, summary = validation_tables(args.benchmark, args.reference, strategies, labels)
    shown = labels.get(args.strategy, args.strategy)
    if shown not in set(overall["strategy"]):
        raise SystemExit(f"{args.strategy!r} is not a strategy of {args.benchmark}: {sorted(overall['strategy'])}")
    columns = ["strategy", "mean_rank", "n_problems", "mean_diff", "wins", "ties", "losses", "p_value"]
    rows = overall[[c for c in columns if c in overall.columns]].copy()
    rows["strategy"] = rows["strategy"].replace({shown: f"{shown} (this policy)"})
    metadata = dict(policy.metadata)
    metadata["release"] = {
        "name": args.name,
        "released": dt.date.today().isoformat(),
        "chosen_by": args.chosen_by,
        "source_file": os.path.relpath(args.source, REPO),
        "validation_benchmark": {
            "folder": os.path.relpath(args.benchmark, REPO),
            "command": args.command,
            "metric": "AULC accuracy, points; mean_diff: paired difference to " + args.reference,
            "overall": rows.to_dict(orient="records"),
        },
    }
    target = RELEASED / f"{args.name}{POLICY_SUFFIX}"
    save_policy(target, policy.arch, policy.params, metadata)
    released = read_policy(target)

    report = args.report or args.benchmark
    plots = sorted(report.glob("curves_*.png")) + sorted(report.glob("differences.png"))
    card = [
        f"# Policy `{args.name}`",
        "",
        args.chosen_by,
        "",
        "## Validation benchmark",
        "",
        f"Folder `{os.path.relpath(args.benchmark, REPO)}`" + (f"; reproduce with `{args.command}`." if args.command else "."),
        "",
        format_table(rows),
        "",
        format_table(summary),
        "",
        *[f"![{p.stem}]({os.path.relpath(p, RELEASED)})" for p in plots],
        "",
        "## Model card (`metalearn inspect " + args.name + "`)",
        "",
        "```",
        format_model_card(released).replace(str(REPO) + os.sep, ""),
        "```",
        "",
    ]
    (RELEASED / f"{args.name}.md").write_text("\n".join(card), encoding="utf-8")
    print(f"released {target} and policies/{args.name}.md")


if __name__ == "__main__":
    main()
