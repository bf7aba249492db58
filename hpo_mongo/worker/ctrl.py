"""The ``ctrl`` an objective gets on a worker, in the worker process or in the trial's forked child.

:class:`WorkerCtrl` lives in the worker and acts on its queue: ``ctrl.checkpoint(result)`` is an
owner-conditioned write, ``ctrl.attachments`` collects what the objective attaches (stored with
the result, in the same conditioned write: :class:`AttemptAttachments`) and reads what the trial
already had, ``ctrl.trials`` is a read view of the experiment.

A forked child never uses the worker's connection. It gets :class:`ChildCtrl`, which sends each
request over the trial's pipe to the worker (:class:`TrialChannel`); the worker answers it with
:meth:`WorkerCtrl.answer` while it waits for the outcome. The same path carries the objective's
intermediate reports (``hpo_mongo.report``): the child's :class:`~hpo_mongo.reporting.ChannelReporter`
sends each one and waits; the worker's :class:`~hpo_mongo.reporting.StoreReporter` writes it
(owner-conditioned) and asks the pruner, so the child needs nothing but its pipe.
"""
from __future__ import annotations

import functools
import logging
from typing import Any, Callable, Iterator, Mapping, MutableMapping

from ..pruners import NopPruner
from ..reporting import ChannelReporter, Reporter, ReportingCtrl, StoreReporter, check_report
from ..trials.queue import JobQueue
from ..trials.queued import QueueTrialAttachments, QueueTrials
from ..trials.remote import QUEUE_METHODS, RemoteJobQueue
from ..trials.reports import QueueReportHistory
from .executor import ChildCtrlFactory, CollectingCtrl, TrialChannel, TrialCtrl

logger = logging.getLogger("hpo_mongo.worker")


def as_blob(name: str, value: Any) -> bytes:
    """``value`` as the bytes of attachment ``name`` (a str is UTF-8 encoded, as hyperopt stores it)."""
    if isinstance(value, str):
        return value.encode()
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"attachments are bytes; got {type(value).__name__} for {name!r}")
    return bytes(value)


class AttemptAttachments(MutableMapping):
    """``ctrl.attachments`` on a worker: what the objective writes is kept here and stored with the
    trial's result, in the same owner-conditioned write (so a worker that lost its trial stores
    nothing); reads see those values first, then the attachments the trial already had."""

    def __init__(self, stored: Callable[[], Mapping[str, bytes]]):
        self.pending: dict[str, bytes] = {}
        self._stored = stored

    def __getitem__(self, name: str) -> bytes:
        if name in self.pending:
            return self.pending[name]
        return self._stored()[name]

    def __setitem__(self, name: str, value: bytes) -> None:
        if not isinstance(name, str):
            raise TypeError(f"attachment names are str; got {type(name).__name__} {name!r}")
        self.pending[name] = as_blob(name, value)

    def __delitem__(self, name: str) -> None:
        if name in self.pending:
            del self.pending[name]
        elif name in self._stored():
            raise TypeError(f"attachment {name!r} was stored before this evaluation; a worker does not delete it "
                            f"(use trials.trial_attachments(trial) outside the worker)")
        else:
            raise KeyError(name)

    def _names(self) -> list[str]:
        return sorted(set(self.pending) | set(self._stored()))

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())


class _StoredAttachments(Mapping):
    """The attachments a trial already had, read by name (through the worker or its queue)."""

    def __init__(self, read: Callable[[str], bytes | None], names: Callable[[], list[str]]):
        self._read, self._names = read, names

    def __getitem__(self, name: str) -> bytes:
        blob = self._read(name)
        if blob is None:
            raise KeyError(name)
        return blob

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())


def default_reporter(queue: JobQueue, claim: Mapping[str, Any]) -> StoreReporter:
    """A claim's reporter without a pruner: each report written through ``queue``, never pruned."""
    return StoreReporter(claim["tid"], lambda step, value: queue.report(claim, step, value), NopPruner(),
                         QueueReportHistory(queue, claim.get("exp_key")))


