"""A small numpy model in a container file: the save and read steps its formats share.

The stopping rule (:mod:`metalearn.stopping.file`) and the learned schedule
(:mod:`metalearn.schedules.file`) are each one small numpy model (an architecture plus float32
weights) and a JSON model card in a :mod:`~metalearn.common.container` file. Saving checks the
architecture's type, builds the model (which checks the weights), makes the metadata JSON-safe,
fills the standard keys, checks the metadata and writes atomically; reading bounds the read,
checks the metadata, loads the tensors and builds the model. A format module says its
:class:`~metalearn.common.container.FileKind`, its architecture and model classes, its metadata
checker and its default feature set; the error raised is the kind's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from metalearn.common import container
from metalearn.common.container import FileKind
from metalearn.common.jsonable import json_safe
from metalearn.exceptions import InvalidInputError, InvalidTypeError, PolicyFileError

__all__ = ["save_model_file", "read_model_file"]


class _Architecture(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


class _NumpyModel(Protocol):
    params: dict[str, np.ndarray]


ArchT = TypeVar("ArchT", bound=_Architecture)
ModelT = TypeVar("ModelT", bound=_NumpyModel)


def save_model_file(
    target: Path,
    arch: ArchT,
    params: Mapping[str, np.ndarray],
    metadata: Mapping[str, Any],
    *,
    kind: FileKind,
    arch_type: type[ArchT],
    model_type: Callable[[ArchT, dict[str, np.ndarray]], ModelT],
    check_metadata: Callable[[Mapping[str, Any], str], ArchT],
    feature_set: Mapping[str, Any],
    where: str,
) -> None:
    """Check a model and its card and write them atomically to ``target`` as a ``kind`` file.

    Parameters
    ----------
    target : Path
    arch : architecture
        Must be an instance of ``arch_type``.
    params : dict of str to ndarray
        The model's weights (checked by ``model_type``).
    metadata : dict
        The model card; ``feature_set`` defaults to ``feature_set``; ``format``,
        ``format_version``, ``architecture``, ``package_version`` and ``created`` are filled here.
    kind : FileKind
        The file's kind; its ``error`` is raised.
    arch_type : type
    model_type : callable
        Builds the numpy model from ``(arch, params)``; raises InvalidInputError on bad weights.
    check_metadata : callable
        Checks the filled metadata (``(meta, where)``), raising the kind's error.
    feature_set : dict
        This release's feature set, the default of ``metadata["feature_set"]``.
    where : str
        The prefix of every error message ("cannot save <file>").

    Raises
    ------
    MetalearnError
        The kind's error: bad weights or metadata, or the file cannot be written.
    """
    error = kind.error
    if not isinstance(arch, arch_type):
        raise error(f"{where}: arch must be a {arch_type.__name__}, got {type(arch).__name__}")
    if not isinstance(metadata, Mapping):
        raise error(f"{where}: metadata must be a dict, got {type(metadata).__name__}")
    try:
        model = model_type(arch, {k: np.asarray(v) for k, v in params.items()})
        meta = json_safe(dict(metadata), "metadata")
    except (InvalidInputError, InvalidTypeError, PolicyFileError) as exc:
        raise error(f"{where}: {exc}") from None
    meta.setdefault("feature_set", dict(feature_set))
    meta.update(
        format=kind.format,
        format_version=kind.version,
        architecture=arch.to_dict(),
        package_version=container.package_version(),
        created=container.created_stamp(),
    )
    check_metadata(meta, where)
    arrays = {k: np.ascontiguousarray(v, dtype="<f4") for k, v in model.params.items()}
    container.write_atomic(target, container.encode(arrays, meta, kind, target), kind)


def read_model_file(
    path: Path,
    *,
    kind: FileKind,
    model_type: Callable[[ArchT, dict[str, np.ndarray]], ModelT],
    check_metadata: Callable[[Mapping[str, Any], str], ArchT],
    where: str,
) -> tuple[ArchT, ModelT, dict[str, Any]]:
    """Read a ``kind`` file: bounded read, checked metadata, tensors, the built model.

    Returns
    -------
    arch : architecture
        What ``check_metadata`` returned.
    model : numpy model
        Built by ``model_type`` from the float32 tensors.
    metadata : dict

    Raises
    ------
    MetalearnError
        The kind's error (the container's checks, ``check_metadata``'s, or bad weights).
    """
    data = container.read_bounded(path, kind)
    meta = container.read_metadata(data, kind, path)
    arch = check_metadata(meta, where)
    tensors = container.load_tensors(data, kind, path)
    params = {name: np.array(value, dtype=np.float32) for name, value in tensors.items()}
    try:
        model = model_type(arch, params)
    except InvalidInputError as exc:
        raise kind.error(f"{where}: {exc}") from None
    return arch, model, meta
