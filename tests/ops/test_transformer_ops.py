"""The fused transformer kernels (layer norm + residual, GELU, multi-head attention) through
pysparse.ops.transformer: against the float64 references (torch-free, so they also run under
qemu for NEON) and against torch (F.layer_norm, F.gelu, F.scaled_dot_product_attention), on
every ISA this CPU runs, every thread count 1..3 (bitwise the same), strided views of a fused
QKV output, padding masks of both shapes, non-finite values and bad input."""

from __future__ import annotations

import math
import os
import shlex
import subprocess
import sys

import numpy as np
import pytest

from pysparse import _core
from pysparse.ops import transformer as T

from pstest import kernel_isa_for

# Named tolerances. Each is relative to the largest |reference| of the result unless said.
LN_RTOL = 2e-6  # float32 layer norm (corrected two-pass) vs float64
GELU_RTOL_OF_X = 2.5e-7  # |gelu - gelu_float64| <= this * |x| (both forms; ~0.8 of it is used)
ATTN_RTOL = 2e-6  # float32 attention vs float64, relative to max |v|
# Against torch: two float32 computations, each within its own bound of the truth.
TORCH_LN_RTOL = 2 * LN_RTOL + 2e-6
TORCH_GELU_RTOL_OF_X = 1e-6  # torch's own vectorised erf / tanh are looser than ours
TORCH_ATTN_RTOL = 2 * ATTN_RTOL + 2e-6
# Two ISAs of ours: different summation orders only.
ISA_RTOL = 2 * LN_RTOL

HEAD_DIMS = [1, 3, 8, 17, 32, 64]
FINFO_MIN = float(np.finfo(np.float32).min)


@pytest.fixture
def threads():
    previous = _core.get_num_threads()
    yield _core.set_num_threads
    _core.set_num_threads(previous)


def relerr(y, ref, scale=None):
    y = np.asarray(y, np.float64)
    ref = np.asarray(ref, np.float64)
    if ref.size == 0:
        return 0.0
    s = np.max(np.abs(ref)) if scale is None else scale
    return float(np.max(np.abs(y - ref)) / max(s, 1e-30))


def padding_mask(rng, b, t, shape4):
    """Hugging Face's extended additive mask: 0 for a kept key, finfo.min for padding; every
    row keeps at least its first key."""
    keep = np.ones((b, t), bool)
    for i in range(b):
        keep[i, rng.integers(1, t + 1) :] = False
    m = np.where(keep, 0.0, FINFO_MIN).astype(np.float32)
    return m.reshape(b, 1, 1, t) if shape4 else m


def fused_qkv(rng, b, s, hd, dtype=np.float32):
    """q, k, v as views into one (B, S, 3 * H * D) Linear output, as BERT's fused QKV gives."""
    qkv = rng.standard_normal((b, s, 3 * hd)).astype(dtype)
    return qkv, qkv[..., :hd], qkv[..., hd : 2 * hd], qkv[..., 2 * hd :]


# ---------------------------------------------------------------- layer norm


@pytest.mark.parametrize("c", [1, 3, 8, 17, 32, 64, 384, 385])
@pytest.mark.parametrize("with_residual", [False, True])
@pytest.mark.parametrize("affine", [False, True])
def test_layer_norm_matches_float64(isa, rng, c, with_residual, affine):
    shape = (int(rng.integers(1, 4)), int(rng.integers(1, 20)), c)
    x = (rng.standard_normal(shape) * 3 + 2).astype(np.float32)
    res = rng.standard_normal(shape).astype(np.float32) if with_residual else None
    w = rng.standard_normal(c).astype(np.float32) if affine else None
    b = rng.standard_normal(c).astype(np.float32) if affine else None
    y = T.layer_norm(x, w, b, 1e-12, res)
    assert y.shape == shape and y.dtype == np.float32
    # the float64 reference of the float32 sum x + res (what any float32 layer norm sees)
    z = x + res if with_residual else x
    assert relerr(y, T.reference_layer_norm(z, w, b, 1e-12)) <= LN_RTOL


