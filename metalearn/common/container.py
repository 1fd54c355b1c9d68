"""The one container under every file metalearn writes and reads.

Policies, stopping rules and next-batch state files are one `safetensors
<https://github.com/huggingface/safetensors>`_ file each (no pickle, nothing executable):

- 8 bytes: little-endian length N of the header;
- N bytes: the JSON header: one entry per tensor (``dtype``, ``shape``, ``data_offsets``) and
  ``__metadata__ = {"metalearn": "<JSON text>"}``, the file's metadata;
- the tensor bytes.

The metadata JSON names its ``format`` (:data:`KNOWN_FORMATS`) and its version. A training
checkpoint is a JSON document (``checkpoint.json``, the same ``format`` and version keys)
beside a plain safetensors file of arrays.

This module owns what every kind shares: reading with a size bound and a regular-file check
(:func:`read_bounded`: a folder, FIFO or device is refused, never read), the header checks
(:func:`check_safetensors`: header size, strict JSON without duplicate keys, NaN constants or
runaway nesting, every tensor's dtype, shape and offsets), the "this is not a metalearn X
file" and version checks (:func:`check_format`: "written by a newer metalearn: upgrade" versus
"corrupted"), loading the tensors (:func:`load_tensors`), encoding (:func:`encode`) and atomic
writes (:func:`write_atomic`). A kind (:class:`FileKind`) says its format name, version, limits
and the project error it raises; each format module (:mod:`metalearn.policies.format`,
:mod:`metalearn.stopping.file`, :mod:`metalearn.workflow`,
:mod:`metalearn.policies.trainers.checkpoints`) is built on these functions.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from metalearn.common.atomic import atomic_write, atomic_write_bytes
from metalearn.common.text import printable
from metalearn.exceptions import MetalearnError

__all__ = [
    "FileKind",
    "KNOWN_FORMATS",
    "METADATA_KEY",
    "FLOAT_DTYPES",
    "NUMPY_DTYPES",
    "read_bounded",
    "check_safetensors",
    "read_metadata",
    "check_format",
    "load_tensors",
    "read_json_document",
    "loads_strict",
    "encode",
    "write_atomic",
    "sniff",
    "package_version",
    "created_stamp",
]

#: Key of the metadata JSON string inside the safetensors ``__metadata__`` map.
METADATA_KEY = "metalearn"

#: Every file format metalearn writes: its ``format`` value and what a user does with one,
#: so a file given where another kind is expected is named ("it is a stopping rule ...").
KNOWN_FORMATS: dict[str, str] = {
    "metalearn-policy": "a querying policy (load it with load_policy)",
    "metalearn-stopping-rule": "a stopping rule (load it with load_stopping_rule)",
    "metalearn-schedule": "a batch-size schedule (load it with load_schedule)",
    "metalearn-next-batch-state": "a next-batch state file (pass it to metalearn next-batch --state)",
    "metalearn-checkpoint": "a training checkpoint (resume it with metalearn train --resume)",
}

_NUMPY_DTYPE_OF: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype("bool"),
    "U8": np.dtype("u1"), "I8": np.dtype("i1"),
    "U16": np.dtype("<u2"), "I16": np.dtype("<i2"), "F16": np.dtype("<f2"),
    "U32": np.dtype("<u4"), "I32": np.dtype("<i4"), "F32": np.dtype("<f4"),
    "U64": np.dtype("<u8"), "I64": np.dtype("<i8"), "F64": np.dtype("<f8"),
}
#: Tensor dtypes of weights (policies, stopping rules).
FLOAT_DTYPES: frozenset[str] = frozenset({"F16", "F32", "F64"})
#: Every safetensors dtype numpy can hold (state files and checkpoints store ids, flags, RNG bytes).
NUMPY_DTYPES: frozenset[str] = frozenset(_NUMPY_DTYPE_OF)


@dataclass(frozen=True)
class FileKind:
    """One kind of metalearn file: how it is named, versioned and bounded.

    Attributes
    ----------
    format : str
        Value of the metadata's ``format`` key (one of :data:`KNOWN_FORMATS`).
    version : int
        Newest version this release writes and reads.
    label : str
        What messages call the file, e.g. ``"policy file"`` (``policy file '/x': ...``).
    noun : str
        What a wrong file is not, e.g. ``"metalearn policy"`` (``...: not a metalearn policy``).
    version_label : str
        How the version is named in "written in <version_label> version N by a newer metalearn".
    error : type of MetalearnError
        The project error raised for every problem with a file of this kind.
    version_key : str
        Metadata key of the version (``"format_version"``, or ``"version"`` for state files and
        checkpoints).
    dtypes : frozenset of str
        Tensor dtypes a file may hold.
    max_file_bytes, max_header_bytes : int
        Largest file and header read.
    allow_nan : bool
        Whether the metadata JSON may hold NaN and Infinity constants. The next-batch state is
        written with Python's default JSON (a stopping rule's logged statistic may be NaN),
        so its existing files carry them; every other kind refuses them.
    ensure_ascii : bool
        Whether the metadata JSON is written ASCII-only (its existing bytes are kept).
    expected : str
        What to give instead, said when the path is a folder or another kind of node.
    recovery : str
        Appended to the messages about a corrupted file (e.g. ``"; delete it to start over"``).
    write_advice : str
        Appended to the message about a failed write (e.g. ``"; choose another --state"``).
    """

    format: str
    version: int
    label: str
    noun: str
    version_label: str
    error: type[MetalearnError]
    version_key: str = "format_version"
    dtypes: frozenset[str] = FLOAT_DTYPES
    max_file_bytes: int = 512 * 1024 * 1024
    max_header_bytes: int = 16 * 1024 * 1024
    allow_nan: bool = False
    ensure_ascii: bool = False
    expected: str = "a .safetensors file"
    recovery: str = ""
    write_advice: str = ""

    def where(self, path: str | os.PathLike[str]) -> str:
        """The file as messages name it: ``<label> '<path>'``."""
        return f"{self.label} {str(path)!r}"

    @property
    def max_metadata_bytes(self) -> int:
        """Largest metadata JSON written: half the header limit, so every written file stays readable."""
        return self.max_header_bytes // 2


# ------------------------------------------------------------------------------------ JSON
def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def loads_strict(text: bytes | str, *, allow_nan: bool = False) -> Any:
    """Parse JSON refusing duplicate keys and (unless ``allow_nan``) NaN/Infinity constants.

    Raises
    ------
    ValueError
        Invalid JSON, a duplicate key or a refused constant.
    RecursionError
        Nesting deeper than the interpreter can parse.
    """
    if allow_nan:
        return json.loads(text, object_pairs_hook=_reject_duplicates)
    return json.loads(text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)


# ------------------------------------------------------------------------------------ reading
def read_bounded(path: str | os.PathLike[str], kind: FileKind) -> bytes:
    """The bytes of a regular file of at most ``kind.max_file_bytes``.

    A folder, FIFO, socket or device is refused before it is opened, so nothing is read
    without bound (a FIFO would block, ``/dev/zero`` never end).

    Raises
    ------
    kind.error
        Missing, not a regular file, larger than the limit, or unreadable.
    """
    where = kind.where(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise kind.error(f"{where}: no such file") from None
    except (OSError, ValueError) as exc:
        raise kind.error(f"{where}: cannot access it ({getattr(exc, 'strerror', None) or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        node = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise kind.error(f"{where}: it is {node}; give the path of {kind.expected}")
    limit = kind.max_file_bytes
    try:
        # O_NONBLOCK: a regular file swapped for a FIFO between stat and open must not hang.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise kind.error(f"{where}: it is not a regular file; give the path of {kind.expected}")
            if info.st_size > limit:
                raise kind.error(
                    f"{where}: it is {info.st_size // 2**20} MiB, larger than any {kind.noun} file "
                    f"(limit {limit // 2**20} MiB); it is not a {kind.noun}"
                )
            data = _read_at_most(handle, info.st_size, limit)
    except OSError as exc:
        raise kind.error(f"{where}: cannot read it ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise kind.error(f"{where}: it grew beyond {limit // 2**20} MiB while being read")
    return data


def _read_at_most(handle: Any, expected: int, limit: int) -> bytes:
    """Read to the end, at most ``limit + 1`` bytes (one more tells a file that grew past it).

    The buffer is sized from the file's size, not the limit, so a large limit costs nothing.
    """
    chunks = [handle.read(expected + 1)]
    total = len(chunks[0])
    while chunks[-1] and total <= limit:
        chunks.append(handle.read(min(1 << 24, limit + 1 - total)))
        total += len(chunks[-1])
    return b"".join(chunks)


def sniff(data: bytes, noun: str) -> str:
    """A hint of what a file that is not a safetensors file is, from its first bytes.

    Parameters
    ----------
    data : bytes
    noun : str
        What was expected (``"metalearn policy"``), named in the hint.

    Returns
    -------
    str
        ``"it is not a safetensors file"`` when nothing more is recognised.
    """
    head = data[:16]
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")):
        if b"_stable_baselines3_version" in data or (b"policy.pth" in data and b"data" in data):
            return (
                f"it is a zip archive holding a Stable-Baselines3 checkpoint, not a {noun}; SB3 checkpoints contain "
                "pickles and are never loaded. Export the trained policy with metalearn's trainer (save_policy) instead"
            )
        if b"data.pkl" in data:
            return (
                f"it is a zip archive holding a torch checkpoint (torch.save), not a {noun}; it contains a pickle and "
                "is never loaded; export the weights with save_policy instead"
            )
        return f"it is a zip archive, not a {noun}"
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return f"it is a Python pickle, not a {noun}; metalearn never unpickles files (unpickling can run arbitrary code)"
    if head.startswith(b"\x1f\x8b"):
        return "it is gzip-compressed; decompress it first"
    if head.startswith(b"\x93NUMPY"):
        return f"it is a numpy .npy file, not a {noun}"
    if head.startswith(b"\x89HDF"):
        return f"it is an HDF5 file, not a {noun}"
    if head[:1] in (b"(", b"c", b"}", b"]") and b"." in data[-2:]:
        return f"it looks like a Python pickle (protocol 0/1), not a {noun}; metalearn never unpickles files"
    return "it is not a safetensors file"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_safetensors(data: bytes, kind: FileKind, path: str | os.PathLike[str]) -> tuple[dict[str, str], int]:
    """Check the raw bytes of a safetensors file: header length, JSON, every tensor entry.

    Parameters
    ----------
    data : bytes
        The whole file (:func:`read_bounded`).
    kind : FileKind
        Its limits, dtypes and error.
    path : str or path-like
        The file, named in messages.

    Returns
    -------
    metadata : dict of str to str
        The ``__metadata__`` map (empty when the file has none).
    n_header : int
        The header's length in bytes.

    Raises
    ------
    kind.error
        Truncated, extended, not a safetensors file, invalid JSON, a refused dtype, a shape
        or offsets that do not fit the data.
    """
    header, metadata, n_header = _layout(data, kind, path)
    _check_dtypes(header, kind, path)
    return metadata, n_header


def _layout(data: bytes, kind: FileKind, path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, str], int]:
    """The header, its ``__metadata__`` map and length, the tensors' layout checked (dtypes: any numpy one)."""
    where = kind.where(path)
    if len(data) < 8:
        raise kind.error(
            f"{where}: it holds {len(data)} byte(s), fewer than the 8-byte header length of a safetensors file "
            "(empty or truncated)"
        )
    n_header = int.from_bytes(data[:8], "little")
    if n_header > kind.max_header_bytes or n_header > len(data) - 8 or n_header < 2:
        detail = sniff(data, kind.noun)
        if detail == "it is not a safetensors file":
            detail = (
                f"its header length field says {n_header} bytes but the file holds {len(data) - 8} after it "
                f"(limit {kind.max_header_bytes // 2**20} MiB): it is truncated or not a safetensors file"
            )
        raise kind.error(f"{where}: {detail}")
    raw_header = data[8 : 8 + n_header]
    if not raw_header.startswith(b"{"):
        raise kind.error(f"{where}: {sniff(data, kind.noun)} (the header does not start with a JSON object)")
    try:
        header = loads_strict(raw_header.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise kind.error(
            f"{where}: the header is not valid JSON ({exc}); the file is corrupted or truncated{kind.recovery}"
        ) from None
    metadata = _check_entries(header, len(data) - 8 - n_header, kind, where)
    return header, metadata, n_header


def _check_dtypes(header: dict[str, Any], kind: FileKind, path: str | os.PathLike[str]) -> None:
    """Every tensor has a dtype of the kind (checked after the format, so another kind's file is named as such)."""
    for name, entry in header.items():
        if name != "__metadata__" and entry["dtype"] not in kind.dtypes:
            allowed = "F32 (or F16/F64)" if kind.dtypes == FLOAT_DTYPES else ", ".join(sorted(kind.dtypes))
            raise kind.error(f"{kind.where(path)}: tensor {name!r} has dtype {entry['dtype']!r}; its tensors must be {allowed}")


def _check_entries(header: Any, data_size: int, kind: FileKind, where: str) -> dict[str, str]:
    """Check every tensor entry of a safetensors header; return the ``__metadata__`` map."""
    if not isinstance(header, dict):
        raise kind.error(f"{where}: the header is JSON {type(header).__name__}, expected an object")
    spans: list[tuple[int, int, str]] = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise kind.error(f"{where}: tensor entry {name!r} must be an object with exactly dtype, shape and data_offsets")
        dtype = entry["dtype"]
        if not isinstance(dtype, str) or dtype not in _NUMPY_DTYPE_OF:
            raise kind.error(
                f"{where}: tensor {name!r} has dtype {printable(repr(dtype)[:40])}, which metalearn never writes"
            )
        shape = entry["shape"]
        if not isinstance(shape, list) or len(shape) > 8 or not all(_is_int(d) and 0 <= d < 2**40 for d in shape):
            raise kind.error(f"{where}: tensor {name!r} has an invalid shape {printable(repr(shape)[:100])}")
        offsets = entry["data_offsets"]
        if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(o) for o in offsets):
            raise kind.error(f"{where}: tensor {name!r} has invalid data_offsets {printable(repr(offsets)[:100])}")
        begin, end = offsets
        if not 0 <= begin <= end <= data_size:
            raise kind.error(
                f"{where}: tensor {name!r} claims bytes {begin}..{end} but the file holds {data_size} data bytes "
                "(truncated or corrupted)"
            )
        n_bytes = math.prod(shape) * _NUMPY_DTYPE_OF[dtype].itemsize
        if end - begin != n_bytes:
            raise kind.error(
                f"{where}: tensor {name!r} of shape {shape} and dtype {dtype} needs {n_bytes} bytes but spans "
                f"{end - begin} (corrupted header)"
            )
        spans.append((begin, end, name))
    spans.sort()
    position = 0
    for begin, end, name in spans:
        if begin != position:
            raise kind.error(f"{where}: tensor {name!r} overlaps another or leaves a gap (corrupted header)")
        position = end
    if position != data_size:
        raise kind.error(
            f"{where}: the tensors cover {position} bytes but the file holds {data_size} data bytes "
            "(truncated, extended or corrupted)"
        )
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise kind.error(f"{where}: '__metadata__' must map strings to strings")
    return metadata


