"""The policy file (safetensors + JSON model card), numpy inference, PolicyStrategy, CLI and benchmark."""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save as st_save
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import metalearn
from metalearn import load_policy
from metalearn.benchmark import BenchmarkConfig, run_benchmark
from metalearn.cli import main
from metalearn.exceptions import FeatureSchemaError, MetalearnError, PolicyFileError, UnknownNameError
from metalearn.features import POOL_SCHEMA
from metalearn.policies import file as policy_file_module
from metalearn.policies import names as policy_names_module
from metalearn.policies.architecture import ScorerArchitecture, parameter_shapes
from metalearn.policies.file import (
    FORMAT,
    POLICY_DIR_ENV,
    PolicyFile,
    format_model_card,
    read_policy,
    resolve_policy_path,
    save_policy,
)
from metalearn.policies.strategy import PolicyStrategy
from metalearn.policies.torch_scorer import TorchScorer
from metalearn.simulation import simulate
from metalearn.tasks.task import make_task

F, G = POOL_SCHEMA.n_candidate_features, POOL_SCHEMA.n_context_features
ARCH = ScorerArchitecture(F, G, hidden=8)


def random_scorer(seed: int = 0) -> TorchScorer:
    """A randomly initialised scorer with random input normalisation."""
    torch.manual_seed(seed)
    model = TorchScorer(ARCH)
    rng = np.random.default_rng(seed)
    model.set_normalization(
        rng.normal(0, 0.2, F), rng.uniform(0.3, 2.0, F), rng.normal(0, 0.2, G), rng.uniform(0.3, 2.0, G)
    )
    return model.eval()


def card(**extra) -> dict:
    meta = {
        "feature_schema": POOL_SCHEMA.to_dict(),
        "window": 4,
        "n_candidates": 16,
        "trainer": {"method": "dagger", "settings": {"iterations": np.int64(3), "lr": 1e-3}},
        "task_suite": "smoke",
        "seed": 7,
        "training": {"seconds": 12.5, "steps": 640, "curve": np.linspace(0.5, 0.9, 20)},
        "validation": {"aulc_vs_margin": 0.4, "aulc": np.float32(0.81), "failed": float("nan")},
    }
    meta.update(extra)
    return meta


@pytest.fixture(scope="module")
def model():
    return random_scorer(0)


@pytest.fixture
def policy_path(tmp_path, model) -> Path:
    return save_policy(tmp_path / "p.safetensors", ARCH, model.arrays(), card())


# ---------------------------------------------------------------------------------- round trip
def test_round_trip_keeps_weights_and_metadata(policy_path, model):
    pf = read_policy(policy_path)
    assert isinstance(pf, PolicyFile)
    assert pf.arch == ARCH and pf.path == policy_path
    arrays = model.arrays()
    assert set(pf.params) == set(parameter_shapes(ARCH))
    for name, value in arrays.items():
        np.testing.assert_array_equal(pf.params[name], value)
        assert pf.params[name].dtype == np.float32
    meta = pf.metadata
    assert meta["format"] == FORMAT and meta["format_version"] == 1
    assert meta["architecture"] == ARCH.to_dict()
    assert meta["package_version"] == metalearn.__version__
    assert meta["created"].endswith("+00:00")
    assert meta["feature_schema"] == POOL_SCHEMA.to_dict()
    assert (meta["window"], meta["n_candidates"], meta["seed"]) == (4, 16, 7)
    assert meta["trainer"] == {"method": "dagger", "settings": {"iterations": 3, "lr": 1e-3}}
    assert len(meta["training"]["curve"]) == 20
    assert meta["validation"]["failed"] is None  # NaN is stored as null
    assert pf.schema == POOL_SCHEMA and pf.window == 4 and pf.n_candidates == 16


@pytest.mark.parametrize("k", [1, 2, 7, 64, 301])
def test_numpy_scores_equal_torch_scores_for_any_number_of_candidates(policy_path, model, k):
    pf = read_policy(policy_path)
    rng = np.random.default_rng(k)
    candidates = rng.uniform(-1, 1, (k, F)).astype(np.float32)
    context = rng.uniform(-1, 1, G).astype(np.float32)
    ours = pf.scorer.scores(candidates, context)
    with torch.no_grad():
        theirs, _ = model(torch.from_numpy(candidates)[None], torch.from_numpy(context)[None], torch.ones(1, k, dtype=torch.bool))
    assert ours.shape == (k,)
    np.testing.assert_allclose(ours, theirs[0].numpy(), atol=1e-5, rtol=1e-5)
    perm = rng.permutation(k)
    np.testing.assert_allclose(pf.scorer.scores(candidates[perm], context), ours[perm], atol=1e-5, rtol=1e-5)


