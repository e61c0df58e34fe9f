"""The bundled data sets load without any download, and the MNIST pickle is read safely."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest

from pysparse import datasets


def test_mnist_shapes_and_ranges():
    pytest.importorskip("mnist")
    d = datasets.load_mnist()
    assert d["train"][0].shape == (50_000, 784) and d["test"][0].shape == (10_000, 784)
    x, y = d["test"]
    assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    assert y.dtype == np.int64 and set(np.unique(y)) == set(range(10))


def test_digits_split():
    pytest.importorskip("sklearn")
    d = datasets.load_digits()
    assert d["train"][0].shape[1] == 64 and len(d["train"][1]) + len(d["test"][1]) == 1797


def test_unpickler_refuses_anything_but_arrays():
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    blob = pickle.dumps((np.zeros(3), Evil()))
    with pytest.raises(pickle.UnpicklingError, match="refusing builtins.print"):
        datasets._ArraysOnly(io.BytesIO(blob)).load()
    ok = pickle.dumps((np.arange(4.0), np.ones((2, 2), np.float32)))
    a, b = datasets._ArraysOnly(io.BytesIO(ok)).load()
    np.testing.assert_array_equal(a, np.arange(4.0))
