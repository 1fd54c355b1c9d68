"""The command line's own conventions: version, help with defaults, quiet progress."""

from __future__ import annotations

import argparse

import pytest

import metalearn
from metalearn.cli import build_parser, main


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"metalearn {metalearn.__version__}"


@pytest.mark.parametrize("command", sorted(_subparsers(build_parser())))
def test_every_option_has_help_that_shows_its_default(command):
    parser = _subparsers(build_parser())[command]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or not action.option_strings:
            continue
        assert action.help, f"{command} {action.option_strings[0]} has no help text"
        if action.required or action.default in (None, False):
            continue  # required, a flag, or a default described in words
        assert "default" in parser.formatter_class(prog="x")._get_help_string(action).lower(), action.option_strings
    text = parser.format_help()
    for action in parser._actions:
        if action.option_strings and not action.required and action.default not in (None, False, argparse.SUPPRESS):
            assert "default" in text


def test_quiet_turns_the_benchmark_progress_bar_off(tmp_path, capsys):
    args = ["benchmark", "--datasets", "sklearn:iris", "--strategies", "random", "--models", "logreg",
            "--regimes", "cold", "--batch-sizes", "5", "--budget", "10", "--seeds", "1", "--jobs", "1", "--no-report",
            "--out", str(tmp_path / "out")]
    assert main(args + ["--quiet"]) == 0
    assert "benchmark runs" not in capsys.readouterr().err
    assert main(args[:-1] + [str(tmp_path / "again")]) == 0
    assert "benchmark runs" in capsys.readouterr().err


def test_a_reader_that_goes_away_gets_no_traceback():
    # `metalearn inspect default --json | head -1`: the pipe closes before the output is written.
    import subprocess
    import sys

    code = "import sys; from metalearn.cli import main; sys.exit(main(['inspect', 'default', '--json']))"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before anything is written
    _, err = proc.communicate(timeout=120)
    assert b"Traceback" not in err and b"BrokenPipe" not in err
    assert proc.returncode in (0, 141)
