"""Distributions of hp's quantized and log kinds, scipy-style (hyperopt's ``rdists`` module).

``loguniform_gen(low, high)`` is a scipy ``rv_continuous`` of ``exp(U(low, high))``;
``lognorm_gen(mu, sigma)`` is scipy's lognormal of ``exp(N(mu, sigma))``; the quantized kinds
(``quniform_gen``, ``qloguniform_gen``, ``qnormal_gen``, ``qlognormal_gen``) have ``pmf``,
``logpmf`` and ``rvs``. Values are hyperopt's: a quantized value ``v`` has the probability mass
of the pre-rounding values that round to it. ``pmf``/``logpmf`` return an array for an ndarray
argument and a float otherwise; ``rvs`` draws from ``random_state`` (default: numpy's global
generator, as hyperopt).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

__all__ = ["loguniform_gen", "lognorm_gen", "quniform_gen", "qloguniform_gen", "qnormal_gen",
           "qlognormal_gen", "qtable_pmf", "qtable_logpmf", "safe_int_cast"]


def safe_int_cast(obj: Any) -> Any:
    """``int`` of a scalar, element-wise ``int`` of an array or list."""
    if isinstance(obj, np.ndarray):
        return obj.astype("int")
    if isinstance(obj, list):
        return [int(i) for i in obj]
    return int(obj)


def _shaped(x: Any, values: np.ndarray) -> Any:
    return values.reshape(np.shape(x)) if isinstance(x, np.ndarray) else float(values[0])


def _log(p: np.ndarray) -> np.ndarray:
    out = np.full(p.shape, -np.inf)
    out[p > 0] = np.log(p[p > 0])
    return out


def _quantize(draw: Any, q: float) -> Any:
    return safe_int_cast(np.round(np.asarray(draw) / q) if isinstance(draw, np.ndarray) else round(draw / q)) * q


def _global(random_state: Any) -> Any:
    return np.random.mtrand._rand if random_state is None else random_state


def qtable_pmf(x: Any, q: float, qlow: float, xs: Any, ps: Any) -> Any:
    """The mass ``ps[i]`` of the table value ``xs[i] = qlow + i*q`` that ``x`` equals (0 elsewhere)."""
    x1 = np.atleast_1d(np.asarray(x, dtype=float))
    qx = np.round(x1 / q) * q
    ix = np.round((qx - qlow) / q).astype(int)
    ok = np.isclose(qx, x1) & (ix >= 0) & (ix < len(ps))
    out = np.zeros(x1.shape)
    out[ok] = np.asarray(ps)[ix[ok]]
    return _shaped(x, out)


def qtable_logpmf(x: Any, q: float, qlow: float, xs: Any, ps: Any) -> Any:
    p = np.atleast_1d(qtable_pmf(np.atleast_1d(np.asarray(x, dtype=float)), q, qlow, xs, ps))
    return _shaped(x, _log(p))


class loguniform_gen(stats.rv_continuous):  # noqa: N801 - hyperopt's name
    """``Y = exp(X)``, ``X ~ U(low, high)``: support ``[e^low, e^high]``."""

    def __init__(self, low: float = 0, high: float = 1):
        super().__init__(a=np.exp(low), b=np.exp(high))
        self._low, self._high = low, high

    def _rvs(self, *args: Any, size: Any = None, random_state: Any = None) -> Any:
        return np.exp(_global(random_state).uniform(self._low, self._high, size))

    def _pdf(self, x: Any) -> Any:
        return 1.0 / (x * (self._high - self._low))

    def _logpdf(self, x: Any) -> Any:
        return -np.log(x) - np.log(self._high - self._low)

    def _cdf(self, x: Any) -> Any:
        return (np.log(x) - self._low) / (self._high - self._low)


class lognorm_gen:  # noqa: N801
    """``Y = exp(X)``, ``X ~ N(mu, sigma)``: scipy's ``lognorm(s=sigma, scale=e^mu)`` (pdf, cdf, rvs, ...)."""

    def __init__(self, mu: float, sigma: float):
        self.mu_, self.s_ = mu, sigma
        self._dist = stats.lognorm(sigma, scale=np.exp(mu))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._dist, name)


class quniform_gen:  # noqa: N801
    """``Y = q * round(X / q)``, ``X ~ U(low, high)``: a table of values ``xs`` and masses ``ps``."""

    def __init__(self, low: float, high: float, q: float):
        low, high = float(low), float(high)
        qlow = safe_int_cast(np.round(low / q)) * q
        qhigh = safe_int_cast(np.round(high / q)) * q
        if qlow == qhigh:
            xs, ps = np.array([qlow]), np.array([1.0])
        else:
            xs = np.arange(qlow, qhigh + 0.5 * q, q)
            # mass of each value: the part of [low, high] that rounds to it
            width = np.clip(xs + 0.5 * q, low, high) - np.clip(xs - 0.5 * q, low, high)
            ps = width / width.sum()
        self.low, self.high, self.q, self.qlow, self.qhigh = low, high, q, qlow, qhigh
        self.xs, self.ps = np.asarray(xs), np.asarray(ps)

    def pmf(self, x: Any) -> Any:
        return qtable_pmf(x, self.q, self.qlow, self.xs, self.ps)

    def logpmf(self, x: Any) -> Any:
        return qtable_logpmf(x, self.q, self.qlow, self.xs, self.ps)

    def rvs(self, size: Any = (), random_state: Any = None) -> Any:
        return _quantize(_global(random_state).uniform(low=self.low, high=self.high, size=size), self.q)


