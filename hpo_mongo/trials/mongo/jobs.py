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
from typing import Any, Iterable, Mapping, Sequence

from bson import encode as bson_encode
from bson.errors import BSONError
from pymongo import ReturnDocument
from pymongo.collection import Collection
from pymongo.errors import WriteError

from ...exceptions import InvalidResultError
from .. import leases
from ..documents import (JOB_STATE_CANCEL, JOB_STATE_ERROR, JOB_STATE_NEW, JOB_STATE_RUNNING, REPORTS_FIELD,
                         STATUS_FAIL, STATUS_NEW, sonify)
from ..queue import ANY_EXPERIMENT


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
          worker: Mapping[str, Any] | None = None, lease_timeout: float | None = None,
          max_attempts: int | None = None) -> dict | None:
    """Atomically move the oldest NEW trial (lowest tid) to RUNNING for ``owner``; None if none.

    One ``find_one_and_update``: two workers can never claim the same trial. Sets ``owner``,
    ``worker``, ``book_time``/``start_time``/``heartbeat``/``updated_at`` (server clock), empties
    ``reports`` (the attempt's own start) and increments ``attempt`` (only here) and ``version``.
    Returns the document after the update.
    ``lease_timeout`` (the claiming worker's stale timeout, seconds) and ``max_attempts`` (its
    ``--max-attempts``) are recorded on the trial so every requeuer (other workers, the driver)
    applies the owner's own lease rules (:func:`requeue_stale`).
    """
    host, _, pid = owner.rpartition(":")
    worker = dict(worker) if worker is not None else {"host": host, "pid": int(pid) if pid.isdigit() else pid}
    lease: dict[str, Any] = {"lease_timeout": float(lease_timeout)} if lease_timeout else {}
    if max_attempts:
        lease["max_attempts"] = int(max_attempts)
    return jobs.find_one_and_update(
        {"state": JOB_STATE_NEW, **exp_filter(exp_key)},
        {"$set": {"state": JOB_STATE_RUNNING, "owner": owner, "worker": worker, "end_time": None,
                  "error": None, REPORTS_FIELD: [], **lease},
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
           error: Mapping[str, Any] | None = None, attachments: Iterable[Sequence[Any]] | None = None) -> bool:
    """Write the outcome of a claimed trial (DONE or ERROR). False if the worker lost the trial.

    ``attachments`` (``[name, file_id]`` pairs, see ``attachments.refs_after_attempt``) becomes the
    trial's ``_attachments`` in the same owner-conditioned write, so a finished trial's
    attachments always come from the attempt that wrote its result; None leaves them as they are.
    Raises :class:`InvalidResultError` when MongoDB cannot store the outcome (nothing was written).
    """
    fields: dict[str, Any] = {"state": state, "result": sonify(dict(result)), "error": sonify(error)}
    if error is not None:  # hyperopt's serial Trials put (type, message) here; keep the same shape
        fields["misc.error"] = [error.get("type"), error.get("message")]
    if attachments is not None:
        fields["_attachments"] = [[str(name), file_id] for name, file_id in attachments]
    try:
        res = jobs.update_one(
            owned_filter(doc),
            {"$set": fields,
             "$currentDate": {"updated_at": True, "end_time": True, "refresh_time": True},
             "$inc": {"version": 1}})
    except _UNSTORABLE as e:
        raise InvalidResultError(f"MongoDB refused the outcome of trial {doc.get('tid')}: "
                                 f"{type(e).__name__}: {e}") from e
    return res.matched_count == 1


# ----------------------------------------------------------------------------- storable outcomes
#: the largest ``result`` (BSON bytes) a worker writes: MongoDB stores at most 16 MiB per
#: document, and the rest of the trial document (misc, error, times) needs room
MAX_RESULT_BYTES = 15 * 1024 * 1024
#: what encoding a value MongoDB cannot store raises (client side), or the server's refusal
_UNSTORABLE = (BSONError, OverflowError, UnicodeError, WriteError)


def check_storable(result: Mapping[str, Any], attachments: Mapping[str, Any] | None = None) -> None:
    """Raise :class:`InvalidResultError` naming the key path and type when :func:`finish` could not
    store this outcome: a value BSON cannot encode (an arbitrary object, an int outside 64 bits, a
    key that is not a string or holds a NUL), a result over :data:`MAX_RESULT_BYTES`, an
    attachment that is not bytes or whose name is not a string without NUL.

    Workers call it where the objective ran, before reporting, so such a trial fails instead of
    the worker.
    """
    for name, blob in (attachments or {}).items():
        if not isinstance(name, str) or "\x00" in name:
            raise InvalidResultError(f"attachment name {name!r} must be a string without NUL characters")
        if not isinstance(blob, (bytes, bytearray, memoryview)):
            raise InvalidResultError(f"attachment {name!r} is a {type(blob).__qualname__}; attachments must be bytes")
    try:
        size = len(bson_encode({"result": result}))
    except _UNSTORABLE as e:
        raise InvalidResultError("the result cannot be stored in MongoDB: "
                                 + (_bson_problem(result, "result") or f"{type(e).__name__}: {e}")) from None
    if size > MAX_RESULT_BYTES:
        biggest = max(((len(bson_encode({"v": v})), k) for k, v in result.items()), default=(0, None))
        where = f"; its largest entry is result[{biggest[1]!r}] ({biggest[0] / 2**20:.1f} MiB)" if biggest[1] else ""
        raise InvalidResultError(
            f"the result is {size / 2**20:.1f} MiB as BSON, more than the {MAX_RESULT_BYTES / 2**20:.0f} MiB a "
            f"trial can hold (MongoDB stores at most 16 MiB per document){where}: return large data as an "
            f"attachment")


def _bson_problem(value: Any, path: str) -> str | None:
    """Why ``value`` (found at ``path``) cannot be encoded as BSON, for the deepest offending path;
    None when it can."""
    try:
        bson_encode({"v": value})
        return None
    except _UNSTORABLE as e:
        error = f"{type(e).__name__}: {e}"
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path} has a key {key!r} of type {type(key).__qualname__} (keys must be strings)"
            if "\x00" in key:
                return f"{path} has a key {key!r} containing a NUL character"
            found = _bson_problem(item, f"{path}[{key!r}]")
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = _bson_problem(item, f"{path}[{i}]")
            if found:
                return found
    elif isinstance(value, int):
        return f"{path} = {value} is an int outside MongoDB's 64-bit range [-2**63, 2**63)"
    elif isinstance(value, str):
        return f"{path} is a str that is not valid UTF-8 ({error})"
    else:
        return f"{path} is a {type(value).__module__}.{type(value).__qualname__}, which MongoDB cannot store".replace(
            "builtins.", "")
    return f"{path}: {error}"


