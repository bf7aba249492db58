"""The queries that move a trial through its states in the ``jobs`` collection — all in one place.

Every write here sets ``updated_at`` with ``$currentDate`` (the driver's incremental refresh relies
on it) and increments ``version``. The claim is the only write that changes ``attempt``; every
write a worker makes afterwards is conditioned on ``{_id, owner, attempt}``, so a worker whose
trial was taken away (requeued by the lease rules, cancelled, deleted) matches nothing and
learns it lost the trial instead of overwriting someone else's. The repairs made by hand
(``hpo-mongo requeue`` / ``cancel``) are conditioned instead on the ``{state, version}`` read.

Nothing here needs transactions, sessions or ``w=0``: each step is one single-document
``find_one_and_update`` / ``update_one``, atomic on every server (including the test server).
"""
from __future__ import annotations

import os
import socket
from typing import Any, Iterable, Mapping

from pymongo import ReturnDocument
from pymongo.collection import Collection

from ..documents import (JOB_STATE_CANCEL, JOB_STATE_ERROR, JOB_STATE_NEW, JOB_STATE_RUNNING, STATUS_FAIL,
                         STATUS_NEW, sonify)

#: ``exp_key`` filter meaning "every experiment" (a worker started without ``--exp-key``);
#: ``None`` is a real key (the default experiment).
ANY_EXPERIMENT = object()

#: a projection that changes nothing but makes the server reply with a copy of the document: the
#: in-memory test server (mongo-java-server) otherwise serializes the live document after
#: releasing its lock, so a concurrent update can leak into the reply of an atomic
#: find_one_and_update (seen as duplicate tids under concurrent ``$inc``).
COPY = {"_hpo_no_such_field": 0}

#: fields a worker writes when it claims a trial; cleared again when a trial is returned to NEW
CLAIM_FIELDS = ("owner", "book_time", "worker", "start_time", "heartbeat")


def owner_id(host: str | None = None, pid: int | None = None) -> str:
    """``"host:pid"`` — the ``owner`` a worker process writes on the trials it claims."""
    return f"{host or socket.gethostname()}:{pid if pid is not None else os.getpid()}"


def exp_filter(exp_key: Any) -> dict:
    """The ``exp_key`` part of a filter (empty for :data:`ANY_EXPERIMENT`)."""
    return {} if exp_key is ANY_EXPERIMENT else {"exp_key": exp_key}


def claim(jobs: Collection, owner: str, *, exp_key: Any = ANY_EXPERIMENT,
          worker: Mapping[str, Any] | None = None, lease_timeout: float | None = None) -> dict | None:
    """Atomically move the oldest NEW trial (lowest tid) to RUNNING for ``owner``; None if none.

    One ``find_one_and_update``: two workers can never claim the same trial. Sets ``owner``,
    ``worker``, ``book_time``/``start_time``/``heartbeat``/``updated_at`` (server clock) and
    increments ``attempt`` (only here) and ``version``. Returns the document after the update.
    ``lease_timeout`` (the claiming worker's stale timeout, seconds) is recorded on the trial so
    every requeuer (other workers, the driver) applies the owner's own lease length.
    """
    host, _, pid = owner.rpartition(":")
    worker = dict(worker) if worker is not None else {"host": host, "pid": int(pid) if pid.isdigit() else pid}
    lease = {"lease_timeout": float(lease_timeout)} if lease_timeout else {}
    return jobs.find_one_and_update(
        {"state": JOB_STATE_NEW, **exp_filter(exp_key)},
        {"$set": {"state": JOB_STATE_RUNNING, "owner": owner, "worker": worker, "end_time": None,
                  "error": None, **lease},
         "$currentDate": {"updated_at": True, "heartbeat": True, "book_time": True,
                          "start_time": True, "refresh_time": True},
         "$inc": {"attempt": 1, "version": 1}},
        sort=[("tid", 1)],
        projection=dict(COPY),  # fresh dict: mongomock mutates projections
        return_document=ReturnDocument.AFTER,
    )


