"""Read (and repair) experiments straight from the documented Mongo schema.

Everything here works on a pymongo ``Database`` plus the name of the jobs collection, following
docs/schema.md: ``jobs`` (one document per trial), ``experiments`` (one per ``exp_key``, holding
the JSON description of the search space), ``workers`` (heartbeats, when workers write them) and
the GridFS bucket ``fs``. Nothing is unpickled: choice indices in ``misc.vals`` become option
values through the experiment's ``space`` (:class:`SpaceInfo`).

The ``hpo-mongo`` CLI is a thin layer over these functions; they are public so that notebooks
and scripts can ask the same questions (see docs/inspecting.md).

The default experiment is the one whose ``exp_key`` is ``None``; it is displayed as
``(default)`` (:func:`exp_label`). The empty string is a different, ordinary key.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from .exceptions import HpoMongoError, InvalidParameterError, UnknownExperiment, UnknownTrial
from .trials.documents import (JOB_STATE_CANCEL, JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_NEW,
                               JOB_STATE_RUNNING, JOB_STATES, STATE_BY_NAME, STATE_NAMES, STATUS_OK,
                               loss_of)

__all__ = [
    "DEFAULT_LABEL", "SpaceInfo", "Experiment", "exp_label", "server_now", "list_experiments",
    "get_experiment", "count_by_state", "best_trials", "find_trials", "get_trial", "to_rows",
    "row_columns", "experiment_status", "stale_trials", "live_workers", "throughput",
    "requeue_trials", "cancel_trials", "delete_experiment", "decode_vals", "trial_record",
    "flat_value", "known_states",
]

#: how the experiment with ``exp_key=None`` is displayed
DEFAULT_LABEL = "(default)"
#: a RUNNING trial whose heartbeat is older than this is stale (the workers' default: 6 × 5 s)
DEFAULT_STALE_AFTER = 30.0
#: the window (minutes) over which throughput is measured
DEFAULT_WINDOW_MINUTES = 5.0
#: columns every flat row starts with, before the parameters
FIXED_COLUMNS = ("tid", "state", "status", "loss")
#: columns after the parameters
TAIL_COLUMNS = ("attempt", "owner", "book_time", "start_time", "end_time", "duration", "error")
#: trial fields the listings need (documents can be large: results, tracebacks)
_LIST_PROJECTION = {"_id": 1, "tid": 1, "exp_key": 1, "state": 1, "result": 1, "misc.vals": 1,
                    "owner": 1, "worker": 1, "attempt": 1, "book_time": 1, "refresh_time": 1,
                    "start_time": 1, "end_time": 1, "heartbeat": 1, "error": 1, "updated_at": 1,
                    "version": 1, "lease_timeout": 1, "requeues": 1}


def exp_label(exp_key: str | None) -> str:
    """How an ``exp_key`` is displayed: ``(default)`` for None, ``""`` for the empty string."""
    if exp_key is None:
        return DEFAULT_LABEL
    if exp_key == "":
        return '""'
    return str(exp_key)


def _utc(t: Any) -> _dt.datetime | None:
    if not isinstance(t, _dt.datetime):
        return None
    return t.replace(tzinfo=_dt.timezone.utc) if t.tzinfo is None else t.astimezone(_dt.timezone.utc)


def server_now(db: Any) -> _dt.datetime:
    """The server's clock (heartbeats are written with it); the local clock if the server does
    not tell it. An unreachable server raises :class:`StoreUnavailable`."""
    from .exceptions import StoreUnavailable
    from .trials.mongo.connection import server_time
    try:
        t = _utc(server_time(db))
    except StoreUnavailable:
        raise
    except HpoMongoError:
        t = None
    return t if t is not None else _dt.datetime.now(_dt.timezone.utc)


def _age(now: _dt.datetime, t: Any) -> float | None:
    t = _utc(t)
    return None if t is None else max(0.0, (now - t).total_seconds())


# ----------------------------------------------------------------------------- the space
@dataclass
class SpaceInfo:
    """The experiment's JSON space: labels, kinds and choice options (no user code needed)."""

    params: list[dict] = field(default_factory=list)

    @classmethod
    def from_json(cls, space: Sequence[Mapping[str, Any]] | None) -> "SpaceInfo":
        return cls([dict(p) for p in (space or []) if isinstance(p, Mapping) and "label" in p])

    @classmethod
    def from_space(cls, space: Any) -> "SpaceInfo":
        """From a user space (hp expressions), a CompiledSpace, or its JSON list."""
        if space is None:
            return cls()
        if isinstance(space, SpaceInfo):
            return space
        if isinstance(space, list) and all(isinstance(p, Mapping) and "kind" in p for p in space):
            return cls.from_json(space)
        from .space import compile_space
        return cls.from_json(compile_space(space).to_json())

    @property
    def labels(self) -> list[str]:
        return [p["label"] for p in self.params]

    def param(self, label: str) -> dict | None:
        for p in self.params:
            if p["label"] == label:
                return p
        return None

    def kind(self, label: str) -> str | None:
        p = self.param(label)
        return p.get("kind") if p else None

    def is_categorical(self, label: str) -> bool:
        return self.kind(label) in ("choice", "pchoice")

    def is_log(self, label: str) -> bool:
        return self.kind(label) in ("loguniform", "qloguniform", "lognormal", "qlognormal")

    def options(self, label: str) -> list | None:
        p = self.param(label)
        return p.get("options") if p else None

    def decode(self, label: str, raw: Any) -> Any:
        """One stored value → the value the objective saw (choice index → option)."""
        p = self.param(label)
        if p is None or raw is None:
            return raw
        if p.get("kind") in ("choice", "pchoice"):
            options = p.get("options")
            try:
                idx = int(raw)
            except (TypeError, ValueError):
                return raw
            if options is not None and 0 <= idx < len(options):
                return options[idx]
            return raw
        if p.get("kind") in ("randint", "uniformint") and isinstance(raw, float) and raw.is_integer():
            return int(raw)
        return raw


