"""Intermediate values ("reports"): what pruners read, the in-memory store of them, and the
history a worker reads through its job queue (:class:`QueueReportHistory`).

A trial's objective calls ``report(value, step)``; each call is one *report* of the trial's
current *attempt* (a requeued trial starts a new attempt with no reports). Pruners decide
from two things only: the asking trial's own reports (:class:`TrialReports`, kept by whoever
evaluates the trial) and a :class:`ReportHistory`, the read-only view of every other trial's
reports in the same experiment. Each history query is answerable by one indexed query on a
database (see :class:`ReportHistory`), so the decision is made where the report happens.

Invariants every store keeps (the in-memory one here, every job queue alike: invariant 6 of
:mod:`hpo_mongo.trials.queue`):

1. **Attempt-scoped.** Only reports of a trial's current attempt are visible; starting an
   attempt (claim) discards the earlier ones.
2. **First report of a step wins.** A repeated step within an attempt is ignored (not stored,
   not overwriting); so a trial has at most one value per step, and once visible it never changes
   while the attempt lasts.
3. **Report order is kept.** "The first report at or past step s" means first in the order
   the trial reported, which is the step order unless the objective reported out of order.
4. **Read your writes.** A trial's report is stored before its pruner decision is asked for,
   and the values are plain floats: NaN and ±inf are stored as reported (pruners treat NaN as
   worse than anything).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple, Protocol, runtime_checkable

import numpy as np

from .documents import (JOB_STATE_CANCEL, JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_RUNNING, REPORTS_FIELD,
                        STATUS_OK, STATUS_PRUNED)

# --- what a trial is, as pruners see it (int8 codes in StepValues.kind) -----------------------
KIND_RUNNING = 0   #: RUNNING (its attempt may still report)
KIND_COMPLETE = 1  #: DONE with status ok
KIND_PRUNED = 2    #: DONE with status pruned
KIND_OTHER = 3     #: anything else: NEW, failed (status fail), ERROR, CANCEL
_FINAL_STATES = (JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_CANCEL)


def trial_kind(state: int | None, status: Any) -> int:
    """The KIND_* code of a trial from its ``state`` and ``result.status`` (the one rule)."""
    if state == JOB_STATE_RUNNING:
        return KIND_RUNNING
    if state == JOB_STATE_DONE:
        if status == STATUS_OK:
            return KIND_COMPLETE
        if status == STATUS_PRUNED:
            return KIND_PRUNED
    return KIND_OTHER


def doc_kind(doc: Mapping[str, Any]) -> int:
    return trial_kind(doc["state"], (doc.get("result") or {}).get("status"))


class TrialReports(NamedTuple):
    """One trial's own reports in its current attempt, in report order (no repeated step)."""

    tid: int
    step: np.ndarray   #: int64
    value: np.ndarray  #: float64, NaN / ±inf as reported

    @property
    def n(self) -> int:
        return len(self.step)

    @property
    def last_step(self) -> int | None:
        return int(self.step[-1]) if len(self.step) else None

    @property
    def last_value(self) -> float | None:
        return float(self.value[-1]) if len(self.value) else None


class StepValues(NamedTuple):
    """One value per trial for a queried step: parallel arrays, one row per trial, any order."""

    tid: np.ndarray    #: int64
    value: np.ndarray  #: float64 (NaN / ±inf as reported)
    kind: np.ndarray   #: int8 KIND_* code of the trial at query time

    @classmethod
    def empty(cls) -> "StepValues":
        return cls(np.empty(0, np.int64), np.empty(0, float), np.empty(0, np.int8))

    def where(self, mask: np.ndarray) -> "StepValues":
        return StepValues(self.tid[mask], self.value[mask], self.kind[mask])


@runtime_checkable
class ReportHistory(Protocol):
    """The read-only view of one experiment's reports that a pruner decides from.

    Every method answers for the trials of one experiment, current attempts only (invariant 1),
    including the asking trial itself if it has a matching report. Pruners must not assume any
    row order. A backend may cache answers: rows of DONE/ERROR/CANCEL trials never change; a
    RUNNING trial's row for a step never changes while its attempt lasts (invariant 2), though
    the row disappears if the trial is requeued, and new rows appear as trials report.

    A database backend answers each method with one indexed query, in the process where the
    report happens: e.g. with each trial's current reports stored on it in report order, ``at_step``
    and ``reached`` are one find on ``(exp_key, reports.step)`` projecting the first matching report.
    """

    def at_step(self, step: int) -> StepValues:
        """Each trial's value reported at exactly ``step``.

        Index: ``(exp_key, step)``. Used by Median/PercentilePruner (which keep KIND_COMPLETE rows).
        """

    def reached(self, step: int) -> StepValues:
        """Each trial that reported a step ``>= step``: the value of its first such report.

        This is the value a trial had when it reached the rung at resource ``step`` (successive
        halving). Index: ``(exp_key, step)`` (a range scan; with reports embedded as an array in
        report order, a positional projection returns the first match).
        """

    def completed_at_least(self, n: int) -> bool:
        """Whether at least ``n`` trials of the experiment are DONE with status ok (KIND_COMPLETE),
        with or without reports (``n <= 0``: True). Monotone while trials are not deleted, so a
        backend may cache a True answer for good, and count with a limit of ``n``."""


