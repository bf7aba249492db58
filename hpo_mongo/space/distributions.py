"""Prior distributions of the hp DSL: small validated value objects that sample with numpy.

Each distribution works on *internal* values: a float for numeric kinds, the option index for
``choice``/``pchoice``. ``misc.vals`` in trial documents stores exactly these values.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, NamedTuple

import numpy as np

from ..exceptions import InvalidSpaceError

class KindFlags(NamedTuple):
    """What readers of a space need to know about a kind, so that only this module names kinds.

    They are written into :meth:`Distribution.to_json` (and so into the experiments document)
    and read back by tools through :func:`kind_flags`.
    """

    categorical: bool  # values are option indices (choice, pchoice)
    ordered: bool  # nearby values behave alike (False for choice, pchoice, randint, as in hyperopt)
    integer: bool  # values are integers (option index, randint, uniformint)
    log: bool  # ``low``/``high``/``mu``/``sigma`` describe the log of the value
    quantized: bool  # values are rounded to multiples of ``q``
    bounded: bool  # drawn within ``low``/``high`` (else around ``mu`` with ``sigma``)


#: every kind of hyperparameter, in hp's order, with its flags
_FLAGS: dict[str, KindFlags] = {
    #                        categ. ordered integer log    quant. bounded
    "choice":      KindFlags(True,  False, True,  False, False, False),
    "pchoice":     KindFlags(True,  False, True,  False, False, False),
    "randint":     KindFlags(False, False, True,  False, False, True),
    "uniformint":  KindFlags(False, True,  True,  False, True,  True),
    "uniform":     KindFlags(False, True,  False, False, False, True),
    "quniform":    KindFlags(False, True,  False, False, True,  True),
    "loguniform":  KindFlags(False, True,  False, True,  False, True),
    "qloguniform": KindFlags(False, True,  False, True,  True,  True),
    "normal":      KindFlags(False, True,  False, False, False, False),
    "qnormal":     KindFlags(False, True,  False, False, True,  False),
    "lognormal":   KindFlags(False, True,  False, True,  False, False),
    "qlognormal":  KindFlags(False, True,  False, True,  True,  False),
}
KINDS = tuple(_FLAGS)
CATEGORICAL_KINDS = frozenset(k for k, f in _FLAGS.items() if f.categorical)
INT_KINDS = frozenset(k for k, f in _FLAGS.items() if f.integer)
LOG_KINDS = frozenset(k for k, f in _FLAGS.items() if f.log)
QUANTIZED_KINDS = frozenset(k for k, f in _FLAGS.items() if f.quantized)
BOUNDED_KINDS = frozenset(k for k, f in _FLAGS.items() if f.bounded)
NORMAL_KINDS = frozenset(k for k, f in _FLAGS.items() if not f.bounded and not f.categorical)
_ARGUMENTS = ("low", "high", "q", "mu", "sigma")


def kind_flags(description: Mapping[str, Any]) -> KindFlags | None:
    """The flags of one parameter's JSON description (:meth:`Distribution.to_json`).

    Descriptions written before the flags existed carry only ``kind``: their flags come from
    the kind. None for an unknown kind.
    """
    if all(name in description for name in KindFlags._fields):
        return KindFlags(*(bool(description[name]) for name in KindFlags._fields))
    return _FLAGS.get(description.get("kind"))  # type: ignore[arg-type]


def _number(label: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidSpaceError(
            f"hyperparameter {label!r}: {name} must be a number, got {value!r}"
            + (" (parameters inside bounds are not supported)" if hasattr(value, "label") else "")
        )
    value = float(value)
    if not math.isfinite(value):
        raise InvalidSpaceError(f"hyperparameter {label!r}: {name} must be finite, got {value!r}")
    return value


@dataclass(frozen=True)
class Distribution:
    """One hyperparameter's prior: its kind and arguments, validated at construction."""

    label: str
    kind: str
    low: float | None = None
    high: float | None = None
    q: float | None = None
    mu: float | None = None
    sigma: float | None = None
    probs: tuple[float, ...] | None = None  # categorical kinds: option probabilities
    n_options: int = field(default=0)

    def __post_init__(self) -> None:
        lab, kind = self.label, self.kind
        if kind not in KINDS:
            raise InvalidSpaceError(f"hyperparameter {lab!r}: unknown kind {kind!r}")
        if kind in CATEGORICAL_KINDS:
            if self.n_options <= 0:
                raise InvalidSpaceError(f"hyperparameter {lab!r}: {kind} needs at least one option, got none")
            probs = np.asarray(self.probs, dtype=float)
            if probs.shape != (self.n_options,) or np.any(~np.isfinite(probs)) or np.any(probs < 0):
                raise InvalidSpaceError(f"hyperparameter {lab!r}: probabilities must be {self.n_options} "
                                        f"non-negative numbers, got {list(self.probs or ())}")
            if abs(probs.sum() - 1.0) > 1e-6:
                raise InvalidSpaceError(
                    f"hyperparameter {lab!r}: pchoice probabilities must sum to 1, they sum to {probs.sum():.6g}")
            return
        if kind in BOUNDED_KINDS:
            low = _number(lab, "low", self.low)
            high = _number(lab, "high", self.high)
            if not low < high:
                raise InvalidSpaceError(
                    f"hyperparameter {lab!r}: low must be less than high, got low={low:g}, high={high:g}")
            if kind in ("randint", "uniformint") and (low != int(low) or high != int(high)):
                raise InvalidSpaceError(
                    f"hyperparameter {lab!r}: {kind} bounds must be integers, got low={low:g}, high={high:g}")
        if kind in NORMAL_KINDS:
            _number(lab, "mu", self.mu)
            sigma = _number(lab, "sigma", self.sigma)
            if sigma <= 0:
                raise InvalidSpaceError(f"hyperparameter {lab!r}: sigma must be positive, got sigma={sigma:g}")
        if kind in QUANTIZED_KINDS:
            q = _number(lab, "q", self.q)
            if q <= 0:
                raise InvalidSpaceError(f"hyperparameter {lab!r}: q must be positive, got q={q:g}")

    # ------------------------------------------------ the arguments a kind requires
    # (present by construction: __post_init__ rejects a kind without them)
    def _bounds(self) -> tuple[float, float]:
        """``low, high`` of a bounded kind."""
        assert self.low is not None and self.high is not None, self.kind
        return self.low, self.high

    def _normal(self) -> tuple[float, float]:
        """``mu, sigma`` of a normal kind."""
        assert self.mu is not None and self.sigma is not None, self.kind
        return self.mu, self.sigma

    def _step(self) -> float:
        """``q`` of a quantized kind."""
        assert self.q is not None, self.kind
        return self.q

    def _probs(self) -> tuple[float, ...]:
        """The option probabilities of a categorical kind."""
        assert self.probs is not None, self.kind
        return self.probs

    # ----------------------------------------------------------------- properties
    @property
    def flags(self) -> KindFlags:
        """The kind's :class:`KindFlags`."""
        return _FLAGS[self.kind]

    @property
    def is_int(self) -> bool:
        """True when values are integers (choice index, randint, uniformint)."""
        return self.flags.integer

    @property
    def is_categorical(self) -> bool:
        return self.flags.categorical

    @property
    def is_ordered(self) -> bool:
        """False for kinds whose nearby values are unrelated (choice, pchoice, randint)."""
        return self.flags.ordered

    @property
    def is_log(self) -> bool:
        return self.flags.log

    @property
    def is_quantized(self) -> bool:
        return self.flags.quantized

    @property
    def is_bounded(self) -> bool:
        """True for kinds drawn within ``low``/``high`` (uniform family, randint, uniformint)."""
        return self.flags.bounded

    @property
    def value_bounds(self) -> tuple[float, float]:
        """Smallest and largest value before quantization: option indices, the integer range
        (randint's ``high`` is exclusive), ``exp`` of the bounds for log kinds; unbounded for
        normal kinds (from 0 for log-normal ones)."""
        if self.is_categorical:
            return 0.0, float(self.n_options - 1)
        if self.is_bounded:
            assert self.low is not None and self.high is not None
            if self.is_log:
                return math.exp(self.low), math.exp(self.high)
            return self.low, self.high - 1 if self.kind == "randint" else self.high
        return (0.0 if self.is_log else -math.inf), math.inf

    def arguments(self) -> dict[str, float]:
        """The numeric arguments given to the kind (``low``, ``high``, ``q``, ``mu``, ``sigma``)."""
        return {name: getattr(self, name) for name in _ARGUMENTS if getattr(self, name) is not None}

    @property
    def n_values(self) -> int:
        """Number of distinct values of an integer kind (0 for continuous kinds)."""
        if self.is_categorical:
            return self.n_options
        if self.kind == "randint":
            low, high = self._bounds()
            return int(high - low)
        if self.kind == "uniformint":
            low, high = self._bounds()
            return int(high - low) + 1
        return 0

    # ----------------------------------------------------------------- sampling
    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Draw ``n`` internal values (float array) from the prior."""
        k = self.kind
        if k in CATEGORICAL_KINDS:
            if k == "choice":
                return rng.integers(0, self.n_options, size=n).astype(float)
            return rng.choice(self.n_options, size=n, p=np.asarray(self.probs)).astype(float)
        if k == "randint":
            low, high = self._bounds()
            return rng.integers(int(low), int(high), size=n).astype(float)
        if k == "uniformint":
            low, high = self._bounds()
            return rng.integers(int(low), int(high) + 1, size=n).astype(float)
        if k in ("uniform", "quniform", "loguniform", "qloguniform"):
            low, high = self._bounds()
            x = rng.uniform(low, high, size=n)
        else:
            mu, sigma = self._normal()
            x = rng.normal(mu, sigma, size=n)
        if self.is_log:
            x = np.exp(x)
        if self.is_quantized:
            x = self.quantize(x)
        return x

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """hyperopt's rounding ``round(x / q) * q``."""
        q = self._step()
        return np.round(np.asarray(x, dtype=float) / q) * q

    def contains(self, x: np.ndarray) -> np.ndarray:
        """Boolean mask: which internal values this prior can produce."""
        x = np.asarray(x, dtype=float)
        ok = np.isfinite(x)
        k = self.kind
        lo: float
        hi: float
        if self.is_int:
            if self.is_categorical:
                lo, hi = 0, self.n_options - 1
            else:
                low, high = self._bounds()
                lo, hi = low, high - (k == "randint")
            return ok & (x == np.round(x)) & (x >= lo) & (x <= hi)
        if self.is_quantized:
            with np.errstate(invalid="ignore"):
                ok &= np.isclose(self.quantize(x), x, rtol=1e-9, atol=1e-12 * max(1.0, self._step()))
        if k in ("uniform", "loguniform"):
            low, high = self._bounds()
            lo, hi = (math.exp(low), math.exp(high)) if self.is_log else (low, high)
            ok &= (x >= lo) & (x <= hi)
        elif k in ("quniform", "qloguniform"):
            low, high = self._bounds()
            lo, hi = (math.exp(low), math.exp(high)) if self.is_log else (low, high)
            q = self._step()
            ok &= (x >= min(lo, np.round(lo / q) * q) - 1e-9) & (x <= max(hi, np.round(hi / q) * q) + 1e-9)
        elif k in ("lognormal", "qlognormal"):
            ok &= x >= 0
        return ok

    def external(self, value: float) -> int | float:
        """Internal float → the Python value stored in ``misc.vals`` (int for integer kinds)."""
        return int(round(value)) if self.is_int else float(value)

    # ----------------------------------------------------------------- json
    def to_json(self) -> dict[str, Any]:
        """A JSON description (stored in the experiments document for tools): label, kind, its
        arguments and the :class:`KindFlags`, so tools need not know kind names."""
        d: dict[str, Any] = {"label": self.label, "kind": self.kind, **self.arguments()}
        if self.is_categorical:
            d["n_options"] = self.n_options
            d["probs"] = list(self._probs())
        d.update(self.flags._asdict())
        if self.is_bounded:
            d["value_low"], d["value_high"] = self.value_bounds
        return d
