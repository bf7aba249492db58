"""Turn assignments of hyperparameter values into the nested object the objective receives."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..exceptions import InvalidParameterError, UnsupportedExpressionError
from .compile import compile_space
from .nodes import Apply, Choice, Expr, Param


def _unwrap(v: Any) -> Any:
    if isinstance(v, (list, tuple)) and not isinstance(v, str):
        return v[0] if len(v) else None
    return v


def space_eval(space: Any, assignment: Mapping[str, Any]) -> Any:
    """Evaluate ``space`` with ``{label: value}`` (choice values are indices, as in ``argmin``).

    ``assignment`` may also be hyperopt's ``misc.vals`` (``{label: [value] or []}``).
    """
    memo: dict[int, Any] = {}

    def ev(node: Any) -> Any:
        if isinstance(node, Expr):
            key = id(node)
            if key in memo:
                return memo[key]
            memo[key] = out = ev_node(node)
            return out
        if isinstance(node, dict):
            return {k: ev(v) for k, v in node.items()}
        if isinstance(node, list):
            return [ev(v) for v in node]
        if isinstance(node, tuple):
            return tuple(ev(v) for v in node)
        return node

    def ev_node(node: Expr) -> Any:
        if isinstance(node, Param):
            v = _unwrap(assignment.get(node.label))
            if v is None:
                raise InvalidParameterError(f"space_eval: no value for hyperparameter {node.label!r}")
            if isinstance(node, Choice):
                try:
                    idx = int(v)
                except (TypeError, ValueError):
                    raise InvalidParameterError(
                        f"space_eval: choice {node.label!r} needs an option index, got {v!r}") from None
                if not 0 <= idx < len(node.options) or idx != v:
                    raise InvalidParameterError(
                        f"space_eval: index {v!r} is out of range for choice {node.label!r} "
                        f"({len(node.options)} options)")
                return ev(node.options[idx])
            return node.dist.external(float(v)) if isinstance(v, (int, float, np.number)) else v
        if isinstance(node, Apply):
            args = [ev(a) for a in node.args]
            kwargs = {k: ev(a) for k, a in node.kwargs.items()}
            return node.fn(*args, **kwargs)
        raise UnsupportedExpressionError(f"cannot evaluate {node!r}")

    return ev(space)


def sample(space: Any, rng: Any = None) -> Any:
    """Draw one random point of ``space`` and evaluate it (``hyperopt.pyll.stochastic.sample``)."""
    cs = compile_space(space)
    gen = as_generator(rng)
    row = cs.sample(gen, 1)[0]
    return space_eval(cs.space, cs.row_to_vals(row))


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
