"""Release a trained stopping rule under a name: policies/stopping/NAME.safetensors and NAME.md.

The weights, threshold and features are copied unchanged; the model card gains a
``release`` section (name, date, source file, and the validation figures of
``--validation-dir``, a folder written by scripts/bench_stopping.py, when given). Example::

    .venv/bin/python scripts/release_stopping_rule.py out/train-stopping/stopping.safetensors --name default \\
        --validation-dir benchmarks/stopping-validation
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from metalearn.stopping.file import format_stopping_card, read_stopping_rule, save_stopping_rule

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="a trained stopping-rule file (OUT/stopping.safetensors of train-stopping)")
    parser.add_argument("--name", default="default")
    parser.add_argument("--validation-dir", default=None, help="folder of scripts/bench_stopping.py results")
    parser.add_argument("--command", default=None, help="the command that trained the source file")
    args = parser.parse_args(argv)

    rule = read_stopping_rule(args.source)
    meta = {k: v for k, v in rule.metadata.items()
            if k not in ("format", "format_version", "architecture", "package_version", "created")}
    release = {"name": args.name, "released": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "source": str(args.source)}
    if args.command:
        release["trained_by"] = args.command
    if args.validation_dir:
        folder = Path(args.validation_dir)
        summary = pd.read_csv(folder / "stopping_summary.csv")
        columns = ["rule", "runs", "labels_at_stop", "labels_saved", "points_lost", "p90_points_lost"]
        release["validation_benchmark"] = {
            "folder": str(folder),
            "overall": summary[columns].round(3).to_dict(orient="records"),
        }
    meta["release"] = release
    target = REPO / "policies" / "stopping" / f"{args.name}.safetensors"
    save_stopping_rule(target, rule.arch, rule.params, meta)
    card = format_stopping_card(read_stopping_rule(target))
    (target.with_suffix(".md")).write_text(
        f"# Stopping rule `{args.name}`\n\n`metalearn.load_stopping_rule({args.name!r})`; "
        f"the card `metalearn inspect policies/stopping/{args.name}.safetensors` prints "
        "(written by scripts/release_stopping_rule.py).\n\n```text\n" + card + "\n```\n",
        encoding="utf-8",
    )
    print(card)
    return 0


if __name__ == "__main__":
    sys.exit(main())
