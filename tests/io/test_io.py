"""The model file: save/load round trips, size, and files that are truncated, corrupted or hostile."""

from __future__ import annotations

import json
import os
import shlex
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pysparse as ps
from pysparse.io import ModelFileError, read_file, write_file
from pysparse.runtime import Model, csr_pack, csr_unpack

from _model_files import sparse_mlp, write
from pstest import F32_SUM_RTOL, random_sparse, relerr

ROUND_TRIP_RTOL = 1e-5


@pytest.fixture
def mlp_file(rng, tmp_path):
    graph, arrays, ref = sparse_mlp(rng)
    return write(tmp_path / "mlp.pspz", graph, arrays), graph, arrays, ref


# ---------------------------------------------------------------- torch-free


def test_hand_built_file_runs_every_format(mlp_file, rng):
    path, _, _, ref = mlp_file
    m = ps.load(path)
    for batch in (1, 5):
        x = rng.standard_normal((batch, 300)).astype(np.float32)
        assert relerr(m(x), ref(x)) <= F32_SUM_RTOL
    assert [li.format for li in m.layers] == ["csr", "bsr", "nm"]
    assert isinstance(m.matrix("fc1"), ps.CSRMatrix)


DATA = Path(__file__).parents[1] / "data"


@pytest.mark.parametrize("name, formats", [("v1_mlp", ["csr", "bsr", "nm"]), ("v1_cnn", ["bsr", "bsr", "dense", "bsr", "bsr"])])
def test_files_written_by_format_version_1_still_load(name, formats):
    """Files written before the runtime became a package (tests/data, format version 1) load and
    give the outputs recorded when they were written (runtime output for the MLP, torch for the CNN)."""
    m = ps.load(DATA / f"{name}.pspz")
    io = np.load(DATA / f"{name}_io.npz", allow_pickle=False)
    assert relerr(m(io["x"]), io["y"]) <= ROUND_TRIP_RTOL
    assert [li.format for li in m.layers if li.op in ("linear", "conv2d")] == formats


def test_csr_pack_round_trip_and_size(rng):
    a = random_sparse(rng, (37, 700), 0.1, empty_rows=3)
    c = ps.CSRMatrix.from_dense(a)
    p = csr_pack(c.indptr, c.indices, c.data, *c.shape)
    indptr, indices = csr_unpack(p["bucket_nnz"], p["col_lo"], len(p["data"]))
    assert np.array_equal(ps.CSRMatrix(indptr, indices, p["data"], c.shape).to_dense(), a)
    assert sum(v.nbytes for v in p.values()) == 5 * c.nnz + 2 * 37 * 3


def test_file_is_safetensors_without_masks(mlp_file):
    from safetensors.numpy import load_file

    path, _, arrays, _ = mlp_file
    loaded = load_file(str(path))
    assert sorted(loaded) == sorted(arrays)
    assert not any("mask" in k for k in loaded)
    graph, parsed = read_file(path)
    assert [n["op"] for n in graph["nodes"]][0] == "linear"
    assert all(np.array_equal(parsed[k], arrays[k]) for k in arrays)


def test_wrong_input_shape_or_count_is_a_clear_error(mlp_file):
    m = ps.load(mlp_file[0])
    with pytest.raises(ValueError, match="input 'x' must have shape"):
        m(np.zeros((2, 299), np.float32))
    with pytest.raises(TypeError, match="takes 1 input"):
        m(np.zeros((2, 300), np.float32), np.zeros(3, np.float32))
    with pytest.raises(TypeError, match="real numbers"):
        m(np.zeros((2, 300), np.complex64))


def _raw(path):
    buf = path.read_bytes()
    (n,) = struct.unpack("<Q", buf[:8])
    return buf, n, json.loads(buf[8 : 8 + n])


def _rewrite_header(path, header, data):
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + data)


def test_truncated_files_raise_model_file_error(mlp_file, tmp_path):
    buf = mlp_file[0].read_bytes()
    cuts = set(range(0, 80)) | set(np.linspace(80, len(buf) - 1, 60).astype(int))
    bad = tmp_path / "cut.pspz"
    for cut in sorted(cuts):
        bad.write_bytes(buf[:cut])
        with pytest.raises(ModelFileError):
            ps.load(bad)


