"""Batched kernels and mixtures: arrays over many (parameter, component) pairs at once.

Shapes follow one convention: a leading batch axis ``B`` (parameters, or dimensions of a joint
estimator), ``K`` components and ``C`` query points. Component arrays are ``(B, K)``, query
arrays ``(B, C)`` and kernel matrices ``(B, C, K)``. Padding components carry weight 0 and are
ignored. No Python loop runs over components or query points.
"""
from __future__ import annotations

import math

import numpy as np

from ._truncnorm import log_gauss_mass, ndtr, ndtri, sample_standard  # noqa: F401 (ndtri: parzen)

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def logsumexp(a: np.ndarray, axis: int = -1, overwrite: bool = False) -> np.ndarray:
    """``log(sum(exp(a)))`` along ``axis``; all ``-inf`` gives ``-inf`` without warnings.

    ``overwrite=True`` works in ``a``'s memory (a large scratch array of the caller's): no
    temporaries of ``a``'s size, which on big batches cost more than the arithmetic.
    """
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(under="ignore", divide="ignore"):
        if overwrite:
            a -= m
            e = np.exp(a, out=a)
        else:
            e = np.exp(a - m)
        s = np.sum(e, axis=axis, keepdims=True)
        out = np.log(s) + m
    return np.squeeze(out, axis=axis)


def unique_inverse(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values of a NaN-free 1-D array and each element's index among them:
    ``np.unique(v, return_inverse=True)`` without its fixed cost, which dominates on the
    small arrays scored per suggestion."""
    s = np.sort(v)
    first = np.empty(s.size, dtype=bool)
    first[:1] = True
    np.not_equal(s[1:], s[:-1], out=first[1:])
    u = s[first]
    return u, np.searchsorted(u, v)


def log_weights(w: np.ndarray) -> np.ndarray:
    """Normalised log weights along the last axis (zero weights → ``-inf``)."""
    w = np.asarray(w, dtype=float)
    tot = w.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore"):
        return np.log(w) - np.log(tot)


def log_truncation(mu: np.ndarray, sigma: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """log of each kernel's mass inside ``[low, high]`` (``low``/``high`` broadcast as ``(B, 1)``).

    Kernels centred inside the bounds (every kernel the estimators build: observations are
    clipped to the support) keep at least half their mass, so the plain CDF difference is
    exact there; others go through the tail-accurate :func:`log_gauss_mass`.
    """
    with np.errstate(invalid="ignore"):
        a = (low - mu) / sigma
        b = (high - mu) / sigma
    if not (a <= 0).all() or not (b >= 0).all():
        return log_gauss_mass(a, b)
    return np.log(ndtr(b) - ndtr(a))


def log_kernel_density(x: np.ndarray, mu: np.ndarray, sigma: np.ndarray,
                       log_z: np.ndarray) -> np.ndarray:
    """Truncated-normal log densities: ``x (B, C)`` against kernels ``(B, K)`` → ``(B, C, K)``."""
    z = (x[:, :, None] - mu[:, None, :]) / sigma[:, None, :]
    return -0.5 * z * z - np.log(sigma)[:, None, :] - _LOG_SQRT_2PI - log_z[:, None, :]


def log_kernel_mass(a: np.ndarray, b: np.ndarray, mu: np.ndarray, sigma: np.ndarray,
                    log_z: np.ndarray) -> np.ndarray:
    """log probability of the cells ``[a, b]`` (``(B, C)``) under truncated kernels → ``(B, C, K)``."""
    s = sigma[:, None, :]
    za = (a[:, :, None] - mu[:, None, :]) / s
    zb = (b[:, :, None] - mu[:, None, :]) / s
    return log_gauss_mass(za, zb, exact_tails=False) - log_z[:, None, :]


def sum_log_cell_mass(cells, mu: np.ndarray, sigma: np.ndarray, log_z: np.ndarray) -> np.ndarray:
    """Sum over quantized dimensions of the log cell masses of points under kernels ``(B, K)``
    → ``(C, K)``. ``cells`` holds per dimension ``(a, b, inv)``: the internal bounds of the
    *distinct* cells and each point's cell index. The normal CDF is evaluated once per
    distinct cell edge (neighbouring cells share one) and the log once per distinct cell, so
    the cost follows the number of distinct values, not of points. Masses below ~1e-16 of a
    kernel are floored at 1e-300 (every mixture also holds the prior component)."""
    out: np.ndarray | None = None
    for j, (a, b, inv) in enumerate(cells):
        U = a.size
        edges, ei = unique_inverse(np.concatenate([a, b]))
        P = ndtr((edges[:, None] - mu[j]) / sigma[j])  # (E, K)
        mass = P[ei[U:]]
        mass -= P[ei[:U]]
        np.maximum(mass, 1e-300, out=mass)
        np.log(mass, out=mass)
        mass -= log_z[j]
        m = mass[inv]
        if out is None:
            out = m
        else:
            out += m
    assert out is not None, "no quantized dimension"  # a kind group has at least one column
    return out


def mixture_log_pdf(log_kern: np.ndarray, log_w: np.ndarray) -> np.ndarray:
    """Mixture log density from ``(B, C, K)`` kernel values and ``(B, K)`` log weights → ``(B, C)``.

    ``log_kern`` (always a fresh kernel matrix) is used as scratch space and overwritten.
    """
    log_kern += log_w[:, None, :]
    return logsumexp(log_kern, axis=-1, overwrite=True)


def choose_components(rng: np.random.Generator, w: np.ndarray, n: int) -> np.ndarray:
    """``n`` component indices per batch row, drawn with probabilities ``w (B, K)`` → ``(B, n)``."""
    cum = np.cumsum(w, axis=-1)
    cum /= cum[:, -1:]
    u = rng.random((w.shape[0], n))
    idx = (u[:, :, None] >= cum[:, None, :]).sum(axis=-1)
    return np.minimum(idx, w.shape[1] - 1)


def sample_truncnorm(rng: np.random.Generator, mu: np.ndarray, sigma: np.ndarray,
                     low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """One draw per element of ``mu``/``sigma`` from the normal truncated to ``[low, high]``."""
    with np.errstate(invalid="ignore"):  # inf bounds
        a = (low - mu) / sigma
        b = (high - mu) / sigma
    u = rng.random(np.shape(mu))
    x = mu + sigma * sample_standard(a, b, u)
    return np.clip(x, low, high)
