"""Checkpoints without pickle (safetensors for arrays, JSON for everything else), the state
they carry (numpy generators, torch's RNG, the optimiser), and the resume checks.

A checkpoint is a file kind of the metalearn container (:mod:`metalearn.common.container`):
``checkpoint.json`` (format ``"metalearn-checkpoint"``, ``version``) is read bounded and
strictly parsed, the tensor file it names is read bounded, checked against its SHA-256 and
its safetensors header, and both are written atomically.

Torch is imported lazily, only by the torch RNG and optimiser helpers and
:func:`deterministic_torch`, so worker processes that only collect episodes never import it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from metalearn.common import container
from metalearn.common.container import NUMPY_DTYPES, FileKind
from metalearn.common.jsonable import json_safe
from metalearn.exceptions import InvalidInputError
from metalearn.policies.trainers.suites import suite_label

__all__ = ["CHECKPOINT_DIR", "CHECKPOINT_JSON_KIND", "CHECKPOINT_TENSORS_KIND", "prepare_out_dir", "checkpoint_exists", "save_checkpoint", "load_checkpoint", "generator_to_state", "generator_from_state", "torch_rng_to_array", "torch_rng_from_array", "optimizer_to_checkpoint", "optimizer_from_checkpoint", "deterministic_torch", "config_settings", "RESUMABLE_FIELDS", "check_resumable"]

#: Sub-folder of a run's ``out_dir`` holding the checkpoint.
CHECKPOINT_DIR: str = "checkpoint"


# =============================================================================================
# Checkpoints without pickle: safetensors + JSON, written atomically
# =============================================================================================
_CHECKPOINT_JSON = "checkpoint.json"
_CHECKPOINT_FORMAT = "metalearn-checkpoint"
_CHECKPOINT_VERSION = 1
# checkpoint.json names its tensor file: a plain name in the same folder, nothing else.
_TENSOR_FILE = re.compile(r"^checkpoint-\d{6,}\.safetensors$")

#: ``checkpoint.json`` in the file container: a JSON document (training curves, settings, RNG
#: states; a few hundred KiB), its version under ``version``.
CHECKPOINT_JSON_KIND = FileKind(
    format=_CHECKPOINT_FORMAT,
    version=_CHECKPOINT_VERSION,
    label="checkpoint",
    noun="metalearn checkpoint",
    version_label="checkpoint",
    error=InvalidInputError,
    version_key="version",
    max_file_bytes=1 * 2**30,
    expected="a training run's checkpoint/checkpoint.json",
)
#: The tensor file: weights, optimiser moments, RNG bytes and a trainer's sample buffers
#: (any numpy dtype, no metadata); an imitation run's aggregated samples make it the largest.
CHECKPOINT_TENSORS_KIND = dataclasses.replace(
    CHECKPOINT_JSON_KIND, label="checkpoint tensor file", dtypes=NUMPY_DTYPES, max_file_bytes=32 * 2**30,
    expected="a checkpoint-NNNNNN.safetensors file",
)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def prepare_out_dir(out: str | os.PathLike[str]) -> Path:
    """Create a run's folder and check that files can be written there, before any training.

    Raises :class:`InvalidInputError` naming the folder when it is a file, read-only, or on a
    full disk, rather than failing after the first iteration's work.
    """
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-probe"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise InvalidInputError(
            f"cannot write the training run to {out}: {exc.strerror or exc}; choose a writable --out folder"
        ) from None
    return out


def checkpoint_exists(directory: str | os.PathLike[str]) -> bool:
    """Whether ``directory`` holds a checkpoint written by :func:`save_checkpoint`."""
    return (Path(directory) / _CHECKPOINT_JSON).is_file()


def save_checkpoint(directory: str | os.PathLike[str], tensors: Mapping[str, np.ndarray], state: Mapping[str, Any]) -> None:
    """Write a checkpoint: arrays to safetensors, everything else to JSON, both atomically.

    Files: ``checkpoint-NNNNNN.safetensors`` (a new number at every save) and
    ``checkpoint.json``, which names that tensor file and its SHA-256. The tensor file is
    written first (temp file, fsync, ``os.replace``), the JSON last, and only then are older
    tensor files removed: a crash at any point leaves a JSON that points at a complete tensor
    file of the same save, never a mismatched pair.

    Parameters
    ----------
    directory : path
        Created if missing.
    tensors : dict of str to ndarray
        Any numeric or bool arrays (made contiguous).
    state : dict
        JSON-serialisable values (numpy scalars are converted).
    """
    from safetensors.numpy import save_file

    directory = Path(directory)
    previous = _read_checkpoint_json(directory)
    step = int(previous["step"]) + 1 if previous else 0
    name = f"checkpoint-{step:06d}.safetensors"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # np.ascontiguousarray would turn 0-d arrays (Adam's step) into 1-d ones.
        arrays = {k: np.asarray(v, order="C") for k, v in tensors.items()}
        # Streamed to disk by safetensors (no copy of the arrays in memory), atomically.
        container.write_atomic(directory / name, lambda tmp: save_file(arrays, tmp), CHECKPOINT_TENSORS_KIND)
        payload = {
            "format": _CHECKPOINT_FORMAT,
            "version": _CHECKPOINT_VERSION,
            "step": step,
            "tensor_file": name,
            "tensor_sha256": _sha256(directory / name),
            "state": json_safe(state, strict=False),
        }
        text = json.dumps(payload, indent=1, sort_keys=True)  # ASCII: the bytes of every earlier checkpoint
        container.write_atomic(directory / _CHECKPOINT_JSON, text.encode("utf-8"), CHECKPOINT_JSON_KIND)
    except (OSError, InvalidInputError) as exc:
        # Disk full or folder gone read-only: drop this save's tensor file (the temporary
        # files are gone already). checkpoint.json still names the previous, complete tensor
        # file, so the previous checkpoint stays usable.
        if name != (previous or {}).get("tensor_file"):
            with contextlib.suppress(OSError):
                (directory / name).unlink()
        reason = getattr(exc, "strerror", None) or str(exc)
        kept = f"the checkpoint of step {previous['step']} is kept" if previous else "no checkpoint was written"
        raise InvalidInputError(
            f"cannot write the training checkpoint to {directory}: {reason}; {kept}. Free space (or fix the "
            "folder's permissions) and rerun with --resume"
        ) from None
    for old in directory.glob("checkpoint-*.safetensors"):
        if old.name != name:
            with contextlib.suppress(OSError):
                old.unlink()


def _read_checkpoint_json(directory: Path) -> dict[str, Any] | None:
    """The checked ``checkpoint.json`` of ``directory``, or None when there is none."""
    path = directory / _CHECKPOINT_JSON
    if not os.path.lexists(path):
        return None
    payload = container.read_json_document(path, CHECKPOINT_JSON_KIND)
    where = CHECKPOINT_JSON_KIND.where(path)
    step, tensor_file = payload.get("step"), payload.get("tensor_file")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise InvalidInputError(f"{where}: 'step' must be an integer >= 0, got {step!r:.100} (edited or corrupted)")
    if not isinstance(tensor_file, str) or not _TENSOR_FILE.match(tensor_file):
        raise InvalidInputError(
            f"{where}: 'tensor_file' must name a checkpoint-NNNNNN.safetensors file beside it, got {tensor_file!r:.200} "
            "(edited or corrupted)"
        )
    if not isinstance(payload.get("tensor_sha256"), str) or not isinstance(payload.get("state"), dict):
        raise InvalidInputError(f"{where}: it lacks its 'tensor_sha256' text or its 'state' object (edited or corrupted)")
    return payload


def load_checkpoint(directory: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """Read the checkpoint of ``directory``: ``(tensors, state)``, or None when there is none.

    Raises :class:`InvalidInputError` when the JSON names a tensor file that is missing or
    whose checksum differs (the checkpoint is corrupt; nothing is guessed), or when either
    file is not what a checkpoint holds (another kind of file, a folder or FIFO, a newer
    version, a corrupted header).
    """
    directory = Path(directory)
    payload = _read_checkpoint_json(directory)
    if payload is None:
        return None
    tensor_path = directory / payload["tensor_file"]
    if not os.path.lexists(tensor_path):
        raise InvalidInputError(f"checkpoint {directory} names {tensor_path.name}, which is missing")
    data = container.read_bounded(tensor_path, CHECKPOINT_TENSORS_KIND)
    if hashlib.sha256(data).hexdigest() != payload["tensor_sha256"]:
        raise InvalidInputError(f"checkpoint tensor file {tensor_path} does not match its checksum: corrupt")
    container.check_safetensors(data, CHECKPOINT_TENSORS_KIND, tensor_path)
    return container.load_tensors(data, CHECKPOINT_TENSORS_KIND, tensor_path), dict(payload["state"])


# -- numpy generators ------------------------------------------------------------------------
def generator_to_state(rng: np.random.Generator) -> dict[str, Any]:
    """The JSON-able state of a numpy Generator (``bit_generator.state``; ints stay exact)."""
    return json_safe(rng.bit_generator.state, strict=False)


def generator_from_state(state: Mapping[str, Any]) -> np.random.Generator:
    """A Generator continuing exactly where the one saved by :func:`generator_to_state` was."""
    name = str(state["bit_generator"])
    try:
        bit_generator = getattr(np.random, name)()
    except AttributeError:
        raise InvalidInputError(f"unknown numpy bit generator {name!r} in checkpoint") from None
    bit_generator.state = dict(state)
    return np.random.Generator(bit_generator)


# -- torch RNG and optimiser -----------------------------------------------------------------
def torch_rng_to_array() -> np.ndarray:
    """torch's CPU RNG state as a uint8 array (for the checkpoint's tensors)."""
    import torch

    return torch.get_rng_state().numpy().copy()


def torch_rng_from_array(state: np.ndarray) -> None:
    """Restore torch's CPU RNG state saved by :func:`torch_rng_to_array`."""
    import torch

    torch.set_rng_state(torch.from_numpy(np.ascontiguousarray(state, dtype=np.uint8)))