def test_header_length_lies(mlp_file, tmp_path):
    buf, n, _ = _raw(mlp_file[0])
    bad = tmp_path / "lie.pspz"
    for lie in (0, 1, n - 1, n + 1, len(buf), 2**63, 2**64 - 1):
        bad.write_bytes(struct.pack("<Q", lie) + buf[8:])
        with pytest.raises(ModelFileError):
            ps.load(bad)


def test_random_byte_flips_never_crash(mlp_file, tmp_path, rng):
    """Flipped bytes either still load and run (a value changed, maybe to inf or nan, silently
    as in torch) or raise ModelFileError; nothing else."""
    buf = mlp_file[0].read_bytes()
    bad = tmp_path / "flip.pspz"
    errors = 0
    for pos in rng.choice(len(buf), size=400, replace=False):
        b = bytearray(buf)
        b[pos] ^= 1 << int(rng.integers(8))
        bad.write_bytes(bytes(b))
        try:
            ps.load(bad)(np.ones((1, 300), np.float32))
        except ModelFileError:
            errors += 1
    assert errors > 0


@pytest.mark.parametrize(
    "header_bytes",
    [b"{not json", b"[1, 2, 3]", b'"text"', b"\xff\xfe\x00garbage", b"[" * 50000 + b"]" * 50000,
     b'{"a": 1, "a": 2}', b'{"__metadata__": {"pysparse.format": NaN}}'],
    ids=["bad-json", "list", "string", "not-utf8", "deep", "duplicate-keys", "nan"],
)
def test_bad_header_json(tmp_path, header_bytes):
    bad = tmp_path / "bad.pspz"
    bad.write_bytes(struct.pack("<Q", len(header_bytes)) + header_bytes)
    with pytest.raises(ModelFileError):
        ps.load(bad)


def _mutate_graph(mlp_file, tmp_path, fn):
    _, graph, arrays, _ = mlp_file
    g = json.loads(json.dumps(graph))
    arrays = dict(arrays)
    fn(g, arrays)
    return write(tmp_path / "mut.pspz", g, arrays)


def _set(path_keys, value):
    def fn(g, arrays):
        d = g
        for k in path_keys[:-1]:
            d = d[k]
        d[path_keys[-1]] = value

    return fn


def _bomb(g, op):
    """Nodes after fc1 (24 values at batch 1) that grow a tensor 512x (cat) or square it (mul) per step."""
    nodes, prev = [], "fc1"
    for i in range(3):
        if op == "cat":
            nodes.append({"name": f"g{i}", "op": "cat", "inputs": [prev] * 512, "attrs": {"dim": 1}})
        else:
            nodes += [{"name": f"c{i}", "op": "reshape", "inputs": [prev, -1, 1]},
                      {"name": f"r{i}", "op": "reshape", "inputs": [prev, 1, -1]},
                      {"name": f"g{i}", "op": "mul", "inputs": [f"c{i}", f"r{i}"]}]
        prev = f"g{i}"
    g["nodes"][1:1] = nodes


