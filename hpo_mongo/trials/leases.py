"""The lease rules: when a RUNNING trial counts as lost, when a worker counts as live.

One place for every requeuer (idle workers, the driver, ``hpo-mongo requeue --stale``) and every
liveness question (``hpo-mongo status``, fmin's queue length), for every queue backend.

- A worker claiming a trial records on it its lease length (``lease_timeout``, seconds) and how
  many times the trial may be lost (``max_attempts``); every requeuer applies the values recorded
  on the trial, and the defaults here only to documents that carry none.
- The lease starts at the claim (``book_time``) and is renewed by the worker's heartbeat
  (``heartbeat``), both stamped by the queue's clock (the server's, for Mongo), so the clocks of
  the machines running workers and drivers never matter.
- A trial whose lease is older than its ``lease_timeout`` was lost: it goes back to NEW with
  ``requeues`` + 1, or — the ``max_attempts``-th time — to ERROR "lost N times".
- A worker is live when its document's status is not ``exited`` and its heartbeat is younger
  than its own ``lease_timeout``; it serves an experiment when it serves every experiment or that
  ``exp_key``.
- A driver is live while its experiment is ``running`` and the driver heartbeat on the experiment
  document (renewed at least every 5 s while fmin runs) is younger than
  :data:`DRIVER_LIVE_WITHIN` (``hpo-mongo delete`` asks again before deleting under it).

``hpo-mongo status`` / ``requeue --stale`` may replace every recorded lease by one length of their
own (``--lease-timeout``): the ``lease_timeout`` argument of :func:`lease_expired` and
:func:`worker_is_live`.
"""
from __future__ import annotations

import datetime as _dt
import logging
import math
from typing import Any, Iterable, Mapping, TypeGuard, overload

from .documents import JOB_STATE_ERROR, JOB_STATE_RUNNING, STATUS_FAIL
from .queue import CLAIM_KEYS, JobQueue

#: seconds a RUNNING trial may go without a heartbeat when its document records no lease_timeout
DEFAULT_LEASE_TIMEOUT = 30.0
#: a trial lost this many times becomes ERROR, when its document records no max_attempts
DEFAULT_MAX_ATTEMPTS = 3
#: seconds between a worker's heartbeats (its ``--heartbeat-interval`` default)
DEFAULT_HEARTBEAT_INTERVAL = 5.0
#: a worker's default lease is this many heartbeat intervals
LEASE_PER_HEARTBEAT = 6.0

#: seconds a running experiment's driver heartbeat stays fresh
DRIVER_LIVE_WITHIN = 30.0

LOST_ERROR_TYPE = "LeaseExpired"


def default_lease_timeout(heartbeat_interval: float) -> float:
    """The lease a worker records when it is given none: :data:`LEASE_PER_HEARTBEAT` heartbeats."""
    return LEASE_PER_HEARTBEAT * float(heartbeat_interval)


@overload
def as_utc(value: _dt.datetime) -> _dt.datetime: ...
@overload
def as_utc(value: Any) -> _dt.datetime | None: ...
def as_utc(value: Any) -> _dt.datetime | None:
    """A stored date as tz-aware UTC (naive dates are UTC), None for anything else."""
    if not isinstance(value, _dt.datetime):
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=_dt.timezone.utc)
    return value.astimezone(_dt.timezone.utc)


def age(now: _dt.datetime, then: Any) -> float | None:
    """Seconds from ``then`` to ``now`` (never negative); None when ``then`` is not a date."""
    t = as_utc(then)
    return None if t is None else max(0.0, (now - t).total_seconds())