def read_metadata(data: bytes, kind: FileKind, path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metalearn metadata of a container file, checked (:func:`check_safetensors`, :func:`check_format`).

    Raises
    ------
    kind.error
        Any problem of the bytes or the header; no metalearn metadata; metadata that is not a
        JSON object; another kind's file; a version that is invalid or newer than ``kind.version``.
    """
    where = kind.where(path)
    header, container, _ = _layout(data, kind, path)
    if not container:
        raise kind.error(f"{where}: it is a safetensors file without metadata, not a {kind.noun} (no '__metadata__')")
    if METADATA_KEY not in container:
        raise kind.error(
            f"{where}: a safetensors file without the {METADATA_KEY!r} metadata entry, so not a {kind.noun} "
            f"(metadata keys: {printable(repr(sorted(container)[:10]))})"
        )
    try:
        metadata = loads_strict(container[METADATA_KEY], allow_nan=kind.allow_nan)
    except (ValueError, RecursionError) as exc:
        raise kind.error(f"{where}: its metadata is not valid JSON ({exc}); the file is corrupted{kind.recovery}") from None
    check_format(metadata, kind, path)
    _check_dtypes(header, kind, path)
    return metadata


def check_format(metadata: Any, kind: FileKind, path: str | os.PathLike[str]) -> dict[str, Any]:
    """Check that parsed metadata is of ``kind`` and of a version this release reads.

    Returns
    -------
    dict
        ``metadata``.

    Raises
    ------
    kind.error
        Not a JSON object; another kind's file ("it is a stopping rule ..., not a metalearn
        policy"); not a metalearn file; a version that is no positive integer (corrupted) or
        newer than ``kind.version`` (written by a newer metalearn: upgrade).
    """
    where = kind.where(path)
    if not isinstance(metadata, dict):
        raise kind.error(f"{where}: its metadata is JSON {type(metadata).__name__}, expected an object")
    found = metadata.get("format")
    if found != kind.format:
        if isinstance(found, str) and found in KNOWN_FORMATS:
            raise kind.error(f"{where}: it is {KNOWN_FORMATS[found]}, not a {kind.noun}")
        raise kind.error(
            f"{where}: metadata format is {printable(repr(found)[:100])}, expected {kind.format!r}: not a {kind.noun}"
        )
    version = metadata.get(kind.version_key)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise kind.error(
            f"{where}: metadata {kind.version_key} must be a positive integer, got {printable(repr(version)[:100])} "
            f"(edited or corrupted){kind.recovery}"
        )
    if version > kind.version:
        raise kind.error(
            f"{where}: written in {kind.version_label} version {version} by a newer metalearn; this release reads "
            f"version {kind.version}: upgrade metalearn"
        )
    return metadata


def load_tensors(data: bytes, kind: FileKind, path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The tensors of bytes that :func:`check_safetensors` accepted, as numpy arrays."""
    from safetensors.numpy import load

    try:
        return dict(load(data))
    except Exception as exc:  # noqa: BLE001 - the library's errors are not ours; the bytes were pre-checked
        raise kind.error(f"{kind.where(path)}: the safetensors library rejected it ({exc})") from None


def read_json_document(path: str | os.PathLike[str], kind: FileKind) -> dict[str, Any]:
    """A JSON file of ``kind`` (a checkpoint's ``checkpoint.json``), bounded and strictly parsed.

    Raises
    ------
    kind.error
        Not a regular file, too large, not UTF-8 JSON, duplicate keys, NaN constants (unless
        the kind allows them), runaway nesting, another kind or a newer version.
    """
    data = read_bounded(path, kind)
    try:
        document = loads_strict(data.decode("utf-8"), allow_nan=kind.allow_nan)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise kind.error(f"{kind.where(path)}: it is not valid JSON ({exc}); the file is corrupted{kind.recovery}") from None
    return check_format(document, kind, path)


# ------------------------------------------------------------------------------------ writing
def encode(arrays: Mapping[str, np.ndarray], metadata: Mapping[str, Any], kind: FileKind, path: str | os.PathLike[str]) -> bytes:
    """The bytes of a container file: ``arrays`` and ``metadata`` under :data:`METADATA_KEY`.

    The metadata JSON is written as the kind's existing files were (``kind.allow_nan``,
    ``kind.ensure_ascii``, keys in the order given), so a file written again for the same
    content is byte-identical.

    Raises
    ------
    kind.error
        Metadata larger than ``kind.max_metadata_bytes`` (it would not be readable), or
        NaN in it where the kind refuses it.
    """
    from safetensors.numpy import save

    try:
        text = json.dumps(dict(metadata), allow_nan=kind.allow_nan, ensure_ascii=kind.ensure_ascii)
    except ValueError as exc:
        raise kind.error(f"cannot save {kind.where(path)}: its metadata is not valid JSON ({exc})") from None
    size = len(text.encode("utf-8"))
    if size > kind.max_metadata_bytes:
        raise kind.error(
            f"cannot save {kind.where(path)}: the metadata is {size // 1024} KiB, more than the "
            f"{kind.max_metadata_bytes // 2**20} MiB a {kind.label} may hold"
        )
    return save(dict(arrays), metadata={METADATA_KEY: text})


def write_atomic(path: str | os.PathLike[str], content: bytes | Callable[[str], None], kind: FileKind) -> Path:
    """Create or replace ``path`` atomically (:func:`~metalearn.common.atomic.atomic_write`).

    A reader, or a crash, sees the old file or the new one, never a part; when the write fails
    the old file is left intact and no temporary file stays behind. Missing parent folders
    are created.

    Parameters
    ----------
    path : str or path-like
    content : bytes or callable
        The file's bytes, or a function writing the whole file to the temporary path it is
        given (checkpoints stream their arrays to disk without a copy in memory).
    kind : FileKind

    Returns
    -------
    Path

    Raises
    ------
    kind.error
        The folder cannot be created or the file cannot be written (the reason is named).
    """
    from safetensors import SafetensorError

    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise kind.error(f"cannot create the folder of {kind.where(target)}: {exc}{kind.write_advice}") from None
    try:
        if isinstance(content, (bytes, bytearray, memoryview)):
            atomic_write_bytes(target, bytes(content))  # fsyncs the file and its folder
        else:
            atomic_write(target, content)
    except (OSError, SafetensorError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise kind.error(f"cannot write {kind.where(target)}: {reason}{kind.write_advice}") from None
    return target


def package_version() -> str:
    """The metalearn release writing a file (its metadata's ``package_version``)."""
    import metalearn

    return str(getattr(metalearn, "__version__", "unknown"))


def created_stamp() -> str:
    """When a file is written (its metadata's ``created``): UTC, ISO 8601, to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
