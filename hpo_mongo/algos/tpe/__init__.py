"""Tree-structured Parzen Estimator (``tpe.suggest``), hyperopt's options plus extras.

Layers, importing one way: :mod:`.sampler` (trials → split → build → sample → score) →
:mod:`.options` (defaults, checked options) and :mod:`.parzen` (observations → mixtures,
bandwidths) → :mod:`.kernels` (column constants, kernel kinds) → :mod:`.mixtures` (batched
kernels) → :mod:`._truncnorm` (scipy).
"""
from .options import (DEFAULT_CONSTANT_LIAR, DEFAULT_GAMMA, DEFAULT_LIAR_BANDWIDTH, DEFAULT_LF, DEFAULT_MAX_COMPONENTS,
                      DEFAULT_MULTIVARIATE, DEFAULT_N_EI_CANDIDATES, DEFAULT_N_STARTUP_JOBS,
                      DEFAULT_PRIOR_WEIGHT, TPEOptions, default_gamma, default_weights)
from .sampler import suggest

_default_prior_weight = DEFAULT_PRIOR_WEIGHT
_default_n_startup_jobs = DEFAULT_N_STARTUP_JOBS
_default_n_EI_candidates = DEFAULT_N_EI_CANDIDATES
_default_gamma = DEFAULT_GAMMA  # hyperopt's value, used when gamma is given as a number
_default_linear_forgetting = DEFAULT_LF

__all__ = ["suggest", "TPEOptions", "default_gamma", "default_weights", "DEFAULT_PRIOR_WEIGHT",
           "DEFAULT_N_STARTUP_JOBS", "DEFAULT_N_EI_CANDIDATES", "DEFAULT_GAMMA", "DEFAULT_LF",
           "DEFAULT_MAX_COMPONENTS", "DEFAULT_MULTIVARIATE", "DEFAULT_CONSTANT_LIAR",
           "DEFAULT_LIAR_BANDWIDTH"]
