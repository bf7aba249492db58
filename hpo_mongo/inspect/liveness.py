"""Is the experiment making progress: stale trials, live workers, throughput, ``status``.

The rules (when a trial's lease expired, when a worker or a driver is live) are those of
:mod:`hpo_mongo.trials.leases`, the ones every requeuer applies.
"""
from __future__ import annotations

import datetime as _dt

from ..exceptions import InvalidParameterError
from ..trials import leases
from ..trials.documents import JOB_STATE_RUNNING
from ..trials.queue import JobQueue
from .clock import server_now
from .experiments import Experiment, count_by_state
from .rows import _owner, trial_record
from .trials import best_trials

#: a RUNNING trial whose document records no lease is stale after this many seconds
DEFAULT_LEASE_TIMEOUT = leases.DEFAULT_LEASE_TIMEOUT
#: the window (minutes) over which throughput is measured
DEFAULT_WINDOW_MINUTES = 5.0
#: a driver is live while the experiment is running and its heartbeat is younger than this (seconds)
DRIVER_LIVE_WITHIN = leases.DRIVER_LIVE_WITHIN


def stale_trials(queue: JobQueue, exp_key: str | None, *, lease_timeout: float | None = None,
                 now: _dt.datetime | None = None) -> list[dict]:
    """RUNNING trials whose lease expired (:func:`hpo_mongo.trials.leases.lease_expired`): their
    heartbeat (else claim) is older than their own ``lease_timeout`` (the claiming worker's), 30 s
    when they record none, or than ``lease_timeout`` seconds when given. ``{tid, owner,
    heartbeat_age, _id, version, state}`` each, by tid."""
    now = now or server_now(queue)
    return [{"tid": d.get("tid"), "owner": _owner(d), "heartbeat_age": leases.age(now, leases.lease_start(d)),
             "_id": d["_id"], "version": d.get("version"), "state": d.get("state")}
            for d in queue.find(exp_key, states=[JOB_STATE_RUNNING])
            if leases.lease_expired(d, now, lease_timeout=lease_timeout)]


def live_workers(queue: JobQueue, exp_key: str | None, *, lease_timeout: float | None = None,
                 now: _dt.datetime | None = None) -> tuple[str, list[dict]]:
    """``(source, workers)``: the live workers serving this experiment.

    From the worker documents when any worker ever registered (``source`` ``"workers"``): those
    live by :func:`~hpo_mongo.trials.leases.worker_is_live` (heartbeat younger than their own
    lease, or than ``lease_timeout`` when given) that serve the experiment
    (:func:`~hpo_mongo.trials.leases.worker_serves`) or are running one of its trials. Without
    worker documents (hyperopt's own workers write none), the owners of RUNNING trials whose lease
    holds are listed (``source`` ``"trials"``).
    """
    now = now or server_now(queue)
    docs = queue.workers()
    if not docs and not queue.workers(include_exited=True):
        return "trials", _trial_owners(queue, exp_key, lease_timeout, now)
    running = {d.get("owner"): d.get("tid") for d in queue.find(exp_key, states=[JOB_STATE_RUNNING])} if docs else {}
    out = []
    for w in docs:
        if not leases.worker_is_live(w, now, lease_timeout=lease_timeout):
            continue
        cur = w.get("current") or {}
        on_this = bool(cur) and cur.get("exp_key") == exp_key
        if not (on_this or leases.worker_serves(w, exp_key)):
            continue
        tid = cur.get("tid") if on_this else None
        owner = w.get("owner") or (f"{w.get('host')}:{w.get('pid')}" if w.get("host") else None)
        status = w.get("status")
        if tid is None and owner in running:  # the claim is newer than the worker's last heartbeat
            tid, status = running[owner], "busy"
        out.append({"id": str(w.get("_id")), "host": w.get("host"), "pid": w.get("pid"),
                    "status": status, "current_tid": tid, "heartbeat_age": leases.age(now, w.get("heartbeat")),
                    "version": w.get("version")})
    return "workers", out


