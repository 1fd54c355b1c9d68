"""Stream-based active learning: keep or skip each arriving record under a paced label budget.

- :mod:`metalearn.streaming.stream_policy`: :class:`StreamingPolicy`, ``decide(record, clf)``;
- :mod:`metalearn.streaming.scorers`: how a pool strategy or learned policy scores a record
  against the recent arrivals;
- :mod:`metalearn.streaming.simulate`: :func:`simulate_stream`, a whole labeled stream for
  evaluation.
"""

from metalearn.streaming.simulate import StreamResult, simulate_stream
from metalearn.streaming.stream_policy import StreamingPolicy

__all__ = ["StreamingPolicy", "simulate_stream", "StreamResult"]
