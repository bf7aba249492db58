"""The search-space tree: parameters, choices and deterministic transforms.

A space is any nesting of dict / list / tuple / constants holding :class:`Param` leaves,
:class:`Choice` nodes (whose options are sub-spaces) and :class:`Apply` nodes (a plain Python
function applied to sub-expressions, e.g. ``hp.uniform('x', 0, 1) * 10``). Evaluation is plain
recursion (see :mod:`hpo_mongo.space.evaluate`): no symbol table, no graph interpreter.

:class:`Stochastic` nodes are noise drawn at evaluation time (pyll's ``scope.normal(0, 1)``),
:class:`Literal` a constant kept as is. The attributes hyperopt code reads on pyll nodes
(``name``, ``eval()``; on :class:`Apply` also ``pos_args``, ``named_args``, ``inputs()``,
``set_kwarg``) are live views of the tree: changing them changes the space.
"""
from __future__ import annotations

import functools
import math
import operator
from collections.abc import MutableSequence
from typing import Any, Callable, Iterator, cast

import numpy as np

from ..exceptions import UnsupportedExpressionError
from .distributions import Distribution
from .stochastic import STOCHASTIC


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

    def eval(self, memo: dict | None = None) -> Any:
        """Evaluate this sub-space: constants only, or with ``memo`` = {label: value} (pyll's ``eval``)."""
        from .evaluate import space_eval  # evaluate imports this module
        return space_eval(self, memo or {})


class Param(Expr):
    """A sampled hyperparameter: a label and its prior distribution."""

    __slots__ = ("label", "dist")

    def __init__(self, dist: Distribution):
        self.label = dist.label
        self.dist = dist

    @property
    def name(self) -> str:
        """pyll's name of the node hp.* returns: ``switch`` (choice), ``int`` or ``float``."""
        return "switch" if isinstance(self, Choice) else ("int" if self.dist.is_int else "float")

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

    @property
    def pos_args(self) -> "_PosArgs":
        """The positional arguments, as a live list (pyll's ``pos_args``)."""
        return _PosArgs(self)

    @property
    def named_args(self) -> "_NamedArgs":
        """The keyword arguments as a live list of ``[name, value]`` pairs (pyll's ``named_args``)."""
        return _NamedArgs(self)

    def inputs(self) -> list:
        """Positional then keyword arguments (pyll's ``inputs()``)."""
        return list(self.args) + list(self.kwargs.values())

    def set_kwarg(self, name: str, value: Any) -> None:
        self.kwargs[name] = value


class Stochastic(Apply):
    """A random draw made when the space is evaluated (noise, not a hyperparameter).

    ``fn`` takes ``rng=``: the node's own ``rng`` keyword if it was given one, else the
    evaluation's generator (see :func:`hpo_mongo.space.evaluate.space_eval`).
    """

    __slots__ = ()


def _constant(obj: Any) -> Any:
    return obj


class Literal(Apply):
    """A constant kept as is (pyll's ``Literal``): evaluates to ``obj`` itself, never copied."""

    __slots__ = ()

    def __init__(self, obj: Any = None):
        super().__init__(functools.partial(_constant, obj), (), {}, "literal")

    @property
    def obj(self) -> Any:
        return cast(functools.partial, self.fn).args[0]  # __init__ binds obj in a partial

    def __repr__(self) -> str:
        return f"Literal({self.obj!r})"


class _PosArgs(MutableSequence):
    def __init__(self, node: Apply):
        self._node = node

    def __getitem__(self, i):
        return self._node.args[i]

    def __setitem__(self, i, value) -> None:
        args = list(self._node.args)
        args[i] = value
        self._node.args = tuple(args)

    def __delitem__(self, i) -> None:
        args = list(self._node.args)
        del args[i]
        self._node.args = tuple(args)

    def __len__(self) -> int:
        return len(self._node.args)

    def insert(self, i: int, value: Any) -> None:
        args = list(self._node.args)
        args.insert(i, value)
        self._node.args = tuple(args)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, (list, tuple, _PosArgs)) and list(self) == list(other)

    def __repr__(self) -> str:
        return repr(list(self))


class _NamedArg(MutableSequence):
    """One live ``[name, value]`` pair of :attr:`Apply.named_args`; assigning ``[1]`` sets the value."""

    def __init__(self, node: Apply, key: str):
        self._node, self._key = node, key

    def __getitem__(self, i):
        return (self._key, self._node.kwargs[self._key])[i]

    def __setitem__(self, i, value) -> None:
        if i not in (1, -1):
            raise TypeError("only the value of a named argument can be replaced")
        self._node.kwargs[self._key] = value

    def __delitem__(self, i) -> None:
        raise TypeError("a named argument is a [name, value] pair")

    def __len__(self) -> int:
        return 2

    def insert(self, i: int, value: Any) -> None:
        raise TypeError("a named argument is a [name, value] pair")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, (list, tuple, _NamedArg)) and len(other) == 2 and list(self) == list(other)

    def __repr__(self) -> str:
        return repr(list(self))


