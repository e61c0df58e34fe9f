"""Hugging Face BERT encoders -> runtime graph, read from the module structure (no tracing).

Why structure and not a tracer: ``BertModel.forward`` builds its attention mask
through version-dependent helpers (``create_bidirectional_mask`` and the
attention-implementation registry in transformers 5, ``get_extended_attention_mask``
before), writes into tensors, and dispatches to SDPA / eager / flash kernels by
config; torch.fx stops at the first of those ("Proxy object does not support item
assignment") and torch.export gives an aten graph whose shape guards, mask
construction and op names change with each transformers and torch release. The
maths of a BERT encoder has not changed since 2018, and its module tree
(``embeddings``, ``encoder.layer[i].attention.self.query`` ...) is the stable,
documented part that checkpoints load into. So the exporter reads the config and
the weights of that tree and emits the runtime's fused nodes directly: embedding
lookups, one ``attention`` node per layer over the Q/K/V Linears' outputs, layer
norms with the residual add fused, GELU. Anything the tree or the config says that
these nodes do not compute (decoders, cross-attention, relative positions, other
activations, replaced submodules) is refused by name at save time.

Inputs are ``input_ids`` and, when the example has them, ``attention_mask`` and
``token_type_ids``: int64 or int32, (batch, sequence) with both dimensions free,
so one file serves every batch and length up to ``max_position_embeddings``.
Outputs: ``last_hidden_state`` and, when asked, ``sentence_embedding`` (masked
mean pooling + L2 normalisation, as sentence-transformers' all-MiniLM-L6-v2 does).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn

from .base import UnsupportedOp, _np, _np_view, _sparse_kind
from .modules import ModuleExporter

__all__ = ["INPUT_NAMES", "OUTPUT_NAMES", "export_bert", "is_bert", "is_transformers_model", "bert_inputs",
           "torch_outputs"]

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAMES = ("last_hidden_state", "sentence_embedding")
# config.hidden_act -> the runtime's activation node
_ACTIVATIONS = {
    "gelu": ("gelu", {"approximate": "none"}),
    "gelu_new": ("gelu", {"approximate": "tanh"}),
    "gelu_pytorch_tanh": ("gelu", {"approximate": "tanh"}),
    "relu": ("relu", {}),
}
_SUPPORTED = "transformers.BertModel encoders (e.g. sentence-transformers/all-MiniLM-L6-v2, any BertConfig)"


def _classes(model: Any) -> list[str]:
    return [c.__name__ for c in type(model).__mro__]


def is_bert(model: Any) -> bool:
    return "BertModel" in _classes(model) and hasattr(model, "config")


def is_transformers_model(model: Any) -> bool:
    """A Hugging Face model (which the fx tracer cannot trace: it gets a clear refusal instead)."""
    return type(model).__module__.startswith("transformers.") and hasattr(model, "config")


def refuse_architecture(model: Any) -> UnsupportedOp:
    name = f"{type(model).__module__}.{type(model).__name__}"
    hint = ""
    for attr in ("bert", "base_model", "model"):
        inner = getattr(model, attr, None)
        if inner is not None and inner is not model and is_bert(inner):
            hint = f"; save its encoder instead: ps.save(model.{attr}, ...)"
            break
    else:
        hint = ("; other architectures need an exporter of their own (the fx tracer cannot trace Hugging Face "
                "models)")
    return UnsupportedOp(f"model {name}: pysparse.save exports {_SUPPORTED}{hint}")


# ---------------------------------------------------------------- inputs


def bert_inputs(example_inputs: Any) -> dict[str, torch.Tensor]:
    """The example as {name: int64 tensor} in INPUT_NAMES order: a dict / BatchEncoding with those
    keys, a tuple in forward's order (input_ids, attention_mask, token_type_ids), or input_ids."""
    if isinstance(example_inputs, Mapping):
        extra = sorted(set(example_inputs) - set(INPUT_NAMES))
        if extra:
            raise ValueError(f"example_inputs has {extra}; a BERT file takes {list(INPUT_NAMES)} (input_ids required)")
        given = {k: example_inputs[k] for k in INPUT_NAMES if k in example_inputs}
    else:
        seq = tuple(example_inputs) if isinstance(example_inputs, (list, tuple)) else (example_inputs,)
        if not 1 <= len(seq) <= len(INPUT_NAMES):
            raise ValueError(f"example_inputs for a BERT model: 1 to 3 tensors {list(INPUT_NAMES)}, got {len(seq)}")
        given = dict(zip(INPUT_NAMES, seq))
    if "input_ids" not in given:
        raise ValueError("example_inputs must have input_ids")
    out: dict[str, torch.Tensor] = {}
    for k, t in given.items():
        if isinstance(t, np.ndarray):
            t = torch.from_numpy(t)
        if not isinstance(t, torch.Tensor) or t.dtype not in (torch.int64, torch.int32):
            got = t.dtype if isinstance(t, torch.Tensor) else type(t).__name__
            raise TypeError(f"example input {k!r} must be an int64 or int32 tensor (token ids / a 0/1 mask), got {got}")
        if t.dim() != 2 or t.shape != given["input_ids"].shape:
            raise ValueError(f"example input {k!r} has shape {tuple(t.shape)}; every BERT input is (batch, sequence) "
                             f"like input_ids {tuple(given['input_ids'].shape)}")
        out[k] = t.detach().cpu().to(torch.int64)
    return out


