"""``hyperopt.spark``: the module path and the ``SparkTrials`` name.

Parallel evaluation without a database (hyperopt's SparkTrials) is not available in this
version: constructing ``SparkTrials`` raises a NotImplementedError that says so and names the
supported way to evaluate in parallel, MongoTrials with ``hpo-mongo-worker`` processes.
"""
from __future__ import annotations

from typing import Any

__all__ = ["SparkTrials"]

MESSAGE = ("SparkTrials is not available in this version of hpo_mongo (parallel evaluation without a "
           "database is coming): evaluate in parallel with MongoTrials and hpo-mongo-worker processes "
           "(README 'Distributed'), or use Trials for in-process evaluation")


class SparkTrials:
    """Placeholder for hyperopt's SparkTrials; raises NotImplementedError (see the module docstring)."""

    asynchronous = True

    def __init__(self, parallelism: int | None = None, timeout: float | None = None,
                 loss_threshold: float | None = None, spark_session: Any = None):
        raise NotImplementedError(MESSAGE)
