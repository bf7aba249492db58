"""``MongoTrials``: the trial store on MongoDB (pymongo 4), evaluated by ``hpo-mongo-worker`` processes.

Collections (docs/schema.md has every field): ``jobs`` (one document per trial), ``experiments``
(one per exp_key), ``counters`` (the tid sequence) and the GridFS bucket ``fs`` (the pickled
domain, attachments).

- tids are global to the database (as in hyperopt) and come from one ``counters`` document
  incremented with ``find_one_and_update($inc)``: unique under any number of concurrent drivers.
- Every write sets ``updated_at`` with ``$currentDate`` (the server's clock). ``refresh()`` is
  incremental: it asks for this experiment's documents updated since the newest ``updated_at``
  it has seen minus an overlap window (``refresh_overlap``, 2 s), and keeps per ``_id`` the
  document with the highest ``version``. Documents deleted by another process stay visible
  until ``delete_all`` or a new ``MongoTrials``.
- Indexes are created by the driver when fmin starts an experiment (``ensure_indexes``), never
  by workers: jobs unique {tid}, {exp_key, state, tid}, {exp_key, updated_at}; experiments
  unique {exp_key}.
- fmin is asynchronous: the driver only queues NEW trials (by default the number of RUNNING
  trials plus ``max(2, max_queue_len)``), refreshes and waits. When fmin stops early (timeout,
  loss_threshold, early_stop_fn), the NEW trials it queued are moved to CANCEL; when it is
  interrupted (an exception, Ctrl-C) they stay NEW, so a new fmin call resumes with them.

Nothing here uses transactions, sessions, TTL indexes or ``w=0``.
"""
from __future__ import annotations

import logging
import os
import socket
import sys
import time
from typing import Any, Iterable, Mapping, MutableMapping

from bson import ObjectId
from pymongo import ASCENDING, ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from ..._version import __version__
from ...exceptions import DuplicateTrialError, InvalidParameterError, StoreError
from ..base import BaseTrials
from ..documents import JOB_STATE_ERROR, JOB_STATE_NEW, JOB_STATE_RUNNING, sonify, utcnow
from . import attachments as _att
from . import jobs as _jobs
from .connection import MongoURL, connect, parse_url, retry, server_time, translate_errors

logger = logging.getLogger("hpo_mongo.mongo")

SCHEMA_VERSION = 1
EXPERIMENTS = "experiments"
COUNTERS = "counters"
WORKERS = "workers"
#: counters document holding the last allocated tid
TID_COUNTER = "tid"
#: fields the store adds to every NEW trial document (beyond the hyperopt-compatible ones)
NEW_DOC_FIELDS = {"attempt": 0, "requeues": 0, "heartbeat": None, "worker": None,
                  "start_time": None, "end_time": None, "error": None, "_attachments": []}
DEFAULT_POLL_INTERVAL = 0.5
DEFAULT_REFRESH_OVERLAP = 2.0
DRIVER_HEARTBEAT_EVERY = 1.0


def _algo_name(algo: Any) -> str | None:
    fn = getattr(algo, "func", algo)  # functools.partial
    mod, name = getattr(fn, "__module__", None), getattr(fn, "__qualname__", getattr(fn, "__name__", None))
    return f"{mod}.{name}" if mod and name else (repr(fn) if fn is not None else None)