GRAPH_ATTACKS = {
    "unknown-op": (_set(["nodes", 1, "op"], "os.system"), "unknown op"),
    "undefined-input": (_set(["nodes", 1, "inputs"], ["nowhere"]), "not defined before"),
    "forward-reference": (_set(["nodes", 1, "inputs"], ["fc2"]), "not defined before"),
    "self-reference": (_set(["nodes", 1, "inputs"], ["act1"]), "not defined before"),
    "missing-output": (_set(["outputs"], ["ghost"]), "not a node"),
    "duplicate-name": (_set(["nodes", 1, "name"], "fc1"), "defined twice"),
    "path-name": (_set(["nodes", 1, "name"], "../../etc/passwd"), "must be a name"),
    "string-attr": (_set(["nodes", 5, "attrs", "dim"], "1"), "must be an int"),
    "bool-attr": (_set(["nodes", 0, "attrs", "in_features"], True), "must be an int"),
    "huge-features": (_set(["nodes", 0, "attrs", "out_features"], 2**31 - 1), "must have shape"),
    "over-range": (_set(["nodes", 0, "attrs", "out_features"], 2**40), "must be an int"),
    "bad-format": (_set(["nodes", 0, "attrs", "format"], "coo"), "must be one of"),
    "bad-block": (_set(["nodes", 2, "attrs", "block"], [3, 1]), "block rows"),
    "unknown-attr": (_set(["nodes", 1, "attrs"], {"evil": 1}), "unknown keys"),
    "missing-array": (_set(["nodes", 0, "params", "data"], "nope"), "not in the file"),
    "array-twice": (_set(["nodes", 2, "params", "data"], "fc1.data"), "used twice|must have shape"),
    "number-as-tensor": (_set(["nodes", 1, "inputs"], [3.0]), "node names"),
    "version": (None, "format version"),
    "unreferenced-array": (lambda g, a: a.update(extra=np.zeros(3, np.float32)), "no node uses"),
    "wrong-dtype": (lambda g, a: a.update({"fc1.data": a["fc1.data"].view(np.int32)}), "must be float32"),
    "wrong-shape": (lambda g, a: a.update({"fc1.bias": np.zeros(25, np.float32)}), "must have shape"),
    "index-out-of-range": (lambda g, a: a.update({"fc2.indices": a["fc2.indices"] + 100}), "out of range"),
    "bucket-overflow": (lambda g, a: a.update({"fc1.col_lo": np.full_like(a["fc1.col_lo"], 255)}), "fc1"),
    "huge-input": (_set(["inputs", 0, "shape"], [None, 2**31 - 1, 2**31 - 1]), "too large"),
    "inconsistent-shapes": (_set(["nodes", 2, "attrs", "in_features"], 25), "does not run"),
    "reshape-huge": (lambda g, a: g["nodes"].insert(2, {"name": "r", "op": "reshape", "inputs": ["act1", 2**30, 2**30]}),
                     "does not run"),
    "cat-bomb": (lambda g, a: _bomb(g, "cat"), "would make a tensor"),
    "broadcast-bomb": (lambda g, a: _bomb(g, "mul"), "would make a tensor"),
    "counts-lie": (lambda g, a: a["fc1.bucket_nnz"].__setitem__((0, 0), a["fc1.bucket_nnz"][0, 0] + 1), "sum to"),
}


@pytest.mark.parametrize("attack", sorted(GRAPH_ATTACKS))
def test_hostile_graph_or_arrays(mlp_file, tmp_path, attack):
    fn, message = GRAPH_ATTACKS[attack]
    if attack == "version":
        path = mlp_file[0]
        buf, n, header = _raw(path)
        header["__metadata__"]["pysparse.version"] = "999"
        _rewrite_header(path, header, buf[8 + n :])
    else:
        path = _mutate_graph(mlp_file, tmp_path, fn)
    with pytest.raises(ModelFileError, match=message):
        ps.load(path)


@pytest.mark.parametrize(
    "mutation",
    ["huge-shape", "offsets-outside", "overlap", "bad-dtype", "extra-bytes", "no-metadata", "negative-shape"],
)
def test_hostile_container(mlp_file, tmp_path, mutation):
    path = mlp_file[0]
    buf, n, header = _raw(path)
    data = buf[8 + n :]
    name = "fc1.data"
    if mutation == "huge-shape":
        header[name]["shape"] = [2**39, 2**39]
    elif mutation == "offsets-outside":
        header[name]["data_offsets"] = [0, 2**62]
    elif mutation == "overlap":
        other = next(k for k in header if k not in ("__metadata__", name) and header[k]["dtype"] == "F32")
        header[name]["data_offsets"] = header[other]["data_offsets"]
        header[name]["shape"] = header[other]["shape"]
    elif mutation == "bad-dtype":
        header[name]["dtype"] = "O"
    elif mutation == "extra-bytes":
        data += b"\x00" * 16
    elif mutation == "no-metadata":
        del header["__metadata__"]
    else:
        header[name]["shape"] = [-1]
    _rewrite_header(path, header, data)
    with pytest.raises(ModelFileError):
        ps.load(path)


def _header_with(mlp_file, fn):
    """The MLP file with its safetensors header JSON (text) edited by fn."""
    path = mlp_file[0]
    buf, n, _ = _raw(path)
    h = fn(buf[8 : 8 + n].decode()).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + buf[8 + n :])
    return path


