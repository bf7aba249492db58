"""``hyperopt.pyll_utils``: the ``hp_*`` functions, label checks and ``expr_to_config``.

``expr_to_config`` describes a space as hyperopt does ({label: {node, conditions, label}}, each
condition a tuple of :class:`Cond` such as ``Cond{model = 1}``), computed from the compiled
space's activation paths instead of a pyll graph walk.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

from .exceptions import DuplicateLabel, InvalidSpaceError
from .space import compile_space
from .space.hp import (choice as hp_choice, lognormal as hp_lognormal, loguniform as hp_loguniform,  # noqa: F401
                       normal as hp_normal, pchoice as hp_pchoice, qlognormal as hp_qlognormal,
                       qloguniform as hp_qloguniform, qnormal as hp_qnormal, quniform as hp_quniform,
                       randint as hp_randint, uniform as hp_uniform, uniformint as hp_uniformint)

__all__ = ["hp_choice", "hp_pchoice", "hp_randint", "hp_uniform", "hp_uniformint", "hp_quniform",
           "hp_loguniform", "hp_qloguniform", "hp_normal", "hp_qnormal", "hp_lognormal", "hp_qlognormal",
           "validate_label", "validate_distribution_range", "Cond", "EQ", "expr_to_config", "DuplicateLabel"]


def validate_label(f: Callable) -> Callable:
    """Decorator: the first argument must be a str or bytes label (else ``TypeError("require string label")``)."""
    @functools.wraps(f)
    def wrapper(label: Any, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(label, (str, bytes)):
            raise TypeError("require string label")
        return f(label, *args, **kwargs)
    return wrapper


def validate_distribution_range(f: Callable) -> Callable:
    """Decorator: ``low`` must be less than ``high`` (checked, as in hyperopt, when both are truthy)."""
    @functools.wraps(f)
    def wrapper(label: Any, *args: Any, **kwargs: Any) -> Any:
        low = args[0] if len(args) > 0 else kwargs.get("low")
        high = args[1] if len(args) > 1 else kwargs.get("high")
        if low and high and not low < high:
            raise InvalidSpaceError(f"low should be less than high: {low} is not smaller than {high}")
        return f(label, *args, **kwargs)
    return wrapper


class Cond:
    """One activation condition: hyperparameter ``name`` ``op`` (``=``) option index ``val``."""

    def __init__(self, name: str, val: Any, op: str):
        self.op, self.name, self.val = op, name, val

    def __str__(self) -> str:
        return f"Cond{{{self.name} {self.op} {self.val}}}"

    __repr__ = __str__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cond) and (self.op, self.name, self.val) == (other.op, other.name, other.val)

    def __hash__(self) -> int:
        return hash((self.op, self.name, self.val))


EQ = functools.partial(Cond, op="=")


def expr_to_config(expr: Any, conditions: tuple | None, hps: dict) -> None:
    """Fill ``hps`` with ``{label: {"node", "conditions", "label"}}`` for every hyperparameter of
    ``expr``; each condition tuple is prefixed with ``conditions``."""
    cs = compile_space(expr)
    prefix = tuple(conditions or ())
    for p in cs.params:
        conds = {prefix + tuple(EQ(cs.labels[c], b) for c, b in path) for path in p.paths}
        if p.always_active:
            conds = {prefix}
        entry = hps.setdefault(p.label, {"node": p.node, "conditions": set(), "label": p.label})
        if entry["node"] is not p.node:
            raise DuplicateLabel(p.label)
        entry["conditions"] |= conds
