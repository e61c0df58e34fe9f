"""A converted Hugging Face BertModel runs its whole forward through the runtime graph.

``ps.convert`` swaps a model's Linears for :class:`pysparse.nn.SparseLinear` modules; on a
BertModel everything between them (attention, layer norm, GELU, residual adds, masks, reshapes)
would still run op by op in torch eager, and torch's intra-op pool and pysparse's fight over the
cores. Measured on the real all-MiniLM-L6-v2, 90% (4, 1), batch 1 (bench_peers.py, Zen 4 VM):
15.0 ms per forward at 128 tokens against 8.8 ms for the same weights in the runtime, 17.9 ms on
2 threads (the runtime 5.8), 4.0 against 0.9 ms at 16 tokens.

So convert exports the converted model to the runtime graph (``pysparse.export.bert``, the same
graph ``ps.save`` writes, fused at load by ``runtime/fuse.py``), checks it against the torch
forward on a probe batch, and installs :class:`FusedBertForward` as the model's ``forward``. The
module tree stays as it is (``ps.save`` still reads it, the torch forward stays reachable as
``model.forward.torch_forward``), and a call that the graph does not compute (training mode,
``inputs_embeds``, ``position_ids``, ``output_attentions`` / ``output_hidden_states``, encoder
states, caches, tensors off the CPU) runs the torch forward instead. The pooler (dense + tanh on
the first token, when the model has one) runs in torch on the graph's hidden states.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from .export import UnsupportedOp, bert
from .export.verify import compare
from .runtime import Model

__all__ = ["FusedBertForward", "fuse_bert"]

# The keyword arguments a fused call accepts (their default values mean "nothing asked");
# any other argument sends the call to the torch forward.
_NEUTRAL = {"position_ids": None, "inputs_embeds": None, "encoder_hidden_states": None,
            "encoder_attention_mask": None, "cache": None, "past_key_values": None, "use_cache": (None, False),
            "output_attentions": (None, False), "output_hidden_states": (None, False), "return_dict": (None, True, False)}


def _runtime_of(model: torch.nn.Module) -> Any:
    """The runtime Model of the BertModel's graph as it is now (UnsupportedOp if it cannot be exported)."""
    graph, arrays = bert.export_bert(model, list(bert.INPUT_NAMES), ("last_hidden_state",))
    return Model(graph, arrays)


def _neutral(name: str, value: Any) -> bool:
    want = _NEUTRAL.get(name, ...)
    if want is ...:
        return False
    return value in want if isinstance(want, tuple) else value is want


