"""``MongoJobQueue``: the :class:`~hpo_mongo.trials.queue.JobQueue` on MongoDB (pymongo 4).

Collections (docs/schema.md): the jobs collection (its name from the URL, ``jobs`` by default),
``experiments``, ``counters``, ``workers`` and the GridFS bucket ``fs``. Each job state change
is one of the single-document writes in :mod:`.jobs`; blobs follow the naming of
:mod:`.attachments`. Every pymongo error leaves as an hpo_mongo error (``translate_errors``).
Nothing here needs transactions, sessions, TTL indexes or ``w=0``, so it runs on any MongoDB
>= 4.4 (Atlas, replica sets) and on the in-memory test server.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import math
import time
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence

from bson import ObjectId
from pymongo import ASCENDING, ReturnDocument, UpdateOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from ...exceptions import DuplicateTrialError, InvalidParameterError, InvalidResultError
from .. import leases
from ..documents import (queued_doc, JOB_FINISHED_STATES, JOB_STATE_DONE, JOB_STATE_NEW, JOB_STATE_RUNNING,
                         REPORTS_FIELD, STATE_NAMES, STATUS_OK, STATUS_PRUNED, loss_of, sonify, utcnow)
from ..queue import ANY_EXPERIMENT, LAST_REPORT, LIST_FIELDS, check_find_args
from . import attachments as _att
from . import jobs as _jobs
from . import reports as _reports
from .connection import MongoURL, connect, parse_url, server_time, translate_errors

EXPERIMENTS = "experiments"
COUNTERS = "counters"
WORKERS = "workers"
#: counters document holding the last allocated tid
TID_COUNTER = "tid"
#: documents per reply of the big reads (a whole experiment): replies stay under the server's message limit
FIND_BATCH = 1000
#: seconds a change stream waits on the server per round (``wait_for_changes``)
STREAM_WAIT = 0.1
#: seconds :meth:`MongoJobQueue.changed` looks back before the newest ``updated_at`` it saw: writes
#: stamped by the server just before a read may become visible just after it
DEFAULT_REFRESH_OVERLAP = 2.0
#: listings: the list fields and the latest report (``$slice``), which becomes ``last_report``
_LIST_PROJECTION = {**{f: 1 for f in LIST_FIELDS}, REPORTS_FIELD: {"$slice": -1}}
#: the driver's refresh leaves the reports out (a growing array it never reads); any projection
#: also makes the server reply with a copy of the document (see ``jobs.COPY``)
_CHANGED_PROJECTION = {REPORTS_FIELD: 0}
#: seconds between two reads of a settled overlap window (see :class:`RefreshCursor`)
WINDOW_RECHECK = 5.0


class RefreshCursor(NamedTuple):
    """Where :meth:`MongoJobQueue.changed` resumes: the newest ``updated_at`` seen, ``{_id: (version,
    updated_at)}`` of the jobs seen in the overlap window before it, when (``time.monotonic()``)
    ``newest`` was first seen and when the window was last read. Once the window has been read
    ``refresh_overlap`` seconds after ``newest`` was first seen, every write stamped before
    ``newest`` is visible and was read: the window is read again only every
    :data:`WINDOW_RECHECK` seconds (for a primary whose clock is behind, after a failover) until
    ``newest`` moves."""
    newest: _dt.datetime | None
    known: dict[Any, tuple[Any, _dt.datetime]]
    seen_at: float
    checked_at: float


#: the indexes of docs/schema.md, created by :meth:`MongoJobQueue.prepare`:
#: ``(collection, keys, name, unique)``; collection "jobs" is the queue's jobs collection
INDEXES = (
    ("jobs", (("tid", ASCENDING),), "tid_unique", True),
    ("jobs", (("exp_key", ASCENDING), ("state", ASCENDING), ("tid", ASCENDING)), "exp_key_state_tid", False),
    # workers serving every experiment claim (and requeue) across experiments
    ("jobs", (("state", ASCENDING), ("tid", ASCENDING)), "state_tid", False),
    ("jobs", (("exp_key", ASCENDING), ("updated_at", ASCENDING)), "exp_key_updated_at", False),
    ("jobs", (("exp_key", ASCENDING), (f"{REPORTS_FIELD}.step", ASCENDING)), _reports.STEP_INDEX, False),
    (EXPERIMENTS, (("exp_key", ASCENDING),), "exp_key_unique", True),
)


def _listed(doc: dict) -> dict:
    """A listing's document: its latest report as ``last_report``, the reports left out."""
    reports = doc.pop(REPORTS_FIELD, None) or []
    doc[LAST_REPORT] = dict(reports[-1]) if reports else None
    return doc