class _AttemptCtrl(ReportingCtrl):
    """What the worker's and the child's ctrl share: the claimed trial, this attempt's attachments
    (collected here, written with the result), a view of the experiment and the reporter."""

    def __init__(self, claim: Mapping[str, Any], stored: Callable[[], Mapping[str, bytes]], reporter: Reporter,
                 view_queue: Callable[[], JobQueue]):
        self.current_trial = claim
        self._attachments = AttemptAttachments(stored)
        self._trials: QueueTrials | None = None
        self._reporter = reporter
        self._view_queue = view_queue

    @property
    def reporter(self) -> Reporter:
        return self._reporter

    @property
    def trials(self) -> QueueTrials:
        """A view of the experiment the trial belongs to (its writes are immediate, not tied to this evaluation)."""
        if self._trials is None:
            self._trials = QueueTrials(self._view_queue(), self.current_trial.get("exp_key"))
        return self._trials

    @property
    def attachments(self) -> AttemptAttachments:
        return self._attachments

    def collected_attachments(self) -> dict[str, bytes]:
        return dict(self._attachments.pending)


class WorkerCtrl(_AttemptCtrl, TrialCtrl):
    """The ctrl of one claimed trial in the worker process (see the module docstring).

    ``reporter`` records the objective's reports and decides on them (the worker builds it with
    the experiment's pruner; default: :func:`default_reporter`)."""

    #: the requests a child may send (:meth:`answer`)
    REQUESTS = frozenset({"checkpoint", "stored_attachment", "stored_attachment_names", "queue", "report"})

    def __init__(self, queue: JobQueue, claim: Mapping[str, Any], reporter: Reporter | None = None):
        self.queue = queue
        self.checkpoint_lost = False
        self._stored = QueueTrialAttachments(queue, claim)
        super().__init__(claim, lambda: self._stored,
                         reporter if reporter is not None else default_reporter(queue, claim), lambda: queue)

    def checkpoint(self, result: Mapping[str, Any] | None = None) -> None:
        if not self.queue.checkpoint(self.current_trial, None if result is None else dict(result)):
            self.checkpoint_lost = True
            logger.warning("checkpoint of trial %s ignored: this worker no longer owns it",
                           self.current_trial.get("tid"))

    # ---------------------------------------------------------------- the child's requests
    def child_ctrl_factory(self) -> ChildCtrlFactory:
        """Makes the ctrl the forked child uses instead of this one (picklable: the claim and the class)."""
        return functools.partial(ChildCtrl, claim=self.current_trial)

    def answer(self, name: str, args: tuple) -> Any:
        """Answer a request of the child (``name`` in :data:`REQUESTS`)."""
        if name not in self.REQUESTS:
            raise AttributeError(f"{name!r} is not a request a trial may send")
        if name == "checkpoint":
            return self.checkpoint(*args)
        if name == "stored_attachment":
            return self._stored.get(*args)
        if name == "stored_attachment_names":
            return list(self._stored)
        if name == "report":  # (step, value) from the child's ChannelReporter: the pruner's decision
            value, step = check_report(args[1], args[0])
            return self._reporter.report(value, step)
        method, call_args, call_kwargs = args
        if method not in QUEUE_METHODS:
            raise AttributeError(f"{method!r} is not a JobQueue method")
        return getattr(self.queue, method)(*call_args, **call_kwargs)


class ChildCtrl(_AttemptCtrl, CollectingCtrl):
    """The ctrl in the forked child: every request goes to the worker over the trial's pipe."""

    def __init__(self, channel: TrialChannel, claim: Mapping[str, Any]):
        self.channel = channel
        super().__init__(
            claim,
            lambda: _StoredAttachments(lambda name: channel.call("stored_attachment", name),
                                       lambda: channel.call("stored_attachment_names")),
            ChannelReporter(claim["tid"], lambda step, value: channel.call("report", step, value)),
            lambda: RemoteJobQueue(call=lambda name, args, kwargs: channel.call("queue", name, args, kwargs)))

    def checkpoint(self, result: Mapping[str, Any] | None = None) -> None:
        self.channel.call("checkpoint", None if result is None else dict(result))
