"""The one file container under every file kind: policies, stopping rules, next-batch state, checkpoints.

Each kind refuses, with its own project error, what is not one of its files: a folder, a FIFO
or a device (never read), an oversized header, a truncated file, a newer version, another
kind's file. A write that fails midway leaves the previous file intact and no temporary.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load as safetensors_load
from safetensors.numpy import save as safetensors_save

from metalearn.common import container
from metalearn.common.container import KNOWN_FORMATS, FileKind
from metalearn.exceptions import InvalidInputError, MetalearnError, PolicyFileError, StoppingRuleFileError
from metalearn.policies import format as policy_format
from metalearn.policies.file import read_policy, resolve_policy_path, save_policy
from metalearn.policies.trainers import checkpoints
from metalearn.policies.trainers.checkpoints import load_checkpoint, save_checkpoint
from metalearn.stopping import file as stopping_file
from metalearn.stopping.file import read_stopping_rule, resolve_stopping_rule_path, save_stopping_rule
from metalearn.workflow import state as workflow_state
from metalearn.workflow import StateFileError, next_batch, read_state

NO_SPACE = "No space left on device"


# ---------------------------------------------------------------------------------- one file of each kind
def _policy(folder: Path) -> Path:
    return Path(shutil.copy(resolve_policy_path("default"), folder / "policy.safetensors"))


def _stopping_rule(folder: Path) -> Path:
    return Path(shutil.copy(resolve_stopping_rule_path("default"), folder / "stopping.safetensors"))


def _state(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    records = pd.DataFrame(rng.normal(size=(30, 3)), columns=["a", "b", "c"])
    records.insert(0, "id", [f"r{i}" for i in range(30)])
    records.to_csv(folder / "records.csv", index=False)
    pd.DataFrame({"id": ["r0", "r1", "r2", "r3"], "label": ["x", "y", "x", "y"]}).to_csv(folder / "labels.csv", index=False)
    state = folder / "labels.state"
    next_batch(folder / "records.csv", folder / "labels.csv", policy="margin", model="nb", batch_size=2, state=state)
    return state


def _checkpoint(folder: Path) -> Path:
    directory = folder / "checkpoint"
    tensors = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "rng": np.arange(8, dtype=np.uint8)}
    save_checkpoint(directory, tensors, {"loop": {"iteration": 1}})
    return directory / "checkpoint.json"


def _tensor_file(checkpoint_json: Path) -> Path:
    return checkpoint_json.parent / json.loads(checkpoint_json.read_text())["tensor_file"]


@dataclasses.dataclass(frozen=True)
class Kind:
    name: str
    make: Callable[[Path], Path]
    read: Callable[[Path], object]
    error: type[MetalearnError]
    module: object  # where the reader finds its FileKind
    kind_name: str

    @property
    def kind(self) -> FileKind:
        return getattr(self.module, self.kind_name)


KINDS = {
    "policy": Kind("policy", _policy, read_policy, PolicyFileError, policy_format, "POLICY_KIND"),
    "stopping rule": Kind("stopping rule", _stopping_rule, read_stopping_rule, StoppingRuleFileError, stopping_file, "STOPPING_RULE_KIND"),
    "state": Kind("state", _state, read_state, StateFileError, workflow_state, "STATE_KIND"),
    # A checkpoint is read from its folder: checkpoint.json, then the tensor file it names.
    "checkpoint": Kind("checkpoint", _checkpoint, lambda path: load_checkpoint(path.parent), InvalidInputError,
                       checkpoints, "CHECKPOINT_JSON_KIND"),
}


@pytest.fixture(params=sorted(KINDS))
def kind(request) -> Kind:
    return KINDS[request.param]


def _refused(kind: Kind, path: Path, *fragments: str) -> str:
    with pytest.raises(kind.error) as info:
        kind.read(path)
    assert isinstance(info.value, MetalearnError)
    message = str(info.value)
    for fragment in fragments:
        assert fragment.lower() in message.lower(), message
    return message


def test_every_kind_reads_the_file_it_wrote(kind, tmp_path):
    path = kind.make(tmp_path)
    assert kind.read(path) is not None


# ---------------------------------------------------------------------------------- nodes that are no files
def test_a_folder_is_refused(kind, tmp_path):
    path = kind.make(tmp_path)
    path.unlink()
    path.mkdir()
    _refused(kind, path, "folder", str(path))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_without_being_opened(kind, tmp_path):
    path = kind.make(tmp_path)
    path.unlink()
    os.mkfifo(path)  # opening it for reading would block forever: it must never be opened
    _refused(kind, path, "not a regular file")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero here")
def test_a_device_is_refused_never_read_without_bound(kind, tmp_path):
    path = kind.make(tmp_path)
    path.unlink()
    path.symlink_to("/dev/zero")  # endless: reading it unbounded would fill the memory
    _refused(kind, path, "not a regular file")


def test_the_checkpoint_tensor_file_is_refused_as_a_fifo(tmp_path):
    path = _tensor_file(_checkpoint(tmp_path))
    path.unlink()
    os.mkfifo(path)
    with pytest.raises(InvalidInputError, match="not a regular file"):
        load_checkpoint(path.parent)


# ---------------------------------------------------------------------------------- damaged files
def _container_file(kind: Kind, path: Path) -> Path:
    """The safetensors file of the kind (a checkpoint's tensor file)."""
    return _tensor_file(path) if kind.name == "checkpoint" else path


def _write_container(kind: Kind, path: Path, data: bytes) -> None:
    """Replace the kind's safetensors bytes (a checkpoint's checksum follows, so the header is what is judged)."""
    target = _container_file(kind, path)
    target.write_bytes(data)
    if kind.name == "checkpoint":
        payload = json.loads(path.read_text())
        payload["tensor_sha256"] = hashlib.sha256(data).hexdigest()
        path.write_text(json.dumps(payload))


def test_an_oversized_header_is_refused(kind, tmp_path, monkeypatch):
    path = kind.make(tmp_path)
    limit = 2**20  # the kinds' own limits, made small so the test file stays small
    module, name = (checkpoints, "CHECKPOINT_TENSORS_KIND") if kind.name == "checkpoint" else (kind.module, kind.kind_name)
    monkeypatch.setattr(module, name, dataclasses.replace(getattr(module, name), max_header_bytes=limit))
    data = _container_file(kind, path).read_bytes()
    # A well-formed JSON header one byte over the limit, the file long enough to hold it.
    header = b"{" + b" " * (limit - 1) + b"}"
    _write_container(kind, path, len(header).to_bytes(8, "little") + header)
    assert len(data) > 8
    _refused(kind, path, "limit 1 MiB")


def test_a_truncated_file_is_refused(kind, tmp_path):
    path = kind.make(tmp_path)
    target = _container_file(kind, path)
    data = target.read_bytes()
    n_header = int.from_bytes(data[:8], "little")
    for cut in (0, 5, 8 + n_header // 2, 8 + n_header, len(data) - 1):
        target.write_bytes(data[:cut])
        message = _refused(kind, path)
        assert any(word in message for word in ("truncated", "fewer than", "corrupt")), message


def test_a_truncated_checkpoint_json_is_refused(tmp_path):
    path = _checkpoint(tmp_path)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(InvalidInputError, match="not valid JSON.*corrupted"):
        load_checkpoint(path.parent)


def _edit_metadata(kind: Kind, path: Path, edit: Callable[[dict], None]) -> None:
    """Change the metadata (checkpoint.json for a checkpoint) and write the file back as its writer would."""
    if kind.name == "checkpoint":
        payload = json.loads(path.read_text())
        edit(payload)
        path.write_text(json.dumps(payload))
        return
    data = path.read_bytes()
    n_header = int.from_bytes(data[:8], "little")
    metadata = json.loads(json.loads(data[8 : 8 + n_header])["__metadata__"][container.METADATA_KEY])
    edit(metadata)
    path.write_bytes(safetensors_save(dict(safetensors_load(data)), metadata={container.METADATA_KEY: json.dumps(metadata)}))


def test_a_newer_version_asks_for_an_upgrade(kind, tmp_path):
    path = kind.make(tmp_path)
    key = kind.kind.version_key
    _edit_metadata(kind, path, lambda meta: meta.update({key: kind.kind.version + 1}))
    _refused(kind, path, f"version {kind.kind.version + 1}", "newer metalearn", "upgrade")


@pytest.mark.parametrize("version", [0, -1, "2", None, 1.5, True])
def test_an_invalid_version_is_a_corrupted_file_not_an_upgrade(kind, tmp_path, version):
    path = kind.make(tmp_path)
    key = kind.kind.version_key
    _edit_metadata(kind, path, lambda meta: meta.update({key: version}))
    message = _refused(kind, path, "corrupted")
    assert "upgrade" not in message


# ---------------------------------------------------------------------------------- another kind's file
@pytest.mark.parametrize("mine, other", [(a, b) for a in sorted(KINDS) for b in sorted(KINDS) if a != b])
def test_another_kinds_file_is_named_and_refused(mine, other, tmp_path):
    kind = KINDS[mine]
    (tmp_path / "mine").mkdir()
    (tmp_path / "theirs").mkdir()
    path = kind.make(tmp_path / "mine")
    given = KINDS[other].make(tmp_path / "theirs")
    if kind.name == "checkpoint":
        # checkpoint.json holding another kind's metadata (a container's metadata JSON)
        data = given.read_bytes()
        n_header = int.from_bytes(data[:8], "little")
        path.write_text(json.loads(data[8 : 8 + n_header])["__metadata__"][container.METADATA_KEY])
        message = _refused(kind, path, "not a metalearn checkpoint")
    elif other == "checkpoint":
        # a checkpoint's tensor file: safetensors without metalearn metadata
        path.write_bytes(_tensor_file(given).read_bytes())
        message = _refused(kind, path, f"not a {kind.kind.noun}")
    else:
        path.write_bytes(given.read_bytes())
        message = _refused(kind, path, f"not a {kind.kind.noun}")
        assert KNOWN_FORMATS[KINDS[other].kind.format] in message  # says what the file is


def test_a_policy_given_as_a_state_file_and_a_state_given_as_a_policy(tmp_path):
    policy, state = _policy(tmp_path), _state(tmp_path)
    with pytest.raises(StateFileError, match=r"querying policy.*not a metalearn next-batch state file"):
        read_state(policy)
    with pytest.raises(PolicyFileError, match=r"next-batch state file.*not a metalearn policy"):
        read_policy(state)
    with pytest.raises(StateFileError, match="querying policy"):
        next_batch(tmp_path / "records.csv", tmp_path / "labels.csv", policy="margin", model="nb", state=policy)


def test_state_files_keep_nan_constants_other_kinds_refuse_them(tmp_path):
    """The state's metadata is Python's default JSON (its existing files may hold NaN); a policy's is strict."""
    state = _state(tmp_path)
    _edit_metadata(KINDS["state"], state, lambda meta: meta.update(note=float("nan")))
    assert np.isnan(read_state(state)[0]["note"])
    policy = _policy(tmp_path)
    _edit_metadata(KINDS["policy"], policy, lambda meta: meta.update(note=float("nan")))
    with pytest.raises(PolicyFileError, match="NaN"):
        read_policy(policy)


def test_duplicate_keys_and_deep_nesting_are_refused_by_every_kind(kind, tmp_path):
    path = kind.make(tmp_path)
    target = _container_file(kind, path)
    for header in (b'{"a": 1, "a": 2}', b"[" * 100_000 + b"]" * 100_000):
        _write_container(kind, path, len(header).to_bytes(8, "little") + header)
        message = _refused(kind, path)
        assert "duplicate" in message or "not valid JSON" in message or "expected an object" in message or \
            "does not start with a JSON object" in message, message
    assert target.exists()


def test_a_checkpoint_naming_a_file_outside_its_folder_is_refused(tmp_path):
    path = _checkpoint(tmp_path)
    payload = json.loads(path.read_text())
    payload["tensor_file"] = "../../etc/passwd"
    path.write_text(json.dumps(payload))
    with pytest.raises(InvalidInputError, match="tensor_file"):
        load_checkpoint(path.parent)


def test_read_bounded_refuses_a_file_over_the_kinds_limit(tmp_path):
    small = FileKind(format="metalearn-policy", version=1, label="test file", noun="test file", version_label="test",
                     error=PolicyFileError, max_file_bytes=1000)
    path = tmp_path / "big.bin"
    path.write_bytes(b"\0" * 1001)
    with pytest.raises(PolicyFileError, match="larger than any"):
        container.read_bounded(path, small)
    path.write_bytes(b"\0" * 1000)
    assert container.read_bounded(path, small) == b"\0" * 1000


# ---------------------------------------------------------------------------------- atomic writes
@pytest.fixture
def failing_write(monkeypatch):
    """Make the next atomic write fail midway: half the bytes reach the temporary file, then the disk is full."""

    real_fdopen = os.fdopen

    class HalfWriter:
        def __init__(self, handle):
            self.handle = handle

        def write(self, data):
            self.handle.write(data[: len(data) // 2])
            self.handle.flush()
            raise OSError(28, NO_SPACE)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()
            return False

    def fdopen(fd, mode="r", *args, **kwargs):
        handle = real_fdopen(fd, mode, *args, **kwargs)
        return HalfWriter(handle) if "w" in mode else handle

    def arm():
        monkeypatch.setattr(os, "fdopen", fdopen)

    return arm


def _only(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_failed_policy_write_keeps_the_old_file(tmp_path, failing_write):
    path = _policy(tmp_path)
    before = path.read_bytes()
    policy = read_policy(path)
    failing_write()
    with pytest.raises(PolicyFileError, match=f"cannot write policy file.*{NO_SPACE}"):
        save_policy(path, policy.arch, {k: v * 2 for k, v in policy.params.items()}, policy.metadata)
    assert path.read_bytes() == before
    assert _only(tmp_path) == ["policy.safetensors"]


def test_a_failed_stopping_rule_write_keeps_the_old_file(tmp_path, failing_write):
    path = _stopping_rule(tmp_path)
    before = path.read_bytes()
    rule = read_stopping_rule(path)
    failing_write()
    with pytest.raises(StoppingRuleFileError, match=f"cannot write stopping-rule file.*{NO_SPACE}"):
        save_stopping_rule(path, rule.arch, rule.params, dict(rule.metadata, threshold=2.0))
    assert path.read_bytes() == before
    assert _only(tmp_path) == ["stopping.safetensors"]


def test_a_failed_state_write_keeps_the_old_state(tmp_path, failing_write):
    state = _state(tmp_path)
    before = state.read_bytes()
    failing_write()
    with pytest.raises(StateFileError, match=f"{NO_SPACE}.*choose another --state"):
        next_batch(tmp_path / "records.csv", tmp_path / "labels.csv", policy="margin", model="nb", batch_size=2, state=state)
    assert state.read_bytes() == before
    assert read_state(state)[0]["loops"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_failed_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, failing_write):
    path = _checkpoint(tmp_path)
    before = {name: (path.parent / name).read_bytes() for name in _only(path.parent)}
    failing_write()  # the tensor file streams from safetensors; checkpoint.json then fails midway
    with pytest.raises(InvalidInputError, match=f"checkpoint to .*{NO_SPACE}.*step 0 is kept"):
        save_checkpoint(path.parent, {"w": np.ones((3, 4), dtype=np.float32)}, {"loop": {"iteration": 2}})
    assert {name: (path.parent / name).read_bytes() for name in _only(path.parent)} == before
    tensors, state = load_checkpoint(path.parent)
    assert state["loop"]["iteration"] == 1 and np.array_equal(tensors["w"], np.arange(12, dtype=np.float32).reshape(3, 4))


def test_write_atomic_creates_missing_folders_and_names_the_kind_on_failure(tmp_path):
    kind = policy_format.POLICY_KIND
    target = container.write_atomic(tmp_path / "a" / "b" / "f.bin", b"abc", kind)
    assert target.read_bytes() == b"abc"
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(PolicyFileError, match="cannot create the folder of policy file"):
        container.write_atomic(tmp_path / "file" / "f.bin", b"abc", kind)
