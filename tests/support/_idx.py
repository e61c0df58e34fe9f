"""IDX files written by the tests (LeCun's MNIST format), so no test needs the real data sets."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np


def idx_bytes(array: np.ndarray, code: int, dims: tuple[int, ...] | None = None) -> bytes:
    """An IDX file as the format spells it: 0, 0, dtype code, ndim, big-endian dims, big-endian data."""
    dims = array.shape if dims is None else dims
    head = bytes([0, 0, code, len(dims)]) + np.asarray(dims, ">u4").tobytes()
    return head + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_fashion(folder: Path, n_train: int = 6, n_test: int = 4, gz: bool = True, seed: int = 0,
                  learnable: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A small Fashion-MNIST-shaped folder: the four IDX files, gzip-compressed or plain.
    ``learnable``: each class a bright horizontal band at its own height, over noise."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n, stem in (("train", n_train, "train"), ("test", n_test, "t10k")):
        y = rng.integers(0, 10, n, dtype=np.uint8)
        x = rng.integers(0, 256 if not learnable else 96, (n, 28, 28), dtype=np.uint8)
        if learnable:
            for i, c in enumerate(y):
                x[i, 2 + 2 * c:4 + 2 * c] = 255
        for kind, arr, ndim in (("images", x, 3), ("labels", y, 1)):
            blob = idx_bytes(arr, 0x08)
            name = f"{stem}-{kind}-idx{ndim}-ubyte"
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(blob))
            else:
                (folder / name).write_bytes(blob)
        out[split] = (x, y)
    return out
