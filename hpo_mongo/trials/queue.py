"""``JobQueue``: the one contract between a trial store's data and everything that drives it.

The driver's run session, the worker loop and the inspection layer (``hpo_mongo.inspect`` and the
``hpo-mongo`` CLI) talk to trials only through this protocol. Implementations:
:class:`hpo_mongo.trials.memory_queue.MemoryJobQueue` (in memory; the local parallel mode and fast
tests), :class:`hpo_mongo.trials.mongo.queue.MongoJobQueue` (MongoDB), and
:class:`hpo_mongo.trials.remote.RemoteJobQueue` (a proxy of either one in another process, over a
pipe). One contract suite (tests/test_queue_contract.py) runs against all of them.

Words used throughout:

- **job**: a trial document (docs/schema.md) in the queue, identified by its ``_id`` (opaque,
  picklable) and by its ``tid`` (unique in the whole queue, across experiments, as in hyperopt).
- **claim**: the job a worker took, as returned by :meth:`JobQueue.claim`. Every later write of
  that worker is conditioned on the claim's ``{_id, owner, attempt}`` and on the job still being
  RUNNING: a worker whose job was requeued, cancelled, finished elsewhere or deleted matches
  nothing, gets ``False`` back and must write nothing more. Methods taking a claim read only
  :data:`CLAIM_KEYS` of it.
- **owner**: ``"host:pid"``, written on the jobs a worker process claims (hyperopt's field).
  **worker_id**: the owner plus a random suffix, the key of the worker's own document (so a
  restarted process with a recycled pid is a different worker).
- **lease**: a RUNNING job's ``heartbeat`` (else ``book_time``) plus its ``lease_timeout``; the
  rules are in :mod:`hpo_mongo.trials.leases`.
- **clock**: every date the queue writes comes from :meth:`JobQueue.now` (the server's clock for
  Mongo), never from the caller's.

Invariants every implementation keeps:

1. Each write to a job increments its ``version`` by one and stamps ``updated_at``; a job read
   later never has a smaller version. Returned documents are copies: mutating them changes
   nothing in the queue. The one exception is :meth:`JobQueue.report`, which only appends to
   the job's ``reports`` (see 6.).
2. States move NEW → RUNNING → DONE / ERROR / CANCEL, RUNNING → NEW (released or requeued), and
   NEW → CANCEL; only :meth:`JobQueue.requeue_unchanged` moves a finished job back to NEW.
3. A claim is atomic: two callers never claim the same job in the same attempt. ``attempt`` is
   incremented by the claim and by nothing else.
4. Conditioned writes (on a claim, or on a read ``{state, version}``) return ``False`` instead of
   raising when the condition no longer holds; losing a race is a value, not an error.
5. Every argument and return value is plain data (dicts, lists, numbers, strings, bytes, dates,
   job ids) so that a proxy can carry it across a process boundary.
6. A job's ``reports`` (:data:`REPORTS_FIELD`) are the intermediate values of its current
   attempt, ``[{"step": int, "value": float}, ...]`` in report order, one per step (the first
   value of a step wins; NaN and ±inf as reported). Every claim and every return to NEW empties
   them. They are left out of :meth:`JobQueue.changed` (the driver's incremental refresh), and a
   report neither bumps ``version`` nor stamps ``updated_at``, so a trial reporting many steps
   never makes the driver download it again; workers read them through the report queries
   (:meth:`JobQueue.reports_at`), ``trial`` and ``find(full=True)`` return them.

Errors: :class:`~hpo_mongo.exceptions.StoreUnavailable` when the queue cannot be reached (the
operation may or may not have happened; every method here is safe to retry except where noted),
:class:`~hpo_mongo.exceptions.DuplicateTrialError` for a reused tid, other
:class:`~hpo_mongo.exceptions.StoreError` for anything the queue refuses.
"""
from __future__ import annotations

import datetime as _dt
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence, runtime_checkable

from ..exceptions import InvalidParameterError
from .documents import REPORTS_FIELD  # noqa: F401 - part of the protocol's vocabulary (invariant 6)