def test_layer_norm_large_mean_small_spread(isa, rng):
    x = (1000 + rng.standard_normal((7, 384)) * 1e-2).astype(np.float32)
    assert relerr(T.layer_norm(x, None, None, 1e-12), T.reference_layer_norm(x, None, None, 1e-12)) <= LN_RTOL


def test_layer_norm_strided_rows_and_leading_axes(isa, rng):
    big = rng.standard_normal((3, 9, 50)).astype(np.float32)
    x = big[:, ::2, 3:40]  # leading axes do not collapse: copied
    x2 = big[0, :, 3:40]  # a row stride of 50: read in place
    for v in (x, x2):
        assert relerr(T.layer_norm(v, None, None, 1e-5), T.reference_layer_norm(v, None, None, 1e-5)) <= LN_RTOL


def test_layer_norm_in_place_through_core(isa, rng):
    x = rng.standard_normal((5, 33)).astype(np.float32)
    res = rng.standard_normal((5, 33)).astype(np.float32)
    expected = T.reference_layer_norm(x + res, None, None, 1e-12)
    out = _core.layer_norm(x, None, None, 1e-12, residual=res, out=x)
    assert out is x
    assert relerr(x, expected) <= LN_RTOL
    with pytest.raises(ValueError, match="overlaps"):
        big = np.zeros((6, 33), np.float32)
        _core.layer_norm(big[1:], None, None, 1e-12, out=big[:5])


def test_layer_norm_non_finite_rows(isa, rng):
    x = rng.standard_normal((4, 19)).astype(np.float32)
    clean = T.layer_norm(x, None, None, 1e-12)
    x[1, 3], x[2, 0] = np.nan, np.inf
    y = T.layer_norm(x, None, None, 1e-12)
    assert np.isnan(y[1]).all() and np.isnan(y[2]).all()
    np.testing.assert_array_equal(y[[0, 3]], clean[[0, 3]])


# ---------------------------------------------------------------- GELU


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_float64(isa, rng, approximate):
    x = np.concatenate([rng.standard_normal(1001) * 4, np.linspace(-30, 30, 777), [0.0, -0.0, 1e-40, -1e-40]])
    x = x.astype(np.float32)
    y = T.gelu(x, approximate)
    ref = T.reference_gelu(x.astype(np.float64), approximate).astype(np.float64)
    if approximate == "none":  # the reference's 1 + erf cancels below -5: use erfc there
        neg = x < -5
        ref[neg] = [0.5 * v * math.erfc(-v / math.sqrt(2)) for v in x[neg].astype(np.float64)]
    assert np.all(np.abs(y - ref) <= GELU_RTOL_OF_X * np.abs(x) + 1e-38)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_non_finite_and_shapes(isa, approximate):
    x = np.array([np.nan, np.inf, -np.inf, 3e38, -3e38], np.float32)
    y = T.gelu(x, approximate)
    # x/2 (1 + f(x)) taken literally, as the float64 reference: inf -> inf, -inf -> -inf * 0 = NaN
    # (np.float32(3e38): numpy 1.x compares a float32 with a Python float in float64, where 3e38 rounds apart)
    assert np.isnan(y[0]) and y[1] == np.inf and np.isnan(y[2]) and y[3] == np.float32(3e38) and y[4] == 0
    for shape in [(), (0,), (1,), (7,), (3, 5), (2, 3, 17)]:
        a = np.full(shape, 0.5, np.float32)
        assert T.gelu(a, approximate).shape == shape
    strided = np.arange(40, dtype=np.float32).reshape(5, 8)[:, ::3] / 7
    np.testing.assert_array_equal(T.gelu(strided, approximate), T.gelu(np.ascontiguousarray(strided), approximate))


