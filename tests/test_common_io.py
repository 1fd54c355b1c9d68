"""The one atomic-write helper and the one JSON sanitiser every writer uses."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from metalearn.common.atomic import atomic_write, atomic_write_bytes, atomic_write_text
from metalearn.common.jsonable import json_safe
from metalearn.exceptions import InvalidTypeError


def test_atomic_write_replaces_whole_files_and_leaves_nothing_on_failure(tmp_path):
    path = tmp_path / "table.csv"
    atomic_write_text(path, "a\n1\n")
    assert path.read_text() == "a\n1\n"
    atomic_write_bytes(path, b"a\n2\n")
    assert path.read_bytes() == b"a\n2\n"

    def half_then_fail(tmp: str) -> None:
        Path(tmp).write_text("a\n")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_write(path, half_then_fail)
    assert path.read_bytes() == b"a\n2\n"  # the previous file, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]  # no temporary file left


@dataclasses.dataclass
class _Point:
    x: float
    label: str


class _WithToDict:
    def to_dict(self) -> dict[str, object]:
        return {"kind": "custom", "values": (1, 2)}


def test_json_safe_gives_plain_json_types():
    value = {
        "ints": np.arange(3), "float": np.float32(0.5), "nan": float("nan"), "inf": np.float64("inf"),
        "flag": np.bool_(True), "path": Path("a/b"), "tuple": (1, np.int64(2)), 3: "key", "point": _Point(1.0, "p"),
        "custom": _WithToDict(),
    }
    out = json_safe(value)
    assert out == {
        "ints": [0, 1, 2], "float": 0.5, "nan": None, "inf": None, "flag": True, "path": str(Path("a/b")),
        "tuple": [1, 2], "3": "key", "point": {"x": 1.0, "label": "p"}, "custom": {"kind": "custom", "values": [1, 2]},
    }
    assert json.loads(json.dumps(out, allow_nan=False)) == out
    assert type(out["float"]) is float and not any(isinstance(v, float) and math.isnan(v) for v in out.values())


def test_json_safe_names_what_json_cannot_store():
    with pytest.raises(InvalidTypeError, match=r"metadata\.inner\[1\] holds a object"):
        json_safe({"inner": [1, object()]}, "metadata")
    marker = object()
    assert json_safe({"inner": [marker]}, strict=False)["inner"][0] is marker  # passed through
