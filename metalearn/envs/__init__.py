"""Gymnasium environments of simulated active learning.

Importing this package (``import metalearn`` does) registers ``metalearn/PoolAL-v0`` and
``metalearn/StreamAL-v0``, so ``gymnasium.make("metalearn/PoolAL-v0", tasks=[...])`` works.
"""

from __future__ import annotations

import gymnasium

from metalearn.envs.pool_al import PoolALEnv
from metalearn.envs.stream_al import StreamALEnv

__all__ = ["PoolALEnv", "StreamALEnv", "POOL_AL_ID", "STREAM_AL_ID"]

POOL_AL_ID = "metalearn/PoolAL-v0"
STREAM_AL_ID = "metalearn/StreamAL-v0"

# Entry points are strings so the registry stays valid across reloads; the guard keeps a
# re-import (importlib.reload, notebooks) from triggering gymnasium's re-registration warning.
for _env_id, _entry_point in (
    (POOL_AL_ID, "metalearn.envs.pool_al:PoolALEnv"),
    (STREAM_AL_ID, "metalearn.envs.stream_al:StreamALEnv"),
):
    if _env_id not in gymnasium.registry:
        gymnasium.register(id=_env_id, entry_point=_entry_point)
del _env_id, _entry_point
