"""Coupled channels found on the traced graph: which channels must be pruned together.

    graph = prune.ChannelGraph(model)          # torch.fx trace, no forward pass
    for g in graph.groups: print(g.name, g.size, g.modules)

Every channel a Conv2d / Linear produces is an *element*; the trace walks the
graph and ties elements that must live or die together (a union-find):

- a BatchNorm, an activation that maps 0 to 0 (ReLU, ReLU6, GELU, SiLU ...),
  pooling and dropout carry their input's elements through;
- a depthwise conv (groups == in == out channels) carries them too: its channel
  c reads only input channel c;
- a residual add (or a product) of two tensors ties the two operands' elements
  channel by channel: ``x + f(x)`` prunes channel c of x and of f(x) together;
- ``torch.cat(..., dim=1)`` concatenates the operands' elements, so each slice
  of the concat stays tied to the branch that made it;
- ``flatten(x, 1)`` into a Linear maps each channel to its block of H*W columns.

A consumer (the next conv's input channel, the Linear's column block) joins the
element it reads. Anything the trace cannot see through (an unknown function
or module, a reshape, an add of a constant, the model's output, a non-affine
BatchNorm, a protected layer) *fixes* the elements it touches: they are never
pruned. That keeps pruning exact: a pruned element is zero wherever it flows
(weights, bias and BatchNorm affine of each producer masked), so cutting it out
of every member leaves the output unchanged.

A *cluster* is one set of tied channels (one channel of each member); a
*group* is the clusters sharing the same producing layers (one conv's output, or a
whole residual stream). ``remove_channels`` and the Pruner's ``graph=True`` mode
work on these.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any, Iterable, NamedTuple

import numpy as np
import torch
import torch.fx as fx
from torch import nn
from torch.nn import functional as F

__all__ = ["ChannelGraph", "ChannelGroup", "Member"]

_BN = nn.modules.batchnorm._BatchNorm

# Modules / functions / methods that act per channel and map a zero channel to zero.
_KEEP_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.Tanh, nn.SiLU, nn.ELU, nn.Hardtanh, nn.Hardswish, nn.Mish,
    nn.Identity, nn.Dropout, nn.Dropout2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
)
_KEEP_FUNCTIONS = {
    F.relu, F.relu6, torch.relu, torch.relu_, F.hardtanh, F.leaky_relu, F.gelu, F.silu, torch.tanh, F.elu,
    F.hardswish, F.mish, F.dropout, F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d,
}
_KEEP_METHODS = {"relu", "relu_", "tanh", "contiguous", "clone"}
_SHAPE_METHODS = {"size", "dim", "numel"}  # read the shape, not the values
_TIE = {operator.add, operator.iadd, torch.add, operator.sub, operator.isub, torch.sub,
        operator.mul, operator.imul, torch.mul}
_TIE_METHODS = {"add", "add_", "sub", "sub_", "mul", "mul_"}
_SCALE = {operator.mul, operator.imul, torch.mul, operator.truediv, operator.itruediv, torch.div}
_SCALE_METHODS = {"mul", "mul_", "div", "div_"}
_PRODUCT = {operator.mul, operator.imul, torch.mul, "mul", "mul_"}


class Member(NamedTuple):
    """One module's share of a cluster: ``kind`` "out" (output row of a Conv2d / Linear),
    "in" (input channel of a Conv2d, or column block [index*rep, (index+1)*rep) of a Linear),
    "bn" (BatchNorm feature) or "dw" (channel of a depthwise conv, input = output)."""

    module: str
    kind: str
    index: int
    rep: int = 1


@dataclass
class ChannelGroup:
    """Clusters of tied channels produced by the same layers (``modules``: the "out" and
    "dw" members' layers); ``clusters[i]`` lists every member of cluster i."""

    name: str
    modules: tuple[str, ...]
    clusters: list[list[Member]] = field(default_factory=list)
    _by_member: dict | None = field(default=None, repr=False, compare=False)

    @property
    def size(self) -> int:
        return len(self.clusters)

    def by_member(self) -> dict[tuple[str, str, int], tuple[np.ndarray, np.ndarray]]:
        """{(module, kind, rep): (cluster indices, channel indices)}: the members of every
        cluster, one pair of arrays per module's role (built once)."""
        if self._by_member is None:
            acc: dict[tuple[str, str, int], tuple[list[int], list[int]]] = {}
            for ci, cluster in enumerate(self.clusters):
                for mb in cluster:
                    c, i = acc.setdefault((mb.module, mb.kind, mb.rep), ([], []))
                    c.append(ci)
                    i.append(mb.index)
            self._by_member = {k: (np.array(c), np.array(i)) for k, (c, i) in acc.items()}
        return self._by_member


@dataclass
class _Val:
    """The channels of one traced tensor: an element per channel; layout "nchw" (channels
    on dim 1 of a conv feature map) or "flat" (features on the last dim); ``rep`` columns
    per element after a flatten (None: the consuming Linear says)."""

    elems: list[int]
    layout: str
    rep: int | None = 1


class _Tracer(fx.Tracer):
    """fx's tracer, remembering which module it was in when tracing failed."""

    def __init__(self) -> None:
        super().__init__()
        self.path: list[str] = []
        self.failed: str | None = None  # the innermost module being traced when it failed

    def call_module(self, m, forward, args, kwargs):  # type: ignore[no-untyped-def]
        self.path.append(self.path_of_module(m) or type(m).__name__)
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed is None:
                self.failed = self.path[-1]
            raise
        finally:
            self.path.pop()


def trace(model: nn.Module) -> fx.GraphModule:
    """torch.fx trace of ``model``; ValueError naming the module that could not be traced."""
    tracer = _Tracer()
    try:
        graph = tracer.trace(model)
    except Exception as e:  # fx raises TraceError, TypeError, RuntimeError ... for control flow
        where = tracer.failed or type(model).__name__
        raise ValueError(
            f"channel pruning traces the model with torch.fx, which failed in module {where!r} "
            f"({type(e).__name__}: {e}); data-dependent control flow (an if / loop on tensor values) "
            "cannot be traced: make that branch static, or move it into a leaf module whose channels "
            "stay fixed, or prune with pattern='channel' without graph=True (per layer, no coupling)"
        ) from e
    return fx.GraphModule(tracer.root, graph)


class ChannelGraph:
    """The channel groups of a traceable model (see the module docstring).

    ``protect``: layer names (or modules) whose output channels stay; ``prunable``: if
    given, only these layers' outputs may be pruned. Learned: ``groups`` (prunable
    groups, model order), ``modules`` ({name: module}), ``fixed`` (count of fixed elements).
    """

    def __init__(self, model: nn.Module, protect: Iterable[Any] = (), prunable: Iterable[Any] | None = None) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.modules = dict(model.named_modules())
        names = {id(m): n for n, m in self.modules.items()}
        self._protect = {self._name(p, names) for p in protect}
        self._prunable = None if prunable is None else {self._name(p, names) for p in prunable}
        self._parent: list[int] = [0]  # element 0 is FIXED
        self._members: list[list[Member]] = [[]]
        self._out: dict[str, list[int]] = {}  # producer -> its output elements (shared modules reuse them)
        self._in: dict[str, _Val] = {}
        self._walk(trace(model))
        self.groups = self._collect()

    # ------------------------------------------------------------------ union-find

    def _new(self, members: list[Member]) -> int:
        self._parent.append(len(self._parent))
        self._members.append(members)
        return len(self._parent) - 1

    def _find(self, e: int) -> int:
        while self._parent[e] != e:
            self._parent[e] = self._parent[self._parent[e]]
            e = self._parent[e]
        return e

    def _union(self, a: int, b: int) -> None:
        ra, rb = self._find(a), self._find(b)
        if ra != rb:
            if rb == 0:
                ra, rb = rb, ra
            self._parent[rb] = ra  # FIXED (0) stays the root of whatever it joins

    def _fix(self, v: Any) -> None:
        for x in _vals(v):
            for e in x.elems:
                self._union(0, e)

    def _name(self, p: Any, names: dict[int, str]) -> str:
        if isinstance(p, str) and p in self.modules:
            return p
        if isinstance(p, nn.Module) and id(p) in names:
            return names[id(p)]
        raise ValueError(f"{p!r} is not a module of the model; name it as in model.named_modules()")

    # ------------------------------------------------------------------ the walk

    def _walk(self, gm: fx.GraphModule) -> None:
        env: dict[fx.Node, Any] = {}
        for node in gm.graph.nodes:
            args = fx.node.map_arg(node.args, lambda n: env[n])
            kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
            if node.op == "output":
                self._fix(args)
                continue
            if node.op in ("placeholder", "get_attr"):
                env[node] = None
            elif node.op == "call_module":
                env[node] = self._module(str(node.target), self.modules[str(node.target)], args, kwargs)
            else:
                env[node] = self._function(node.target, node.op, args, kwargs)

    def _module(self, name: str, m: nn.Module, args: tuple, kwargs: dict) -> _Val | None:
        x = args[0] if args else None
        rest = (args[1:], kwargs)
        if isinstance(m, nn.Conv2d):
            self._fix(rest)
            return self._conv(name, m, x)
        if isinstance(m, nn.Linear):
            self._fix(rest)
            return self._linear(name, m, x)
        if isinstance(m, _BN) and isinstance(x, _Val) and x.layout in ("nchw", "flat") and not rest[0] \
                and m.affine and len(x.elems) == m.num_features:
            self._fix(rest)
            for i, e in enumerate(x.elems):
                self._members[e].append(Member(name, "bn", i))
            return x
        if isinstance(m, _KEEP_MODULES) and not rest[0] and not rest[1]:
            return x
        if isinstance(m, nn.Flatten):
            return self._flatten(x, m.start_dim, m.end_dim)
        self._fix((args, kwargs))
        return None

    def _produce(self, name: str, n: int, layout: str) -> _Val:
        if name not in self._out:
            self._out[name] = [self._new([Member(name, "out", j)]) for j in range(n)]
            if name in self._protect or (self._prunable is not None and name not in self._prunable):
                self._fix(_Val(self._out[name], layout))
        return _Val(self._out[name], layout)

    def _consume(self, name: str, x: _Val, rep: int) -> None:
        seen = self._in.get(name)
        if seen is None:
            self._in[name] = x
            for i, e in enumerate(x.elems):
                self._members[e].append(Member(name, "in", i, rep))
        else:  # a module called twice reads the same columns twice: tie what they read
            for a, b in zip(seen.elems, x.elems):
                self._union(a, b)

    def _conv(self, name: str, m: nn.Conv2d, x: Any) -> _Val | None:
        ok = isinstance(x, _Val) and x.layout == "nchw" and len(x.elems) == m.in_channels
        if m.groups == 1:
            if ok:
                self._consume(name, x, 1)
            else:
                self._fix(x)
            return self._produce(name, m.out_channels, "nchw")
        if m.groups == m.in_channels == m.out_channels and ok and name not in self._protect:
            if name in self._out:  # called twice: tie the two inputs
                for a, b in zip(self._out[name], x.elems):
                    self._union(a, b)
            else:
                self._out[name] = list(x.elems)
                for i, e in enumerate(x.elems):
                    self._members[e].append(Member(name, "dw", i))
            return x
        self._fix(x)  # other grouped convs: channels stay
        out = self._produce(name, m.out_channels, "nchw")
        self._fix(out)
        return out

    def _linear(self, name: str, m: nn.Linear, x: Any) -> _Val:
        if isinstance(x, _Val) and x.layout == "flat" and x.elems and m.in_features % len(x.elems) == 0:
            rep = m.in_features // len(x.elems)
            if x.rep is None or x.rep == rep:
                self._consume(name, x, rep)
            else:
                self._fix(x)
        else:
            self._fix(x)
        return self._produce(name, m.out_features, "flat")

    def _flatten(self, x: Any, start: Any, end: Any = -1) -> _Val | None:
        if isinstance(x, _Val) and x.layout == "nchw" and start == 1 and end == -1:
            return _Val(x.elems, "flat", None)  # channel-major: each channel a block of H*W columns
        self._fix(x)
        return None

    def _function(self, target: Any, op: str, args: tuple, kwargs: dict) -> _Val | None:
        method = op == "call_method"
        key = target
        if method and target in _SHAPE_METHODS or (not method and target is getattr):
            return None
        x = args[0] if args else None
        rest = (args[1:], kwargs)
        if (method and target in _KEEP_METHODS) or (not method and target in _KEEP_FUNCTIONS):
            if not _vals(rest):
                return x
        if (method and target == "flatten") or (not method and target is torch.flatten):
            start = args[1] if len(args) > 1 else kwargs.get("start_dim", 0)
            end = args[2] if len(args) > 2 else kwargs.get("end_dim", -1)
            return self._flatten(x, start, end)
        if not method and target is torch.cat:
            return self._cat(args, kwargs)
        tie = (method and target in _TIE_METHODS) or (not method and target in _TIE)
        scale = (method and key in _SCALE_METHODS) or (not method and key in _SCALE)
        if (tie or scale) and len(args) == 2 and not kwargs:
            a, b = args
            if isinstance(a, _Val) and isinstance(b, _Val) and tie:
                if a.layout == b.layout and len(a.elems) == len(b.elems) and a.rep == b.rep:
                    for ea, eb in zip(a.elems, b.elems):
                        self._union(ea, eb)
                    return a
            elif isinstance(a, _Val) or isinstance(b, _Val):
                v, other = (a, b) if isinstance(a, _Val) else (b, a)
                if scale and isinstance(other, (int, float)) and (isinstance(a, _Val) or key in _PRODUCT):
                    return v  # x * s, x / s: a zero channel stays zero
                if key in _PRODUCT and other is None:
                    return v  # x * gate (a squeeze-excite gate, an attention map): zero stays zero
        self._fix((args, kwargs))
        return None

    def _cat(self, args: tuple, kwargs: dict) -> _Val | None:
        parts = args[0] if args else kwargs.get("tensors")
        dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
        if isinstance(parts, (list, tuple)) and parts and all(isinstance(p, _Val) for p in parts):
            layout = parts[0].layout
            same = all(p.layout == layout for p in parts)
            if same and ((layout == "nchw" and dim == 1) or (layout == "flat" and dim in (1, -1)
                                                              and all(p.rep == 1 for p in parts))):
                return _Val([e for p in parts for e in p.elems], layout, 1 if layout == "flat" else None)
        self._fix((args, kwargs))
        return None

    # ------------------------------------------------------------------ groups

    def _collect(self) -> list[ChannelGroup]:
        clusters: dict[int, list[Member]] = {}
        for e in range(1, len(self._parent)):
            r = self._find(e)
            if r != 0:
                clusters.setdefault(r, []).extend(self._members[e])
        order = {n: i for i, n in enumerate(self.modules)}
        groups: dict[tuple[str, ...], ChannelGroup] = {}
        for members in clusters.values():
            members = sorted(set(members), key=lambda mb: (order[mb.module], mb.kind, mb.index))
            producers = tuple(dict.fromkeys(mb.module for mb in members if mb.kind in ("out", "dw")))
            g = groups.get(producers)
            if g is None:
                g = groups[producers] = ChannelGroup(producers[0], producers)
            g.clusters.append(members)
        for g in groups.values():
            g.clusters.sort(key=lambda c: next(mb.index for mb in c if mb.kind in ("out", "dw")))
        return sorted(groups.values(), key=lambda g: order[g.name])

    def group_of(self, layer: str) -> ChannelGroup | None:
        """The group whose channels ``layer`` produces, or None (its outputs are fixed)."""
        return next((g for g in self.groups if layer in g.modules), None)

    def __repr__(self) -> str:
        return f"ChannelGraph({len(self.groups)} groups, {sum(g.size for g in self.groups)} prunable channels)"


def _vals(v: Any) -> list[_Val]:
    """Every _Val inside nested args."""
    if isinstance(v, _Val):
        return [v]
    if isinstance(v, (list, tuple)):
        return [x for item in v for x in _vals(item)]
    if isinstance(v, dict):
        return [x for item in v.values() for x in _vals(item)]
    return []


# ---------------------------------------------------------------------- cutting clusters out


def _param(t: torch.Tensor, like: nn.Parameter) -> nn.Parameter:
    return nn.Parameter(t.detach().clone(), requires_grad=like.requires_grad)


def cluster_is_dead(modules: dict[str, nn.Module], cluster: list[Member]) -> bool:
    """True when every producing parameter of the cluster is exactly zero (its output is zero)."""
    for mb in cluster:
        m = modules[mb.module]
        if mb.kind in ("out", "dw"):
            if torch.count_nonzero(m.weight.detach()[mb.index]) or (m.bias is not None and m.bias.detach()[mb.index] != 0):
                return False
        elif mb.kind == "bn" and (m.weight.detach()[mb.index] != 0 or m.bias.detach()[mb.index] != 0):
            return False
    return True


def _channels(m: nn.Module, kind: str, rep: int) -> int:
    if kind == "bn":
        return m.num_features
    if kind != "in":
        return m.weight.shape[0]
    return m.weight.shape[1] if isinstance(m, nn.Conv2d) else m.in_features // rep


def keep_lists(graph: ChannelGraph, dead: set[tuple[int, int]]) -> dict[tuple[str, str], torch.Tensor]:
    """{(module, kind): bool keep per channel} from the (group index, cluster index) pairs to cut;
    ValueError for a group that would lose every channel."""
    keep: dict[tuple[str, str], torch.Tensor] = {}
    for gi, g in enumerate(graph.groups):
        cut = np.zeros(g.size, dtype=bool)
        cut[[ci for ci in range(g.size) if (gi, ci) in dead]] = True
        if cut.all():
            raise ValueError(
                f"removing the zeroed channels would empty the channel group of layer(s) "
                f"{', '.join(g.modules[:4])}{' ...' if len(g.modules) > 4 else ''}: every channel of it is zero; "
                "keep at least one channel per group (lower the ratio, or protect that layer)"
            )
        if not cut.any():
            continue
        for (name, kind, rep), (cis, idx) in g.by_member().items():
            gone = idx[cut[cis]]
            if gone.size:
                key = (name, kind)
                if key not in keep:
                    keep[key] = torch.ones(_channels(graph.modules[name], kind, rep), dtype=torch.bool)
                keep[key][torch.from_numpy(gone)] = False
    return keep


def remove_dead(graph: ChannelGraph) -> nn.Module:
    """Cut every dead cluster out of the graph's model, in place; returns the model."""
    modules = graph.modules
    dead = {(gi, ci) for gi, g in enumerate(graph.groups) for ci, c in enumerate(g.clusters)
            if cluster_is_dead(modules, c)}
    reps = {(mb.module, "in"): mb.rep for g in graph.groups for c in g.clusters for mb in c if mb.kind == "in"}
    with torch.no_grad():
        for (name, kind), keep in keep_lists(graph, dead).items():
            m = modules[name]
            n = int(keep.sum())
            if kind in ("out", "dw"):
                m.weight = _param(m.weight[keep], m.weight)
                if m.bias is not None:
                    m.bias = _param(m.bias[keep], m.bias)
                if isinstance(m, nn.Linear):
                    m.out_features = n
                else:
                    m.out_channels = n
                if kind == "dw":
                    m.in_channels = m.groups = n
            elif kind == "bn":
                m.num_features = n
                m.weight = _param(m.weight[keep], m.weight)
                m.bias = _param(m.bias[keep], m.bias)
                if m.running_mean is not None:
                    m.running_mean = m.running_mean[keep].clone()
                    m.running_var = m.running_var[keep].clone()
            elif isinstance(m, nn.Conv2d):
                m.weight = _param(m.weight[:, keep], m.weight)
                m.in_channels = n
            else:
                cols = keep.repeat_interleave(reps[(name, kind)])
                m.weight = _param(m.weight[:, cols], m.weight)
                m.in_features = int(cols.sum())
    return graph.model