def decode_vals(vals: Mapping[str, Any] | None, space: SpaceInfo) -> dict[str, Any]:
    """``misc.vals`` (``{label: [v] or []}``) → ``{label: value or None}`` with option values.

    Labels follow the space's order, then any label the space does not know. None means the
    parameter was inactive in this trial. A nested sub-space option comes back as JSON with the
    parameters inside it filled in (``{"name": "sgd", "momentum": 0.9}``).
    """
    vals = vals or {}
    out: dict[str, Any] = {}
    for label in list(space.labels) + [k for k in vals if k not in space.labels]:
        v = vals.get(label)
        if isinstance(v, (list, tuple)):
            v = v[0] if len(v) else None
        out[label] = space.decode(label, v) if v is not None else None
    for label, v in out.items():
        if isinstance(v, (dict, list)):
            out[label] = _resolve_refs(v, out)
    return out


def _resolve_refs(option: Any, values: Mapping[str, Any], depth: int = 0) -> Any:
    """A nested option with its ``{"$param": label}`` placeholders replaced by this trial's
    values, so it shows what the objective received (``$expr`` descriptions stay as they are)."""
    if depth > 20:
        return option
    if isinstance(option, dict):
        if set(option) == {"$param"} and option["$param"] in values:
            return _resolve_refs(values[option["$param"]], values, depth + 1)
        return {k: _resolve_refs(v, values, depth + 1) for k, v in option.items()}
    if isinstance(option, list):
        return [_resolve_refs(v, values, depth + 1) for v in option]
    return option


def flat_value(v: Any) -> Any:
    """A decoded value for one table/CSV cell: nested options (dict/list) become compact JSON."""
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, sort_keys=True, separators=(",", ":"), default=str)
    return v


