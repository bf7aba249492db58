"""``MemoryJobQueue``: the :class:`~hpo_mongo.trials.queue.JobQueue` held in one process's memory.

It backs the local parallel mode (the driver holds it; worker processes reach it through
:mod:`hpo_mongo.trials.remote`) and fast worker tests. It keeps every invariant of the protocol
with one re-entrant lock taken by each public method: a method is one atomic step, as one
single-document update is on MongoDB. Its clock is the local clock (``documents.utcnow``,
millisecond precision like BSON dates) unless a ``clock`` is given (tests move time by hand).
Picklable: the lock is dropped and rebuilt, so a queue can be saved to disk and resumed.
"""
from __future__ import annotations

import copy
import datetime as _dt
import itertools
import os
import pickle
import threading
import uuid
from typing import Any, Callable, Iterable, Mapping, Sequence

from ..exceptions import DuplicateTrialError, InvalidParameterError, InvalidResultError
from . import leases
from .documents import (queued_doc, JOB_FINISHED_STATES, JOB_STATE_CANCEL, JOB_STATE_DONE, JOB_STATE_ERROR,
                        JOB_STATE_NEW, JOB_STATE_RUNNING, REPORTS_FIELD, STATE_NAMES, STATUS_FAIL, STATUS_NEW,
                        STATUS_OK, STATUS_PRUNED, loss_of, sonify, utcnow)
from .queue import ANY_EXPERIMENT, LAST_REPORT, LIST_FIELDS, check_find_args
from .reports import trial_kind

#: fields a claim writes; cleared again when a job returns to NEW
CLAIM_FIELDS = ("owner", "book_time", "worker", "start_time", "heartbeat")


def _match_exp(doc: Mapping[str, Any], exp_key: Any) -> bool:
    return exp_key is ANY_EXPERIMENT or doc.get("exp_key") == exp_key


def _host_pid(worker: Mapping[str, Any]) -> tuple[str, float]:
    """The order of :meth:`MemoryJobQueue.workers`: by host, then pid (numbers as numbers)."""
    pid = worker.get("pid")
    return str(worker.get("host") or ""), float(pid) if isinstance(pid, (int, float)) else float("-inf")


def _sort_experiments(keys: Iterable[Any]) -> list[Any]:
    return sorted(set(keys), key=lambda k: (k is not None, "" if k is None else str(k)))


def check_picklable(result: Mapping[str, Any], attachments: Mapping[str, Any] | None = None) -> None:
    """Raise :class:`InvalidResultError` naming the first entry of ``result`` (or attachment) that
    does not pickle: the in-memory queue's outcomes travel between processes as pickles."""
    for name, blob in (attachments or {}).items():
        if not isinstance(blob, (bytes, bytearray, memoryview)):
            raise InvalidResultError(f"attachment {name!r} is a {type(blob).__qualname__}; attachments must be bytes")
    try:
        pickle.dumps(dict(result))
    except Exception:  # noqa: BLE001 - find the entry that does not pickle
        for key, value in result.items():
            try:
                pickle.dumps(value)
            except Exception as e:  # noqa: BLE001
                raise InvalidResultError(f"result[{key!r}] is a {type(value).__qualname__}, which cannot be sent "
                                         f"between processes ({type(e).__name__}: {e})") from None
        raise


def _unpickle_queue(blob: bytes) -> "MemoryJobQueue":
    queue = MemoryJobQueue.__new__(MemoryJobQueue)
    queue.__setstate__(pickle.loads(blob))
    return queue


