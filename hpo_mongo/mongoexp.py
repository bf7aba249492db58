"""``hyperopt.mongoexp`` compatibility: the names users import from it, with hyperopt's signatures.

- ``MongoTrials`` is hpo_mongo's store; ``MongoJobs`` takes hyperopt's arguments
  (``MongoJobs.new_from_connection_str(url, gfs_coll="fs", config_name="spec")``; the GridFS
  bucket is always ``fs``) and adds hyperopt's ``jobs``/``conn``/``gfs`` attributes;
- ``MongoWorker(mj, poll_interval, workdir, exp_key, logfilename).run_one(host_id, reserve_timeout)``
  claims and evaluates one trial in this process with hpo_mongo's worker (heartbeat and lease
  included); an objective's exception is recorded as an ERROR trial, not re-raised; no trial
  within ``reserve_timeout`` raises :class:`ReserveTimeout`;
- ``main_worker_helper(options, args)`` runs ``hpo-mongo-worker`` with hyperopt's optparse options
  (``mongo, exp_key, poll_interval, reserve_timeout, max_jobs, max_consecutive_failures,
  last_job_timeout, workdir, use_subprocesses``) and returns its exit code;
- ``as_mongo_str`` and ``parse_url`` return what hyperopt's return (``parse_url`` gives hyperopt's
  8-tuple; a URL without a port, such as ``mongodb+srv://``, has ``port=None``).
The database layout is documented in docs/schema.md (databases written by hyperopt are not read).
"""
from __future__ import annotations

import logging
import sys
import urllib.parse
from typing import TYPE_CHECKING, Any, Iterator

import gridfs

from .exceptions import ObjectiveLoadError, StoreError, StoreUnavailable
from .trials.documents import JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_NEW
from .trials.mongo import connection as _connection
from .trials.mongo.queue import MongoJobQueue
from .trials.mongo.store import MongoTrials
from .trials.queue import ANY_EXPERIMENT

if TYPE_CHECKING:  # imported lazily by __getattr__ at run time
    from .cli.worker import main
    from .cli.worker import main as main_worker
    from .worker.ctrl import WorkerCtrl as MongoCtrl

logger = logging.getLogger(__name__)


class ReserveTimeout(Exception):
    """No trial could be claimed within ``reserve_timeout`` seconds (``MongoWorker.run_one``)."""


class Shutdown(Exception):
    """hyperopt's name; hpo-mongo-worker handles SIGTERM/SIGINT itself."""


class WaitQuit(Exception):
    """hyperopt's name; hpo-mongo-worker finishes the running trial on SIGTERM (grace period)."""


def as_mongo_str(s: str) -> str:
    """``host[:port]/db`` → ``mongo://host[:port]/db``; a string with a scheme is returned unchanged."""
    return s if "://" in s else f"mongo://{s}"


def parse_url(url: str, pwfile: str | None = None) -> tuple:
    """hyperopt's ``(protocol, username, password, hostname, port, dbname, collection, authdbname)``.

    The URL is validated by hpo_mongo's parser first (a clear InvalidURLError otherwise); the
    password comes from ``pwfile`` (its content without the last character, as hyperopt) when the
    URL has a user but no password. The collection defaults to ``jobs``.
    """
    parsed = _connection.parse_url(url)
    protocol = url[: url.find(":")]
    parts = urllib.parse.urlsplit("ftp" + url[url.find(":"):])
    password = parts.password
    if password is None and parts.username is not None and pwfile:
        with open(pwfile) as f:
            password = f.read()[:-1]
    auth = urllib.parse.parse_qs(parts.query).get("authSource", [None])[-1]
    return (protocol, parts.username, password, parts.hostname, parts.port, parsed.database,
            parsed.collection, auth)


