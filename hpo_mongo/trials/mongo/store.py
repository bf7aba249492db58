"""``MongoTrials``: the trial store on MongoDB (pymongo 4), evaluated by ``hpo-mongo-worker`` processes.

Collections (docs/schema.md has every field): ``jobs`` (one document per trial), ``experiments``
(one per exp_key), ``counters`` (the tid sequence) and the GridFS bucket ``fs`` (the pickled
domain, attachments).

- tids are global to the database (as in hyperopt) and come from one ``counters`` document
  incremented with ``find_one_and_update($inc)``: unique under any number of concurrent drivers.
- Every write sets ``updated_at`` with ``$currentDate`` (the server's clock). ``refresh()`` is
  incremental: it asks for this experiment's documents updated since the newest ``updated_at``
  it has seen minus an overlap window (``refresh_overlap``, 2 s), and keeps per ``_id`` the
  document with the highest ``version``. Outside fmin, documents deleted by another process stay
  visible until ``delete_all`` or a new ``MongoTrials``; while fmin runs, the driver checks every
  second that the database still holds what it has seen and repairs it (``_DriverHooks``).
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

import contextlib
import contextvars
import dataclasses
import logging
import os
import socket
import sys
import time
from typing import Any, Callable, Iterable, Iterator, Mapping, MutableMapping

from bson import ObjectId
from pymongo import ASCENDING, ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from ..._version import __version__
from ...exceptions import DuplicateTrialError, InvalidParameterError, InvalidURLError, StoreError
from ...payload import local_versions
from .. import leases
from ..base import BaseTrials
from ..documents import (JOB_FINISHED_STATES, JOB_STATE_ERROR, JOB_STATE_NEW, JOB_STATE_RUNNING, sonify,
                         utcnow)
from . import attachments as _att
from . import jobs as _jobs
from ..outage import retry
from .connection import ENV_URL, MongoURL, connect, parse_url, server_time, translate_errors

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

    def on_database(self, database: str, collection: str = "jobs") -> "MongoJobs":
        """A MongoJobs on ``database`` / ``collection`` through this handle's client (same server,
        same credentials); this handle itself if it is already that one."""
        if database == self.db.name and collection == self.collection_name:
            return self
        client = self.client if self.client is not None else self.db.client
        url = dataclasses.replace(self.url, database=database, collection=collection) if self.url else None
        return MongoJobs(client[database], collection, url=url, client=client)

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

    def tid_counter(self) -> int | None:
        """The last allocated tid (the ``counters`` document), None if the counter does not exist."""
        with translate_errors():
            doc = self.counters.find_one({"_id": TID_COUNTER}, dict(_jobs.COPY))
        return None if doc is None else int(doc.get("seq", -1))

    def raise_tid_counter(self, at_least: int) -> None:
        """Make the last allocated tid at least ``at_least`` (atomic ``$max``, creating the counter if
        it is gone), so that no tid up to ``at_least`` is allocated again."""
        with translate_errors():
            self.counters.update_one({"_id": TID_COUNTER}, {"$max": {"seq": int(at_least)}}, upsert=True)
        self._counter_ready = True

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

    def release(self, doc: Mapping[str, Any], count_as_lost: bool = False) -> bool:
        with translate_errors():
            return _jobs.release(self.coll, doc, count_as_lost=count_as_lost)

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


#: set by :func:`reconnect_through`: (handle, secret) an unpickled MongoTrials connects through
_RECONNECT: contextvars.ContextVar[tuple[MongoJobs, bytes | None] | None] = contextvars.ContextVar(
    "hpo_mongo_reconnect_through", default=None)


@contextlib.contextmanager
def reconnect_through(handle: MongoJobs, secret: bytes | None = None) -> Iterator[None]:
    """While active (in this thread), a :class:`MongoTrials` being unpickled connects through
    ``handle``'s client — its server and credentials — and takes ``secret``.

    A pickled MongoTrials carries no credentials and no secret (see ``MongoTrials.__getstate__``):
    a worker loads each domain inside this context with its own handle and secret, and the driver
    checks its pickled domain the same way.
    """
    token = _RECONNECT.set((handle, secret))
    try:
        yield
    finally:
        _RECONNECT.reset(token)


def _reconnect(url: MongoURL) -> tuple[MongoJobs, bytes | None]:
    """The handle (and secret) an unpickled MongoTrials of ``url`` uses: :func:`reconnect_through`'s,
    else ``url`` itself when it had no credentials, else ``$HPO_MONGO_URL`` (same database)."""
    context = _RECONNECT.get()
    if context is not None:
        handle, secret = context
        return handle.on_database(url.database, url.collection), secret
    if url.uri:
        return MongoJobs.new_from_connection_str(url), None
    env = os.environ.get(ENV_URL, "").strip()
    if not env:
        raise InvalidURLError(
            f"cannot reconnect an unpickled MongoTrials of {url.display!r}: its URL had credentials, which are "
            f"never pickled; set {ENV_URL} to a URL of that server with credentials (its database "
            f"{url.database!r} and collection {url.collection!r} are kept)")
    base = parse_url(env)
    return MongoJobs.new_from_connection_str(
        dataclasses.replace(base, database=url.database, collection=url.collection)), None


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
    max_attempts = leases.DEFAULT_MAX_ATTEMPTS
    stale_timeout = leases.DEFAULT_LEASE_TIMEOUT
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
        self._max_tid = -1  # the highest tid this store has seen or allocated: never allocated again
        #: while fmin runs: the driver's check of the database, called when the tid counter is found behind
        self._on_counter_behind: Callable[[], None] | None = None
        if refresh:
            self.refresh()

    # ---------------------------------------------------------------- pickling (never the secrets)
    #: attributes never pickled: the connection, the signing secret, the driver's callback and retry mode
    _NOT_PICKLED = ("handle", "_secret", "_secret_file", "_on_counter_behind", "_retrying")

    def __getstate__(self) -> dict:
        """Everything but the connection, the secret and the URL's credentials (an objective that
        references its MongoTrials takes it to the workers inside the domain payload)."""
        if self.handle.url is None:
            raise TypeError("a MongoTrials built from a Database object cannot be pickled; build it from a URL")
        state = {k: v for k, v in self.__dict__.items() if k not in self._NOT_PICKLED}
        state["handle"] = self.handle.url.without_credentials()
        return state

    def __setstate__(self, state: dict) -> None:
        """Reconnect: through :func:`reconnect_through`'s handle (a worker), else by the pickled URL
        (which had no credentials), else by ``$HPO_MONGO_URL``."""
        url = state.pop("handle")
        for name in self._NOT_PICKLED:
            state.pop(name, None)  # pickles made by older versions carried the secret
        self.__dict__.update(state)
        self.__dict__.setdefault("_max_tid", max((int(t["tid"]) for t in self._trials), default=-1))
        self._secret_file, self._on_counter_behind = None, None
        self.handle, self._secret = _reconnect(url)

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
                self._max_tid = max(self._max_tid, int(doc["tid"]))
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
        """``n`` fresh tids, all above every tid this store has seen or allocated.

        A counter that hands out such a tid again was reset or lost writes (a restored database, a
        server that lost its last writes): it is raised above them (``$max``) and asked again.
        """
        # a retried $inc may skip tids (never duplicates them)
        tids = self._call(lambda: self.handle.new_trial_ids(n), "allocating trial ids")
        if tids and tids[0] <= self._max_tid:
            if self._on_counter_behind is not None:  # the driver's check: logs and repairs, counter included
                self._call(self._on_counter_behind, "checking the database")
            else:
                logger.warning("experiment %r: the tid counter handed out tid %d, but tids up to %d were seen: the "
                               "database was reset or lost writes; raising the counter above them",
                               self._exp_key, tids[0], self._max_tid)
                self._call(lambda: self.handle.raise_tid_counter(self._max_tid), "raising the tid counter")
            tids = self._call(lambda: self.handle.new_trial_ids(n), "allocating trial ids")
        if tids:
            self._max_tid = max(self._max_tid, tids[-1])
        return tids

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

    def _forget(self, ids: Iterable[Any]) -> None:
        """Drop documents from the local view (they are gone from the database)."""
        ids = set(ids)
        for oid in ids:
            self._docs.pop(oid, None)
        self._queued_ids = [oid for oid in self._queued_ids if oid not in ids]
        self._trials = sorted(self._docs.values(), key=lambda t: t["tid"])

    def _restore(self, docs: Iterable[Mapping[str, Any]]) -> int:
        """Write back documents of the local view that the database lost, or holds only in an older
        version (lower ``version``): same ``_id``, tid and content. Idempotent. Raises
        :class:`DuplicateTrialError` if another trial now holds one of their tids. Returns how many
        were written."""
        n = 0
        with translate_errors():
            for doc in docs:
                body = {k: v for k, v in doc.items() if k not in ("_id", "updated_at")}
                stamp = {"$currentDate": {"updated_at": True}}
                if self.jobs.update_one({"_id": doc["_id"], "version": {"$lt": doc.get("version", 0)}},
                                        {"$set": body, **stamp}).matched_count:
                    n += 1
                    continue
                try:  # gone: insert it again (an upsert on its _id; a no-op if it exists)
                    res = self.jobs.update_one({"_id": doc["_id"]}, {"$setOnInsert": body, **stamp}, upsert=True)
                except DuplicateKeyError as e:
                    raise DuplicateTrialError(
                        f"cannot restore trial {doc['tid']} of experiment {self._exp_key!r}, which the database lost: "
                        f"another trial now holds tid {doc['tid']} (another driver allocated it after the tid "
                        f"counter was reset); the run cannot go on without losing it") from e
                n += res.upserted_id is not None
        return n

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

    def space_description(self) -> list | None:
        """What fmin recorded here, else the experiment document's ``space`` (written by the
        driver that ran it, so a MongoTrials opened later decodes values too)."""
        return super().space_description() or (self.experiment() or {}).get("space")

    # ---------------------------------------------------------------- fmin
    def _fmin_hooks(self, loop: Any) -> "_DriverHooks":
        return _DriverHooks(self, loop)


class _DriverHooks:
    """What fmin does with a MongoTrials (see ``_FMinLoop.run``): set up, heartbeat, queue, wait, end.

    Creating the hooks pickles the domain (a :class:`PicklingError` here means nothing was
    queued), then sets up the experiment (:meth:`publish`: indexes, domain payload, experiment
    document), retried across outages like the rest of the run (``max_disconnect``).

    Every tick the driver also checks that the database still holds what it has seen
    (:meth:`check_store`), so that a database reset under it (a restarted or restored server, one that
    lost its last writes, an experiment or trials deleted while it runs) never leaves it waiting for
    trials that no longer exist, nor reusing a tid:

    - the tid counter is raised above every tid the driver has seen (atomic ``$max``);
    - a missing experiment document, domain payload or index is created again;
    - the finished trials it holds that the database lost are written back (same ``_id``, tid and
      result: nothing finished is lost) — after a reset also those it holds only in an older
      version (a server that lost its last writes);
    - its queued and running trials that vanished are dropped from its view, so that new ones are
      suggested in their place (with new tids).

    Each repair is logged as one WARNING. A finished trial that cannot be written back because
    another trial now holds its tid stops fmin with :class:`DuplicateTrialError`.
    """

    def __init__(self, trials: MongoTrials, loop: Any):
        from ...payload import dumps_domain, load_secret, pack_payload, payload_hash, size_warning
        self.trials, self.loop = trials, loop
        secret = trials._secret if trials._secret is not None else load_secret(trials._secret_file)
        with reconnect_through(trials.handle, secret):  # the check that the pickle loads back reconnects
            raw = dumps_domain(loop.domain)  # raises PicklingError naming the culprit; nothing queued yet
        self._blob = pack_payload(raw, secret, {"kind": "domain"})
        self._digest = payload_hash(self._blob)
        self._signed = bool(secret)
        warning = size_warning(len(self._blob))
        if warning:
            logger.warning("experiment %r: %s", trials.exp_key, warning)
        self._last_beat = time.monotonic()
        self._live_workers = 0
        trials._retrying = True  # from here on, fmin rides out server outages (until end())
        try:
            trials._call(self.publish, "setting up the experiment")
        except BaseException:
            trials._retrying = False
            raise
        trials._domain_hash = self._digest
        trials._on_counter_behind = self.check_store
        logger.info("experiment %r: domain %s stored; workers may start", trials.exp_key, self._digest[:12])

    def publish(self) -> None:
        """Create the indexes, store the domain payload, upsert the experiment document and give the
        domain to NEW trials queued without one (each step idempotent)."""
        t, loop = self.trials, self.loop
        h = t.handle
        h.ensure_indexes()
        max_evals = getattr(loop, "max_evals", None)
        versions = local_versions()
        with translate_errors():
            _att.put_domain(h.db, self._blob, self._digest, t.exp_key)
            fields = {
                "max_evals": None if max_evals is None or max_evals >= sys.maxsize else int(max_evals),
                "algorithm": _algo_name(getattr(loop, "algo", None)),
                "status": "running",
                "driver.host": socket.gethostname(),
                "driver.pid": os.getpid(),
                "domain_hash": self._digest,
                "python_version": versions["python"],
                "cloudpickle_version": versions["cloudpickle"],
                "hpo_mongo_version": __version__,
                "schema_version": SCHEMA_VERSION,
                "space": sonify(loop.domain.space.to_json()),
                "signed": self._signed,
            }
            update = {"$set": fields, "$setOnInsert": {"created": utcnow()},
                      "$currentDate": {"updated_at": True, "driver.heartbeat": True}}
            try:
                h.experiments.update_one({"exp_key": t.exp_key}, update, upsert=True)
            except DuplicateKeyError:  # a concurrent driver created it first: now it exists
                h.experiments.update_one({"exp_key": t.exp_key}, update, upsert=True)
            # trials queued before a domain existed (points_to_evaluate, an older run) get this one
            h.coll.update_many({"exp_key": t.exp_key, "state": JOB_STATE_NEW, "domain_hash": None},
                               {"$set": {"domain_hash": self._digest}, "$currentDate": {"updated_at": True},
                                "$inc": {"version": 1}})

    def tick(self) -> None:
        """At most once a second: driver heartbeat on the experiment document, requeue of this
        experiment's stale trials (lease rules, server clock), the count of live workers, and the
        check that the database still holds what the driver has seen (:meth:`check_store`)."""
        if time.monotonic() - self._last_beat < DRIVER_HEARTBEAT_EVERY:
            return
        self._last_beat = time.monotonic()
        t = self.trials

        def beat() -> bool:
            with translate_errors():
                found = t.handle.experiments.update_one(
                    {"exp_key": t.exp_key},
                    {"$currentDate": {"driver.heartbeat": True, "updated_at": True}}).matched_count == 1
                now = server_time(t.db)
                leases.log_events(_jobs.requeue_stale(t.jobs, now=now, default_lease=t.stale_timeout,
                                                      default_max_attempts=t.max_attempts, exp_key=t.exp_key),
                                  logger)
                self._live_workers = sum(
                    1 for w in t.handle.workers.find({"status": {"$ne": "exited"}})
                    if leases.worker_is_live(w, now, t.stale_timeout) and leases.worker_serves(w, t.exp_key))
            return found
        found = t._call(beat, "the driver heartbeat")
        t._call(lambda: self.check_store(experiment_found=found), "checking the database")

    def check_store(self, experiment_found: bool | None = None) -> None:
        """Compare the database with what the driver has seen and repair it (see the class docstring).

        Cheap when nothing is wrong: the tid counter, the number of this experiment's trials and
        which of the driver's pending trials still exist (plus the experiment document when
        ``experiment_found`` is None; the heartbeat tells otherwise).
        """
        t = self.trials
        h = t.handle
        lost: list[str] = []
        with translate_errors():
            if experiment_found is None:
                experiment_found = h.experiments.count_documents({"exp_key": t.exp_key}, limit=1) == 1
            if not experiment_found:
                lost.append("the experiment document")
            counter = h.tid_counter()
            if t._max_tid >= 0 and (counter is None or counter < t._max_tid):
                lost.append(f"the tid counter (at {'nothing' if counter is None else counter}, while this driver "
                            f"has seen tid {t._max_tid})")
                h.raise_tid_counter(t._max_tid)
            docs = list(t._docs.values())
            pending = [d["_id"] for d in docs if d["state"] not in JOB_FINISHED_STATES]
            older: list[dict] = []  # finished here, an older version there (the server lost writes)
            vanished: list[dict] = []
            if lost:  # a reset: compare every document's version
                versions = {d["_id"]: d.get("version", 0) for d in h.coll.find({"exp_key": t.exp_key}, {"version": 1})}
                vanished = [d for d in docs if d["_id"] not in versions]
                older = [d for d in docs if d["state"] in JOB_FINISHED_STATES and d["_id"] in versions
                         and versions[d["_id"]] < d.get("version", 0)]
            elif (h.coll.count_documents({"exp_key": t.exp_key}) < len(docs)
                    or (pending and h.coll.count_documents({"_id": {"$in": pending}}) < len(pending))):
                present = {d["_id"] for d in h.coll.find({"exp_key": t.exp_key}, {"_id": 1})}
                vanished = [d for d in docs if d["_id"] not in present]
        if not lost and not vanished:
            return
        finished = [d for d in vanished if d["state"] in JOB_FINISHED_STATES] + older
        gone = sorted((d for d in vanished if d["state"] not in JOB_FINISHED_STATES), key=lambda d: d["tid"])
        if vanished:
            lost.append(f"{len(vanished)} of its {len(docs)} trials")
        if older:
            lost.append(f"the results of {len(older)} finished trials")
        self.publish()
        restored = t._restore(sorted(finished, key=lambda d: d["tid"]))
        t._forget(d["_id"] for d in gone)
        repairs = ["the counter, the experiment document, the domain and the indexes are in place"]
        if finished:
            repairs.append(f"{restored} finished trial(s) written back")
        if gone:
            repairs.append(f"{len(gone)} queued/running trial(s) vanished (" +
                           ", ".join(f"tid {d['tid']}" for d in gone[:10]) + (", ..." if len(gone) > 10 else "") +
                           "): new ones are queued in their place")
        logger.warning("experiment %r: the database lost %s (reset, restored, or deleted while fmin runs); %s",
                       t.exp_key, ", ".join(lost), "; ".join(repairs))

    def queue_target(self, max_queue_len: int) -> int:
        """NEW trials to keep queued: one per live worker serving this experiment (at least
        ``max_queue_len``); before any worker registered, the RUNNING ones plus ``max(2, max_queue_len)``."""
        if self._live_workers:
            return max(int(max_queue_len), self._live_workers)
        running = sum(1 for t in self.trials.trials if t["state"] == JOB_STATE_RUNNING)
        return running + max(2, int(max_queue_len))

    def room(self, max_evals: int) -> int:
        """How many more trials ``max_evals`` allows, counted on the server: every trial of the
        experiment counts (finished or pending), also those another driver on it queued a moment ago."""
        t = self.trials

        def count() -> int:
            with translate_errors():
                return t.jobs.count_documents({"exp_key": t.exp_key})
        return max_evals - t._call(count, "counting trials")

    def wait(self) -> None:
        time.sleep(self.trials.poll_interval)

    def end(self, stop_reason: str | None) -> None:
        """Cancel this driver's still-NEW trials if fmin stopped early; record the experiment status."""
        t = self.trials
        t._on_counter_behind = None
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
