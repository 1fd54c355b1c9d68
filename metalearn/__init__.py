"""metalearn: learn active-learning querying strategies from simulated labeling loops.

The top-level names load the released files or your own: :func:`load_policy` (a querying
policy, by released name such as ``"default"`` or by path), :func:`load_stopping_rule` (the
learned stopping rule, a rule file or a classic criterion) and :func:`load_schedule` (a batch
schedule: ``"fixed:N"``, ``"geometric:R[:EVERY]"`` or a schedule file). The last two load on
first use. Importing the package registers the Gymnasium environments
``metalearn/PoolAL-v0`` and ``metalearn/StreamAL-v0`` (torch is not imported here).
"""

from __future__ import annotations

__version__ = "0.1.0"

import metalearn.envs  # noqa: E402,F401  (registers the Gymnasium environments)
from metalearn.policies import load_policy  # noqa: E402  (numpy-only policy loading)

__all__ = ["load_policy", "load_stopping_rule", "load_schedule", "__version__"]


def __getattr__(name: str) -> object:
    # The stopping rules and schedules import scikit-learn's metrics: loaded on first use, so that
    # `from metalearn import load_policy` stays light.
    if name == "load_stopping_rule":
        from metalearn.stopping import load_stopping_rule

        return load_stopping_rule
    if name == "load_schedule":
        from metalearn.schedules import load_schedule

        return load_schedule
    raise AttributeError(f"module 'metalearn' has no attribute {name!r}")
