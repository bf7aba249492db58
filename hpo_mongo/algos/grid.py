"""Grid search: the cartesian product of every parameter's grid, in a fixed order.

Discrete parameters (choice, pchoice, randint, uniformint, bounded quantized kinds) use all
their values; continuous ones use ``n_points`` values: evenly spaced for uniform, geometric
for log-uniform, at quantiles for normal / lognormal (rounded to q when quantized). Inactive
branches of conditional spaces are not multiplied out. Each document records its position in
``misc.grid_index``, so a resumed run continues where it stopped; ``[]`` when exhausted.
"""
from __future__ import annotations

import math
from typing import Any, Iterator, Sequence

import numpy as np
from statistics import NormalDist

from ..exceptions import InvalidParameterError
from ..space import CompiledSpace
from ..space.distributions import Distribution
from .base import docs_from_rows

DEFAULT_N_POINTS = 5
#: a bounded quantized parameter with more grid values than this uses ``n_points`` values instead
MAX_QUANTIZED_VALUES = 1000


def grid_values(dist: Distribution, n_points: int = DEFAULT_N_POINTS) -> np.ndarray:
    """The internal values one parameter takes on the grid."""
    if dist.is_categorical:
        return np.arange(dist.n_options, dtype=float)
    lo, hi = dist.value_bounds
    if dist.is_int:
        return np.arange(lo, hi + 1, dtype=float)
    if dist.is_quantized and dist.is_bounded:
        q = dist._step()
        vals = np.unique(dist.quantize(np.arange(math.ceil(lo / q), math.floor(hi / q) + 1) * q))
        if 0 < len(vals) <= MAX_QUANTIZED_VALUES:
            return vals
    if dist.is_bounded:
        low, high = dist._bounds()
        vals = np.linspace(low, high, n_points)
        vals = np.exp(vals) if dist.is_log else vals
    else:  # normal family: quantiles
        mu, sigma = dist._normal()
        z = np.array([NormalDist(mu, sigma).inv_cdf((i + 0.5) / n_points) for i in range(n_points)])
        vals = np.exp(z) if dist.is_log else z
    if dist.is_quantized:
        vals = dist.quantize(vals)
    return np.unique(vals)


def iter_grid(space: CompiledSpace, n_points: int = DEFAULT_N_POINTS) -> Iterator[np.ndarray]:
    """Yield the grid's rows (NaN = inactive) in a deterministic order."""
    params = space.params
    values = [grid_values(p.dist, n_points) for p in params]
    row = np.full(space.n_params, np.nan)

    def active(p) -> bool:
        return any(all(row[c] == b for c, b in path) for path in p.paths)

    def rec(i: int) -> Iterator[np.ndarray]:
        if i == len(params):
            yield row.copy()
            return
        p = params[i]
        if active(p):
            for v in values[i]:
                row[i] = v
                yield from rec(i + 1)
            row[i] = np.nan
        else:
            yield from rec(i + 1)

    return rec(0)


def suggest(new_ids: Sequence[int], domain: Any, trials: Any, seed: int,
            n_points: int = DEFAULT_N_POINTS) -> list[dict]:
    """The next grid points after the largest ``misc.grid_index`` already in ``trials``."""
    if isinstance(n_points, bool) or not isinstance(n_points, int) or n_points < 1:
        raise InvalidParameterError(
            f"The 'n_points' parameter of grid.suggest must be an int >= 1. Got {n_points!r} instead.")
    start = 1 + max((t["misc"].get("grid_index", -1) for t in trials.trials), default=-1)
    cache = domain.__dict__.setdefault("_grid_cache", {})
    entry = cache.get(n_points)
    if entry is None:
        entry = cache[n_points] = {"it": iter_grid(domain.space, n_points), "rows": []}
    rows = entry["rows"]
    while len(rows) < start + len(new_ids):
        nxt = next(entry["it"], None)
        if nxt is None:
            break
        rows.append(nxt)
    take = rows[start:start + len(new_ids)]
    if not take:
        return []
    X = np.asarray(take)
    ids = list(new_ids)[:len(take)]
    return docs_from_rows(ids, domain.space, X, trials, extra_misc=lambda i: {"grid_index": start + i})