def test_masked_candidates_match_torch(policy_path, model):
    pf = read_policy(policy_path)
    rng = np.random.default_rng(3)
    candidates = rng.uniform(-1, 1, (10, F)).astype(np.float32)
    context = rng.uniform(-1, 1, G).astype(np.float32)
    mask = rng.random(10) < 0.6
    mask[0] = True
    ours = pf.scorer.scores(candidates, context, mask)
    with torch.no_grad():
        theirs, _ = model(torch.from_numpy(candidates)[None], torch.from_numpy(context)[None], torch.from_numpy(mask)[None])
    np.testing.assert_allclose(ours[mask], theirs[0].numpy()[mask], atol=1e-5)
    assert np.all(np.isneginf(ours[~mask]))


def test_save_accepts_a_feature_schema_object_and_float64_weights(tmp_path, model):
    params = {k: v.astype(np.float64) for k, v in model.arrays().items()}
    path = save_policy(tmp_path / "sub" / "dir" / "p.safetensors", ARCH, params, card(feature_schema=POOL_SCHEMA))
    assert read_policy(path).metadata["feature_schema"] == POOL_SCHEMA.to_dict()


# ---------------------------------------------------------------------------------- atomic write
def test_atomic_write_leaves_nothing_when_the_rename_fails(tmp_path, model, monkeypatch):
    def broken_replace(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", broken_replace)
    target = tmp_path / "p.safetensors"
    with pytest.raises(PolicyFileError, match="disk on fire"):
        save_policy(target, ARCH, model.arrays(), card())
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_keeps_the_old_file_when_the_rename_fails(tmp_path, model, monkeypatch):
    target = save_policy(tmp_path / "p.safetensors", ARCH, model.arrays(), card(seed=1))
    before = target.read_bytes()
    monkeypatch.setattr(os, "replace", lambda src, dst: (_ for _ in ()).throw(OSError("nope")))
    with pytest.raises(PolicyFileError):
        save_policy(target, ARCH, random_scorer(1).arrays(), card(seed=2))
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.safetensors"]


def test_atomic_write_replaces_an_existing_file(tmp_path, model):
    target = save_policy(tmp_path / "p.safetensors", ARCH, model.arrays(), card(seed=1))
    save_policy(target, ARCH, model.arrays(), card(seed=2))
    assert read_policy(target).metadata["seed"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.safetensors"]


# ---------------------------------------------------------------------------------- save errors
@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda p, m: m.pop("feature_schema"), "feature_schema"),
        (lambda p, m: m.pop("window"), "window"),
        (lambda p, m: m.update(window=1), "window"),
        (lambda p, m: m.update(n_candidates=0), "n_candidates"),
        (lambda p, m: m.update(extra=object()), "JSON"),
        (lambda p, m: p.pop("head.1.bias"), "lack"),
        (lambda p, m: p.update(extra=np.zeros(3, np.float32)), "unknown parameter"),
        (lambda p, m: p.update({"encoder.0.bias": np.zeros(9, np.float32)}), "shape"),
        (lambda p, m: p.update({"encoder.0.bias": np.full(8, np.nan, np.float32)}), "NaN"),
        (lambda p, m: p.update({"encoder.0.bias": np.zeros(8, np.int32)}), "dtype"),
    ],
)
def test_save_rejects_bad_weights_and_metadata(tmp_path, model, mutate, match):
    params, meta = model.arrays(), card()
    mutate(params, meta)
    target = tmp_path / "p.safetensors"
    with pytest.raises(PolicyFileError, match=match):
        save_policy(target, ARCH, params, meta)
    assert not target.exists()


def test_save_rejects_a_schema_this_release_cannot_compute(tmp_path, model):
    schema = dict(POOL_SCHEMA.to_dict(), version=99)
    with pytest.raises(FeatureSchemaError, match="version 99"):
        save_policy(tmp_path / "p.safetensors", ARCH, model.arrays(), card(feature_schema=schema))


# ---------------------------------------------------------------------------------- read errors
def raw_policy(params: dict, meta: dict | str | None, *, key: str = "metalearn") -> bytes:
    """A safetensors file written directly, bypassing save_policy's checks."""
    if meta is None:
        return st_save(params)
    text = meta if isinstance(meta, str) else json.dumps(meta)
    return st_save(params, metadata={key: text})