def optimizer_to_checkpoint(optimizer: Any, prefix: str = "optimizer.") -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Split a torch optimiser's state into arrays and JSON.

    Returns ``(tensors, info)``: every tensor of ``optimizer.state_dict()["state"]`` (Adam's
    ``exp_avg``, ``exp_avg_sq`` and ``step``) as ``{prefix}{param_id}.{name}``, and ``info``
    with the param groups (learning rate, betas, ...) and the non-tensor state entries.
    """
    import torch

    sd = optimizer.state_dict()
    tensors: dict[str, np.ndarray] = {}
    entries: dict[str, dict[str, Any]] = {}
    for pid, per_param in sd["state"].items():
        entries[str(pid)] = {}
        for name, value in per_param.items():
            if torch.is_tensor(value):
                key = f"{prefix}{pid}.{name}"
                tensors[key] = value.detach().cpu().numpy().copy()
                entries[str(pid)][name] = {"tensor": key}
            else:
                entries[str(pid)][name] = {"value": json_safe(value, strict=False)}
    return tensors, {"param_groups": json_safe(sd["param_groups"], strict=False), "state": entries}


def optimizer_from_checkpoint(optimizer: Any, tensors: Mapping[str, np.ndarray], info: Mapping[str, Any]) -> None:
    """Load into ``optimizer`` the state saved by :func:`optimizer_to_checkpoint`."""
    import torch

    state: dict[int, dict[str, Any]] = {}
    for pid, per_param in info["state"].items():
        state[int(pid)] = {
            name: torch.from_numpy(np.array(tensors[entry["tensor"]])) if "tensor" in entry else entry["value"]
            for name, entry in per_param.items()
        }
    groups = []
    for group in info["param_groups"]:
        # JSON turned tuples (Adam's betas) into lists; give them back their type.
        groups.append({k: (tuple(v) if isinstance(v, list) and k != "params" else v) for k, v in group.items()})
    optimizer.load_state_dict({"state": state, "param_groups": groups})


@contextlib.contextmanager
def deterministic_torch(n_threads: int = 1) -> Iterator[None]:
    """Single-threaded, deterministic torch inside the block (previous settings restored).

    ``torch.use_deterministic_algorithms(True, warn_only=True)``: operations without a
    deterministic implementation warn instead of failing (none is used by the scorer on CPU).
    """
    import torch

    threads = torch.get_num_threads()
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(n_threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


# =============================================================================================
# Policy files, configuration records, resume checks
# =============================================================================================
def config_settings(config: Any) -> dict[str, Any]:
    """A trainer configuration dataclass as a JSON-able dict (suite objects by name)."""
    settings = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name in ("suite", "selection_suite") and value is not None:
            value = suite_label(value)
        settings[f.name] = json_safe(value, strict=False)
    return settings


#: Configuration fields that may change between a run and its resume (budget, resources).
#: ``n_tasks``: the stopping trainer extends its simulated runs.
RESUMABLE_FIELDS: tuple[str, ...] = ("iterations", "time_budget", "n_tasks", "n_jobs", "dask", "out_dir")


def check_resumable(saved: Mapping[str, Any], config: Any) -> None:
    """Refuse to resume a checkpoint made with different settings (budget and resources may change).

    A setting the checkpoint does not record (one added to the configuration after it was
    written, such as ``schema``) counts as its default value.
    """
    now = config_settings(config)
    defaults = {
        f.name: json_safe(f.default, strict=False) for f in dataclasses.fields(config) if f.default is not dataclasses.MISSING
    }
    saved = {**{k: v for k, v in defaults.items() if k not in saved}, **saved}
    changed = sorted(k for k in set(saved) | set(now) if k not in RESUMABLE_FIELDS and saved.get(k) != now.get(k))
    if changed:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in changed[:5])
        raise InvalidInputError(
            f"cannot resume: the checkpoint was made with other settings ({details}); "
            "only the budget (iterations, time budget, tasks) and resources (jobs, dask) may change"
        )