# ----------------------------------------------------------------------------- experiments
@dataclass
class Experiment:
    """One experiment: its key, its ``experiments`` document (None if it has none) and space."""

    exp_key: str | None
    doc: dict | None
    space: SpaceInfo

    @property
    def label(self) -> str:
        return exp_label(self.exp_key)

    @property
    def max_evals(self) -> int | None:
        v = (self.doc or {}).get("max_evals")
        return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None

    @property
    def status(self) -> str | None:
        return (self.doc or {}).get("status")


def _jobs_filter(exp_key: str | None, **extra: Any) -> dict:
    f = {"exp_key": exp_key}
    f.update(extra)
    return f


def _known_keys(db: Any, jobs: str) -> list[str | None]:
    keys = {d.get("exp_key") for d in db["experiments"].find({}, {"exp_key": 1})}
    keys.update(db[jobs].distinct("exp_key"))
    return sorted(keys, key=lambda k: (k is not None, "" if k is None else str(k)))


def get_experiment(db: Any, jobs: str, exp_key: str | None) -> Experiment:
    """The experiment ``exp_key``; raises :class:`UnknownExperiment` naming the existing ones.

    An experiment with trials but no ``experiments`` document (written by an older driver) is
    still returned, with an empty space (values are then shown as stored).
    """
    doc = db["experiments"].find_one({"exp_key": exp_key})
    if doc is None and db[jobs].find_one({"exp_key": exp_key}, {"_id": 1}) is None:
        known = _known_keys(db, jobs)
        where = f"database {db.name!r}"
        if not known:
            raise UnknownExperiment(f"no experiment {exp_label(exp_key)} in {where}: it holds no experiments")
        listed = ", ".join(exp_label(k) for k in known[:10]) + (", ..." if len(known) > 10 else "")
        hint = "; pass --exp-key KEY" if exp_key is None else ""
        raise UnknownExperiment(f"no experiment {exp_label(exp_key)} in {where} (experiments: {listed}){hint}")
    return Experiment(exp_key, doc, SpaceInfo.from_json((doc or {}).get("space")))


def count_by_state(db: Any, jobs: str, exp_key: str | None = ...) -> dict[str, int]:
    """``{new, running, done, error, cancel, total}`` for one experiment (all when omitted)."""
    match = {} if exp_key is ... else {"exp_key": exp_key}
    counts = {name: 0 for name in STATE_NAMES.values()}
    for row in db[jobs].aggregate([{"$match": match}, {"$group": {"_id": "$state", "n": {"$sum": 1}}}]):
        name = STATE_NAMES.get(row["_id"])
        if name is not None:
            counts[name] += int(row["n"])
    counts["total"] = sum(counts[n] for n in STATE_NAMES.values())
    return counts


def list_experiments(db: Any, jobs: str) -> list[dict]:
    """Every experiment in the database: counts by state, best loss, created, last activity."""
    per_key: dict[Any, dict] = {}

    def entry(k: Any) -> dict:
        if k not in per_key:
            per_key[k] = {"exp_key": k, "status": None, "max_evals": None, "algorithm": None,
                          "counts": {name: 0 for name in STATE_NAMES.values()}, "best_loss": None,
                          "created": None, "last_activity": None}
        return per_key[k]

    for doc in db["experiments"].find({}, {"space": 0}):
        e = entry(doc.get("exp_key"))
        e.update(status=doc.get("status"), max_evals=doc.get("max_evals"), algorithm=doc.get("algorithm"),
                 created=_utc(doc.get("created")), last_activity=_utc(doc.get("updated_at")))
        hb = _utc((doc.get("driver") or {}).get("heartbeat"))
        if hb is not None and (e["last_activity"] is None or hb > e["last_activity"]):
            e["last_activity"] = hb
    groups = db[jobs].aggregate([{"$group": {"_id": {"k": "$exp_key", "s": "$state"}, "n": {"$sum": 1},
                                             "first": {"$min": "$created_at"},
                                             "last": {"$max": "$updated_at"}}}])
    for row in groups:
        e = entry(row["_id"].get("k"))
        name = STATE_NAMES.get(row["_id"].get("s"))
        if name is not None:
            e["counts"][name] += int(row["n"])
        last, first = _utc(row.get("last")), _utc(row.get("first"))
        if last is not None and (e["last_activity"] is None or last > e["last_activity"]):
            e["last_activity"] = last
        if e["created"] is None and first is not None:
            e["created"] = first
    best = db[jobs].aggregate([{"$match": {"state": JOB_STATE_DONE, "result.status": STATUS_OK}},
                               {"$group": {"_id": "$exp_key", "best": {"$min": "$result.loss"}}}])
    for row in best:
        v = row.get("best")
        if isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v):
            entry(row["_id"])["best_loss"] = float(v)
    out = []
    for k in sorted(per_key, key=lambda k: (k is not None, "" if k is None else str(k))):
        e = per_key[k]
        e["counts"]["total"] = sum(e["counts"][n] for n in STATE_NAMES.values())
        out.append(e)
    return out