def test_gelu_in_place_through_core(isa, rng):
    x = rng.standard_normal(1000).astype(np.float32)
    expected = T.gelu(x)
    assert _core.gelu(x, "none", out=x) is x
    np.testing.assert_array_equal(x, expected)


# ---------------------------------------------------------------- attention


def attention_cases():
    rng = np.random.default_rng(13)
    cases = []
    for d in HEAD_DIMS:
        for _ in range(3):
            heads = int(rng.integers(1, 5)) if d < 64 else int(rng.integers(1, 3))
            s = int(rng.integers(0, 66)) * 2 + 1  # odd, 1..131
            t = int(rng.choice([s, int(rng.integers(0, 65)) * 2 + 1]))
            cases.append((int(rng.integers(1, 4)), s, t, heads, d))
    return cases


@pytest.mark.parametrize("b,s,t,heads,d", attention_cases())
@pytest.mark.parametrize("mask_kind", [None, "bt", "b11t"])
def test_attention_matches_float64(isa, rng, b, s, t, heads, d, mask_kind):
    hd = heads * d
    q = rng.standard_normal((b, s, hd)).astype(np.float32)
    k = rng.standard_normal((b, t, hd)).astype(np.float32)
    v = rng.standard_normal((b, t, hd)).astype(np.float32)
    mask = None if mask_kind is None else padding_mask(rng, b, t, mask_kind == "b11t")
    y = T.attention(q, k, v, heads, mask)
    assert y.shape == (b, s, hd) and y.dtype == np.float32
    ref = T.reference_attention(q, k, v, heads, mask)
    assert relerr(y, ref, np.abs(v).max()) <= ATTN_RTOL


@pytest.mark.parametrize("d", HEAD_DIMS)
def test_attention_strided_views_of_fused_qkv(isa, rng, d):
    heads = 3
    qkv, q, k, v = fused_qkv(rng, 2, 19, heads * d)
    mask = padding_mask(rng, 2, 19, True)
    y = T.attention(q, k, v, heads, mask, scale=0.3)
    copies = [np.ascontiguousarray(a) for a in (q, k, v)]
    np.testing.assert_array_equal(y, T.attention(*copies, heads, mask, scale=0.3))
    assert relerr(y, T.reference_attention(q, k, v, heads, mask, 0.3), np.abs(v).max()) <= ATTN_RTOL
    # other strides: batch-reversed, a sequence step of 2, a broadcast (stride 0) batch
    assert relerr(T.attention(q[::-1], k[::-1], v[::-1], heads), T.reference_attention(q[::-1], k[::-1], v[::-1], heads),
                  np.abs(v).max()) <= ATTN_RTOL
    q2, k2 = q[:, ::2], k[:, ::2]
    v2 = v[:, ::2]
    assert relerr(T.attention(q2, k2, v2, heads), T.reference_attention(q2, k2, v2, heads), np.abs(v).max()) <= ATTN_RTOL
    qb = np.broadcast_to(q[:1], q.shape)
    assert relerr(T.attention(qb, k, v, heads), T.reference_attention(qb, k, v, heads), np.abs(v).max()) <= ATTN_RTOL


