"""Random search: every suggestion is an independent draw from the prior."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .base import docs_from_rows


def suggest(new_ids: Sequence[int], domain: Any, trials: Any, seed: int) -> list[dict]:
    """One prior sample per id, reproducible from ``seed`` alone (independent of the ids)."""
    rng = np.random.default_rng(seed)
    X = domain.space.sample(rng, len(new_ids))
    return docs_from_rows(new_ids, domain.space, X, trials)


def suggest_batch(new_ids: Sequence[int], domain: Any, trials: Any, seed: int) -> list[dict]:
    """Alias kept for hyperopt code that imports it."""
    return suggest(new_ids, domain, trials, seed)
