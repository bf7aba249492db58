"""Trial queries: one experiment's trials filtered and sorted, its best ones, one by ``tid``."""
from __future__ import annotations

import datetime as _dt
from types import EllipsisType
from typing import Any, Iterable

from ..exceptions import InvalidParameterError, UnknownTrial
from ..trials.documents import (JOB_STATE_DONE, JOB_STATES, STATE_BY_NAME, STATE_NAMES, STATUS_OK,
                                loss_of)
from .clock import _utc
from .experiments import exp_label

#: trial fields the listings need (documents can be large: results, tracebacks)
_LIST_PROJECTION = {"_id": 1, "tid": 1, "exp_key": 1, "state": 1, "result": 1, "misc.vals": 1,
                    "owner": 1, "worker": 1, "attempt": 1, "book_time": 1, "refresh_time": 1,
                    "start_time": 1, "end_time": 1, "heartbeat": 1, "error": 1, "updated_at": 1,
                    "version": 1, "lease_timeout": 1, "requeues": 1, "_attachments": 1}


def _jobs_filter(exp_key: str | None, **extra: Any) -> dict:
    f = {"exp_key": exp_key}
    f.update(extra)
    return f


def _states(state: Iterable[str] | str | None) -> list[int] | None:
    if state is None:
        return None
    names = [state] if isinstance(state, str) else list(state)
    if not names:
        return None
    out = []
    for n in names:
        if n not in STATE_BY_NAME:
            raise InvalidParameterError(f"unknown state {n!r}; choose from {', '.join(STATE_BY_NAME)}")
        out.append(STATE_BY_NAME[n])
    return out


def known_states() -> tuple[str, ...]:
    """State names accepted by ``--state``."""
    return tuple(STATE_NAMES[s] for s in JOB_STATES)


def find_trials(db: Any, jobs: str, exp_key: str | None, *, state: Iterable[str] | str | None = None,
                sort: str = "tid", limit: int | None = None, reverse: bool = False,
                full: bool = False) -> list[dict]:
    """The experiment's trial documents, filtered by state names, sorted by ``tid``, ``loss``
    (trials without a loss last) or ``time`` (claim time; unclaimed last), at most ``limit``."""
    if sort not in ("tid", "loss", "time"):
        raise InvalidParameterError(f"sort must be one of tid, loss, time; got {sort!r}")
    if limit is not None and limit < 0:
        raise InvalidParameterError(f"limit must be >= 0, got {limit}")
    flt = _jobs_filter(exp_key)
    states = _states(state)
    if states is not None:
        flt["state"] = {"$in": states}
    proj = None if full else _LIST_PROJECTION
    coll = db[jobs]
    direction = -1 if reverse else 1
    if sort == "tid":
        cur = coll.find(flt, proj).sort([("tid", direction)])
        return list(cur.limit(limit) if limit else cur) if limit != 0 else []
    if limit == 0:
        return []
    if sort == "time":
        docs = list(coll.find(flt, proj))
        far = _dt.datetime.max.replace(tzinfo=_dt.timezone.utc)
        docs.sort(key=lambda d: (_utc(d.get("book_time")) or far, d.get("tid", 0)), reverse=reverse)
        if reverse:  # unclaimed trials stay last
            docs = [d for d in docs if d.get("book_time")] + [d for d in docs if not d.get("book_time")]
        return docs[:limit] if limit else docs
    # sort by loss: trials with a usable loss first (sorted on the server), then the rest by tid
    scored = dict(flt, **{"result.status": STATUS_OK, "result.loss": {"$type": "number"}})
    cur = coll.find(scored, proj).sort([("result.loss", direction), ("tid", 1)])
    docs = [d for d in (cur.limit(limit) if limit else cur) if loss_of(d) is not None]
    if not limit or len(docs) < limit:
        seen = {d["_id"] for d in docs}
        rest = coll.find(flt, proj).sort([("tid", 1)])
        for d in rest:
            if d["_id"] in seen or loss_of(d) is not None:
                continue
            docs.append(d)
            if limit and len(docs) >= limit:
                break
    return docs


def best_trials(db: Any, jobs: str, exp_key: str | None, n: int = 1) -> list[dict]:
    """The ``n`` DONE trials with status ok and the lowest losses (ties: lowest tid)."""
    if n < 1:
        raise InvalidParameterError(f"n must be >= 1, got {n}")
    flt = _jobs_filter(exp_key, state=JOB_STATE_DONE, **{"result.status": STATUS_OK,
                                                         "result.loss": {"$type": "number"}})
    cur = db[jobs].find(flt, _LIST_PROJECTION).sort([("result.loss", 1), ("tid", 1)]).limit(n)
    return [d for d in cur if loss_of(d) is not None]


def get_trial(db: Any, jobs: str, exp_key: str | None | EllipsisType, tid: int) -> dict:
    """The whole document of trial ``tid``; :class:`UnknownTrial` when it is not in the experiment.

    ``exp_key=...`` looks in every experiment (tids are unique in a database).
    """
    if exp_key is ...:
        doc = db[jobs].find_one({"tid": tid})
        if doc is None:
            raise UnknownTrial(f"no trial {tid} in database {db.name!r}")
        return doc
    doc = db[jobs].find_one({"tid": tid, "exp_key": exp_key})
    if doc is not None:
        return doc
    other = db[jobs].find_one({"tid": tid}, {"exp_key": 1})
    if other is not None:
        k = other.get("exp_key")
        how = "omit --exp-key" if k is None else f"pass --exp-key {k}"
        raise UnknownTrial(f"no trial {tid} in experiment {exp_label(exp_key)}: it belongs to "
                           f"experiment {exp_label(k)} ({how})")
    raise UnknownTrial(f"no trial {tid} in experiment {exp_label(exp_key)}")