@pytest.mark.parametrize("where", ["graph-attr", "graph-literal", "array-shape", "array-offset"])
def test_integer_of_5000_digits_is_a_model_file_error(mlp_file, where):
    """Python refuses to parse integers over 4,300 digits with a plain ValueError; the loader says ModelFileError."""
    big = "9" * 5000
    if where == "graph-attr":
        edit = lambda h: h.replace('\\"out_features\\":24', f'\\"out_features\\":{big}', 1)
    elif where == "graph-literal":
        edit = lambda h: h.replace('\\"inputs\\":[\\"fc1\\"]', f'\\"inputs\\":[\\"fc1\\",{big}]', 1)
    elif where == "array-shape":
        edit = lambda h: h.replace('"shape":[24]', f'"shape":[{big}]', 1)
    else:
        edit = lambda h: h.replace('"data_offsets":[0,', f'"data_offsets":[{big},', 1)
    path = _header_with(mlp_file, lambda h: edit(h) if edit(h) != h else pytest.fail(f"no {where} in {h[:300]}"))
    with pytest.raises(ModelFileError):
        ps.load(path)


@pytest.mark.parametrize("value", [2**63, 2**64, -(2**63), 10**400])
@pytest.mark.parametrize("where", [("nodes", 0, "attrs", "out_features"), ("nodes", 5, "attrs", "dim"),
                                   ("inputs", 0, "shape", 1), ("nodes", 1, "inputs", 0)])
def test_numbers_beyond_int64_are_model_file_errors(mlp_file, tmp_path, where, value):
    """Ints >= 2**63 anywhere in the graph (attributes, input shapes, literals, reshape sizes)."""
    path = _mutate_graph(mlp_file, tmp_path, _set(list(where), value))
    with pytest.raises(ModelFileError):
        ps.load(path)


def test_reshape_to_sizes_beyond_int64(mlp_file, tmp_path):
    for size in (2**63, 2**64 + 5, 10**400):
        node = {"name": "r", "op": "reshape", "inputs": ["act1", size, -1]}
        path = _mutate_graph(mlp_file, tmp_path, lambda g, a: g["nodes"].insert(2, node))
        with pytest.raises(ModelFileError):
            ps.load(path)


