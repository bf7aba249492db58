"""``report(value, step)`` and ``should_prune()``: intermediate values from inside an objective.

Whoever evaluates a trial (fmin in-process, a worker, a forked child) sets a :class:`Reporter`
for it with :func:`reporting` (a context variable, so only code running in that evaluation's
context sees it) and runs the objective through :func:`evaluate_trial`, which records a
:class:`~hpo_mongo.exceptions.TrialPruned` raised by the objective as a pruned result.
:func:`report` validates its input here, once, and hands it to the current reporter, which
stores it and asks the pruner.

:class:`LocalReporter` is the in-process implementation (in-memory ``Trials``),
:class:`StoreReporter` a worker's (each report one owner-conditioned write to its job queue, the
pruner asked in the worker), :class:`ChannelReporter` a forked child's (each report sent to its
worker, which answers with the decision). Each keeps the trial's own reports in a
:class:`ReportLedger`, which applies the repeated-step rule before anything is sent or stored.

Value rules: a real number (numpy scalars, size-1 arrays and ``__float__`` objects count); NaN
and ±inf are accepted and stored (a diverged loss is something to prune, not an error): NaN is
worse than any value, so pruners stop a trial whose reports are NaN. ``step`` is an int >= 0.
Anything else raises :class:`~hpo_mongo.exceptions.InvalidParameterError`, which fails the trial.
A step reported twice in one attempt keeps its first value (the repeat is ignored with a warning).

Threads started by the objective do not inherit the context: run them with
``contextvars.copy_context().run`` to report from them.
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
from typing import Any, Callable, Iterator, Mapping, Protocol, runtime_checkable

import numpy as np

from . import _validation as v
from .exceptions import InvalidParameterError, NoCurrentTrial, TrialNotOwned, TrialPruned
from .pruners.base import BasePruner
from .results import as_number, pruned_result
from .trials.reports import MemoryReports, ReportHistory, TrialReports

logger = logging.getLogger("hpo_mongo.report")


@runtime_checkable
class Reporter(Protocol):
    """The running trial's link to its store and pruner (one per trial attempt)."""

    def report(self, value: float, step: int) -> bool:
        """Record ``value`` at ``step`` (already validated) and return the pruner's decision
        (True = stop). A repeated step stores nothing and returns the previous decision. May
        raise :class:`~hpo_mongo.exceptions.TrialNotOwned` when the store refuses the write
        (the trial was requeued): that stops the objective and nothing else is written."""

    @property
    def should_prune(self) -> bool:
        """The pruner's decision on the latest report (False before any report)."""

    @property
    def reports(self) -> TrialReports:
        """The trial's own reports in this attempt, in report order."""


class ReportLedger:
    """A trial's own reports as its reporter keeps them: the repeated-step rule and the decision."""

    def __init__(self, tid: int):
        self.tid = int(tid)
        self._steps: list[int] = []
        self._values: list[float] = []
        self._seen: set[int] = set()
        self.decision = False

    def add(self, step: int, value: float) -> bool:
        """Append the report; False (and a warning) if ``step`` was already reported."""
        if step in self._seen:
            logger.warning("trial %s reported step %d again: the repeat (value %r) is ignored", self.tid, step, value)
            return False
        self._seen.add(step)
        self._steps.append(step)
        self._values.append(value)
        return True

    @property
    def reports(self) -> TrialReports:
        return TrialReports(self.tid, np.asarray(self._steps, dtype=np.int64), np.asarray(self._values, dtype=float))


class LedgerReporter:
    """The part every :class:`Reporter` here shares: the trial's :class:`ReportLedger` (repeated
    steps answered with the previous decision) and :meth:`decide`, each implementation's step."""

    def __init__(self, tid: int):
        self.ledger = ReportLedger(tid)

    def decide(self, value: float, step: int) -> bool:
        """Store a new report (already in the ledger) and return the pruner's decision."""
        raise NotImplementedError

    def report(self, value: float, step: int) -> bool:
        if self.ledger.add(step, value):
            self.ledger.decision = bool(self.decide(value, step))
        return self.ledger.decision

    @property
    def should_prune(self) -> bool:
        return self.ledger.decision

    @property
    def reports(self) -> TrialReports:
        return self.ledger.reports


class LocalReporter(LedgerReporter):
    """In-process :class:`Reporter` for an in-memory ``Trials``: writes ``doc["reports"]`` through
    :class:`~hpo_mongo.trials.reports.MemoryReports` and asks ``pruner`` right away."""

    def __init__(self, store: MemoryReports, doc: dict, pruner: BasePruner):
        super().__init__(doc["tid"])
        self.store, self.doc, self.pruner = store, doc, pruner

    def decide(self, value: float, step: int) -> bool:
        self.store.record(self.doc, step, value)
        return self.pruner.prune(self.ledger.reports, self.store)