def checkpoint(jobs: Collection, doc: Mapping[str, Any], result: Mapping[str, Any] | None = None) -> bool:
    """Record an intermediate ``result`` (``ctrl.checkpoint``) on a claimed trial. False if lost."""
    update: dict[str, Any] = {"$currentDate": {"updated_at": True, "refresh_time": True},
                              "$inc": {"version": 1}}
    if result is not None:
        update["$set"] = {"result": sonify(dict(result))}
    return jobs.update_one(owned_filter(doc), update).matched_count == 1


def report(jobs: Collection, doc: Mapping[str, Any], step: int, value: float) -> bool:
    """Append ``{step, value}`` to a claimed trial's reports: one write conditioned on the claim and
    on ``step`` not being reported yet in this attempt (the first value wins). No ``version`` bump
    and no ``updated_at``: the driver's refresh leaves reports out (docs/schema.md). True when
    stored or already there, False if the worker lost the trial."""
    step = int(step)
    res = jobs.update_one({**owned_filter(doc), f"{REPORTS_FIELD}.step": {"$ne": step}},
                          {"$push": {REPORTS_FIELD: {"step": step, "value": float(value)}}})
    if res.matched_count == 1:
        return True
    return jobs.find_one(owned_filter(doc), {"_id": 1}) is not None  # a repeated step (or a retried report)


def set_attachment_ref(jobs: Collection, doc: Mapping[str, Any], name: str, file_id: Any = None) -> Any:
    """Make ``[name, file_id]`` the only ``name`` pair in a trial's ``_attachments`` (``file_id``
    None: remove it) with one write; return the file id it replaced (None if none).

    For attachments written outside a worker (a user's ``trials.trial_attachments(doc)[name] = b``),
    so not owner-conditioned; a worker's attachments are switched by :func:`finish` instead."""
    current = jobs.find_one({"_id": doc["_id"]}, {"_attachments": 1}) or {}
    pairs = current.get("_attachments") or []
    previous = next((fid for n, fid in pairs if n == name), None)
    keep = [pair for pair in pairs if pair[0] != name]
    if file_id is not None:
        keep.append([name, file_id])
    jobs.update_one({"_id": doc["_id"]},
                    {"$set": {"_attachments": keep},
                     "$currentDate": {"updated_at": True}, "$inc": {"version": 1}})
    return previous


def _back_to_new(requeues: int) -> dict:
    """The update returning a claimed trial to NEW (claim fields and reports cleared; ``requeues`` + n)."""
    return {"$set": {"state": JOB_STATE_NEW, **{f: None for f in CLAIM_FIELDS}, REPORTS_FIELD: []},
            "$currentDate": {"updated_at": True},
            "$inc": {"version": 1, "requeues": requeues}}


def release(jobs: Collection, doc: Mapping[str, Any], *, count_as_lost: bool = False) -> bool:
    """Give a claimed trial back to NEW for another worker (``requeues`` + 1 when ``count_as_lost``).
    False if already lost."""
    res = jobs.update_one(owned_filter(doc), _back_to_new(1 if count_as_lost else 0))
    return res.matched_count == 1