def torch_outputs(model: nn.Module, inputs: dict[str, torch.Tensor], outputs: Sequence[str]) -> tuple[torch.Tensor, ...]:
    """What the file must reproduce, computed by the torch model (eval, no grad)."""
    # A converted model's fused forward (pysparse.fused) IS the runtime graph: the file's check
    # compares with the torch modules' own forward.
    forward = getattr(model.forward, "torch_forward", model)
    with torch.no_grad():
        states = forward(**inputs).last_hidden_state
        res = []
        for o in outputs:
            if o == "last_hidden_state":
                res.append(states)
            else:  # sentence_embedding, as sentence-transformers pools and normalises
                mask = inputs.get("attention_mask", torch.ones(states.shape[:2], dtype=torch.int64))
                m = mask.unsqueeze(-1).to(states.dtype)
                pooled = (states * m).sum(1) / m.sum(1).clamp(min=1e-9)
                res.append(torch.nn.functional.normalize(pooled, p=2, dim=1))
    return tuple(res)


# ---------------------------------------------------------------- export


def _check_config(model: nn.Module) -> Any:
    cfg = model.config
    if getattr(cfg, "is_decoder", False):
        raise UnsupportedOp("model (BertModel): config.is_decoder=True (causal masks, key/value caches) is not "
                            "exported; the runtime runs bidirectional encoders: load it with is_decoder=False")
    if getattr(cfg, "add_cross_attention", False):
        raise UnsupportedOp("model (BertModel): config.add_cross_attention=True is not exported; the runtime runs "
                            "self-attention encoders: load it with add_cross_attention=False")
    pet = getattr(cfg, "position_embedding_type", "absolute")
    if pet not in (None, "absolute"):
        raise UnsupportedOp(f"module 'embeddings' (BertEmbeddings): position_embedding_type={pet!r} is not exported; "
                            "only absolute position embeddings run in the runtime")
    act = getattr(cfg, "hidden_act", None)
    if not isinstance(act, str) or act not in _ACTIVATIONS:
        raise UnsupportedOp(f"module 'encoder.layer.0.intermediate' (BertIntermediate): hidden_act={act!r} is not "
                            f"exported; the runtime runs {sorted(_ACTIVATIONS)}")
    return cfg


def _sub(model: nn.Module, path: str, kind: type | tuple[type, ...] | None = None) -> Any:
    m: Any = model
    for part in path.split("."):
        m = m[int(part)] if part.isdigit() and isinstance(m, nn.ModuleList) else getattr(m, part, None)
        if m is None:
            break
    if m is None or (kind is not None and not isinstance(m, kind)):
        what = "missing" if m is None else f"a {type(m).__name__}"
        raise UnsupportedOp(f"module {path!r} is {what}, not the Hugging Face BERT structure the exporter reads; "
                            "save the model as transformers builds it (ps.convert's SparseLinear swaps are fine)")
    return m


class _BertExporter(ModuleExporter):
    def __init__(self, model: nn.Module) -> None:
        super().__init__(None)  # type: ignore[arg-type]  (no fx graph: the structure is read directly)
        self.model = model

    def linear(self, path: str, x: str) -> str:
        m = _sub(self.model, path)
        sparse = _sparse_kind(m) == "SparseLinear"
        if not sparse and not isinstance(m, nn.Linear):
            raise UnsupportedOp(f"module {path!r} ({type(m).__name__}) is not a Linear or pysparse SparseLinear, "
                                "not the Hugging Face BERT structure the exporter reads")
        attrs = {"in_features": int(m.in_features), "out_features": int(m.out_features)}
        if sparse:
            return self.matrix_node(path, "linear", x, m, attrs)
        return self.emit(path, "linear", [x], {**attrs, "format": "dense"},
                         {"weight": _np(m.weight), "bias": None if m.bias is None else _np(m.bias)})

    def layer_norm(self, path: str, inputs: list[str]) -> str:
        m = _sub(self.model, path, nn.LayerNorm)
        if len(m.normalized_shape) != 1:
            raise UnsupportedOp(f"module {path!r}: layer norm over {tuple(m.normalized_shape)}, not the hidden size")
        return self.emit(path, "layer_norm", inputs, {"normalized_shape": list(m.normalized_shape), "eps": float(m.eps)},
                         {"weight": None if m.weight is None else _np(m.weight),
                          "bias": None if getattr(m, "bias", None) is None else _np(m.bias)})

    def table(self, path: str) -> tuple[np.ndarray, dict[str, int]]:
        m = _sub(self.model, path, nn.Embedding)
        if m.max_norm is not None:
            raise UnsupportedOp(f"module {path!r}: nn.Embedding with max_norm (renormalises rows) is not exported")
        w = _np_view(m.weight)
        return w, {"num_embeddings": int(w.shape[0]), "embedding_dim": int(w.shape[1])}


