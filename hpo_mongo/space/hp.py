"""The ``hp`` DSL with hyperopt's signatures: each function returns a validated tree node."""
from __future__ import annotations

from typing import Any, Sequence

from ..exceptions import InvalidLabelError, InvalidSpaceError
from .distributions import Distribution
from .nodes import Choice, Param

__all__ = [
    "choice", "pchoice", "randint", "uniformint", "uniform", "quniform", "loguniform",
    "qloguniform", "normal", "qnormal", "lognormal", "qlognormal",
]


def _label(label: Any) -> str:
    if isinstance(label, bytes):
        label = label.decode()
    if not isinstance(label, str):
        raise InvalidLabelError(f"require string label: hyperparameter labels must be strings, got {label!r} "
                                f"({type(label).__name__})")
    if not label:
        raise InvalidSpaceError("hyperparameter labels must be non-empty strings")
    if "\x00" in label:  # a label is a field name in misc.vals: MongoDB cannot store a NUL there
        raise InvalidSpaceError(f"hyperparameter label {label!r} contains a NUL character (\\x00)")
    return label


def choice(label: str, options: Sequence[Any]) -> Choice:
    """One of ``options`` (each may be a nested sub-space); ``misc.vals`` stores the index."""
    label = _label(label)
    if isinstance(options, (str, bytes, dict)) or not hasattr(options, "__len__"):
        raise InvalidSpaceError(
            f"hyperparameter {label!r}: choice options must be a list or tuple, got {type(options).__name__}")
    n = len(options)
    return Choice(Distribution(label, "choice", probs=tuple([1.0 / n] * n) if n else (), n_options=n), list(options))


def pchoice(label: str, p_options: Sequence[tuple[float, Any]]) -> Choice:
    """One of the options, drawn with the given probabilities: ``[(p, option), ...]``."""
    label = _label(label)
    try:
        probs = tuple(float(p) for p, _ in p_options)
        options = [o for _, o in p_options]
    except (TypeError, ValueError):
        raise InvalidSpaceError(
            f"hyperparameter {label!r}: pchoice needs a list of (probability, option) pairs") from None
    return Choice(Distribution(label, "pchoice", probs=probs, n_options=len(options)), options)


def randint(label: str, *args: Any) -> Param:
    """An integer in ``[0, upper)`` (``randint(label, upper)``) or ``[low, high)``."""
    label = _label(label)
    if len(args) == 1:
        low, high = 0, args[0]
    elif len(args) == 2:
        low, high = args
    else:
        raise InvalidSpaceError(f"hyperparameter {label!r}: randint takes (label, upper) or (label, low, high)")
    return Param(Distribution(label, "randint", low=low, high=high))


def uniformint(label: str, low: float, high: float, q: float = 1.0) -> Param:
    """An integer uniform in ``[low, high]`` (both ends included)."""
    if q != 1:
        raise InvalidSpaceError(f"hyperparameter {label!r}: uniformint only supports q=1, got q={q!r}")
    return Param(Distribution(_label(label), "uniformint", low=low, high=high, q=1.0))


def uniform(label: str, low: float, high: float) -> Param:
    """A float uniform in ``[low, high]``."""
    return Param(Distribution(_label(label), "uniform", low=low, high=high))


def quniform(label: str, low: float, high: float, q: float) -> Param:
    """``round(uniform(low, high) / q) * q`` (a float, as in hyperopt)."""
    return Param(Distribution(_label(label), "quniform", low=low, high=high, q=q))


def loguniform(label: str, low: float, high: float) -> Param:
    """``exp(uniform(low, high))``: bounds are given in log space."""
    return Param(Distribution(_label(label), "loguniform", low=low, high=high))


def qloguniform(label: str, low: float, high: float, q: float) -> Param:
    """``round(exp(uniform(low, high)) / q) * q``."""
    return Param(Distribution(_label(label), "qloguniform", low=low, high=high, q=q))


def normal(label: str, mu: float, sigma: float) -> Param:
    """A float drawn from N(mu, sigma)."""
    return Param(Distribution(_label(label), "normal", mu=mu, sigma=sigma))


def qnormal(label: str, mu: float, sigma: float, q: float) -> Param:
    """``round(normal(mu, sigma) / q) * q``."""
    return Param(Distribution(_label(label), "qnormal", mu=mu, sigma=sigma, q=q))


def lognormal(label: str, mu: float, sigma: float) -> Param:
    """``exp(normal(mu, sigma))``."""
    return Param(Distribution(_label(label), "lognormal", mu=mu, sigma=sigma))


def qlognormal(label: str, mu: float, sigma: float, q: float) -> Param:
    """``round(exp(normal(mu, sigma)) / q) * q``."""
    return Param(Distribution(_label(label), "qlognormal", mu=mu, sigma=sigma, q=q))
