"""``hyperopt.mongoexp`` compatibility: the names users import from it.

``from hpo_mongo.mongoexp import MongoTrials`` works as ``from hyperopt.mongoexp import MongoTrials``;
``main_worker`` / ``main`` run ``hpo-mongo-worker``. The worker-side classes of hyperopt
(``MongoWorker``, ``MongoCtrl``) map to :class:`hpo_mongo.worker.loop.Worker` and
:class:`~hpo_mongo.worker.loop.WorkerCtrl`; the database layout is documented in docs/schema.md
(reading databases written by hyperopt is not supported).
"""
from __future__ import annotations

from typing import Any, Mapping

from .exceptions import ObjectiveLoadError, StoreError, StoreUnavailable
from .trials import leases
from .trials.mongo.connection import parse_url
from .trials.mongo.queue import MongoJobQueue
from .trials.mongo.store import MongoTrials
from .trials.queue import ANY_EXPERIMENT


class MongoJobs(MongoJobQueue):
    """hyperopt's handle on the jobs collection: the queue of one database, with hyperopt's names."""

    @classmethod
    def new_from_connection_str(cls, url: Any = None, **client_kwargs: Any) -> "MongoJobs":
        return cls.connect(url, **client_kwargs)  # type: ignore[return-value]

    @property
    def coll(self) -> Any:
        """The jobs collection (hyperopt's name)."""
        return self.jobs

    def reserve(self, host_id: str, exp_key: Any = ANY_EXPERIMENT, worker: Mapping[str, Any] | None = None,
                lease_timeout: float = leases.DEFAULT_LEASE_TIMEOUT,
                max_attempts: int = leases.DEFAULT_MAX_ATTEMPTS) -> dict | None:
        """Claim the oldest NEW job for ``host_id`` (hyperopt's name of :meth:`claim`)."""
        return self.claim(host_id, exp_key=exp_key, worker=worker, lease_timeout=lease_timeout,
                          max_attempts=max_attempts)


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