def full_meta(**changes) -> dict:
    meta = {
        "format": FORMAT,
        "format_version": 1,
        "architecture": ARCH.to_dict(),
        "package_version": "0.1.0",
        "created": "2024-01-01T00:00:00+00:00",
        "feature_schema": POOL_SCHEMA.to_dict(),
        "window": 4,
    }
    meta.update(changes)
    return meta


def crafted(header: dict, data: bytes = b"") -> bytes:
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + data


def _arrays(**changes) -> dict:
    arrays = random_scorer(0).arrays()
    arrays.update(changes)
    return {k: v for k, v in arrays.items() if v is not None}


class Boom:
    """Unpickling this would create a file: proof that a pickle is never loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _sb3_like_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("data", json.dumps({"policy_class": "MaskableActorCriticPolicy"}))
        zf.writestr("policy.pth", pickle.dumps({"w": [1.0, 2.0]}))
        zf.writestr("pytorch_variables.pth", pickle.dumps({}))
        zf.writestr("_stable_baselines3_version", "2.3.0")


def _bad_files(tmp_path: Path, good: bytes) -> dict[str, tuple[bytes | None, type[Exception], str]]:
    """name -> (bytes, expected error, message fragment); bytes None means the file is made elsewhere."""
    n_header = int.from_bytes(good[:8], "little")
    garbage_header = good[:8] + b"{" + b"\xff" * (n_header - 1) + good[8 + n_header :]
    mangled = raw_policy(_arrays(), full_meta())
    not_dict = b"[" + b" " * 10 + b"]"
    return {
        "empty": (b"", PolicyFileError, "fewer than the 8-byte"),
        "seven_bytes": (good[:7], PolicyFileError, "truncated"),
        "huge_header_length": ((2**63).to_bytes(8, "little") + good[8:], PolicyFileError, "header length"),
        "header_17_mib": ((17 * 2**20).to_bytes(8, "little") + good[8:], PolicyFileError, "header length"),
        "header_longer_than_file": ((len(good)).to_bytes(8, "little") + good[8:], PolicyFileError, "header length"),
        "header_not_json": (garbage_header, PolicyFileError, "not valid JSON"),
        "header_not_an_object": (len(not_dict).to_bytes(8, "little") + not_dict, PolicyFileError, "JSON object"),
        "int32_weights": (
            raw_policy(_arrays(**{"encoder.0.bias": np.zeros(8, np.int32)}), full_meta()), PolicyFileError, "dtype",
        ),
        "wrong_shape": (
            raw_policy(_arrays(**{"encoder.0.bias": np.zeros(9, np.float32)}), full_meta()), PolicyFileError, "shape",
        ),
        "missing_weight": (raw_policy(_arrays(**{"head.1.bias": None}), full_meta()), PolicyFileError, "lack"),
        "nan_weights": (
            raw_policy(_arrays(**{"head.0.weight": np.full((8, 3 * 8 + G), np.nan, np.float32)}), full_meta()),
            PolicyFileError,
            "NaN",
        ),
        "inf_weights": (
            raw_policy(_arrays(**{"cand_std": np.full(F, np.inf, np.float32)}), full_meta()), PolicyFileError, "NaN",
        ),
        "unknown_architecture": (
            raw_policy(_arrays(), full_meta(architecture=dict(ARCH.to_dict(), name="transformer"))),
            PolicyFileError,
            "unknown scorer architecture",
        ),
        "architecture_version_3": (
            raw_policy(_arrays(), full_meta(architecture=dict(ARCH.to_dict(), version=3))),
            PolicyFileError,
            "version 3 is not supported",
        ),
        "architecture_version_2_without_prior": (
            raw_policy(_arrays(), full_meta(architecture=dict(ARCH.to_dict(), version=2))),
            PolicyFileError,
            "needs 'prior_feature'",
        ),
        "architecture_not_a_dict": (raw_policy(_arrays(), full_meta(architecture="deepsets")), PolicyFileError, "architecture"),
        "schema_version_99": (
            raw_policy(_arrays(), full_meta(feature_schema=dict(POOL_SCHEMA.to_dict(), version=99))),
            FeatureSchemaError,
            "version 99",
        ),
        "unknown_schema": (
            raw_policy(_arrays(), full_meta(feature_schema=dict(POOL_SCHEMA.to_dict(), name="stream"))),
            FeatureSchemaError,
            "unknown feature schema",
        ),
        "schema_features_reordered": (
            raw_policy(
                _arrays(),
                full_meta(
                    feature_schema=dict(
                        POOL_SCHEMA.to_dict(), candidate_features=list(reversed(POOL_SCHEMA.candidate_features))
                    )
                ),
            ),
            FeatureSchemaError,
            "differ",
        ),
        "metadata_not_json": (raw_policy(_arrays(), "{format: metalearn-policy"), PolicyFileError, "metadata is not valid JSON"),
        "metadata_a_list": (raw_policy(_arrays(), "[1, 2]"), PolicyFileError, "expected an object"),
        "metadata_nan_constant": (raw_policy(_arrays(), '{"format": NaN}'), PolicyFileError, "not valid JSON"),
        "wrong_format": (raw_policy(_arrays(), full_meta(format="something-else")), PolicyFileError, "not a metalearn policy"),
        "newer_format_version": (raw_policy(_arrays(), full_meta(format_version=2)), PolicyFileError, "upgrade"),
        "no_window": (raw_policy(_arrays(), {k: v for k, v in full_meta().items() if k != "window"}), PolicyFileError, "window"),
        "bad_window": (raw_policy(_arrays(), full_meta(window="5")), PolicyFileError, "window"),
        "plain_safetensors": (raw_policy(_arrays(), None), PolicyFileError, "not a metalearn policy"),
        "other_metadata_key": (raw_policy(_arrays(), full_meta(), key="other"), PolicyFileError, "not a metalearn policy"),
        "offsets_beyond_file": (
            crafted({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}, "__metadata__": {}}, b"\0" * 8),
            PolicyFileError,
            "truncated",
        ),
        "offsets_inconsistent_with_shape": (
            crafted({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}, "__metadata__": {}}, b"\0" * 16),
            PolicyFileError,
            "needs 12 bytes",
        ),
        "overlapping_tensors": (
            crafted(
                {
                    "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                    "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
                    "__metadata__": {},
                },
                b"\0" * 12,
            ),
            PolicyFileError,
            "overlaps",
        ),
        "duplicate_keys": (
            len(b'{"a": 1, "a": 2}').to_bytes(8, "little") + b'{"a": 1, "a": 2}', PolicyFileError, "duplicate",
        ),
        "bf16_dtype": (
            crafted({"a": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}, "__metadata__": {}}, b"\0" * 4),
            PolicyFileError,
            "dtype",
        ),
        "trailing_bytes": (good + b"\0" * 4, PolicyFileError, "truncated, extended"),
        "mangled_metadata_key": (
            mangled.replace(b'"metalearn"', b'"metaleXrn"', 1), PolicyFileError, "not a metalearn policy",
        ),
    }


BAD_NAMES = [
    "empty", "seven_bytes", "huge_header_length", "header_17_mib", "header_longer_than_file", "header_not_json",
    "header_not_an_object", "int32_weights", "wrong_shape", "missing_weight", "nan_weights", "inf_weights",
    "unknown_architecture", "architecture_version_3", "architecture_version_2_without_prior", "architecture_not_a_dict",
    "schema_version_99", "unknown_schema",
    "schema_features_reordered", "metadata_not_json", "metadata_a_list", "metadata_nan_constant", "wrong_format",
    "newer_format_version", "no_window", "bad_window", "plain_safetensors", "other_metadata_key",
    "offsets_beyond_file", "offsets_inconsistent_with_shape", "overlapping_tensors", "duplicate_keys", "bf16_dtype",
    "trailing_bytes", "mangled_metadata_key",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_every_bad_file_raises_a_policy_error_naming_the_file(tmp_path, policy_path, name):
    content, error, fragment = _bad_files(tmp_path, policy_path.read_bytes())[name]
    path = tmp_path / f"{name}.safetensors"
    path.write_bytes(content)
    with pytest.raises(error) as info:
        read_policy(path)
    assert type(info.value) in (PolicyFileError, FeatureSchemaError)
    assert str(path) in str(info.value)
    assert fragment.lower() in str(info.value).lower()


def test_bad_names_cover_every_case(tmp_path, policy_path):
    assert set(BAD_NAMES) == set(_bad_files(tmp_path, policy_path.read_bytes()))


def test_a_pickle_is_never_loaded(tmp_path):
    marker = tmp_path / "pwned"
    for suffix in (".safetensors", ".pkl"):
        path = tmp_path / f"evil{suffix}"
        path.write_bytes(pickle.dumps(Boom(marker), protocol=pickle.HIGHEST_PROTOCOL))
        with pytest.raises(PolicyFileError, match="pickle"):
            read_policy(path)
        path.write_bytes(pickle.dumps(Boom(marker), protocol=0))
        with pytest.raises(PolicyFileError):
            read_policy(path)
    assert not marker.exists()
    pickle.loads(pickle.dumps(Boom(marker)))  # sanity check: the payload does create the file
    assert marker.exists()


def test_zip_files_and_checkpoints_are_refused(tmp_path):
    plain = tmp_path / "archive.safetensors"
    with zipfile.ZipFile(plain, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(PolicyFileError, match="zip"):
        read_policy(plain)
    sb3 = tmp_path / "ppo_model.zip"
    _sb3_like_zip(sb3)
    with pytest.raises(PolicyFileError, match="Stable-Baselines3"):
        read_policy(sb3)
    checkpoint = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(3)}, checkpoint)
    with pytest.raises(PolicyFileError, match="zip"):
        read_policy(checkpoint)


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_truncated_files_are_refused(tmp_path, policy_path, fraction):
    good = policy_path.read_bytes()
    n_header = int.from_bytes(good[:8], "little")
    for cut in {int(fraction * len(good)), 8 + n_header - 1, 8 + n_header, 8 + n_header + 3, len(good) - 1}:
        path = tmp_path / f"cut{cut}.safetensors"
        path.write_bytes(good[:cut])
        with pytest.raises(PolicyFileError, match=r"truncated|fewer than"):
            read_policy(path)


def test_missing_file_folder_and_unknown_name(tmp_path, monkeypatch):
    monkeypatch.delenv(POLICY_DIR_ENV, raising=False)
    with pytest.raises(PolicyFileError, match="no such file"):
        read_policy(tmp_path / "nothing.safetensors")
    with pytest.raises(PolicyFileError, match="folder"):
        read_policy(tmp_path)
    with pytest.raises(UnknownNameError, match="unknown policy 'no-such-policy'"):
        read_policy("no-such-policy")
    with pytest.raises(PolicyFileError):
        read_policy(12)  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_corrupted_bytes_never_raise_another_error(tmp_path_factory, data):
    good = _fuzz_base()
    content = bytearray(good)
    end_of_header = 8 + int.from_bytes(good[:8], "little")
    for _ in range(data.draw(st.integers(1, 4))):
        # Mostly the header (lengths, JSON, offsets, metadata), sometimes the weights.
        last = end_of_header - 1 if data.draw(st.integers(0, 3)) else len(content) - 1
        position = data.draw(st.integers(0, last))
        content[position] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        content = content[: data.draw(st.integers(0, len(content)))]
    path = tmp_path_factory.mktemp("fuzz") / "p.safetensors"
    path.write_bytes(bytes(content))
    try:
        pf = read_policy(path)
    except (PolicyFileError, FeatureSchemaError):
        return
    assert np.all(np.isfinite(pf.scorer.scores(np.zeros((3, F), np.float32), np.zeros(G, np.float32))))


_FUZZ_BASE: list[bytes] = []


def _fuzz_base() -> bytes:
    if not _FUZZ_BASE:
        _FUZZ_BASE.append(raw_policy(_arrays(), full_meta()))
    return _FUZZ_BASE[0]


# ---------------------------------------------------------------------------------- names
def test_released_names_resolve_from_the_policy_dir(tmp_path, model, monkeypatch):
    folder = tmp_path / "released"
    save_policy(folder / "mine.safetensors", ARCH, model.arrays(), card())
    monkeypatch.setenv(POLICY_DIR_ENV, str(folder))
    monkeypatch.chdir(tmp_path)
    assert resolve_policy_path("mine") == folder / "mine.safetensors"
    assert read_policy("mine").path == folder / "mine.safetensors"
    with pytest.raises(UnknownNameError, match="released policies: .*mine"):
        resolve_policy_path("other")


def test_released_policies_are_package_data_found_with_importlib_resources(tmp_path, model, monkeypatch):
    """The released policies (policies/ in the repository) are the package metalearn.policies.released."""
    import importlib.resources

    released = policy_file_module.released_policy_dir()
    assert released == Path(str(importlib.resources.files("metalearn.policies.released")))
    assert (released / "default.safetensors").is_file() and (released / "default.md").is_file()
    assert (released / "stopping" / "default.safetensors").is_file()
    # the files of the repository's policies/ folder, not of an old layout's metalearn/policies/released/
    root = Path(policy_file_module.__file__).resolve().parents[2]
    assert sorted(p.name for p in released.glob("*.safetensors")) == sorted(
        p.name for p in (root / "policies").glob("*.safetensors")
    )
    assert policy_file_module.policy_search_dirs()[0] == released
    assert resolve_policy_path("default") == released / "default.safetensors"
    shipped = tmp_path / "shipped"  # what another installation's package data holds
    save_policy(shipped / "shipped.safetensors", ARCH, model.arrays(), card())
    monkeypatch.setattr(policy_names_module, "released_policy_dir", lambda: shipped)
    assert resolve_policy_path("shipped") == shipped / "shipped.safetensors"
    assert "shipped" in policy_file_module.released_policy_names()


def test_pyproject_ships_the_released_policies_and_suites_as_package_data():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    root = Path(policy_file_module.__file__).resolve().parents[2]
    pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    package_data = pyproject["tool"]["setuptools"]["package-data"]
    # the top-level folders of the repository are the packages the code reads them as
    assert pyproject["tool"]["setuptools"]["package-dir"] == {
        "metalearn.suites": "envs", "metalearn.policies.released": "policies"
    }
    assert (root / "envs" / "smoke.toml").is_file() and (root / "policies" / "default.safetensors").is_file()
    assert not (root / "metalearn" / "suites").exists() and not (root / "metalearn" / "policies" / "released").exists()
    assert "*.safetensors" in package_data["metalearn.policies.released"]
    assert "*.md" in package_data["metalearn.policies.released"]
    assert "*.toml" in package_data["metalearn.suites"] and "py.typed" in package_data["metalearn"]
    assert "data-files" not in pyproject["tool"]["setuptools"]  # the deprecated route is gone
    assert (root / "metalearn" / "py.typed").is_file()


def test_unknown_name_says_when_nothing_is_released(tmp_path, monkeypatch):
    monkeypatch.setenv(POLICY_DIR_ENV, str(tmp_path / "empty"))
    monkeypatch.setattr(policy_names_module, "released_policy_dir", lambda: tmp_path / "no-package-data")
    with pytest.raises(UnknownNameError, match="no released policies"):
        resolve_policy_path("default")


# ---------------------------------------------------------------------------------- strategy
def test_load_policy_does_not_import_torch(policy_path, run_without_torch):
    code = f"""
