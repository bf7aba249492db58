"""``hyperopt.pyll.base`` compatibility: ``scope`` and the few helpers user code imports."""
from __future__ import annotations

from typing import Any

from ..exceptions import UnsupportedExpressionError
from ..space.evaluate import space_eval
from ..space.nodes import Apply, Expr, scope

__all__ = ["scope", "Apply", "Expr", "as_apply", "Literal", "rec_eval"]


def as_apply(obj: Any) -> Any:
    """Spaces are plain objects here: returned unchanged."""
    return obj


def Literal(obj: Any) -> Any:  # noqa: N802 - hyperopt's name
    """A constant in a space: returned unchanged."""
    return obj


def rec_eval(expr: Any, memo: dict | None = None, **_ignored: Any) -> Any:
    """Evaluate a space that holds no sampled parameter (or with ``memo`` = {label: value})."""
    if memo and not all(isinstance(k, str) for k in memo):
        raise UnsupportedExpressionError("rec_eval memo keyed by pyll nodes is not supported; pass {label: value}")
    return space_eval(expr, memo or {})
