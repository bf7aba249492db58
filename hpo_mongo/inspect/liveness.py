"""Is the experiment making progress: stale trials, live workers, throughput, ``status``."""
from __future__ import annotations

import datetime as _dt
from typing import Any, Mapping

from ..exceptions import InvalidParameterError
from ..trials.documents import JOB_STATE_CANCEL, JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_RUNNING
from .clock import _age, _utc, server_now
from .experiments import Experiment, count_by_state
from .rows import _owner, trial_record
from .trials import _LIST_PROJECTION, _jobs_filter, best_trials

#: a RUNNING trial whose heartbeat is older than this is stale (the workers' default: 6 × 5 s)
DEFAULT_STALE_AFTER = 30.0
#: the window (minutes) over which throughput is measured
DEFAULT_WINDOW_MINUTES = 5.0
#: a driver is live while the experiment is running and its heartbeat (renewed about once a
#: second while fmin runs) is younger than this many seconds
DRIVER_LIVE_WITHIN = 30.0


def _last_sign_of_life(doc: Mapping[str, Any]) -> _dt.datetime | None:
    for k in ("heartbeat", "refresh_time", "book_time", "updated_at"):
        t = _utc(doc.get(k))
        if t is not None:
            return t
    return None


def _lease(d: Mapping[str, Any], stale_after: float | None) -> float:
    if stale_after is not None:
        return float(stale_after)
    v = d.get("lease_timeout") or d.get("stale_timeout")
    return float(v) if isinstance(v, (int, float)) and v > 0 else DEFAULT_STALE_AFTER


def stale_trials(db: Any, jobs: str, exp_key: str | None, *, stale_after: float | None = None,
                 now: _dt.datetime | None = None) -> list[dict]:
    """RUNNING trials whose heartbeat (or, without one, last write) is older than ``stale_after``
    seconds — by default each trial's own ``lease_timeout`` (the claiming worker's
    ``--stale-timeout``), else 30 s: the same rule the driver's lease check applies."""
    now = now or server_now(db)
    out = []
    for d in db[jobs].find(_jobs_filter(exp_key, state=JOB_STATE_RUNNING), _LIST_PROJECTION).sort([("tid", 1)]):
        age = _age(now, _last_sign_of_life(d))
        if age is None or age > _lease(d, stale_after):
            out.append({"tid": d.get("tid"), "owner": _owner(d), "heartbeat_age": age, "_id": d["_id"],
                        "version": d.get("version"), "state": d.get("state")})
    return out


def live_workers(db: Any, jobs: str, exp_key: str | None, *, stale_after: float | None = None,
                 now: _dt.datetime | None = None) -> tuple[str, list[dict]]:
    """``(source, workers)``: the live workers serving this experiment.

    With a ``workers`` collection (heartbeats), a worker is live when its status is not
    ``exited`` and its heartbeat is younger than ``stale_after`` seconds (by default the
    worker's own ``stale_timeout``); it serves the experiment when it serves every experiment
    or this exp_key. Without it, the owners of RUNNING trials with fresh heartbeats are listed
    (``source`` says which).
    """
    now = now or server_now(db)
    out = []
    if "workers" in db.list_collection_names():
        running = {d.get("owner"): d.get("tid") for d in
                   db[jobs].find(_jobs_filter(exp_key, state=JOB_STATE_RUNNING), {"owner": 1, "tid": 1})}
        for w in db["workers"].find({"status": {"$ne": "exited"}}).sort([("host", 1), ("pid", 1)]):
            age = _age(now, w.get("heartbeat"))
            if age is None or age > _lease(w, stale_after):
                continue
            cur = w.get("current") or {}
            serves = w.get("serves_all", w.get("exp_key") is None) or w.get("exp_key") == exp_key
            if not serves and not (cur and cur.get("exp_key") == exp_key):
                continue
            on_this = bool(cur) and cur.get("exp_key") == exp_key
            tid = cur.get("tid") if on_this else None
            owner = w.get("owner") or (f"{w.get('host')}:{w.get('pid')}" if w.get("host") else None)
            status = w.get("status")
            if tid is None and owner in running:  # the claim is newer than the worker's last heartbeat
                tid, status = running[owner], "busy"
            out.append({"id": str(w.get("_id")), "host": w.get("host"), "pid": w.get("pid"),
                        "status": status, "current_tid": tid, "heartbeat_age": age,
                        "version": w.get("version")})
        return "workers", out
    for d in db[jobs].find(_jobs_filter(exp_key, state=JOB_STATE_RUNNING), _LIST_PROJECTION).sort([("tid", 1)]):
        age = _age(now, _last_sign_of_life(d))
        if age is None or age > _lease(d, stale_after):
            continue
        w = d.get("worker") or {}
        host, pid = w.get("host"), w.get("pid")
        if host is None and d.get("owner"):
            host, _, pid = str(d["owner"]).rpartition(":")
        out.append({"id": _owner(d), "host": host, "pid": pid, "status": "busy",
                    "current_tid": d.get("tid"), "heartbeat_age": age, "version": None})
    return "trials", out