class MongoJobs:
    """The database handle shared by a driver's ``MongoTrials`` and a worker (hyperopt's name).

    Attributes: ``db`` (pymongo Database), ``coll`` (the jobs collection), ``experiments``,
    ``counters``, ``url`` (the parsed URL, or None when built from a Database).
    """

    def __init__(self, db: Database, collection: str = "jobs", url: Any = None, client: Any = None):
        self.db = db
        self.coll = db[collection]
        self.collection_name = collection
        self.experiments = db[EXPERIMENTS]
        self.counters = db[COUNTERS]
        self.workers = db[WORKERS]
        self.url = url
        self.client = client
        self._counter_ready = False

    @classmethod
    def new_from_connection_str(cls, url: Any = None, **client_kwargs: Any) -> "MongoJobs":
        """Connect to ``url`` (a URL string, a parsed URL, or None for ``$HPO_MONGO_URL``)."""
        parsed = url if isinstance(url, MongoURL) else parse_url(url)
        client = connect(parsed, **client_kwargs)
        return cls(client[parsed.database], parsed.collection, url=parsed, client=client)

    @classmethod
    def coerce(cls, arg: Any) -> "MongoJobs":
        """A MongoJobs from a URL, a parsed URL, a pymongo/mongomock Database or a MongoJobs."""
        if isinstance(arg, MongoJobs):
            return arg
        if arg is None or isinstance(arg, (str, MongoURL)):
            return cls.new_from_connection_str(arg)
        if isinstance(arg, Database) or type(arg).__module__.startswith("mongomock"):
            return cls(arg)
        raise InvalidParameterError(
            "The first parameter of MongoTrials must be a MongoDB URL (mongodb://host:port/db[/collection] "
            f"or mongodb+srv://…), a pymongo Database or a MongoJobs. Got {arg!r} instead.")

    # ---------------------------------------------------------------- indexes (driver only)
    def ensure_indexes(self) -> None:
        """Create the indexes of docs/schema.md (idempotent). Called by the driver, never by workers."""
        wanted = [
            (self.coll, [("tid", ASCENDING)], "tid_unique", True),
            (self.coll, [("exp_key", ASCENDING), ("state", ASCENDING), ("tid", ASCENDING)], "exp_key_state_tid", False),
            (self.coll, [("exp_key", ASCENDING), ("updated_at", ASCENDING)], "exp_key_updated_at", False),
            (self.experiments, [("exp_key", ASCENDING)], "exp_key_unique", True),
        ]
        with translate_errors():
            existing = {coll.name: set(coll.index_information()) for coll in (self.coll, self.experiments)}
            for coll, keys, name, unique in wanted:
                if name not in existing[coll.name]:  # a restarted driver changes nothing while workers run
                    coll.create_index(keys, unique=unique, name=name)

    # ---------------------------------------------------------------- tids
    def new_trial_ids(self, n: int) -> list[int]:
        """Allocate ``n`` consecutive tids from the ``counters`` document (atomic ``$inc``)."""
        if n <= 0:
            return []
        with translate_errors():
            if not self._counter_ready:  # start the sequence at -1 so tids start at 0, like in-memory Trials
                try:
                    self.counters.update_one({"_id": TID_COUNTER}, {"$setOnInsert": {"seq": -1}}, upsert=True)
                except DuplicateKeyError:  # another driver created it at the same moment
                    pass
                self._counter_ready = True
            doc = self.counters.find_one_and_update({"_id": TID_COUNTER}, {"$inc": {"seq": int(n)}},
                                                    upsert=True, projection={"seq": 1},  # a copy: see jobs.COPY
                                                    return_document=ReturnDocument.AFTER)
        last = int(doc["seq"])
        return list(range(last - n + 1, last + 1))

    # ---------------------------------------------------------------- worker side
    def reserve(self, owner: str, exp_key: Any = _jobs.ANY_EXPERIMENT,
                worker: Mapping[str, Any] | None = None, lease_timeout: float | None = None,
                max_attempts: int | None = None) -> dict | None:
        """Claim the oldest NEW trial (see :func:`jobs.claim`)."""
        with translate_errors():
            return _jobs.claim(self.coll, owner, exp_key=exp_key, worker=worker, lease_timeout=lease_timeout,
                               max_attempts=max_attempts)

    def finish(self, doc: Mapping[str, Any], state: int, result: Mapping[str, Any],
               error: Mapping[str, Any] | None = None, attachments: list | None = None) -> bool:
        """Write a claimed trial's outcome and attachment references (:func:`jobs.finish`)."""
        with translate_errors():
            return _jobs.finish(self.coll, doc, state, result, error, attachments)

    def put_attempt_files(self, doc: Mapping[str, Any], blobs: Mapping[str, bytes]) -> list[list]:
        """Upload a worker's attachments for its claim (:func:`attachments.put_attempt_files`)."""
        with translate_errors():
            return _att.put_attempt_files(self.db, doc, blobs)

    def refs_after_attempt(self, doc: Mapping[str, Any], new_refs: list[list]) -> tuple[list[list], list]:
        """The references a finishing attempt leaves (:func:`attachments.refs_after_attempt`)."""
        with translate_errors():
            return _att.refs_after_attempt(self.db, doc, new_refs)

    def discard_attempt_files(self, doc: Mapping[str, Any], keep: Iterable[Any] = ()) -> int:
        with translate_errors():
            return _att.discard_attempt_files(self.db, doc, keep)

    def delete_trial_file_ids(self, doc: Mapping[str, Any], ids: Iterable[Any]) -> None:
        with translate_errors():
            _att.delete_trial_file_ids(self.db, doc, ids)

    def checkpoint(self, doc: Mapping[str, Any], result: Mapping[str, Any] | None = None) -> bool:
        with translate_errors():
            return _jobs.checkpoint(self.coll, doc, result)

    def release(self, doc: Mapping[str, Any], requeue: bool = True) -> bool:
        with translate_errors():
            return _jobs.release(self.coll, doc, requeue=requeue)

    def experiment(self, exp_key: str | None) -> dict | None:
        with translate_errors():
            return self.experiments.find_one({"exp_key": exp_key})

    def domain_blob(self, digest: str) -> bytes | None:
        with translate_errors():
            return _att.get_domain(self.db, digest)

    def trial_attachments(self, trial: Mapping[str, Any]) -> MutableMapping[str, bytes]:
        return _att.TrialAttachments(self.db, self.coll, trial)

    def jobs_running(self) -> list[dict]:
        return list(self.coll.find({"state": JOB_STATE_RUNNING}))

    def delete_all_error_jobs(self) -> int:
        return self.coll.delete_many({"state": JOB_STATE_ERROR}).deleted_count


