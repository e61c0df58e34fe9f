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
Hugging Face BertModel encoders are not traced but read by structure
(``pysparse.export.bert``); their files take integer token inputs and may carry
the tokenizer (``pysparse.text``). This module only orchestrates: the container is
``runtime/container.py``, the graph ``export/``, the check ``export/verify.py``.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from .runtime import Model, ModelFileError
from .runtime.container import MAX_FILE_BYTES, MAX_HEADER_BYTES, read_file, read_model, write_file

__all__ = ["ModelFileError", "load", "save", "read_file", "write_file", "MAX_FILE_BYTES", "MAX_HEADER_BYTES"]


def load(path: str | os.PathLike[str]) -> Model:
    """Load a model file into a torch-free ``pysparse.runtime.Model``.

    Raises ``ModelFileError`` (a ValueError) for anything truncated, corrupted,
    hostile or from another format version; ``FileNotFoundError`` if missing.
    """
    graph, arrays, extras = read_model(path)
    return Model(graph, arrays, tokenizer=extras.get("tokenizer"))


# ---------------------------------------------------------------------------
# save (torch)


RTOL = 1e-4  # save's check: runtime vs torch, relative to the largest output
INT8_RTOL = 5e-2  # ... when the model has int8 layers (see save)


def save(
    model: Any,
    path: str | os.PathLike[str],
    example_inputs: Any,
    *,
    rtol: float | None = None,
    outputs: Sequence[str] | None = None,
    tokenizer: Any = None,
) -> Model:
    """Write ``model`` (a torch module, converted or plain) to one model file at ``path``.

    ``example_inputs`` (a tensor or a tuple of tensors; numpy arrays work too;
    their first dimension is the batch, free at run time) runs through the torch
    model and through the runtime graph built from the file's contents; if
    they disagree by more than ``rtol`` times the largest output magnitude,
    nothing is written and ValueError is raised. ``rtol`` defaults to ``RTOL`` (1e-4), or
    ``INT8_RTOL`` (5e-2) when a layer has int8 weights: the int8 kernels quantize their input
    per row, so a float32 rounding difference upstream (the runtime's layer norm, GELU and
    attention are not torch's) can move an activation across a rounding boundary, one int8 step
    of that row's scale, and the next layers spread it: two correct int8 runs of a deep model
    differ by about the int8 error itself (the real MiniLM, dense int8: 7e-3 of the hidden
    states at 16 tokens, 2.8e-2 of the sentence embedding at 128). A wrong graph is off by O(1). An op the runtime cannot run
    raises ValueError naming it. Returns the runtime Model that was checked.

    Hugging Face ``BertModel`` encoders (dense or after ``ps.convert``) are exported
    by structure (``pysparse.export.bert``): ``example_inputs`` is then a dict (or
    BatchEncoding) or tuple of int64/int32 ``input_ids``, ``attention_mask``,
    ``token_type_ids``; batch and sequence length are free in the file (up to
    ``max_position_embeddings``). ``outputs`` picks ``"last_hidden_state"`` (the
    default) and/or ``"sentence_embedding"`` (masked mean pooling + L2 norm);
    ``tokenizer`` (a ``tokenizers.Tokenizer``, a transformers fast tokenizer, or the
    path of a tokenizer.json or of its folder) is stored in the file for
    ``pysparse.text``.
    """
    import torch

    from .export import export
    from .export.verify import verify
    from .export import bert

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if rtol is None:
        int8 = any(getattr(getattr(m, "weight", None), "quantized", False) for m in model.modules())
        rtol = INT8_RTOL if int8 else RTOL
    if bert.is_bert(model):
        return _save_bert(model, path, example_inputs, rtol, outputs, tokenizer)
    if bert.is_transformers_model(model):
        raise bert.refuse_architecture(model)
    if outputs is not None or tokenizer is not None:
        raise TypeError("outputs= and tokenizer= are for Hugging Face BERT encoders; this model is traced as is")
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


def _save_bert(model: Any, path: Any, example_inputs: Any, rtol: float, outputs: Any, tokenizer: Any) -> Model:
    from .export import bert
    from .export.verify import compare
    from .text import tokenizer_json

    outputs = ("last_hidden_state",) if outputs is None else (outputs,) if isinstance(outputs, str) else tuple(outputs)
    inputs = bert.bert_inputs(example_inputs)
    tok = None if tokenizer is None else tokenizer_json(tokenizer)
    was_training = model.training
    model.eval()
    try:
        graph, arrays = bert.export_bert(model, list(inputs), outputs)
        ref = bert.torch_outputs(model, inputs, outputs)
    finally:
        model.train(was_training)
    runtime = Model(graph, arrays, tokenizer=tok)
    if tok is not None:
        from .text import tokenizer as _tokenizer

        _tokenizer(runtime)  # its ids must fit the model's vocabulary
    got = runtime(*[t.numpy() for t in inputs.values()])
    compare(ref if len(ref) > 1 else ref[0], got, rtol)
    write_file(path, graph, arrays, tokenizer=tok)
    return runtime

