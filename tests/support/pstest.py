"""Helpers shared by the tests (importable because pyproject puts tests/support on sys.path)."""

from __future__ import annotations

import os
import shlex
import sys

import numpy as np

# Named tolerances (relative to the largest |reference| entry of a result).
# float32 accumulation over K terms, checked against a float64 reference.
F32_SUM_RTOL = 2e-5
# Two float32 paths (SIMD vs scalar twin) summing in different orders.
F32_PATHS_RTOL = 1e-5


def random_sparse(rng, shape, density, *, block=(1, 1), empty_rows=0):
    """A float32 matrix with the given density of nonzero (R, C) blocks."""
    m, k = shape
    r, c = block
    a = rng.standard_normal((m, k)).astype(np.float32)
    if density >= 1.0:
        return a
    keep = rng.random(((m + r - 1) // r, (k + c - 1) // c)) < density
    mask = np.kron(keep, np.ones((r, c), dtype=bool))[:m, :k]
    a[~mask] = 0.0
    if empty_rows:
        a[rng.choice(m, size=min(empty_rows, m), replace=False)] = 0.0
    return a


def relerr(y, ref):
    y = np.asarray(y, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if ref.size == 0:
        return 0.0
    return float(np.max(np.abs(y - ref)) / max(np.max(np.abs(ref)), 1e-30))


def random_nm(rng, shape, n, m, fill=1.0):
    """A float32 matrix whose rows keep at most n of every m consecutive weights
    (exactly n where fill == 1; fewer, down to none, as fill drops)."""
    rows, cols = shape
    groups = -(-cols // m)
    # Rank m random keys per (row, group); keep the n smallest that exist.
    keys = rng.random((rows, groups, m))
    keys.reshape(rows, -1)[:, cols:] = np.inf  # columns past K never win
    ranks = keys.argsort(axis=2).argsort(axis=2)
    keep = (ranks < n) & np.isfinite(keys) & (rng.random(keys.shape) < fill)
    keep = keep.reshape(rows, -1)[:, :cols]
    a = rng.standard_normal((rows, cols)).astype(np.float32)
    a[~keep] = 0.0
    return a


def pair(v):
    """(v, v) for an int, else v as a tuple: conv hyper-parameters."""
    return (v, v) if isinstance(v, int) else tuple(v)


def numpy_conv(x, w4, bias, stride, padding, dilation, groups):
    """A float64 convolution by kernel taps: obviously right, slow, torch-free."""
    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    n, _, hp, wp = xp.shape
    cout, cg, kh, kw = w4.shape
    ho, wo = (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1
    og = cout // groups
    y = np.zeros((n, cout, ho, wo))
    for g in range(groups):
        for i in range(kh):
            for j in range(kw):
                rows = slice(i * dh, i * dh + sh * (ho - 1) + 1, sh)
                cols = slice(j * dw, j * dw + sw * (wo - 1) + 1, sw)
                patch = xp[:, g * cg : (g + 1) * cg, rows, cols]
                y[:, g * og : (g + 1) * og] += np.einsum("oc,nchw->nohw", w4[g * og : (g + 1) * og, :, i, j], patch)
    if bias is not None:
        y += bias[:, None, None]
    return y


def python_command() -> list[str]:
    """The interpreter for tests that run code in a child process: PYSPARSE_TEST_PYTHON when set
    (the aarch64 job: the arm64 interpreter under qemu; the host's sys.executable is x86-64 there),
    else this one."""
    return shlex.split(os.environ.get("PYSPARSE_TEST_PYTHON", "")) or [sys.executable]


# dispatch.h's isa_fallback, written out: the rungs a slot without a kernel of its own falls
# down, best first (avx512 -> avx2 -> scalar, neon -> scalar).
ISA_FALLBACK = {"avx512": "avx2", "avx2": "scalar", "neon": "scalar", "scalar": None}


def isa_chain(isa: str) -> list[str]:
    """``isa`` and the ISAs below it that its empty kernel slots fall back to, best first."""
    out = []
    while isa is not None:
        out.append(isa)
        isa = ISA_FALLBACK[isa]
    return out


def kernel_isa_for(isa: str, has) -> str:
    """The ISA whose kernel runs a slot at ``isa``: the first rung down the chain that ``has`` one."""
    return next(i for i in isa_chain(isa) if has(i))


def make_matrix(rng, shape, fmt, density=0.3):
    """A random sparse matrix in ``fmt``: "csr", "sell", "nm" (2:4) or an (R, C) BSR block."""
    import pysparse as ps

    if fmt == "nm":
        return ps.NMMatrix.from_dense(random_nm(rng, shape, 2, 4), (2, 4))
    if fmt == "sell":
        return ps.SELLMatrix.from_dense(random_sparse(rng, shape, density))
    if fmt == "csr":
        return ps.CSRMatrix.from_dense(random_sparse(rng, shape, density))
    return ps.BSRMatrix.from_dense(random_sparse(rng, shape, density, block=fmt), block=fmt)
