"""The simulated active-learning loop and the multi-loop metadata history."""

from metalearn.simulation.history import LOOP_STATISTICS, MetadataHistory, margins, normalized_entropy
from metalearn.simulation.loop import SimulationResult, simulate
from metalearn.simulation.metrics import (
    area_under_learning_curve,
    segment_area,
    step_area_under_learning_curve,
    test_scores,
)
from metalearn.simulation.process import ActiveLearningProcess

__all__ = [
    "ActiveLearningProcess",
    "MetadataHistory",
    "LOOP_STATISTICS",
    "margins",
    "normalized_entropy",
    "SimulationResult",
    "simulate",
    "area_under_learning_curve",
    "step_area_under_learning_curve",
    "segment_area",
    "test_scores",
]