def owned_filter(doc: Mapping[str, Any]) -> dict:
    """The filter of every write a worker makes on a trial it claimed: ``{_id, owner, attempt}``."""
    return {"_id": doc["_id"], "owner": doc["owner"], "attempt": doc["attempt"],
            "state": JOB_STATE_RUNNING}


def finish(jobs: Collection, doc: Mapping[str, Any], state: int, result: Mapping[str, Any],
           error: Mapping[str, Any] | None = None) -> bool:
    """Write the outcome of a claimed trial (DONE or ERROR). False if the worker lost the trial."""
    fields: dict[str, Any] = {"state": state, "result": sonify(dict(result)), "error": sonify(error)}
    if error is not None:  # hyperopt's serial Trials put (type, message) here; keep the same shape
        fields["misc.error"] = [error.get("type"), error.get("message")]
    res = jobs.update_one(
        owned_filter(doc),
        {"$set": fields,
         "$currentDate": {"updated_at": True, "end_time": True, "refresh_time": True},
         "$inc": {"version": 1}})
    return res.matched_count == 1


def checkpoint(jobs: Collection, doc: Mapping[str, Any], result: Mapping[str, Any] | None = None) -> bool:
    """Record an intermediate ``result`` (``ctrl.checkpoint``) on a claimed trial. False if lost."""
    update: dict[str, Any] = {"$currentDate": {"updated_at": True, "refresh_time": True},
                              "$inc": {"version": 1}}
    if result is not None:
        update["$set"] = {"result": sonify(dict(result))}
    return jobs.update_one(owned_filter(doc), update).matched_count == 1


def set_attachment_ref(jobs: Collection, doc: Mapping[str, Any], name: str, file_id: Any = None) -> None:
    """Make ``[name, file_id]`` the only ``name`` pair in a trial's ``_attachments`` (``file_id``
    None: remove it) with one write (any writer; not owner-conditioned)."""
    current = jobs.find_one({"_id": doc["_id"]}, {"_attachments": 1}) or {}
    keep = [pair for pair in current.get("_attachments") or [] if pair[0] != name]
    if file_id is not None:
        keep.append([name, file_id])
    jobs.update_one({"_id": doc["_id"]},
                    {"$set": {"_attachments": keep},
                     "$currentDate": {"updated_at": True}, "$inc": {"version": 1}})


def _back_to_new(requeues: int) -> dict:
    """The update returning a claimed trial to NEW (claim fields cleared; ``requeues`` + n)."""
    return {"$set": {"state": JOB_STATE_NEW, **{f: None for f in CLAIM_FIELDS}},
            "$currentDate": {"updated_at": True},
            "$inc": {"version": 1, "requeues": requeues}}


def release(jobs: Collection, doc: Mapping[str, Any], *, requeue: bool = True) -> bool:
    """Give a claimed trial back: to NEW (``requeue``) for another worker. False if already lost."""
    res = jobs.update_one(owned_filter(doc), _back_to_new(1 if requeue else 0))
    return res.matched_count == 1


def cancel_new(jobs: Collection, exp_key: Any, ids: Iterable[Any] | None = None) -> int:
    """Move NEW trials of ``exp_key`` (only those with ``_id`` in ``ids`` if given) to CANCEL."""
    flt: dict[str, Any] = {"state": JOB_STATE_NEW, **exp_filter(exp_key)}
    if ids is not None:
        ids = list(ids)
        if not ids:
            return 0
        flt["_id"] = {"$in": ids}
    res = jobs.update_many(
        flt,
        {"$set": {"state": JOB_STATE_CANCEL},
         "$currentDate": {"updated_at": True, "end_time": True},
         "$inc": {"version": 1}})
    return res.modified_count


