"""Model files built by hand, without torch: a small sparse MLP in every format and its numpy reference."""

from __future__ import annotations

import copy

import numpy as np

import pysparse as ps
from pysparse import io as psio
from pysparse.runtime import csr_pack

from pstest import random_nm, random_sparse


def sparse_mlp(rng):
    """(graph, arrays, reference) of x(20) -> csr 24 -> relu -> bsr(8,1) 16 -> tanh -> 2:4 8 -> softmax."""
    w1 = random_sparse(rng, (24, 300), 0.1)  # 300 > 256: two CSR buckets
    w2 = random_sparse(rng, (16, 24), 0.4, block=(8, 1))
    w3 = random_nm(rng, (8, 16), 2, 4)
    b1 = rng.standard_normal(24).astype(np.float32)
    c = ps.CSRMatrix.from_dense(w1)
    b = ps.BSRMatrix.from_dense(w2, block=(8, 1))
    n = ps.NMMatrix.from_dense(w3, "2:4")
    arrays = {f"fc1.{k}": v for k, v in csr_pack(c.indptr, c.indices, c.data, *c.shape).items()}
    arrays.update({"fc1.bias": b1, "fc2.indptr": b.indptr, "fc2.indices": b.indices,
                   "fc2.data": np.ascontiguousarray(b.data), "fc3.data": n.data, "fc3.offsets": n.offsets})
    graph = {
        "inputs": [{"name": "x", "shape": [None, 300]}],
        "outputs": ["prob"],
        "nodes": [
            {"name": "fc1", "op": "linear", "inputs": ["x"],
             "attrs": {"in_features": 300, "out_features": 24, "format": "csr"},
             "params": {"bucket_nnz": "fc1.bucket_nnz", "col_lo": "fc1.col_lo", "data": "fc1.data", "bias": "fc1.bias"}},
            {"name": "act1", "op": "relu", "inputs": ["fc1"]},
            {"name": "fc2", "op": "linear", "inputs": ["act1"],
             "attrs": {"in_features": 24, "out_features": 16, "format": "bsr", "block": [8, 1]},
             "params": {"indptr": "fc2.indptr", "indices": "fc2.indices", "data": "fc2.data"}},
            {"name": "act2", "op": "tanh", "inputs": ["fc2"]},
            {"name": "fc3", "op": "linear", "inputs": ["act2"],
             "attrs": {"in_features": 16, "out_features": 8, "format": "nm", "nm": [2, 4]},
             "params": {"data": "fc3.data", "offsets": "fc3.offsets"}},
            {"name": "prob", "op": "softmax", "inputs": ["fc3"], "attrs": {"dim": -1}},
        ],
    }

    def reference(x):
        h = np.maximum(x.astype(np.float64) @ w1.T + b1, 0.0)
        h = np.tanh(h @ w2.T) @ w3.T
        e = np.exp(h - h.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    return graph, arrays, reference


def write(path, graph, arrays):
    psio.write_file(path, copy.deepcopy(graph), dict(arrays))
    return path


# ---------------------------------------------------------------- graphs by hand, torch-free


def node(name, op, inputs, attrs=None, params=None):
    d = {"name": name, "op": op, "inputs": list(inputs)}
    if attrs:
        d["attrs"] = attrs
    if params:
        d["params"] = params
    return d


def _empty_bsr(rows):
    """The arrays of a BSR (8, 1) weight without a single block: a few bytes for any shape."""
    return {"indptr": np.zeros(-(-rows // 8) + 1, np.int32), "indices": np.zeros(0, np.int32),
            "data": np.zeros((0, 8, 1), np.float32)}


def hostile(case):
    """(graph, arrays) of a tiny file that asks the loader for hours of work or gigabytes (issue 16,
    finding 5), or of a graph whose arithmetic leaves the numbers a model needs (finding 6)."""
    arrays = {}
    if case == "max-pool-256":  # 312 bytes: 256x256 taps over a 1024x1024 image, ~4e10 operations
        shape, nodes = [1, 1, 1024, 1024], [node("p", "max_pool2d", ["x"], {"kernel_size": [256, 256], "stride": [1, 1]})]
    elif case == "max-pool-dilated":  # hours: dilation 16 over an 8192x8192 image
        shape = [1, 1, 8192, 8192]
        nodes = [node("p", "max_pool2d", ["x"], {"kernel_size": [256, 256], "stride": [1, 1], "dilation": [16, 16]})]
    elif case == "relu-fanout":  # 8 relus of 2**27 floats each: 4 GiB live
        shape, nodes = [1, 2**27], [node(f"r{i}", "relu", ["x"]) for i in range(8)]
    elif case == "strided-conv-im2col":  # an empty block weight, but a 16 GiB im2col copy
        shape = [1, 1, 8192, 8192]
        nodes = [node("c", "conv2d", ["x"], {"in_channels": 1, "out_channels": 8, "kernel_size": [16, 16],
                                              "stride": [2, 2], "format": "bsr", "block": [8, 1]},
                       {k: f"c.{k}" for k in ("indptr", "indices", "data")})]
        arrays = {f"c.{k}": v for k, v in _empty_bsr(8).items()}
    elif case == "huge-empty-linear":  # loads at once; densified it is 16 GiB
        n = 2**16
        shape = [None, n]
        nodes = [node("fc", "linear", ["x"], {"in_features": n, "out_features": n, "format": "bsr", "block": [8, 1]},
                       {k: f"fc.{k}" for k in ("indptr", "indices", "data")})]
        arrays = {f"fc.{k}": v for k, v in _empty_bsr(n).items()}
    elif case == "div-by-zero":  # x.size(0) / 0
        shape, nodes = [None, 4], [node("s", "size", ["x"], {"dim": 0}), node("d", "div", ["s", 0])]
    elif case == "size-squaring":  # (x.size(1) + 1) squared 40 times: a number of 2**40 digits
        shape = [None, 4]
        nodes = [node("s", "size", ["x"], {"dim": 1}), node("t0", "add", ["s", 1])]
        nodes += [node(f"t{i}", "mul", [f"t{i - 1}", f"t{i - 1}"]) for i in range(1, 40)]
        nodes.append(node("r", "reshape", ["x", "t39"]))
    elif case == "size-output":  # a valid model whose output is an int, x.size(0)
        shape, nodes = [None, 4], [node("s", "size", ["x"], {"dim": 0})]
    else:
        raise KeyError(case)
    outputs = [n["name"] for n in nodes] if case == "relu-fanout" else [nodes[-1]["name"]]
    return {"inputs": [{"name": "x", "shape": shape}], "outputs": outputs, "nodes": nodes}, arrays


def _dense(rng, rows, cols):
    return (rng.standard_normal((rows, cols)) * np.sqrt(2.0 / cols)).astype(np.float32)


def mobilenet_v2(rng, size=224):
    """(graph, arrays) of MobileNetV2 (width 1, batch norms folded into the convs, dense weights) at size x size."""
    nodes, arrays = [], {}

    def conv(src, name, cin, cout, k=1, stride=1, groups=1, act=True):
        arrays[f"{name}.weight"] = _dense(rng, cout, cin // groups * k * k)
        arrays[f"{name}.bias"] = np.zeros(cout, np.float32)
        nodes.append(node(name, "conv2d", [src],
                           {"in_channels": cin, "out_channels": cout, "kernel_size": [k, k], "stride": [stride, stride],
                            "padding": [k // 2, k // 2], "groups": groups, "format": "dense"},
                           {"weight": f"{name}.weight", "bias": f"{name}.bias"}))
        if not act:
            return name
        nodes.append(node(f"{name}.act", "relu6", [name]))
        return f"{name}.act"

    h = conv("x", "stem", 3, 32, 3, 2)
    cin = 32
    for bi, (t, c, n, s) in enumerate([(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                                       (6, 160, 3, 2), (6, 320, 1, 1)]):
        for i in range(n):
            stride, name, hidden = (s if i == 0 else 1), f"b{bi}.{i}", cin * t
            y = conv(h, f"{name}.expand", cin, hidden) if t != 1 else h
            y = conv(y, f"{name}.dw", hidden, hidden, 3, stride, groups=hidden)
            y = conv(y, f"{name}.project", hidden, c, act=False)
            if stride == 1 and cin == c:
                nodes.append(node(f"{name}.add", "add", [h, y]))
                y = f"{name}.add"
            h, cin = y, c
    h = conv(h, "head", cin, 1280)
    nodes.append(node("pool", "adaptive_avg_pool2d", [h], {"output_size": [1, 1]}))
    nodes.append(node("flat", "flatten", ["pool"], {"start_dim": 1}))
    arrays["fc.weight"], arrays["fc.bias"] = _dense(rng, 1000, 1280), np.zeros(1000, np.float32)
    nodes.append(node("fc", "linear", ["flat"], {"in_features": 1280, "out_features": 1000, "format": "dense"},
                       {"weight": "fc.weight", "bias": "fc.bias"}))
    return {"inputs": [{"name": "x", "shape": [None, 3, size, size]}], "outputs": ["fc"], "nodes": nodes}, arrays


def _bsr_every(rng, rows, cols, every):
    """BSR (8, 1) arrays with a block in every `every`-th column of each block row (a fixed pattern, cheap to build)."""
    brows = rows // 8
    per_row = cols // every
    indices = (np.arange(per_row, dtype=np.int32)[None, :] * every + (np.arange(brows)[:, None] % every)).ravel()
    data = (rng.standard_normal((brows * per_row, 8, 1)) * np.sqrt(2.0 * every / cols)).astype(np.float32)
    return {"indptr": np.arange(brows + 1, dtype=np.int32) * per_row, "indices": indices.astype(np.int32), "data": data}


def bert_sized(rng, layers=12, tokens=512, hidden=768, ffn=3072, every=8):
    """(graph, arrays) of a BERT-base-sized stack (per layer: four hidden x hidden projections, a residual,
    layer norm, a GELU feed-forward, a residual, layer norm) over a fixed number of tokens; BSR (8, 1)
    weights keeping one column in `every`. (The runtime has no attention op: the projections stand in.)"""
    nodes, arrays = [], {}

    def linear(src, name, cin, cout):
        arrays.update({f"{name}.{k}": v for k, v in _bsr_every(rng, cout, cin, every).items()})
        arrays[f"{name}.bias"] = np.zeros(cout, np.float32)
        nodes.append(node(name, "linear", [src], {"in_features": cin, "out_features": cout, "format": "bsr", "block": [8, 1]},
                           {k: f"{name}.{k}" for k in ("indptr", "indices", "data", "bias")}))
        return name

    def norm(src, name):
        arrays[f"{name}.weight"], arrays[f"{name}.bias"] = np.ones(hidden, np.float32), np.zeros(hidden, np.float32)
        nodes.append(node(name, "layer_norm", [src], {"normalized_shape": [hidden]},
                           {"weight": f"{name}.weight", "bias": f"{name}.bias"}))
        return name

    h = "x"
    for i in range(layers):
        y = h
        for proj in ("q", "k", "v", "o"):
            y = linear(y, f"l{i}.{proj}", hidden, hidden)
        nodes.append(node(f"l{i}.res1", "add", [h, y]))
        h = norm(f"l{i}.res1", f"l{i}.ln1")
        y = linear(h, f"l{i}.up", hidden, ffn)
        nodes.append(node(f"l{i}.gelu", "gelu", [y]))
        y = linear(f"l{i}.gelu", f"l{i}.down", ffn, hidden)
        nodes.append(node(f"l{i}.res2", "add", [h, y]))
        h = norm(f"l{i}.res2", f"l{i}.ln2")
    return {"inputs": [{"name": "x", "shape": [None, tokens, hidden]}], "outputs": [h], "nodes": nodes}, arrays