class StoreReporter(LedgerReporter):
    """A worker's :class:`Reporter`: ``record(step, value) -> bool`` writes the report (one
    owner-conditioned write, ``JobQueue.report``), then ``pruner`` decides from ``history`` right
    here. A refused write (the worker lost the trial) calls ``on_lost()`` and raises
    :class:`~hpo_mongo.exceptions.TrialNotOwned`: the objective stops and nothing else is written."""

    def __init__(self, tid: int, record: Callable[[int, float], bool], pruner: BasePruner,
                 history: ReportHistory, on_lost: Callable[[], None] | None = None):
        super().__init__(tid)
        self.record, self.pruner, self.history, self.on_lost = record, pruner, history, on_lost

    def decide(self, value: float, step: int) -> bool:
        if not self.record(step, value):
            if self.on_lost is not None:
                self.on_lost()
            raise TrialNotOwned(f"the report of trial {self.ledger.tid} at step {step} was refused: this worker no "
                                f"longer owns the trial (requeued, cancelled or deleted); its evaluation stops")
        return self.pruner.prune(self.ledger.reports, self.history)


class ChannelReporter(LedgerReporter):
    """A forked child's :class:`Reporter`: ``send(step, value) -> bool`` hands each new report to
    the trial's worker (which stores it and asks the pruner) and returns its decision; an error
    the worker raises (TrialNotOwned) is raised here, in the objective."""

    def __init__(self, tid: int, send: Callable[[int, float], bool]):
        super().__init__(tid)
        self.send = send

    def decide(self, value: float, step: int) -> bool:
        return self.send(step, value)


_CURRENT: contextvars.ContextVar[Reporter | None] = contextvars.ContextVar("hpo_mongo_reporter", default=None)


@contextlib.contextmanager
def reporting(reporter: Reporter) -> Iterator[Reporter]:
    """Make ``reporter`` the current trial's reporter for the duration of the block."""
    token = _CURRENT.set(reporter)
    try:
        yield reporter
    finally:
        _CURRENT.reset(token)


def current_reporter() -> Reporter:
    """The current trial's reporter; :class:`~hpo_mongo.exceptions.NoCurrentTrial` outside a trial."""
    reporter = _CURRENT.get()
    if reporter is None:
        raise NoCurrentTrial(
            "report() / should_prune() were called outside a trial: they work inside an objective that "
            "fmin evaluates (in-process Trials or an hpo-mongo-worker)")
    return reporter


def check_report(value: Any, step: Any) -> tuple[float, int]:
    """``(float value, int step)`` by the value rules (module docstring), else InvalidParameterError."""
    v.validate({"step": (step, [v.Interval(int, 0, None)])}, "report")
    number, why = as_number(value, "value")
    if number is None:  # not a number: ``why`` says so
        raise InvalidParameterError(
            f"The 'value' parameter of report must be a real number (NaN and inf are accepted): {why}.")
    return number, int(step)


def report(value: Any, step: Any, *, raise_pruned: bool = True) -> None:
    """Record an intermediate ``value`` (lower is better) of the current trial at ``step``.

    Raises :class:`~hpo_mongo.exceptions.TrialPruned` when the pruner says stop, unless
    ``raise_pruned=False`` (then check :func:`should_prune`, clean up and raise it yourself).
    """
    reporter = current_reporter()
    value, step = check_report(value, step)
    if reporter.report(value, step) and raise_pruned:
        raise TrialPruned(f"trial pruned at step {step} (value {value:.6g})")


def should_prune() -> bool:
    """Whether the pruner said stop after the current trial's latest report."""
    return bool(current_reporter().should_prune)


class ReportingCtrl:
    """``ctrl.report(...)`` / ``ctrl.should_prune()``: :func:`report` and :func:`should_prune` for
    ``pass_expr_memo_ctrl`` objectives (every ctrl an objective gets has them)."""

    def report(self, value: Any, step: Any, *, raise_pruned: bool = True) -> None:
        """:func:`hpo_mongo.report` for ``pass_expr_memo_ctrl`` objectives."""
        report(value, step, raise_pruned=raise_pruned)

    def should_prune(self) -> bool:
        """:func:`hpo_mongo.should_prune` for ``pass_expr_memo_ctrl`` objectives."""
        return should_prune()


def evaluate_trial(domain: Any, vals: Mapping[str, Any], ctrl: Any, reporter: Reporter) -> tuple[dict, dict]:
    """``domain.evaluate(vals, ctrl)`` with ``reporter`` current; a :class:`TrialPruned` from the
    objective becomes the pruned result (:func:`hpo_mongo.results.pruned_result`). Other
    exceptions propagate, as from ``Domain.evaluate``."""
    with reporting(reporter):
        try:
            return domain.evaluate(vals, ctrl)
        except TrialPruned:
            own = reporter.reports
            return pruned_result(own.last_step, own.last_value), {}