# ----------------------------------------------------------------------------- repairs by hand
#: what ``hpo-mongo requeue`` resets: the claim (:data:`CLAIM_FIELDS`) and the outcome of the last run
REQUEUE_RESET = {"state": JOB_STATE_NEW, **{f: None for f in CLAIM_FIELDS}, "refresh_time": None,
                 "end_time": None, "error": None, "result": {"status": STATUS_NEW}}


def update_unchanged(jobs: Collection, doc: Mapping[str, Any], fields: dict, *,
                     unset: Iterable[str] = (), inc: Mapping[str, int] | None = None) -> bool:
    """``$set`` ``fields`` only if the trial still has the ``state`` and ``version`` read in ``doc``
    (``updated_at`` by ``$currentDate``, ``version`` incremented, as every write). False if it changed."""
    update: dict[str, Any] = {"$set": fields, "$currentDate": {"updated_at": True},
                              "$inc": {"version": 1, **(inc or {})}}
    unset = tuple(unset)
    if unset:
        update["$unset"] = {k: "" for k in unset}
    res = jobs.update_one({"_id": doc["_id"], "state": doc.get("state"), "version": doc.get("version")},
                          update)
    return res.modified_count == 1


def requeue_unchanged(jobs: Collection, doc: Mapping[str, Any], *, lost_lease: bool = False) -> bool:
    """Return a trial read as ``doc`` (ERROR, CANCEL or RUNNING) to NEW, its claim and outcome cleared
    (:data:`REQUEUE_RESET`, ``misc.error`` removed), if unchanged since read (:func:`update_unchanged`).
    ``attempt`` stays; ``lost_lease`` (a stale RUNNING trial) also increments ``requeues``."""
    return update_unchanged(jobs, doc, dict(REQUEUE_RESET), unset=("misc.error",),
                            inc={"requeues": 1} if lost_lease else None)


def cancel_unchanged(jobs: Collection, doc: Mapping[str, Any], *, failure: str, end_time: Any = None) -> bool:
    """Move a NEW or RUNNING trial read as ``doc`` to CANCEL with a failed result saying ``failure``,
    if unchanged since read (:func:`update_unchanged`). The owner is cleared, so a running worker's
    write-back no longer matches; ``end_time`` is recorded when given (a trial that was running)."""
    fields: dict[str, Any] = {"state": JOB_STATE_CANCEL, "owner": None, "heartbeat": None,
                              "result": {"status": STATUS_FAIL, "failure": failure}}
    if end_time is not None:
        fields["end_time"] = end_time
    return update_unchanged(jobs, doc, fields)


# ----------------------------------------------------------------------------- leases (issue 5)
#: how long a RUNNING trial may go without a heartbeat when its document records no lease_timeout
DEFAULT_STALE_TIMEOUT = 30.0
DEFAULT_MAX_ATTEMPTS = 3


def refresh_lease(jobs: Collection, doc: Mapping[str, Any]) -> bool:
    """Renew the lease (``heartbeat``, server clock) of a claimed trial. False if the worker lost it."""
    res = jobs.update_one(owned_filter(doc),
                          {"$currentDate": {"heartbeat": True, "updated_at": True}, "$inc": {"version": 1}})
    return res.matched_count == 1


def _lease_start(doc: Mapping[str, Any]):
    return doc.get("heartbeat") or doc.get("book_time")


