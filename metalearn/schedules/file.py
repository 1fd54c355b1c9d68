"""The learned schedule's file: weights and a JSON model card in the one container.

A schedule file is a container file (:mod:`metalearn.common.container`) of kind
:data:`SCHEDULE_KIND`: the chooser's float32 weights (:mod:`metalearn.schedules.model`) and
metadata holding ``architecture``, ``feature_set`` (:data:`~metalearn.schedules.features.SCHEDULE_FEATURE_SET`),
``window`` (loops of history) and ``sizes`` (the batch sizes it chooses among), plus whatever
the trainer records (the model card). Everything is bounded here, at load, so a schedule that
loads cannot fail or allocate without bound at its first call. Released schedules are
``<name>.safetensors`` in the ``schedules/`` sub-folder of the released policies' folders
(:func:`~metalearn.policies.names.resolve_named_file`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metalearn.common.container import FileKind
from metalearn.common.model_file import read_model_file, save_model_file
from metalearn.common.text import printable
from metalearn.exceptions import InvalidInputError, MetalearnError, ScheduleFileError
from metalearn.policies.card import short_value
from metalearn.policies.names import POLICY_SUFFIX, names_in_folders, policy_search_dirs, resolve_named_file
from metalearn.schedules.base import MAX_BATCH_SIZE
from metalearn.schedules.features import SCHEDULE_FEATURE_SET
from metalearn.schedules.model import NumpySizeModel, SizeModelArchitecture
from metalearn.stopping.limits import MAX_WINDOW

__all__ = [
    "ScheduleFile",
    "save_schedule",
    "read_schedule",
    "resolve_schedule_path",
    "released_schedule_names",
    "schedule_search_dirs",
    "format_schedule_card",
    "SCHEDULE_KIND",
    "FORMAT",
    "FORMAT_VERSION",
    "MAX_SIZES",
]

FORMAT = "metalearn-schedule"
FORMAT_VERSION = 1
#: The schedule file's kind in the container (the policy file's limits).
SCHEDULE_KIND = FileKind(
    format=FORMAT,
    version=FORMAT_VERSION,
    label="schedule file",
    noun="metalearn schedule",
    version_label="schedule format",
    error=ScheduleFileError,
    expected="a .safetensors schedule file",
)
#: Most batch sizes a learned schedule chooses among.
MAX_SIZES = 64
_SUBFOLDER = "schedules"
_REQUIRED = ("architecture", "feature_set", "window", "sizes")
_STANDARD = ("format", "format_version", "package_version", "created")


@dataclass(eq=False)
class ScheduleFile:
    """A learned schedule read from (or about to be written to) a file.

    Attributes
    ----------
    arch : SizeModelArchitecture
    params : dict of str to ndarray (float32)
    metadata : dict
        The model card (standard keys plus what the trainer recorded).
    path : Path or None
    model : NumpySizeModel
    """

    arch: SizeModelArchitecture
    params: dict[str, np.ndarray]
    metadata: dict[str, Any]
    path: Path | None = None
    model: NumpySizeModel = None  # type: ignore[assignment]  # built by __post_init__

    def __post_init__(self) -> None:
        if self.model is None:
            self.model = NumpySizeModel(self.arch, self.params)

    @property
    def window(self) -> int:
        """Loops of metadata history the features look back over."""
        return int(self.metadata["window"])

    @property
    def sizes(self) -> tuple[int, ...]:
        """The batch sizes the schedule chooses among, increasing."""
        return tuple(int(s) for s in self.metadata["sizes"])


def _where(path: Path | str | None) -> str:
    return SCHEDULE_KIND.where(path) if path is not None else "schedule"


def _check_metadata(meta: Mapping[str, Any], where: str) -> SizeModelArchitecture:
    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise ScheduleFileError(f"{where}: metadata lacks required key(s) {missing}")
    try:
        arch = SizeModelArchitecture.from_dict(meta["architecture"])
    except InvalidInputError as exc:
        raise ScheduleFileError(f"{where}: {exc}") from None
    feature_set = meta["feature_set"]
    if not isinstance(feature_set, Mapping):
        raise ScheduleFileError(f"{where}: metadata 'feature_set' must be an object, got {type(feature_set).__name__}")
    expected = SCHEDULE_FEATURE_SET
    if (feature_set.get("name"), feature_set.get("version")) != (expected["name"], expected["version"]):
        raise ScheduleFileError(
            f"{where}: its feature set {printable(str(feature_set.get('name'))[:60])!r} version "
            f"{printable(str(feature_set.get('version'))[:20])} is not one this release computes "
            f"({expected['name']!r} version {expected['version']}); it was written by another metalearn release"
        )
    if list(feature_set.get("features", [])) != expected["features"]:
        raise ScheduleFileError(
            f"{where}: its features differ from what feature set {expected['name']}@{expected['version']} computes "
            "in this release"
        )
    if arch.n_features != len(expected["features"]):
        raise ScheduleFileError(f"{where}: the model takes {arch.n_features} features, the feature set has "
                                f"{len(expected['features'])}")
    window = meta["window"]
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or not 2 <= window <= MAX_WINDOW:
        raise ScheduleFileError(f"{where}: metadata 'window' must be an integer in [2, {MAX_WINDOW}], got {str(window)[:40]}")
    sizes = meta["sizes"]
    if (not isinstance(sizes, list) or not 1 <= len(sizes) <= MAX_SIZES
            or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and 1 <= s <= MAX_BATCH_SIZE
                       for s in sizes)
            or any(b <= a for a, b in zip(sizes, sizes[1:]))):
        raise ScheduleFileError(
            f"{where}: metadata 'sizes' must be 1 to {MAX_SIZES} increasing integers in [1, {MAX_BATCH_SIZE}], "
            f"got {printable(str(sizes)[:100])}"
        )
    if len(sizes) != arch.n_sizes:
        raise ScheduleFileError(f"{where}: the model scores {arch.n_sizes} sizes, metadata 'sizes' lists {len(sizes)}")
    return arch


def save_schedule(
    path: str | os.PathLike[str], arch: SizeModelArchitecture, params: Mapping[str, np.ndarray], metadata: Mapping[str, Any]
) -> Path:
    """Write a schedule file atomically (temporary file, fsync, rename): what a trainer calls.

    Parameters
    ----------
    path : str or path-like
        Destination (conventionally ``*.safetensors``).
    arch : SizeModelArchitecture
    params : dict of str to ndarray
        Every entry of :func:`~metalearn.schedules.model.size_parameter_shapes`, finite.
    metadata : dict
        Required: ``window`` and ``sizes``; ``feature_set`` defaults to this release's. Anything
        else JSON-able is kept (the model card: what it was trained on, what it learned).
        ``format``, ``format_version``, ``architecture``, ``package_version`` and ``created``
        are filled here.

    Returns
    -------
    Path

    Raises
    ------
    ScheduleFileError
        Bad weights or metadata, or the file cannot be written.
    """
    target = Path(path)
    save_model_file(
        target, arch, params, metadata, kind=SCHEDULE_KIND, arch_type=SizeModelArchitecture, model_type=NumpySizeModel,
        check_metadata=_check_metadata, feature_set=SCHEDULE_FEATURE_SET, where=f"cannot save {_where(target)}",
    )
    return target


def _read(path: Path) -> ScheduleFile:
    arch, model, meta = read_model_file(
        path, kind=SCHEDULE_KIND, model_type=NumpySizeModel, check_metadata=_check_metadata, where=_where(path)
    )
    return ScheduleFile(arch=arch, params=model.params, metadata=meta, path=path, model=model)


def read_schedule(path_or_name: str | os.PathLike[str]) -> ScheduleFile:
    """Read and check a schedule file (numpy only; nothing in it is executed).

    Raises
    ------
    ScheduleFileError
        Missing, not a schedule (a policy, a stopping rule, a pickle...), truncated, corrupted,
        wrong shapes, non-finite weights, unknown architecture, features or version, sizes or
        window out of bounds.
    UnknownNameError
        Neither a file nor a released name.
    """
    path = resolve_schedule_path(path_or_name)
    try:
        return _read(path)
    except MetalearnError:
        raise
    except Exception as exc:  # noqa: BLE001 - a malformed file must never surface as another error
        raise ScheduleFileError(f"{_where(path)} is malformed ({type(exc).__name__}: {exc})") from None


def schedule_search_dirs() -> list[Path]:
    """Folders searched for named schedules: ``schedules/`` in every named-policy folder."""
    return [folder / _SUBFOLDER for folder in policy_search_dirs()]


def released_schedule_names() -> list[str]:
    """Names of the released learned schedules found in :func:`schedule_search_dirs`."""
    return names_in_folders(schedule_search_dirs())


def _listing() -> str:
    from metalearn.schedules.registry import schedule_rule_names

    available = released_schedule_names()
    rules = "; the rules need no file: " + ", ".join(
        {"fixed": "fixed:N (always N)", "geometric": "geometric:R[:EVERY] (1, then times R every EVERY loops)"}.get(n, n)
        for n in schedule_rule_names()
    )
    if available:
        return f"released schedules: {', '.join(available)}{rules}"
    return f"no released schedule exists yet (none has been trained){rules}"


def resolve_schedule_path(name_or_path: str | os.PathLike[str]) -> Path:
    """The file a path or a released schedule name refers to (:func:`~metalearn.policies.names.resolve_named_file`).

    Raises
    ------
    UnknownNameError
        A bare name that is no released schedule (the message names the rules to use instead).
    ScheduleFileError
        A path that does not exist, or an argument that is no path or name.
    """
    return resolve_named_file(
        name_or_path, noun="schedule", label=SCHEDULE_KIND.label, error=ScheduleFileError,
        search_dirs=schedule_search_dirs, listing=_listing, suffix=POLICY_SUFFIX,
    )


def format_schedule_card(schedule: ScheduleFile) -> str:
    """The schedule's model card as text (what it chooses among, what it was trained on)."""
    meta = schedule.metadata
    lines = [f"schedule: {schedule.path}" if schedule.path else "schedule: (not saved)"]
    lines.append(
        f"  format: {meta.get('format')} v{meta.get('format_version')}, written by metalearn "
        f"{meta.get('package_version', '?')} on {meta.get('created', '?')}"
    )
    lines.append(f"  chooses the next batch size among {list(schedule.sizes)} from {schedule.arch.n_features} loop "
                 f"features over a window of {schedule.window} loops")
    lines.append(f"  model: {schedule.arch.name} v{schedule.arch.version}, hidden {schedule.arch.hidden}, "
                 f"{sum(v.size for v in schedule.params.values())} parameters")
    known = {*_STANDARD, *_REQUIRED}
    for key, value in meta.items():
        if key in known:
            continue
        if isinstance(value, dict):
            lines.append(f"  {key}:")
            lines.extend(f"    {sub}: {short_value(item, 300)}" for sub, item in value.items())
        else:
            lines.append(f"  {key}: {short_value(value, 300)}")
    return "\n".join(printable(line) for line in lines)
