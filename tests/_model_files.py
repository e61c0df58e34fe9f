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
