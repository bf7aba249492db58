"""The options of ``tpe.suggest``: defaults, hyperopt's rules as named functions, and
:class:`TPEOptions`, which checks every option once and names the one that is wrong."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Union

import numpy as np

from ... import _validation as v
from .parzen import ParzenParameters
from .parzen import default_weights as _default_weights

DEFAULT_PRIOR_WEIGHT = 1.0
DEFAULT_N_STARTUP_JOBS = 10  # hyperopt: 20; the benchmark favours 10 (as Optuna)
DEFAULT_N_EI_CANDIDATES = 64  # hyperopt, Optuna: 24; chosen by the benchmark (bench/RESULTS.md)
DEFAULT_GAMMA = 0.25
DEFAULT_LF = 25
DEFAULT_MAX_COMPONENTS = 128
DEFAULT_MULTIVARIATE = True  # chosen by the benchmark (bench/RESULTS.md)
DEFAULT_CONSTANT_LIAR = True
DEFAULT_LIAR_BANDWIDTH = 3.0  # chosen by the 8-pending benchmark over 50 seeds (bench/RESULTS.md)

Gamma = Union[float, Callable[[int], int], None]


def default_gamma(n: int, gamma: float | None = None) -> int:
    """Size of the good group among ``n`` finished trials.

    * ``gamma=None`` (the default of :func:`suggest`): ``min(ceil(0.1 n), 25)``, chosen by the
      benchmark (bench/RESULTS.md) over hyperopt's square-root rule;
    * a number: hyperopt's rule ``min(ceil(gamma * sqrt(n)), 25)``, so
      ``partial(tpe.suggest, gamma=0.25)`` behaves as in hyperopt.

    At least one trial is good.
    """
    if gamma is None:
        k = math.ceil(0.1 * n)
    else:
        k = math.ceil(gamma * math.sqrt(n))
    return int(max(1, min(k, 25)))


def default_weights(n: int, lf: int = DEFAULT_LF) -> np.ndarray:
    """Linear-forgetting weights of ``n`` observations in age order (newest ``lf`` at 1)."""
    return _default_weights(n, lf)


_BOOL = v.InstanceOf((bool, np.bool_), "a bool")
_COUNT = v.Interval(int, 0, None)
_POSITIVE_INT = v.Interval(int, 1, None)
_NON_NEGATIVE = v.Interval(float, 0, None)


@dataclass(frozen=True)
class TPEOptions:
    """The options of :func:`hpo_mongo.algos.tpe.suggest` (see there), checked on creation."""

    prior_weight: float = DEFAULT_PRIOR_WEIGHT
    n_startup_jobs: int = DEFAULT_N_STARTUP_JOBS
    n_EI_candidates: int = DEFAULT_N_EI_CANDIDATES
    gamma: Gamma = None
    linear_forgetting: int = DEFAULT_LF
    constant_liar: bool = DEFAULT_CONSTANT_LIAR
    multivariate: bool = DEFAULT_MULTIVARIATE
    max_components: int = DEFAULT_MAX_COMPONENTS
    cat_prior_per_option: bool = True
    liar_weight: float = 1.0
    liar_bandwidth: float = DEFAULT_LIAR_BANDWIDTH

    def __post_init__(self) -> None:
        v.validate({
            "prior_weight": (self.prior_weight, [_NON_NEGATIVE]),
            "n_startup_jobs": (self.n_startup_jobs, [_COUNT]),
            "n_EI_candidates": (self.n_EI_candidates, [_POSITIVE_INT]),
            "gamma": (self.gamma, [v.NONE, v.Interval(float, 0, None, closed="neither"), v.CALLABLE]),
            "linear_forgetting": (self.linear_forgetting, [_COUNT]),
            "constant_liar": (self.constant_liar, [_BOOL]),
            "multivariate": (self.multivariate, [_BOOL]),
            "max_components": (self.max_components, [_POSITIVE_INT]),
            "cat_prior_per_option": (self.cat_prior_per_option, [_BOOL]),
            "liar_weight": (self.liar_weight, [_NON_NEGATIVE]),
            "liar_bandwidth": (self.liar_bandwidth, [_NON_NEGATIVE]),
        }, "tpe.suggest")

    def n_good(self, n_finished: int) -> int:
        """Size of the good group among ``n_finished`` trials (``gamma``), in ``[1, n_finished]``."""
        n = self.gamma(n_finished) if callable(self.gamma) else default_gamma(n_finished, self.gamma)
        return int(min(max(n, 1), n_finished))

    @property
    def parzen(self) -> ParzenParameters:
        """The estimators' share of the options."""
        return ParzenParameters(float(self.prior_weight), int(self.linear_forgetting), int(self.max_components),
                                bool(self.cat_prior_per_option), float(self.liar_weight))
