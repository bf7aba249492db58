"""Normal CDF helpers for truncated and cell-integrated Gaussian kernels.

This is the only module of the TPE package that imports scipy (``scipy.special``'s
vectorised ``ndtr``/``ndtri``/``log_ndtr``). Everything works elementwise on broadcastable
arrays, so a whole batch of kernels is handled by one call.
"""
from __future__ import annotations

import numpy as np
from scipy.special import log_ndtr, ndtr, ndtri

__all__ = ["ndtr", "ndtri", "log_ndtr", "log_gauss_mass", "sample_standard"]


def log_gauss_mass(a: np.ndarray, b: np.ndarray, exact_tails: bool = True) -> np.ndarray:
    """``log(Phi(b) - Phi(a))`` for ``a < b`` (standardised), accurate in both tails.

    Intervals in the upper tail are mirrored into the lower tail. The plain CDF difference is
    used where it is large enough to be exact to many digits; the rest (tiny masses far in a
    tail) go through ``log Phi(b) + log1p(-Phi(a)/Phi(b))`` with ``log_ndtr``. With
    ``exact_tails=False`` masses below 1e-300 are floored there instead (for mixture kernels,
    whose sum always holds a non-negligible prior term).
    """
    a, b = np.broadcast_arrays(np.asarray(a, dtype=float), np.asarray(b, dtype=float))
    flip = a > 0
    lo = np.where(flip, -b, a)
    hi = np.where(flip, -a, b)
    mass = ndtr(hi) - ndtr(lo)
    if not exact_tails:
        return np.log(np.maximum(mass, 1e-300))
    small = mass < 1e-8
    with np.errstate(divide="ignore"):
        out = np.log(mass)
    if small.any():
        lb = log_ndtr(hi[small])
        la = log_ndtr(lo[small])
        with np.errstate(under="ignore"):
            ratio = np.exp(la - lb)
        # a == b would give log(0); callers never pass empty intervals, guard anyway
        out[small] = lb + np.log1p(-np.minimum(ratio, 1.0 - 1e-16))
    return out


def sample_standard(a: np.ndarray, b: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draws of a standard normal truncated to ``[a, b]`` from uniforms ``u``.

    Intervals in the upper tail are mirrored so the CDF differences keep their precision.
    """
    a, b, u = np.broadcast_arrays(np.asarray(a, dtype=float), np.asarray(b, dtype=float),
                                  np.asarray(u, dtype=float))
    flip = a > 0
    lo = np.where(flip, -b, a)
    hi = np.where(flip, -a, b)
    pa = ndtr(lo)
    pb = ndtr(hi)
    p = pa + u * (pb - pa)
    p = np.clip(p, np.nextafter(0.0, 1.0), 1.0 - 1e-16)
    z = ndtri(p)
    z = np.clip(z, lo, hi)
    return np.where(flip, -z, z)
