"""``hyperopt.pyll.stochastic``: ``sample`` a space, the random-draw functions, ``recursive_set_rng_kwarg``.

``uniform(low, high, rng=None, size=())`` and friends draw directly, as hyperopt's functions of the
same name; ``scope.uniform(...)`` builds the same draw as a noise node of a space.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..space.evaluate import sample
from ..space.stochastic import (STOCHASTIC, categorical, loguniform, lognormal, normal, qloguniform,
                                qlognormal, qnormal, quniform, randint, uniform)
from .base import stochastic_nodes

#: pyll's set of the stochastic function names
implicit_stochastic_symbols = set(STOCHASTIC)

__all__ = ["sample", "recursive_set_rng_kwarg", "implicit_stochastic_symbols", "uniform", "loguniform",
           "quniform", "qloguniform", "normal", "qnormal", "lognormal", "qlognormal", "randint",
           "categorical", "rng_from_seed"]


def rng_from_seed(seed: Any) -> np.random.Generator:
    return np.random.default_rng(seed)


def recursive_set_rng_kwarg(expr: Any, rng: Any = None) -> Any:
    """Make every noise node of ``expr`` draw from ``rng`` (in place); returns ``expr``."""
    rng = np.random.default_rng() if rng is None else rng
    for node in stochastic_nodes(expr):
        node.kwargs["rng"] = rng
    return expr
