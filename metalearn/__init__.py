"""metalearn: learn active-learning querying strategies from simulated labeling loops.

Importing the package registers the Gymnasium environments ``metalearn/PoolAL-v0`` and
``metalearn/StreamAL-v0`` (torch is not imported here).
"""

from __future__ import annotations

__version__ = "0.1.0"

import metalearn.envs  # noqa: E402,F401  (registers the Gymnasium environments)
from metalearn.policies import load_policy  # noqa: E402  (numpy-only policy loading)
from metalearn.stopping import load_stopping_rule  # noqa: E402  (numpy-only stopping rules)