class _AnyExperiment:
    """The type of :data:`ANY_EXPERIMENT` (a singleton that survives pickling)."""

    _instance: "_AnyExperiment | None" = None

    def __new__(cls) -> "_AnyExperiment":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __reduce__(self) -> str:
        return "ANY_EXPERIMENT"

    def __repr__(self) -> str:
        return "ANY_EXPERIMENT"


#: ``exp_key`` meaning "every experiment" (a worker started without ``--exp-key``);
#: ``None`` is a real key, the default experiment.
ANY_EXPERIMENT: Any = _AnyExperiment()

#: the fields listings return (:meth:`JobQueue.find` with ``full=False``): documents can be large
LIST_FIELDS = ("_id", "tid", "exp_key", "state", "result", "misc", "owner", "worker", "attempt",
               "book_time", "refresh_time", "start_time", "end_time", "heartbeat", "error", "updated_at",
               "version", "lease_timeout", "max_attempts", "requeues", "_attachments")

#: the key listings (``find(full=False)``) add: the latest report ``{step, value}`` of the current
#: attempt, or None
LAST_REPORT = "last_report"

#: the fields of a claim the queue reads (its identity, and what naming its attachment files needs)
CLAIM_KEYS = ("_id", "owner", "attempt", "tid", "exp_key", "_attachments")

#: how :meth:`JobQueue.find` may sort
SORT_KEYS = ("tid", "loss", "time")


def check_find_args(sort: str, limit: int | None) -> None:
    """Validate :meth:`JobQueue.find`'s ``sort`` and ``limit`` (every implementation calls this first)."""
    if sort not in SORT_KEYS:
        raise InvalidParameterError(f"sort must be one of {', '.join(SORT_KEYS)}; got {sort!r}")
    if limit is not None and limit < 0:
        raise InvalidParameterError(f"limit must be >= 0, got {limit}")