class qloguniform_gen(quniform_gen):  # noqa: N801
    """``Y = q * round(exp(X) / q)``, ``X ~ U(low, high)``."""

    def __init__(self, low: float, high: float, q: float):
        low, high = float(low), float(high)
        elow, ehigh = np.exp(low), np.exp(high)
        qlow = safe_int_cast(np.round(elow / q)) * q
        qhigh = safe_int_cast(np.round(ehigh / q)) * q
        n = 1 + max(0, int(np.ceil((ehigh - 1e-10 - (qlow + 0.5 * q)) / q)))
        uppers = np.minimum(qlow + 0.5 * q + q * np.arange(n), ehigh)
        cdf = loguniform_gen(low=low, high=high).cdf(uppers)
        ps = np.diff(np.concatenate([[0.0], cdf]))
        self.low, self.high, self.q, self.qlow, self.qhigh = low, high, q, qlow, qhigh
        self.xs = qlow + q * np.arange(n)
        self.ps = ps / ps.sum()

    def rvs(self, size: Any = (), random_state: Any = None) -> Any:
        return _quantize(np.exp(_global(random_state).uniform(low=self.low, high=self.high, size=size)), self.q)


class qnormal_gen:  # noqa: N801
    """``Y = q * round(X / q)``, ``X ~ N(mu, sigma)``."""

    def __init__(self, mu: float, sigma: float, q: float):
        self.mu, self.sigma = float(mu), float(sigma)
        self.q = q
        self._norm = stats.norm(loc=self.mu, scale=self.sigma)

    def in_domain(self, x: Any) -> Any:
        return np.isclose(x, safe_int_cast(np.round(np.asarray(x) / self.q)) * self.q)

    def pmf(self, x: Any) -> Any:
        return np.exp(self.logpmf(x))

    def logpmf(self, x: Any) -> Any:
        x1 = np.atleast_1d(np.asarray(x, dtype=float))
        out = np.full(x1.shape, -np.inf)
        ok = self.in_domain(x1)
        lo, hi = x1[ok] - 0.5 * self.q, x1[ok] + 0.5 * self.q
        with np.errstate(divide="ignore"):
            # right of mu, subtract survival functions; left of it, cdfs (no cancellation either way)
            right = lo > self.mu
            a = np.where(right, self._norm.logsf(lo), self._norm.logcdf(hi))
            b = np.where(right, self._norm.logsf(hi), self._norm.logcdf(lo))
            out[ok] = a + np.log1p(-np.exp(b - a))
        return out if isinstance(x, np.ndarray) else float(out[0])

    def rvs(self, size: Any = (), random_state: Any = None) -> Any:
        return _quantize(_global(random_state).normal(loc=self.mu, scale=self.sigma, size=size), self.q)


class qlognormal_gen:  # noqa: N801
    """``Y = q * round(exp(X) / q)``, ``X ~ N(mu, sigma)``."""

    def __init__(self, mu: float, sigma: float, q: float):
        self.mu, self.sigma = float(mu), float(sigma)
        self.q = q
        self._norm = stats.norm(loc=self.mu, scale=self.sigma)

    def in_domain(self, x: Any) -> Any:
        x = np.asarray(x)
        return (x >= 0) & np.isclose(x, safe_int_cast(np.round(x / self.q)) * self.q)

    def pmf(self, x: Any) -> Any:
        x1 = np.atleast_1d(np.asarray(x, dtype=float))
        out = np.zeros(x1.shape)
        ok = self.in_domain(x1)
        v = x1[ok]
        with np.errstate(divide="ignore"):
            lower = np.where(v > 0, self._norm.cdf(np.log(np.maximum(v - 0.5 * self.q, 1e-300))), 0.0)
            out[ok] = self._norm.cdf(np.log(v + 0.5 * self.q)) - lower
        return out if isinstance(x, np.ndarray) else float(out[0])

    def logpmf(self, x: Any) -> Any:
        p = np.atleast_1d(self.pmf(np.atleast_1d(np.asarray(x, dtype=float))))
        out = _log(p)
        return out if isinstance(x, np.ndarray) else float(out[0])

    def rvs(self, size: Any = (), random_state: Any = None) -> Any:
        return _quantize(np.exp(_global(random_state).normal(loc=self.mu, scale=self.sigma, size=size)), self.q)
