"""The model file (.pspz): save a torch model as a graph plus packed weights; load it without torch.

The file is a safetensors file: an 8-byte little-endian header length, a JSON
header (array names, dtypes, shapes, byte ranges, and ``__metadata__`` holding
the graph JSON and the format version), then the raw little-endian arrays.
Sparse weights are stored packed (CSR indptr/indices/data, BSR blocks, N:M
values/offsets), never as masks, and nothing is pickled.

``load`` parses the container itself with strict bounds (no torch, no
safetensors needed to read), then ``pysparse.runtime.Model`` validates the
graph and arrays; the C++ format constructors validate the index arrays.
Anything wrong raises ``ModelFileError`` (a ``ValueError``).

``save`` (needs torch) traces the model with torch.fx, treating pysparse's
SparseLinear / SparseConv2d and standard torch.nn layers as leaves, maps each
node onto the runtime's op set (refusing, by name, anything the runtime cannot
run), runs ``example_inputs`` through both the torch model and the runtime
graph and refuses to write a file whose outputs disagree (``export/verify.py``).
This module only orchestrates: the container is ``runtime/container.py``, the
graph ``export/``, the check ``export/verify.py``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .runtime import Model, ModelFileError
from .runtime.container import MAX_FILE_BYTES, MAX_HEADER_BYTES, read_file, write_file

__all__ = ["ModelFileError", "load", "save", "read_file", "write_file", "MAX_FILE_BYTES", "MAX_HEADER_BYTES"]


def load(path: str | os.PathLike[str]) -> Model:
    """Load a model file into a torch-free ``pysparse.runtime.Model``.

    Raises ``ModelFileError`` (a ValueError) for anything truncated, corrupted,
    hostile or from another format version; ``FileNotFoundError`` if missing.
    """
    graph, arrays = read_file(path)
    return Model(graph, arrays)


# ---------------------------------------------------------------------------
# save (torch)


def save(
    model: Any,
    path: str | os.PathLike[str],
    example_inputs: Any,
    *,
    rtol: float = 1e-4,
) -> Model:
    """Write ``model`` (a torch module, converted or plain) to one model file at ``path``.

    ``example_inputs`` (a tensor or a tuple of tensors; numpy arrays work too;
    their first dimension is the batch, free at run time) runs through the torch
    model and through the runtime graph built from the file's contents; if
    they disagree by more than ``rtol`` times the largest output magnitude,
    nothing is written and ValueError is raised. An op the runtime cannot run
    raises ValueError naming it. Returns the runtime Model that was checked.
    """
    import torch

    from .export import export
    from .export.verify import verify

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(example_inputs, (list, tuple)):
        inputs = tuple(example_inputs)
    else:
        inputs = (example_inputs,)
    inputs = tuple(torch.from_numpy(t) if isinstance(t, np.ndarray) else t for t in inputs)
    if not inputs or not all(isinstance(t, torch.Tensor) for t in inputs):
        raise TypeError("example_inputs must be a tensor (or numpy array) or a non-empty tuple of them")
    inputs = tuple(t.detach().to(torch.float32).cpu() for t in inputs)
    was_training = model.training
    model.eval()
    try:
        graph, arrays = export(model, inputs)
        with torch.no_grad():
            ref = model(*inputs)
    finally:
        model.train(was_training)
    runtime = verify(graph, arrays, inputs, ref, rtol)
    write_file(path, graph, arrays)
    return runtime