def export_bert(model: nn.Module, input_names: Sequence[str], outputs: Sequence[str] = ("last_hidden_state",)
                ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(graph, arrays) of a BertModel for the runtime; UnsupportedOp names what it cannot export."""
    cfg = _check_config(model)
    bad = [o for o in outputs if o not in OUTPUT_NAMES]
    if bad or not outputs or len(set(outputs)) != len(outputs):
        raise ValueError(f"outputs must be distinct names among {list(OUTPUT_NAMES)}, got {list(outputs)}")
    ex = _BertExporter(model)
    for n in INPUT_NAMES:
        ex.used.add(n)
    layers = _sub(model, "encoder.layer", nn.ModuleList)
    heads = int(cfg.num_attention_heads)
    hidden = int(cfg.hidden_size)
    if hidden % heads:
        raise UnsupportedOp(f"model (BertModel): hidden_size {hidden} is not divisible by {heads} heads")

    # Embeddings: word + position (+ token type), then the layer norm.
    w, a = ex.table("embeddings.word_embeddings")
    x = ex.emit("embeddings.word_embeddings", "embedding", ["input_ids"], a, {"weight": w})
    w, a = ex.table("embeddings.position_embeddings")
    pos = ex.emit("embeddings.position_embeddings", "position_embedding", ["input_ids"], a, {"weight": w})
    x = ex.emit("embeddings.add_positions", "add", [x, pos])
    w, a = ex.table("embeddings.token_type_embeddings")
    if "token_type_ids" in input_names:
        tt = ex.emit("embeddings.token_type_embeddings", "embedding", ["token_type_ids"], a, {"weight": w})
        h = ex.layer_norm("embeddings.LayerNorm", [x, tt])
    else:  # transformers' default: every token of type 0
        row = ex.emit("embeddings.token_type_embeddings", "constant", [], params={"value": w[0].copy()})
        h = ex.layer_norm("embeddings.LayerNorm", [ex.emit("embeddings.add_token_type", "add", [x, row])])
    mask = None
    if "attention_mask" in input_names:
        mask = ex.emit("encoder.attention_mask", "attention_mask", ["attention_mask", "input_ids"])

    act_op, act_attrs = _ACTIVATIONS[cfg.hidden_act]
    for i in range(len(layers)):
        p = f"encoder.layer.{i}"
        if getattr(_sub(model, p), "crossattention", None) is not None:
            raise UnsupportedOp(f"module {p + '.crossattention'!r}: cross-attention is not exported")
        sa = _sub(model, f"{p}.attention.self")
        if int(getattr(sa, "num_attention_heads", heads)) != heads:
            raise UnsupportedOp(f"module {p + '.attention.self'!r}: {sa.num_attention_heads} heads, config says {heads}")
        q, k, v = (ex.linear(f"{p}.attention.self.{n}", h) for n in ("query", "key", "value"))
        attrs: dict[str, Any] = {"num_heads": heads}
        scaling = getattr(sa, "scaling", None)
        if scaling is not None and abs(float(scaling) - (hidden // heads) ** -0.5) > 1e-12:
            attrs["scale"] = float(scaling)
        ctx = ex.emit(f"{p}.attention.self", "attention", [q, k, v] + ([mask] if mask else []), attrs)
        h1 = ex.layer_norm(f"{p}.attention.output.LayerNorm", [ex.linear(f"{p}.attention.output.dense", ctx), h])
        g = ex.emit(f"{p}.intermediate.intermediate_act_fn", act_op, [ex.linear(f"{p}.intermediate.dense", h1)],
                    act_attrs)
        h = ex.layer_norm(f"{p}.output.LayerNorm", [ex.linear(f"{p}.output.dense", g), h1])

    names: list[str] = []
    for o in outputs:
        if o == "last_hidden_state":
            names.append(ex.emit("last_hidden_state", "identity", [h]))
        else:
            if mask is not None:
                pooled = ex.emit("sentence_embedding.mean", "masked_mean", [h, "attention_mask"])
            else:
                pooled = ex.emit("sentence_embedding.mean", "mean", [h], {"dims": [1], "keepdim": False})
            names.append(ex.emit("sentence_embedding", "l2_normalize", [pooled]))
    graph = {"inputs": [{"name": n, "shape": [None, None], "dtype": "int64"} for n in input_names],
             "outputs": names, "nodes": ex.nodes}
    return graph, ex.arrays
