"""Compatibility module: ``hpo_mongo.rand`` is ``hpo_mongo.algos.rand`` (as ``hyperopt.rand``)."""
from .algos.rand import *  # noqa: F401,F403
from .algos.rand import suggest  # noqa: F401
