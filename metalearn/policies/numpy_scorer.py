"""Inference of the ``deepsets`` scorer with numpy alone (loading a policy never imports torch).

Versions 1 and 2 (residual: a prior feature term plus the learned score); see
:mod:`metalearn.policies.architecture`.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from metalearn.common.weights import checked_weights
from metalearn.exceptions import InvalidInputError
from metalearn.policies.architecture import GATED_LINEAR, ScorerArchitecture, parameter_shapes

__all__ = ["NumpyScorer", "GatedLinearScorer", "build_scorer", "checked_params", "Scorer", "MAX_SCORE_BOUND"]

#: Largest score (and activation) magnitude a policy's weights may reach on features in
#: [-1, 1]; float32 overflows at 3.4e38, so scores stay finite with room to spare.
MAX_SCORE_BOUND = 1e30


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def checked_params(arch: ScorerArchitecture, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every parameter of ``arch`` as float32, with its shape and finite values; raises otherwise."""
    return checked_weights(parameter_shapes(arch), params, "policy")


class NumpyScorer:
    """The scorer's forward pass in numpy (float32).

    Parameters
    ----------
    arch : ScorerArchitecture
    params : dict of str to ndarray
        Every entry of :func:`~metalearn.policies.architecture.parameter_shapes`, with
        exactly those shapes and finite values.
    """

    def __init__(self, arch: ScorerArchitecture, params: dict[str, np.ndarray]) -> None:
        self.arch = arch.validate()
        self.params = checked_params(arch, params)
        if np.any(self.params["cand_std"] <= 0) or np.any(self.params["ctx_std"] <= 0):
            raise InvalidInputError("normalisation standard deviations must be positive")
        bound = self.score_bound()
        if not bound <= MAX_SCORE_BOUND:
            raise InvalidInputError(
                f"the weights can produce scores of magnitude up to {bound:.3g} on features in [-1, 1], past the "
                f"limit of {MAX_SCORE_BOUND:.0e} (float32 overflows to infinite or NaN scores): extreme weights or "
                "near-zero standard deviations; the policy is corrupt"
            )

    def score_bound(self) -> float:
        """An upper bound on |score| (and every activation) for features in [-1, 1], in float64.

        Interval arithmetic through the layers: |W x + b| <= |W| |x| + |b| elementwise.
        """
        p = {name: np.abs(value.astype(np.float64)) for name, value in self.params.items()}
        with np.errstate(all="ignore"):
            c = (1.0 + p["cand_mean"]) / p["cand_std"]
            g = (1.0 + p["ctx_mean"]) / p["ctx_std"]
            e0 = p["encoder.0.weight"] @ np.concatenate([c, g]) + p["encoder.0.bias"]
            e1 = p["encoder.1.weight"] @ e0 + p["encoder.1.bias"]
            z = p["head.0.weight"] @ np.concatenate([e1, e1, e1, g]) + p["head.0.bias"]
            s = p["head.1.weight"] @ z + p["head.1.bias"]
            if self.arch.residual:
                s = s + p["prior_scale"]
            bounds = [c, g, e0, e1, z, s]
            worst = max(float(np.max(b)) if b.size else 0.0 for b in bounds)
        return worst if np.isfinite(worst) else float("inf")

    def _dense(self, name: str, x: np.ndarray) -> np.ndarray:
        return x @ self.params[f"{name}.weight"].T + self.params[f"{name}.bias"]

    def _encode(self, candidates: np.ndarray, context: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Per-candidate encodings (k, H), normalised context (G,), and the prior term (k,) or None."""
        p = self.params
        raw = np.asarray(candidates, dtype=np.float32)
        c = (raw - p["cand_mean"]) / p["cand_std"]
        g = (np.asarray(context, dtype=np.float32) - p["ctx_mean"]) / p["ctx_std"]
        x = np.concatenate([c, np.broadcast_to(g, (c.shape[0], g.shape[0]))], axis=1)
        h = _relu(self._dense("encoder.1", _relu(self._dense("encoder.0", x))))
        prior = None
        if self.arch.residual:  # from the raw feature, before normalisation (as the torch scorer)
            assert self.arch.prior_index is not None and self.arch.prior_sign is not None
            scale = np.float32(self.arch.prior_sign) * p["prior_scale"][0]
            prior = (scale * raw[:, self.arch.prior_index]).astype(np.float32)
        return h, g, prior

    def scores(self, candidates: np.ndarray, context: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Score every candidate; higher = more worth labeling.

        Parameters
        ----------
        candidates : ndarray of shape (k, F)
        context : ndarray of shape (G,)
        mask : ndarray of bool, shape (k,), optional
            Valid candidates (pooling uses these only); masked ones score ``-inf``.

        Returns
        -------
        ndarray of float32, shape (k,)
        """
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is checked in _head
            h, g, prior = self._encode(candidates, context)
        return self._head(h, g, np.ones(h.shape[0], dtype=bool) if mask is None else np.asarray(mask, dtype=bool), prior)

    def _head(self, h: np.ndarray, g: np.ndarray, mask: np.ndarray, prior: np.ndarray | None = None) -> np.ndarray:
        k = h.shape[0]
        if not mask.any():
            return np.full(k, -np.inf, dtype=np.float32)
        valid = h[mask]
        pooled = np.concatenate([valid.mean(axis=0), valid.max(axis=0)])
        rest = np.broadcast_to(np.concatenate([pooled, g]), (k, pooled.shape[0] + g.shape[0]))
        z = _relu(self._dense("head.0", np.concatenate([h, rest], axis=1)))
        s = self._dense("head.1", z)[:, 0]
        if prior is not None:
            s = prior + s
        if not np.all(np.isfinite(s[mask])):
            # A NaN would rank like a picked candidate: never hand out such scores.
            raise InvalidInputError(
                "the policy's scores overflowed to infinite or NaN values (features outside [-1, 1], or corrupt "
                "weights); clip the features to [-1, 1]"
            )
        return np.where(mask, s, -np.inf).astype(np.float32)

    def pick_sequentially(
        self, candidates: np.ndarray, context: np.ndarray, n_picks: int, choose: Callable[[np.ndarray], int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pick ``n_picks`` candidates one at a time, as a policy fills a batch in training.

        After each pick the chosen candidate is masked and the rest are re-scored (the pooled
        summary changes); the per-candidate encodings are computed once.

        Parameters
        ----------
        candidates : ndarray of shape (k, F)
        context : ndarray of shape (G,)
        n_picks : int
            At most k.
        choose : callable
            Maps a score vector (k,) (``-inf`` for masked) to the position picked; breaks ties.

        Returns
        -------
        picks : ndarray of int, shape (n_picks,)
            Positions into ``candidates``, in pick order.
        first_scores : ndarray of float32, shape (k,)
            Scores before the first pick.
        """
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is checked in _head
            h, g, prior = self._encode(candidates, context)
        mask = np.ones(h.shape[0], dtype=bool)
        picks = np.empty(n_picks, dtype=np.int64)
        first: np.ndarray | None = None
        for i in range(n_picks):
            scores = self._head(h, g, mask, prior)
            if first is None:
                first = scores
            picks[i] = choose(scores)
            mask[picks[i]] = False
        assert first is not None or n_picks == 0
        return picks, (first if first is not None else self._head(h, g, mask, prior))


class GatedLinearScorer:
    """The ``gated_linear`` scorer: a prior plus candidate features times context-dependent weights.

    ``s_i = prior_sign * prior_scale * x_i[prior_index] + x_i . (weights @ [1, g])``; see
    :mod:`metalearn.policies.architecture`. Candidates do not interact, so masking only sets
    the masked scores to ``-inf``.

    Parameters
    ----------
    arch : ScorerArchitecture
        Name ``gated_linear``.
    params : dict of str to ndarray
        ``weights`` (F, G + 1) and ``prior_scale`` (1,), finite.
    """

    def __init__(self, arch: ScorerArchitecture, params: dict[str, np.ndarray]) -> None:
        self.arch = arch.validate()
        self.params = checked_params(arch, params)
        bound = self.score_bound()
        if not bound <= MAX_SCORE_BOUND:
            raise InvalidInputError(
                f"the weights can produce scores of magnitude up to {bound:.3g} on features in [-1, 1], past the "
                f"limit of {MAX_SCORE_BOUND:.0e}: extreme weights; the policy is corrupt"
            )

    def score_bound(self) -> float:
        """An upper bound on |score| for features and context in [-1, 1], in float64."""
        with np.errstate(all="ignore"):
            bound = float(np.abs(self.params["prior_scale"].astype(np.float64)).sum())
            bound += float(np.abs(self.params["weights"].astype(np.float64)).sum())
        return bound if np.isfinite(bound) else float("inf")

    def feature_weights(self, context: np.ndarray) -> np.ndarray:
        """The weight of each candidate feature in this loop, shape (F,) (prior excluded)."""
        z = np.concatenate([[1.0], np.asarray(context, dtype=np.float64)])
        return self.params["weights"].astype(np.float64) @ z

    def weight_lines(self, candidate_names: Sequence[str], context_names: Sequence[str], threshold: float = 1e-6) -> list[str]:
        """``feature: +a +b*context ...`` for every candidate feature with a non-zero weight (model cards)."""
        names = ("1", *context_names)
        lines = []
        for f, feature in enumerate(candidate_names):
            terms = [(names[j], float(w)) for j, w in enumerate(self.params["weights"][f]) if abs(w) > threshold]
            if terms:
                lines.append(f"{feature}: " + " ".join(f"{w:+.3f}" + ("" if n == "1" else f"*{n}") for n, w in terms))
        return lines

    def scores(self, candidates: np.ndarray, context: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Score every candidate; higher = more worth labeling.

        Shapes as :meth:`NumpyScorer.scores`, but the scores are float64 (finite, within
        float32's range; ``-inf`` where masked).
        """
        x = np.asarray(candidates, dtype=np.float64)
        assert self.arch.prior_index is not None and self.arch.prior_sign is not None
        prior = self.arch.prior_sign * float(self.params["prior_scale"][0]) * x[:, self.arch.prior_index]
        # float64 inside: weights near float32's limit must not overflow to inf - inf = NaN.
        with np.errstate(over="ignore", invalid="ignore"):
            s = prior + x @ self.feature_weights(context)
        # Finite always, and float64: the prior's exact margins keep margin sampling's order.
        s = np.nan_to_num(s, nan=0.0, posinf=np.finfo(np.float32).max, neginf=np.finfo(np.float32).min)
        s = np.clip(s, np.finfo(np.float32).min, np.finfo(np.float32).max)
        if mask is None:
            return s
        return np.where(np.asarray(mask, dtype=bool), s, -np.inf)

    def pick_sequentially(
        self, candidates: np.ndarray, context: np.ndarray, n_picks: int, choose: Callable[[np.ndarray], int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pick ``n_picks`` candidates one at a time; see :meth:`NumpyScorer.pick_sequentially`."""
        first = self.scores(candidates, context)
        mask = np.ones(first.shape[0], dtype=bool)
        picks = np.empty(n_picks, dtype=np.int64)
        for i in range(n_picks):
            picks[i] = choose(np.where(mask, first, -np.inf))
            mask[picks[i]] = False
        return picks, first


#: What a policy file's scorer is: one of the two forward passes.
Scorer = NumpyScorer | GatedLinearScorer


def build_scorer(arch: ScorerArchitecture, params: dict[str, np.ndarray]) -> Scorer:
    """The numpy forward pass of ``arch`` (validated) with ``params``."""
    if arch.name == GATED_LINEAR:
        return GatedLinearScorer(arch, params)
    return NumpyScorer(arch, params)
