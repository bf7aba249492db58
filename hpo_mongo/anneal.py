"""Compatibility module: ``hpo_mongo.anneal`` is ``hpo_mongo.algos.anneal`` (as ``hyperopt.anneal``)."""
from .algos.anneal import *  # noqa: F401,F403
from .algos.anneal import DEFAULT_AVG_BEST_IDX, DEFAULT_SHRINK_COEF, suggest  # noqa: F401