class MongoJobQueue:
    """The job queue of one database (see the module docstring and the protocol)."""

    def __init__(self, db: Database, collection: str = "jobs", *, client: Any = None, url: MongoURL | None = None,
                 refresh_overlap: float = DEFAULT_REFRESH_OVERLAP):
        self.db = db
        self.jobs = db[collection]
        self.collection_name = collection
        self.experiments = db[EXPERIMENTS]
        self.counters = db[COUNTERS]
        self.workers_coll = db[WORKERS]
        self.client = client
        self.url = url
        self.refresh_overlap = float(refresh_overlap)
        self._counter_ready = False
        self._insert_ids: dict[int, ObjectId] = {}  # tid -> the _id its insert uses until it succeeds
        self._stream: Any = None                    # the change stream wait_for_changes waits on
        self._streams_unsupported = False

    @classmethod
    def connect(cls, url: Any = None, *, refresh_overlap: float = DEFAULT_REFRESH_OVERLAP,
                **client_kwargs: Any) -> "MongoJobQueue":
        """The queue named by ``url`` (a string, a parsed URL, or None for ``$HPO_MONGO_URL``)."""
        parsed = url if isinstance(url, MongoURL) else parse_url(url)
        client = connect(parsed, **client_kwargs)
        return cls(client[parsed.database], parsed.collection, client=client, url=parsed,
                   refresh_overlap=refresh_overlap)

    @classmethod
    def coerce(cls, arg: Any, *, refresh_overlap: float = DEFAULT_REFRESH_OVERLAP) -> "MongoJobQueue":
        """A queue from a URL (None: ``$HPO_MONGO_URL``), a parsed URL, a pymongo Database or a queue."""
        if isinstance(arg, MongoJobQueue):
            return arg
        if arg is None or isinstance(arg, (str, MongoURL)):
            return cls.connect(arg, refresh_overlap=refresh_overlap)
        if isinstance(arg, Database) or type(arg).__module__.startswith("mongomock"):
            return cls(arg, refresh_overlap=refresh_overlap)
        raise InvalidParameterError(
            "The first parameter of MongoTrials must be a MongoDB URL (mongodb://host:port/db[/collection] "
            f"or mongodb+srv://…), a pymongo Database or a MongoJobQueue. Got {arg!r} instead.")

    def on_database(self, database: str, collection: str = "jobs") -> "MongoJobQueue":
        """The queue of ``database`` / ``collection`` through this one's client (same server, same
        credentials); this queue itself if it is that one already."""
        if database == self.db.name and collection == self.collection_name:
            return self
        client = self.client if self.client is not None else self.db.client
        url = dataclasses.replace(self.url, database=database, collection=collection) if self.url else None
        return type(self)(client[database], collection, client=client, url=url, refresh_overlap=self.refresh_overlap)

    def close(self) -> None:
        self._close_stream()
        if self.client is not None:
            self.client.close()

    def outcome_check(self) -> Callable[[Mapping[str, Any], Mapping[str, Any]], None]:
        return _jobs.check_storable

    def prepare(self) -> None:
        """Create the indexes of docs/schema.md (:data:`INDEXES`) that are missing (the driver's
        job, never a worker's)."""
        colls = {"jobs": self.jobs, EXPERIMENTS: self.experiments}
        with translate_errors("creating the indexes"):
            existing = {name: set(coll.index_information()) for name, coll in colls.items()}
            for coll, keys, name, unique in INDEXES:
                if name not in existing[coll]:
                    colls[coll].create_index(list(keys), unique=unique, name=name)

    def describe(self) -> str:
        where = self.url.display if self.url is not None else f"database {self.db.name!r}"
        return f"{where} (collection {self.jobs.name!r})" if self.jobs.name != "jobs" else where

    # ------------------------------------------------------------------ clock
    def now(self) -> _dt.datetime:
        return server_time(self.db)

    # ------------------------------------------------------------------ experiments
    def experiment(self, exp_key: str | None) -> dict | None:
        with translate_errors("reading the experiment"):
            return self.experiments.find_one({"exp_key": exp_key})

    def save_experiment(self, exp_key: str | None, fields: Mapping[str, Any]) -> None:
        flat: dict[str, Any] = {}
        for k, v in sonify(dict(fields)).items():
            if isinstance(v, dict):  # merged one level deep (``driver`` keeps its heartbeat)
                flat.update({f"{k}.{sub}": x for sub, x in v.items()})
            else:
                flat[k] = v
        update: dict[str, Any] = {"$currentDate": {"updated_at": True}, "$setOnInsert": {"created": utcnow()}}
        if flat:
            update["$set"] = flat
        with translate_errors("saving the experiment"):
            try:
                self.experiments.update_one({"exp_key": exp_key}, update, upsert=True)
            except DuplicateKeyError:  # a concurrent driver created it first: now it exists
                self.experiments.update_one({"exp_key": exp_key}, update, upsert=True)

    def beat_driver(self, exp_key: str | None) -> bool:
        with translate_errors("the driver heartbeat"):
            res = self.experiments.update_one({"exp_key": exp_key},
                                              {"$currentDate": {"driver.heartbeat": True, "updated_at": True}})
        return res.matched_count == 1

    def experiment_keys(self) -> list[str | None]:
        with translate_errors("listing experiments"):
            keys = {d.get("exp_key") for d in self.experiments.find({}, {"exp_key": 1})}
            keys.update(self.jobs.distinct("exp_key"))
        return sorted(keys, key=lambda k: (k is not None, "" if k is None else str(k)))

    def experiment_summaries(self) -> list[dict]:
        per_key: dict[Any, dict] = {}

        def entry(k: Any) -> dict:
            if k not in per_key:
                per_key[k] = {"exp_key": k, "status": None, "max_evals": None, "algorithm": None,
                              "counts": {**{name: 0 for name in STATE_NAMES.values()}, "pruned": 0},
                              "best_loss": None, "created": None, "last_activity": None}
            return per_key[k]

        def newer(e: dict, t: Any) -> None:
            t = leases.as_utc(t)
            if t is not None and (e["last_activity"] is None or t > e["last_activity"]):
                e["last_activity"] = t

        with_doc: set = set()
        with translate_errors("summarizing experiments"):
            for doc in self.experiments.find({}, {"space": 0}):
                e = entry(doc.get("exp_key"))
                with_doc.add(e["exp_key"])
                e.update(status=doc.get("status"), max_evals=doc.get("max_evals"), algorithm=doc.get("algorithm"),
                         created=leases.as_utc(doc.get("created")))
                newer(e, doc.get("updated_at"))
                newer(e, (doc.get("driver") or {}).get("heartbeat"))
            for row in self.jobs.aggregate([{"$group": {"_id": {"k": "$exp_key", "s": "$state", "p": "$result.status"},
                                                        "n": {"$sum": 1}, "first": {"$min": "$created_at"},
                                                        "last": {"$max": "$updated_at"}}}]):
                e = entry(row["_id"].get("k"))
                _count_row(e["counts"], row["_id"], int(row["n"]))
                newer(e, row.get("last"))
                first = leases.as_utc(row.get("first"))
                if (first is not None and e["exp_key"] not in with_doc
                        and (e["created"] is None or first < e["created"])):
                    e["created"] = first
            for row in self.jobs.aggregate([{"$match": {"state": JOB_STATE_DONE, "result.status": STATUS_OK}},
                                            {"$group": {"_id": "$exp_key", "best": {"$min": "$result.loss"}}}]):
                v = row.get("best")
                if isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v):
                    entry(row["_id"])["best_loss"] = float(v)
        out = []
        for k in sorted(per_key, key=lambda k: (k is not None, "" if k is None else str(k))):
            e = per_key[k]
            e["counts"]["total"] = sum(e["counts"][n] for n in STATE_NAMES.values())
            out.append(e)
        return out

    def delete_experiment(self, exp_key: str | None) -> dict:
        with translate_errors("deleting the experiment"):
            exp = self.experiments.find_one({"exp_key": exp_key})
            tids = [d["tid"] for d in self.jobs.find({"exp_key": exp_key}, {"tid": 1})]
            files = _att.delete_trial_files(self.db, tids)
            files += _att.delete_experiment_files(self.db, exp_key)
            digest = (exp or {}).get("domain_hash")
            if digest and self.experiments.find_one({"domain_hash": digest, "exp_key": {"$ne": exp_key}},
                                                    {"_id": 1}) is None:
                files += _att.delete_domain(self.db, digest)
            n_trials = self.jobs.delete_many({"exp_key": exp_key}).deleted_count
            n_exp = self.experiments.delete_many({"exp_key": exp_key}).deleted_count
        return {"exp_key": exp_key, "trials": n_trials, "experiment": bool(n_exp), "files": files}

    # ------------------------------------------------------------------ blobs
    def put_domain(self, digest: str, blob: bytes, exp_key: str | None) -> None:
        with translate_errors("storing the domain"):
            _att.put_domain(self.db, blob, digest, exp_key)

    def domain(self, digest: str) -> bytes | None:
        with translate_errors("reading the domain"):
            return _att.get_domain(self.db, digest)

    def attachment(self, exp_key: str | None, name: str) -> bytes | None:
        with translate_errors("reading an attachment"):
            return _att.ExperimentAttachments(self.db, exp_key).get(name)

    def set_attachment(self, exp_key: str | None, name: str, blob: bytes | None) -> None:
        with translate_errors("writing an attachment"):
            store = _att.ExperimentAttachments(self.db, exp_key)
            if blob is None:
                store.pop(name, None)
            else:
                if not isinstance(blob, (bytes, bytearray, memoryview)):
                    raise InvalidParameterError(f"attachments are bytes; got {type(blob).__name__} for {name!r}")
                store[name] = blob

    def attachment_names(self, exp_key: str | None) -> list[str]:
        with translate_errors("listing attachments"):
            return list(_att.ExperimentAttachments(self.db, exp_key))

    def _trial_files(self, job_id: Any) -> _att.TrialAttachments | None:
        doc = self.jobs.find_one({"_id": job_id}, {"tid": 1, "exp_key": 1, "_attachments": 1})
        return None if doc is None else _att.TrialAttachments(self.db, self.jobs, doc)

    def trial_attachment(self, job_id: Any, name: str) -> bytes | None:
        with translate_errors("reading a trial attachment"):
            files = self._trial_files(job_id)
            return None if files is None else files.get(name)

    def trial_attachment_names(self, job_id: Any) -> list[str]:
        with translate_errors("listing trial attachments"):
            files = self._trial_files(job_id)
            return [] if files is None else list(files)

    def set_trial_attachment(self, job: Mapping[str, Any], name: str, blob: bytes | None) -> bool:
        with translate_errors("writing a trial attachment"):
            files = self._trial_files(job.get("_id"))
            if files is None:
                return False
            if blob is None:
                files.pop(name, None)
            else:
                try:
                    files[name] = blob
                except TypeError as e:
                    raise InvalidParameterError(str(e)) from None
            return True

    # ------------------------------------------------------------------ jobs: the driver
    def new_tids(self, n: int) -> list[int]:
        if n <= 0:
            return []
        with translate_errors("allocating trial ids"):
            if not self._counter_ready:  # the sequence starts at -1 so tids start at 0, like in memory
                try:
                    self.counters.update_one({"_id": TID_COUNTER}, {"$setOnInsert": {"seq": -1}}, upsert=True)
                except DuplicateKeyError:
                    pass
                self._counter_ready = True
            doc = self.counters.find_one_and_update({"_id": TID_COUNTER}, {"$inc": {"seq": int(n)}},
                                                    upsert=True, projection={"seq": 1},  # a copy: see jobs.COPY
                                                    return_document=ReturnDocument.AFTER)
        assert doc is not None  # upsert=True and ReturnDocument.AFTER: always the counter
        last = int(doc["seq"])
        return list(range(last - n + 1, last + 1))

    def reserve_tids(self, above: int) -> None:
        with translate_errors("reserving trial ids"):
            try:
                self.counters.update_one({"_id": TID_COUNTER}, {"$max": {"seq": int(above)}}, upsert=True)
            except DuplicateKeyError:
                self.counters.update_one({"_id": TID_COUNTER}, {"$max": {"seq": int(above)}}, upsert=True)
        self._counter_ready = True

    def last_tid(self) -> int | None:
        with translate_errors("reading the tid counter"):
            doc = self.counters.find_one({"_id": TID_COUNTER}, {"seq": 1})
        return None if doc is None else int(doc["seq"])

    def insert(self, docs: Sequence[Mapping[str, Any]]) -> list[Any]:
        ops, ids = [], []
        for d in docs:
            body = queued_doc({k: v for k, v in d.items() if k not in ("_id", "updated_at", "created_at")})
            body.setdefault("version", 0)
            # one _id per tid until its insert succeeded: a retried call (its reply lost) upserts the
            # same documents again, a no-op; another driver's trial with this tid still collides
            oid = self._insert_ids.setdefault(int(body["tid"]), ObjectId())
            # an upsert on a fresh _id always inserts and lets the server stamp the times; the same
            # _ids make a retried call a no-op; the unique tid index refuses a reused tid
            ops.append(UpdateOne({"_id": oid}, {"$setOnInsert": sonify(body),
                                                "$currentDate": {"created_at": True, "updated_at": True}},
                                 upsert=True))
            ids.append(oid)
        if not ops:
            return []
        with translate_errors("queueing trials"):
            try:
                self.jobs.bulk_write(ops, ordered=True)
            except (BulkWriteError, DuplicateKeyError) as e:
                index = _failed_index(e)
                tid = docs[index]["tid"] if index is not None else "?"
                for d in docs[:index or 0]:
                    self._insert_ids.pop(int(d["tid"]), None)
                raise DuplicateTrialError(f"a trial with tid {tid} already exists in {self.db.name}.{self.jobs.name} "
                                          f"(the {index or 0} trials before it were queued)") from e
        for d in docs:
            self._insert_ids.pop(int(d["tid"]), None)
        return ids

    def changed(self, exp_key: str | None, since: Any = None) -> tuple[list[dict], Any]:
        """The cursor is a :class:`RefreshCursor`. A write stamped by the server just before a read
        can become visible just after it, so each call also looks back ``refresh_overlap`` seconds
        before the newest stamp seen — asking only for ``_id`` and ``version`` there and downloading
        again only what changed, until that window has settled (an idle driver then issues one
        query per refresh): the cost of a refresh follows what changed, not the throughput."""
        cur = since if since is not None else RefreshCursor(None, {}, 0.0, 0.0)
        newest, known, checked_at = cur.newest, cur.known, cur.checked_at
        asked = time.monotonic()
        with translate_errors("refreshing the trials"):
            if newest is None:
                docs = list(self.jobs.find({"exp_key": exp_key}, dict(_CHANGED_PROJECTION)).batch_size(FIND_BATCH))
            else:
                # dates come back in milliseconds, but a server may compare finer ones: the job
                # stamped ``newest`` may really be up to 1 ms later, so "after" starts 1 ms on
                after = newest + _dt.timedelta(milliseconds=1)
                docs = list(self.jobs.find({"exp_key": exp_key, "updated_at": {"$gte": after}},
                                           dict(_CHANGED_PROJECTION)).batch_size(FIND_BATCH))
                settled = checked_at - cur.seen_at >= self.refresh_overlap
                if not settled or asked - checked_at >= WINDOW_RECHECK:
                    window = newest - _dt.timedelta(seconds=self.refresh_overlap)
                    late = [d["_id"] for d in self.jobs.find(
                        {"exp_key": exp_key, "updated_at": {"$gte": window, "$lt": after}}, {"version": 1})
                        if known.get(d["_id"], (None,))[0] != d.get("version")]
                    if late:
                        docs += list(self.jobs.find({"_id": {"$in": late}}, dict(_CHANGED_PROJECTION)))
                    checked_at = asked
        stamps = [d["updated_at"] for d in docs if d.get("updated_at") is not None]
        seen_at = cur.seen_at
        if stamps and (newest is None or max(stamps) > newest):
            newest, seen_at = max(stamps), time.monotonic()
        if newest is None:
            return docs, None
        window = newest - _dt.timedelta(seconds=self.refresh_overlap)
        recent = {k: v for k, v in known.items() if v[1] >= window}
        for d in docs:
            if d.get("updated_at") is not None and d["updated_at"] >= window:
                recent[d["_id"]] = (d.get("version"), d["updated_at"])
        return docs, RefreshCursor(newest, recent, seen_at, checked_at)

    def versions(self, exp_key: str | None) -> dict[Any, int]:
        with translate_errors("listing trial versions"):
            return {d["_id"]: int(d.get("version") or 0) for d in self.jobs.find({"exp_key": exp_key}, {"version": 1})}

    def existing(self, job_ids: Iterable[Any]) -> list[Any]:
        ids = list(job_ids)
        if not ids:
            return []
        with translate_errors("checking trials"):
            present = {d["_id"] for d in self.jobs.find({"_id": {"$in": ids}}, {"_id": 1})}
        return [i for i in ids if i in present]

    def restore(self, docs: Sequence[Mapping[str, Any]]) -> int:
        n = 0
        with translate_errors("writing back lost trials"):
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
                        f"cannot restore trial {doc['tid']} of experiment {doc.get('exp_key')!r}, which the database "
                        f"lost: another trial now holds tid {doc['tid']} (another driver allocated it after the tid "
                        f"counter was reset)") from e
                n += res.upserted_id is not None
        return n

    def adopt_domain(self, exp_key: str | None, digest: str) -> int:
        with translate_errors("giving queued trials their domain"):
            return self.jobs.update_many({"exp_key": exp_key, "state": JOB_STATE_NEW, "domain_hash": None},
                                         {"$set": {"domain_hash": digest}, "$currentDate": {"updated_at": True},
                                          "$inc": {"version": 1}}).modified_count

    def wait_for_changes(self, exp_key: Any, timeout: float) -> None:
        """With change streams (replica sets, Atlas) it returns at the next write to the jobs
        collection; a server without them (a standalone mongod, the test server) is asked once, and
        then this sleeps ``timeout``. Waits shorter than :data:`STREAM_WAIT` just sleep."""
        stream = self._change_stream() if timeout >= STREAM_WAIT else None
        if stream is None:
            time.sleep(max(0.0, timeout))
            return
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if stream.try_next() is not None:  # each try waits at most STREAM_WAIT on the server
                    return
        except PyMongoError:  # the stream broke (failover, outage): sleep now, reopen it next time
            self._close_stream()
            time.sleep(max(0.0, deadline - time.monotonic()))

    def _change_stream(self) -> Any:
        if self._stream is None and not self._streams_unsupported:
            try:
                self._stream = self.jobs.watch(max_await_time_ms=int(1000 * STREAM_WAIT))
            except PyMongoError:
                self._streams_unsupported = True
        return self._stream

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(PyMongoError):
                stream.close()

    def count(self, exp_key: Any, states: Iterable[int] | None = None) -> int:
        flt: dict[str, Any] = _jobs.exp_filter(exp_key)
        if states is not None:
            flt["state"] = {"$in": list(states)}
        with translate_errors("counting trials"):
            return self.jobs.count_documents(flt)

    def cancel_new(self, exp_key: str | None, job_ids: Iterable[Any] | None = None) -> int:
        with translate_errors("cancelling queued trials"):
            return _jobs.cancel_new(self.jobs, exp_key, ids=job_ids)

    def delete_jobs(self, exp_key: str | None, job_ids: Iterable[Any] | None = None) -> int:
        flt: dict[str, Any] = {"exp_key": exp_key}
        if job_ids is not None:
            flt["_id"] = {"$in": list(job_ids)}
        with translate_errors("deleting trials"):
            tids = [d["tid"] for d in self.jobs.find(flt, {"tid": 1})]
            _att.delete_trial_files(self.db, tids)
            return self.jobs.delete_many(flt).deleted_count

    def withdraw_new(self, exp_key: str | None, job_ids: Iterable[Any]) -> list[Any]:
        with translate_errors("withdrawing queued trials"):
            return _jobs.withdraw_new(self.jobs, exp_key, job_ids)

    # ------------------------------------------------------------------ jobs: the worker
    def claim(self, owner: str, *, exp_key: Any = ANY_EXPERIMENT, worker: Mapping[str, Any] | None = None,
              lease_timeout: float, max_attempts: int) -> dict | None:
        with translate_errors("claiming a trial"):
            return _jobs.claim(self.jobs, owner, exp_key=exp_key, worker=worker, lease_timeout=lease_timeout,
                               max_attempts=max_attempts)

    def renew_lease(self, claim: Mapping[str, Any]) -> bool:
        with translate_errors("renewing a lease"):
            return _jobs.refresh_lease(self.jobs, claim)

    def checkpoint(self, claim: Mapping[str, Any], result: Mapping[str, Any] | None = None) -> bool:
        with translate_errors("checkpointing a trial"):
            return _jobs.checkpoint(self.jobs, claim, result)

    def finish(self, claim: Mapping[str, Any], state: int, result: Mapping[str, Any],
               error: Mapping[str, Any] | None = None,
               attachments: Mapping[str, bytes] | None = None) -> bool:
        with translate_errors("writing a result"):
            try:
                _jobs.check_storable(dict(result), attachments)
            except InvalidResultError:
                raise
            uploaded = _att.put_attempt_files(self.db, claim, attachments) if attachments else []
            refs, replaced = _att.refs_after_attempt(self.db, claim, uploaded)
            try:
                ok = _jobs.finish(self.jobs, claim, state, result, error,
                                  attachments=refs if uploaded or replaced else None)
            except InvalidResultError:
                if uploaded:
                    _att.discard_attempt_files(self.db, claim)
                raise
            if not ok:  # lost, or a retried call whose first one landed: keep what the job references now
                current = self.jobs.find_one({"_id": claim["_id"]}, {"_attachments": 1}) or {}
                refs, replaced = current.get("_attachments") or [], []
                ok = _jobs.finished_by(self.jobs, claim, state)
            if uploaded or replaced:
                _att.discard_attempt_files(self.db, claim, keep=[ref[1] for ref in refs])
                if replaced:
                    _att.delete_trial_file_ids(self.db, claim, replaced)
            return ok

    def release(self, claim: Mapping[str, Any], *, count_as_lost: bool = False) -> bool:
        with translate_errors("releasing a trial"):
            return _jobs.release(self.jobs, claim, count_as_lost=count_as_lost)

    def requeue_stale(self, exp_key: Any = ANY_EXPERIMENT, *, default_lease: float,
                      default_max_attempts: int) -> list[dict]:
        with translate_errors("requeueing stale trials"):
            now = server_time(self.db)
            return _jobs.requeue_stale(self.jobs, now=now, default_lease=default_lease,
                                       default_max_attempts=default_max_attempts, exp_key=exp_key)

    # ------------------------------------------------------------------ reports (pruning)
    def report(self, claim: Mapping[str, Any], step: int, value: float) -> bool:
        with translate_errors("recording a report"):
            return _jobs.report(self.jobs, claim, step, value)

    def reports_at(self, exp_key: str | None, step: int, *, reached: bool = False,
                   exclude_tids: Sequence[int] = ()) -> dict[str, list]:
        flt, proj = _reports.step_query(exp_key, step, reached=reached, exclude_tids=exclude_tids)
        with translate_errors("reading reports"):
            return _reports.step_rows(self.jobs.find(flt, proj))

    def completed_at_least(self, exp_key: str | None, n: int) -> bool:
        if n <= 0:
            return True
        with translate_errors("counting completed trials"):
            return self.jobs.count_documents(_reports.complete_filter(exp_key), limit=int(n)) >= n

    # ------------------------------------------------------------------ workers
    def beat_worker(self, worker_id: str, fields: Mapping[str, Any]) -> None:
        with translate_errors("the worker heartbeat"):
            _jobs.upsert_worker(self.workers_coll, worker_id, fields)

    def workers(self, *, include_exited: bool = False) -> list[dict]:
        flt = {} if include_exited else {"status": {"$ne": "exited"}}
        with translate_errors("listing workers"):
            return list(self.workers_coll.find(flt).sort([("host", 1), ("pid", 1)]))

    # ------------------------------------------------------------------ inspection and repairs
    def find(self, exp_key: str | None, *, states: Iterable[int] | None = None, sort: str = "tid",
             limit: int | None = None, reverse: bool = False, full: bool = False) -> list[dict]:
        check_find_args(sort, limit)
        if limit == 0:
            return []
        flt: dict[str, Any] = {"exp_key": exp_key}
        if states is not None:
            flt["state"] = {"$in": list(states)}
        docs = self._find(flt, None if full else dict(_LIST_PROJECTION), sort, limit, reverse)
        return docs if full else [_listed(d) for d in docs]

    def _find(self, flt: dict, proj: dict | None, sort: str, limit: int | None, reverse: bool) -> list[dict]:
        direction = -1 if reverse else 1
        with translate_errors("listing trials"):
            if sort == "tid":
                cur = self.jobs.find(flt, proj).sort([("tid", direction)])
                return list(cur.limit(limit) if limit else cur)
            if sort == "time":
                claimed = list(self.jobs.find(dict(flt, book_time={"$ne": None}), proj)
                               .sort([("book_time", direction), ("tid", direction)]))
                docs = claimed + list(self.jobs.find(dict(flt, book_time=None), proj).sort([("tid", 1)]))
                return docs[:limit] if limit else docs
            scored = dict(flt, **{"result.status": STATUS_OK, "result.loss": {"$type": "number"}})
            cur = self.jobs.find(scored, proj).sort([("result.loss", direction), ("tid", 1)])
            docs = [d for d in (cur.limit(limit) if limit else cur) if loss_of(d) is not None]
            if not limit or len(docs) < limit:
                seen = {d["_id"] for d in docs}
                for d in self.jobs.find(flt, proj).sort([("tid", 1)]):
                    if d["_id"] in seen or loss_of(d) is not None:
                        continue
                    docs.append(d)
                    if limit and len(docs) >= limit:
                        break
            return docs

    def trial(self, tid: int, exp_key: Any = ANY_EXPERIMENT) -> dict | None:
        with translate_errors("reading a trial"):
            return self.jobs.find_one({"tid": int(tid), **_jobs.exp_filter(exp_key)})

    def count_by_state(self, exp_key: Any = ANY_EXPERIMENT) -> dict[str, int]:
        counts = {name: 0 for name in STATE_NAMES.values()}
        counts["pruned"] = 0
        with translate_errors("counting trials"):
            for row in self.jobs.aggregate([{"$match": _jobs.exp_filter(exp_key)},
                                            {"$group": {"_id": {"s": "$state", "p": "$result.status"},
                                                        "n": {"$sum": 1}}}]):
                _count_row(counts, row["_id"], int(row["n"]))
        counts["total"] = sum(counts[n] for n in STATE_NAMES.values())
        return counts

    def finished_since(self, exp_key: str | None, since: _dt.datetime) -> int:
        flt = {"exp_key": exp_key, "state": {"$in": sorted(JOB_FINISHED_STATES)}, "updated_at": {"$gte": since}}
        n = 0
        with translate_errors("measuring throughput"):
            for d in self.jobs.find(flt, {"end_time": 1, "updated_at": 1}):
                t = leases.as_utc(d.get("end_time")) or leases.as_utc(d.get("updated_at"))
                n += t is not None and t >= leases.as_utc(since)
        return n

    def first_claim(self, exp_key: str | None) -> _dt.datetime | None:
        with translate_errors("reading the first claim"):
            first = self.jobs.find_one({"exp_key": exp_key, "book_time": {"$ne": None}}, {"book_time": 1},
                                       sort=[("book_time", 1)])
        return leases.as_utc((first or {}).get("book_time"))

    def requeue_unchanged(self, doc: Mapping[str, Any], *, lost_lease: bool = False) -> bool:
        with translate_errors("requeueing a trial"):
            return _jobs.requeue_unchanged(self.jobs, doc, lost_lease=lost_lease)

    def cancel_unchanged(self, doc: Mapping[str, Any], *, failure: str, end_time: _dt.datetime | None = None) -> bool:
        if doc.get("state") not in (JOB_STATE_NEW, JOB_STATE_RUNNING):
            return False
        with translate_errors("cancelling a trial"):
            return _jobs.cancel_unchanged(self.jobs, doc, failure=failure, end_time=end_time)


def _count_row(counts: dict[str, int], key: Mapping[str, Any], n: int) -> None:
    """Add one ``$group`` row keyed by state ``s`` and result status ``p`` to ``counts``."""
    name = STATE_NAMES.get(key.get("s"))
    if name is not None:
        counts[name] += n
        if key.get("s") == JOB_STATE_DONE and key.get("p") == STATUS_PRUNED:
            counts["pruned"] += n


def _failed_index(e: BaseException) -> int | None:
    """The position of the operation an ordered bulk write stopped at (None if unknown)."""
    details = e.details if isinstance(e, BulkWriteError) else None
    errors = (details or {}).get("writeErrors") or []
    return int(errors[0]["index"]) if errors and "index" in errors[0] else None
