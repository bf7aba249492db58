"""The trial document: state constants, the one builder, validation and BSON-safe values.

Documents have hyperopt's shape (``tid, state, spec, result, misc{tid, cmd, idxs, vals, workdir},
exp_key, owner, version, book_time, refresh_time``); the Mongo store adds its own fields
(see docs/schema.md). This module is the only place that builds a new trial document.
"""
from __future__ import annotations

import datetime as _dt
import math
from typing import Any, Mapping

import numpy as np

from ..exceptions import InvalidTrial

# --- job states (integers, as stored in ``state``) -------------------------------------------
JOB_STATE_NEW = 0
JOB_STATE_RUNNING = 1
JOB_STATE_DONE = 2
JOB_STATE_ERROR = 3
JOB_STATE_CANCEL = 4
JOB_STATES = (JOB_STATE_NEW, JOB_STATE_RUNNING, JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_CANCEL)
JOB_VALID_STATES = frozenset({JOB_STATE_NEW, JOB_STATE_RUNNING, JOB_STATE_DONE})
#: states that count as "finished" toward max_evals
JOB_FINISHED_STATES = frozenset({JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_CANCEL})
#: states still waiting for a result
JOB_PENDING_STATES = frozenset({JOB_STATE_NEW, JOB_STATE_RUNNING})
#: keyed by the int states; looked up with whatever a document's ``state`` field holds (even None)
STATE_NAMES: dict[Any, str] = {JOB_STATE_NEW: "new", JOB_STATE_RUNNING: "running", JOB_STATE_DONE: "done",
                               JOB_STATE_ERROR: "error", JOB_STATE_CANCEL: "cancel"}
STATE_BY_NAME: dict[str, int] = {v: k for k, v in STATE_NAMES.items()}

# --- result statuses (strings, as stored in ``result.status``) --------------------------------
STATUS_NEW = "new"
STATUS_RUNNING = "running"
STATUS_SUSPENDED = "suspended"
STATUS_OK = "ok"
STATUS_FAIL = "fail"
#: a trial its pruner stopped early (DONE; ``result.loss`` = its last reported value)
STATUS_PRUNED = "pruned"
STATUS_STRINGS = (STATUS_NEW, STATUS_RUNNING, STATUS_SUSPENDED, STATUS_OK, STATUS_FAIL, STATUS_PRUNED)

#: the trial document field holding the current attempt's intermediate values ("reports"):
#: ``[{"step": int, "value": float}, ...]`` in report order (hpo_mongo.trials.reports)
REPORTS_FIELD = "reports"

TRIAL_KEYS = frozenset({"tid", "spec", "result", "misc", "state", "owner", "book_time",
                        "refresh_time", "exp_key"})
TRIAL_MISC_KEYS = frozenset({"tid", "cmd", "idxs", "vals"})
#: ``misc.cmd`` of every trial: the objective is the experiment's pickled domain
DOMAIN_CMD = ("domain_attachment", "FMinIter_Domain")


#: the fields a queue adds to every job at insert, beyond those of :func:`new_trial_doc`
QUEUE_FIELDS: dict[str, Any] = {"attempt": 0, "requeues": 0, "heartbeat": None, "worker": None, "start_time": None,
                                "end_time": None, "error": None, "_attachments": [], REPORTS_FIELD: []}


def queued_doc(doc: Mapping[str, Any]) -> dict:
    """``doc`` as a queue stores it at insert: :data:`QUEUE_FIELDS` (fresh lists) under its fields."""
    return {**{k: (list(v) if isinstance(v, list) else v) for k, v in QUEUE_FIELDS.items()}, **doc}


def utcnow() -> _dt.datetime:
    """Timezone-aware UTC now, truncated to milliseconds (BSON precision)."""
    now = _dt.datetime.now(_dt.timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def new_trial_doc(tid: int, vals: Mapping[str, list], *, exp_key: str | None = None,
                  workdir: str | None = None, extra_misc: Mapping[str, Any] | None = None) -> dict:
    """Build the NEW trial document for ``tid`` with ``misc.vals`` = ``vals`` ({label: [v] or []})."""
    tid = int(tid)
    vals = {str(k): [sonify(x) for x in v] for k, v in vals.items()}
    misc = {
        "tid": tid,
        "cmd": DOMAIN_CMD,
        "workdir": workdir,
        "idxs": {k: ([tid] if v else []) for k, v in vals.items()},
        "vals": vals,
    }
    if extra_misc:
        misc.update(extra_misc)
    return {
        "state": JOB_STATE_NEW,
        "tid": tid,
        "spec": None,
        "result": {"status": STATUS_NEW},
        "misc": misc,
        "exp_key": exp_key,
        "owner": None,
        "version": 0,
        "book_time": None,
        "refresh_time": None,
    }


def tid_order(tid: Any) -> tuple:
    """Sort key of tids: numbers by value, then any other tids (hyperopt allows e.g. strings) by type and text."""
    if isinstance(tid, (int, float, np.integer, np.floating)) and not isinstance(tid, bool):
        return (0, tid, "")
    return (1, 0, f"{type(tid).__name__}:{tid}")


def validate_trial_doc(doc: Mapping[str, Any], exp_key: Any = ...) -> None:
    """Raise :class:`InvalidTrial` naming the problem if ``doc`` breaks the schema."""
    if not isinstance(doc, Mapping):
        raise InvalidTrial(f"a trial document must be a dict, got {type(doc).__name__}")
    missing = TRIAL_KEYS - set(doc)
    if missing:
        raise InvalidTrial(f"trial document is missing {sorted(missing)}")
    misc = doc["misc"]
    if not isinstance(misc, Mapping) or TRIAL_MISC_KEYS - set(misc):
        got = sorted(misc) if isinstance(misc, Mapping) else misc
        raise InvalidTrial(f"trial misc must hold {sorted(TRIAL_MISC_KEYS)}, got {got!r}")
    if misc["tid"] != doc["tid"]:
        raise InvalidTrial(f"misc.tid {misc['tid']!r} differs from tid {doc['tid']!r}")
    if doc["state"] not in JOB_STATES:
        raise InvalidTrial(f"trial {doc['tid']}: unknown state {doc['state']!r}")
    if set(misc["idxs"]) != set(misc["vals"]):
        raise InvalidTrial(f"trial {doc['tid']}: misc.idxs and misc.vals have different labels")
    if exp_key is not ... and doc["exp_key"] != exp_key:
        raise InvalidTrial(f"trial {doc['tid']}: exp_key {doc['exp_key']!r} differs from the store's {exp_key!r}")


def sonify(obj: Any) -> Any:
    """Convert numpy scalars/arrays and tuples to plain BSON/JSON-friendly Python values."""
    if obj is None or isinstance(obj, (bool, str, bytes, int, float, _dt.datetime)):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return [sonify(x) for x in obj.tolist()]
    if isinstance(obj, Mapping):
        return {str(k): sonify(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [sonify(x) for x in obj]
    return obj


def loss_of(doc: Mapping[str, Any]) -> float | None:
    """The usable loss of a trial: a finite-or-inf float for status ok, else None."""
    res = doc.get("result") or {}
    if res.get("status") != STATUS_OK:
        return None
    loss = res.get("loss")
    if loss is None:
        return None
    try:
        loss = float(loss)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(loss) else loss

