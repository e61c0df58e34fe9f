"""int8 weights in the model file: save stores int8 values + scales, the torch-free runtime
runs them bit for bit like the converted torch model, and hostile int8 arrays fail at load."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import pysparse as ps  # noqa: E402
from pysparse.runtime import container  # noqa: E402
from pysparse.runtime.schema import ModelFileError  # noqa: E402
from _int8_models import pruned_mlp  # noqa: E402


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from pysparse.nn import SparseLinear

    model = pruned_mlp(3)
    x = torch.randn(4, 64)
    # both int8 formats, chosen by hand (convert would choose by timing)
    sm = torch.nn.Sequential(
        SparseLinear.from_module(model[0], "bsr_int8", block=(8, 4)), torch.nn.ReLU(),
        SparseLinear.from_module(model[2], "bsr_int8", block=(4, 4)), torch.nn.ReLU(),
        SparseLinear.from_module(model[4], "dense_int8"),
    ).eval()
    path = tmp_path_factory.mktemp("int8") / "mlp.pspz"
    ps.save(sm, path, example_inputs=(x,))
    return sm, x, path


def test_int8_file_round_trips_and_runs_like_torch(saved):
    sm, x, path = saved
    m = ps.load(path)
    assert {li.format for li in m.layers if li.op == "linear"} <= {"bsr_int8", "dense_int8"}
    with torch.no_grad():
        want = sm(x).numpy()
    np.testing.assert_array_equal(m(x.numpy()), want)  # the same kernels: the same bits
    graph, arrays = container.read_file(path)
    int8 = [a for a in arrays.values() if a.dtype == np.int8]
    assert int8 and all(a.dtype in (np.int8, np.float32, np.int64, np.int32, np.uint16) for a in arrays.values())
    # int8 values + float32 scales: well under a third of the dense float32 weights
    dense = sum(4 * mod.weight.shape[0] * mod.weight.shape[1] for mod in sm if hasattr(mod, "weight"))
    assert sum(a.nbytes for a in arrays.values()) < dense / 3


def _mutated(saved, tmp_path, change):
    _, _, path = saved
    graph, arrays = container.read_file(path)
    arrays = {k: np.array(v) for k, v in arrays.items()}
    change(graph, arrays)
    out = tmp_path / "bad.pspz"
    container.write_file(out, graph, arrays)
    return out


def _first(graph, fmt):
    return next(n for n in graph["nodes"] if n.get("attrs", {}).get("format") == fmt)


@pytest.mark.parametrize(
    "what, change",
    [
        ("index out of range", lambda g, a: a[_first(g, "bsr_int8")["params"]["indices"]].__setitem__(0, 4096)),
        ("index not a multiple of 4", lambda g, a: a[_first(g, "bsr_int8")["params"]["indices"]].__setitem__(0, 1)),
        ("negative scale", lambda g, a: a[_first(g, "bsr_int8")["params"]["scales"]].__setitem__(0, -1.0)),
        ("NaN scale", lambda g, a: a[_first(g, "dense_int8")["params"]["scales"]].__setitem__(0, np.nan)),
    ],
)
def test_hostile_int8_arrays_fail_at_load(saved, tmp_path, what, change):
    bad = _mutated(saved, tmp_path, change)
    with pytest.raises(ModelFileError):
        ps.load(bad)


def test_wrong_int8_dtypes_and_shapes_fail_at_load(saved, tmp_path):
    def float_data(g, a):
        p = _first(g, "bsr_int8")["params"]["data"]
        a[p] = a[p].astype(np.float32)

    def short_scales(g, a):
        p = _first(g, "dense_int8")["params"]["scales"]
        a[p] = a[p][:-1].copy()

    def bad_block(g, a):
        _first(g, "bsr_int8")["attrs"]["block"] = [8, 1]

    for change in (float_data, short_scales, bad_block):
        with pytest.raises(ModelFileError):
            ps.load(_mutated(saved, tmp_path, change))
