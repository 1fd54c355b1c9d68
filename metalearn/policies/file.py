"""The policy file: one safetensors file holding the scorer's weights and a JSON model card.

Layout (the `safetensors <https://github.com/huggingface/safetensors>`_ format, so no pickle
and nothing executable anywhere):

- 8 bytes: little-endian length N of the header;
- N bytes: the JSON header: one entry per tensor (``dtype``, ``shape``, ``data_offsets``)
  named like :func:`~metalearn.policies.architecture.parameter_shapes`, and
  ``__metadata__ = {"metalearn": "<JSON text>"}``, the policy's metadata (model card);
- the tensor bytes, float32 little-endian.

The metadata JSON always holds ``format`` (``"metalearn-policy"``), ``format_version``,
``architecture`` (:meth:`ScorerArchitecture.to_dict`), ``package_version``, ``created`` (UTC,
ISO 8601), ``feature_schema`` (:meth:`FeatureSchema.to_dict`) and ``window`` (history length
H); trainers add ``n_candidates``, ``trainer`` (``{"method", "settings"}``), ``task_suite``,
``seed``, ``training`` (curve, time, steps) and ``validation`` (scores).

:func:`read_policy` checks the raw bytes itself (sizes, header length, JSON, dtypes, shapes,
offsets, metadata) before the safetensors library sees them, then checks the architecture
against :data:`~metalearn.policies.architecture.ARCHITECTURES`, the feature schema against
:func:`~metalearn.features.schema.get_schema` (and a residual scorer's prior feature against
the schema's candidate features), and the weights (shapes, finiteness). Any
problem raises :class:`~metalearn.exceptions.PolicyFileError` (or
:class:`~metalearn.exceptions.FeatureSchemaError` for a schema this release cannot compute)
naming the file. Only numpy is needed: reading a policy never imports torch.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import math
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from metalearn.common.atomic import atomic_write_bytes
from metalearn.common.jsonable import json_safe
from metalearn.common.text import printable
from metalearn.exceptions import (
    FeatureSchemaError, InvalidInputError, InvalidTypeError, MetalearnError, PolicyFileError, UnknownNameError,
)
from metalearn.features.schema import FeatureSchema, get_schema
from metalearn.policies.architecture import ScorerArchitecture
from metalearn.policies.numpy_scorer import GatedLinearScorer, Scorer, build_scorer

__all__ = [
    "PolicyFile",
    "save_policy",
    "read_policy",
    "resolve_policy_path",
    "released_policy_names",
    "policy_search_dirs",
    "format_model_card",
    "FORMAT",
    "FORMAT_VERSION",
    "POLICY_SUFFIX",
    "METADATA_KEY",
    "POLICY_DIR_ENV",
]

#: Value of the metadata's ``format`` key.
FORMAT = "metalearn-policy"
#: Newest metadata layout this release writes and reads.
FORMAT_VERSION = 1
#: File name suffix of released policies.
POLICY_SUFFIX = ".safetensors"
#: Key of the metadata JSON string inside the safetensors ``__metadata__`` map.
METADATA_KEY = "metalearn"
#: Environment variable naming extra folders of named policies (``os.pathsep``-separated).
POLICY_DIR_ENV = "METALEARN_POLICY_DIR"

#: Largest header accepted (bytes): a policy's header is a few KiB plus its model card.
MAX_HEADER_BYTES = 16 * 1024 * 1024
#: Largest metadata JSON written, so every written file stays readable.
MAX_METADATA_BYTES = 8 * 1024 * 1024
#: Largest file accepted (bytes); a policy is a few hundred KiB.
MAX_FILE_BYTES = 512 * 1024 * 1024
#: Longest history a policy may declare (loops; released policies use 5): the history takes
#: n_pool x window x n_classes floats, so a file must not be able to ask for more.
MAX_WINDOW = 100
#: Most candidates per query a policy may declare (released policies use 32).
MAX_N_CANDIDATES = 65536

_DTYPES: dict[str, np.dtype[Any]] = {
    "F16": np.dtype("<f2"),
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
}
_REQUIRED_METADATA = ("feature_schema", "window")
_STANDARD_METADATA = ("format", "format_version", "architecture", "package_version", "created")
# The released policies: policies/ in the repository, package data of metalearn.policies.released.
_RELEASED_PACKAGE = "metalearn.policies.released"


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


def _package_version() -> str:
    import metalearn

    return str(getattr(metalearn, "__version__", "unknown"))


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
    missing = [key for key in _REQUIRED_METADATA if key not in metadata]
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
        package_version=_package_version(),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    text = json.dumps(meta, allow_nan=False, ensure_ascii=False, sort_keys=False)
    if len(text.encode("utf-8")) > MAX_METADATA_BYTES:
        raise PolicyFileError(
            f"{where}: the metadata is {len(text.encode('utf-8')) // 1024} KiB, more than the "
            f"{MAX_METADATA_BYTES // 1024 // 1024} MiB a policy file may hold; subsample the training curve"
        )

    from safetensors.numpy import save as _safetensors_save

    payload = _safetensors_save(arrays, metadata={METADATA_KEY: text})
    _atomic_write(target, payload)
    return target


def _atomic_write(target: Path, payload: bytes) -> None:
    """Write ``payload`` to ``target`` atomically (:func:`~metalearn.common.atomic.atomic_write_bytes`)."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PolicyFileError(f"cannot create the folder of policy file {str(target)!r}: {exc}") from None
    try:
        atomic_write_bytes(target, payload)  # fsyncs the file and its folder
    except OSError as exc:
        raise PolicyFileError(f"cannot write policy file {str(target)!r}: {exc}") from None