def _positive(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def lease_timeout_of(doc: Mapping[str, Any], default: float = DEFAULT_LEASE_TIMEOUT) -> float:
    """The lease length recorded on a trial (or a worker document), else ``default``.

    Worker documents written by hpo_mongo 0.1 call it ``stale_timeout``; it is read too."""
    for key in ("lease_timeout", "stale_timeout"):
        v = doc.get(key)
        if _positive(v):
            return float(v)
    return float(default)


def max_attempts_of(doc: Mapping[str, Any], default: int = DEFAULT_MAX_ATTEMPTS) -> int:
    """How many losses a trial may take, as recorded on it at its claim, else ``default``."""
    v = doc.get("max_attempts")
    return int(v) if _positive(v) else int(default)


def lease_start(doc: Mapping[str, Any]) -> _dt.datetime | None:
    """When the current lease of a RUNNING trial began: its last heartbeat, else its claim."""
    return as_utc(doc.get("heartbeat")) or as_utc(doc.get("book_time"))


def _lease_length(doc: Mapping[str, Any], default: float, lease_timeout: float | None) -> float:
    return float(lease_timeout) if lease_timeout is not None else lease_timeout_of(doc, default)


def lease_cutoff(doc: Mapping[str, Any], now: _dt.datetime, default: float = DEFAULT_LEASE_TIMEOUT, *,
                 lease_timeout: float | None = None) -> _dt.datetime:
    """A lease that started before this moment has expired (``lease_timeout``: replaces the
    length recorded on ``doc``)."""
    return now - _dt.timedelta(seconds=_lease_length(doc, default, lease_timeout))


def lease_expired(doc: Mapping[str, Any], now: _dt.datetime, default: float = DEFAULT_LEASE_TIMEOUT, *,
                  lease_timeout: float | None = None) -> bool:
    """Whether a RUNNING trial's lease is older than its ``lease_timeout`` (or the
    ``lease_timeout`` given, which replaces it); a trial with no lease date at all counts as expired."""
    start = lease_start(doc)
    return start is None or start < lease_cutoff(doc, now, default, lease_timeout=lease_timeout)


def times_lost(doc: Mapping[str, Any]) -> int:
    """How many times the trial will have been lost once the current loss is counted."""
    return int(doc.get("requeues") or 0) + 1


def fails_when_lost(doc: Mapping[str, Any], default_max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> bool:
    """Whether losing this trial now makes it ERROR (its ``max_attempts``-th loss) instead of NEW."""
    return times_lost(doc) >= max_attempts_of(doc, default_max_attempts)


def lost_message(doc: Mapping[str, Any], now: _dt.datetime, default_lease: float = DEFAULT_LEASE_TIMEOUT,
                 default_max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> str:
    """The failure recorded on a trial lost for the last time."""
    idle = age(now, lease_start(doc))
    return (f"lost {times_lost(doc)} times: the worker holding it ({doc.get('owner')}) sent no heartbeat for "
            f"{idle if idle is not None else float('nan'):.1f} s (lease {lease_timeout_of(doc, default_lease):g} s); "
            f"max_attempts={max_attempts_of(doc, default_max_attempts)} reached")


def requeued_message(doc: Mapping[str, Any], now: _dt.datetime, default_lease: float = DEFAULT_LEASE_TIMEOUT) -> str:
    """What is logged when a lost trial goes back to NEW."""
    idle = age(now, lease_start(doc))
    return (f"requeued: the worker holding it ({doc.get('owner')}) sent no heartbeat for "
            f"{idle if idle is not None else float('nan'):.1f} s (lease {lease_timeout_of(doc, default_lease):g} s); "
            f"lost {times_lost(doc)} time(s)")


def worker_is_live(worker: Mapping[str, Any], now: _dt.datetime, default: float = DEFAULT_LEASE_TIMEOUT, *,
                   lease_timeout: float | None = None) -> bool:
    """A worker document describes a live worker: not exited, heartbeat younger than its lease
    (or the ``lease_timeout`` given, which replaces it)."""
    if worker.get("status") == "exited":
        return False
    a = age(now, worker.get("heartbeat"))
    return a is not None and a <= _lease_length(worker, default, lease_timeout)


def worker_serves(worker: Mapping[str, Any], exp_key: Any) -> bool:
    """A worker serves ``exp_key`` when it serves every experiment or that one."""
    return bool(worker.get("serves_all")) or worker.get("exp_key") == exp_key


def driver_is_live(experiment: Mapping[str, Any] | None, now: _dt.datetime) -> bool:
    """An experiment document's driver is running: the experiment is ``running`` and its driver
    heartbeat is younger than :data:`DRIVER_LIVE_WITHIN`."""
    doc = experiment or {}
    a = age(now, (doc.get("driver") or {}).get("heartbeat"))
    return doc.get("status") == "running" and a is not None and a < DRIVER_LIVE_WITHIN


def log_events(events: Iterable[Mapping[str, Any]], log: logging.Logger) -> None:
    """Log what ``requeue_stale`` changed: an ERROR for a trial lost for good, a WARNING for a requeue."""
    for e in events:
        (log.error if e.get("outcome") == "failed" else log.warning)(
            "trial %s (exp_key %r) %s", e.get("tid"), e.get("exp_key"), e.get("message"))


def requeue_lost(queue: JobQueue, *, owner: str | None, why: str, default_max_attempts: int) -> list[dict]:
    """The lease rules applied now, without waiting for the lease, to RUNNING trials whose worker is
    known to be gone (``owner``'s, or every one: a local pool's dead worker, a stopped Spark job):
    back to NEW counted as a loss, or ERROR on the ``max_attempts``-th loss, through the queue's
    claim-conditioned writes. Returns the events, as ``JobQueue.requeue_stale`` does (for :func:`log_events`)."""
    events = []
    for exp_key in queue.experiment_keys():
        for doc in queue.find(exp_key, states=[JOB_STATE_RUNNING]):
            if owner is not None and doc.get("owner") != owner:
                continue
            claim = {k: doc.get(k) for k in CLAIM_KEYS}
            event = {"tid": doc["tid"], "exp_key": doc.get("exp_key"), "owner": doc.get("owner")}
            if fails_when_lost(doc, default_max_attempts):
                msg = (f"lost {times_lost(doc)} times: {why}; "
                       f"max_attempts={max_attempts_of(doc, default_max_attempts)} reached")
                ok = queue.finish(claim, JOB_STATE_ERROR, {"status": STATUS_FAIL, "failure": msg},
                                  {"type": LOST_ERROR_TYPE, "message": msg, "traceback": ""})
                event.update(outcome="failed", message=msg)
            else:
                ok = queue.release(claim, count_as_lost=True)
                event.update(outcome="requeued", message=f"requeued: {why}; lost {times_lost(doc)} time(s)")
            if ok:
                events.append(event)
    return events