def finished_by(jobs: Collection, doc: Mapping[str, Any], state: int) -> bool:
    """Whether ``doc``'s claim already wrote ``state`` (a retried :func:`finish` whose first call landed)."""
    cur = jobs.find_one({"_id": doc["_id"]}, {"state": 1, "owner": 1, "attempt": 1})
    return bool(cur and cur.get("owner") == doc.get("owner") and cur.get("attempt") == doc.get("attempt")
                and cur.get("state") == state)


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


def withdraw_new(jobs: Collection, exp_key: Any, ids: Iterable[Any]) -> list[Any]:
    """Delete each of ``ids`` that is still NEW (one conditioned delete each: a claim racing
    with it wins); the ids deleted. NEW trials hold no attachments."""
    return [oid for oid in ids
            if jobs.delete_one({"_id": oid, "state": JOB_STATE_NEW, **exp_filter(exp_key)}).deleted_count]


# ----------------------------------------------------------------------------- repairs by hand
#: what ``hpo-mongo requeue`` resets: the claim (:data:`CLAIM_FIELDS`) and the outcome and reports of the last run
REQUEUE_RESET: dict[str, Any] = {"state": JOB_STATE_NEW, **{f: None for f in CLAIM_FIELDS}, "refresh_time": None,
                                 "end_time": None, "error": None, "result": {"status": STATUS_NEW},
                                 REPORTS_FIELD: []}


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


# ----------------------------------------------------------------------------- leases
def refresh_lease(jobs: Collection, doc: Mapping[str, Any]) -> bool:
    """Renew the lease (``heartbeat``, server clock) of a claimed trial. False if the worker lost it."""
    res = jobs.update_one(owned_filter(doc),
                          {"$currentDate": {"heartbeat": True, "updated_at": True}, "$inc": {"version": 1}})
    return res.matched_count == 1


def requeue_stale(jobs: Collection, *, now: Any, default_lease: float = leases.DEFAULT_LEASE_TIMEOUT,
                  default_max_attempts: int = leases.DEFAULT_MAX_ATTEMPTS,
                  exp_key: Any = ANY_EXPERIMENT) -> list[dict]:
    """Apply the lease rules (:mod:`hpo_mongo.trials.leases`) to RUNNING trials; one event per change.

    ``now`` is the SERVER's time (``connection.server_time``), compared with ``heartbeat`` (set by
    ``$currentDate``), so the clocks of workers and drivers never matter. Each trial is judged by
    the ``lease_timeout`` and ``max_attempts`` its claiming worker recorded (the defaults only for
    documents without them). Each update is conditioned on the expired lease it saw, so a lease
    renewed meanwhile wins. Events: ``{tid, exp_key, owner, outcome: "requeued" | "failed", message}``.
    """
    events = []
    flt = {"state": JOB_STATE_RUNNING, **exp_filter(exp_key)}
    proj = {"tid": 1, "attempt": 1, "requeues": 1, "heartbeat": 1, "book_time": 1, "owner": 1,
            "lease_timeout": 1, "max_attempts": 1, "exp_key": 1}
    for doc in list(jobs.find(flt, proj)):
        if not leases.lease_expired(doc, now, default_lease):
            continue
        cutoff = leases.lease_cutoff(doc, now, default_lease)
        # a lease renewed meanwhile is >= cutoff (no exact date match: servers keep sub-ms precision)
        cond = {"_id": doc["_id"], "state": JOB_STATE_RUNNING, "attempt": doc.get("attempt")}
        cond["heartbeat" if doc.get("heartbeat") is not None else "book_time"] = {"$lt": cutoff}
        event = {"tid": doc.get("tid"), "exp_key": doc.get("exp_key"), "owner": doc.get("owner")}
        if leases.fails_when_lost(doc, default_max_attempts):
            msg = leases.lost_message(doc, now, default_lease, default_max_attempts)
            res = jobs.update_one(cond, {
                "$set": {"state": JOB_STATE_ERROR,
                         "result": {"status": STATUS_FAIL, "failure": msg},
                         "error": {"type": leases.LOST_ERROR_TYPE, "message": msg, "traceback": ""},
                         "misc.error": [leases.LOST_ERROR_TYPE, msg]},
                "$currentDate": {"updated_at": True, "end_time": True},
                "$inc": {"version": 1}})
            if res.modified_count:
                events.append({**event, "outcome": "failed", "message": msg})
        else:
            res = jobs.update_one(cond, _back_to_new(1))
            if res.modified_count:
                events.append({**event, "outcome": "requeued", "message": leases.requeued_message(
                    doc, now, default_lease)})
    return events


def upsert_worker(workers: Collection, worker_id: str, fields: Mapping[str, Any]) -> None:
    """Create or update a worker's document in ``workers``; ``heartbeat`` is the server's time."""
    fields = dict(fields)
    started = fields.pop("started", None)
    update: dict[str, Any] = {"$set": sonify(fields), "$currentDate": {"heartbeat": True}}
    if started is not None:
        update["$setOnInsert"] = {"started": started}
    workers.update_one({"_id": worker_id}, update, upsert=True)