class MongoTrials(BaseTrials):
    """Trials stored in MongoDB and evaluated by workers (hyperopt's ``MongoTrials``).

    Args:
        arg: ``mongodb://host[:port]/db[/collection]`` or ``mongodb+srv://…`` (default database
            ``hpo``, collection ``jobs``); None reads ``$HPO_MONGO_URL``. A pymongo Database
            or a :class:`MongoJobs` is accepted too.
        exp_key: the experiment key (None is the default experiment).
        refresh: load the trials now.
        poll_interval: seconds fmin waits between refreshes while workers evaluate.
        refresh_overlap: seconds subtracted from the newest ``updated_at`` seen when refreshing.
        secret / secret_file: sign the domain payload (default: ``$HPO_MONGO_SECRET``).
    Raises:
        InvalidURLError, StoreUnavailable.
    """

    asynchronous = True
    #: while fmin runs, seconds the driver keeps retrying (bounded exponential backoff) when the
    #: server is unreachable before giving up with StoreUnavailable (issue 5)
    max_disconnect = 300.0
    #: the driver applies the lease rules with the values the claiming worker recorded on the trial
    #: (``lease_timeout``, ``max_attempts``: lost that many times → ERROR "lost N times"); these
    #: defaults only serve trials that record none
    max_attempts = _jobs.DEFAULT_MAX_ATTEMPTS
    stale_timeout = _jobs.DEFAULT_STALE_TIMEOUT
    _retrying = False  # set by the fmin hooks: retry idempotent calls across outages

    def __init__(self, arg: Any = None, exp_key: str | None = None, cmd: Any = None,
                 workdir: str | None = None, refresh: bool = True, *,
                 poll_interval: float = DEFAULT_POLL_INTERVAL,
                 refresh_overlap: float = DEFAULT_REFRESH_OVERLAP,
                 secret: bytes | str | None = None, secret_file: str | None = None):
        if exp_key is not None and not isinstance(exp_key, str):
            raise InvalidParameterError(f"The 'exp_key' parameter of MongoTrials must be a str or None. "
                                        f"Got {exp_key!r} instead.")
        if not (isinstance(poll_interval, (int, float)) and poll_interval > 0):
            raise InvalidParameterError(f"The 'poll_interval' parameter of MongoTrials must be a number > 0. "
                                        f"Got {poll_interval!r} instead.")
        if not (isinstance(refresh_overlap, (int, float)) and refresh_overlap >= 0):
            raise InvalidParameterError(f"The 'refresh_overlap' parameter of MongoTrials must be a number >= 0. "
                                        f"Got {refresh_overlap!r} instead.")
        super().__init__(exp_key)
        self.handle = MongoJobs.coerce(arg)
        self.cmd, self.workdir = cmd, workdir
        self.poll_interval = float(poll_interval)
        self.refresh_overlap = float(refresh_overlap)
        self._secret, self._secret_file = secret, secret_file
        self._docs: dict[Any, dict] = {}
        self._last_seen = None  # newest updated_at seen (server clock)
        self._domain_hash: str | None = None
        self._queued_ids: list[Any] = []
        if refresh:
            self.refresh()

    # ---------------------------------------------------------------- pickling (reconnects by URL)
    def __getstate__(self) -> dict:
        if self.handle.url is None:
            raise TypeError("a MongoTrials built from a Database object cannot be pickled; build it from a URL")
        state = self.__dict__.copy()
        state["handle"] = self.handle.url
        return state

    def __setstate__(self, state: dict) -> None:
        url = state.pop("handle")
        self.__dict__.update(state)
        self.handle = MongoJobs.new_from_connection_str(url)

    def __repr__(self) -> str:
        where = getattr(self.handle.url, "display", None) or self.handle.db.name
        return f"MongoTrials({where!r}, exp_key={self._exp_key!r}, {len(self._trials)} trials)"

    # ---------------------------------------------------------------- BaseTrials backend
    @property
    def jobs(self):
        """The pymongo ``jobs`` collection."""
        return self.handle.coll

    @property
    def db(self) -> Database:
        return self.handle.db

    def _call(self, fn: Any, what: str) -> Any:
        """``fn()``; while fmin runs, retried across outages (see ``max_disconnect``)."""
        if not self._retrying:
            return fn()
        return retry(fn, what=what, max_wait=self.max_disconnect, logger=logger)

    def refresh(self) -> None:
        """Fetch the documents updated since the last refresh (see the module docstring)."""
        self._call(self._refresh_once, "refreshing the trials")

    def _refresh_once(self) -> None:
        flt: dict[str, Any] = {"exp_key": self._exp_key}
        if self._last_seen is not None:
            import datetime as _dt
            flt["updated_at"] = {"$gte": self._last_seen - _dt.timedelta(seconds=self.refresh_overlap)}
        changed = False
        with translate_errors():
            for doc in self.jobs.find(flt, dict(_jobs.COPY)):
                old = self._docs.get(doc["_id"])
                if old is None or doc.get("version", 0) > old.get("version", 0):
                    self._docs[doc["_id"]] = doc
                    changed = True
                seen = doc.get("updated_at")
                if seen is not None and (self._last_seen is None or seen > self._last_seen):
                    self._last_seen = seen
        if changed or len(self._trials) != len(self._docs):
            self._trials = sorted(self._docs.values(), key=lambda t: t["tid"])

    def refresh_tids(self, tids: Iterable[int] | None = None) -> None:
        """hyperopt's name; ``refresh()`` (the tids argument is ignored)."""
        self.refresh()

    def new_trial_ids(self, n: int) -> list[int]:
        # a retried $inc may skip tids (never duplicates them)
        return self._call(lambda: self.handle.new_trial_ids(n), "allocating trial ids")

    def _insert_trial_docs(self, docs: list[dict]) -> list[int]:
        bodies = []
        for d in docs:
            body = {**NEW_DOC_FIELDS, **{k: v for k, v in d.items()
                                         if k not in ("_id", "updated_at", "created_at")}}
            body["_attachments"] = list(body.get("_attachments") or [])
            body.setdefault("version", 0)
            if body.get("domain_hash") is None:
                body["domain_hash"] = self._domain_hash
            bodies.append(sonify(body))
        with translate_errors():
            for body in bodies:
                # an upsert on a fresh _id always inserts, and lets the server stamp the times;
                # the unique tid index turns a reused tid into DuplicateKeyError
                oid = ObjectId()
                try:  # idempotent (same _id): safe to retry across an outage
                    self._call(lambda: self.jobs.update_one(
                        {"_id": oid}, {"$setOnInsert": body,
                                       "$currentDate": {"created_at": True, "updated_at": True}},
                        upsert=True), f"queueing trial {body['tid']}")
                except DuplicateKeyError as e:
                    raise DuplicateTrialError(f"a trial with tid {body['tid']} already exists in "
                                              f"{self.db.name}.{self.jobs.name}") from e
                self._queued_ids.append(oid)
        return [d["tid"] for d in docs]

    def count_by_state_unsynced(self, arg: int | Iterable[int]) -> int:
        """Count this experiment's trials in state(s) ``arg`` on the server."""
        states = [arg] if isinstance(arg, int) else list(arg)

        def count() -> int:
            with translate_errors():
                return self.jobs.count_documents({"exp_key": self._exp_key, "state": {"$in": states}})
        return self._call(count, "counting trials")

    def delete_all(self, cond: Mapping[str, Any] | None = None) -> None:
        """Delete this experiment's trials matching ``cond`` (default: all) and their attachments.

        Without ``cond`` the experiment document and the experiment attachments go too (the
        content-addressed domain blob stays: other experiments may share it).
        """
        flt = {**(dict(cond) if cond else {}), "exp_key": self._exp_key}
        with translate_errors():
            tids = [d["tid"] for d in self.jobs.find(flt, {"tid": 1})]
            self.jobs.delete_many(flt)
            _att.delete_trial_files(self.db, tids)
            if not cond:
                self.attachments.clear()
                self.handle.experiments.delete_one({"exp_key": self._exp_key})
        self._docs.clear()
        self._trials = []
        self._last_seen = None
        self.refresh()

    @property
    def attachments(self) -> MutableMapping[str, bytes]:
        """Experiment attachments in GridFS (``exp/<exp_key>/<name>``)."""
        return _att.ExperimentAttachments(self.db, self._exp_key)

    def trial_attachments(self, trial: Mapping[str, Any]) -> MutableMapping[str, bytes]:
        """One trial's attachments in GridFS (``trial/<tid>/<name>``, listed in ``_attachments``)."""
        return self.handle.trial_attachments(trial)

    def view(self, exp_key: str | None = None, refresh: bool = True) -> "MongoTrials":
        """Another MongoTrials on the same connection, for experiment ``exp_key``."""
        return MongoTrials(self.handle, exp_key=exp_key, cmd=self.cmd, workdir=self.workdir, refresh=refresh,
                           poll_interval=self.poll_interval, refresh_overlap=self.refresh_overlap,
                           secret=self._secret, secret_file=self._secret_file)

    def ensure_indexes(self) -> None:
        self.handle.ensure_indexes()

    def experiment(self) -> dict | None:
        """This experiment's document in ``experiments`` (None before fmin ran)."""
        return self.handle.experiment(self._exp_key)

    # ---------------------------------------------------------------- fmin
    def _fmin_hooks(self, loop: Any) -> "_DriverHooks":
        return _DriverHooks(self, loop)


