"""``hyperopt.mix``: make each suggestion with an algorithm drawn at random.

``fmin(..., algo=partial(mix.suggest, p_suggest=[(.1, rand.suggest), (.2, anneal.suggest),
(.7, tpe.suggest)]))``.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from .exceptions import InvalidParameterError

__all__ = ["suggest"]


def suggest(new_ids: list, domain: Any, trials: Any, seed: int,
            p_suggest: Sequence[tuple[float, Callable]]) -> list[dict]:
    """The docs of ``algo(new_ids, domain, trials, seed')`` for one ``algo`` of ``p_suggest``
    drawn with its probability (the probabilities must sum to 1)."""
    rng = np.random.default_rng(seed)
    ps = [float(p) for p, _ in p_suggest]
    algos = [a for _, a in p_suggest]
    if not np.isclose(sum(ps), 1.0):
        raise InvalidParameterError(
            f"Probabilities should sum to 1: the p_suggest probabilities {ps} sum to {sum(ps):g}")
    idx = int(rng.multinomial(n=1, pvals=ps).argmax())
    return algos[idx](new_ids, domain, trials, seed=int(rng.integers(2**31)))