# ----------------------------------------------------------------------------- trials
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


def get_trial(db: Any, jobs: str, exp_key: str | None, tid: int) -> dict:
    """The whole document of trial ``tid``; :class:`UnknownTrial` when it is not in the experiment."""
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


def _duration(doc: Mapping[str, Any]) -> float | None:
    start = _utc(doc.get("start_time")) or _utc(doc.get("book_time"))
    end = _utc(doc.get("end_time"))
    if end is None and doc.get("state") in (JOB_STATE_DONE, JOB_STATE_ERROR):
        end = _utc(doc.get("refresh_time"))
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


def _owner(doc: Mapping[str, Any]) -> str | None:
    if doc.get("owner"):
        return str(doc["owner"])
    w = doc.get("worker") or {}
    if w.get("host") is not None:
        return f"{w.get('host')}:{w.get('pid')}"
    return None


def _error_text(doc: Mapping[str, Any]) -> str | None:
    err = doc.get("error")
    if isinstance(err, Mapping) and (err.get("type") or err.get("message")):
        return f"{err.get('type') or 'Error'}: {err.get('message') or ''}".rstrip(": ")
    res = doc.get("result") or {}
    if res.get("failure"):
        return str(res["failure"])
    misc_err = (doc.get("misc") or {}).get("error")
    if isinstance(misc_err, (list, tuple)) and len(misc_err) == 2:
        return f"{misc_err[0]}: {misc_err[1]}"
    return None


def row_columns(space: SpaceInfo, docs: Sequence[Mapping[str, Any]] = (), *,
                extras: Sequence[str] = ()) -> tuple[list[str], dict[str, str]]:
    """Column names of flat rows and ``{column: label}`` for the parameter columns.

    A parameter column is named by its label, or ``param.<label>`` when the label clashes with
    a fixed column (``tid``, ``loss``, ...) or looks like a ``result.`` column.
    """
    labels = list(space.labels)
    for d in docs:
        for k in ((d.get("misc") or {}).get("vals") or {}):
            if k not in labels:
                labels.append(k)
    reserved = set(FIXED_COLUMNS) | set(TAIL_COLUMNS)
    param_cols: dict[str, str] = {}
    for lab in labels:
        col = lab if lab not in reserved and not lab.startswith(("result.", "param.")) else f"param.{lab}"
        param_cols[col] = lab
    return list(FIXED_COLUMNS) + list(param_cols) + list(TAIL_COLUMNS) + list(extras), param_cols


def _result_extras(docs: Sequence[Mapping[str, Any]]) -> list[str]:
    """``result.<key>`` columns for scalar result entries besides status/loss/failure."""
    keys: list[str] = []
    for d in docs:
        for k, v in (d.get("result") or {}).items():
            if k in ("status", "loss", "failure") or k.startswith("_"):
                continue
            if v is None or isinstance(v, (bool, int, float, str)):
                col = f"result.{k}"
                if col not in keys:
                    keys.append(col)
    return keys


