"""The permutation-invariant candidate scorer, described once for torch and numpy.

Architecture ``deepsets`` version 1 (DeepSets, Zaheer et al. 2017):

1. normalise: ``c = (candidates - cand_mean) / cand_std``, ``g = (context - ctx_mean) / ctx_std``;
2. encode each candidate with its context: ``h_i = relu(W2 relu(W1 [c_i, g] + b1) + b2)``
   (one shared encoder, so candidate order never matters);
3. pool over the valid candidates (mask 1): ``p = [mean_i h_i, max_i h_i]``;
4. score each candidate from itself, the pool and the context:
   ``s_i = w4 . relu(W3 [h_i, p, g] + b3) + b4`` (no layer mixes candidate slots);
5. value (for actor-critic training): ``v = u2 . relu(U1 [p, g] + d1) + d2``.

Any number of candidates can be scored. Parameter names below are the keys of the policy
file; :mod:`metalearn.policies.numpy_scorer` (inference, no torch) and
:mod:`metalearn.policies.torch_scorer` (training) both follow this table, and a test checks
they agree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from metalearn.common.validation import check_positive_int
from metalearn.exceptions import InvalidInputError

__all__ = ["ScorerArchitecture", "ARCHITECTURES", "parameter_shapes"]

#: Architectures this release can rebuild from a policy file: name -> supported versions.
ARCHITECTURES: dict[str, tuple[int, ...]] = {"deepsets": (1,)}


@dataclass(frozen=True)
class ScorerArchitecture:
    """Hyper-parameters that fix the scorer's parameter shapes.

    Attributes
    ----------
    n_candidate_features : int
        F, per-candidate features (the feature schema's).
    n_context_features : int
        G, per-loop context features.
    hidden : int
        H, width of every hidden layer.
    name : str
        Architecture name (``deepsets``).
    version : int
        Architecture version.
    """

    n_candidate_features: int
    n_context_features: int
    hidden: int = 64
    name: str = "deepsets"
    version: int = 1

    def validate(self) -> "ScorerArchitecture":
        if self.name not in ARCHITECTURES:
            raise InvalidInputError(
                f"unknown scorer architecture {self.name!r}; this release knows: {', '.join(ARCHITECTURES)}"
            )
        if self.version not in ARCHITECTURES[self.name]:
            raise InvalidInputError(
                f"scorer architecture {self.name!r} version {self.version} is not supported by this release "
                f"(supported: {ARCHITECTURES[self.name]}); upgrade metalearn"
            )
        check_positive_int(self.n_candidate_features, "n_candidate_features")
        check_positive_int(self.n_context_features, "n_context_features")
        check_positive_int(self.hidden, "hidden")
        return self

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> "ScorerArchitecture":
        try:
            arch = cls(
                n_candidate_features=int(d["n_candidate_features"]),  # type: ignore[arg-type]
                n_context_features=int(d["n_context_features"]),  # type: ignore[arg-type]
                hidden=int(d.get("hidden", 64)),  # type: ignore[arg-type]
                name=str(d.get("name", "deepsets")),
                version=int(d.get("version", 1)),  # type: ignore[arg-type]
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"malformed scorer architecture {d!r}: {exc}") from None
        return arch.validate()


def parameter_shapes(arch: ScorerArchitecture) -> dict[str, tuple[int, ...]]:
    """Name and shape of every parameter and normalisation buffer (weights are (out, in))."""
    F, G, H = arch.n_candidate_features, arch.n_context_features, arch.hidden
    return {
        "cand_mean": (F,),
        "cand_std": (F,),
        "ctx_mean": (G,),
        "ctx_std": (G,),
        "encoder.0.weight": (H, F + G),
        "encoder.0.bias": (H,),
        "encoder.1.weight": (H, H),
        "encoder.1.bias": (H,),
        "head.0.weight": (H, 3 * H + G),
        "head.0.bias": (H,),
        "head.1.weight": (1, H),
        "head.1.bias": (1,),
        "value.0.weight": (H, 2 * H + G),
        "value.0.bias": (H,),
        "value.1.weight": (1, H),
        "value.1.bias": (1,),
    }
