"""Trial documents flattened (table/CSV rows with decoded parameters) and as JSON records (one shape for every
command)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..trials.documents import JOB_STATE_DONE, JOB_STATE_ERROR, REPORTS_FIELD, STATE_NAMES, STATUS_OK, loss_of
from ..trials.leases import as_utc
from ..trials.queue import LAST_REPORT
from .space_info import SpaceInfo, decode_vals

#: columns every flat row starts with, before the parameters
FIXED_COLUMNS = ("tid", "state", "status", "loss")
#: columns after the parameters (``step``: the step of the trial's latest report)
TAIL_COLUMNS = ("attempt", "owner", "book_time", "start_time", "end_time", "duration", "error", "step")


def _start(doc: Mapping[str, Any]) -> Any:
    return as_utc(doc.get("start_time")) or as_utc(doc.get("book_time"))


def _end(doc: Mapping[str, Any]) -> Any:
    end = as_utc(doc.get("end_time"))
    if end is None and doc.get("state") in (JOB_STATE_DONE, JOB_STATE_ERROR):
        end = as_utc(doc.get("refresh_time"))
    return end


def _row_head(doc: Mapping[str, Any]) -> dict[str, Any]:
    """``tid, state`` (name), ``status, loss``: the loss of an ok trial, or a failed trial's numeric loss."""
    res = doc.get("result") or {}
    if res.get("status") == STATUS_OK:
        loss = loss_of(doc)
    else:
        raw = res.get("loss")
        loss = raw if isinstance(raw, (int, float)) and not isinstance(raw, bool) else None
    return {"tid": doc.get("tid"), "state": STATE_NAMES.get(doc.get("state"), str(doc.get("state"))),
            "status": res.get("status"), "loss": loss}


def reports_of(doc: Mapping[str, Any]) -> list[dict] | None:
    """The trial's intermediate values ``[{step, value}]`` in report order; None when it has none
    or the document leaves them out (a listing carries only the latest one)."""
    reports = doc.get(REPORTS_FIELD)
    if not isinstance(reports, list):
        return None
    return [{"step": r.get("step"), "value": r.get("value")} for r in reports if isinstance(r, Mapping)] or None


def last_step(doc: Mapping[str, Any]) -> int | None:
    """The step of the trial's latest report (a listing's ``last_report``, or the last of its
    reports), else the step a pruned trial stopped at; None when it reported nothing."""
    last = doc.get(LAST_REPORT)
    if not isinstance(last, Mapping):
        reports = reports_of(doc)
        last = reports[-1] if reports else None
    step = last.get("step") if isinstance(last, Mapping) else (doc.get("result") or {}).get("pruned_step")
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def _duration(doc: Mapping[str, Any]) -> float | None:
    start, end = _start(doc), _end(doc)
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
    start_time, end_time, duration`` (seconds), ``error`` (one line), ``step`` (of the latest
    report, :func:`last_step`), and with ``result_columns`` a ``reports`` column (the intermediate
    values as ``[[step, value], ...]``, when the documents hold any) and one ``result.<key>``
    column per scalar entry of the results.
    """
    space = space or SpaceInfo()
    docs = list(docs)
    extras = _result_extras(docs) if result_columns else []
    if result_columns and any(reports_of(d) for d in docs):
        extras.insert(0, REPORTS_FIELD)
    columns, param_cols = row_columns(space, docs, extras=extras)
    rows = []
    for d in docs:
        values = decode_vals((d.get("misc") or {}).get("vals"), space)
        res = d.get("result") or {}
        row: dict[str, Any] = _row_head(d)
        for col, lab in param_cols.items():
            row[col] = values.get(lab)
        row.update(attempt=d.get("attempt"), owner=_owner(d), book_time=as_utc(d.get("book_time")),
                   start_time=_start(d), end_time=_end(d), duration=_duration(d), error=_error_text(d),
                   step=last_step(d))
        for col in extras:
            if col == REPORTS_FIELD:
                row[col] = [[r["step"], r["value"]] for r in reports_of(d) or ()] or None
            else:
                row[col] = res.get(col[len("result."):])
        rows.append(row)
    return columns, rows


#: the keys of a trial's JSON record, in this order (see :func:`trial_record`)
RECORD_KEYS = ("tid", "exp_key", "state", "status", "loss", "step", "params", "result", "attempt", "requeues",
               "owner", "book_time", "start_time", "end_time", "duration", "error", "attachments", "reports")


def _error_record(doc: Mapping[str, Any]) -> dict | None:
    err = doc.get("error")
    if isinstance(err, Mapping) and (err.get("type") or err.get("message")):
        return {"type": err.get("type"), "message": err.get("message"), "traceback": err.get("traceback")}
    text = _error_text(doc)
    return None if text is None else {"type": None, "message": text, "traceback": None}


def trial_record(doc: Mapping[str, Any], space: SpaceInfo) -> dict:
    """One trial as JSON: the shape ``list``, ``best``, ``show`` and ``export --format json``
    share (keys :data:`RECORD_KEYS`).

    ``state`` is the state's name, ``loss`` the usable loss (as in the flat rows), ``params`` the
    decoded values (None when inactive), ``result`` the stored result as is, ``error``
    ``{type, message, traceback}`` or None, ``attachments`` the attachment names, ``step`` the
    step of the latest report (:func:`last_step`), ``reports`` the intermediate values
    ``[{step, value}]`` in report order (:func:`reports_of`: None when there are none, or from a
    listing — ``list``, ``best``, ``status`` — which leaves them out; ``show`` and ``export`` hold them).
    """
    row = _row_head(doc)
    return {
        "tid": doc.get("tid"), "exp_key": doc.get("exp_key"), "state": row["state"], "status": row["status"],
        "loss": row["loss"], "step": last_step(doc), "params": decode_vals((doc.get("misc") or {}).get("vals"), space),
        "result": dict(doc.get("result") or {}), "attempt": doc.get("attempt"), "requeues": doc.get("requeues"),
        "owner": _owner(doc), "book_time": as_utc(doc.get("book_time")), "start_time": _start(doc),
        "end_time": _end(doc), "duration": _duration(doc), "error": _error_record(doc),
        "attachments": [a[0] for a in (doc.get("_attachments") or []) if isinstance(a, (list, tuple)) and a],
        "reports": reports_of(doc),
    }
