"""Turn assignments of hyperparameter values into the nested object the objective receives.

As in hyperopt: lists and tuples of the space become tuples, dicts with string keys come out
with their keys sorted, and a switch (``scope.switch``, ``scope.one_of``) evaluates only the
option it selects. :class:`~hpo_mongo.space.nodes.Stochastic` noise is drawn from the node's
own ``rng=`` if it has one, else from the evaluation's generator.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..exceptions import InvalidParameterError, UnsupportedExpressionError
from .compile import compile_space
from .nodes import Apply, Choice, Expr, Param, Stochastic, switch


def _unwrap(v: Any) -> Any:
    if isinstance(v, (list, tuple)) and not isinstance(v, str):
        return v[0] if len(v) else None
    return v


def _dict_keys(d: Mapping) -> list:
    keys = list(d)
    return sorted(keys) if all(isinstance(k, str) for k in keys) else keys


def space_eval(space: Any, assignment: Mapping[str, Any], rng: Any = None) -> Any:
    """Evaluate ``space`` with ``{label: value}`` (choice values are indices, as in ``argmin``).

    ``assignment`` may also be hyperopt's ``misc.vals`` (``{label: [value] or []}``). ``rng``
    (a Generator, a seed or None) feeds the space's stochastic noise nodes.
    """
    return evaluate(space, assignment, rng=rng)


def evaluate(space: Any, assignment: Mapping[str, Any], *, rng: Any = None, override_rng: bool = False,
             known: Mapping[int, Any] | None = None) -> Any:
    """:func:`space_eval` with two more knobs: ``override_rng`` makes every stochastic node draw
    from ``rng`` (pyll's ``stochastic.sample``), ``known`` gives values of nodes by ``id``."""
    memo: dict[int, Any] = dict(known or {})
    gen: list[np.random.Generator] = []

    def generator() -> np.random.Generator:
        if not gen:
            gen.append(as_generator(rng))
        return gen[0]

    def ev(node: Any) -> Any:
        if isinstance(node, Expr):
            key = id(node)
            if key in memo:
                return memo[key]
            memo[key] = out = ev_node(node)
            return out
        if isinstance(node, dict):
            return {k: ev(node[k]) for k in _dict_keys(node)}
        if isinstance(node, (list, tuple)):
            return tuple(ev(v) for v in node)
        return node

    def ev_node(node: Expr) -> Any:
        if isinstance(node, Param):
            v = _unwrap(assignment.get(node.label))
            if v is None:
                raise InvalidParameterError(f"space_eval: no value for hyperparameter {node.label!r}")
            if isinstance(node, Choice):
                return ev(node.options[_option_index(node.label, v, len(node.options))])
            return node.dist.external(float(v)) if isinstance(v, (int, float, np.number)) else v
        if isinstance(node, Apply):
            if node.fn is switch:
                return ev(node.args[1 + _option_index("switch", ev(node.args[0]), len(node.args) - 1)])
            args = [ev(a) for a in node.args]
            kwargs = {k: ev(node.kwargs[k]) for k in node.kwargs}
            if isinstance(node, Stochastic) and (override_rng or kwargs.get("rng") is None):
                kwargs["rng"] = generator()
            return node.fn(*args, **kwargs)
        raise UnsupportedExpressionError(f"cannot evaluate {node!r}")

    return ev(space)


def _option_index(label: str, v: Any, n: int) -> int:
    try:
        idx = int(v)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"space_eval: choice {label!r} needs an option index, got {v!r}") from None
    if not 0 <= idx < n or idx != v:
        raise InvalidParameterError(f"space_eval: index {v!r} is out of range for choice {label!r} ({n} options)")
    return idx


def sample(space: Any, rng: Any = None) -> Any:
    """Draw one random point of ``space`` and evaluate it (``hyperopt.pyll.stochastic.sample``);
    noise nodes draw from ``rng`` too, whatever ``rng=`` they were built with."""
    cs = compile_space(space)
    gen = as_generator(rng)
    row = cs.sample(gen, 1)[0]
    return evaluate(cs.space, cs.row_to_vals(row), rng=gen, override_rng=True)


def as_generator(rng: Any) -> np.random.Generator:
    """Accept a Generator, a legacy RandomState, an int seed or None."""
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, np.random.RandomState):
        return np.random.default_rng(rng.randint(2**31 - 1))
    if isinstance(rng, (int, np.integer)):
        return np.random.default_rng(int(rng))
    raise InvalidParameterError(f"rng must be a numpy Generator, RandomState, int or None, got {type(rng).__name__}")