def _trial_owners(queue: JobQueue, exp_key: str | None, lease_timeout: float | None,
                  now: _dt.datetime) -> list[dict]:
    """The owners of the experiment's RUNNING trials whose lease holds, as :func:`live_workers` rows."""
    out = []
    for d in queue.find(exp_key, states=[JOB_STATE_RUNNING]):
        if leases.lease_expired(d, now, lease_timeout=lease_timeout):
            continue
        w = d.get("worker") or {}
        host, pid = w.get("host"), w.get("pid")
        if host is None and d.get("owner"):
            host, _, pid = str(d["owner"]).rpartition(":")
        out.append({"id": _owner(d), "host": host, "pid": pid, "status": "busy",
                    "current_tid": d.get("tid"), "heartbeat_age": leases.age(now, leases.lease_start(d)),
                    "version": None})
    return out


def throughput(queue: JobQueue, exp_key: str | None, *, minutes: float = DEFAULT_WINDOW_MINUTES,
               now: _dt.datetime | None = None) -> dict:
    """Trials finished (done/error/cancel) in the last ``minutes``: ``{minutes, finished, per_minute}``.

    ``per_minute`` divides by the window, or by the time since the first claim when the
    experiment started less than ``minutes`` ago."""
    if not minutes > 0:
        raise InvalidParameterError(f"minutes must be > 0, got {minutes}")
    now = now or server_now(queue)
    since = now - _dt.timedelta(minutes=minutes)
    n = queue.finished_since(exp_key, since)
    span = minutes
    started = leases.as_utc(queue.first_claim(exp_key))
    if started is not None and started > since:  # an experiment younger than the window
        span = max((now - started).total_seconds() / 60.0, 1.0 / 60.0)
    return {"minutes": minutes, "finished": n, "per_minute": n / span}


def driver_info(exp: Experiment, now: _dt.datetime) -> dict | None:
    """``{host, pid, heartbeat_age, live}`` of the experiment's last driver (None if it never had
    one); ``live`` is :func:`hpo_mongo.trials.leases.driver_is_live`."""
    driver = (exp.doc or {}).get("driver") or {}
    if not driver:
        return None
    return {"host": driver.get("host"), "pid": driver.get("pid"),
            "heartbeat_age": leases.age(now, driver.get("heartbeat")), "live": leases.driver_is_live(exp.doc, now)}


def live_driver(queue: JobQueue, exp: Experiment) -> dict | None:
    """The experiment's driver when it is live now (see :func:`driver_info`), else None."""
    info = driver_info(exp, server_now(queue))
    return info if info is not None and info["live"] else None


def experiment_status(queue: JobQueue, exp: Experiment, *, minutes: float = DEFAULT_WINDOW_MINUTES,
                      lease_timeout: float | None = None) -> dict:
    """Everything ``hpo-mongo status`` shows, as one JSON-able dict (``lease_timeout``: the
    ``--lease-timeout`` given, None when each trial's and worker's own lease applies)."""
    now = server_now(queue)
    counts = count_by_state(queue, exp.exp_key)
    best = best_trials(queue, exp.exp_key, 1)
    best_info = trial_record(best[0], exp.space) if best else None
    source, workers = live_workers(queue, exp.exp_key, lease_timeout=lease_timeout, now=now)
    stale = [{k: v for k, v in s.items() if k in ("tid", "owner", "heartbeat_age")}
             for s in stale_trials(queue, exp.exp_key, lease_timeout=lease_timeout, now=now)]
    finished = counts["done"] + counts["error"] + counts["cancel"]
    doc = exp.doc or {}
    return {
        "exp_key": exp.exp_key,
        "status": exp.status,
        "algorithm": doc.get("algorithm"),
        "pruner": doc.get("pruner"),
        "max_evals": exp.max_evals,
        "created": leases.as_utc(doc.get("created")),
        "driver": driver_info(exp, now),
        "counts": counts,
        "finished": finished,
        "best": best_info,
        "throughput": throughput(queue, exp.exp_key, minutes=minutes, now=now),
        "workers_source": source,
        "workers": workers,
        "lease_timeout": lease_timeout,
        "stale": stale,
        "server_time": now,
    }
