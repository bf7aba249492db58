"""Repairs by hand: requeue or cancel trials, delete an experiment.

The state changes themselves are the conditional writes of :mod:`hpo_mongo.trials.mongo.jobs`
(:func:`~hpo_mongo.trials.mongo.jobs.requeue_unchanged`, :func:`~hpo_mongo.trials.mongo.jobs.cancel_unchanged`).
"""
from __future__ import annotations

from typing import Any, Sequence

from ..exceptions import InvalidParameterError
from ..trials.documents import JOB_STATE_CANCEL, JOB_STATE_ERROR, JOB_STATE_NEW, JOB_STATE_RUNNING, STATE_NAMES
from ..trials.mongo import jobs as _jobs
from .clock import server_now
from .experiments import get_experiment
from .liveness import stale_trials
from .trials import _LIST_PROJECTION, _jobs_filter, get_trial

def _select(db: Any, jobs: str, exp_key: str | None, tids: Sequence[int]) -> tuple[list[dict], list[dict]]:
    docs = {d["tid"]: d for d in db[jobs].find({"exp_key": exp_key, "tid": {"$in": list(tids)}},
                                               _LIST_PROJECTION)}
    found, skipped = [], []
    for t in dict.fromkeys(tids):
        if t in docs:
            found.append(docs[t])
        else:
            get_trial(db, jobs, exp_key, t)  # raises UnknownTrial with the most helpful message
    return found, skipped


def requeue_trials(db: Any, jobs: str, exp_key: str | None, *, tids: Sequence[int] = (),
                   stale: bool = False, errors: bool = False,
                   stale_after: float | None = None) -> dict:
    """Return trials to NEW so workers run them again: ``{"requeued": [tid], "skipped": [...]}``.

    ``tids`` may name ERROR, CANCEL or RUNNING trials (a running worker then loses its lease:
    its write-back no longer matches); ``errors`` selects every ERROR trial, ``stale`` every
    RUNNING trial whose heartbeat is older than ``stale_after`` seconds (default: its lease, see
    :func:`stale_trials`; like the lease rules, this increments ``requeues``). DONE trials are
    never requeued. Each update is conditional on the state and version read, so a trial that
    changed meanwhile is skipped and reported. ``attempt`` is left alone (only claims increment
    it); the error and result of a failed trial are cleared.
    """
    if not (tids or stale or errors):
        raise InvalidParameterError("nothing to requeue: name trial ids, or pass --stale or --errors")
    tids = [int(t) for t in tids]
    chosen: dict[int, dict] = {}
    skipped: list[dict] = []
    if tids:
        found, skipped = _select(db, jobs, exp_key, tids)
        for d in found:
            if d.get("state") in (JOB_STATE_ERROR, JOB_STATE_CANCEL, JOB_STATE_RUNNING):
                chosen[d["tid"]] = d
            else:
                skipped.append({"tid": d["tid"], "reason": f"trial {d['tid']} is {STATE_NAMES.get(d.get('state'))}; "
                                                          "only error, cancel and running trials are requeued"})
    if errors:
        for d in db[jobs].find(_jobs_filter(exp_key, state=JOB_STATE_ERROR), _LIST_PROJECTION):
            chosen.setdefault(d["tid"], d)
    stale_tids: set = set()
    if stale:
        for s in stale_trials(db, jobs, exp_key, stale_after=stale_after):
            chosen.setdefault(s["tid"], s)
            stale_tids.add(s["tid"])
    requeued = []
    for tid in sorted(chosen):
        d = chosen[tid]
        if _jobs.requeue_unchanged(db[jobs], d, lost_lease=tid in stale_tids):
            requeued.append(tid)
        else:
            now = db[jobs].find_one({"_id": d["_id"]}, {"state": 1})
            state = STATE_NAMES.get((now or {}).get("state"), "deleted")
            skipped.append({"tid": tid, "reason": f"trial {tid} changed meanwhile (now {state}); not requeued"})
    skipped.sort(key=lambda s: s["tid"])
    return {"requeued": requeued, "skipped": skipped}


def cancel_trials(db: Any, jobs: str, exp_key: str | None, tids: Sequence[int]) -> dict:
    """Mark NEW or RUNNING trials CANCEL: ``{"cancelled": [tid], "skipped": [...]}``.

    A cancelled running trial loses its owner, so the worker's result write-back (filtered on
    owner and attempt) no longer matches; finished trials are skipped with the reason.
    """
    if not tids:
        raise InvalidParameterError("name the trial ids to cancel")
    tids = [int(t) for t in tids]
    found, skipped = _select(db, jobs, exp_key, tids)
    cancelled = []
    for d in found:
        tid = d["tid"]
        if d.get("state") not in (JOB_STATE_NEW, JOB_STATE_RUNNING):
            skipped.append({"tid": tid, "reason": f"trial {tid} is already {STATE_NAMES.get(d.get('state'))}"})
            continue
        end_time = server_now(db) if d.get("state") == JOB_STATE_RUNNING else None
        if _jobs.cancel_unchanged(db[jobs], d, failure="cancelled with hpo-mongo cancel", end_time=end_time):
            cancelled.append(tid)
        else:
            skipped.append({"tid": tid, "reason": f"trial {tid} changed meanwhile; not cancelled"})
    skipped.sort(key=lambda s: s["tid"])
    return {"cancelled": sorted(cancelled), "skipped": skipped}


def delete_experiment(db: Any, jobs: str, exp_key: str | None) -> dict:
    """Delete the experiment: its trials, its ``experiments`` document and its GridFS files
    (experiment and trial attachments, and the pickled domain unless another experiment uses
    the same one). Returns ``{"exp_key", "trials", "experiment", "files"}`` counts."""
    exp = get_experiment(db, jobs, exp_key)
    files = db["fs.files"]
    file_ids: set = set()
    tids = []
    for d in db[jobs].find({"exp_key": exp_key}, {"tid": 1, "_attachments": 1}):
        tids.append(d.get("tid"))
        for a in d.get("_attachments") or []:
            if isinstance(a, (list, tuple)) and len(a) == 2:
                file_ids.add(a[1])
    tid_names = {str(t) for t in tids}
    prefix = f"exp/{'' if exp_key is None else exp_key}/"
    for f in files.find({}, {"_id": 1, "filename": 1, "metadata": 1}):
        name = str(f.get("filename") or "")
        meta = f.get("metadata") or {}
        if name.startswith(prefix) and meta.get("exp_key", exp_key) == exp_key:
            file_ids.add(f["_id"])
        if name.startswith("trial/") and name.split("/")[1:2] and name.split("/")[1] in tid_names:
            file_ids.add(f["_id"])  # tids are unique per database
    domain_hash = (exp.doc or {}).get("domain_hash")
    if domain_hash:
        shared = db["experiments"].find_one({"domain_hash": domain_hash, "exp_key": {"$ne": exp_key}}, {"_id": 1})
        if shared is None:
            for f in files.find({"filename": f"domain/{domain_hash}"}, {"_id": 1}):
                file_ids.add(f["_id"])
    n_files = 0
    if file_ids:
        import gridfs
        bucket = gridfs.GridFSBucket(db)
        for fid in file_ids:
            try:
                bucket.delete(fid)
                n_files += 1
            except gridfs.errors.NoFile:
                pass
    n_trials = db[jobs].delete_many({"exp_key": exp_key}).deleted_count
    n_exp = db["experiments"].delete_many({"exp_key": exp_key}).deleted_count
    return {"exp_key": exp_key, "trials": n_trials, "experiment": bool(n_exp), "files": n_files}
