"""Memory and time bounds of loading: a model file may cost a small multiple of its own size
plus a fixed allowance for the dry run, never gigabytes because a few hundred bytes say so.

Each file is loaded in a child process under RLIMIT_AS = (the child's address space
after ``import pysparse``) + ``SLACK`` + ``FACTOR`` x (file size). Within that the load
must either succeed (and the model then run on its declared input) or raise
ModelFileError that was *not* caused by running into the limit (a MemoryError in its
context means the loader tried to allocate what the file made it ask for: a finding).
The load must also take at most LOAD_SECONDS of CPU (RLIMIT_CPU kills it past
CPU_LIMIT). The same idea as test_io.test_load_allocates_what_the_file_needs, for
every file of the fuzz seed corpus and for tiny hostile files.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import pytest

from pysparse import io as psio

from limits import run_limited

CORPUS = sorted((Path(__file__).parents[1] / "fuzz" / "corpus").glob("*.pspz"))
SLACK = 1 << 30  # the dry run's working set: one tensor of MAX_DRY_RUN_ELEMENTS (2**27) floats is 512 MiB
FACTOR = 8
LOAD_SECONDS = 5.0  # CPU seconds ps.load may take (the dry run is bounded in work too)
CPU_LIMIT = 7  # RLIMIT_CPU of the child after its imports: past it the kernel kills it (SIGXCPU)
SECONDS = 300  # the child's whole life, wall clock (a loaded machine included)

pytestmark = [
    pytest.mark.skipif(bool(os.environ.get("PYSPARSE_TEST_PYTHON")), reason="an emulator reserves its own address space"),
    pytest.mark.skipif(bool(os.environ.get("PYSPARSE_SANITIZE")), reason="ASan reserves terabytes of shadow memory"),
]

_LOAD = r"""
from pysparse.io import ModelFileError
path = ARGS[0]
t0 = time.process_time()
try:
    m = ps.load(path)
except ModelFileError as e:
    c, hit = e, False
    while c is not None:  # raised `from None`, the MemoryError is still its __context__
        hit = hit or isinstance(c, MemoryError)
        c = c.__context__
    report(outcome="hit the limit" if hit else "rejected", message=str(e)[:300])
    sys.exit(0)
except MemoryError as e:
    report(outcome="hit the limit", message=repr(e)[:300])
    sys.exit(0)
seconds = time.process_time() - t0
try:
    m(*[np.zeros(tuple(1 if d is None else d for d in s), dt) for s, dt in zip(m.input_shapes, m.input_dtypes)])
except MemoryError as e:
    report(outcome="hit the limit (run)", message=repr(e)[:300])
    sys.exit(0)
report(outcome="loaded", seconds=seconds)
"""


def _load_bounded(path):
    got = run_limited(_LOAD, str(path), address_space=SLACK + FACTOR * path.stat().st_size, cpu_seconds=CPU_LIMIT,
                      timeout=SECONDS)
    got.pop("type", None), got.pop("stderr", None)
    if got.pop("seconds", 0.0) > LOAD_SECONDS:
        got["outcome"] = f"loaded, but ps.load took more than {LOAD_SECONDS} CPU seconds"
    return got


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_corpus_files_load_within_bounds(path):
    assert _load_bounded(path) == {"outcome": "loaded"}


def test_corpus_is_there():
    assert len(CORPUS) >= 6 and sum(p.stat().st_size for p in CORPUS) < 1 << 20


# ---------------------------------------------------------------- tiny hostile files


def _graph(inputs, nodes, outputs):
    return {"inputs": inputs, "outputs": outputs, "nodes": nodes}


def _many_relu_outputs():
    """8 relu outputs of 2**27 floats each from a declared (1, 2**27) input: 4 GiB held at once."""
    nodes = [{"name": f"r{i}", "op": "relu", "inputs": ["x"]} for i in range(8)]
    return _graph([{"name": "x", "shape": [1, 1 << 27]}], nodes, [f"r{i}" for i in range(8)]), {}


def _relu_chain():
    """A chain of relus over one large declared input: intermediates are freed as it goes."""
    nodes = [{"name": "r0", "op": "relu", "inputs": ["x"]}]
    nodes += [{"name": f"r{i}", "op": "relu", "inputs": [f"r{i - 1}"]} for i in range(1, 16)]
    return _graph([{"name": "x", "shape": [1, 1 << 22]}], nodes, ["r15"]), {}


def _wide_pool():
    """max_pool2d, kernel 256x256 at stride 1 over a declared 1x1x1024x1024 input (~10 s of work)."""
    node = {"name": "p", "op": "max_pool2d", "inputs": ["x"],
            "attrs": {"kernel_size": [256, 256], "stride": [1, 1], "padding": [0, 0]}}
    return _graph([{"name": "x", "shape": [1, 1, 1024, 1024]}], [node], ["p"]), {}


def _strided_conv_empty_weight():
    """A strided conv over a large declared image whose CSR weight holds no nonzeros (im2col of GBs)."""
    cin, kh, kw, cout = 64, 7, 7, 8
    k = cin * kh * kw
    import pysparse as ps
    from pysparse.runtime import csr_pack

    c = ps.CSRMatrix.from_dense(np.zeros((cout, k), np.float32))
    arrays = {f"c.{n}": v for n, v in csr_pack(c.indptr, c.indices, c.data, cout, k).items()}
    node = {"name": "c", "op": "conv2d", "inputs": ["x"],
            "attrs": {"in_channels": cin, "out_channels": cout, "kernel_size": [kh, kw], "stride": [2, 2],
                      "padding": [3, 3], "dilation": [1, 1], "groups": 1, "format": "csr"},
            "params": {f: f"c.{f}" for f in ("bucket_nnz", "col_lo", "data")}}
    return _graph([{"name": "x", "shape": [1, cin, 1400, 1400]}], [node], ["c"]), arrays


HOSTILE = {
    "many_relu_outputs": _many_relu_outputs,
    "relu_chain": _relu_chain,
    "wide_pool": _wide_pool,
    "strided_conv_empty_weight": _strided_conv_empty_weight,
}
# many_relu_outputs, wide_pool and strided_conv_empty_weight are issue 16's finding 5: the
# dry run once bounded each tensor but not the total live memory or the work.
@pytest.mark.parametrize("name", list(HOSTILE))
def test_tiny_hostile_file_is_cheap(name, tmp_path):
    graph, arrays = HOSTILE[name]()
    path = tmp_path / f"{name}.pspz"
    psio.write_file(path, copy.deepcopy(graph), arrays)
    assert path.stat().st_size < 4096
    got = _load_bounded(path)
    assert got["outcome"] in ("loaded", "rejected"), got
