"""Tree-structured Parzen Estimator (``tpe.suggest``), hyperopt's options plus extras.

Layers, importing one way: :mod:`.sampler` (trials → split → argmax) → :mod:`.parzen`
(observations → mixtures) → :mod:`.mixtures` (batched kernels) → :mod:`._truncnorm` (scipy).
"""
from .sampler import (DEFAULT_CONSTANT_LIAR, DEFAULT_GAMMA, DEFAULT_LIAR_BANDWIDTH, DEFAULT_LF, DEFAULT_MAX_COMPONENTS,
                      DEFAULT_MULTIVARIATE, DEFAULT_N_EI_CANDIDATES, DEFAULT_N_STARTUP_JOBS,
                      DEFAULT_PRIOR_WEIGHT, default_gamma, default_weights, suggest)

_default_prior_weight = DEFAULT_PRIOR_WEIGHT
_default_n_startup_jobs = DEFAULT_N_STARTUP_JOBS
_default_n_EI_candidates = DEFAULT_N_EI_CANDIDATES
_default_gamma = DEFAULT_GAMMA  # hyperopt's value, used when gamma is given as a number
_default_linear_forgetting = DEFAULT_LF

__all__ = ["suggest", "default_gamma", "default_weights", "DEFAULT_PRIOR_WEIGHT",
           "DEFAULT_N_STARTUP_JOBS", "DEFAULT_N_EI_CANDIDATES", "DEFAULT_GAMMA", "DEFAULT_LF",
           "DEFAULT_MAX_COMPONENTS", "DEFAULT_MULTIVARIATE", "DEFAULT_CONSTANT_LIAR",
           "DEFAULT_LIAR_BANDWIDTH"]