def to_rows(docs: Sequence[Mapping[str, Any]], space: SpaceInfo | None = None, *,
            result_columns: bool = False) -> tuple[list[str], list[dict]]:
    """Flatten trial documents: ``(columns, rows)``, one row per trial.

    Rows hold ``tid, state`` (name), ``status, loss``, one column per parameter (values, not
    indices; None when inactive; a nested sub-space option stays a dict/list here — tables and
    CSV show it as compact JSON, see :func:`flat_value`), ``attempt, owner, book_time,
    start_time, end_time, duration`` (seconds), ``error`` (one line), and with
    ``result_columns`` one ``result.<key>`` column per scalar entry of the results.
    """
    space = space or SpaceInfo()
    docs = list(docs)
    extras = _result_extras(docs) if result_columns else []
    columns, param_cols = row_columns(space, docs, extras=extras)
    rows = []
    for d in docs:
        values = decode_vals((d.get("misc") or {}).get("vals"), space)
        res = d.get("result") or {}
        row: dict[str, Any] = {
            "tid": d.get("tid"),
            "state": STATE_NAMES.get(d.get("state"), str(d.get("state"))),
            "status": res.get("status"),
            "loss": loss_of(d) if res.get("status") == STATUS_OK else (res.get("loss") if isinstance(res.get("loss"), (int, float)) else None),
        }
        for col, lab in param_cols.items():
            row[col] = values.get(lab)
        row.update(attempt=d.get("attempt"), owner=_owner(d), book_time=_utc(d.get("book_time")),
                   start_time=_utc(d.get("start_time")) or _utc(d.get("book_time")),
                   end_time=_utc(d.get("end_time")) or (_utc(d.get("refresh_time")) if d.get("state") in (JOB_STATE_DONE, JOB_STATE_ERROR) else None),
                   duration=_duration(d), error=_error_text(d))
        for col in extras:
            row[col] = res.get(col[len("result."):])
        rows.append(row)
    return columns, rows


def trial_record(doc: Mapping[str, Any], space: SpaceInfo) -> dict:
    """The whole trial for ``show``: every stored field, plus ``state_name``, decoded
    ``params`` and the attachment names."""
    out: dict[str, Any] = {"tid": doc.get("tid"), "exp_key": doc.get("exp_key"),
                           "state": doc.get("state"),
                           "state_name": STATE_NAMES.get(doc.get("state"), str(doc.get("state"))),
                           "params": decode_vals((doc.get("misc") or {}).get("vals"), space),
                           "loss": loss_of(doc), "duration": _duration(doc)}
    for k, v in doc.items():
        if k not in out:
            out[k] = v
    out["attachments"] = [a[0] for a in (doc.get("_attachments") or []) if isinstance(a, (list, tuple)) and a]
    out.pop("_attachments", None)
    return out


# ----------------------------------------------------------------------------- liveness
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


