"""Prints the polynomial coefficients of csrc/kernels/vmath.inl (exp, erf, GELU's rational erf).

Least squares on Chebyshev nodes, reweighted 30 times toward the minimax (equal-ripple)
solution; the error printed is the fit's in exact arithmetic (float32 evaluation adds its own,
measured by csrc/tests/test_transformer_kernels.cc). numpy only.

    python scripts/fit_vmath.py
"""

from __future__ import annotations

import math

import numpy as np

erf = np.vectorize(math.erf)
erfc = np.vectorize(math.erfc)


def cheb(a: float, b: float, n: int) -> np.ndarray:
    k = np.arange(n)
    return (a + b) / 2 + (b - a) / 2 * np.cos(np.pi * (k + 0.5) / n)


def fit(xs, f, basis, weight, iters=30):
    """Coefficients c minimising max |(basis(xs) @ c - f) * weight| (approximately)."""
    a = basis(xs)
    w = np.ones_like(xs)
    for _ in range(iters):
        c, *_ = np.linalg.lstsq(a * (w * weight)[:, None], f * w * weight, rcond=None)
        e = np.abs((a @ c - f) * weight)
        w = w * (e / e.max()) ** 0.3 + 1e-12
        w /= w.max()
    return c, float(np.abs((a @ c - f) * weight).max())


def show(name, c, err):
    print(f"{name}: max error {err:.3g}\n  " + ", ".join(f"{v:.9e}f" for v in c))


def main() -> None:
    h = math.log(2) / 2  # exp(r) = 1 + r + r^2 Q(r), |r| <= ln2/2, relative error
    r = cheb(-h, h, 4000)
    show("exp: Q(r), lowest power first", *fit(r, (np.exp(r) - 1 - r) / r**2, lambda x: np.vander(x, 5, True),
                                               r**2 / np.exp(r)))
    split = 0.921875  # erf(z) = z P(z^2) below the split
    z = cheb(0, split, 4000)
    show("erf small: P(z^2)", *fit(z, erf(z) / z, lambda x: np.vander(x * x, 7, True), np.ones_like(z)))
    a = cheb(split, 10.0, 6000)  # erfc(a) = exp(-a^2) R(1 / (1 + a/2)) above it, relative error
    big_r = erfc(a) * np.exp(a * a)
    show("erf tail: R(t), t = 1/(1 + a/2)", *fit(a, big_r, lambda x: np.vander(1 / (1 + 0.5 * x), 9, True), 1 / big_r))
    clamp, dp, dq = 3.8, 6, 5  # GELU's erf(z) = z P(z^2) / Q(z^2), Q(0) = 1, on |z| <= 3.8, absolute error
    p, q, err = fit_rational(cheb(0, clamp, 6000), erf, dp, dq)
    show("gelu erf: P(z^2), lowest power first", p, err)
    show("gelu erf: Q(z^2), lowest power first", q, err)


def fit_rational(xs, f, dp, dq, iters=60):
    """Odd P / even Q (Q(0) = 1) in x: f ~ x P(x^2) / Q(x^2), linearised as x P - f (Q - 1) = f and
    reweighted toward equal ripple; returns P's and Q's coefficients and the max absolute error."""
    fx = f(xs)
    w, big_q = np.ones_like(xs), np.ones_like(xs)
    for _ in range(iters):
        a = np.concatenate([xs[:, None] * np.vander(xs * xs, dp, True), -fx[:, None] * np.vander(xs * xs, dq + 1, True)[:, 1:]], 1)
        c, *_ = np.linalg.lstsq(a * (w / big_q)[:, None], fx * w / big_q, rcond=None)
        p, q = c[:dp], np.concatenate([[1.0], c[dp:]])
        big_q = np.vander(xs * xs, dq + 1, True) @ q
        e = np.abs(xs * (np.vander(xs * xs, dp, True) @ p) / big_q - fx)
        w = w * (e / e.max()) ** 0.3 + 1e-12
        w /= w.max()
    return p, q, float(e.max())

if __name__ == "__main__":
    main()
