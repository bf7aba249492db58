"""Compatibility module: ``hpo_mongo.grid`` is ``hpo_mongo.algos.grid`` (as ``hyperopt.grid``)."""
from .algos.grid import *  # noqa: F401,F403
from .algos.grid import suggest  # noqa: F401