# ------------------------------------------------------------------------------ in memory
def _grow(a: np.ndarray, n: int) -> np.ndarray:
    """``a`` with room for at least ``n`` entries (doubling)."""
    if n <= len(a):
        return a
    out = np.empty(max(n, 2 * len(a), 16), a.dtype)
    out[:len(a)] = a
    return out


class _Column:
    """A growable ``(slot, value)`` column, one row per trial (the first value offered wins)."""

    __slots__ = ("slot", "value", "n", "seen")

    def __init__(self) -> None:
        self.slot = np.empty(16, np.int64)
        self.value = np.empty(16, float)
        self.n = 0
        self.seen: set[int] = set()

    def add(self, slot: int, value: float) -> None:
        if slot in self.seen:
            return
        self.slot, self.value = _grow(self.slot, self.n + 1), _grow(self.value, self.n + 1)
        self.slot[self.n], self.value[self.n] = slot, value
        self.n += 1
        self.seen.add(slot)


class MemoryReports:
    """:class:`ReportHistory` of an in-memory :class:`~hpo_mongo.trials.memory.Trials`, and its
    writer (:meth:`record`, :meth:`start_attempt`).

    The reports live on the trial documents (``doc["reports"]``, see :data:`REPORTS_FIELD`);
    this object indexes them in per-step columns so a query costs O(rows returned) in numpy,
    with the trials' tids and kinds in arrays by slot. The index is rebuilt from the documents
    whenever they may have changed behind its back (created, unpickled, an attempt restarted).
    """

    _final_docs: list[dict] | None  # the trials list whose finished prefix _n_final counts

    def __init__(self, trials: Any):
        self._trials = trials
        self._stale = True

    # -------------------------------------------------------------- writer
    def start_attempt(self, doc: dict) -> None:
        """Discard ``doc``'s reports: its new attempt starts without any (invariant 1)."""
        if doc.get(REPORTS_FIELD):
            self._stale = True
        doc[REPORTS_FIELD] = []

    def record(self, doc: dict, step: int, value: float) -> bool:
        """Append one report to ``doc``'s current attempt; False (nothing stored) if ``step``
        was already reported in it (invariant 2)."""
        self._sync()
        step, value = int(step), float(value)
        slot = self._slot_of(doc)
        if step in self._steps[slot]:
            return False
        doc.setdefault(REPORTS_FIELD, []).append({"step": step, "value": value})
        self._index(slot, step, value)
        return True

    # -------------------------------------------------------------- ReportHistory
    def at_step(self, step: int) -> StepValues:
        self._sync()
        return self._rows(self._by_step.get(int(step)))

    def reached(self, step: int) -> StepValues:
        self._sync()
        step = int(step)
        col = self._reached.get(step)
        if col is None:  # first question about this step: one pass over the stored reports
            col = self._reached[step] = _Column()
            for slot, doc in enumerate(self._docs):
                for r in doc[REPORTS_FIELD]:
                    if r["step"] >= step:
                        col.add(slot, float(r["value"]))
                        break
        return self._rows(col)

    def completed_at_least(self, n: int) -> bool:
        return n <= 0 or self._n_complete() >= n

    def _n_complete(self) -> int:
        self._sync()
        docs = self._trials.trials
        if self._final_docs is not docs:  # refreshed: recount the finished prefix
            self._final_docs, self._n_final, self._n_final_complete = docs, 0, 0
        while self._n_final < len(docs) and docs[self._n_final]["state"] in _FINAL_STATES:
            self._n_final_complete += doc_kind(docs[self._n_final]) == KIND_COMPLETE
            self._n_final += 1
        return self._n_final_complete + sum(doc_kind(d) == KIND_COMPLETE for d in docs[self._n_final:])

    # -------------------------------------------------------------- internals
    def _sync(self) -> None:
        if not self._stale:
            return
        self._by_step: dict[int, _Column] = {}
        self._reached: dict[int, _Column] = {}
        self._docs: list[dict] = []            # by slot: the trials that have reports
        self._steps: list[set[int]] = []       # by slot: the steps reported
        self._slots: dict[int, int] = {}       # id(doc) -> slot
        self._tid = np.empty(0, np.int64)      # by slot
        self._kind = np.empty(0, np.int8)      # by slot
        self._live: set[int] = set()           # slots whose kind may still change
        self._final_docs, self._n_final, self._n_final_complete = None, 0, 0
        self._stale = False
        for doc in self._trials.trials:
            for r in doc.get(REPORTS_FIELD) or ():
                slot = self._slot_of(doc)
                if int(r["step"]) not in self._steps[slot]:
                    self._index(slot, int(r["step"]), float(r["value"]))

    def _slot_of(self, doc: dict) -> int:
        slot = self._slots.get(id(doc))
        if slot is None:
            slot = self._slots[id(doc)] = len(self._docs)
            self._docs.append(doc)
            self._steps.append(set())
            self._tid = _grow(self._tid, slot + 1)
            self._kind = _grow(self._kind, slot + 1)
            self._tid[slot], self._kind[slot] = int(doc["tid"]), doc_kind(doc)
            self._live.add(slot)
        return slot

    def _index(self, slot: int, step: int, value: float) -> None:
        self._steps[slot].add(step)
        col = self._by_step.get(step)
        if col is None:
            col = self._by_step[step] = _Column()
        col.add(slot, value)
        for rung, rcol in self._reached.items():
            if rung <= step:
                rcol.add(slot, value)

    def _rows(self, col: _Column | None) -> StepValues:
        if col is None or col.n == 0:
            return StepValues.empty()
        for slot in list(self._live):  # usually just the running trial
            doc = self._docs[slot]
            self._kind[slot] = doc_kind(doc)
            if doc["state"] in _FINAL_STATES:
                self._live.discard(slot)
        slots = col.slot[:col.n]
        return StepValues(self._tid[slots], col.value[:col.n].copy(), self._kind[slots])