def requeue_stale(jobs: Collection, *, now: Any, stale_timeout: float = DEFAULT_STALE_TIMEOUT,
                  max_attempts: int = DEFAULT_MAX_ATTEMPTS, exp_key: Any = ANY_EXPERIMENT,
                  log: Any = None) -> tuple[int, int]:
    """Apply the lease rules to RUNNING trials; return ``(requeued, failed)``.

    ``now`` is the SERVER's time (``connection.server_time``), compared with ``heartbeat`` (set by
    ``$currentDate``), so the clocks of workers and drivers never matter. A trial whose lease is
    older than its ``lease_timeout`` (the claiming worker's stale timeout; ``stale_timeout`` if the
    document has none) was lost: it goes back to NEW with its claim cleared and ``requeues``
    incremented, or — the ``max_attempts``-th time it is lost — to ERROR with "lost N times".
    Each update is conditioned on the stale heartbeat it saw, so a lease renewed meanwhile wins.
    """
    import datetime as _dt
    requeued = failed = 0
    flt = {"state": JOB_STATE_RUNNING, **exp_filter(exp_key)}
    proj = {"tid": 1, "attempt": 1, "requeues": 1, "heartbeat": 1, "book_time": 1, "owner": 1,
            "lease_timeout": 1, "exp_key": 1}
    for doc in list(jobs.find(flt, proj)):
        start = _lease_start(doc)
        timeout = float(doc.get("lease_timeout") or stale_timeout)
        cutoff = now - _dt.timedelta(seconds=timeout)
        if start is None or start >= cutoff:
            continue
        # a lease renewed meanwhile is >= cutoff (no exact date match: servers keep sub-ms precision)
        cond = {"_id": doc["_id"], "state": JOB_STATE_RUNNING, "attempt": doc.get("attempt")}
        cond["heartbeat" if doc.get("heartbeat") is not None else "book_time"] = {"$lt": cutoff}
        lost = int(doc.get("requeues") or 0) + 1
        idle = (now - start).total_seconds()
        if lost >= max_attempts:
            msg = (f"lost {lost} times: the worker holding it ({doc.get('owner')}) sent no heartbeat for "
                   f"{idle:.1f} s (lease {timeout:g} s); max_attempts={max_attempts} reached")
            res = jobs.update_one(cond, {
                "$set": {"state": JOB_STATE_ERROR,
                         "result": {"status": STATUS_FAIL, "failure": msg},
                         "error": {"type": "LeaseExpired", "message": msg, "traceback": ""},
                         "misc.error": ["LeaseExpired", msg]},
                "$currentDate": {"updated_at": True, "end_time": True},
                "$inc": {"version": 1}})
            if res.modified_count:
                failed += 1
                if log is not None:
                    log.error("trial %s (exp_key %r) %s", doc.get("tid"), doc.get("exp_key"), msg)
        else:
            res = jobs.update_one(cond, _back_to_new(1))
            if res.modified_count:
                requeued += 1
                if log is not None:
                    log.warning("trial %s (exp_key %r) requeued: %s sent no heartbeat for %.1f s (lease %g s); "
                                "lost %d time(s)", doc.get("tid"), doc.get("exp_key"), doc.get("owner"), idle,
                                timeout, lost)
    return requeued, failed


def upsert_worker(workers: Collection, worker_id: str, fields: Mapping[str, Any]) -> None:
    """Create or update a worker's document in ``workers``; ``heartbeat`` is the server's time."""
    fields = dict(fields)
    started = fields.pop("started", None)
    update: dict[str, Any] = {"$set": sonify(fields), "$currentDate": {"heartbeat": True}}
    if started is not None:
        update["$setOnInsert"] = {"started": started}
    workers.update_one({"_id": worker_id}, update, upsert=True)


def count_live_workers(workers: Collection, *, now: Any, stale_timeout: float = DEFAULT_STALE_TIMEOUT,
                       exp_key: Any = ANY_EXPERIMENT) -> int:
    """Workers that heartbeated within ``stale_timeout`` (server clock), not exited, serving ``exp_key``
    (workers started without ``--exp-key`` serve every experiment)."""
    import datetime as _dt
    flt: dict[str, Any] = {"heartbeat": {"$gte": now - _dt.timedelta(seconds=stale_timeout)},
                           "status": {"$ne": "exited"}}
    if exp_key is not ANY_EXPERIMENT:
        flt["$or"] = [{"serves_all": True}, {"exp_key": exp_key}]
    return workers.count_documents(flt)