def test_every_thread_count_gives_the_same_bits(rng, threads):
    qkv, q, k, v = fused_qkv(rng, 3, 77, 4 * 17)
    mask = padding_mask(rng, 3, 77, False)
    x = rng.standard_normal((3, 77, 384)).astype(np.float32)
    res = rng.standard_normal((3, 77, 384)).astype(np.float32)
    g = rng.standard_normal((3, 77, 1536)).astype(np.float32)
    outs = []
    for n in (1, 2, 3):
        threads(n)
        outs.append((T.attention(q, k, v, 4, mask), T.layer_norm(x, None, None, 1e-12, res), T.gelu(g),
                     T.gelu(g, "tanh")))
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("d", [32, 17, 8])  # 32: V read in place (whole vectors of 16); 17, 8: the padded copy
@pytest.mark.parametrize("s", [130, 61, 5])
def test_attention_query_blocks_follow_threads_not_bits(isa, rng, threads, d, s):
    """Few heads: the query rows split into blocks by the thread count (1 thread: 2 blocks of a
    head of 130 rows, 2 threads: 4, 3 threads: 5); every row is the same bits whatever its block,
    and matches float64 with a padding mask and 4 / 3 / 2 / 1 rows left at a block's end."""
    heads = 2
    qkv, q, k, v = fused_qkv(rng, 1, s, heads * d)
    mask = padding_mask(rng, 1, s, False)
    outs = []
    for n in (1, 2, 3):
        threads(n)
        outs.append(T.attention(q, k, v, heads, mask))
    assert relerr(outs[0], T.reference_attention(q, k, v, heads, mask), np.abs(v).max()) <= ATTN_RTOL
    for other in outs[1:]:
        np.testing.assert_array_equal(outs[0], other)


@pytest.mark.parametrize("t", [15, 16, 17, 31, 32, 33])
@pytest.mark.parametrize("d", [16, 17, 24])  # 16: V in place at every width; 17, 24: padded to 32
def test_attention_keys_around_the_vector_widths(isa, rng, threads, t, d):
    """Keys padded to kAttentionPad (16) whatever the ISA's width: the padded keys must weigh 0
    with and without a padding mask, on 1 and 2 threads (the same bits)."""
    heads = 3
    q = rng.standard_normal((2, 5, heads * d)).astype(np.float32)
    qkv, _, k, v = fused_qkv(rng, 2, t, heads * d)
    mask = padding_mask(rng, 2, t, False)
    for m in (None, mask):
        outs = []
        for n in (1, 2):
            threads(n)
            outs.append(T.attention(q, k, v, heads, m))
        assert relerr(outs[0], T.reference_attention(q, k, v, heads, m), np.abs(v).max()) <= ATTN_RTOL
        np.testing.assert_array_equal(outs[0], outs[1])


@pytest.mark.parametrize("s,heads,d,c", [(33, 4, 32, 384), (17, 3, 17, 385), (16, 2, 16, 31), (15, 1, 8, 47)])
def test_isas_agree(rng, s, heads, d, c):
    """Every ISA's kernels against the scalar twins: keys and channels on both sides of the
    vector widths (4, 8, 16), a padding mask, and non-finite values where they are."""
    qkv, q, k, v = fused_qkv(rng, 2, s, heads * d)
    mask = padding_mask(rng, 2, s, True)
    x = rng.standard_normal((2, s, c)).astype(np.float32)
    g = (rng.standard_normal((2, s, c)) * 4).astype(np.float32)
    at = np.arange(0, g.size, 7)
    g.flat[at] = np.resize(np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e30, -1e30], np.float32), at.size)
    results = {}
    previous = _core.get_isa()
    try:
        for name in _core.runnable_isas():
            _core.set_isa(name)
            kernels = _core.transformer_kernels()
            active = {kk["op"]: kk["isa"] for kk in kernels if kk["active"]}
            built = {(kk["op"], kk["isa"]) for kk in kernels}
            # the ISA's own kernel where it has one, else the next rung down (avx512 -> avx2 -> scalar)
            assert active == {op: kernel_isa_for(name, lambda i, op=op: (op, i) in built) for op in active}, active
            assert len(active) == 5
            results[name] = (T.attention(q, k, v, heads), T.attention(q, k, v, heads, mask),
                             T.layer_norm(x, None, None, 1e-12), T.gelu(g), T.gelu(g, "tanh"))
    finally:
        _core.set_isa(previous)
    base = results["scalar"]
    finite = np.isfinite(base[3])
    for name, r in results.items():
        for a, b in zip(r, base):
            np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=name)
            ok = np.isfinite(b)
            np.testing.assert_array_equal(a[~ok], b[~ok], err_msg=name)
            assert relerr(a[ok], b[ok]) <= ISA_RTOL, name
    assert not finite.all() and finite.any()  # the GELU inputs did carry NaN / inf