# ------------------------------------------------------------------------------ on a job queue
def _concat(a: StepValues, b: StepValues) -> StepValues:
    return StepValues(np.concatenate([a.tid, b.tid]), np.concatenate([a.value, b.value]),
                      np.concatenate([a.kind, b.kind]))


class QueueReportHistory:
    """:class:`ReportHistory` of one experiment on a :class:`~hpo_mongo.trials.queue.JobQueue`,
    as a worker keeps it across the trials it evaluates (the decision is made in the worker).

    Each ``at_step`` / ``reached`` answer is one ``queue.reports_at`` call (one indexed query on
    MongoDB), which leaves out the rows cached here: the rows of trials that had finished when
    they were fetched (those never change), per step and kind of question. Rows of running
    trials are fetched every time (their trial may finish or be requeued). ``completed_at_least``
    is asked until it says True, then answered from memory (it is monotone).

    A cache would outlive the experiment it describes if the experiment were deleted and created
    again under the same key: :meth:`start_trial` (called by the worker for each trial) makes the
    next question first read the experiment document and drop the caches when its ``_id`` (a new
    one for every document created) changed. A finished trial requeued by hand (``hpo-mongo requeue``) keeps its
    cached row until the worker restarts.

    ``call(fn, what)`` runs each queue call (a worker passes its outage retry).
    """

    def __init__(self, queue: Any, exp_key: str | None, *,
                 call: Callable[[Callable[[], Any], str], Any] | None = None):
        self._queue, self._exp_key = queue, exp_key
        self._call = call if call is not None else (lambda fn, what: fn())
        self._identity: Any = None
        self._check = True
        self._clear()

    def _clear(self) -> None:
        self._final: dict[tuple[bool, int], StepValues] = {}
        self._complete = 0  # the largest n answered True

    def start_trial(self) -> None:
        """A trial of this experiment starts: check the experiment's identity before the next answer."""
        self._check = True

    def _checked(self) -> None:
        if not self._check:
            return
        exp = self._call(lambda: self._queue.experiment(self._exp_key), "reading the experiment")
        identity = (exp or {}).get("_id")
        if identity != self._identity:
            self._clear()
            self._identity = identity
        self._check = False

    def _rows(self, step: int, reached: bool) -> StepValues:
        self._checked()
        key = (reached, int(step))
        cached = self._final.get(key)
        if cached is None:
            cached = StepValues.empty()
        got = self._call(lambda: self._queue.reports_at(self._exp_key, int(step), reached=reached,
                                                        exclude_tids=cached.tid.tolist()), "reading reports")
        fresh = StepValues(np.asarray(got["tid"], np.int64), np.asarray(got["value"], float),
                           np.asarray(got["kind"], np.int8))
        self._final[key] = _concat(cached, fresh.where(fresh.kind != KIND_RUNNING))
        return _concat(cached, fresh)

    def at_step(self, step: int) -> StepValues:
        return self._rows(step, False)

    def reached(self, step: int) -> StepValues:
        return self._rows(step, True)

    def completed_at_least(self, n: int) -> bool:
        if n <= self._complete:
            return True
        self._checked()
        if n <= self._complete:
            return True
        if self._call(lambda: self._queue.completed_at_least(self._exp_key, int(n)), "counting completed trials"):
            self._complete = int(n)
            return True
        return False
