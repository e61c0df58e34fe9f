"""The format registry (pysparse.formats.FORMATS) and each format's own description:
tag, label, packing, and its model-file arrays, which must stay byte-for-byte what
the code before the registry wrote (old files load, new files are the same)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

import pysparse as ps
from pysparse import formats
from pysparse.formats import ArraySpec

from pstest import F32_SUM_RTOL, random_nm, random_sparse, relerr


def fixed_weights() -> dict[str, np.ndarray]:
    """The matrices whose file arrays were hashed with the code before the registry (760d0ca)."""
    rng = np.random.default_rng(20261201)
    a = rng.standard_normal((21, 300)).astype(np.float32)  # 300 columns: two CSR buckets
    a[rng.random(a.shape) >= 0.15] = 0
    blk = np.repeat(a[::4], 4, axis=0)[:21]
    nm = np.zeros((21, 300), np.float32)
    nm[:, 1::4] = a[:, 1::4]
    nm[:, 2::4] = 1.5
    return {"a": a, "blk": blk, "nm": nm}


# sha256 (first 20 hex digits) of each array as 760d0ca's _export / runtime.csr_pack wrote it.
OLD_FILE_ARRAYS = {
    "csr": {"bucket_nnz": ("uint16", (21, 2), "ec82f4a9d299ea3c2f68"),
            "col_lo": ("uint8", (911,), "c40aafac2a36fb85455f"),
            "data": ("float32", (911,), "a3c927426afb6eae1ca4")},
    "bsr(4,1)": {"data": ("float32", (272, 4, 1), "97448460f36227b6a71a"),
                 "indices": ("uint16", (272,), "f651cf0ffc3ec9d4747a"),
                 "indptr": ("int64", (7,), "ff929ab43056bbab4112")},
    "bsr(2,8)": {"data": ("float32", (375, 2, 8), "516d2d7ca33908a11869"),
                 "indices": ("uint16", (375,), "9f5b31029e0ec13ad2c5"),
                 "indptr": ("int64", (12,), "bd48e3d4629220720653")},
    "nm(2:4)": {"data": ("float32", (3, 75, 2, 8), "e902918b064445547849"),
                "offsets": ("uint8", (3, 75, 2, 8), "7e0a283c0d9534553da8")},
}
OLD_FILE_ARRAYS["sell"] = OLD_FILE_ARRAYS["csr"]  # SELL is stored as its CSR arrays


def fixed_matrices() -> list:
    w = fixed_weights()
    return [
        ps.CSRMatrix.from_dense(w["a"]),
        ps.SELLMatrix.from_dense(w["a"]),
        ps.BSRMatrix.from_dense(w["blk"], block=(4, 1)),
        ps.BSRMatrix.from_dense(w["a"], block=(2, 8)),
        ps.NMMatrix.from_dense(w["nm"], "2:4"),
    ]


def digest(arrays: dict[str, np.ndarray]) -> dict[str, tuple]:
    return {
        k: (str(v.dtype), v.shape, hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest()[:20])
        for k, v in arrays.items()
    }


def old_bucket_codec(indptr, indices, data, rows, cols):
    """The CSR file codec as it was written before the registry (runtime.csr_pack at 760d0ca)."""
    indptr = np.asarray(indptr, dtype=np.int64)
    indices = np.asarray(indices, dtype=np.int64)
    row = np.repeat(np.arange(rows, dtype=np.int64), np.diff(indptr))
    order = np.lexsort((indices, row))
    indices, row = indices[order], row[order]
    counts = np.zeros((rows, -(-cols // 256)), dtype=np.uint16)
    np.add.at(counts, (row, indices // 256), 1)
    return {"bucket_nnz": counts, "col_lo": (indices % 256).astype(np.uint8),
            "data": np.asarray(data, dtype=np.float32)[order]}


def test_registry_lists_every_format_in_candidate_order():
    assert list(formats.FORMATS) == ["csr", "sell", "bsr", "nm"]
    for tag, cls in formats.FORMATS.items():
        assert cls.tag == tag and cls.format == tag and issubclass(cls, ps.SparseMatrixBase)
        assert formats.format_class(tag) is cls
    with pytest.raises(ValueError, match="csr.*sell.*bsr.*nm"):
        formats.format_class("coo")
    with pytest.raises(ValueError, match="unknown format"):
        formats.format_class(None)


@pytest.mark.parametrize("w", fixed_matrices(), ids=lambda w: w.label)
def test_file_arrays_are_byte_for_byte_the_old_ones(w):
    arrays = w.to_file_arrays()
    assert digest(arrays) == OLD_FILE_ARRAYS[w.label]
    for v in arrays.values():
        assert v.flags.c_contiguous and v.flags.writeable
    if w.tag in ("csr", "sell"):
        csr = w.to_csr() if w.tag == "sell" else w
        old = old_bucket_codec(csr.indptr, csr.indices, csr.data, *w.shape)
        assert digest(arrays) == digest(old)


@pytest.mark.parametrize("w", fixed_matrices(), ids=lambda w: w.label)
def test_file_arrays_share_no_memory_with_the_weight(w):
    for v in w.to_file_arrays().values():
        for own in (w._m.values, w._m.indices):
            assert not np.shares_memory(v, own)


@pytest.mark.parametrize("w", fixed_matrices(), ids=lambda w: w.label)
def test_file_round_trip_and_specs(w):
    rows, cols = w.shape
    attrs = {"format": w.tag, "block": None, "nm": None, **{k: tuple(v) for k, v in w.file_attrs().items()}}
    arrays = w.to_file_arrays()
    specs = type(w).file_specs(attrs, rows, cols)
    assert set(specs) == set(arrays)
    for role, spec in specs.items():
        assert isinstance(spec, ArraySpec) and spec.required
        assert arrays[role].dtype.name in spec.dtypes
        assert len(spec.shape) == arrays[role].ndim
        assert all(s is None or s == n for s, n in zip(spec.shape, arrays[role].shape))
    back = type(w).from_file_arrays(attrs, arrays, rows, cols)
    assert type(back) is type(w) and back.label == w.label
    assert np.array_equal(back.to_dense(), w.to_dense())


def test_labels_and_file_attrs():
    w = fixed_matrices()
    assert [m.label for m in w] == ["csr", "sell", "bsr(4,1)", "bsr(2,8)", "nm(2:4)"]
    assert [m.file_attrs() for m in w] == [{}, {}, {"block": [4, 1]}, {"block": [2, 8]}, {"nm": [2, 4]}]
    assert formats.describe_format(np.zeros((2, 2), np.float32)) == "dense"
    assert [formats.describe_format(m) for m in w] == [m.label for m in w]
    assert formats.format_of(w[2]) == "bsr" and formats.format_of(np.zeros((1, 1), np.float32)) == "dense"


@pytest.mark.parametrize("tag,attr", [("bsr", "block"), ("nm", "nm")])
def test_specs_need_their_attribute(tag, attr):
    with pytest.raises(ValueError, match=f"needs the '{attr}' attribute"):
        formats.format_class(tag).file_specs({"format": tag, "block": None, "nm": None}, 8, 8)


def test_bad_bucket_arrays_raise_value_error():
    w = ps.CSRMatrix.from_dense(fixed_weights()["a"])
    arrays = w.to_file_arrays()
    arrays["col_lo"] = arrays["col_lo"][:-1]
    with pytest.raises(ValueError, match="bucket counts"):
        ps.CSRMatrix.from_file_arrays({"format": "csr"}, arrays, *w.shape)
    arrays = w.to_file_arrays()
    arrays["bucket_nnz"][0, 0] = 300
    with pytest.raises(ValueError, match="more than 256"):
        ps.CSRMatrix.from_file_arrays({"format": "csr"}, arrays, *w.shape)


def test_pack_through_the_registry(rng):
    a = random_nm(rng, (16, 32), 2, 4)
    assert formats.pack_weight(a, "nm").label == "nm(2:4)"
    assert formats.pack_weight(np.repeat(random_sparse(rng, (4, 32), 0.3), 4, axis=0), "bsr").label == "bsr(4,1)"
    assert formats.pack_weight(a, "bsr", block=(2, 4)).label == "bsr(2,4)"
    assert isinstance(formats.pack_weight(a, "dense"), np.ndarray)
    for tag, cls in formats.FORMATS.items():
        w = formats.pack_weight(a, tag)
        assert type(w) is cls and np.array_equal(w.to_dense(), a)
    with pytest.raises(ValueError, match="format must be one of"):
        formats.pack_weight(a, "coo")
    with pytest.raises(ValueError, match="not N:M"):
        formats.pack_weight(random_sparse(rng, (8, 8), 1.0), "nm")


def test_parse_block_and_nm():
    assert formats.parse_block((8, 1)) == (8, 1) and formats.parse_nm("2:4") == (2, 4)
    assert formats.parse_nm((1, 8)) == (1, 8)
    for bad in [(3, 1), (8, 0), (8, 65), "8x1", None]:
        with pytest.raises(ValueError, match="block"):
            formats.parse_block(bad)
    for bad in ["2:3", "5:4", "0:4", "2-4", None]:
        with pytest.raises(ValueError, match="N:M"):
            formats.parse_nm(bad)


MINE = ["formats", "ops", "export", "nn.py", "conversion.py", "__init__.py", "_arrays.py", "_checks.py",
        "_timing.py", "_table.py"]


def _modules():
    import pathlib

    root = pathlib.Path(ps.__file__).parent
    for name in MINE:
        path = root / name
        yield from (sorted(path.glob("*.py")) if path.is_dir() else [path])


def test_formats_do_not_import_ops():
    # C1: the @ operator calls the kernels itself, so the arrow only goes ops -> formats.
    import ast

    for f in _modules():
        if f.parent.name != "formats":
            continue
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert "ops" not in node.module.split(".") and node.module not in ("nn", "conversion"), f.name


def test_no_imports_inside_functions_between_package_modules():
    # The cycles C1, C2, C4 were kept alive by imports written inside functions.
    import ast

    for f in _modules():
        for fn in ast.walk(ast.parse(f.read_text())):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    if isinstance(node, ast.ImportFrom):
                        assert node.level == 0 and not (node.module or "").startswith("pysparse"), (
                            f"{f.name}:{node.lineno} imports {node.module} inside {fn.name}"
                        )
                    if isinstance(node, ast.Import):
                        assert not any(a.name.startswith("pysparse") for a in node.names), f"{f.name}:{node.lineno}"


# ---------------------------------------------------------------------------
# A model file written by the code before the registry (760d0ca): one layer per format.

DATA = __import__("pathlib").Path(__file__).parents[1] / "data"


def old_file_model():
    """The model tests/data/formats_760d0ca.pspz was saved from (built the same way, same seed)."""
    torch = pytest.importorskip("torch")
    from pysparse.nn import SparseConv2d, SparseLinear

    rng = np.random.default_rng(760)

    def sp(shape, d):
        w = rng.standard_normal(shape).astype(np.float32)
        w[rng.random(shape) >= d] = 0
        return w

    conv = np.repeat(sp((4, 27), 0.5), 2, axis=0)
    nm = np.zeros((16, 32), np.float32)
    nm[:, ::2] = rng.standard_normal((16, 16)).astype(np.float32)
    nm[:, ::4] = 0

    def b(n):
        return torch.from_numpy(rng.standard_normal(n).astype(np.float32))

    model = torch.nn.Sequential(
        SparseConv2d(ps.BSRMatrix.from_dense(conv, block=(2, 1)), b(8), in_channels=3, out_channels=8,
                     kernel_size=3, padding=1),
        torch.nn.Flatten(),
        SparseLinear(ps.CSRMatrix.from_dense(sp((40, 288), 0.1)), b(40)), torch.nn.ReLU(),
        SparseLinear(ps.SELLMatrix.from_dense(sp((32, 40), 0.3)), None),
        SparseLinear(ps.NMMatrix.from_dense(nm, "1:4"), b(16)),
    )
    return model, torch.from_numpy(rng.standard_normal((2, 3, 6, 6)).astype(np.float32))


def test_a_file_written_before_the_registry_loads_and_runs():
    ref = np.load(DATA / "formats_760d0ca.npz")
    m = ps.load(DATA / "formats_760d0ca.pspz")
    assert [layer.format for layer in m.layers if layer.format != "-"] == ["bsr", "csr", "sell", "nm"]
    assert [type(m.matrix(layer.name)).tag for layer in m.layers if layer.format != "-"] == ["bsr", "csr", "sell", "nm"]
    y = m(ref["x"])
    y = y[0] if isinstance(y, tuple) else y
    # recorded on AVX2: another ISA sums in another order (tolerance relative to the largest output)
    assert relerr(y, ref["y"]) <= F32_SUM_RTOL


def test_the_same_model_saves_the_same_arrays_and_graph_as_before(tmp_path):
    safetensors = pytest.importorskip("safetensors")
    from safetensors.numpy import load_file

    model, x = old_file_model()
    path = tmp_path / "new.pspz"
    ps.save(model, path, example_inputs=(x,))
    old, new = load_file(DATA / "formats_760d0ca.pspz"), load_file(path)
    assert sorted(old) == sorted(new)
    for k in old:
        assert old[k].dtype == new[k].dtype and old[k].shape == new[k].shape
        assert old[k].tobytes() == new[k].tobytes(), k
    metas = []
    for p in (DATA / "formats_760d0ca.pspz", path):
        with safetensors.safe_open(str(p), "np") as f:
            metas.append(f.metadata())
    assert metas[0] == metas[1]
