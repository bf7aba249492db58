"""The driver ↔ store contract: what ``fmin`` does with a store while it runs.

``fmin`` opens one :class:`RunSession` per call (``trials.open_session(run)``) and drives it::

    session = trials.open_session(run)        # set up: check and publish the domain, ...
    try:
        while not done:
            session.tick()                    # housekeeping (heartbeat, leases, store checks)
            trials.refresh()
            ... stop rules, progress ...
            n = min(session.room(), session.queue_target(max_queue_len) - session.queued())
            ... suggest and store n trials (one batch) ...
            session.after_batch()             # settle a race with another driver on max_evals
            session.advance()                 # evaluate (in-process stores) or wait for workers
    finally:
        session.end(stop_reason)

Invariants: ``open_session`` does everything that can fail on bad input (an unpicklable
objective, an unreachable store) before anything is queued; ``advance`` returns after at most
one evaluation or one poll interval, so fmin's stop rules (timeout, early_stop_fn) are checked
between steps; ``end`` never raises for store errors (it logs them) so it cannot hide why fmin is
ending. A store evaluated in-process (``Trials``) is the only one whose session runs the objective.

fmin's stop rules read ``run.deadline`` and ``run.loss_threshold``: a store whose constructor
takes limits of its own (hyperopt's ``SparkTrials(timeout=, loss_threshold=)``) applies them
there when its session opens.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Protocol, runtime_checkable


@dataclasses.dataclass
class Run:
    """One ``fmin`` call, as the store's session sees it."""

    domain: Any  #: the :class:`hpo_mongo.domain.Domain` (objective + compiled space)
    algo: Callable | None = None
    max_evals: int = 0
    #: in-process stores: record an objective's exception as an ERROR trial and go on (else re-raise)
    catch_eval_exceptions: bool = False
    #: ``time.monotonic()`` at which fmin's ``timeout`` expires (None: no timeout)
    deadline: float | None = None
    #: the pruner deciding on intermediate reports (None: no pruning)
    pruner: Any = None
    #: fmin's ``loss_threshold`` (None: none)
    loss_threshold: float | None = None
    #: fmin's ``trials_save_file`` ("" = none): a store with a persistence of its own may resume from it
    save_file: str = ""

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


@runtime_checkable
class RunSession(Protocol):
    """A store's side of one fmin run (see the module docstring)."""

    def tick(self) -> None:
        """Housekeeping due now (cheap when nothing is due)."""
        ...

    def room(self) -> int:
        """How many more trials ``max_evals`` allows: ``max_evals`` minus every trial of the
        experiment, finished or pending, as of the last refresh (also those another driver queued)."""
        ...

    def after_batch(self) -> None:
        """A batch of suggestions was stored. Where several drivers share the experiment, two
        batches stored at once may pass ``max_evals``: the trials ranked (by tid) past it that this
        driver queued and no worker has claimed are withdrawn, so the experiment holds
        ``max_evals`` trials (more only if a worker claimed one first)."""
        ...

    def queue_target(self, max_queue_len: int) -> int:
        """How many NEW trials to keep queued (at least ``max_queue_len``)."""
        ...

    def queued(self) -> int:
        """How many of the experiment's trials are NEW now, in the store itself."""
        ...

    def advance(self) -> None:
        """Make progress: evaluate queued trials (in-process stores) or wait for workers."""
        ...

    def end(self, stop_reason: str | None) -> None:
        """fmin is returning (``stop_reason``) or raising (None): withdraw or leave the queued
        trials as documented by the store, record the outcome; never raises store errors."""
        ...