def test_fifo_is_refused_not_waited_on(tmp_path):
    """Opening a FIFO for reading blocks until a writer comes; the loader refuses it at once."""
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this OS")
    fifo = tmp_path / "model.pspz"
    os.mkfifo(fifo)
    code = f"import pysparse as ps\ntry:\n    ps.load({str(fifo)!r})\nexcept ps.io.ModelFileError as e:\n    print(e)"
    python = shlex.split(os.environ.get("PYSPARSE_TEST_PYTHON", "")) or [sys.executable]  # qemu in the aarch64 job
    r = subprocess.run([*python, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "not a regular file" in r.stdout


def test_not_a_model_file(tmp_path):
    other = tmp_path / "other.safetensors"
    from safetensors.numpy import save_file

    save_file({"w": np.zeros(3, np.float32)}, str(other))
    with pytest.raises(ModelFileError, match="not a pysparse model"):
        ps.load(other)
    with pytest.raises(ModelFileError, match="directory"):
        ps.load(tmp_path)
    with pytest.raises(FileNotFoundError):
        ps.load(tmp_path / "missing.pspz")


def test_model_from_parts_rejects_non_dict_graph():
    with pytest.raises(ModelFileError, match="JSON object"):
        Model([], {})


_BLOCK_TORCH = """
import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
        return None
sys.meta_path.insert(0, _NoTorch())
import numpy as np
import pysparse as ps
from pysparse.cli import main
m = ps.load(sys.argv[1])
np.save(sys.argv[3], m(np.load(sys.argv[2])))
assert main(["inspect", sys.argv[1]]) == 0
assert not [k for k in sys.modules if k == "torch" or k.startswith("torch.")], "torch was imported"
print("torch-free ok")
"""


def test_load_and_run_with_torch_unimportable(mlp_file, tmp_path, rng):
    path, _, _, ref = mlp_file
    x = rng.standard_normal((3, 300)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    python = shlex.split(os.environ.get("PYSPARSE_TEST_PYTHON", "")) or [sys.executable]
    r = subprocess.run(
        python + ["-c", _BLOCK_TORCH, str(path), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert "torch-free ok" in r.stdout
    assert relerr(np.load(tmp_path / "y.npy"), ref(x)) <= F32_SUM_RTOL


_LOAD_UNDER_LIMIT = r"""
import resource, sys
import numpy as np, pysparse as ps
limit = 2 << 30  # 2 GiB of address space: far above what this model needs
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
m = ps.load(sys.argv[1])
print("loaded", m(np.zeros((1, 300), np.float32)).shape)
"""


@pytest.mark.skipif(bool(os.environ.get("PYSPARSE_TEST_PYTHON")), reason="an emulator reserves its own address space")
def test_load_allocates_what_the_file_needs(mlp_file, tmp_path):
    """Reading a file must not allocate the 16 GiB size bound up front (it did: f.read(bound)),
    which an address-space limit, or qemu-user committing the pages, turns into a failure."""
    path = mlp_file[0]
    r = subprocess.run(
        [sys.executable, "-c", _LOAD_UNDER_LIMIT, str(path)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    assert "loaded (1, " in r.stdout


# ---------------------------------------------------------------- save (torch)


@pytest.fixture
def torch():
    t = pytest.importorskip("torch")
    t.manual_seed(0)
    return t


def _mlp(torch):
    nn = torch.nn
    return nn.Sequential(nn.Linear(64, 96), nn.ReLU(), nn.Linear(96, 96), nn.GELU(), nn.Dropout(0.3),
                         nn.Linear(96, 10))


def _cnn(torch):
    nn = torch.nn

    class CNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 16, 3, padding=1)
            self.bn = nn.BatchNorm2d(16)
            self.expand = nn.Conv2d(16, 32, 1)
            self.dw = nn.Conv2d(32, 32, 3, padding=1, stride=2, groups=32)
            self.project = nn.Conv2d(32, 24, 1, bias=False)
            self.head = nn.Linear(24, 10)

        def forward(self, x):
            x = torch.nn.functional.max_pool2d(torch.relu(self.bn(self.stem(x))), 2)
            x = torch.nn.functional.relu6(self.dw(torch.relu(self.expand(x))))
            x = self.project(x).mean((2, 3))
            return self.head(x.view(x.size(0), -1))

    m = CNN()
    m.bn.running_mean.uniform_(-0.5, 0.5)
    m.bn.running_var.uniform_(0.5, 2.0)
    return m


def _check_round_trip(torch, model, path, shape, batches=(1, 7)):
    ps.save(model, path, torch.randn(4, *shape))
    m = ps.load(path)
    for b in batches:
        x = torch.randn(b, *shape)
        with torch.no_grad():
            ref = model(x).numpy()
        assert relerr(m(x.numpy()), ref) <= ROUND_TRIP_RTOL
    return m


@pytest.mark.parametrize("fmt", ["plain", "dense", "csr", "sell", "bsr", "nm"])
def test_round_trip_mlp(torch, tmp_path, fmt):
    from _fake_nn import sparsify

    model = _mlp(torch).eval()
    if fmt != "plain":
        sparsify(model, fmt)
    m = _check_round_trip(torch, model, tmp_path / "mlp.pspz", (64,))
    want = "dense" if fmt == "plain" else fmt
    assert [li.format for li in m.layers] == [want] * 3
    if fmt in ("csr", "sell", "bsr"):
        assert all(0.8 <= li.sparsity <= 0.95 for li in m.layers)


@pytest.mark.parametrize("fmt", ["plain", "csr", "sell", "bsr"])
def test_round_trip_cnn(torch, tmp_path, fmt):
    from _fake_nn import sparsify

    model = _cnn(torch).eval()
    if fmt != "plain":
        sparsify(model, fmt, 0.8)
    m = _check_round_trip(torch, model, tmp_path / "cnn.pspz", (3, 16, 16))
    formats = {li.name: li.format for li in m.layers}
    want = "dense" if fmt == "plain" else fmt
    assert formats["stem"] == formats["expand"] == formats["project"] == formats["head"] == want
    assert formats["dw"] == "dense"


@pytest.mark.parametrize("fmt", ["csr", "sell", "bsr"])
def test_file_size_at_90_percent(torch, tmp_path, fmt):
    from _fake_nn import sparsify

    nn = torch.nn
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)).eval()
    x = torch.randn(2, 784)
    ps.save(model, tmp_path / "dense.pspz", x)
    sparsify(model, fmt, 0.9)
    ps.save(model, tmp_path / "sparse.pspz", x)
    ratio = os.path.getsize(tmp_path / "sparse.pspz") / os.path.getsize(tmp_path / "dense.pspz")
    assert ratio <= 0.15, ratio


def test_save_refuses_unsupported_ops_by_name(torch, tmp_path):
    nn = torch.nn

    class Sorts(nn.Module):
        def forward(self, x):
            return torch.sort(x, dim=1).values

    with pytest.raises(ValueError, match="torch.sort|sort"):
        ps.save(Sorts(), tmp_path / "s.pspz", torch.randn(2, 3))
    with pytest.raises(ValueError, match="LSTM"):
        ps.save(nn.Sequential(nn.LSTM(4, 4)), tmp_path / "l.pspz", torch.randn(2, 3, 4))

    class Slices(nn.Module):
        def forward(self, x):
            return x[:, :2]

    with pytest.raises(ValueError, match="indexing"):
        ps.save(Slices(), tmp_path / "x.pspz", torch.randn(2, 3))
    assert not list(tmp_path.iterdir())


def test_save_refuses_when_runtime_disagrees(torch, tmp_path):
    from _fake_nn import SparseLinear

    lin = torch.nn.Linear(8, 4)
    bad = SparseLinear(lin, "csr", 0.5)
    bad.forward = lambda x: torch.nn.functional.linear(x, 2 * lin.weight, lin.bias)  # not what it stores
    with pytest.raises(ValueError, match="differs from the torch model"):
        ps.save(torch.nn.Sequential(bad), tmp_path / "bad.pspz", torch.randn(3, 8))
    assert not (tmp_path / "bad.pspz").exists()


def test_save_multiple_inputs_outputs_and_restores_mode(torch, tmp_path):
    nn = torch.nn

    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(5, 6)
            self.b = nn.Linear(3, 6)
            self.drop = nn.Dropout(0.5)
            self.register_buffer("offset", torch.randn(6))

        def forward(self, x, y):
            h = self.drop(self.a(x)) + self.b(y) * 0.5 - self.offset
            return torch.cat([h, 1 - h], dim=1), torch.sigmoid(h)

    model = Two().train()
    x, y = torch.randn(4, 5), torch.randn(4, 3)
    ps.save(model, tmp_path / "two.pspz", (x, y))
    assert model.training
    m = ps.load(tmp_path / "two.pspz")
    model.eval()
    with torch.no_grad():
        r1, r2 = model(x, y)
    o1, o2 = m(x.numpy(), y.numpy())
    assert relerr(o1, r1.numpy()) <= ROUND_TRIP_RTOL and relerr(o2, r2.numpy()) <= ROUND_TRIP_RTOL
    assert m.input_names == ["x", "y"] and len(m.output_names) == 2


def test_save_then_cli_loads_same_result(torch, tmp_path):
    from pysparse.cli import main

    model = _mlp(torch).eval()
    ps.save(model, tmp_path / "m.pspz", torch.randn(2, 64))
    x = np.random.default_rng(1).standard_normal((3, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(tmp_path / "m.pspz"), "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")]) == 0
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert relerr(np.load(tmp_path / "y.npy"), ref) <= ROUND_TRIP_RTOL


def test_write_file_leaves_no_partial_file(tmp_path):
    with pytest.raises(Exception):
        write_file(tmp_path / "x.pspz", {"inputs": []}, {"a": np.zeros(2, dtype=object)})
    assert not list(tmp_path.iterdir())


def test_round_trip_of_a_converted_model(torch, tmp_path):
    """With the real pysparse.convert: formats survive the file."""
    from _fake_nn import magnitude_prune

    model = _cnn(torch).eval()
    for mod in model.modules():
        if isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d)) and getattr(mod, "groups", 1) == 1:
            w = mod.weight.detach().numpy().reshape(mod.weight.shape[0], -1)
            mod.weight.data = torch.from_numpy(magnitude_prune(w, 0.9).reshape(mod.weight.shape))
    x = torch.randn(2, 3, 16, 16)
    sm = ps.convert(model, example_inputs=x, progress=False)
    m = _check_round_trip(torch, sm, tmp_path / "conv.pspz", (3, 16, 16))
    modules = dict(sm.named_modules())
    assert {li.name: li.format for li in m.layers if li.op in ("linear", "conv2d")} == {
        name: modules[name].format for name in ("stem", "expand", "dw", "project", "head")
    }