def test_pysparse_isa_env_selects_the_transformer_kernels(tmp_path):
    python = shlex.split(os.environ.get("PYSPARSE_TEST_PYTHON", "")) or [sys.executable]
    code = "from pysparse import _core; print(sorted({k['isa'] for k in _core.transformer_kernels() if k['active']}))"
    built = {k["isa"] for k in _core.transformer_kernels()}
    for name in [n for n in _core.runnable_isas() if n in built]:
        r = subprocess.run(python + ["-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                           env={**os.environ, "PYSPARSE_ISA": name})
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip().splitlines()[-1] == repr([name])


def test_attention_fully_masked_rows(isa, rng):
    q, k, v = (rng.standard_normal((2, 5, 12)).astype(np.float32) for _ in range(3))
    mask = np.zeros((2, 5), np.float32)
    mask[1] = FINFO_MIN  # every key of batch item 1 is padding: uniform weights (as torch)
    y = T.attention(q, k, v, 3, mask)
    np.testing.assert_allclose(y[1], np.broadcast_to(v[1].mean(axis=0), (5, 12)), atol=1e-6)
    assert relerr(y[0], T.reference_attention(q, k, v, 3, mask)[0], np.abs(v).max()) <= ATTN_RTOL
    mask[1] = -np.inf  # -inf everywhere: zeros, not NaN (torch's SDPA does the same)
    y = T.attention(q, k, v, 3, mask)
    assert np.all(y[1] == 0) and np.isfinite(y).all()


def test_attention_non_finite_inputs(isa, rng):
    q, k, v = (rng.standard_normal((1, 6, 8)).astype(np.float32) for _ in range(3))
    clean = T.attention(q, k, v, 2)
    qn = q.copy()
    qn[0, 2, 5] = np.nan  # head 1 of query row 2
    y = T.attention(qn, k, v, 2)
    assert np.isnan(y[0, 2, 4:]).all()
    nan_free = np.ones(y.shape, bool)
    nan_free[0, 2, 4:] = False
    np.testing.assert_array_equal(y[nan_free], clean[nan_free])
    kn = k.copy()
    kn[0, 3, 0] = np.nan  # a key of head 0: every row of head 0
    y = T.attention(q, kn, v, 2)
    assert np.isnan(y[0, :, :4]).all() and np.isfinite(y[0, :, 4:]).all()
    vn = v.copy()
    vn[0, 1, 6] = np.inf
    y = T.attention(q, k, vn, 2)
    assert np.isinf(y[0, :, 6]).all() and np.isfinite(np.delete(y, 6, axis=2)).all()


# ---------------------------------------------------------------- against torch


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("c", [1, 17, 32, 384])
def test_layer_norm_matches_torch(torch, isa, rng, c):
    F = torch.nn.functional
    x = torch.from_numpy(rng.standard_normal((2, 9, c)).astype(np.float32))
    res = torch.from_numpy(rng.standard_normal((2, 9, c)).astype(np.float32))
    w = torch.from_numpy(rng.standard_normal(c).astype(np.float32))
    b = torch.from_numpy(rng.standard_normal(c).astype(np.float32))
    y = T.layer_norm(x, w, b, 1e-12, res)
    assert isinstance(y, torch.Tensor)
    assert relerr(y.numpy(), F.layer_norm(x + res, (c,), w, b, 1e-12).numpy()) <= TORCH_LN_RTOL


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_torch(torch, isa, rng, approximate):
    F = torch.nn.functional
    x = torch.from_numpy(np.concatenate([rng.standard_normal(2000) * 4, np.linspace(-20, 20, 999)]).astype(np.float32))
    y = T.gelu(x, approximate)
    assert isinstance(y, torch.Tensor)
    t = F.gelu(x, approximate=approximate)
    assert torch.all((y - t).abs() <= TORCH_GELU_RTOL_OF_X * x.abs() + 1e-30)
    special = torch.tensor([float("nan"), float("-inf")])
    assert torch.isnan(T.gelu(special, approximate)).all() and torch.isnan(F.gelu(special, approximate=approximate)).all()
    # The one place we differ: torch's exact GELU gives NaN for +inf (its tanh form and the
    # definition give inf); ours follows the definition in both forms.
    assert T.gelu(torch.tensor([float("inf")]), approximate).item() == float("inf")


def _torch_sdpa(torch, q, k, v, heads, mask, scale=None):
    b, s, hd = q.shape
    d = hd // heads
    split = lambda a: a.reshape(a.shape[0], a.shape[1], heads, d).transpose(1, 2)  # noqa: E731
    m = None if mask is None else mask.reshape(b, 1, 1, -1)
    out = torch.nn.functional.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=m, scale=scale)
    return out.transpose(1, 2).reshape(b, s, hd)


@pytest.mark.parametrize("d", HEAD_DIMS)
@pytest.mark.parametrize("s", [1, 7, 33, 129])
def test_attention_matches_torch_sdpa(torch, isa, rng, d, s):
    heads, b = 2, 3
    qkv, q, k, v = fused_qkv(rng, b, s, heads * d)
    mask = padding_mask(rng, b, s, True)
    qt, kt, vt = (torch.from_numpy(np.asarray(a)) for a in (q, k, v))  # strided tensor views
    mt = torch.from_numpy(mask)
    y = T.attention(qt, kt, vt, heads, mt)
    assert isinstance(y, torch.Tensor)
    ref = _torch_sdpa(torch, qt, kt, vt, heads, mt)
    assert relerr(y.numpy(), ref.numpy(), np.abs(v).max()) <= TORCH_ATTN_RTOL


def test_attention_masks_and_non_finite_like_torch(torch, isa, rng):
    q, k, v = (torch.from_numpy(rng.standard_normal((2, 5, 8)).astype(np.float32)) for _ in range(3))
    for fill in (FINFO_MIN, float("-inf")):
        mask = torch.zeros(2, 5)
        mask[1] = fill
        ours, theirs = T.attention(q, k, v, 2, mask), _torch_sdpa(torch, q, k, v, 2, mask)
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    # NaN in a query: NaN in its row of that head, as torch's math backend and eager softmax
    # (Hugging Face's "eager" attention). torch's default CPU flash kernel returns zeros for
    # such a row instead, silently; we do not copy that.
    from torch.nn.attention import SDPBackend, sdpa_kernel

    qn = q.clone()
    qn[1, 3, 2] = float("nan")
    ours = T.attention(qn, k, v, 2)
    with sdpa_kernel(SDPBackend.MATH):
        theirs = _torch_sdpa(torch, qn, k, v, 2, None)
    assert torch.isnan(ours[1, 3, :4]).all()
    assert torch.equal(torch.isnan(ours), torch.isnan(theirs))


# ---------------------------------------------------------------- bad input


def test_bad_input_layer_norm():
    x = np.ones((2, 4), np.float32)
    with pytest.raises(TypeError, match="float32"):
        T.layer_norm(x.astype(np.float64), None, None, 1e-5)
    with pytest.raises(TypeError, match="numpy array or a torch tensor"):
        T.layer_norm([[1.0]], None, None, 1e-5)
    with pytest.raises(ValueError, match="weight must have shape \\(4,\\)"):
        T.layer_norm(x, np.ones(3, np.float32), None, 1e-5)
    with pytest.raises(ValueError, match="bias must have shape"):
        T.layer_norm(x, None, np.ones((1, 4), np.float32), 1e-5)
    with pytest.raises(TypeError, match="float32"):
        T.layer_norm(x, np.ones(4), None, 1e-5)
    with pytest.raises(ValueError, match="residual must have x's shape"):
        T.layer_norm(x, None, None, 1e-5, np.ones((2, 5), np.float32))
    for eps in (-1.0, float("nan"), float("inf"), 1e39):
        with pytest.raises(ValueError, match="eps must be a finite non-negative"):
            T.layer_norm(x, None, None, eps)
    with pytest.raises(TypeError, match="eps must be a real number"):
        T.layer_norm(x, None, None, "1e-5")
    with pytest.raises(ValueError, match="at least one axis"):
        T.layer_norm(np.ones((), np.float32), None, None, 1e-5)
    with pytest.raises(ValueError, match="must not be empty"):
        T.layer_norm(np.ones((3, 0), np.float32), None, None, 1e-5)
    with pytest.raises(ValueError, match="writable"):
        ro = np.ones((2, 4), np.float32)
        ro.flags.writeable = False
        _core.layer_norm(x, None, None, 1e-5, out=ro)
    with pytest.raises(ValueError, match="threads must be between"):
        _core.layer_norm(x, None, None, 1e-5, threads=-1)


def test_bad_input_gelu():
    with pytest.raises(ValueError, match="'none' or 'tanh'"):
        T.gelu(np.ones(3, np.float32), "erf")
    with pytest.raises(TypeError, match="'none' or 'tanh'"):
        T.gelu(np.ones(3, np.float32), None)
    with pytest.raises(TypeError, match="float32"):
        T.gelu(np.ones(3, np.float16))
    with pytest.raises(ValueError, match="out must have the input's shape"):
        _core.gelu(np.ones(3, np.float32), out=np.ones(4, np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.gelu(np.ones(3, np.float32), out=np.ones(6, np.float32)[::2])
    with pytest.raises(ValueError, match="overlaps"):
        buf = np.ones(8, np.float32)
        _core.gelu(buf[1:], out=buf[:7])


def test_bad_input_attention():
    q = np.ones((2, 3, 8), np.float32)
    k = np.ones((2, 5, 8), np.float32)
    with pytest.raises(TypeError, match="float32"):
        T.attention(q.astype(np.float64), k, k, 2)
    with pytest.raises(ValueError, match="3-D"):
        T.attention(q[0], k, k, 2)
    with pytest.raises(ValueError, match="shapes do not fit"):
        T.attention(q, k[:1], k[:1], 2)
    with pytest.raises(ValueError, match="shapes do not fit"):
        T.attention(q, k, k[:, :4], 2)
    with pytest.raises(ValueError, match="shapes do not fit"):
        T.attention(q, k[..., :4], k[..., :4], 2)
    with pytest.raises(ValueError, match="must divide"):
        T.attention(q, k, k, 3)
    with pytest.raises(ValueError, match="num_heads must be between"):
        T.attention(q, k, k, 0)
    with pytest.raises(TypeError, match="num_heads must be an int"):
        T.attention(q, k, k, 2.0)
    with pytest.raises(ValueError, match="at least one key"):
        T.attention(q, k[:, :0], k[:, :0], 2)
    with pytest.raises(ValueError, match=r"mask must have shape \(B, T\) = \(2, 5\)"):
        T.attention(q, k, k, 2, np.zeros((2, 1, 5), np.float32))
    with pytest.raises(ValueError, match="mask must have shape"):
        T.attention(q, k, k, 2, np.zeros((1, 5), np.float32))
    with pytest.raises(TypeError, match="additive float32 mask"):
        T.attention(q, k, k, 2, np.ones((2, 5), bool))
    with pytest.raises(ValueError, match="scale must be a finite"):
        T.attention(q, k, k, 2, None, float("nan"))
    with pytest.raises(TypeError, match="scale must be a real number"):
        T.attention(q, k, k, 2, None, "0.5")
    assert T.attention(q[:, :0], k, k, 2).shape == (2, 0, 8)
    assert T.attention(q[:0], k[:0], k[:0], 2).shape == (0, 3, 8)
