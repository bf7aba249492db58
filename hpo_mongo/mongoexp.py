"""``hyperopt.mongoexp`` compatibility: the names users import from it.

``from hpo_mongo.mongoexp import MongoTrials`` works as ``from hyperopt.mongoexp import MongoTrials``;
``main_worker`` / ``main`` run ``hpo-mongo-worker``. The worker-side classes of hyperopt
(``MongoWorker``, ``MongoCtrl``) map to :class:`hpo_mongo.worker.loop.Worker` and
:class:`~hpo_mongo.worker.loop.WorkerCtrl`; the database layout is documented in docs/schema.md
(reading databases written by hyperopt is not supported).
"""
from __future__ import annotations

from .exceptions import ObjectiveLoadError, StoreError, StoreUnavailable
from .trials.mongo.connection import parse_url
from .trials.mongo.store import MongoJobs, MongoTrials


class ReserveTimeout(Exception):
    """hyperopt's name; hpo-mongo-worker exits 0 after ``--reserve-timeout`` instead of raising."""


class Shutdown(Exception):
    """hyperopt's name; hpo-mongo-worker handles SIGTERM/SIGINT itself."""


def __getattr__(name: str):  # lazy: importing the worker pulls in more than MongoTrials users need
    if name in ("MongoWorker", "Worker"):
        from .worker.loop import Worker
        return Worker
    if name == "MongoCtrl":
        from .worker.loop import WorkerCtrl
        return WorkerCtrl
    if name in ("main_worker", "main"):
        from .cli.worker import main
        return main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["MongoTrials", "MongoJobs", "MongoWorker", "MongoCtrl", "main_worker", "main", "parse_url",
           "ReserveTimeout", "Shutdown", "StoreError", "StoreUnavailable", "ObjectiveLoadError"]