class MemoryJobQueue:
    """An in-memory job queue (see the module docstring and :class:`~hpo_mongo.trials.queue.JobQueue`)."""

    def __init__(self, clock: Callable[[], _dt.datetime] = utcnow):
        self._clock = clock
        self._lock = threading.RLock()
        self._written_cond = threading.Condition(self._lock)
        self._jobs: dict[int, dict] = {}
        self._by_tid: dict[int, int] = {}
        self._job_ids = itertools.count(1)
        self._seq = 0                                   # write counter: the ``changed`` cursor
        self._written: dict[int, int] = {}              # job id -> seq of its last write
        self._last_tid = -1
        self._experiments: dict[Any, dict] = {}
        self._domains: dict[str, tuple[bytes, Any]] = {}
        self._exp_files: dict[tuple[Any, str], bytes] = {}
        self._files: dict[int, tuple[bytes, dict]] = {}  # trial attachment file id -> (blob, meta)
        self._file_ids = itertools.count(1)
        self._workers: dict[str, dict] = {}

    # ------------------------------------------------------------------ pickling
    def __reduce__(self) -> tuple:
        """Pickled as one consistent snapshot, taken in one step under the lock: the queue may be
        pickled while a :class:`~hpo_mongo.trials.remote.QueueServer` thread serves it (a saved
        local run)."""
        with self._lock:
            state = {k: v for k, v in self.__dict__.items()
                     if k not in ("_lock", "_written_cond", "_job_ids", "_file_ids")}
            state["_job_ids"] = max(self._jobs, default=0) + 1
            state["_file_ids"] = max(self._files, default=0) + 1
            blob = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        return (_unpickle_queue, (blob,))

    def __setstate__(self, state: dict) -> None:
        state["_job_ids"] = itertools.count(state["_job_ids"])
        state["_file_ids"] = itertools.count(state["_file_ids"])
        self.__dict__.update(state)
        self._lock = threading.RLock()
        self._written_cond = threading.Condition(self._lock)

    # ------------------------------------------------------------------ internals
    def _touch(self, job_id: int, doc: dict) -> None:
        """One write to a job: version + 1, ``updated_at`` stamped, seen by ``changed``."""
        doc["version"] = int(doc.get("version") or 0) + 1
        doc["updated_at"] = self._clock()
        self._seq += 1
        self._written[job_id] = self._seq
        self._written_cond.notify_all()

    def _job_of(self, ref: Mapping[str, Any]) -> dict | None:
        """The job a claim, a read or a job document names by its ``_id`` (None: no such job)."""
        job_id = ref.get("_id")
        return None if job_id is None else self._jobs.get(job_id)

    def _owned(self, claim: Mapping[str, Any]) -> dict | None:
        doc = self._job_of(claim)
        if (doc is None or doc["state"] != JOB_STATE_RUNNING or doc.get("owner") != claim.get("owner")
                or doc.get("attempt") != claim.get("attempt")):
            return None
        return doc

    def _unchanged(self, read: Mapping[str, Any]) -> dict | None:
        doc = self._job_of(read)
        if doc is None or doc["state"] != read.get("state") or doc.get("version") != read.get("version"):
            return None
        return doc

    def _back_to_new(self, job_id: int, doc: dict, requeues: int) -> None:
        doc["state"] = JOB_STATE_NEW
        for f in CLAIM_FIELDS:
            doc[f] = None
        doc["requeues"] = int(doc.get("requeues") or 0) + requeues
        doc[REPORTS_FIELD] = []
        self._touch(job_id, doc)

    def _put_file(self, blob: Any, meta: dict) -> int:
        if not isinstance(blob, (bytes, bytearray, memoryview)):
            raise InvalidParameterError(f"attachments are bytes; got {type(blob).__name__} for {meta.get('name')!r}")
        fid = next(self._file_ids)
        self._files[fid] = (bytes(blob), meta)
        return fid

    def _drop_files(self, refs: Iterable[Any]) -> int:
        n = 0
        for ref in refs:
            if self._files.pop(ref[1], None) is not None:
                n += 1
        return n

    @staticmethod
    def _copy(doc: Mapping[str, Any], full: bool = True) -> dict:
        if full:
            return copy.deepcopy(dict(doc))
        listed = copy.deepcopy({k: doc[k] for k in LIST_FIELDS if k in doc})
        reports = doc.get(REPORTS_FIELD) or []
        listed[LAST_REPORT] = dict(reports[-1]) if reports else None
        return listed

    @staticmethod
    def _changed_copy(doc: Mapping[str, Any]) -> dict:
        """A job as :meth:`changed` returns it: without its reports (invariant 6)."""
        return copy.deepcopy({k: v for k, v in doc.items() if k != REPORTS_FIELD})

    def _select(self, exp_key: Any, states: Iterable[int] | None = None) -> list[tuple[int, dict]]:
        wanted = None if states is None else set(states)
        return [(i, d) for i, d in self._jobs.items()
                if _match_exp(d, exp_key) and (wanted is None or d["state"] in wanted)]

    def describe(self) -> str:
        return f"the in-memory queue of process {os.getpid()}"

    def outcome_check(self) -> Callable[[Mapping[str, Any], Mapping[str, Any]], None]:
        return check_picklable

    def prepare(self) -> None:
        return None

    def close(self) -> None:
        """Nothing to release: the queue lives as long as the object."""

    # ------------------------------------------------------------------ clock
    def now(self) -> _dt.datetime:
        return self._clock()

    # ------------------------------------------------------------------ experiments
    def experiment(self, exp_key: str | None) -> dict | None:
        with self._lock:
            doc = self._experiments.get(exp_key)
            return copy.deepcopy(doc) if doc is not None else None

    def save_experiment(self, exp_key: str | None, fields: Mapping[str, Any]) -> None:
        with self._lock:
            now = self._clock()
            doc = self._experiments.setdefault(exp_key, {"_id": uuid.uuid4().hex, "exp_key": exp_key, "created": now})
            for k, v in sonify(dict(fields)).items():
                if isinstance(v, dict) and isinstance(doc.get(k), dict):
                    doc[k] = {**doc[k], **v}
                else:
                    doc[k] = v
            doc["updated_at"] = now

    def beat_driver(self, exp_key: str | None) -> bool:
        with self._lock:
            doc = self._experiments.get(exp_key)
            if doc is None:
                return False
            now = self._clock()
            doc["driver"] = {**(doc.get("driver") or {}), "heartbeat": now}
            doc["updated_at"] = now
            return True

    def experiment_keys(self) -> list[str | None]:
        with self._lock:
            return _sort_experiments([*self._experiments, *(d.get("exp_key") for d in self._jobs.values())])

    def experiment_summaries(self) -> list[dict]:
        with self._lock:
            out = []
            for k in self.experiment_keys():
                exp = self._experiments.get(k) or {}
                jobs = [d for _, d in self._select(k)]
                losses = [x for x in (loss_of(d) for d in jobs if d["state"] == JOB_STATE_DONE) if x is not None]
                seen = [leases.as_utc(exp.get("updated_at")),
                        leases.as_utc((exp.get("driver") or {}).get("heartbeat"))]
                seen += [leases.as_utc(d.get("updated_at")) for d in jobs]
                stamps = [t for t in seen if t is not None]
                created = leases.as_utc(exp.get("created")) or min(
                    (t for t in (leases.as_utc(d.get("created_at")) for d in jobs) if t is not None), default=None)
                out.append({"exp_key": k, "status": exp.get("status"), "max_evals": exp.get("max_evals"),
                            "algorithm": exp.get("algorithm"), "counts": self.count_by_state(k),
                            "best_loss": min(losses) if losses else None, "created": created,
                            "last_activity": max(stamps) if stamps else None})
            return out

    def delete_experiment(self, exp_key: str | None) -> dict:
        with self._lock:
            exp = self._experiments.get(exp_key)
            ids = [i for i, _ in self._select(exp_key)]
            files = 0
            for i in ids:
                files += self._drop_files(self._jobs[i].get("_attachments") or [])
                self._by_tid.pop(self._jobs[i]["tid"], None)
                self._written.pop(i, None)
                del self._jobs[i]
            for key in [key for key in self._exp_files if key[0] == exp_key]:
                del self._exp_files[key]
                files += 1
            digest = (exp or {}).get("domain_hash")
            self._experiments.pop(exp_key, None)
            if digest and digest in self._domains and not any(
                    e.get("domain_hash") == digest for e in self._experiments.values()):
                del self._domains[digest]
                files += 1
            return {"exp_key": exp_key, "trials": len(ids), "experiment": exp is not None, "files": files}

    # ------------------------------------------------------------------ blobs
    def put_domain(self, digest: str, blob: bytes, exp_key: str | None) -> None:
        with self._lock:
            self._domains.setdefault(digest, (bytes(blob), exp_key))

    def domain(self, digest: str) -> bytes | None:
        with self._lock:
            found = self._domains.get(digest)
            return found[0] if found is not None else None

    def attachment(self, exp_key: str | None, name: str) -> bytes | None:
        with self._lock:
            return self._exp_files.get((exp_key, name))

    def set_attachment(self, exp_key: str | None, name: str, blob: bytes | None) -> None:
        with self._lock:
            if blob is None:
                self._exp_files.pop((exp_key, name), None)
            elif not isinstance(blob, (bytes, bytearray, memoryview)):
                raise InvalidParameterError(f"attachments are bytes; got {type(blob).__name__} for {name!r}")
            else:
                self._exp_files[(exp_key, name)] = bytes(blob)

    def attachment_names(self, exp_key: str | None) -> list[str]:
        with self._lock:
            return sorted(name for k, name in self._exp_files if k == exp_key)

    def trial_attachment(self, job_id: Any, name: str) -> bytes | None:
        with self._lock:
            doc = self._jobs.get(job_id)
            for ref in (doc or {}).get("_attachments") or []:
                if ref[0] == name and ref[1] in self._files:
                    return self._files[ref[1]][0]
            return None

    def trial_attachment_names(self, job_id: Any) -> list[str]:
        with self._lock:
            doc = self._jobs.get(job_id)
            return sorted({ref[0] for ref in (doc or {}).get("_attachments") or []})

    def set_trial_attachment(self, job: Mapping[str, Any], name: str, blob: bytes | None) -> bool:
        with self._lock:
            doc = self._job_of(job)
            if doc is None:
                return False
            old = [ref for ref in doc.get("_attachments") or [] if ref[0] == name]
            keep = [ref for ref in doc.get("_attachments") or [] if ref[0] != name]
            if blob is not None:
                fid = self._put_file(blob, {"tid": doc["tid"], "name": name, "attempt": None})
                keep.append([name, fid])
            doc["_attachments"] = keep
            self._drop_files(old)
            self._touch(job["_id"], doc)
            return True

    # ------------------------------------------------------------------ jobs: the driver
    def new_tids(self, n: int) -> list[int]:
        with self._lock:
            start = self._last_tid + 1
            self._last_tid += int(n)
            return list(range(start, start + int(n)))

    def reserve_tids(self, above: int) -> None:
        with self._lock:
            self._last_tid = max(self._last_tid, int(above))

    def last_tid(self) -> int | None:
        with self._lock:
            return self._last_tid

    def insert(self, docs: Sequence[Mapping[str, Any]]) -> list[Any]:
        with self._lock:
            ids = []
            for d in docs:
                body = queued_doc(copy.deepcopy(
                    sonify({k: v for k, v in d.items() if k not in ("_id", "updated_at", "created_at")})))
                body.setdefault("version", 0)
                tid = int(body["tid"])
                if tid in self._by_tid:
                    raise DuplicateTrialError(f"a trial with tid {tid} already exists in the queue")
                job_id = next(self._job_ids)
                body["_id"] = job_id
                body["created_at"] = self._clock()
                body["version"] = int(body["version"]) - 1  # _touch counts the insert as its first write
                self._jobs[job_id] = body
                self._by_tid[tid] = job_id
                self._last_tid = max(self._last_tid, tid)
                self._touch(job_id, body)
                ids.append(job_id)
            return ids

    def changed(self, exp_key: str | None, since: Any = None) -> tuple[list[dict], Any]:
        with self._lock:
            after = -1 if since is None else int(since)
            docs = [self._changed_copy(d) for i, d in self._select(exp_key) if self._written.get(i, 0) > after]
            return docs, self._seq

    def versions(self, exp_key: str | None) -> dict[Any, int]:
        with self._lock:
            return {i: int(d.get("version") or 0) for i, d in self._select(exp_key)}

    def existing(self, job_ids: Iterable[Any]) -> list[Any]:
        with self._lock:
            return [i for i in job_ids if i in self._jobs]

    def restore(self, docs: Sequence[Mapping[str, Any]]) -> int:
        with self._lock:
            n = 0
            for d in docs:
                job_id, tid = d["_id"], int(d["tid"])
                cur = self._jobs.get(job_id)
                if cur is not None and int(cur.get("version") or 0) >= int(d.get("version") or 0):
                    continue
                holder = self._by_tid.get(tid)
                if holder is not None and holder != job_id:
                    raise DuplicateTrialError(f"cannot restore trial {tid}: another trial now holds its tid")
                body = copy.deepcopy({k: v for k, v in d.items() if k != "updated_at"})
                if REPORTS_FIELD not in body:  # the driver's copy leaves them out: keep what is stored
                    body[REPORTS_FIELD] = copy.deepcopy((cur or {}).get(REPORTS_FIELD) or [])
                body["version"] = int(body.get("version") or 0) - 1  # _touch adds the write back
                self._jobs[job_id] = body
                self._by_tid[tid] = job_id
                self._last_tid = max(self._last_tid, tid)
                self._touch(job_id, body)
                n += 1
            return n

    def adopt_domain(self, exp_key: str | None, digest: str) -> int:
        with self._lock:
            n = 0
            for i, d in self._select(exp_key, [JOB_STATE_NEW]):
                if d.get("domain_hash") is None:
                    d["domain_hash"] = digest
                    self._touch(i, d)
                    n += 1
            return n

    def reassign_domain(self, exp_key: str | None, digest: str) -> int:
        """Give domain ``digest`` to every NEW job of the experiment, whatever domain it had: the
        local parallel mode evaluates what is queued with the current objective, as in-memory
        ``Trials`` do (not part of the protocol: a Mongo experiment keeps each trial's domain)."""
        with self._lock:
            n = 0
            for i, d in self._select(exp_key, [JOB_STATE_NEW]):
                if d.get("domain_hash") != digest:
                    d["domain_hash"] = digest
                    self._touch(i, d)
                    n += 1
            return n

    def wait_for_changes(self, exp_key: Any, timeout: float) -> None:
        with self._lock:
            seq = self._seq
            self._written_cond.wait_for(lambda: self._seq != seq, timeout=max(0.0, timeout))

    def count(self, exp_key: Any, states: Iterable[int] | None = None) -> int:
        with self._lock:
            return len(self._select(exp_key, states))

    def cancel_new(self, exp_key: str | None, job_ids: Iterable[Any] | None = None) -> int:
        with self._lock:
            only = None if job_ids is None else set(job_ids)
            n = 0
            for i, d in self._select(exp_key, [JOB_STATE_NEW]):
                if only is not None and i not in only:
                    continue
                d["state"] = JOB_STATE_CANCEL
                d["end_time"] = self._clock()
                self._touch(i, d)
                n += 1
            return n

    def delete_jobs(self, exp_key: str | None, job_ids: Iterable[Any] | None = None) -> int:
        with self._lock:
            only = None if job_ids is None else set(job_ids)
            n = 0
            for i, d in self._select(exp_key):
                if only is not None and i not in only:
                    continue
                self._drop_files(d.get("_attachments") or [])
                self._by_tid.pop(d["tid"], None)
                self._written.pop(i, None)
                del self._jobs[i]
                n += 1
            return n

    def withdraw_new(self, exp_key: str | None, job_ids: Iterable[Any]) -> list[Any]:
        with self._lock:
            wanted = set(job_ids)
            gone = [i for i, _ in self._select(exp_key, [JOB_STATE_NEW]) if i in wanted]
            self.delete_jobs(exp_key, gone)
            return gone

    # ------------------------------------------------------------------ jobs: the worker
    def claim(self, owner: str, *, exp_key: Any = ANY_EXPERIMENT, worker: Mapping[str, Any] | None = None,
              lease_timeout: float, max_attempts: int) -> dict | None:
        with self._lock:
            new = self._select(exp_key, [JOB_STATE_NEW])
            if not new:
                return None
            job_id, doc = min(new, key=lambda item: item[1]["tid"])
            now = self._clock()
            host, _, pid = owner.rpartition(":")
            doc.update(state=JOB_STATE_RUNNING, owner=owner,
                       worker=(dict(worker) if worker is not None
                               else {"host": host, "pid": int(pid) if pid.isdigit() else pid}),
                       end_time=None, error=None, heartbeat=now, book_time=now, start_time=now, refresh_time=now,
                       lease_timeout=float(lease_timeout), max_attempts=int(max_attempts),
                       attempt=int(doc.get("attempt") or 0) + 1, **{REPORTS_FIELD: []})
            self._touch(job_id, doc)
            return self._copy(doc)

    def renew_lease(self, claim: Mapping[str, Any]) -> bool:
        with self._lock:
            doc = self._owned(claim)
            if doc is None:
                return False
            doc["heartbeat"] = self._clock()
            self._touch(claim["_id"], doc)
            return True

    def checkpoint(self, claim: Mapping[str, Any], result: Mapping[str, Any] | None = None) -> bool:
        with self._lock:
            doc = self._owned(claim)
            if doc is None:
                return False
            if result is not None:
                doc["result"] = sonify(dict(result))
            doc["refresh_time"] = self._clock()
            self._touch(claim["_id"], doc)
            return True

    def finish(self, claim: Mapping[str, Any], state: int, result: Mapping[str, Any],
               error: Mapping[str, Any] | None = None,
               attachments: Mapping[str, bytes] | None = None) -> bool:
        with self._lock:
            doc = self._owned(claim)
            if doc is None:
                current = self._job_of(claim)
                # a retried finish whose first call landed
                return bool(current and current.get("owner") == claim.get("owner")
                            and current.get("attempt") == claim.get("attempt") and current["state"] == state)
            attempt = doc.get("attempt")
            for name, blob in (attachments or {}).items():
                if not isinstance(blob, (bytes, bytearray, memoryview)):
                    raise InvalidResultError(f"attachment {name!r} is a {type(blob).__qualname__}; "
                                             f"attachments must be bytes")
            new = {name: self._put_file(blob, {"tid": doc["tid"], "name": name, "attempt": attempt})
                   for name, blob in (attachments or {}).items()}
            keep: list[list] = []  # [name, file id] references
            drop: list[list] = []
            for ref in doc.get("_attachments") or []:
                by_user = self._files.get(ref[1], (b"", {}))[1].get("attempt") is None
                (keep if by_user and ref[0] not in new else drop).append(ref)
            doc["_attachments"] = keep + [[name, fid] for name, fid in new.items()]
            self._drop_files(drop)
            now = self._clock()
            doc.update(state=state, result=sonify(dict(result)), error=sonify(error), end_time=now, refresh_time=now)
            if error is not None:
                doc["misc"]["error"] = [error.get("type"), error.get("message")]
            self._touch(claim["_id"], doc)
            return True

    def release(self, claim: Mapping[str, Any], *, count_as_lost: bool = False) -> bool:
        with self._lock:
            doc = self._owned(claim)
            if doc is None:
                return False
            self._back_to_new(claim["_id"], doc, 1 if count_as_lost else 0)
            return True

    def requeue_stale(self, exp_key: Any = ANY_EXPERIMENT, *, default_lease: float,
                      default_max_attempts: int) -> list[dict]:
        with self._lock:
            now = self._clock()
            events = []
            for i, doc in self._select(exp_key, [JOB_STATE_RUNNING]):
                if not leases.lease_expired(doc, now, default_lease):
                    continue
                event = {"tid": doc["tid"], "exp_key": doc.get("exp_key"), "owner": doc.get("owner")}
                if leases.fails_when_lost(doc, default_max_attempts):
                    msg = leases.lost_message(doc, now, default_lease, default_max_attempts)
                    doc.update(state=JOB_STATE_ERROR, result={"status": STATUS_FAIL, "failure": msg},
                               error={"type": leases.LOST_ERROR_TYPE, "message": msg, "traceback": ""},
                               end_time=now)
                    doc["misc"]["error"] = [leases.LOST_ERROR_TYPE, msg]
                    self._touch(i, doc)
                    events.append({**event, "outcome": "failed", "message": msg})
                else:
                    msg = leases.requeued_message(doc, now, default_lease)
                    self._back_to_new(i, doc, 1)
                    events.append({**event, "outcome": "requeued", "message": msg})
            return events

    # ------------------------------------------------------------------ reports (pruning)
    def report(self, claim: Mapping[str, Any], step: int, value: float) -> bool:
        with self._lock:
            doc = self._owned(claim)
            if doc is None:
                return False
            reports = doc.setdefault(REPORTS_FIELD, [])
            step = int(step)
            if all(r["step"] != step for r in reports):  # the first value of a step wins
                reports.append({"step": step, "value": float(value)})
            return True

    def reports_at(self, exp_key: str | None, step: int, *, reached: bool = False,
                   exclude_tids: Sequence[int] = ()) -> dict[str, list]:
        with self._lock:
            step, skip = int(step), set(int(t) for t in exclude_tids)
            out: dict[str, list] = {"tid": [], "value": [], "kind": []}
            for _, d in self._select(exp_key):
                if d["tid"] in skip:
                    continue
                hit = next((r for r in d.get(REPORTS_FIELD) or ()
                            if (r["step"] >= step if reached else r["step"] == step)), None)
                if hit is not None:
                    out["tid"].append(int(d["tid"]))
                    out["value"].append(float(hit["value"]))
                    out["kind"].append(trial_kind(d["state"], (d.get("result") or {}).get("status")))
            return out

    def completed_at_least(self, exp_key: str | None, n: int) -> bool:
        with self._lock:
            if n <= 0:
                return True
            found = 0
            for _, d in self._select(exp_key, [JOB_STATE_DONE]):
                found += (d.get("result") or {}).get("status") == STATUS_OK
                if found >= n:
                    return True
            return False

    # ------------------------------------------------------------------ workers
    def beat_worker(self, worker_id: str, fields: Mapping[str, Any]) -> None:
        with self._lock:
            body = sonify(dict(fields))
            started = body.pop("started", None)
            doc = self._workers.get(worker_id)
            if doc is None:
                doc = self._workers[worker_id] = {"_id": worker_id, "started": started}
            doc.update(body)
            doc["heartbeat"] = self._clock()

    def workers(self, *, include_exited: bool = False) -> list[dict]:
        with self._lock:
            found = [w for w in self._workers.values() if include_exited or w.get("status") != "exited"]
            found.sort(key=_host_pid)
            return [copy.deepcopy(w) for w in found]

    # ------------------------------------------------------------------ inspection and repairs
    def find(self, exp_key: str | None, *, states: Iterable[int] | None = None, sort: str = "tid",
             limit: int | None = None, reverse: bool = False, full: bool = False) -> list[dict]:
        check_find_args(sort, limit)
        with self._lock:
            docs = [d for _, d in self._select(exp_key, states)]
            if sort == "tid":
                docs.sort(key=lambda d: d["tid"], reverse=reverse)
            elif sort == "loss":
                scored = [d for d in docs if loss_of(d) is not None]
                scored.sort(key=lambda d: (-loss_of(d) if reverse else loss_of(d), d["tid"]))  # type: ignore[operator]
                docs = scored + sorted((d for d in docs if loss_of(d) is None), key=lambda d: d["tid"])
            else:
                claimed = sorted((d for d in docs if d.get("book_time")),
                                 key=lambda d: (leases.as_utc(d["book_time"]), d["tid"]), reverse=reverse)
                docs = claimed + sorted((d for d in docs if not d.get("book_time")), key=lambda d: d["tid"])
            if limit:
                docs = docs[:limit]
            elif limit == 0:
                docs = []
            return [self._copy(d, full) for d in docs]

    def trial(self, tid: int, exp_key: Any = ANY_EXPERIMENT) -> dict | None:
        with self._lock:
            doc = self._jobs.get(self._by_tid.get(int(tid), -1))
            if doc is None or not _match_exp(doc, exp_key):
                return None
            return self._copy(doc)

    def count_by_state(self, exp_key: Any = ANY_EXPERIMENT) -> dict[str, int]:
        with self._lock:
            counts = {name: 0 for name in STATE_NAMES.values()}
            pruned = 0
            for _, d in self._select(exp_key):
                counts[STATE_NAMES[d["state"]]] += 1
                pruned += d["state"] == JOB_STATE_DONE and (d.get("result") or {}).get("status") == STATUS_PRUNED
            counts["total"] = sum(counts[n] for n in STATE_NAMES.values())
            counts["pruned"] = pruned
            return counts

    def finished_since(self, exp_key: str | None, since: _dt.datetime) -> int:
        with self._lock:
            since = leases.as_utc(since)
            n = 0
            for _, d in self._select(exp_key, JOB_FINISHED_STATES):
                t = leases.as_utc(d.get("end_time")) or leases.as_utc(d.get("updated_at"))
                n += t is not None and t >= since
            return n

    def first_claim(self, exp_key: str | None) -> _dt.datetime | None:
        with self._lock:
            times = [leases.as_utc(d.get("book_time")) for _, d in self._select(exp_key)]
            return min((t for t in times if t is not None), default=None)

    def requeue_unchanged(self, doc: Mapping[str, Any], *, lost_lease: bool = False) -> bool:
        with self._lock:
            cur = self._unchanged(doc)
            if cur is None:
                return False
            cur.update(refresh_time=None, end_time=None, error=None, result={"status": STATUS_NEW})
            cur["misc"].pop("error", None)
            self._back_to_new(doc["_id"], cur, 1 if lost_lease else 0)
            return True

    def cancel_unchanged(self, doc: Mapping[str, Any], *, failure: str, end_time: _dt.datetime | None = None) -> bool:
        with self._lock:
            cur = self._unchanged(doc)
            if cur is None or cur["state"] not in (JOB_STATE_NEW, JOB_STATE_RUNNING):
                return False
            cur.update(state=JOB_STATE_CANCEL, owner=None, heartbeat=None,
                       result={"status": STATUS_FAIL, "failure": failure})
            if end_time is not None:
                cur["end_time"] = end_time
            self._touch(doc["_id"], cur)
            return True
