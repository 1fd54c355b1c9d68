"""The permutation-invariant candidate scorer, described once for torch and numpy.

Architecture ``deepsets`` version 1 (DeepSets, Zaheer et al. 2017):

1. normalise: ``c = (candidates - cand_mean) / cand_std``, ``g = (context - ctx_mean) / ctx_std``;
2. encode each candidate with its context: ``h_i = relu(W2 relu(W1 [c_i, g] + b1) + b2)``
   (one shared encoder, so candidate order never matters);
3. pool over the valid candidates (mask 1): ``p = [mean_i h_i, max_i h_i]``;
4. score each candidate from itself, the pool and the context:
   ``s_i = w4 . relu(W3 [h_i, p, g] + b3) + b4`` (no layer mixes candidate slots);
5. value (for actor-critic training): ``v = u2 . relu(U1 [p, g] + d1) + d2``.

Version 2, the *residual* scorer, adds a fixed prior to step 4 and learns corrections to it:

4'. ``s_i = prior_sign * prior_scale * x_i[prior_index] + (w4 . relu(W3 [h_i, p, g] + b3) + b4)``

where ``x_i`` is candidate i's feature row *as given to the scorer*, before the
normalisation of step 1 (the features are defined in [-1, 1] and clipped to it; the raw
value keeps the prior's meaning independent of the normalisation statistics, so
``prior_scale`` is a temperature in feature units). ``prior_feature`` (a candidate feature
of the policy's schema, at column ``prior_index``) and ``prior_sign`` (+1 or -1) are
architecture metadata; ``prior_scale`` is a learned scalar stored in the file. The
trainers use :data:`RESIDUAL_PRIORS`: the raw ``margin`` with sign -1 (smaller margin =
higher score) for both ``pool@1`` and ``proba@1``, and zero-initialise ``w4`` and ``b4``
(``head.1.*``), so a fresh version-2 scorer ranks candidates exactly as margin sampling
does (any ``prior_scale > 0``); training then learns where to deviate. Everything else
(encoder, pooling, value head, parameter names) is version 1's.

Architecture ``gated_linear`` version 1, the *context-gated linear* scorer that the
evolution-strategies trainer searches (few weights, each readable on a model card):

    ``s_i = prior_sign * prior_scale * x_i[prior_index] + sum_f sum_j weights[f, j] * x_i[f] * z_j``

with ``z = [1, g]`` (a constant, then the raw context features): each candidate feature ``f``
has a weight that is a linear function of the loop's context. ``weights`` all zero ranks
exactly as the prior (margin sampling). Features are used raw (defined in [-1, 1] and
clipped to it), so there are no normalisation buffers; ``hidden`` is unused (recorded as 0).

Any number of candidates can be scored. Parameter names below are the keys of the policy
file; :mod:`metalearn.policies.numpy_scorer` (inference, no torch) and
:mod:`metalearn.policies.torch_scorer` (training) both follow this table, and a test checks
they agree.

===========================  ===========  ========
parameter                    shape        versions
===========================  ===========  ========
``cand_mean``, ``cand_std``  (F,)         1, 2
``ctx_mean``, ``ctx_std``    (G,)         1, 2
``encoder.0.weight``         (H, F + G)   1, 2
``encoder.0.bias``           (H,)         1, 2
``encoder.1.weight``         (H, H)       1, 2
``encoder.1.bias``           (H,)         1, 2
``head.0.weight``            (H, 3H + G)  1, 2
``head.0.bias``              (H,)         1, 2
``head.1.weight``            (1, H)       1, 2
``head.1.bias``              (1,)         1, 2
``value.0.weight``           (H, 2H + G)  1, 2
``value.0.bias``             (H,)         1, 2
``value.1.weight``           (1, H)       1, 2
``value.1.bias``             (1,)         1, 2
``prior_scale``              (1,)         2
===========================  ===========  ========

``gated_linear`` v1: ``weights`` (F, G + 1) and ``prior_scale`` (1,).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from metalearn.common.validation import check_positive_int
from metalearn.exceptions import InvalidInputError

if TYPE_CHECKING:
    from metalearn.features.schema import FeatureSchema

__all__ = [
    "ScorerArchitecture",
    "ARCHITECTURES",
    "RESIDUAL_PRIORS",
    "RESIDUAL_VERSION",
    "DEFAULT_PRIOR_SCALE",
    "parameter_shapes",
    "GATED_LINEAR",
]

#: Architectures this release can rebuild from a policy file: name -> supported versions.
ARCHITECTURES: dict[str, tuple[int, ...]] = {"deepsets": (1, 2), "gated_linear": (1,)}
#: The context-gated linear scorer (always with a prior; see the module docstring).
GATED_LINEAR = "gated_linear"
#: The ``deepsets`` version with a fixed prior plus learned residual (see the module docstring).
RESIDUAL_VERSION = 2
#: Prior of a residual scorer per feature schema name: (candidate feature, sign). The raw
#: margin with sign -1 reproduces margin sampling's ranking (smaller margin = higher score).
RESIDUAL_PRIORS: dict[str, tuple[str, int]] = {"pool": ("margin", -1), "proba": ("margin", -1)}
#: Initial ``prior_scale`` of the listwise (imitation) and PPO trainers. On the K = 32 "mixed"
#: candidate sets of the synthetic suite the margins have a per-state standard deviation of
#: about 0.23 (half of the candidates sit near 0): ``softmax(-10 * margin)`` puts about 88% of
#: the probability on the smaller-margin half of the candidates while staying spread within it
#: (entropy 3.0 nats against log 32 = 3.5 for uniform; the oracle's ListNet targets have 2.3), so
#: the initial policy is margin-like but still explores, and the listwise loss starts at the
#: right order of temperature. The scale is learned from there.
DEFAULT_PRIOR_SCALE = 10.0
_PRIOR_FIELDS = ("prior_feature", "prior_index", "prior_sign")
#: Widest hidden layer a policy file may declare (released policies use 64): bounds the memory
#: a file can make a query allocate, whatever it claims.
MAX_HIDDEN = 2048
#: Most features a scorer may declare (the schemas have 10 to 16).
MAX_FEATURES = 4096


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
        Architecture version: 1 (learned score) or 2 (residual: prior + learned correction).
    prior_feature : str or None
        Version 2: name of the candidate feature the prior reads (checked against the
        policy's feature schema when a file is read); None for version 1.
    prior_index : int or None
        Version 2: its column among the candidate features (``0 <= prior_index < F``).
    prior_sign : int or None
        Version 2: +1 (larger feature = higher score) or -1 (smaller = higher).
    """

    n_candidate_features: int
    n_context_features: int
    hidden: int = 64
    name: str = "deepsets"
    version: int = 1
    prior_feature: str | None = None
    prior_index: int | None = None
    prior_sign: int | None = None

    @classmethod
    def gated_linear(cls, schema: "FeatureSchema") -> "ScorerArchitecture":
        """The context-gated linear scorer for ``schema``, with its :data:`RESIDUAL_PRIORS` prior."""
        if schema.name not in RESIDUAL_PRIORS:
            raise InvalidInputError(f"no prior is defined for feature schema {schema.name!r}")
        feature, sign = RESIDUAL_PRIORS[schema.name]
        return cls(
            schema.n_candidate_features,
            schema.n_context_features,
            hidden=0,
            name=GATED_LINEAR,
            version=1,
            prior_feature=feature,
            prior_index=schema.candidate_features.index(feature),
            prior_sign=sign,
        ).validate()

    @classmethod
    def for_schema(cls, schema: "FeatureSchema", hidden: int = 64, residual: bool = False) -> "ScorerArchitecture":
        """The architecture the trainers build for ``schema``: version 1, or version 2 with its
        :data:`RESIDUAL_PRIORS` entry when ``residual``."""
        if not residual:
            return cls(schema.n_candidate_features, schema.n_context_features, hidden=hidden).validate()
        if schema.name not in RESIDUAL_PRIORS:
            raise InvalidInputError(
                f"no residual prior is defined for feature schema {schema.name!r} "
                f"(defined for: {', '.join(RESIDUAL_PRIORS)})"
            )
        feature, sign = RESIDUAL_PRIORS[schema.name]
        return cls(
            schema.n_candidate_features,
            schema.n_context_features,
            hidden=hidden,
            version=RESIDUAL_VERSION,
            prior_feature=feature,
            prior_index=schema.candidate_features.index(feature),
            prior_sign=sign,
        ).validate()

    @property
    def residual(self) -> bool:
        """Whether the score adds a prior feature term (deepsets version 2; every gated_linear)."""
        return self.name == GATED_LINEAR or self.version >= RESIDUAL_VERSION

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
        for field_name, limit in (("n_candidate_features", MAX_FEATURES), ("n_context_features", MAX_FEATURES)):
            value = check_positive_int(getattr(self, field_name), field_name)
            if value > limit:
                raise InvalidInputError(f"scorer architecture {field_name}={value} exceeds the limit of {limit}")
        if self.name == GATED_LINEAR:
            if isinstance(self.hidden, bool) or self.hidden != 0:
                raise InvalidInputError(f"scorer architecture {GATED_LINEAR!r} has no hidden layer: hidden must be 0, got {self.hidden!r}")
        elif check_positive_int(self.hidden, "hidden") > MAX_HIDDEN:
            raise InvalidInputError(f"scorer architecture hidden={self.hidden} exceeds the limit of {MAX_HIDDEN}")
        if not self.residual:
            given = {k: getattr(self, k) for k in _PRIOR_FIELDS if getattr(self, k) is not None}
            if given:
                raise InvalidInputError(
                    f"scorer architecture {self.name!r} version {self.version} has no prior, but {given} is set; "
                    f"a prior needs version {RESIDUAL_VERSION}"
                )
            return self
        if not isinstance(self.prior_feature, str) or not self.prior_feature:
            raise InvalidInputError(
                f"scorer architecture {self.name!r} version {self.version} needs 'prior_feature', the name of a "
                f"candidate feature, got {self.prior_feature!r}"
            )
        index = self.prior_index
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < self.n_candidate_features:
            raise InvalidInputError(
                f"scorer architecture {self.name!r} version {self.version} needs 'prior_index', an integer column "
                f"in [0, {self.n_candidate_features - 1}], got {index!r}"
            )
        if isinstance(self.prior_sign, bool) or self.prior_sign not in (-1, 1):
            raise InvalidInputError(
                f"scorer architecture {self.name!r} version {self.version} needs 'prior_sign' +1 or -1, "
                f"got {self.prior_sign!r}"
            )
        return self

    def to_dict(self) -> dict[str, object]:
        """Plain fields; a version-1 architecture leaves out the (unset) prior fields, as before."""
        d = asdict(self)
        if not self.residual:
            for key in _PRIOR_FIELDS:
                d.pop(key)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ScorerArchitecture":
        if not isinstance(d, dict):
            raise InvalidInputError(f"a scorer architecture is a dict, got {type(d).__name__}")
        # Integer fields must be JSON integers: 1.5, 64.5 or "64" are refused, never truncated.
        for key in ("n_candidate_features", "n_context_features", "hidden", "version"):
            value = d.get(key, 1)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidInputError(
                    f"malformed scorer architecture: {key!r} must be an integer, got {type(value).__name__} {value!r}"[:300]
                )
        name = d.get("name", "deepsets")
        if not isinstance(name, str):
            raise InvalidInputError(f"malformed scorer architecture: 'name' must be a string, got {name!r}"[:300])
        try:
            index = d.get("prior_index")
            sign = d.get("prior_sign")
            arch = cls(
                n_candidate_features=int(d["n_candidate_features"]),
                n_context_features=int(d["n_context_features"]),
                hidden=int(d.get("hidden", 64)),
                name=name,
                version=int(d.get("version", 1)),
                prior_feature=d.get("prior_feature"),
                # JSON integers stay ints; anything else is left for validate() to refuse.
                prior_index=index,
                prior_sign=int(sign) if isinstance(sign, float) and sign in (-1.0, 1.0) else sign,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"malformed scorer architecture {d!r}: {exc}") from None
        return arch.validate()


def parameter_shapes(arch: ScorerArchitecture) -> dict[str, tuple[int, ...]]:
    """Name and shape of every parameter and normalisation buffer (weights are (out, in))."""
    F, G, H = arch.n_candidate_features, arch.n_context_features, arch.hidden
    if arch.name == GATED_LINEAR:
        return {"weights": (F, G + 1), "prior_scale": (1,)}
    shapes: dict[str, tuple[int, ...]] = {
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
    if arch.residual:
        shapes["prior_scale"] = (1,)
    return shapes