class _NamedArgs(MutableSequence):
    def __init__(self, node: Apply):
        self._node = node

    def _keys(self) -> list[str]:
        return list(self._node.kwargs)

    def __getitem__(self, i):
        keys = self._keys()
        if isinstance(i, slice):
            return [_NamedArg(self._node, k) for k in keys[i]]
        return _NamedArg(self._node, keys[i])

    def _rebuild(self, pairs: list[tuple[str, Any]]) -> None:
        self._node.kwargs.clear()
        self._node.kwargs.update(pairs)

    def __setitem__(self, i, pair) -> None:
        pairs = list(self._node.kwargs.items())
        key, value = pair
        pairs[i] = (key, value)
        self._rebuild(pairs)

    def __delitem__(self, i) -> None:
        del self._node.kwargs[self._keys()[i]]

    def __len__(self) -> int:
        return len(self._node.kwargs)

    def __iter__(self) -> Iterator[_NamedArg]:
        return iter([_NamedArg(self._node, k) for k in self._keys()])

    def insert(self, i: int, pair) -> None:
        key, value = pair
        pairs = [(k, v) for k, v in self._node.kwargs.items() if k != key]
        pairs.insert(i, (key, value))
        self._rebuild(pairs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, (list, tuple, _NamedArgs)) and [list(p) for p in self] == [list(p) for p in other]

    def __repr__(self) -> str:
        return repr([list(p) for p in self])


def switch(index: Any, *options: Any) -> Any:
    """The option at ``index``; space evaluation evaluates only that option."""
    return options[int(index)]


def _pos_args(*args: Any) -> tuple:
    return args


class Scope:
    """hyperopt's ``scope``: ``scope.int(x)``, ``scope.float(x)``, ``@scope.define`` and friends.

    ``scope.NAME(*args)`` returns an :class:`Apply` node evaluated after sampling. pyll's
    stochastic names (``scope.uniform``, ``normal``, ``randint``, ``categorical``... and
    ``scope.choice(options)`` / ``scope.one_of(*options)``) build :class:`Stochastic` noise
    drawn at evaluation time; names not defined raise a clear error.
    """

    _impls: dict[str, Callable]  # name -> function; set once by __init__ (attribute writes are refused)

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
            "gt": operator.gt, "ge": operator.ge, "switch": switch, "identity": _constant,
            "pos_args": _pos_args,
        }
        object.__setattr__(self, "_impls", builtin)

    def define(self, fn: Callable) -> Callable:
        """Register ``fn`` so that ``scope.<fn name>(...)`` applies it to sampled values."""
        self._impls[fn.__name__] = fn
        return fn

    define_pure = define

    def define_if_new(self, fn: Callable) -> Callable:
        """Register ``fn`` unless a function of that name is already registered."""
        self._impls.setdefault(fn.__name__, fn)
        return fn

    def one_of(self, *options: Any) -> Apply:
        """One of ``options`` drawn uniformly at evaluation time (noise, not a hyperparameter)."""
        return Apply(switch, (self.randint(len(options)), *options), {}, "switch")

    def choice(self, options: Any) -> Apply:
        """pyll's ``scope.choice(options)``: ``one_of(*options)``."""
        return self.one_of(*options)

    def define_info(self, **_ignored: Any) -> Callable[[Callable], Callable]:
        """Decorator form accepted for compatibility; the extra info is ignored."""
        return self.define

    def undefine(self, fn_or_name: Callable | str) -> None:
        name = fn_or_name if isinstance(fn_or_name, str) else fn_or_name.__name__
        self._impls.pop(name, None)

    def __getattr__(self, name: str) -> Callable[..., Apply]:
        if name.startswith("__"):
            raise AttributeError(name)
        if name in STOCHASTIC and name not in self._impls:
            draw = STOCHASTIC[name]

            def build_stochastic(*args: Any, **kwargs: Any) -> Stochastic:
                return Stochastic(draw, args, kwargs, name)

            build_stochastic.__name__ = name
            return build_stochastic
        try:
            fn = self._impls[name]
        except KeyError:
            raise UnsupportedExpressionError(
                f"scope.{name} is not defined; register it with @scope.define") from None

        def build(*args: Any, **kwargs: Any) -> Apply:
            return Apply(fn, args, kwargs, name)

        build.__name__ = name
        return build

    def __setattr__(self, name: str, value: Any) -> None:
        raise UnsupportedExpressionError("use @scope.define to add functions to scope")


scope = Scope()
