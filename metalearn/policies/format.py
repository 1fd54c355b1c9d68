"""The policy format: a scorer's weights and its model card in the metalearn file container.

A policy file is a :mod:`~metalearn.common.container` file of kind :data:`POLICY_KIND`: the
tensors are the scorer's float32 weights, named like
:func:`~metalearn.policies.architecture.parameter_shapes`, and the metadata is the policy's
model card.

The metadata JSON always holds ``format`` (``"metalearn-policy"``), ``format_version``,
``architecture`` (:meth:`ScorerArchitecture.to_dict`), ``package_version``, ``created`` (UTC,
ISO 8601), ``feature_schema`` (:meth:`FeatureSchema.to_dict`) and ``window`` (history length
H); trainers add ``n_candidates``, ``trainer`` (``{"method", "settings"}``), ``task_suite``,
``seed``, ``training`` (curve, time, steps) and ``validation`` (scores).

:func:`read_policy` has the container check the raw bytes (size, header length, JSON,
dtypes, shapes, offsets, format and version) before the safetensors library sees them, then
checks the architecture against :data:`~metalearn.policies.architecture.ARCHITECTURES`, the
feature schema against :func:`~metalearn.features.registry.get_schema` (and a residual scorer's
prior feature against the schema's candidate features), and the weights (shapes,
finiteness). Any problem raises :class:`~metalearn.exceptions.PolicyFileError` (or
:class:`~metalearn.exceptions.FeatureSchemaError` for a schema this release cannot compute)
naming the file. Only numpy is needed: reading a policy never imports torch.

Names of released policies are resolved by :mod:`metalearn.policies.names`; the model card is
rendered by :mod:`metalearn.policies.card`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from metalearn.common import container
from metalearn.common.container import FileKind
from metalearn.common.jsonable import json_safe
from metalearn.exceptions import (
    FeatureSchemaError, InvalidInputError, InvalidTypeError, MetalearnError, PolicyFileError,
)
from metalearn.features.registry import get_schema
from metalearn.features.schema import FeatureSchema
from metalearn.policies.architecture import ScorerArchitecture
from metalearn.policies.numpy_scorer import Scorer, build_scorer

__all__ = [
    "PolicyFile",
    "save_policy",
    "read_policy",
    "POLICY_KIND",
    "FORMAT",
    "FORMAT_VERSION",
    "METADATA_KEY",
    "MAX_HEADER_BYTES",
    "MAX_METADATA_BYTES",
    "MAX_FILE_BYTES",
    "MAX_WINDOW",
    "MAX_N_CANDIDATES",
    "REQUIRED_METADATA",
    "STANDARD_METADATA",
]

#: Value of the metadata's ``format`` key.
FORMAT = "metalearn-policy"
#: Newest metadata layout this release writes and reads.
FORMAT_VERSION = 1
#: Key of the metadata JSON string inside the safetensors ``__metadata__`` map.
METADATA_KEY = container.METADATA_KEY

#: The policy file's kind in the container: float weights, a header of a few KiB plus its
#: model card (limit 16 MiB), a file of a few hundred KiB (limit 512 MiB).
POLICY_KIND = FileKind(
    format=FORMAT,
    version=FORMAT_VERSION,
    label="policy file",
    noun="metalearn policy",
    version_label="policy format",
    error=PolicyFileError,
    expected="a .safetensors policy file",
)
#: Largest header accepted (bytes).
MAX_HEADER_BYTES = POLICY_KIND.max_header_bytes
#: Largest metadata JSON written, so every written file stays readable.
MAX_METADATA_BYTES = POLICY_KIND.max_metadata_bytes
#: Largest file accepted (bytes).
MAX_FILE_BYTES = POLICY_KIND.max_file_bytes
#: Longest history a policy may declare (loops; released policies use 5): the history takes
#: n_pool x window x n_classes floats, so a file must not be able to ask for more.
MAX_WINDOW = 100
#: Most candidates per query a policy may declare (released policies use 32).
MAX_N_CANDIDATES = 65536

#: Metadata keys every policy file holds besides the standard ones.
REQUIRED_METADATA = ("feature_schema", "window")
#: Metadata keys :func:`save_policy` fills.
STANDARD_METADATA = ("format", "format_version", "architecture", "package_version", "created")

# ------------------------------------------------------------------------------------ the object
@dataclass(eq=False)
class PolicyFile:
    """A policy read from (or about to be written to) a policy file.

    Attributes
    ----------
    arch : ScorerArchitecture
        The scorer's architecture (validated against the whitelist).
    params : dict of str to ndarray
        Every parameter of :func:`~metalearn.policies.architecture.parameter_shapes`, float32.
    metadata : dict
        The model card: the standard keys plus what the trainer recorded.
    path : Path or None
        The file it was read from.
    schema : FeatureSchema
        The feature schema the policy was trained with (one this release computes).
    scorer : NumpyScorer or GatedLinearScorer
        The scorer's numpy forward pass, built from ``arch`` and ``params``.
    """

    arch: ScorerArchitecture
    params: dict[str, np.ndarray]
    metadata: dict[str, Any]
    path: Path | None = None
    schema: FeatureSchema = field(default=None, repr=False)  # type: ignore[assignment]
    scorer: Scorer = field(default=None, repr=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.scorer is None:
            self.scorer = build_scorer(self.arch, self.params)
        if self.schema is None:
            self.schema = _check_schema(self.metadata.get("feature_schema"), self.arch, self._where)

    @property
    def _where(self) -> str:
        return f"policy file {str(self.path)!r}" if self.path is not None else "policy"

    @property
    def window(self) -> int:
        """History length H (loops) the policy was trained with."""
        return int(self.metadata["window"])

    @property
    def n_candidates(self) -> int | None:
        """Candidates per query recorded at training (None if the trainer did not record it)."""
        value = self.metadata.get("n_candidates")
        return None if value is None else int(value)

    @property
    def n_parameters(self) -> int:
        """Number of scalar weights (normalisation buffers included)."""
        return int(sum(v.size for v in self.params.values()))

    def behaviour_digest(self) -> str:
        """A hash of what decides the policy's picks: architecture, weights, schema, window, K.

        The model card (training log, release notes) is left out, so releasing a policy under
        a name, which rewrites its metadata, keeps the digest, and the benchmark runs stored
        for it stay valid.

        Returns
        -------
        str
            16 hexadecimal digits.
        """
        digest = hashlib.sha256()
        header = {
            "architecture": self.arch.to_dict(),
            "feature_schema": self.schema.to_dict(),
            "window": self.window,
            "n_candidates": self.n_candidates,
        }
        digest.update(json.dumps(header, sort_keys=True).encode())
        for name in sorted(self.params):
            array = np.ascontiguousarray(self.params[name], dtype=np.float32)
            digest.update(f"{name}{array.shape}".encode())
            digest.update(array.tobytes())
        return digest.hexdigest()[:16]

    def __repr__(self) -> str:
        a = self.arch
        return (
            f"PolicyFile(path={str(self.path) if self.path else None!r}, arch={a.name} v{a.version} "
            f"F={a.n_candidate_features} G={a.n_context_features} H={a.hidden}, "
            f"schema={self.schema.id if self.schema is not None else None}, window={self.metadata.get('window')})"
        )


# ------------------------------------------------------------------------------------ writing
def _check_params(arch: ScorerArchitecture, params: Mapping[str, Any], where: str) -> dict[str, np.ndarray]:
    """Weights as contiguous float32 arrays, checked against the architecture."""
    if not isinstance(params, Mapping):
        raise PolicyFileError(f"{where}: params must be a dict of parameter name to array, got {type(params).__name__}")
    arrays: dict[str, np.ndarray] = {}
    for name, value in params.items():
        try:
            array = np.asarray(value)
        except Exception as exc:  # noqa: BLE001 - anything array-like may fail to convert
            raise PolicyFileError(f"{where}: parameter {name!r} is not an array ({exc})") from None
        if array.dtype.kind != "f":
            raise PolicyFileError(
                f"{where}: parameter {name!r} has dtype {array.dtype}, expected floating point weights"
            )
        arrays[str(name)] = array
    try:
        scorer = build_scorer(arch, arrays)
    except InvalidInputError as exc:
        raise PolicyFileError(f"{where}: {exc}") from None
    return {name: np.ascontiguousarray(value, dtype="<f4") for name, value in scorer.params.items()}


def _check_schema(recorded: Any, arch: ScorerArchitecture, where: str) -> FeatureSchema:
    """The schema a policy records, as this release computes it; raises if they differ."""
    if isinstance(recorded, FeatureSchema):
        recorded = recorded.to_dict()
    if not isinstance(recorded, Mapping):
        raise PolicyFileError(
            f"{where}: metadata 'feature_schema' must be a dict (FeatureSchema.to_dict()), got {type(recorded).__name__}"
        )
    name, version = recorded.get("name"), recorded.get("version")
    if not isinstance(name, str) or isinstance(version, bool) or not isinstance(version, int):
        raise PolicyFileError(
            f"{where}: metadata 'feature_schema' needs a string 'name' and an integer 'version', "
            f"got name={name!r}, version={version!r}"
        )
    try:
        schema = get_schema(name, version)
    except FeatureSchemaError as exc:
        raise FeatureSchemaError(f"{where}: {exc}") from None
    for key, expected in (
        ("candidate_features", schema.candidate_features),
        ("context_features", schema.context_features),
    ):
        got = recorded.get(key)
        if not isinstance(got, (list, tuple)) or tuple(got) != tuple(expected):
            raise FeatureSchemaError(
                f"{where}: its {key} differ from what schema {schema.id} computes in this release "
                f"(recorded {list(got)[:20] if isinstance(got, (list, tuple)) else got!r}, "
                f"computed {list(expected)}); the file was written for another definition of the schema"
            )
    if (arch.n_candidate_features, arch.n_context_features) != (schema.n_candidate_features, schema.n_context_features):
        raise PolicyFileError(
            f"{where}: the scorer expects {arch.n_candidate_features} candidate and {arch.n_context_features} "
            f"context features but schema {schema.id} has {schema.n_candidate_features} and "
            f"{schema.n_context_features}"
        )
    if arch.residual:
        _check_prior(arch, schema, where)
    return schema


def _check_prior(arch: ScorerArchitecture, schema: FeatureSchema, where: str) -> None:
    """A residual (version 2) scorer's prior must name a candidate feature of the schema, at its column."""
    feature, index = arch.prior_feature, arch.prior_index
    if feature not in schema.candidate_features:
        raise PolicyFileError(
            f"{where}: its scorer's prior feature {feature!r} is not a candidate feature of schema {schema.id} "
            f"(which has: {', '.join(schema.candidate_features)})"
        )
    if schema.candidate_features.index(feature) != index:
        raise PolicyFileError(
            f"{where}: its scorer's prior reads column {index} as {feature!r}, but schema {schema.id} has "
            f"{feature!r} at column {schema.candidate_features.index(feature)}"
        )


