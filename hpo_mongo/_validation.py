"""Up-front parameter checks with one message shape, naming the parameter and its owner.

``validate({"max_evals": (max_evals, [Interval(int, 0, None), None])}, "fmin")`` raises
``InvalidParameterError("The 'max_evals' parameter of fmin must be an int in the range
[0, inf) or None. Got -1 instead.")``.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence, cast

from .exceptions import InvalidParameterError


class Constraint:
    def ok(self, value: Any) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def __str__(self) -> str:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass(frozen=True)
class Interval(Constraint):
    """A real (``float``) or integer (``int``) number in ``[left, right]`` (None = unbounded)."""

    type: type
    left: float | None
    right: float | None
    closed: str = "both"  # "both", "left", "right", "neither"

    def ok(self, value: Any) -> bool:
        if isinstance(value, bool):
            return False
        if self.type is int and not isinstance(value, numbers.Integral):
            return False
        if not isinstance(value, numbers.Real) or math.isnan(value):
            return False
        # any Real compares with floats; typeshed's numbers.Real declares __lt__/__le__ but not __gt__
        x = cast(float, value)
        lc = self.closed in ("both", "left")
        rc = self.closed in ("both", "right")
        if self.left is not None and (x < self.left or (not lc and x == self.left)):
            return False
        if self.right is not None and (x > self.right or (not rc and x == self.right)):
            return False
        return True

    def __str__(self) -> str:
        kind = "an int" if self.type is int else "a float"
        lb = "[" if self.closed in ("both", "left") and self.left is not None else "("
        rb = "]" if self.closed in ("both", "right") and self.right is not None else ")"
        lo = "-inf" if self.left is None else f"{self.left:g}"
        hi = "inf" if self.right is None else f"{self.right:g}"
        return f"{kind} in the range {lb}{lo}, {hi}{rb}"


@dataclass(frozen=True)
class InstanceOf(Constraint):
    types: tuple
    text: str

    def ok(self, value: Any) -> bool:
        return isinstance(value, self.types) and not (isinstance(value, bool) and bool not in self.types)

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Satisfies(Constraint):
    predicate: Callable[[Any], bool]
    text: str

    def ok(self, value: Any) -> bool:
        return bool(self.predicate(value))

    def __str__(self) -> str:
        return self.text


class _NoneConstraint(Constraint):
    def ok(self, value: Any) -> bool:
        return value is None

    def __str__(self) -> str:
        return "None"


NONE = _NoneConstraint()
BOOL = InstanceOf((bool,), "a bool")
CALLABLE = Satisfies(callable, "a callable")
STRING = InstanceOf((str,), "a str")


def validate(params: Mapping[str, tuple[Any, Sequence[Constraint]]], owner: str,
             hyperopt_sentences: Mapping[str, str] | None = None) -> None:
    """Raise :class:`InvalidParameterError` for the first parameter that fits none of its constraints.

    ``hyperopt_sentences`` maps a parameter to the sentence hyperopt raises for it (``{value}`` is
    replaced by ``str(value)``); the message then starts with that sentence, so code matching
    hyperopt's message still matches.
    """
    for name, (value, constraints) in params.items():
        if any(c.ok(value) for c in constraints):
            continue
        texts = [str(c) for c in constraints]
        allowed = texts[0] if len(texts) == 1 else ", ".join(texts[:-1]) + " or " + texts[-1]
        message = f"The {name!r} parameter of {owner} must be {allowed}. Got {value!r} instead."
        sentence = (hyperopt_sentences or {}).get(name)
        if sentence:
            message = f"{sentence.format(value=value)}. {message}"
        raise InvalidParameterError(message)