import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from metalearn import load_policy
X, y_true = load_iris(return_X_y=True)
y = np.full(150, np.nan)
y[[0, 50, 100]] = y_true[[0, 50, 100]]
strategy = load_policy({str(policy_path)!r}, random_state=0)
for _ in range(3):
    labeled = ~np.isnan(y)
    clf = LogisticRegression(max_iter=500).fit(X[labeled], y[labeled])
    idx = strategy.query(X, y, clf, batch_size=10)
    assert idx.shape == (10,) and np.unique(idx).size == 10 and np.isnan(y[idx]).all()
    y[idx] = y_true[idx]
"""
    run_without_torch(code)


def _iris_task(batch_size: int = 3, budget: int = 12, seed: int = 5):
    X, y = load_iris(return_X_y=True)
    return make_task(X, y, model="logreg", regime="cold", label_budget=budget, batch_size=batch_size, seed=seed)


def test_policy_strategy_simulation_picks_valid_records_and_is_deterministic(policy_path):
    task = _iris_task()
    first = simulate(task, PolicyStrategy(read_policy(policy_path), label_budget=12, random_state=3))
    second = simulate(task, PolicyStrategy(policy_path, label_budget=12, random_state=3))
    assert len(first.picks) == 4
    everything = np.concatenate(first.picks)
    assert np.unique(everything).size == everything.size  # never a record twice across loops
    for a, b in zip(first.picks, second.picks):
        assert a.shape == (3,)
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(first.accuracy, second.accuracy)


def test_policy_strategy_is_stateful_and_exposes_scores(policy_path):
    X, y_true = load_iris(return_X_y=True)
    y = np.full(150, np.nan)
    y[[0, 50, 100]] = y_true[[0, 50, 100]]
    strategy = load_policy(policy_path, random_state=0)
    for loop in range(4):
        labeled = ~np.isnan(y)
        clf = LogisticRegression(max_iter=500).fit(X[labeled], y[labeled])
        idx = strategy.query(X, y, clf, batch_size=5)
        assert np.unique(idx).size == 5 and np.isnan(y[idx]).all()
        candidates, scores = strategy.last_scores_
        assert candidates.size == scores.size == 16  # the recorded n_candidates
        assert np.isnan(y[candidates]).all()
        assert set(idx) <= set(candidates)
        best = candidates[np.argsort(-scores)[:5]]
        assert set(idx) == set(best) or np.unique(scores).size < scores.size
        y[idx] = y_true[idx]
        assert strategy.extractor_.history.n_loops == loop + 1


def test_batch_larger_than_the_candidates_scores_at_least_the_batch(policy_path, pool):
    X, y, clf = pool
    strategy = load_policy(policy_path, n_candidates=4, random_state=0)
    idx = strategy.query(X, y, clf, batch_size=25)
    assert idx.shape == (25,) and np.unique(idx).size == 25 and np.isnan(y[idx]).all()
    assert strategy.last_scores_[0].size >= 25


@pytest.mark.parametrize("selection", ["all", "random", "mixed"])
def test_candidate_selection_modes(policy_path, pool, selection):
    X, y, clf = pool
    strategy = load_policy(policy_path, candidate_selection=selection, n_candidates=20, random_state=0)
    idx = strategy.query(X, y, clf, batch_size=3)
    assert np.isnan(y[idx]).all()
    n_unlabeled = int(np.isnan(y).sum())
    assert strategy.last_scores_[0].size == (n_unlabeled if selection == "all" else 20)
    if selection == "mixed":  # half of them are the smallest margins
        from metalearn.common.uncertainty import margins

        unlabeled = np.flatnonzero(np.isnan(y))
        m = margins(clf.predict_proba(X[unlabeled]))
        smallest = set(unlabeled[np.argsort(m)[:9]])
        assert len(smallest & set(strategy.last_scores_[0])) >= 9


def test_string_labels_and_custom_missing_label(policy_path):
    X, y_true = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"], dtype=object)[y_true]
    y = np.full(150, None, dtype=object)
    y[[0, 1, 50, 51, 100, 101]] = names[[0, 1, 50, 51, 100, 101]]
    strategy = load_policy(policy_path, missing_label=None, random_state=1)
    for _ in range(3):
        labeled = np.array([v is not None for v in y])
        clf = LogisticRegression(max_iter=500).fit(X[labeled], y[labeled].astype(str))
        idx = strategy.query(X, y, clf, batch_size=4)
        assert all(y[i] is None for i in idx) and np.unique(idx).size == 4
        y[idx] = names[idx]


def test_bad_strategy_parameters_raise_our_errors(policy_path, pool):
    X, y, clf = pool
    with pytest.raises(MetalearnError, match="candidate_selection"):
        PolicyStrategy(policy_path, candidate_selection="best").query(X, y, clf, batch_size=1)
    with pytest.raises(MetalearnError, match="n_candidates"):
        PolicyStrategy(policy_path, n_candidates=0).query(X, y, clf, batch_size=1)
    with pytest.raises(PolicyFileError):
        PolicyStrategy(policy_path.parent / "missing.safetensors").query(X, y, clf, batch_size=1)


def test_policy_is_read_once_and_survives_reset(policy_path, pool):
    X, y, clf = pool
    strategy = PolicyStrategy(policy_path, random_state=0)
    first = strategy.query(X, y, clf, batch_size=2)
    loaded = strategy.policy_file
    strategy.reset()
    assert strategy.policy_file is loaded
    np.testing.assert_array_equal(strategy.query(X, y, clf, batch_size=2), first)
    assert "p.safetensors" in repr(strategy)
    assert "PolicyFile(path=" in repr(load_policy(policy_path))  # short, no weights in the repr


# ---------------------------------------------------------------------------------- CLI
def test_inspect_prints_the_model_card(policy_path, capsys):
    assert main(["inspect", str(policy_path)]) == 0
    out = capsys.readouterr().out
    for fragment in (
        str(policy_path), "trained on: smoke", "trainer: dagger", "iterations: 3", "seed: 7",
        "time 12.5 s, steps 640", "deepsets v1", "hidden 8", "pool@1", "window: 4 loops",
        "candidates per query: 16", "aulc_vs_margin: 0.4", f"metalearn {metalearn.__version__}",
    ):
        assert fragment in out, fragment
    assert out.strip() == format_model_card(read_policy(policy_path))


def test_inspect_json_prints_the_raw_metadata(policy_path, capsys):
    assert main(["inspect", str(policy_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == read_policy(policy_path).metadata


def test_inspect_reports_bad_files_as_errors(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a policy at all")
    assert main(["inspect", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("metalearn: error: ") and str(bad) in err


# ---------------------------------------------------------------------------------- benchmark
def test_benchmark_runs_a_policy_file(policy_path):
    config = BenchmarkConfig(
        strategies=["margin", f"policy:{policy_path}"], datasets=["sklearn:iris"], models=["logreg"],
        regimes=["cold"], batch_sizes=[3], label_budget=6, n_seeds=1, seed=0,
    )
    result = run_benchmark(config, None, n_jobs=1, progress=False)
    assert set(result.runs["strategy"]) == {"margin", f"policy:{policy_path}"}
    assert (result.runs["status"] == "ok").all(), result.runs[["strategy", "error"]]


def _margin_and_policy_benchmark(policy_path: Path, n_seeds: int) -> BenchmarkConfig:
    return BenchmarkConfig(
        strategies=["margin", f"policy:{policy_path}"], datasets=["sklearn:iris"], models=["logreg"],
        regimes=["cold"], batch_sizes=[3], label_budget=6, n_seeds=n_seeds, seed=0,
    )


def test_benchmark_resume_recomputes_runs_of_an_overwritten_policy(policy_path, model, tmp_path):
    config = _margin_and_policy_benchmark(policy_path, n_seeds=2)
    out = tmp_path / "bench"
    assert run_benchmark(config, out, progress=False).computed == 4
    assert run_benchmark(config, out, progress=False).computed == 0
    arrays = model.arrays()
    arrays["head.1.bias"] = arrays["head.1.bias"] + 1.0  # a different policy under the same path
    save_policy(policy_path, ARCH, arrays, card())
    assert run_benchmark(config, out, progress=False).computed == 2  # only the policy's runs


def test_benchmark_resume_keeps_runs_of_a_policy_rereleased_with_new_notes(policy_path, tmp_path):
    config = _margin_and_policy_benchmark(policy_path, n_seeds=1)
    out = tmp_path / "bench"
    assert run_benchmark(config, out, progress=False).computed == 2
    policy = read_policy(policy_path)
    before = policy.behaviour_digest()
    # What scripts/release_policy.py does: same weights, a new model card (other bytes on disk).
    save_policy(policy_path, policy.arch, policy.params, {**policy.metadata, "release": {"name": "default"}})
    assert read_policy(policy_path).behaviour_digest() == before
    assert run_benchmark(config, out, progress=False).computed == 0


def test_benchmark_rejects_a_bad_policy_before_compute(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    config = BenchmarkConfig(strategies=["margin", f"policy:{bad}"], datasets=["sklearn:iris"])
    with pytest.raises(PolicyFileError, match="pickle"):
        config.validate()
    out = tmp_path / "results"
    with pytest.raises(PolicyFileError):
        run_benchmark(config, out, n_jobs=1, progress=False)
    assert not out.exists()
    with pytest.raises(PolicyFileError, match="no such file"):
        BenchmarkConfig(strategies=[f"policy:{tmp_path / 'missing.safetensors'}"]).validate()


def test_batch_picks_follow_training_one_pick_at_a_time():
    """Each pick is the best re-scored candidate once earlier picks are masked (as in PoolAL-v0)."""
    import torch

    from metalearn.policies.architecture import ScorerArchitecture
    from metalearn.policies.numpy_scorer import NumpyScorer
    from metalearn.policies.torch_scorer import TorchScorer

    torch.manual_seed(1)
    arch = ScorerArchitecture(16, 16, 8)
    scorer = NumpyScorer(arch, TorchScorer(arch).arrays())
    rng = np.random.default_rng(0)
    cand, ctx = rng.normal(size=(12, 16)), rng.normal(size=16)
    picks, first = scorer.pick_sequentially(cand, ctx, 4, lambda s: int(np.argmax(s)))
    assert np.unique(picks).size == 4
    assert picks[0] == int(np.argmax(first))
    np.testing.assert_allclose(first, scorer.scores(cand, ctx))
    mask = np.ones(12, dtype=bool)
    for pick in picks:
        assert pick == int(np.argmax(scorer.scores(cand, ctx, mask)))
        mask[pick] = False
