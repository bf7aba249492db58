"""Acquisition criteria for Bayesian optimization (hyperopt's ``criteria`` module).

Each scores a Gaussian prediction ``N(mean, var)`` (or samples of it) against a threshold
``thresh``, for *maximizing* the predicted quantity as hyperopt does: EI = E[max(X - thresh, 0)],
PI = P(X > thresh), UCB = mean + zscore * sd. Vectorized over numpy arrays.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy import special, stats

__all__ = ["EI_empirical", "EI_gaussian_empirical", "EI_gaussian", "logEI_gaussian", "UCB",
           "PI_empirical", "PI_gaussian"]


def EI_empirical(samples: Any, thresh: float) -> float:  # noqa: N802 - hyperopt's name
    """Expected improvement over ``thresh`` estimated from ``samples``."""
    return float(np.maximum(np.asarray(samples) - thresh, 0).mean())


def EI_gaussian_empirical(mean: float, var: float, thresh: float, rng: np.random.Generator, N: int) -> float:  # noqa: N802,N803
    """Expected improvement of N(mean, var) over ``thresh`` from ``N`` draws of ``rng``."""
    return EI_empirical(rng.standard_normal(N) * np.sqrt(var) + mean, thresh)


def EI_gaussian(mean: Any, var: Any, thresh: Any) -> Any:  # noqa: N802
    """Expected improvement of N(mean, var) over ``thresh`` (closed form)."""
    sigma = np.sqrt(var)
    z = (np.asarray(mean) - thresh) / sigma
    return sigma * (z * stats.norm.cdf(z) + stats.norm.pdf(z))


def logEI_gaussian(mean: Any, var: Any, thresh: Any) -> Any:  # noqa: N802
    """``log(EI_gaussian(mean, var, thresh))``, accurate far below the threshold (no underflow)."""
    var = np.asarray(var, dtype=float)
    if var.min() < 0:
        raise ValueError("var must be non-negative")
    sigma = np.sqrt(var)
    z = np.asarray((np.asarray(mean, dtype=float) - thresh) / sigma, dtype=float)
    with np.errstate(all="ignore"):
        # EI/sigma = phi(z) + z Phi(z) = phi(z) * (1 - r) with r = -z Phi(z) / phi(z) for z < 0
        log_phi = stats.norm.logpdf(z)
        r = np.exp(np.log(-np.minimum(z, -1e-300)) + special.log_ndtr(z) - log_phi)
        neg = np.log(sigma) + log_phi + np.log1p(-r)
        pos = np.log(sigma) + np.log(z * stats.norm.cdf(z) + stats.norm.pdf(z))
        out = np.where(z < 0, neg, pos)
    out = np.where(np.isfinite(out), out, -np.inf)
    return float(out) if out.ndim == 0 else out


def UCB(mean: Any, var: Any, zscore: float) -> Any:  # noqa: N802
    """Upper confidence bound ``mean + zscore * sqrt(var)``."""
    return mean + np.sqrt(var) * zscore


def PI_empirical(samples: Any, thresh: float) -> float:  # noqa: N802
    """Probability of improvement over ``thresh`` estimated from ``samples`` (not in hyperopt)."""
    return float((np.asarray(samples) > thresh).mean())


def PI_gaussian(mean: Any, var: Any, thresh: Any) -> Any:  # noqa: N802
    """Probability that N(mean, var) exceeds ``thresh`` (not in hyperopt)."""
    return stats.norm.cdf((np.asarray(mean) - thresh) / np.sqrt(var))
