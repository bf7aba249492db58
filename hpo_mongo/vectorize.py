"""``hyperopt.vectorize``: importable, but there is no vectorized pyll graph to build.

hyperopt's ``VectorizeHelper`` rewrites a pyll graph so that one evaluation samples many
trials at once. hpo_mongo's space is a plain tree whose flat table
(:class:`hpo_mongo.space.CompiledSpace`) already samples ``n`` points as one ``(n, P)`` matrix
(``CompiledSpace.sample(rng, n)``, NaN where inactive), so ``VectorizeHelper`` raises a
NotImplementedError naming it. ``uniq`` is provided.
"""
from __future__ import annotations

from typing import Any, Iterable

__all__ = ["VectorizeHelper", "uniq"]


def uniq(lst: Iterable[Any]) -> list:
    """The items of ``lst`` without repeats (by identity), in order."""
    seen: set[int] = set()
    out = []
    for item in lst:
        if id(item) not in seen:
            seen.add(id(item))
            out.append(item)
    return out


class VectorizeHelper:
    def __init__(self, *args: Any, **kwargs: Any):
        raise NotImplementedError(
            "hpo_mongo has no pyll graph to vectorize: use hpo_mongo.space.compile_space(space).sample(rng, n) "
            "for n points as an (n, P) matrix, or hpo_mongo.space.CompiledSpace for the flat parameter table")