@runtime_checkable
class JobQueue(Protocol):
    """The operations on a queue of trial jobs (see the module docstring for words and invariants)."""

    def describe(self) -> str:
        """Where the queue lives, for messages (never a password)."""
        ...

    def outcome_check(self) -> Callable[[Mapping[str, Any], Mapping[str, Any]], None]:
        """A module-level function ``check(result, attachments)`` that raises
        :class:`~hpo_mongo.exceptions.InvalidResultError`, naming the key path and type, when this
        queue could not store that outcome. Workers run it where the objective ran, before
        reporting, so such a trial fails instead of the worker."""
        ...

    def prepare(self) -> None:
        """Create what the queue needs before jobs are queued (MongoDB: its indexes). The driver's
        call, never a worker's; idempotent, and cheap when everything exists."""
        ...

    def close(self) -> None:
        """Release what the queue holds (connections, for Mongo and the proxy); the caller that
        opened the queue calls it once it is done. Calling it again does nothing."""
        ...

    # ------------------------------------------------------------------ clock
    def now(self) -> _dt.datetime:
        """The queue's clock (tz-aware UTC): the time every stamp the queue writes comes from."""
        ...

    # ------------------------------------------------------------------ experiments
    def experiment(self, exp_key: str | None) -> dict | None:
        """The experiment's document (docs/schema.md ``experiments``), or None if it has none."""
        ...

    def save_experiment(self, exp_key: str | None, fields: Mapping[str, Any]) -> None:
        """Create or update the experiment's document: set each top-level field of ``fields``;
        ``created`` is stamped when the document is created, ``updated_at`` on every call."""
        ...

    def beat_driver(self, exp_key: str | None) -> bool:
        """Stamp ``driver.heartbeat`` (and ``updated_at``) on the experiment; False when its
        document does not exist (deleted, or the database was reset)."""
        ...

    def experiment_keys(self) -> list[str | None]:
        """Every exp_key with an experiment document or a job (None first, then sorted)."""
        ...

    def experiment_summaries(self) -> list[dict]:
        """One dict per experiment: ``exp_key, status, max_evals, algorithm, counts`` (as
        :meth:`count_by_state`), ``best_loss`` (lowest usable loss of a DONE ok job, or None),
        ``created``, ``last_activity`` (newest of the experiment's and its jobs' writes and the
        driver heartbeat), sorted as :meth:`experiment_keys`."""
        ...

    def delete_experiment(self, exp_key: str | None) -> dict:
        """Delete the experiment: its jobs, their attachments, its document, its attachments, and
        its domain payload unless another experiment uses the same one. Returns
        ``{"exp_key", "trials": n, "experiment": bool, "files": n}``."""
        ...

    # ------------------------------------------------------------------ blobs
    def put_domain(self, digest: str, blob: bytes, exp_key: str | None) -> None:
        """Store a packed domain payload under its content hash; a no-op when it is there."""
        ...

    def domain(self, digest: str) -> bytes | None:
        """The domain payload stored under ``digest``, or None."""
        ...

    def attachment(self, exp_key: str | None, name: str) -> bytes | None:
        """An experiment attachment (``trials.attachments[name]``), or None."""
        ...

    def set_attachment(self, exp_key: str | None, name: str, blob: bytes | None) -> None:
        """Store (``blob`` None: delete) an experiment attachment; readers never see the name
        missing while it is replaced."""
        ...

    def attachment_names(self, exp_key: str | None) -> list[str]:
        """The experiment's attachment names, sorted."""
        ...

    def trial_attachment(self, job_id: Any, name: str) -> bytes | None:
        """The attachment ``name`` of a job, as its ``_attachments`` references it, or None."""
        ...

    def trial_attachment_names(self, job_id: Any) -> list[str]:
        """The names a job's ``_attachments`` references, sorted."""
        ...

    def set_trial_attachment(self, job: Mapping[str, Any], name: str, blob: bytes | None) -> bool:
        """Store (``blob`` None: delete) a job's attachment and reference it from the job at once:
        a user's write from outside a worker (``trials.trial_attachments(doc)[name] = blob``), not
        conditioned on a claim; False only when the job does not exist. Workers attach through
        :meth:`finish` instead."""
        ...

    # ------------------------------------------------------------------ jobs: the driver
    def new_tids(self, n: int) -> list[int]:
        """``n`` consecutive fresh tids, larger than every tid allocated or reserved before.
        Not idempotent: a retried call may skip tids (never repeat them)."""
        ...

    def reserve_tids(self, above: int) -> None:
        """Make every later :meth:`new_tids` return tids larger than ``above``."""
        ...

    def last_tid(self) -> int | None:
        """The largest tid allocated or reserved so far, or None when the queue holds no counter
        (none allocated yet — the in-memory queue says -1 then — or the counter was lost with a
        reset database)."""
        ...

    def insert(self, docs: Sequence[Mapping[str, Any]]) -> list[Any]:
        """Queue NEW jobs built by ``documents.new_trial_doc`` (queue fields such as ``attempt``,
        ``requeues``, ``_attachments`` are added); returns their job ids in order. Raises
        :class:`DuplicateTrialError` when a tid exists already (the jobs before it were inserted).
        """
        ...

    def changed(self, exp_key: str | None, since: Any = None) -> tuple[list[dict], Any]:
        """``(jobs, cursor)``: the experiment's jobs written since ``since`` (every job when None),
        and the cursor to pass next time. A job may be returned again although unchanged; keep
        the highest ``version`` of each ``_id``. Deleted jobs are not reported (see
        :meth:`job_ids`)."""
        ...

    def versions(self, exp_key: str | None) -> dict[Any, int]:
        """``{job id: version}`` of every job of the experiment (to notice deleted or rolled back ones)."""
        ...

    def existing(self, job_ids: Iterable[Any]) -> list[Any]:
        """Those of ``job_ids`` that are still in the queue."""
        ...

    def restore(self, docs: Sequence[Mapping[str, Any]]) -> int:
        """Write back jobs the queue lost, or holds only in an older version (a lower ``version``):
        the same ``_id``, tid and content; idempotent. Returns how many were written. Raises
        :class:`DuplicateTrialError` when another job now holds one of their tids."""
        ...

    def adopt_domain(self, exp_key: str | None, digest: str) -> int:
        """Give the domain ``digest`` to the experiment's NEW jobs queued without one; how many."""
        ...

    def wait_for_changes(self, exp_key: Any, timeout: float) -> None:
        """Return after at most ``timeout`` seconds — earlier when a job (of ``exp_key``, or any)
        may have been written meanwhile, where the queue can tell (the in-memory queue, MongoDB
        with change streams); otherwise simply after ``timeout``. Never raises for an outage."""
        ...

    def count(self, exp_key: Any, states: Iterable[int] | None = None) -> int:
        """How many jobs of ``exp_key`` (:data:`ANY_EXPERIMENT`: all) are in ``states`` (None: any)."""
        ...

    def cancel_new(self, exp_key: str | None, job_ids: Iterable[Any] | None = None) -> int:
        """Move NEW jobs of the experiment (only those in ``job_ids`` if given) to CANCEL."""
        ...

    def delete_jobs(self, exp_key: str | None, job_ids: Iterable[Any] | None = None) -> int:
        """Delete jobs of the experiment (all, or those in ``job_ids``) and their attachments."""
        ...

    def withdraw_new(self, exp_key: str | None, job_ids: Iterable[Any]) -> list[Any]:
        """Delete those of ``job_ids`` that are still NEW (never claimed, so nothing else holds
        them); return the ids deleted. A claimed or finished job is left as it is."""
        ...

    # ------------------------------------------------------------------ jobs: the worker
    def claim(self, owner: str, *, exp_key: Any = ANY_EXPERIMENT, worker: Mapping[str, Any] | None = None,
              lease_timeout: float, max_attempts: int) -> dict | None:
        """Atomically move the oldest NEW job (lowest tid) of ``exp_key`` to RUNNING for ``owner``.

        Sets ``owner``, ``worker``, ``book_time`` / ``start_time`` / ``heartbeat`` (the queue's
        clock), records ``lease_timeout`` and ``max_attempts`` (the rules every requeuer applies
        to this job), increments ``attempt``; returns the job after the update, or None. Not
        idempotent: a retried call after a lost reply may leave a claim behind, which the lease
        rules return to NEW.
        """
        ...

    def renew_lease(self, claim: Mapping[str, Any]) -> bool:
        """Stamp the claim's ``heartbeat``. False when the claim was lost."""
        ...

    def checkpoint(self, claim: Mapping[str, Any], result: Mapping[str, Any] | None = None) -> bool:
        """Record an intermediate ``result`` (``ctrl.checkpoint``) on the claim. False when lost."""
        ...

    def finish(self, claim: Mapping[str, Any], state: int, result: Mapping[str, Any],
               error: Mapping[str, Any] | None = None,
               attachments: Mapping[str, bytes] | None = None) -> bool:
        """Write a claim's outcome (DONE or ERROR) and its attachments in one conditioned step.

        The attachments are stored under names of this attempt and become the job's
        ``_attachments`` in the same write as the result, so a finished job's attachments always
        come from the attempt that wrote its result (references written outside a worker stay,
        those of earlier attempts go). False (and nothing of this attempt left behind) when the
        claim was lost. Retrying after a lost reply is safe: it returns True when the first call
        landed. Raises :class:`~hpo_mongo.exceptions.InvalidResultError` when the store refuses
        the outcome itself (too large, not encodable): nothing was written, the claim still holds.
        """
        ...

    def release(self, claim: Mapping[str, Any], *, count_as_lost: bool = False) -> bool:
        """Give a claim back: the job returns to NEW for another worker (``requeues`` + 1 when
        ``count_as_lost``). False when it was already lost."""
        ...

    def requeue_stale(self, exp_key: Any = ANY_EXPERIMENT, *, default_lease: float,
                      default_max_attempts: int) -> list[dict]:
        """Apply the lease rules (:mod:`hpo_mongo.trials.leases`) to RUNNING jobs of ``exp_key``.

        Each job whose lease expired goes back to NEW (``requeues`` + 1), or to ERROR "lost N
        times" at its ``max_attempts``-th loss; each change is conditioned on the expired lease
        it saw, so a lease renewed meanwhile wins. Returns one event per change:
        ``{"tid", "exp_key", "owner", "outcome": "requeued" | "failed", "message"}``.
        """
        ...

    # ------------------------------------------------------------------ reports (pruning)
    def report(self, claim: Mapping[str, Any], step: int, value: float) -> bool:
        """Append ``{step, value}`` to the claim's reports in one write conditioned on the claim
        (invariant 6: no ``version`` bump, no ``updated_at``). A step the attempt reported already
        keeps its first value (nothing is written, True: so a retry after a lost reply is safe).
        False when the claim was lost: nothing is written, and the worker's trial must stop."""
        ...

    def reports_at(self, exp_key: str | None, step: int, *, reached: bool = False,
                   exclude_tids: Sequence[int] = ()) -> dict[str, list]:
        """One value per job of the experiment whose current attempt reported ``step``
        (``reached``: a step ``>= step``, and then the value of the first such report in report
        order), leaving out the jobs whose tid is in ``exclude_tids`` (rows a caller holds
        already). Returns parallel lists ``{"tid": [int], "value": [float], "kind": [int]}``,
        in any order; ``kind`` is :func:`hpo_mongo.trials.reports.trial_kind` of the job now.
        One query on the ``(exp_key, reports.step)`` index for MongoDB."""
        ...

    def completed_at_least(self, exp_key: str | None, n: int) -> bool:
        """Whether at least ``n`` jobs of the experiment are DONE with status ok (``n <= 0``: True);
        counts with a limit of ``n``."""
        ...

    # ------------------------------------------------------------------ workers
    def beat_worker(self, worker_id: str, fields: Mapping[str, Any]) -> None:
        """Create or update a worker's document: set ``fields`` (``started`` only when it is
        created) and stamp ``heartbeat``. A worker leaving calls it with ``status="exited"``."""
        ...

    def workers(self, *, include_exited: bool = False) -> list[dict]:
        """Every worker document not marked exited (liveness: ``leases.worker_is_live``), sorted by
        ``host``, ``pid``; with ``include_exited`` the exited ones too (so that a reader tells "no
        worker ever registered here", e.g. hyperopt's own workers, from "every worker left")."""
        ...

    # ------------------------------------------------------------------ inspection and repairs
    def find(self, exp_key: str | None, *, states: Iterable[int] | None = None, sort: str = "tid",
             limit: int | None = None, reverse: bool = False, full: bool = False) -> list[dict]:
        """The experiment's jobs in ``states`` (None: all), sorted by ``tid``, ``loss`` (usable
        losses first, ascending unless ``reverse``; the rest by tid) or ``time`` (claim time,
        unclaimed last), at most ``limit``. ``full=False`` returns only :data:`LIST_FIELDS` and
        :data:`LAST_REPORT` (the reports left out)."""
        ...

    def trial(self, tid: int, exp_key: Any = ANY_EXPERIMENT) -> dict | None:
        """The whole job with this tid (in ``exp_key``, or anywhere: tids are unique), or None."""
        ...

    def count_by_state(self, exp_key: Any = ANY_EXPERIMENT) -> dict[str, int]:
        """``{new, running, done, error, cancel, total, pruned}`` of ``exp_key`` (:data:`ANY_EXPERIMENT`:
        all); ``pruned`` counts the DONE jobs whose status is pruned (they are in ``done`` too)."""
        ...

    def finished_since(self, exp_key: str | None, since: _dt.datetime) -> int:
        """How many jobs of the experiment ended (DONE / ERROR / CANCEL) at or after ``since``."""
        ...

    def first_claim(self, exp_key: str | None) -> _dt.datetime | None:
        """The earliest ``book_time`` among the experiment's jobs, or None."""
        ...

    def requeue_unchanged(self, doc: Mapping[str, Any], *, lost_lease: bool = False) -> bool:
        """Return a job read as ``doc`` (ERROR, CANCEL or RUNNING) to NEW with its claim and
        outcome cleared, if its ``{state, version}`` are unchanged since it was read
        (``requeues`` + 1 with ``lost_lease``). False when it changed meanwhile."""
        ...

    def cancel_unchanged(self, doc: Mapping[str, Any], *, failure: str, end_time: _dt.datetime | None = None) -> bool:
        """Move a NEW or RUNNING job read as ``doc`` to CANCEL (status fail, ``failure``), its
        owner cleared so a running worker's writes no longer match, if unchanged since read."""
        ...
