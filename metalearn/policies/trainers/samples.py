"""Sample buffers and input normalisation: what a trainer keeps of its episodes, and the
per-feature standardisation stored in the policy file."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from metalearn.exceptions import InvalidInputError
from metalearn.features.schema import POOL_SCHEMA, FeatureSchema
from metalearn.policies.trainers.episodes import EpisodeSamples

__all__ = ["SampleBuffer", "input_normalization"]

# =============================================================================================
# The aggregated dataset (DAgger / LAL): arrays that grow by episodes, capped to the newest
# =============================================================================================
class SampleBuffer:
    """The aggregated states of every iteration so far, newest last, capped at ``max_size``.

    Arrays: ``candidates`` (N, K, F) float32, ``context`` (N, G), ``mask`` (N, K) bool,
    ``gains`` and ``log_loss_gains`` (N, K) float32 (NaN where masked), ``iteration`` (N,)
    int64 (the iteration that collected each state).
    """

    FIELDS: tuple[str, ...] = ("candidates", "context", "mask", "gains", "log_loss_gains", "iteration")

    def __init__(self, n_candidates: int, max_size: int | None = None, schema: FeatureSchema = POOL_SCHEMA) -> None:
        k, f, g = n_candidates, schema.n_candidate_features, schema.n_context_features
        self.max_size = max_size
        self.arrays: dict[str, np.ndarray] = {
            "candidates": np.zeros((0, k, f), np.float32),
            "context": np.zeros((0, g), np.float32),
            "mask": np.zeros((0, k), bool),
            "gains": np.zeros((0, k), np.float32),
            "log_loss_gains": np.zeros((0, k), np.float32),
            "iteration": np.zeros(0, np.int64),
        }

    def __len__(self) -> int:
        return int(self.arrays["iteration"].shape[0])

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def add(self, episodes: Sequence[EpisodeSamples], iteration: int) -> None:
        """Append the episodes' states (in the order given) and drop the oldest beyond max_size."""
        parts: dict[str, list[np.ndarray]] = {name: [self.arrays[name]] for name in self.FIELDS}
        for ep in episodes:
            for name in self.FIELDS[:-1]:
                parts[name].append(getattr(ep, name))
            parts["iteration"].append(np.full(len(ep), iteration, dtype=np.int64))
        self.arrays = {name: np.concatenate(parts[name], axis=0) for name in self.FIELDS}
        if self.max_size is not None and len(self) > self.max_size:
            self.arrays = {name: value[-self.max_size :] for name, value in self.arrays.items()}

    def to_tensors(self, prefix: str = "data.") -> dict[str, np.ndarray]:
        return {prefix + name: np.ascontiguousarray(value) for name, value in self.arrays.items()}

    def load_tensors(self, tensors: Mapping[str, np.ndarray], prefix: str = "data.") -> "SampleBuffer":
        self.arrays = {name: np.asarray(tensors[prefix + name]) for name in self.FIELDS}
        return self


def input_normalization(candidates: np.ndarray, context: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """Standardisation of the scorer's inputs from a set of states (valid candidates only).

    Returns ``cand_mean``, ``cand_std`` (F,), ``ctx_mean``, ``ctx_std`` (G,), float32, for
    :meth:`TorchScorer.set_normalization` (which floors the standard deviations at 1e-3).
    Trainers compute it once, from the first iteration's samples, and then freeze it: it is
    part of the policy file.
    """
    valid = candidates[mask.astype(bool)]
    if valid.shape[0] == 0 or context.shape[0] == 0:
        raise InvalidInputError("no state to compute the input normalisation from")
    return {
        "cand_mean": valid.mean(axis=0, dtype=np.float64).astype(np.float32),
        "cand_std": valid.std(axis=0, dtype=np.float64).astype(np.float32),
        "ctx_mean": context.mean(axis=0, dtype=np.float64).astype(np.float32),
        "ctx_std": context.std(axis=0, dtype=np.float64).astype(np.float32),
    }