def experiment_status(db: Any, jobs: str, exp: Experiment, *, minutes: float = DEFAULT_WINDOW_MINUTES,
                      stale_after: float | None = None) -> dict:
    """Everything ``hpo-mongo status`` shows, as one JSON-able dict."""
    now = server_now(db)
    counts = count_by_state(db, jobs, exp.exp_key)
    best = best_trials(db, jobs, exp.exp_key, 1)
    best_info = None
    if best:
        b = best[0]
        best_info = {"tid": b.get("tid"), "loss": loss_of(b),
                     "params": decode_vals((b.get("misc") or {}).get("vals"), exp.space)}
    source, workers = live_workers(db, jobs, exp.exp_key, stale_after=stale_after, now=now)
    stale = [{k: v for k, v in s.items() if k in ("tid", "owner", "heartbeat_age")}
             for s in stale_trials(db, jobs, exp.exp_key, stale_after=stale_after, now=now)]
    finished = counts["done"] + counts["error"] + counts["cancel"]
    doc = exp.doc or {}
    driver = doc.get("driver") or {}
    return {
        "exp_key": exp.exp_key,
        "status": exp.status,
        "algorithm": doc.get("algorithm"),
        "max_evals": exp.max_evals,
        "created": _utc(doc.get("created")),
        "driver": ({"host": driver.get("host"), "pid": driver.get("pid"),
                    "heartbeat_age": _age(now, driver.get("heartbeat"))} if driver else None),
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


# ----------------------------------------------------------------------------- repairs
_RESET_FIELDS = {"state": JOB_STATE_NEW, "owner": None, "book_time": None, "refresh_time": None,
                 "heartbeat": None, "worker": None, "start_time": None, "end_time": None,
                 "error": None, "result": {"status": "new"}}


def _conditional_update(db: Any, jobs: str, doc: Mapping[str, Any], update_set: dict, *,
                        unset: Sequence[str] = (), inc: Mapping[str, int] | None = None) -> bool:
    """Apply ``update_set`` only if the trial still has the state and version we read
    (``updated_at`` by ``$currentDate``, ``version`` incremented, as every write)."""
    update: dict[str, Any] = {"$set": update_set, "$currentDate": {"updated_at": True},
                              "$inc": {"version": 1, **(inc or {})}}
    if unset:
        update["$unset"] = {k: "" for k in unset}
    res = db[jobs].update_one({"_id": doc["_id"], "state": doc.get("state"), "version": doc.get("version")},
                              update)
    return res.modified_count == 1


def _select(db: Any, jobs: str, exp_key: str | None, tids: Sequence[int]) -> tuple[list[dict], list[dict]]:
    docs = {d["tid"]: d for d in db[jobs].find({"exp_key": exp_key, "tid": {"$in": list(tids)}},
                                               _LIST_PROJECTION)}
    found, skipped = [], []
    for t in dict.fromkeys(tids):
        if t in docs:
            found.append(docs[t])
        else:
            skipped.append({"tid": t, "reason": f"no trial {t} in experiment {exp_label(exp_key)}"})
    return found, skipped


def _unknown_tids(db: Any, jobs: str, exp_key: str | None, tids: Sequence[int]) -> None:
    present = {d["tid"] for d in db[jobs].find({"exp_key": exp_key, "tid": {"$in": list(tids)}}, {"tid": 1})}
    missing = [t for t in dict.fromkeys(tids) if t not in present]
    if missing:
        for t in missing:
            get_trial(db, jobs, exp_key, t)  # raises with the most helpful message


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
    if tids:
        _unknown_tids(db, jobs, exp_key, tids)
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
        inc = {"requeues": 1} if tid in stale_tids else None
        if _conditional_update(db, jobs, d, dict(_RESET_FIELDS), unset=("misc.error",), inc=inc):
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
    _unknown_tids(db, jobs, exp_key, tids)
    found, skipped = _select(db, jobs, exp_key, tids)
    cancelled = []
    for d in found:
        tid = d["tid"]
        if d.get("state") not in (JOB_STATE_NEW, JOB_STATE_RUNNING):
            skipped.append({"tid": tid, "reason": f"trial {tid} is already {STATE_NAMES.get(d.get('state'))}"})
            continue
        upd = {"state": JOB_STATE_CANCEL, "owner": None, "heartbeat": None,
               "result": {"status": "fail", "failure": "cancelled with hpo-mongo cancel"}}
        if d.get("state") == JOB_STATE_RUNNING:
            upd["end_time"] = server_now(db)
        if _conditional_update(db, jobs, d, upd):
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


def known_states() -> tuple[str, ...]:
    """State names accepted by ``--state``."""
    return tuple(STATE_NAMES[s] for s in JOB_STATES)
