"""The transformer pieces between the Linears: layer norm (with the residual add fused), GELU and
multi-head attention, for numpy arrays (the torch-free runtime) and torch tensors.

This is the one public face of these ops; the runtime's ``layer_norm`` / ``gelu`` /
``attention`` nodes and the fused torch path of a converted BertModel call it.

Shapes follow the Linear outputs of a BERT layer, so no transposes are needed:

- ``layer_norm(x, weight, bias, eps, residual=None)``: ``x`` (..., C); normalises
  ``x + residual`` over the last axis; ``weight``/``bias`` (C,) or None.
- ``gelu(x, approximate="none" | "tanh")``: elementwise, torch's definitions.
- ``attention(q, k, v, num_heads, mask=None, scale=None)``: ``q`` (B, S, H*D),
  ``k``/``v`` (B, T, H*D) (any strides: views into one fused QKV output work);
  ``mask`` None or additive float32 (B, T) or (B, 1, 1, T) (Hugging Face's extended
  mask: 0 where a key is attended, a large negative number where it is padding);
  ``scale`` defaults to 1/sqrt(D). Returns the context (B, S, H*D): per head
  ``softmax(q k^T * scale + mask) v``, heads concatenated in order.

The public functions run the fused C++ kernels (csrc/kernels-transformer.inc: scalar,
AVX2 and NEON twins, picked like the SpMM kernels, threads from ``set_num_threads``);
they take float32 numpy arrays or CPU torch tensors (zero-copy; q/k/v may be strided
views) and return the input's kind. ``_core`` checks every argument. The
``reference_*`` functions compute the same in float64 numpy: the test oracle.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _checks, _core
from .._arrays import as_input, as_output

__all__ = ["attention", "gelu", "layer_norm", "reference_attention", "reference_gelu", "reference_layer_norm"]


def _erf(x: np.ndarray) -> np.ndarray:
    # numpy has no erf; math.erf per element is exact and only used by the reference
    return np.vectorize(math.erf, otypes=[np.float64])(x) if x.size else x.astype(np.float64)


def reference_gelu(x: Any, approximate: str = "none") -> np.ndarray:
    x64 = np.asarray(x, dtype=np.float64)
    if approximate == "tanh":
        y = 0.5 * x64 * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x64 + 0.044715 * x64**3)))
    elif approximate == "none":
        y = 0.5 * x64 * (1.0 + _erf(x64 / math.sqrt(2.0)))
    else:
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return y.astype(np.float32)


def reference_layer_norm(x: Any, weight: Any, bias: Any, eps: float, residual: Any = None) -> np.ndarray:
    x64 = np.asarray(x, dtype=np.float64)
    if residual is not None:
        x64 = x64 + np.asarray(residual, dtype=np.float64)
    mean = x64.mean(axis=-1, keepdims=True)
    var = ((x64 - mean) ** 2).mean(axis=-1, keepdims=True)
    y = (x64 - mean) / np.sqrt(var + eps)
    if weight is not None:
        y = y * np.asarray(weight, dtype=np.float64)
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64)
    return y.astype(np.float32)


def reference_attention(q: Any, k: Any, v: Any, num_heads: int, mask: Any = None, scale: float | None = None
                        ) -> np.ndarray:
    q64, k64, v64 = (np.asarray(t, dtype=np.float64) for t in (q, k, v))
    b, s, hd = q64.shape
    t = k64.shape[1]
    d = hd // num_heads
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    qh = q64.reshape(b, s, num_heads, d).transpose(0, 2, 1, 3)
    kh = k64.reshape(b, t, num_heads, d).transpose(0, 2, 1, 3)
    vh = v64.reshape(b, t, num_heads, d).transpose(0, 2, 1, 3)
    scores = qh @ kh.transpose(0, 1, 3, 2) * scale
    if mask is not None:
        scores = scores + np.asarray(mask, dtype=np.float64).reshape(b, 1, 1, t)
    scores = scores - scores.max(axis=-1, keepdims=True)
    p = np.exp(scores)
    p /= p.sum(axis=-1, keepdims=True)
    ctx = (p @ vh).transpose(0, 2, 1, 3).reshape(b, s, hd)
    return ctx.astype(np.float32)


# The public entry points: numpy or torch in, the same kind out; the C++ side checks the rest.
def _optional_input(a: Any, what: str) -> Any:
    return None if a is None else as_input(a, what)[0]


def gelu(x: Any, approximate: str = "none") -> Any:
    if not isinstance(approximate, str):
        raise TypeError(f"gelu: approximate must be 'none' or 'tanh', got {type(approximate).__name__}")
    xa, torch_in = as_input(x, "x")
    return as_output(_core.gelu(xa, approximate), torch_in)


def layer_norm(x: Any, weight: Any, bias: Any, eps: float = 1e-12, residual: Any = None) -> Any:
    xa, torch_in = as_input(x, "x")
    y = _core.layer_norm(xa, _optional_input(weight, "weight"), _optional_input(bias, "bias"), eps,
                         _optional_input(residual, "residual"))
    return as_output(y, torch_in)


def attention(q: Any, k: Any, v: Any, num_heads: int, mask: Any = None, scale: float | None = None) -> Any:
    qa, torch_in = as_input(q, "q")
    if not _checks.is_int(num_heads):
        raise TypeError(f"num_heads must be an int, got {type(num_heads).__name__}")
    y = _core.attention(qa, as_input(k, "k")[0], as_input(v, "v")[0], int(num_heads), _optional_input(mask, "mask"),
                        scale)
    return as_output(y, torch_in)
