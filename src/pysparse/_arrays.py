"""Turning user inputs (numpy arrays, torch tensors, array-likes) into the numpy
arrays _core takes, and outputs back into the kind the user gave.

torch is never imported here: a tensor is recognised by its type's module, so
the torch-free runtime can use these helpers too.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def is_torch_tensor(x: Any) -> bool:
    return any(c.__name__ == "Tensor" and c.__module__ == "torch" for c in type(x).__mro__)


def tensor_to_numpy(t: Any, what: str) -> np.ndarray:
    """A zero-copy numpy view of a CPU tensor (copied only if torch must)."""
    if t.device.type != "cpu":
        raise ValueError(f"{what} is on {t.device}; pysparse runs on the CPU: pass {what}.cpu()")
    if t.requires_grad:
        import torch

        if torch.is_grad_enabled():
            raise ValueError(
                f"{what} requires grad, but pysparse kernels are inference-only; "
                f"run under torch.no_grad() or pass {what}.detach()"
            )
        t = t.detach()
    if str(t.layout) != "torch.strided":
        raise TypeError(f"{what} must be a dense (strided) tensor, got layout {t.layout}")
    return t.resolve_conj().resolve_neg().numpy()


def as_input(x: Any, what: str) -> tuple[np.ndarray, bool]:
    """(numpy array, came_from_torch). Does not change dtype: _core checks it."""
    if isinstance(x, np.ndarray):
        return x, False
    if is_torch_tensor(x):
        return tensor_to_numpy(x, what), True
    raise TypeError(f"{what} must be a numpy array or a torch tensor, got {type(x).__name__}")


def as_output(y: np.ndarray, to_torch: bool) -> Any:
    if to_torch:
        import torch

        return torch.from_numpy(y)
    return y


def as_float32_matrix(a: Any, what: str = "a") -> np.ndarray:
    """A 2-D float32 array from any real array-like (weights may come as float64 or ints)."""
    if is_torch_tensor(a):
        if a.device.type != "cpu":
            a = a.cpu()
        if str(a.layout) != "torch.strided":
            a = a.to_dense()
        a = a.detach().resolve_conj().resolve_neg().numpy()
    arr = np.asarray(a)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{what} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{what} must be 2-D (rows, cols), got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float32)