def throughput(db: Any, jobs: str, exp_key: str | None, *, minutes: float = DEFAULT_WINDOW_MINUTES,
               now: _dt.datetime | None = None) -> dict:
    """Trials finished (done/error/cancel) in the last ``minutes``: ``{minutes, finished, per_minute}``.

    ``per_minute`` divides by the window, or by the time since the first claim when the
    experiment started less than ``minutes`` ago."""
    if not minutes > 0:
        raise InvalidParameterError(f"minutes must be > 0, got {minutes}")
    now = now or server_now(db)
    since = now - _dt.timedelta(minutes=minutes)
    finished = [JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_CANCEL]
    flt = _jobs_filter(exp_key, state={"$in": finished})
    n = 0
    for d in db[jobs].find(dict(flt, updated_at={"$gte": since}), {"end_time": 1, "refresh_time": 1, "updated_at": 1}):
        t = _utc(d.get("end_time")) or _utc(d.get("refresh_time")) or _utc(d.get("updated_at"))
        if t is not None and t >= since:
            n += 1
    # an experiment younger than the window: divide by the time it has been running
    span = minutes
    first = db[jobs].find_one(_jobs_filter(exp_key, book_time={"$ne": None}), {"book_time": 1},
                              sort=[("book_time", 1)])
    started = _utc((first or {}).get("book_time"))
    if started is not None and started > since:
        span = max((now - started).total_seconds() / 60.0, 1.0 / 60.0)
    return {"minutes": minutes, "finished": n, "per_minute": n / span}


def driver_info(exp: Experiment, now: _dt.datetime) -> dict | None:
    """``{host, pid, heartbeat_age, live}`` of the experiment's last driver (None if it never had
    one); ``live`` follows :data:`DRIVER_LIVE_WITHIN`."""
    driver = (exp.doc or {}).get("driver") or {}
    if not driver:
        return None
    age = _age(now, driver.get("heartbeat"))
    live = exp.status == "running" and age is not None and age < DRIVER_LIVE_WITHIN
    return {"host": driver.get("host"), "pid": driver.get("pid"), "heartbeat_age": age, "live": live}


def live_driver(db: Any, exp: Experiment) -> dict | None:
    """The experiment's driver when it is live now (see :func:`driver_info`), else None."""
    info = driver_info(exp, server_now(db))
    return info if info is not None and info["live"] else None


def experiment_status(db: Any, jobs: str, exp: Experiment, *, minutes: float = DEFAULT_WINDOW_MINUTES,
                      stale_after: float | None = None) -> dict:
    """Everything ``hpo-mongo status`` shows, as one JSON-able dict."""
    now = server_now(db)
    counts = count_by_state(db, jobs, exp.exp_key)
    best = best_trials(db, jobs, exp.exp_key, 1)
    best_info = trial_record(best[0], exp.space) if best else None
    source, workers = live_workers(db, jobs, exp.exp_key, stale_after=stale_after, now=now)
    stale = [{k: v for k, v in s.items() if k in ("tid", "owner", "heartbeat_age")}
             for s in stale_trials(db, jobs, exp.exp_key, stale_after=stale_after, now=now)]
    finished = counts["done"] + counts["error"] + counts["cancel"]
    doc = exp.doc or {}
    return {
        "exp_key": exp.exp_key,
        "status": exp.status,
        "algorithm": doc.get("algorithm"),
        "max_evals": exp.max_evals,
        "created": _utc(doc.get("created")),
        "driver": driver_info(exp, now),
        "counts": counts,
        "finished": finished,
        "best": best_info,
        "throughput": throughput(db, jobs, exp.exp_key, minutes=minutes, now=now),
        "workers_source": source,
        "workers": workers,
        "stale_after": stale_after,
        "stale": stale,
        "server_time": now,
    }
