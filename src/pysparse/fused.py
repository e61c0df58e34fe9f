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
import operator
import sys
from itertools import chain
from typing import Any

import numpy as np
import torch
import torch.nn.modules.module as _module_mod

from .export import UnsupportedOp, bert
from .export.verify import compare
from .runtime import Model

__all__ = ["FusedBertForward", "fuse_bert"]

# The keyword arguments a fused call accepts (their default values mean "nothing asked");
# any other argument sends the call to the torch forward.
_NEUTRAL = {"position_ids": None, "inputs_embeds": None, "encoder_hidden_states": None,
            "encoder_attention_mask": None, "cache": None, "past_key_values": None, "use_cache": (None, False),
            "output_attentions": (None, False), "output_hidden_states": (None, False), "return_dict": (None, True, False)}


_VERSION = operator.attrgetter("_version")
_DATA_PTR = torch.Tensor.data_ptr
_INT = (torch.int64, torch.int32)


def _runtime_of(model: torch.nn.Module) -> Any:
    """The runtime Model of the BertModel's graph as it is now (UnsupportedOp if it cannot be exported)."""
    graph, arrays = bert.export_bert(model, list(bert.INPUT_NAMES), ("last_hidden_state",))
    return Model(graph, arrays)


def _neutral(name: str, value: Any) -> bool:
    want = _NEUTRAL.get(name, ...)
    if want is ...:
        return False
    return value in want if isinstance(want, tuple) else value is want


