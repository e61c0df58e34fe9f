"""CSRMatrix / BSRMatrix: construction, round trips, properties, storage."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import pysparse as ps

from pstest import random_nm, random_sparse


@pytest.mark.parametrize("shape", [(0, 0), (0, 5), (5, 0), (1, 1), (7, 9), (64, 65), (130, 3)])
@pytest.mark.parametrize("density", [0.0, 0.1, 1.0])
def test_csr_round_trip(rng, shape, density):
    a = random_sparse(rng, shape, density)
    w = ps.CSRMatrix.from_dense(a)
    np.testing.assert_array_equal(w.to_dense(), a)
    assert w.shape == shape
    assert w.nnz == np.count_nonzero(a)
    assert w.indptr.shape == (shape[0] + 1,)
    assert w.indices.shape == w.data.shape == (w.nnz,)


@pytest.mark.parametrize("block", [(1, 1), (2, 1), (4, 1), (8, 1), (16, 1), (1, 4), (4, 4), (8, 3), (16, 7)])
@pytest.mark.parametrize("shape", [(1, 8), (7, 9), (8, 8), (17, 33), (33, 64)])
def test_bsr_round_trip_ragged_shapes(rng, block, shape):
    if block[1] > shape[1]:
        pytest.skip("block wider than the matrix is rejected (tested below)")
    a = random_sparse(rng, shape, 0.3, block=block)
    w = ps.BSRMatrix.from_dense(a, block=block)
    np.testing.assert_array_equal(w.to_dense(), a)
    assert w.block == block
    assert w.data.shape == (w.nblocks, *block)
    assert w.nnz == w.nblocks * block[0] * block[1]
    # Rebuilding from its own arrays gives the same matrix.
    again = ps.BSRMatrix(w.indptr, w.indices, np.array(w.data), w.shape, block)
    np.testing.assert_array_equal(again.to_dense(), a)


def test_bsr_drops_only_all_zero_blocks():
    a = np.zeros((16, 4), dtype=np.float32)
    a[3, 1] = 1.0  # one weight keeps block row 0, column 1
    a[9, 2] = -2.0
    w = ps.BSRMatrix.from_dense(a, block=(8, 1))
    assert w.nblocks == 2
    assert list(w.indices) == [1, 2]
    assert list(w.indptr) == [0, 1, 2]
    np.testing.assert_array_equal(w.data[0, :, 0], a[0:8, 1])


def test_bsr_last_block_shifted_when_c_does_not_divide_k():
    a = np.arange(1, 8, dtype=np.float32).reshape(1, 7)  # K = 7, C = 3: blocks at 0, 3, then 4
    w = ps.BSRMatrix.from_dense(a, block=(1, 3))
    assert list(w.indices) == [0, 3, 4]
    assert np.all(w.indices + 3 <= 7)
    np.testing.assert_array_equal(w.to_dense(), a)


def test_exact_zeros_dropped_but_nan_kept():
    a = np.array([[0.0, -0.0, np.nan, 1.0]], dtype=np.float32)
    w = ps.CSRMatrix.from_dense(a)
    assert w.nnz == 2
    assert list(w.indices) == [2, 3]


def test_index_width_follows_columns():
    assert ps.CSRMatrix.from_dense(np.ones((2, 65536), np.float32)).index_dtype == np.uint16
    assert ps.CSRMatrix.from_dense(np.ones((1, 65537), np.float32)).index_dtype == np.uint32


def test_nbytes_counts_narrow_indices():
    a = np.zeros((100, 1000), dtype=np.float32)
    a[:, ::10] = 1.0  # 10,000 nonzeros
    w = ps.CSRMatrix.from_dense(a)
    assert w.nbytes == 101 * 8 + 10_000 * 2 + 10_000 * 4
    assert w.density == pytest.approx(0.1)
    b = ps.BSRMatrix.from_dense(a, block=(4, 1))
    assert b.nbytes == 26 * 8 + b.nblocks * 2 + b.nblocks * 4 * 4


def test_from_dense_accepts_array_likes_and_dtypes():
    rows = [[0, 1, 0], [2, 0, 3]]
    for a in (rows, np.array(rows, dtype=np.float64), np.array(rows, dtype=np.int32)):
        w = ps.CSRMatrix.from_dense(a)
        np.testing.assert_array_equal(w.to_dense(), np.array(rows, dtype=np.float32))
    assert ps.CSRMatrix.from_dense(np.asfortranarray(np.eye(3, dtype=np.float32))).nnz == 3
    assert ps.CSRMatrix.from_dense(np.eye(6, dtype=np.float32)[::2, ::2]).nnz == 3


def test_csr_from_arrays_validates_and_copies():
    indptr = np.array([0, 2, 3], dtype=np.int32)
    indices = np.array([0, 2, 1], dtype=np.int64)
    data = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    w = ps.CSRMatrix(indptr, indices, data, (2, 3))
    indices[:] = 99  # the caller's arrays no longer matter
    data[:] = 0
    np.testing.assert_array_equal(w.to_dense(), [[1, 0, 2], [0, 3, 0]])


def test_arrays_are_read_only_views():
    w = ps.CSRMatrix.from_dense(np.eye(4, dtype=np.float32))
    for arr in (w.indptr, w.indices, w.data):
        assert not arr.flags.writeable
        with pytest.raises(ValueError):
            arr[0] = 1


def test_scipy_round_trip(rng):
    sp = pytest.importorskip("scipy.sparse")
    a = random_sparse(rng, (20, 30), 0.2)
    s = sp.csr_matrix(a)
    w = ps.CSRMatrix.from_scipy(s)
    np.testing.assert_array_equal(w.to_dense(), a)
    np.testing.assert_array_equal(w.to_scipy().toarray(), a)
    # Unsorted indices and duplicates are canonicalised (duplicates summed).
    coo = sp.coo_matrix(([1.0, 2.0, 5.0], ([0, 0, 1], [2, 2, 0])), shape=(2, 3))
    np.testing.assert_array_equal(ps.CSRMatrix.from_scipy(coo).to_dense(), [[0, 0, 3], [5, 0, 0]])
    bsr = sp.bsr_matrix(a[:16, :30], blocksize=(8, 1))
    assert ps.BSRMatrix.from_scipy(bsr).block == (8, 1)


def test_torch_sources(rng):
    torch = pytest.importorskip("torch")
    a = random_sparse(rng, (9, 13), 0.3)
    t = torch.from_numpy(a)
    np.testing.assert_array_equal(ps.CSRMatrix.from_torch(t).to_dense(), a)
    np.testing.assert_array_equal(ps.CSRMatrix.from_torch(t.to_sparse_csr()).to_dense(), a)
    np.testing.assert_array_equal(ps.CSRMatrix.from_torch(t.to_sparse()).to_dense(), a)
    p = torch.nn.Parameter(t.clone())
    np.testing.assert_array_equal(ps.CSRMatrix.from_dense(p).to_dense(), a)
    np.testing.assert_array_equal(ps.BSRMatrix.from_dense(t, block=(4, 1)).to_dense(), a)


def test_copy_and_deepcopy_share_immutable_storage():
    import copy

    w = ps.BSRMatrix.from_dense(np.eye(8, dtype=np.float32), block=(8, 1))
    holder = {"w": w, "other": [1, 2]}
    clone = copy.deepcopy(holder)
    assert clone["w"] is w and clone["other"] is not holder["other"]
    assert copy.copy(w) is w


def test_not_picklable_by_design():
    w = ps.CSRMatrix.from_dense(np.eye(2, dtype=np.float32))
    with pytest.raises(TypeError, match="pysparse.save"):
        pickle.dumps(w)


def test_repr_mentions_shape_and_density():
    r = repr(ps.BSRMatrix.from_dense(np.eye(8, dtype=np.float32), block=(8, 1)))
    assert "shape=(8, 8)" in r and "block=(8, 1)" in r


def test_nm_round_trip_and_layout(rng):
    a = random_nm(rng, (10, 13), 2, 4)
    w = ps.NMMatrix.from_dense(a, "2:4")
    np.testing.assert_array_equal(w.to_dense(), a)
    assert w.nm == (2, 4)
    assert w.data.shape == w.offsets.shape == (2, 4, 2, 8)
    assert w.offsets.dtype == np.uint8 and int(w.offsets.max()) < 4
    assert w.nbytes == w.data.size * 5
    again = ps.NMMatrix(np.array(w.data), np.array(w.offsets), w.shape, (2, 4))
    np.testing.assert_array_equal(again.to_dense(), a)


def test_nm_rejects_matrices_that_are_not_nm():
    a = np.ones((2, 8), dtype=np.float32)
    a[0, 1] = 0.0
    with pytest.raises(ValueError, match="not 2:4 sparse: row 0, columns 0..3"):
        ps.NMMatrix.from_dense(a, "2:4")


@pytest.mark.parametrize("bad", ["2:3", "0:4", "5:4", "2-4", (2,), "a:b", (4, 16)])
def test_nm_bad_patterns(bad):
    with pytest.raises(ValueError, match="N:M"):
        ps.NMMatrix.from_dense(np.zeros((8, 8), np.float32), bad)


def test_nm_hostile_arrays(rng):
    w = ps.NMMatrix.from_dense(random_nm(rng, (8, 6), 1, 4), "1:4")
    data, offsets = np.array(w.data), np.array(w.offsets, dtype=np.int64)
    offsets[0, 1, 0, 3] = 2  # the last group has only 2 columns (K = 6)
    with pytest.raises(ValueError, match="out of range"):
        ps.NMMatrix(data, offsets, (8, 6), "1:4")
    offsets[0, 1, 0, 3] = -1
    with pytest.raises(ValueError, match="out of range"):
        ps.NMMatrix(data, offsets, (8, 6), "1:4")
    with pytest.raises(ValueError, match="must hold"):
        ps.NMMatrix(data[:, :1], offsets[:, :1], (8, 6), "1:4")
    with pytest.raises(TypeError, match="float32"):
        ps.NMMatrix(data.astype(np.float64), w.offsets, (8, 6), "1:4")


# ---------------------------------------------------------------------------
# BSRMatrix.from_scipy builds the blocks from the nonzeros: never a dense copy.


@pytest.mark.parametrize("block", [(1, 1), (4, 1), (8, 1), (2, 3), (16, 7), (1, 64)], ids=str)
@pytest.mark.parametrize("shape", [(1, 64), (17, 70), (33, 129), (8, 64), (0, 80)], ids=str)
def test_bsr_from_scipy_equals_from_dense(rng, block, shape):
    sp = pytest.importorskip("scipy.sparse")
    a = random_sparse(rng, shape, 0.1)
    if a.size:
        a[0, -1] = 1.0  # a nonzero in the shifted last column block
        a[-1, -1] = -2.0
    want = ps.BSRMatrix.from_dense(a, block=block)
    for s in (sp.csr_matrix(a), sp.coo_matrix(a), sp.csc_matrix(a)):
        got = ps.BSRMatrix.from_scipy(s, block=block)
        assert got.block == want.block and got.nblocks == want.nblocks
        np.testing.assert_array_equal(got.indptr, want.indptr)
        np.testing.assert_array_equal(got.indices, want.indices)
        np.testing.assert_array_equal(got.data, want.data)


def test_bsr_from_scipy_sums_duplicates_and_drops_explicit_zeros():
    sp = pytest.importorskip("scipy.sparse")
    coo = sp.coo_matrix(
        (np.array([1.0, 2.0, 0.0, 5.0, -5.0]), (np.array([0, 0, 9, 3, 3]), np.array([1, 1, 4, 7, 7]))),
        shape=(12, 80),
    )
    w = ps.BSRMatrix.from_scipy(coo, block=(4, 1))
    a = np.zeros((12, 80), np.float32)
    a[0, 1] = 3.0
    np.testing.assert_array_equal(w.to_dense(), a)
    assert w.nblocks == 1  # the explicit zero and the entries that cancel make no block


def test_bsr_from_scipy_keeps_a_scipy_bsr_blocksize(rng):
    sp = pytest.importorskip("scipy.sparse")
    a = np.repeat(random_sparse(rng, (4, 30), 0.2), 4, axis=0)
    w = ps.BSRMatrix.from_scipy(sp.bsr_matrix(a, blocksize=(4, 1)))
    assert w.block == (4, 1)
    np.testing.assert_array_equal(w.to_dense(), a)


def test_bsr_from_scipy_does_not_densify():
    # One nonzero in a 2**17-square matrix: its dense copy would be 64 GiB.
    sp = pytest.importorskip("scipy.sparse")
    n = 1 << 17
    s = sp.coo_matrix((np.array([2.5]), (np.array([n - 3]), np.array([n - 2]))), shape=(n, n)).tocsr()
    w = ps.BSRMatrix.from_scipy(s, block=(8, 4))
    assert w.shape == (n, n) and w.nblocks == 1 and w.block == (8, 4)
    assert int(w.indices[0]) == n - 4  # the last column block, shifted left to K - C
    x = np.zeros(n, np.float32)
    x[n - 2] = 2.0
    y = w @ x
    assert y[n - 3] == 5.0 and np.count_nonzero(y) == 1
