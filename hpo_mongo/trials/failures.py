"""Why trials failed, grouped by cause: ``trials.errors()``, the driver's messages, ``AllTrialsFailed``.

A failed trial is an ERROR trial (the objective raised, could not be loaded on the worker, its
outcome could not be stored, it was lost too often) or a DONE trial whose result the rules turned
into ``status: "fail"`` (a NaN loss, a missing loss). Its *cause* is the error type and message (or
the ``failure`` text) with numbers and quoted values blanked out, so that "bad x 1.5" and "bad x
2.25" are one cause while "No module named 'a'" and "No module named 'b'" stay two (quoted names
matter: they say what is missing).
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Iterable, Mapping

from .documents import JOB_STATE_DONE, JOB_STATE_ERROR, STATUS_FAIL

_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?![\w.])", re.IGNORECASE)
_HEX = re.compile(r"\b0x[0-9a-f]+\b", re.IGNORECASE)


@dataclasses.dataclass
class FailureCause:
    """One distinct cause of failed trials: what failed, how often, where first."""

    kind: str                 #: the error type (``ValueError``, ``hpo_mongo.exceptions.ObjectiveLoadError``) or "fail"
    message: str              #: the first trial's message (or ``failure`` text)
    count: int = 0
    tids: list[int] = dataclasses.field(default_factory=list)
    hosts: list[str] = dataclasses.field(default_factory=list)  #: where they ran (distinct, first seen first)
    traceback: str = ""       #: the first trial's traceback ("" for a failed result)

    @property
    def first_tid(self) -> int:
        return self.tids[0]

    def headline(self) -> str:
        """``Type: message`` (one line, at most 300 characters)."""
        text = self.message if self.kind == "fail" else f"{self.kind}: {self.message}"
        text = " ".join(text.split())
        return text if len(text) <= 300 else text[:297] + "..."

    def where(self) -> str:
        host = f" on {self.hosts[0]}" if self.hosts else ""
        return f"trial {self.first_tid}{host}"


def cause_key(kind: str, message: str) -> tuple[str, str]:
    """The grouping key of a failure: its kind and its message with numbers blanked out."""
    return kind, _NUMBER.sub("#", _HEX.sub("#", " ".join(str(message).split())))


def failure_of(doc: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """``(kind, message, traceback)`` of a failed trial; None for a trial that did not fail."""
    state = doc.get("state")
    result = doc.get("result") or {}
    if state == JOB_STATE_ERROR:
        error = doc.get("error") or {}
        kind = str(error.get("type") or "Error")
        message = str(error.get("message") if error.get("message") is not None else result.get("failure", ""))
        return kind, message, str(error.get("traceback") or "")
    if state == JOB_STATE_DONE and result.get("status") == STATUS_FAIL:
        return "fail", str(result.get("failure") or "status 'fail'"), ""
    return None


def _host(doc: Mapping[str, Any]) -> str | None:
    worker = doc.get("worker") or {}
    if worker.get("host"):
        return str(worker["host"])
    owner = doc.get("owner")
    return str(owner).rpartition(":")[0] or None if owner else None


def group_failures(docs: Iterable[Mapping[str, Any]]) -> list[FailureCause]:
    """The failed trials among ``docs`` grouped by cause, most frequent first (ties: first seen)."""
    causes: dict[tuple[str, str], FailureCause] = {}
    for doc in sorted(docs, key=lambda d: d.get("tid", 0)):
        found = failure_of(doc)
        if found is None:
            continue
        kind, message, tb = found
        cause = causes.setdefault(cause_key(kind, message), FailureCause(kind, message, traceback=tb))
        cause.count += 1
        cause.tids.append(int(doc.get("tid", -1)))
        host = _host(doc)
        if host and host not in cause.hosts:
            cause.hosts.append(host)
    order = {key: i for i, key in enumerate(causes)}
    return sorted(causes.values(), key=lambda c: (-c.count, order[cause_key(c.kind, c.message)]))


def describe_failures(causes: list[FailureCause], *, limit: int = 5) -> str:
    """One line per cause (``3 × ValueError: ... (first: trial 4 on host-a)``), then the first
    traceback: the text of :class:`~hpo_mongo.exceptions.AllTrialsFailed`."""
    lines = [f"{c.count} × {c.headline()} (first: {c.where()})" for c in causes[:limit]]
    if len(causes) > limit:
        rest = sum(c.count for c in causes[limit:])
        lines.append(f"... and {rest} more trial(s) with {len(causes) - limit} other cause(s) (trials.errors())")
    tb = next((c for c in causes if c.traceback), None)
    text = "\n  ".join(lines)
    if tb is not None:
        text += f"\nthe first traceback (trial {tb.first_tid}):\n{tb.traceback.rstrip()}"
    return text


class FailureLog:
    """What the driver tells about failed trials while fmin runs: the first trial of each distinct
    cause at once (with its host), then only counts, and a summary when fmin ends."""

    def __init__(self, logger: Any):
        self.logger = logger
        self._seen: set[int] = set()
        self._counts: dict[tuple[str, str], int] = {}
        self._first: dict[tuple[str, str], str] = {}

    def note(self, doc: Mapping[str, Any]) -> None:
        """Look at one finished trial (each tid is considered once)."""
        tid = int(doc.get("tid", -1))
        if tid in self._seen:
            return
        self._seen.add(tid)
        found = failure_of(doc)
        if found is None:
            return
        kind, message, _ = found
        key = cause_key(kind, message)
        self._counts[key] = self._counts.get(key, 0) + 1
        if key in self._first:
            return
        cause = FailureCause(kind, message, tids=[tid], hosts=[h for h in [_host(doc)] if h])
        self._first[key] = cause.headline()
        self.logger.warning("%s failed: %s (further trials failing the same way are only counted; "
                            "trials.errors() lists every cause)", cause.where(), cause.headline())

    def summary(self) -> None:
        """Log how many trials failed of each cause (when there were any)."""
        if not self._counts:
            return
        parts = [f"{n} × {self._first[key]}" for key, n in sorted(self._counts.items(), key=lambda kv: -kv[1])]
        self.logger.warning("%d trial(s) failed: %s", sum(self._counts.values()), "; ".join(parts[:5])
                            + (f"; and {len(parts) - 5} other cause(s)" if len(parts) > 5 else ""))