# ------------------------------------------------------------------------------------ reading
def _sniff(data: bytes) -> str:
    """A hint of what a file that is not a safetensors file is, from its first bytes."""
    head = data[:16]
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")):
        if b"_stable_baselines3_version" in data or (b"policy.pth" in data and b"data" in data):
            return (
                "it is a zip archive holding a Stable-Baselines3 checkpoint; SB3 checkpoints contain pickles and are "
                "never loaded. Export the trained policy with metalearn's trainer (save_policy) instead"
            )
        if b"data.pkl" in data:
            return (
                "it is a zip archive holding a torch checkpoint (torch.save), which contains a pickle and is never "
                "loaded; export the weights with save_policy instead"
            )
        return "it is a zip archive, not a safetensors policy file"
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "it is a Python pickle; metalearn never unpickles files (unpickling can run arbitrary code)"
    if head.startswith(b"\x1f\x8b"):
        return "it is gzip-compressed; decompress it first"
    if head.startswith(b"\x93NUMPY"):
        return "it is a numpy .npy file, not a policy file"
    if head.startswith(b"\x89HDF"):
        return "it is an HDF5 file, not a policy file"
    if head[:1] in (b"(", b"c", b"}", b"]") and b"." in data[-2:]:
        return "it looks like a Python pickle (protocol 0/1); metalearn never unpickles files"
    return "it is not a safetensors file"


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def _loads(text: bytes | str) -> Any:
    return json.loads(text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_header(header: Any, data_size: int, where: str) -> dict[str, Any]:
    """Check every tensor entry of a safetensors header; return the ``__metadata__`` map."""
    if not isinstance(header, dict):
        raise PolicyFileError(f"{where}: the header is JSON {type(header).__name__}, expected an object")
    metadata = header.get("__metadata__")
    spans: list[tuple[int, int, str]] = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise PolicyFileError(
                f"{where}: tensor entry {name!r} must be an object with exactly dtype, shape and data_offsets"
            )
        dtype = entry["dtype"]
        if dtype not in _DTYPES:
            raise PolicyFileError(
                f"{where}: tensor {name!r} has dtype {dtype!r}; policy weights must be F32 (or F16/F64)"
            )
        shape = entry["shape"]
        if not isinstance(shape, list) or len(shape) > 8 or not all(_is_int(d) and 0 <= d < 2**40 for d in shape):
            raise PolicyFileError(f"{where}: tensor {name!r} has an invalid shape {shape!r}")
        offsets = entry["data_offsets"]
        if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(o) for o in offsets):
            raise PolicyFileError(f"{where}: tensor {name!r} has invalid data_offsets {offsets!r}")
        begin, end = offsets
        if not 0 <= begin <= end <= data_size:
            raise PolicyFileError(
                f"{where}: tensor {name!r} claims bytes {begin}..{end} but the file holds {data_size} data bytes "
                "(truncated or corrupted)"
            )
        n_bytes = math.prod(shape) * _DTYPES[dtype].itemsize
        if end - begin != n_bytes:
            raise PolicyFileError(
                f"{where}: tensor {name!r} of shape {shape} and dtype {dtype} needs {n_bytes} bytes but spans "
                f"{end - begin} (corrupted header)"
            )
        spans.append((begin, end, name))
    spans.sort()
    position = 0
    for begin, end, name in spans:
        if begin != position:
            raise PolicyFileError(f"{where}: tensor {name!r} overlaps another or leaves a gap (corrupted header)")
        position = end
    if position != data_size:
        raise PolicyFileError(
            f"{where}: the tensors cover {position} bytes but the file holds {data_size} data bytes "
            "(truncated, extended or corrupted)"
        )
    if metadata is None:
        raise PolicyFileError(
            f"{where}: it is a safetensors file without metadata, not a metalearn policy (no '__metadata__')"
        )
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise PolicyFileError(f"{where}: '__metadata__' must map strings to strings")
    return metadata


