"""Compatibility module: ``hpo_mongo.tpe`` is ``hpo_mongo.algos.tpe`` (as ``hyperopt.tpe``)."""
from .algos.tpe import *  # noqa: F401,F403
from .algos.tpe import (_default_gamma, _default_linear_forgetting, _default_n_EI_candidates,  # noqa: F401
                        _default_n_startup_jobs, _default_prior_weight, suggest)
