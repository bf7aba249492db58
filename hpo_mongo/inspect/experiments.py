"""Experiments: finding one by ``exp_key``, listing them all, counting their trials by state."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..exceptions import UnknownExperiment
from ..trials.documents import JOB_STATE_DONE, STATE_NAMES, STATUS_OK
from .clock import _utc
from .space_info import SpaceInfo

#: how the experiment with ``exp_key=None`` is displayed
DEFAULT_LABEL = "(default)"


def exp_label(exp_key: str | None) -> str:
    """How an ``exp_key`` is displayed: ``(default)`` for None, ``""`` for the empty string."""
    if exp_key is None:
        return DEFAULT_LABEL
    if exp_key == "":
        return '""'
    return str(exp_key)


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
