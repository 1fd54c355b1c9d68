"""Helpers of tests/test_fault_tolerance.py that must be importable in worker processes.

A benchmark worker (a joblib/loky process or a Dask worker) only knows the strategies its
imports register. :class:`KillSwitch` travels inside a dataset's ``info`` (which the runner
sends to every worker), so unpickling it in a worker imports this module, which registers
:class:`KillOnceStrategy`. That strategy SIGKILLs its own process at its second query, the
first time it runs anywhere for a given switch (an ``O_EXCL`` marker file makes it fire once
across all processes; a ``times`` file in the switch's folder allows more kills), so exactly
one worker dies in the middle of a run. The process that creates the switch (the test) is
never killed.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from metalearn.strategies import STRATEGIES, RandomSampling, register_strategy

KILL_STRATEGY = "kill_once_test_strategy"

#: Folders of the switches this process has unpickled (a worker) or created (the test process).
_SWITCHES: list[str] = []
_OWNED: set[str] = set()


class KillSwitch:
    """Arms :class:`KillOnceStrategy` in every process that unpickles it."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = str(folder)
        _OWNED.add(self.folder)  # the test process itself is never killed
        _SWITCHES.append(self.folder)

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        _SWITCHES.append(self.folder)

    @staticmethod
    def victims(folder: str | os.PathLike[str]) -> list[int]:
        """Process ids killed so far under this switch."""
        return [int((Path(folder) / f"fired-{i}").read_text()) for i in range(_times(folder))
                if (Path(folder) / f"fired-{i}").exists()]


def _times(folder: str | os.PathLike[str]) -> int:
    """How many kills a switch allows: 1, or the number in its ``times`` file."""
    path = Path(folder) / "times"
    return int(path.read_text()) if path.exists() else 1


class KillOnceStrategy(RandomSampling):
    """Random sampling whose process is SIGKILLed mid-run, once per switch."""

    name = KILL_STRATEGY

    def _select(self, ctx, batch_size):
        if self.n_queries_ >= 1:  # mid-run: the run has already queried once
            for folder in _SWITCHES:
                if folder in _OWNED:
                    continue
                for i in range(_times(folder)):
                    try:  # O_EXCL: exactly one process wins each kill
                        fd = os.open(Path(folder) / f"fired-{i}", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                    except FileExistsError:
                        continue
                    os.write(fd, str(os.getpid()).encode())
                    os.close(fd)
                    os.kill(os.getpid(), signal.SIGKILL)
        return super()._select(ctx, batch_size)


if KILL_STRATEGY not in STRATEGIES:
    register_strategy(KillOnceStrategy)
