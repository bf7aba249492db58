"""Simulated-annealing-style search (``anneal.suggest``), with hyperopt's behaviour.

For every parameter independently: order the finished trials in which it is active by loss,
pick one at a geometric rank (mean ``avg_best_idx``), and draw around its value from the
prior narrowed by ``shrinking = 1 / (1 + T * shrink_coef)`` where ``T`` is the number of those
trials:

* bounded kinds (uniform / log / quantized / int): uniform on the window of width
  ``shrinking × range`` centred on the value, clipped to the bounds (log kinds in log space),
  then quantized;
* normal kinds: normal around the value with ``sigma × shrinking`` (log kinds in log space);
* choice / pchoice / randint: keep the value, or with probability ``shrinking`` redraw from the prior.

Parameters with no history (and everything before the first finished trial) come from the
prior. Only trials that finished with status ``ok`` and a loss are used (pruned trials are not:
their values are not comparable with final losses).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from . import rand
from .base import docs_from_rows, history

DEFAULT_AVG_BEST_IDX = 2.0
DEFAULT_SHRINK_COEF = 0.1


def _draw(rng: np.random.Generator, dist, val: float, shrinking: float) -> float:
    if not dist.is_ordered:  # choice, pchoice, randint: nearby values are unrelated
        return float(dist.sample(rng, 1)[0]) if rng.random() < shrinking else val
    v = math.log(max(val, 1e-300)) if dist.is_log else val
    if dist.is_bounded:
        lo, hi = dist.low, dist.high
        half = 0.5 * (hi - lo) * shrinking
        x = rng.uniform(max(lo, v - half), min(hi, v + half))
    else:
        x = rng.normal(v, dist.sigma * shrinking)
    if dist.is_log:
        x = math.exp(x)
    if dist.is_int:
        return float(min(max(round(x), dist.low), dist.high))
    if dist.is_quantized:
        x = float(dist.quantize(x))
    return x


def suggest(new_ids: Sequence[int], domain: Any, trials: Any, seed: int,
            avg_best_idx: float = DEFAULT_AVG_BEST_IDX,
            shrink_coef: float = DEFAULT_SHRINK_COEF) -> list[dict]:
    """One document per id in ``new_ids``, reproducible from ``seed``."""
    space = domain.space
    h = history(space, trials)
    ok = h.complete
    if not ok.any():
        return rand.suggest(new_ids, domain, trials, seed)
    rng = np.random.default_rng(seed)
    X, loss = h.X[ok], h.loss[ok]
    order = np.argsort(loss, kind="stable")
    Xs = X[order]
    rows = np.empty((len(new_ids), space.n_params))  # prior draws, kept where there is no history
    for p in space.params:
        rows[:, p.index] = p.dist.sample(rng, len(new_ids))
    for p in space.params:
        col = Xs[:, p.index]
        vals = col[~np.isnan(col)]
        T = vals.size
        if T == 0:
            continue
        shrinking = 1.0 / (1.0 + T * shrink_coef)
        for i in range(len(new_ids)):
            g = min(int(rng.geometric(1.0 / avg_best_idx)) - 1, T - 1)
            rows[i, p.index] = _draw(rng, p.dist, float(vals[g]), shrinking)
    rows[~space.active_mask(rows)] = np.nan
    return docs_from_rows(new_ids, space, rows, trials)
