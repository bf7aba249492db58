"""Random draws a space may hold as *noise* (pyll's ``scope.normal(0, 1)``, ``scope.uniform``...).

They are not hyperparameters: nothing records them and no algorithm models them. Each function
draws with ``rng`` (a numpy Generator) exactly as hyperopt's ``pyll.stochastic`` function of the
same name does, so the same generator state gives the same value. A space evaluation passes its
own generator unless the node was built with an explicit ``rng=`` (see space.evaluate).
"""
from __future__ import annotations

from typing import Any

import numpy as np


def _gen(rng: Any) -> np.random.Generator:
    return rng if rng is not None else np.random.default_rng()


def uniform(low, high, rng=None, size=()):
    return _gen(rng).uniform(low, high, size=size)


def loguniform(low, high, rng=None, size=()):
    return np.exp(_gen(rng).uniform(low, high, size=size))


def quniform(low, high, q, rng=None, size=()):
    return np.round(_gen(rng).uniform(low, high, size=size) / q) * q


def qloguniform(low, high, q, rng=None, size=()):
    return np.round(np.exp(_gen(rng).uniform(low, high, size=size)) / q) * q


def normal(mu, sigma, rng=None, size=()):
    return _gen(rng).normal(mu, sigma, size=size)


def qnormal(mu, sigma, q, rng=None, size=()):
    return np.round(_gen(rng).normal(mu, sigma, size=size) / q) * q


def lognormal(mu, sigma, rng=None, size=()):
    return np.exp(_gen(rng).normal(mu, sigma, size=size))


def qlognormal(mu, sigma, q, rng=None, size=()):
    return np.round(np.exp(_gen(rng).normal(mu, sigma, size=size)) / q) * q


def randint(low, high=None, rng=None, size=()):
    """An int in ``[0, low)`` or ``[low, high)`` (numpy's ``Generator.integers``)."""
    return _gen(rng).integers(low, high, size)


def categorical(p, rng=None, size=()):
    """Index ``i`` with probability ``p[i]``; one draw (an int) when ``size`` is ``()``."""
    p = np.asarray(p, dtype=float)
    if p.ndim == 2 and p.shape[0] == 1:
        p = p[0]
    shape = (1,) if size == () else ((size,) if np.isscalar(size) else tuple(size))
    n = int(np.prod(shape))
    draws = _gen(rng).multinomial(1, p, size=n) @ np.arange(len(p))
    return int(draws[0]) if size == () else draws.reshape(shape)


#: the stochastic functions scope knows by name (pyll's ``implicit_stochastic_symbols``)
STOCHASTIC = {f.__name__: f for f in (uniform, loguniform, quniform, qloguniform, normal, qnormal,
                                       lognormal, qlognormal, randint, categorical)}
