"""Every Cython source in native/ is compiled and the compiled module is the one imported."""

from __future__ import annotations

import importlib
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

NATIVE = Path(__file__).resolve().parent.parent / "native"
MODULES = sorted(p.stem for p in NATIVE.glob("*.pyx"))


def test_the_native_core_is_all_there():
    assert {"ring", "g711", "resample", "vad", "endpointer", "capture"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_compiled_module_is_loaded(name: str):
    module = importlib.import_module(f"qa._native.{name}")
    assert module.__file__.endswith(tuple(EXTENSION_SUFFIXES)), module.__file__
    # A stale build would hide a changed source: the binary must be newer than its .pyx.
    assert Path(module.__file__).stat().st_mtime >= (NATIVE / f"{name}.pyx").stat().st_mtime
