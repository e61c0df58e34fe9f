"""Torch-free model execution: the file container, the op set, graph validation and the loaded ``Model``.

A model is a small graph: named inputs (float32, or int64 token ids and masks), a
list of nodes in execution order and named outputs. Each node has an ``op`` from the fixed set in ``OPS``, positional
``inputs`` (names of earlier nodes or graph inputs, or number literals), keyword
``attrs`` checked by type and range, and ``params``: role -> name of an array in
the file (packed sparse weights, biases, norm statistics, constants).

Everything here is numpy plus ``pysparse._core``; torch is never imported.
``Model(graph, arrays)`` validates the whole graph (op names, attributes, array
dtypes and shapes, references) and builds the sparse matrices, whose index
arrays the C++ constructors validate, before anything runs. Whatever is wrong
raises ``ModelFileError`` (a ``ValueError``) naming the node.

The parts, one job each: ``schema`` (identity, limits, attribute checks),
``container`` (the safetensors file), ``graph`` (validation), ``ops`` (the op
table, by family), ``model`` (build, dry run, execution), ``report`` (layers,
summary, the dense twin).
"""

from __future__ import annotations

from .model import Model
from .ops import OPS, OpSpec
from .ops.matmul import CSR_BUCKET, csr_pack, csr_unpack
from .report import LayerInfo
from .schema import FORMAT_NAME, FORMAT_VERSION, ModelFileError

__all__ = [
    "FORMAT_NAME", "FORMAT_VERSION", "OPS", "CSR_BUCKET", "LayerInfo", "Model", "ModelFileError", "OpSpec",
    "csr_pack", "csr_unpack",
]