class FusedBertForward:
    """``forward`` of a converted BertModel: the runtime graph for what it computes, torch otherwise.

    Returns what ``BertModel.forward`` returns (``last_hidden_state`` and ``pooler_output``;
    a tuple with ``return_dict=False``). ``runtime`` is the :class:`pysparse.runtime.Model`;
    ``torch_forward`` the model's own forward.
    """

    def __init__(self, model: torch.nn.Module, runtime: Any) -> None:
        self.model = model
        self.runtime = runtime
        self._state: tuple[list[int], list[int]] | None = None  # filled at the first call (deepcopy builds lazily)
        self._mods: list[torch.nn.Module] | None = None

    def _tensors_state(self) -> tuple[list[int], list[int]]:
        # What the graph was exported from: the identity of every submodule, parameter and buffer
        # (a swapped module or tensor) and the version counter of every tensor (an in-place edit).
        # When it changes, the graph is exported again: never stale weights. The module list is
        # cached (walking named_modules per call cost 1.3 ms of a 2.3 ms MiniLM forward at 16 tokens);
        # a swap shows as a new id in its parent's dicts, and refreshes the cache.
        mods = self._mods
        if mods is None:
            mods = self._mods = list(self.model.modules())
        ids: list[int] = []
        versions: list[int] = []
        for m in mods:
            ids.extend(map(id, m._modules.values()))
            for d in (m._parameters, m._buffers):
                for t in d.values():
                    ids.append(id(t))
                    if t is not None:
                        versions.append(t._version)
        return ids, versions

    def _fresh_runtime(self) -> Any:
        state = self._tensors_state()
        if self._state is None:
            self._state = state
        elif state != self._state:
            self.runtime = _runtime_of(self.model)
            self._mods = None
            self._state = self._tensors_state()
        return self.runtime

    @property
    def torch_forward(self) -> Any:
        return type(self.model).forward.__get__(self.model)

    def __deepcopy__(self, memo: dict[int, Any]) -> FusedBertForward:
        # The copied model gets a forward bound to itself; the runtime is immutable and shared.
        return FusedBertForward(copy.deepcopy(self.model, memo), self.runtime)

    def __reduce__(self) -> Any:
        raise TypeError("a model converted by pysparse is not picklable (its weights live in C++ matrices); "
                        "write it with pysparse.save and read it with pysparse.load")

    def _inputs(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> list[np.ndarray] | None:
        """The graph's three int64 inputs, or None when the call must run in torch."""
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
            return None
        if input_ids.dtype not in (torch.int64, torch.int32):
            return None  # the torch forward says what is wrong with them
        out = []
        for t, fill in ((input_ids, None), (attention_mask, 1), (token_type_ids, 0)):
            if t is None:
                t = torch.full(input_ids.shape, fill, dtype=torch.int64)
            if not isinstance(t, torch.Tensor) or t.device.type != "cpu" or t.shape != input_ids.shape:
                return None
            if t is attention_mask and not bool(((t == 0) | (t == 1)).all()):
                return None  # the graph takes a 0/1 mask (any dtype); other values: torch's rules
            if t.dtype not in (torch.int64, torch.int32):
                if t is not attention_mask:
                    return None
                t = t.to(torch.int64)
            out.append(t.detach().numpy())
        return out

    def __call__(self, input_ids: Any = None, attention_mask: Any = None, token_type_ids: Any = None,
                 *args: Any, **kwargs: Any) -> Any:
        model = self.model
        xs = None
        if not args and not model.training and all(_neutral(k, v) for k, v in kwargs.items()):
            xs = self._inputs(input_ids, attention_mask, token_type_ids)
        if xs is None:
            return self.torch_forward(input_ids, attention_mask, token_type_ids, *args, **kwargs)
        h = torch.from_numpy(np.require(self._fresh_runtime()(*xs), requirements="W"))
        pooler = getattr(model, "pooler", None)
        with torch.no_grad():
            pooled = pooler(h) if pooler is not None else None
        from transformers.modeling_outputs import BaseModelOutputWithPoolingAndCrossAttentions

        out = BaseModelOutputWithPoolingAndCrossAttentions(last_hidden_state=h, pooler_output=pooled)
        return out.to_tuple() if kwargs.get("return_dict") is False else out


def fuse_bert(model: torch.nn.Module, probe: dict[str, torch.Tensor] | None, rtol: float) -> str:
    """Install the fused forward on ``model`` (a converted BertModel, in place) once the runtime
    graph reproduces the torch forward on ``probe`` (the example inputs; a small batch with
    padding when None). Returns a line for the conversion report: what runs, or why not."""
    try:
        runtime = _runtime_of(model)
    except UnsupportedOp as e:
        return f"torch forward (not exportable to the runtime graph: {e})"
    if probe is None:
        s = min(12, int(model.config.max_position_embeddings))
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(0, int(model.config.vocab_size), (2, s), generator=g)
        mask = torch.ones(2, s, dtype=torch.int64)
        mask[1, s // 2:] = 0
        probe = {"input_ids": ids, "attention_mask": mask}
    full = {**probe}
    full.setdefault("attention_mask", torch.ones_like(full["input_ids"]))
    full.setdefault("token_type_ids", torch.zeros_like(full["input_ids"]))
    with torch.no_grad():
        ref = type(model).forward(model, **full).last_hidden_state
    got = runtime(*[full[n].numpy() for n in bert.INPUT_NAMES])
    try:
        compare(ref, got, rtol)
    except ValueError as e:  # never silently wrong: keep the torch forward and say why
        return f"torch forward (the runtime graph disagreed on the example: {e})"
    model.forward = fwd = FusedBertForward(model, runtime)
    fwd._state = fwd._tensors_state()
    return f"fused: the whole forward runs as the runtime graph ({len(runtime.graph['nodes'])} nodes, checked on the example)"