def _read_bytes(path: Path, where: str) -> bytes:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise PolicyFileError(f"{where}: no such file") from None
    except OSError as exc:
        raise PolicyFileError(f"{where}: cannot access it ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise PolicyFileError(f"{where}: it is {kind}; give the path of a .safetensors policy file")
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > MAX_FILE_BYTES:
                raise PolicyFileError(
                    f"{where}: it is {size // 2**20} MiB, larger than any policy file "
                    f"(limit {MAX_FILE_BYTES // 2**20} MiB); it is not a metalearn policy"
                )
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise PolicyFileError(f"{where}: cannot read it ({exc.strerror or exc})") from None
    if len(data) > MAX_FILE_BYTES:
        raise PolicyFileError(f"{where}: it grew beyond {MAX_FILE_BYTES // 2**20} MiB while being read")
    return data


def _parse(data: bytes, where: str) -> tuple[dict[str, Any], int]:
    """Validate the raw bytes; return the metalearn metadata and the header length."""
    if len(data) < 8:
        raise PolicyFileError(
            f"{where}: it holds {len(data)} byte(s), fewer than the 8-byte header length of a safetensors file "
            "(empty or truncated)"
        )
    n_header = int.from_bytes(data[:8], "little")
    if n_header > MAX_HEADER_BYTES or n_header > len(data) - 8 or n_header < 2:
        detail = _sniff(data)
        if detail == "it is not a safetensors file":
            detail = (
                f"its header length field says {n_header} bytes but the file holds {len(data) - 8} after it "
                f"(limit {MAX_HEADER_BYTES // 2**20} MiB): it is truncated or not a safetensors file"
            )
        raise PolicyFileError(f"{where}: {detail}")
    raw_header = data[8 : 8 + n_header]
    if not raw_header.startswith(b"{"):
        raise PolicyFileError(f"{where}: {_sniff(data)} (the header does not start with a JSON object)")
    try:
        header = _loads(raw_header.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise PolicyFileError(f"{where}: the header is not valid JSON ({exc}); the file is corrupted or truncated") from None
    container = _check_header(header, len(data) - 8 - n_header, where)
    if METADATA_KEY not in container:
        raise PolicyFileError(
            f"{where}: a safetensors file without the {METADATA_KEY!r} metadata entry, so not a metalearn policy "
            f"(metadata keys: {sorted(container)[:10]})"
        )
    try:
        metadata = _loads(container[METADATA_KEY])
    except (ValueError, RecursionError) as exc:
        raise PolicyFileError(f"{where}: its metadata is not valid JSON ({exc}); the file is corrupted") from None
    if not isinstance(metadata, dict):
        raise PolicyFileError(f"{where}: its metadata is JSON {type(metadata).__name__}, expected an object")
    if metadata.get("format") != FORMAT:
        raise PolicyFileError(
            f"{where}: metadata format is {metadata.get('format')!r}, expected {FORMAT!r}: not a metalearn policy"
        )
    version = metadata.get("format_version")
    if not _is_int(version) or version < 1:
        raise PolicyFileError(f"{where}: metadata format_version must be a positive integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise PolicyFileError(
            f"{where}: written in policy format version {version} by a newer metalearn; this release reads "
            f"version {FORMAT_VERSION}: upgrade metalearn"
        )
    missing = [key for key in (*_REQUIRED_METADATA, "architecture") if key not in metadata]
    if missing:
        raise PolicyFileError(f"{where}: metadata lacks required key(s) {missing}")
    return metadata, n_header


def _read(path: Path) -> PolicyFile:
    where = f"policy file {str(path)!r}"
    data = _read_bytes(path, where)
    metadata, _ = _parse(data, where)

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

    from safetensors.numpy import load as _safetensors_load

    try:
        tensors = _safetensors_load(data)
    except Exception as exc:  # noqa: BLE001 - the library's errors are not ours; the bytes were pre-checked
        raise PolicyFileError(f"{where}: the safetensors library rejected it ({exc})") from None
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
        A policy file, or the name of a released policy (see :func:`resolve_policy_path`).

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
    path = resolve_policy_path(path_or_name)
    try:
        return _read(path)
    except MetalearnError:
        raise
    except Exception as exc:  # noqa: BLE001 - a malformed file must never surface as another error
        raise PolicyFileError(f"policy file {str(path)!r} is malformed ({type(exc).__name__}: {exc})") from None


# ------------------------------------------------------------------------------------ names
def released_policy_dir() -> Path:
    """The folder of the released policies inside the installed package (package data)."""
    return Path(str(importlib.resources.files(_RELEASED_PACKAGE)))


def policy_search_dirs() -> list[Path]:
    """Folders searched for named policies, first match wins.

    The released policies shipped in the package (:func:`released_policy_dir`, the same in a
    checkout and in a wheel install), then each folder of ``$METALEARN_POLICY_DIR``.
    """
    dirs = [released_policy_dir()]
    extra = os.environ.get(POLICY_DIR_ENV, "")
    dirs += [Path(part).expanduser() for part in extra.split(os.pathsep) if part.strip()]
    return dirs


def names_in_folders(folders: list[Path], suffix: str = POLICY_SUFFIX) -> list[str]:
    """Names (file names less ``suffix``) of the files in ``folders``, sorted, without duplicates.

    A folder that cannot be listed is skipped (the released files of policies and of stopping
    rules are found this way).
    """
    names: set[str] = set()
    for folder in folders:
        try:
            names.update(p.name[: -len(suffix)] for p in folder.glob(f"*{suffix}") if p.is_file())
        except OSError:
            continue
    return sorted(names)


def released_policy_names() -> list[str]:
    """Names of the policies found in :func:`policy_search_dirs`, sorted, without duplicates."""
    return names_in_folders(policy_search_dirs())


def resolve_policy_path(name_or_path: str | os.PathLike[str]) -> Path:
    """The file a policy path or released name refers to.

    Parameters
    ----------
    name_or_path : str or path-like
        An existing path is returned as is. Otherwise a bare name (no folder separator) is
        looked up as ``<name>.safetensors`` in the released policies (package data), then in
        each folder of ``$METALEARN_POLICY_DIR`` (``os.pathsep``-separated); the first match wins.

    Returns
    -------
    Path

    Raises
    ------
    UnknownNameError
        A bare name that matches no released policy; the message lists the available names.
    PolicyFileError
        A path (with a folder separator or the ``.safetensors`` suffix) that does not exist.
    """
    if isinstance(name_or_path, PolicyFile):
        raise PolicyFileError("resolve_policy_path takes a path or a name, not a PolicyFile")
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise PolicyFileError(
            f"a policy is given as a file path or a released name, got {type(name_or_path).__name__} {name_or_path!r}"
        )
    text = os.fspath(name_or_path)
    if not text.strip():
        raise PolicyFileError("empty policy name or path")
    if "\x00" in text:
        raise PolicyFileError(f"policy name or path {printable(text[:200])!r} contains a NUL character")
    path = Path(text).expanduser()
    if _exists(path, text):
        return path
    looks_like_path = isinstance(name_or_path, os.PathLike) or any(
        sep in text for sep in {"/", os.sep, os.altsep or "/"}
    ) or text.endswith(POLICY_SUFFIX)
    available = released_policy_names()
    listing = (
        f"released policies: {', '.join(available)}"
        if available
        else "no released policies are installed yet (train one with metalearn train, or set "
        f"${POLICY_DIR_ENV} to a folder of *{POLICY_SUFFIX} files)"
    )
    if looks_like_path:
        raise PolicyFileError(f"policy file {text!r}: no such file; {listing}")
    for folder in policy_search_dirs():
        candidate = folder / f"{text}{POLICY_SUFFIX}"
        if _exists(candidate, text) and candidate.is_file():
            return candidate
    raise UnknownNameError(f"unknown policy {text!r}: neither a file nor a released policy name; {listing}")


def _exists(path: Path, text: str) -> bool:
    """Whether ``path`` exists; a name the system cannot look up (too long...) is a PolicyFileError."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except (OSError, ValueError) as exc:
        shown = text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"
        reason = getattr(exc, "strerror", None) or exc
        raise PolicyFileError(f"policy file {printable(shown)!r}: cannot look it up ({reason})") from None
    return True


# ------------------------------------------------------------------------------------ model card
def _short(value: Any, limit: int = 100) -> str:
    if isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, list):
        text = f"{len(value)} values" if len(value) > 8 or any(isinstance(v, (list, dict)) for v in value) else json.dumps(value)
    elif isinstance(value, dict):
        text = ", ".join(f"{k}={_short(v, 40)}" for k, v in value.items())
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _pick(d: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if d.get(key) is not None:
            return d[key]
    return None


def format_model_card(policy: PolicyFile) -> str:
    """The policy's model card as text: what it was trained on, how, and what it expects.

    Parameters
    ----------
    policy : PolicyFile

    Returns
    -------
    str
        Several lines, no trailing newline.
    """
    meta = _printable_tree(policy.metadata)  # text from a file never reaches the terminal raw
    arch = policy.arch
    lines = [f"policy: {printable(policy.path)}" if policy.path else "policy: (not saved)"]
    lines.append(
        f"  format: {meta.get('format')} v{meta.get('format_version')}, written by metalearn "
        f"{meta.get('package_version', '?')} on {meta.get('created', '?')}"
    )
    suite = meta.get("task_suite")
    lines.append(f"  trained on: {_short(suite, 200) if suite is not None else 'not recorded'}")
    trainer = meta.get("trainer")
    if isinstance(trainer, dict):
        lines.append(f"  trainer: {trainer.get('method', '?')}")
        settings = trainer.get("settings")
        if isinstance(settings, dict) and settings:
            for key, value in settings.items():
                lines.append(f"    {key}: {_short(value)}")
    else:
        lines.append(f"  trainer: {_short(trainer) if trainer is not None else 'not recorded'}")
    lines.append(f"  seed: {meta.get('seed', 'not recorded')}")
    training = meta.get("training")
    if isinstance(training, dict) and training:
        seconds = _pick(training, "seconds", "wall_seconds", "training_seconds", "time_seconds", "time")
        steps = _pick(training, "steps", "total_steps", "timesteps", "total_timesteps", "iterations")
        summary = []
        if seconds is not None:
            summary.append(f"time {_short(seconds)} s" if isinstance(seconds, (int, float)) else f"time {seconds}")
        if steps is not None:
            summary.append(f"steps {_short(steps)}")
        lines.append(f"  training: {', '.join(summary) if summary else 'see below'}")
        for key, value in training.items():
            lines.append(f"    {key}: {_short(value)}")
    else:
        lines.append("  training: not recorded")
    lines.append(
        f"  architecture: {arch.name} v{arch.version}, {arch.n_candidate_features} candidate + "
        f"{arch.n_context_features} context features, hidden {arch.hidden}, {policy.n_parameters} parameters"
    )
    if arch.residual:
        sign = "+" if arch.prior_sign == 1 else "-"
        scale = float(policy.params["prior_scale"][0])
        lines.append(
            f"  residual prior: score = {sign}{scale:.4g} x {arch.prior_feature} (raw feature) + learned correction"
        )
    schema = policy.schema
    if isinstance(policy.scorer, GatedLinearScorer):
        weight_lines = policy.scorer.weight_lines(schema.candidate_features, schema.context_features)
        lines.append("  correction weights (each candidate feature's weight as a function of the loop context):")
        lines.extend(f"    {line}" for line in weight_lines or ["(all zero: ranks as the prior)"])
    lines.append(
        f"  feature schema: {schema.id} ({schema.n_candidate_features} candidate, "
        f"{schema.n_context_features} context features; `metalearn features` describes them)"
    )
    lines.append(f"  window: {policy.window} loops" + (" (unused: the schema keeps no history)" if schema.probabilities_only else ""))
    lines.append(f"  candidates per query: {policy.n_candidates if policy.n_candidates is not None else 'not recorded'}")
    validation = meta.get("validation")
    if isinstance(validation, dict) and validation:
        lines.append("  validation:")
        for key, value in validation.items():
            lines.append(f"    {key}: {_short(value)}")
    else:
        lines.append(f"  validation: {_short(validation) if validation is not None else 'not recorded'}")
    known = {
        *_STANDARD_METADATA, *_REQUIRED_METADATA, "n_candidates", "task_suite", "trainer", "seed", "training",
        "validation", "release",
    }
    for key in meta:
        if key not in known:
            lines.append(f"  {key}: {_short(meta[key])}")
    release = meta.get("release")
    if isinstance(release, dict):
        lines.extend(_release_lines(release))
    return "\n".join(lines)


def _printable_tree(value: Any) -> Any:
    """A copy of JSON data with control characters escaped in every key and string."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable(k): _printable_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_printable_tree(v) for v in value]
    return value


def _release_lines(release: Mapping[str, Any]) -> list[str]:
    """The ``release`` section (scripts/release_policy.py): name, choice and validation table."""
    lines = [f"  released as: {release.get('name', '?')} on {release.get('released', '?')}"]
    if release.get("chosen_by"):
        lines.append(f"    chosen by: {_short(release['chosen_by'], 400)}")
    bench = release.get("validation_benchmark")
    if isinstance(bench, dict):
        lines.append(f"    validation benchmark: {bench.get('folder', '?')} ({bench.get('metric', '')})")
        if bench.get("command"):
            lines.append(f"    command: {_short(bench['command'], 400)}")
        rows = bench.get("overall")
        if isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows):
            columns = list(rows[0])
            cells = [[_cell(r.get(c)) for c in columns] for r in rows]
            widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
            lines.append("    " + "  ".join(c.ljust(w) for c, w in zip(columns, widths)))
            lines.extend("    " + "  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells)
    return lines


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.3g}" if abs(value) < 0.01 and value else f"{value:.2f}"
    return "n/a" if value is None else str(value)