class _Snapshot:
    """What the graph was exported from, checked before every fused call (never stale weights).

    Every submodule, parameter and buffer by identity (a swapped module or tensor), and of every
    tensor its version counter (an in-place edit) and data pointer (``p.data = other``, which keeps
    the version). The objects are held, so an id cannot be reused by a new object while the
    snapshot lives. The module tree is walked once; a swap shows as a new object in its parent's
    dicts. Dicts empty at export are left out (an attribute added to a Dropout or an activation is
    not read by its forward: 93 of MiniLM-L6's 351 are left), and the checks run as C-level loops:
    about 50 us per call on the converted 90% MiniLM (quiet Zen 3 VM; its runtime forward at 16
    tokens takes 1.2-1.6 ms), against 90-170 us for the Python loop over all 351 dicts it replaced.

    ``hooked()``: a forward hook or pre-hook on a submodule (or a global one) must run, so the call
    goes to the torch modules.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        mods = list(model.modules())
        self.dicts = [d for m in mods for d in (m._modules, m._parameters, m._buffers) if d]
        self.objects = list(chain.from_iterable(map(dict.values, self.dicts)))  # held: ids stay unique
        self.ids = list(map(id, self.objects))
        self.tensors = [t for t in self.objects if isinstance(t, torch.Tensor)]
        self.versions = list(map(_VERSION, self.tensors))
        self.pointers = list(map(_DATA_PTR, self.tensors))
        self.hook_dicts = [d for m in mods[1:] for d in (m._forward_hooks, m._forward_pre_hooks)] + [
            _module_mod._global_forward_hooks, _module_mod._global_forward_pre_hooks]

    def unchanged(self) -> bool:
        return (list(map(id, chain.from_iterable(map(dict.values, self.dicts)))) == self.ids
                and list(map(_VERSION, self.tensors)) == self.versions
                and list(map(_DATA_PTR, self.tensors)) == self.pointers)

    def hooked(self) -> bool:
        if not any(map(len, self.hook_dicts)):
            return False
        hooks = [h for d in self.hook_dicts for h in d.values()]
        return not all(map(_idle_hf_hook, hooks))


_HF_CAPTURE = "transformers.utils.output_capturing"


def _idle_hf_hook(hook: Any) -> bool:
    """True for the output-capturing hook transformers 5 leaves on BertLayer / BertSelfAttention
    after a call with ``output_hidden_states`` / ``output_attentions``, while no collector is active
    (it returns at once then). Any other hook must run."""
    if getattr(hook, "__module__", None) != _HF_CAPTURE or getattr(hook, "__name__", None) != "output_capturing_hook":
        return False
    capture = sys.modules.get(_HF_CAPTURE)
    collector = getattr(capture, "_active_collector", None)
    return collector is not None and collector.get() is None


class FusedBertForward:
    """``forward`` of a converted BertModel: the runtime graph for what it computes, torch otherwise.

    Returns what ``BertModel.forward`` returns (``last_hidden_state`` and ``pooler_output``;
    a tuple with ``return_dict=False``). ``runtime`` is the :class:`pysparse.runtime.Model`;
    ``torch_forward`` the model's own forward.
    """

    def __init__(self, model: torch.nn.Module, runtime: Any) -> None:
        self.model = model
        self.runtime = runtime  # None: built at the first call (a deepcopy)
        self._snap = None if runtime is None else _Snapshot(model)

    def _fresh_runtime(self) -> Any:
        if self.runtime is None or not self._snap.unchanged():  # type: ignore[union-attr]
            self.runtime = _runtime_of(self.model)
            self._snap = _Snapshot(self.model)
        return self.runtime

    @property
    def torch_forward(self) -> Any:
        return type(self.model).forward.__get__(self.model)

    @property
    def __code__(self) -> Any:  # torch.export reads the forward's code object (its name, file, line)
        return type(self).__call__.__code__

    def __deepcopy__(self, memo: dict[int, Any]) -> FusedBertForward:
        # The copied model gets a forward bound to itself, and its own graph at its first call: the
        # runtime's embedding tables are views of the model's tensors (export/base.py _np_view).
        return FusedBertForward(copy.deepcopy(self.model, memo), None)

    def __reduce__(self) -> Any:
        raise TypeError("a model converted by pysparse is not picklable (its weights live in C++ matrices); "
                        "write it with pysparse.save and read it with pysparse.load")

    @staticmethod
    def _inputs(input_ids: Any, attention_mask: Any, token_type_ids: Any) -> list[np.ndarray] | None:
        """The graph's three integer inputs, or None when the call must run in torch.

        An integer mask goes as it is: the runtime checks that it holds only 0 and 1 (and the call
        goes to torch when it does not, see ``__call__``); a bool mask is 0/1 by type; a float one
        is checked here, before it becomes integers.
        """
        if (not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.dtype not in _INT
                or input_ids.device.type != "cpu"):
            return None  # (ids of another dtype: the torch forward says what is wrong with them)
        shape = input_ids.shape
        out = [input_ids.detach().numpy()]
        for i, (t, fill) in enumerate(((attention_mask, 1), (token_type_ids, 0))):
            if t is None:
                out.append(np.full(shape, fill, np.int64))
                continue
            if not isinstance(t, torch.Tensor) or t.device.type != "cpu" or t.shape != shape:
                return None
            if t.dtype not in _INT:
                if i != 0 or (t.dtype != torch.bool and not bool(((t == 0) | (t == 1)).all())):
                    return None  # a float mask with other values than 0 and 1: torch's rules
                t = t.to(torch.int64)
            out.append(t.detach().numpy())
        return out

    def __call__(self, input_ids: Any = None, attention_mask: Any = None, token_type_ids: Any = None,
                 *args: Any, **kwargs: Any) -> Any:
        model = self.model
        xs = None
        if (not args and not model.training and all(_neutral(k, v) for k, v in kwargs.items())
                and not torch.compiler.is_compiling()):  # torch.compile / torch.export trace the modules
            xs = self._inputs(input_ids, attention_mask, token_type_ids)
        if xs is None:
            return self.torch_forward(input_ids, attention_mask, token_type_ids, *args, **kwargs)
        runtime = self._fresh_runtime()
        if self._snap.hooked():  # type: ignore[union-attr]
            return self.torch_forward(input_ids, attention_mask, token_type_ids, *args, **kwargs)
        try:
            h = runtime(*xs)
        except ValueError:
            mask = xs[1]
            if ((mask != 0) & (mask != 1)).any():  # an integer mask that is not 0/1: torch's rules
                return self.torch_forward(input_ids, attention_mask, token_type_ids, *args, **kwargs)
            raise
        h = torch.from_numpy(np.require(h, requirements="W"))
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
    model.forward = FusedBertForward(model, runtime)
    return f"fused: the whole forward runs as the runtime graph ({len(runtime.graph['nodes'])} nodes, checked on the example)"