def _check_window(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 2 <= value <= MAX_WINDOW:
        raise PolicyFileError(
            f"{where}: metadata 'window' must be an integer in [2, {MAX_WINDOW}] (history loops), got {value!r}"[:400]
        )
    return int(value)


def _check_n_candidates(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= MAX_N_CANDIDATES:
        raise PolicyFileError(
            f"{where}: metadata 'n_candidates' must be an integer in [1, {MAX_N_CANDIDATES}] or absent, got {value!r}"[:400]
        )
    return int(value)



def save_policy(
    path: str | os.PathLike[str],
    arch: ScorerArchitecture,
    params: Mapping[str, np.ndarray],
    metadata: Mapping[str, Any],
) -> Path:
    """Write a policy file atomically.

    The file is first written to a temporary file in the same folder, flushed to disk, then
    renamed over ``path``: a crash never leaves a half-written file under the final name, and
    an existing file there is replaced only by a complete one.

    Parameters
    ----------
    path : str or path-like
        Destination (conventionally ``*.safetensors``). Missing parent folders are created.
    arch : ScorerArchitecture
        The scorer's architecture; must be one :data:`ARCHITECTURES` lists.
    params : dict of str to ndarray
        Every entry of :func:`parameter_shapes` (e.g. ``TorchScorer.arrays()``), with exactly
        those shapes, floating point and finite; stored as float32.
    metadata : dict
        The model card. Required: ``feature_schema`` (``FeatureSchema.to_dict()`` or the
        schema itself) and ``window`` (int >= 2). Optional: ``n_candidates`` (int),
        ``trainer`` (``{"method": str, "settings": dict}``), ``task_suite``, ``seed``,
        ``training`` (curve, time, steps), ``validation`` (scores), and any other JSON data.
        numpy scalars and arrays are converted; NaN and infinite numbers are stored as null.
        The standard keys ``format``, ``format_version``, ``architecture``,
        ``package_version`` and ``created`` are filled here (values passed for them are
        replaced).

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    PolicyFileError
        Bad weights or metadata, or the file cannot be written.
    FeatureSchemaError
        The metadata's feature schema is not one this release computes.
    """
    target = Path(path)
    where = f"cannot save policy file {str(target)!r}"
    if not isinstance(arch, ScorerArchitecture):
        raise PolicyFileError(f"{where}: arch must be a ScorerArchitecture, got {type(arch).__name__}")
    try:
        arch.validate()
    except InvalidInputError as exc:
        raise PolicyFileError(f"{where}: {exc}") from None
    arrays = _check_params(arch, params, where)
    if not isinstance(metadata, Mapping):
        raise PolicyFileError(f"{where}: metadata must be a dict, got {type(metadata).__name__}")
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        raise PolicyFileError(
            f"{where}: metadata lacks {missing}; pass feature_schema=schema.to_dict() and window=H (the history length)"
        )
    try:
        meta = json_safe(dict(metadata), "metadata")
    except InvalidTypeError as exc:
        raise PolicyFileError(f"policy {exc}; pass numbers, strings, lists and dicts only") from None
    schema = _check_schema(meta["feature_schema"], arch, where)
    meta["feature_schema"] = schema.to_dict()
    meta["window"] = _check_window(meta["window"], where)
    meta["n_candidates"] = _check_n_candidates(meta.get("n_candidates"), where)
    meta.update(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        architecture=arch.to_dict(),
        package_version=container.package_version(),
        created=container.created_stamp(),
    )
    container.write_atomic(target, container.encode(arrays, meta, POLICY_KIND, target), POLICY_KIND)
    return target


def _read(path: Path) -> PolicyFile:
    where = POLICY_KIND.where(path)
    data = container.read_bounded(path, POLICY_KIND)
    metadata = container.read_metadata(data, POLICY_KIND, path)
    missing = [key for key in (*REQUIRED_METADATA, "architecture") if key not in metadata]
    if missing:
        raise PolicyFileError(f"{where}: metadata lacks required key(s) {missing}")

    arch_dict = metadata["architecture"]
    if not isinstance(arch_dict, dict):
        raise PolicyFileError(f"{where}: metadata 'architecture' must be an object, got {type(arch_dict).__name__}")
    try:
        arch = ScorerArchitecture.from_dict(arch_dict)
    except InvalidInputError as exc:
        raise PolicyFileError(f"{where}: {exc}") from None
    schema = _check_schema(metadata["feature_schema"], arch, where)
    _check_window(metadata["window"], where)
    _check_n_candidates(metadata.get("n_candidates"), where)

    tensors = container.load_tensors(data, POLICY_KIND, path)
    params = {name: np.array(value, dtype=np.float32) for name, value in tensors.items()}
    try:
        scorer = build_scorer(arch, params)
    except InvalidInputError as exc:
        raise PolicyFileError(f"{where}: {exc}") from None
    return PolicyFile(arch=arch, params=scorer.params, metadata=metadata, path=path, schema=schema, scorer=scorer)


def read_policy(path_or_name: str | os.PathLike[str]) -> PolicyFile:
    """Read and check a policy file; numpy only, nothing in the file is executed.

    Parameters
    ----------
    path_or_name : str or path-like
        A policy file, or the name of a released policy (see :func:`~metalearn.policies.names.resolve_policy_path`).

    Returns
    -------
    PolicyFile
        With ``params`` of the shapes :func:`parameter_shapes` gives (float32) and a ready
        ``scorer``.

    Raises
    ------
    PolicyFileError
        Missing file, not a metalearn policy (pickle, zip, SB3 or torch checkpoint, plain
        safetensors), truncated, corrupted header, wrong dtype or shape, NaN or infinite
        weights, unknown architecture or version, bad metadata.
    FeatureSchemaError
        The policy's feature schema is not one this release computes (or differs from it).
    UnknownNameError
        ``path_or_name`` is neither a file nor a released policy name.
    """
    from metalearn.policies.names import resolve_policy_path

    path = resolve_policy_path(path_or_name)
    try:
        return _read(path)
    except MetalearnError:
        raise
    except Exception as exc:  # noqa: BLE001 - a malformed file must never surface as another error
        raise PolicyFileError(f"policy file {str(path)!r} is malformed ({type(exc).__name__}: {exc})") from None

