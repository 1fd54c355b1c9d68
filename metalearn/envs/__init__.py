"""Gymnasium environments of simulated active learning.

Importing this package (``import metalearn`` does) registers ``metalearn/PoolAL-v0`` and
``metalearn/StreamAL-v0``, so ``gymnasium.make("metalearn/PoolAL-v0", tasks=[...])`` works.
The registrations are string entry points: the environment modules, and scikit-learn with
them, are imported by ``gymnasium.make`` (or on first use of :class:`PoolALEnv` /
:class:`StreamALEnv` here), not by ``import metalearn``.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

import gymnasium

if TYPE_CHECKING:
    from metalearn.envs.pool_al import PoolALEnv
    from metalearn.envs.stream_al import StreamALEnv

__all__ = ["PoolALEnv", "StreamALEnv", "POOL_AL_ID", "STREAM_AL_ID", "register_envs"]

POOL_AL_ID = "metalearn/PoolAL-v0"
STREAM_AL_ID = "metalearn/StreamAL-v0"

_ENTRY_POINTS = {
    POOL_AL_ID: "metalearn.envs.pool_al:PoolALEnv",
    STREAM_AL_ID: "metalearn.envs.stream_al:StreamALEnv",
}
_LAZY = {"PoolALEnv": "metalearn.envs.pool_al", "StreamALEnv": "metalearn.envs.stream_al"}


def register_envs() -> None:
    """Register the environments with Gymnasium (idempotent).

    Entry points are strings so the registry stays valid across reloads and imports nothing;
    the guard keeps a re-import (importlib.reload, notebooks) from triggering gymnasium's
    re-registration warning.
    """
    for env_id, entry_point in _ENTRY_POINTS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point=entry_point)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


register_envs()
