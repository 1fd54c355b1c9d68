"""Bounds of a stopping rule's parameters, checked when a rule file is read and at every call.

A file (or a caller) asking for more would make the rule allocate without bound (a window of
``10**9`` loops) or fail inside numpy; these limits are far above any useful value.
"""

from __future__ import annotations

__all__ = ["MAX_WINDOW", "MAX_HORIZON", "MAX_PATIENCE", "MAX_THRESHOLD_POINTS", "MAX_STOP_SET_SIZE"]

#: Most loops of history a rule looks back over (features' window, stabilizing predictions).
MAX_WINDOW = 1000
#: Most labels ahead the learned rule's gain is about.
MAX_HORIZON = 1_000_000
#: Most calls in a row below the threshold before the learned rule stops.
MAX_PATIENCE = 100_000
#: Largest magnitude of the learned rule's threshold (accuracy points: a gain lies in [-100, 100]).
MAX_THRESHOLD_POINTS = 100.0
#: Largest stop set of stabilizing predictions (records kept aside to compare predictions on).
MAX_STOP_SET_SIZE = 10_000_000