class MongoJobs(MongoJobQueue):
    """The job queue of one database with hyperopt's constructor
    ``MongoJobs(db, jobs, gfs, conn, tunnel, config_name)`` and names."""

    def __init__(self, db: Any, jobs: Any = "jobs", gfs: Any = None, conn: Any = None, tunnel: Any = None,
                 config_name: str = "spec", *, url: Any = None, client: Any = None, **options: Any):
        collection = jobs if isinstance(jobs, str) else jobs.name
        super().__init__(db, collection, url=url, client=client if client is not None else conn, **options)

    @classmethod
    def new_from_connection_str(cls, conn_str: Any = None, gfs_coll: str = "fs", config_name: str = "spec",
                                **client_kwargs: Any) -> "MongoJobs":
        return cls.connect(conn_str, **client_kwargs)  # type: ignore[return-value]

    @property
    def coll(self) -> Any:
        """The jobs collection (hyperopt's name)."""
        return self.jobs

    @property
    def conn(self) -> Any:
        return self.client

    @property
    def gfs(self) -> gridfs.GridFS:
        return gridfs.GridFS(self.db, collection="fs")

    def __iter__(self) -> Iterator[dict]:
        return iter(self.coll.find())

    def __len__(self) -> int:
        return self.coll.count_documents({})

    def jobs_complete(self) -> list[dict]:
        return list(self.coll.find({"state": JOB_STATE_DONE}))

    def jobs_error(self) -> list[dict]:
        return list(self.coll.find({"state": JOB_STATE_ERROR}))

    def jobs_queued(self) -> list[dict]:
        return list(self.coll.find({"state": JOB_STATE_NEW}))

    def create_indexes(self) -> None:
        self.prepare()

    def reserve(self, host_id: Any, exp_key: Any = ANY_EXPERIMENT) -> dict | None:
        """Claim the oldest NEW job for ``host_id`` (hyperopt's name of :meth:`claim`), with the
        default lease rules."""
        from .trials import leases
        return self.claim(str(host_id), exp_key=exp_key, lease_timeout=leases.DEFAULT_LEASE_TIMEOUT,
                          max_attempts=leases.DEFAULT_MAX_ATTEMPTS)


class MongoWorker:
    """hyperopt's worker object: ``run_one()`` claims and evaluates one trial (see the module docstring)."""

    poll_interval = 3.0
    workdir = None

    def __init__(self, mj: Any, poll_interval: float = poll_interval, workdir: str | None = workdir,
                 exp_key: str | None = None, logfilename: str = "logfile.txt"):
        self.mj = MongoJobQueue.coerce(mj)
        self.poll_interval, self.workdir, self.exp_key, self.logfilename = poll_interval, workdir, exp_key, logfilename

    def run_one(self, host_id: Any = None, reserve_timeout: float | None = None,
                erase_created_workdir: bool = False) -> None:
        from .worker.loop import Worker, WorkerConfig
        config = WorkerConfig(exp_key=ANY_EXPERIMENT if self.exp_key is None else self.exp_key,
                              poll_interval=float(self.poll_interval), max_jobs=1,
                              reserve_timeout=float(reserve_timeout or 0), workdir=self.workdir, subprocess=False)
        owner = host_id[0] if isinstance(host_id, (list, tuple)) and host_id else host_id
        worker = Worker(self.mj, config, owner=owner)
        worker.run()
        if worker.n_done == 0 and reserve_timeout:
            raise ReserveTimeout(f"no trial to claim within reserve_timeout={reserve_timeout}s")


def _worker_argv(options: Any) -> list[str]:
    def opt(name: str, default: Any = None) -> Any:
        return options.get(name, default) if isinstance(options, dict) else getattr(options, name, default)

    mongo = as_mongo_str(opt("mongo", "localhost/hyperopt"))
    path = mongo.split("://", 1)[1]
    if "?" not in path and path.count("/") == 1:
        mongo += "/jobs"  # hyperopt's worker always uses the jobs collection
    argv = ["--mongo", mongo, "--poll-interval", str(opt("poll_interval", 5)),
            "--reserve-timeout", str(opt("reserve_timeout", 120.0)),
            "--max-consecutive-failures", str(opt("max_consecutive_failures", 4))]
    for name, flag in (("exp_key", "--exp-key"), ("last_job_timeout", "--last-job-timeout"), ("workdir", "--workdir")):
        if opt(name) is not None:
            argv += [flag, str(opt(name))]
    max_jobs = opt("max_jobs", sys.maxsize)
    if max_jobs is not None and int(max_jobs) != sys.maxsize:
        argv += ["--max-jobs", str(int(max_jobs))]
    if not opt("use_subprocesses", True):
        argv.append("--no-subprocess")
    if opt("max_jobs_in_db") not in (None, sys.maxsize):
        logger.warning("max_jobs_in_db is not supported by hpo-mongo-worker; ignored")
    return argv


def main_worker_helper(options: Any, args: Any = None) -> int:
    """Run hpo-mongo-worker with hyperopt's worker options (an optparse Values or a dict); its exit code."""
    from .cli.worker import main as worker_main
    try:
        worker_main.main(args=_worker_argv(options), standalone_mode=False)
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def __getattr__(name: str):  # lazy: importing the worker pulls in more than MongoTrials users need
    if name == "Worker":
        from .worker.loop import Worker
        return Worker
    if name == "MongoCtrl":
        from .worker.ctrl import WorkerCtrl
        return WorkerCtrl
    if name in ("main_worker", "main"):
        from .cli.worker import main
        return main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["MongoTrials", "MongoJobs", "MongoWorker", "MongoCtrl", "main_worker", "main", "main_worker_helper",
           "parse_url", "as_mongo_str", "ReserveTimeout", "Shutdown", "WaitQuit", "StoreError", "StoreUnavailable",
           "ObjectiveLoadError"]
