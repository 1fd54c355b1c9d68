"""The ``deepsets`` scorer as a torch module, for training (see :mod:`.architecture`)."""

from __future__ import annotations

from typing import cast

import numpy as np

from metalearn.common.extras import require_extra

require_extra("train", "the torch scorer (meta-training)")  # before torch: the error names the extra

import torch  # noqa: E402
from torch import nn  # noqa: E402

from metalearn.policies.architecture import DEFAULT_PRIOR_SCALE, ScorerArchitecture, parameter_shapes

__all__ = ["TorchScorer", "MASKED_SCORE"]

#: Score of masked candidates: finite, so softmax-based losses stay NaN-free.
MASKED_SCORE = -1e9


class TorchScorer(nn.Module):
    """Permutation-invariant candidate scorer with a pooled value head.

    Parameters
    ----------
    arch : ScorerArchitecture
    prior_scale : float
        Version 2 (residual) only: initial value of the learned ``prior_scale``. A version-2
        scorer also starts with ``head.1`` (the last layer of the learned score) at zero, so
        its scores are the prior alone: margin sampling's ranking for the trainers' prior.
    """

    # The input standardisation, registered as buffers in __init__.
    cand_mean: torch.Tensor
    cand_std: torch.Tensor
    ctx_mean: torch.Tensor
    ctx_std: torch.Tensor

    def __init__(self, arch: ScorerArchitecture, prior_scale: float = DEFAULT_PRIOR_SCALE) -> None:
        super().__init__()
        self.arch = arch.validate()
        F, G, H = arch.n_candidate_features, arch.n_context_features, arch.hidden
        self.register_buffer("cand_mean", torch.zeros(F))
        self.register_buffer("cand_std", torch.ones(F))
        self.register_buffer("ctx_mean", torch.zeros(G))
        self.register_buffer("ctx_std", torch.ones(G))
        self.encoder = nn.ModuleList([nn.Linear(F + G, H), nn.Linear(H, H)])
        self.head = nn.ModuleList([nn.Linear(3 * H + G, H), nn.Linear(H, 1)])
        self.value = nn.ModuleList([nn.Linear(2 * H + G, H), nn.Linear(H, 1)])
        if arch.residual:
            # Registered last and initialised without drawing random numbers, so the other
            # layers get the same initial weights as a version-1 scorer from the same seed.
            self.prior_scale = nn.Parameter(torch.full((1,), float(prior_scale)))
            self.zero_residual()

    def zero_residual(self) -> None:
        """Set the learned score's last layer (``head.1``) to zero: the scores become the prior."""
        with torch.no_grad():
            last = cast(nn.Linear, self.head[1])
            last.weight.zero_()
            last.bias.zero_()

    def prior(self, candidates: torch.Tensor) -> torch.Tensor | None:
        """The prior term (B, K) of a version-2 scorer, from the raw (unnormalised) features; None for version 1."""
        if not self.arch.residual:
            return None
        assert self.arch.prior_index is not None and self.arch.prior_sign is not None
        return (float(self.arch.prior_sign) * self.prior_scale) * candidates[..., self.arch.prior_index]

    def set_normalization(
        self, cand_mean: np.ndarray, cand_std: np.ndarray, ctx_mean: np.ndarray, ctx_std: np.ndarray
    ) -> None:
        """Set the input standardisation (std floored at 1e-3 so constant features stay finite)."""
        for name, value in (("cand_mean", cand_mean), ("cand_std", cand_std), ("ctx_mean", ctx_mean), ("ctx_std", ctx_std)):
            tensor = torch.as_tensor(np.asarray(value, dtype=np.float32))
            if name.endswith("std"):
                tensor = tensor.clamp_min(1e-3)
            getattr(self, name).copy_(tensor)

    def encode(
        self, candidates: torch.Tensor, context: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-candidate encodings (B, K, H), pooled summary (B, 2H), normalised context (B, G)."""
        c = (candidates - self.cand_mean) / self.cand_std
        g = (context - self.ctx_mean) / self.ctx_std
        x = torch.cat([c, g.unsqueeze(1).expand(-1, c.shape[1], -1)], dim=-1)
        h = torch.relu(self.encoder[1](torch.relu(self.encoder[0](x))))
        m = mask.unsqueeze(-1).to(h.dtype)
        count = m.sum(dim=1).clamp_min(1.0)
        mean = (h * m).sum(dim=1) / count
        # h >= 0 after the relu, so filling masked slots with 0 leaves the max over valid ones.
        maximum = (h * m).amax(dim=1)
        return h, torch.cat([mean, maximum], dim=-1), g

    def forward(
        self, candidates: torch.Tensor, context: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores (B, K), masked slots at :data:`MASKED_SCORE`, and values (B,).

        Parameters
        ----------
        candidates : tensor of shape (B, K, F)
        context : tensor of shape (B, G)
        mask : bool tensor of shape (B, K)
        """
        mask = mask.bool()
        h, pooled, g = self.encode(candidates, context, mask)
        k = h.shape[1]
        rest = torch.cat([pooled, g], dim=-1).unsqueeze(1).expand(-1, k, -1)
        scores = self.head[1](torch.relu(self.head[0](torch.cat([h, rest], dim=-1)))).squeeze(-1)
        prior = self.prior(candidates)
        if prior is not None:
            scores = prior + scores
        scores = scores.masked_fill(~mask, MASKED_SCORE)
        value = self.value[1](torch.relu(self.value[0](torch.cat([pooled, g], dim=-1)))).squeeze(-1)
        return scores, value

    def arrays(self) -> dict[str, np.ndarray]:
        """Every parameter and buffer as float32 numpy arrays, keyed like the policy file."""
        state = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in self.state_dict().items()}
        assert set(state) == set(parameter_shapes(self.arch)), sorted(set(state) ^ set(parameter_shapes(self.arch)))
        return state

    def load_arrays(self, params: dict[str, np.ndarray]) -> "TorchScorer":
        """Load parameters saved by :meth:`arrays` (or read from a policy file)."""
        self.load_state_dict({k: torch.as_tensor(np.asarray(v, dtype=np.float32)) for k, v in params.items()})
        return self
