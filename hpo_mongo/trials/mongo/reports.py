"""The pruners' queries on the ``jobs`` collection: one experiment's reports at a step.

A trial's current attempt keeps its reports on its document, ``reports: [{step, value}, ...]``
in report order (docs/schema.md; written by :func:`hpo_mongo.trials.mongo.jobs.report`). Each
query here is one ``find`` served by the ``exp_key_reports_step`` index (multikey on
``reports.step``); an ``$elemMatch`` projection returns the first report of each trial that
matches, which is the report a pruner wants (the first one at or past a rung). The positional
``reports.$`` projection would do the same on MongoDB, but the test server answers it with the
array's first element whatever matched, so it is not used.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

from ..documents import JOB_STATE_DONE, REPORTS_FIELD, STATUS_OK
from ..reports import trial_kind

#: the index the step queries use (created by ``MongoJobQueue.prepare``)
STEP_INDEX = "exp_key_reports_step"


def step_query(exp_key: str | None, step: int, *, reached: bool = False,
               exclude_tids: Sequence[int] = ()) -> tuple[dict, dict]:
    """``(filter, projection)`` of ``JobQueue.reports_at``: the experiment's trials with a report
    at ``step`` (``reached``: at a step >= ``step``), without those in ``exclude_tids``; projected
    to ``tid``, ``state``, ``result.status`` and the first matching report."""
    cond: Any = {"$gte": int(step)} if reached else int(step)
    flt: dict[str, Any] = {"exp_key": exp_key, f"{REPORTS_FIELD}.step": cond}
    if exclude_tids:
        flt["tid"] = {"$nin": [int(t) for t in exclude_tids]}
    proj = {"tid": 1, "state": 1, "result.status": 1, REPORTS_FIELD: {"$elemMatch": {"step": cond}}}
    return flt, proj


def step_rows(docs: Iterable[dict]) -> dict[str, list]:
    """The answer of ``reports_at`` from the documents :func:`step_query` found."""
    out: dict[str, list] = {"tid": [], "value": [], "kind": []}
    for d in docs:
        hit = d.get(REPORTS_FIELD) or []
        if not hit:
            continue
        out["tid"].append(int(d["tid"]))
        out["value"].append(float(hit[0]["value"]))
        out["kind"].append(trial_kind(d.get("state"), (d.get("result") or {}).get("status")))
    return out


def complete_filter(exp_key: str | None) -> dict:
    """The filter of ``JobQueue.completed_at_least``: DONE trials with status ok (counted with a
    limit; the ``exp_key_state_tid`` index serves ``exp_key, state``)."""
    return {"exp_key": exp_key, "state": JOB_STATE_DONE, "result.status": STATUS_OK}