class _DriverHooks:
    """What fmin does with a MongoTrials (see ``_FMinLoop.run``): set up, heartbeat, queue, wait, end.

    Creating the hooks pickles the domain (a :class:`PicklingError` here means nothing was
    queued), creates the indexes, stores the domain payload and upserts the experiment document.
    """

    def __init__(self, trials: MongoTrials, loop: Any):
        from ...payload import dumps_domain, load_secret, local_versions, pack_payload, payload_hash
        self.trials, self.loop = trials, loop
        h = trials.handle
        secret = trials._secret if trials._secret is not None else load_secret(trials._secret_file)
        raw = dumps_domain(loop.domain)  # raises PicklingError naming the culprit; nothing queued yet
        blob = pack_payload(raw, secret, {"kind": "domain"})
        digest = payload_hash(blob)
        h.ensure_indexes()
        max_evals = getattr(loop, "max_evals", None)
        versions = local_versions()
        with translate_errors():
            _att.put_domain(h.db, blob, digest, trials.exp_key)
            fields = {
                "max_evals": None if max_evals is None or max_evals >= sys.maxsize else int(max_evals),
                "algorithm": _algo_name(getattr(loop, "algo", None)),
                "status": "running",
                "driver.host": socket.gethostname(),
                "driver.pid": os.getpid(),
                "domain_hash": digest,
                "python_version": versions["python"],
                "cloudpickle_version": versions["cloudpickle"],
                "hpo_mongo_version": __version__,
                "schema_version": SCHEMA_VERSION,
                "space": sonify(loop.domain.space.to_json()),
                "signed": bool(secret),
            }
            update = {"$set": fields, "$setOnInsert": {"created": utcnow()},
                      "$currentDate": {"updated_at": True, "driver.heartbeat": True}}
            try:
                h.experiments.update_one({"exp_key": trials.exp_key}, update, upsert=True)
            except DuplicateKeyError:  # a concurrent driver created it first: now it exists
                h.experiments.update_one({"exp_key": trials.exp_key}, update, upsert=True)
            # trials queued before a domain existed (points_to_evaluate, an older run) get this one
            h.coll.update_many({"exp_key": trials.exp_key, "state": JOB_STATE_NEW, "domain_hash": None},
                               {"$set": {"domain_hash": digest}, "$currentDate": {"updated_at": True},
                                "$inc": {"version": 1}})
        trials._domain_hash = digest
        self._last_beat = time.monotonic()
        self._live_workers = 0
        trials._retrying = True  # from here on, fmin rides out server outages (until end())
        logger.info("experiment %r: domain %s stored; workers may start", trials.exp_key, digest[:12])

    def tick(self) -> None:
        """At most once a second: driver heartbeat on the experiment document, requeue of this
        experiment's stale trials (lease rules, server clock) and the count of live workers."""
        if time.monotonic() - self._last_beat < DRIVER_HEARTBEAT_EVERY:
            return
        self._last_beat = time.monotonic()
        t = self.trials

        def beat() -> None:
            with translate_errors():
                t.handle.experiments.update_one(
                    {"exp_key": t.exp_key},
                    {"$currentDate": {"driver.heartbeat": True, "updated_at": True}})
                now = server_time(t.db)
                _jobs.requeue_stale(t.jobs, now=now, stale_timeout=t.stale_timeout, max_attempts=t.max_attempts,
                                    exp_key=t.exp_key, log=logger)
                self._live_workers = _jobs.count_live_workers(t.handle.workers, now=now,
                                                              stale_timeout=t.stale_timeout, exp_key=t.exp_key)
        t._call(beat, "the driver heartbeat")

    def queue_target(self, max_queue_len: int) -> int:
        """NEW trials to keep queued: one per live worker serving this experiment (at least
        ``max_queue_len``); before any worker registered, the RUNNING ones plus ``max(2, max_queue_len)``."""
        if self._live_workers:
            return max(int(max_queue_len), self._live_workers)
        running = sum(1 for t in self.trials.trials if t["state"] == JOB_STATE_RUNNING)
        return running + max(2, int(max_queue_len))

    def wait(self) -> None:
        time.sleep(self.trials.poll_interval)

    def end(self, stop_reason: str | None) -> None:
        """Cancel this driver's still-NEW trials if fmin stopped early; record the experiment status."""
        t = self.trials
        try:
            if stop_reason in ("timeout", "loss_threshold", "early_stop_fn"):
                with translate_errors():
                    n = _jobs.cancel_new(t.jobs, t.exp_key, ids=t._queued_ids)
                if n:
                    logger.info("fmin stopped (%s): %d queued trials cancelled", stop_reason, n)
            status = "done" if stop_reason in ("max_evals", "exhausted") else "stopped"
            with translate_errors():
                t.handle.experiments.update_one({"exp_key": t.exp_key},
                                                {"$set": {"status": status, "stop_reason": stop_reason},
                                                 "$currentDate": {"updated_at": True}})
            t._queued_ids = []
            t.refresh()
        except StoreError as e:  # never hide the reason fmin is ending
            logger.warning("could not record the end of fmin: %s", e)
        finally:
            t._retrying = False
