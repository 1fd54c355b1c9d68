"""The light install: what needs an extra says so, and `import metalearn` stays light."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from metalearn.common import extras
from metalearn.exceptions import MetalearnError, MissingDependencyError

REPO_ROOT = Path(__file__).resolve().parents[1]

# Hides the given top-level packages from imports, as an environment without them would.
_HIDE = """
import importlib.abc, sys
class _Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {hidden!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}")
        return None
sys.meta_path.insert(0, _Hide())
import importlib.util
_find_spec = importlib.util.find_spec
def _hidden_find_spec(name, *args, **kwargs):
    return None if name.split(".")[0] in {hidden!r} else _find_spec(name, *args, **kwargs)
importlib.util.find_spec = _hidden_find_spec
"""


def _run(code: str, hidden: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.run([sys.executable, "-c", _HIDE.format(hidden=set(hidden)) + code], capture_output=True,
                          text=True, env=env, timeout=120)


def test_require_extra_names_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(extras.EXTRAS, "train", ("torch", "no_such_package_for_the_test"))
    with pytest.raises(MissingDependencyError, match=r'meta-training needs no_such_package_for_the_test.*'
                                                     r'pip install "metalearn-al\[train\]"') as info:
        extras.require_extra("train", "meta-training")
    assert isinstance(info.value, MetalearnError) and isinstance(info.value, ImportError)
    assert not extras.extra_installed("train")


def test_import_metalearn_is_light_and_registers_the_environments_lazily():
    out = _run(
        "import sys\n"
        "from metalearn import load_policy\n"
        "heavy = sorted(m for m in ('torch', 'sklearn', 'scipy', 'pandas', 'matplotlib', 'metalearn.envs.pool_al') "
        "if m in sys.modules)\n"
        "assert not heavy, heavy\n"
        "import gymnasium\n"
        "assert 'metalearn/PoolAL-v0' in gymnasium.registry and 'metalearn/StreamAL-v0' in gymnasium.registry\n"
        "print('ok')\n"
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_trainers_without_the_train_extra_fail_naming_it(tmp_path):
    out = _run(
        "from metalearn.cli import main\n"
        f"code = main(['train', '--method', 'imitation', '--suite', 'smoke', '--iterations', '1', '--out', {str(tmp_path / 'i')!r}])\n"
        "assert code == 2, code\n"
        f"code = main(['train', '--method', 'ppo', '--suite', 'smoke', '--iterations', '1', '--out', {str(tmp_path / 'p')!r}])\n"
        "assert code == 2, code\n"
        "from metalearn.exceptions import MissingDependencyError\n"
        "try:\n"
        "    import metalearn.policies.trainers.ppo\n"
        "except MissingDependencyError as exc:\n"
        "    print('raised', exc)\n",
        hidden=("torch", "stable_baselines3", "sb3_contrib"),
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr.count('pip install "metalearn-al[train]"') == 2  # one clear error per command
    assert 'raised PPO training (metalearn train --method ppo) needs torch' in out.stdout


def test_a_report_without_the_plot_extra_has_its_tables_and_says_how_to_get_plots(tmp_path):
    out = _run(
        "import sys\n"
        "from metalearn.benchmark import BenchmarkConfig, run_benchmark, write_report\n"
        "from metalearn.benchmark.report import plot_learning_curves\n"
        "from metalearn.exceptions import MissingDependencyError\n"
        "config = BenchmarkConfig(strategies=['random', 'margin'], datasets=['sklearn:iris'], models=['logreg'], "
        "regimes=['cold'], batch_sizes=[5], label_budget=10, n_seeds=2)\n"
        f"result = run_benchmark(config, {str(tmp_path / 'out')!r}, progress=False)\n"
        f"files = write_report(result.runs, result.curves, {str(tmp_path / 'report')!r})\n"
        "assert set(files) == {'md', 'html'}, files\n"
        "try:\n"
        f"    plot_learning_curves(result.curves, {str(tmp_path)!r})\n"
        "except MissingDependencyError as exc:\n"
        "    print('raised', exc)\n"
        "assert 'matplotlib' not in sys.modules\n",
        hidden=("matplotlib", "scikit_posthocs"),
    )
    assert out.returncode == 0, out.stderr
    assert 'pip install "metalearn-al[plot]"' in out.stdout
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| margin |" in report and 'pip install "metalearn-al[plot]"' in report and ".png" not in report
