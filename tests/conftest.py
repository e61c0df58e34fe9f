"""Shared fixtures: every ISA path this CPU runs, and a reproducible RNG per test."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from pysparse import _core

RUNNABLE_ISAS = _core.runnable_isas()


@pytest.fixture(params=RUNNABLE_ISAS)
def isa(request):
    """Run the test once per ISA path this CPU can run (avx2 and scalar here)."""
    previous = _core.get_isa()
    _core.set_isa(request.param)
    try:
        yield request.param
    finally:
        _core.set_isa(previous)


@pytest.fixture
def rng(request):
    # A seed per test, stable across runs, so a failure reproduces. The seed is the test's id as
    # it read when every test file sat in tests/ ("tests/test_x.py::name"), so moving a file
    # between the folders that mirror the package leaves its random data as it was.
    path, _, name = request.node.nodeid.partition("::")
    return np.random.default_rng(zlib.crc32(f"tests/{path.rsplit('/', 1)[-1]}::{name}".encode()))
