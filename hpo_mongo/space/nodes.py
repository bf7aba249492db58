"""The search-space tree: parameters, choices and deterministic transforms.

A space is any nesting of dict / list / tuple / constants holding :class:`Param` leaves,
:class:`Choice` nodes (whose options are sub-spaces) and :class:`Apply` nodes (a plain Python
function applied to sub-expressions, e.g. ``hp.uniform('x', 0, 1) * 10``). Evaluation is plain
recursion (see :mod:`hpo_mongo.space.evaluate`): no symbol table, no graph interpreter.
"""
from __future__ import annotations

import math
import operator
from typing import Any, Callable

import numpy as np

from ..exceptions import UnsupportedExpressionError
from .distributions import Distribution


class Expr:
    """Base of every node. Arithmetic on nodes builds :class:`Apply` transforms."""

    def _apply(self, fn: Callable, name: str, *args: Any) -> "Apply":
        return Apply(fn, args, {}, name)

    def __add__(self, o): return self._apply(operator.add, "add", self, o)
    def __radd__(self, o): return self._apply(operator.add, "add", o, self)
    def __sub__(self, o): return self._apply(operator.sub, "sub", self, o)
    def __rsub__(self, o): return self._apply(operator.sub, "sub", o, self)
    def __mul__(self, o): return self._apply(operator.mul, "mul", self, o)
    def __rmul__(self, o): return self._apply(operator.mul, "mul", o, self)
    def __truediv__(self, o): return self._apply(operator.truediv, "truediv", self, o)
    def __rtruediv__(self, o): return self._apply(operator.truediv, "truediv", o, self)
    def __floordiv__(self, o): return self._apply(operator.floordiv, "floordiv", self, o)
    def __rfloordiv__(self, o): return self._apply(operator.floordiv, "floordiv", o, self)
    def __mod__(self, o): return self._apply(operator.mod, "mod", self, o)
    def __pow__(self, o): return self._apply(operator.pow, "pow", self, o)
    def __rpow__(self, o): return self._apply(operator.pow, "pow", o, self)
    def __neg__(self): return self._apply(operator.neg, "neg", self)
    def __pos__(self): return self
    def __abs__(self): return self._apply(abs, "abs", self)
    def __getitem__(self, key): return self._apply(operator.getitem, "getitem", self, key)

    def __bool__(self) -> bool:
        raise UnsupportedExpressionError(
            f"{self!r} has no truth value before sampling; use a @scope.define function for "
            "conditional logic on sampled values")

    def __iter__(self):
        raise UnsupportedExpressionError(f"{self!r} cannot be iterated before sampling")


class Param(Expr):
    """A sampled hyperparameter: a label and its prior distribution."""

    __slots__ = ("label", "dist")

    def __init__(self, dist: Distribution):
        self.label = dist.label
        self.dist = dist

    def __repr__(self) -> str:
        args = self.dist.arguments()
        return f"hp.{self.dist.kind}({self.label!r}, {', '.join(f'{k}={v}' for k, v in args.items())})"


class Choice(Param):
    """``hp.choice``/``hp.pchoice``: the sampled index selects one option (a sub-space)."""

    __slots__ = ("options",)

    def __init__(self, dist: Distribution, options: list[Any]):
        super().__init__(dist)
        self.options = list(options)

    def __repr__(self) -> str:
        return f"hp.{self.dist.kind}({self.label!r}, <{len(self.options)} options>)"


class Apply(Expr):
    """A deterministic function of sub-expressions, evaluated after sampling."""

    __slots__ = ("fn", "args", "kwargs", "name")

    def __init__(self, fn: Callable, args: tuple, kwargs: dict, name: str):
        self.fn, self.args, self.kwargs, self.name = fn, tuple(args), dict(kwargs), name

    def __repr__(self) -> str:
        return f"scope.{self.name}({', '.join(map(repr, self.args))})"


def _switch(index: Any, *options: Any) -> Any:
    return options[int(index)]


class Scope:
    """hyperopt's ``scope``: ``scope.int(x)``, ``scope.float(x)``, ``@scope.define`` and friends.

    ``scope.NAME(*args)`` returns an :class:`Apply` node evaluated after sampling. Only
    deterministic functions are supported; names not defined raise a clear error.
    """

    def __init__(self) -> None:
        builtin = {
            "int": int, "float": float, "len": len, "list": list, "dict": dict, "tuple": tuple,
            "range": range, "max": max, "min": min, "sum": sum, "abs": abs, "round": round,
            "getattr": getattr, "exp": math.exp, "log": math.log, "pow": pow, "sin": math.sin,
            "cos": math.cos, "tan": math.tan, "sqrt": math.sqrt, "minimum": np.minimum,
            "maximum": np.maximum, "asarray": np.asarray, "bincount": np.bincount, "repeat": np.repeat,
            "getitem": operator.getitem, "add": operator.add, "sub": operator.sub,
            "mul": operator.mul, "truediv": operator.truediv, "div": operator.truediv,
            "floordiv": operator.floordiv, "neg": operator.neg, "pos": operator.pos,
            "eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "le": operator.le,
            "gt": operator.gt, "ge": operator.ge, "switch": _switch, "identity": lambda x: x,
        }
        object.__setattr__(self, "_impls", builtin)

    def define(self, fn: Callable) -> Callable:
        """Register ``fn`` so that ``scope.<fn name>(...)`` applies it to sampled values."""
        self._impls[fn.__name__] = fn
        return fn

    define_pure = define

    def define_info(self, **_ignored: Any) -> Callable[[Callable], Callable]:
        """Decorator form accepted for compatibility; the extra info is ignored."""
        return self.define

    def undefine(self, fn_or_name: Callable | str) -> None:
        name = fn_or_name if isinstance(fn_or_name, str) else fn_or_name.__name__
        self._impls.pop(name, None)

    def __getattr__(self, name: str) -> Callable[..., Apply]:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            fn = self._impls[name]
        except KeyError:
            raise UnsupportedExpressionError(
                f"scope.{name} is not defined; register a deterministic function with "
                f"@scope.define (stochastic pyll nodes are not supported, use hp.*)") from None

        def build(*args: Any, **kwargs: Any) -> Apply:
            return Apply(fn, args, kwargs, name)

        build.__name__ = name
        return build

    def __setattr__(self, name: str, value: Any) -> None:
        raise UnsupportedExpressionError("use @scope.define to add functions to scope")


scope = Scope()
