"""relay.fastjson: orjson when importable, else the standard library, with the same results either way."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from relay import fastjson

ROOT = Path(__file__).resolve().parents[2]

DOCUMENT: dict[str, Any] = {
    "syncId": "-1",
    "text": 'quote " backslash \\ nl \n nul \x00 你好 🎉 \u2028',
    "n": [1, -2, 2**63 - 1],
    "t": (1, 2),
    "f": 1.5,
    "none": None,
    "yes": True,
}


@pytest.fixture
def without_orjson(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A fresh copy of relay.fastjson loaded as in the zipapp, where orjson cannot be imported."""
    monkeypatch.setitem(sys.modules, "orjson", None)  # None in sys.modules makes the import fail
    spec = importlib.util.spec_from_file_location("fastjson_without_orjson", ROOT / "relay" / "fastjson.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stdlib_compact(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def test_orjson_is_used_when_installed() -> None:
    assert fastjson.HAVE_ORJSON


@pytest.mark.parametrize("use_orjson", [True, False])
def test_dumps_writes_the_stdlib_compact_bytes(use_orjson: bool, without_orjson: ModuleType) -> None:
    module = fastjson if use_orjson else without_orjson
    assert module.dumps(DOCUMENT) == stdlib_compact(DOCUMENT)
    assert module.loads(module.dumps(DOCUMENT)) == json.loads(stdlib_compact(DOCUMENT))


@pytest.mark.parametrize("use_orjson", [True, False])
def test_both_refuse_the_same_things_with_the_same_types(use_orjson: bool, without_orjson: ModuleType) -> None:
    module = fastjson if use_orjson else without_orjson
    with pytest.raises(TypeError):
        module.dumps({"text": "half \ud83d pair"})  # no UTF-8 form
    with pytest.raises(ValueError):
        module.loads(b'{"op": 1')
    with pytest.raises(ValueError):
        module.loads(b"\xff\xfe\xfa")


def test_the_fallback_reports_itself(without_orjson: ModuleType) -> None:
    assert without_orjson.HAVE_ORJSON is False
