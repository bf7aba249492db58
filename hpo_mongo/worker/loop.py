"""The worker: claim a NEW trial, evaluate it, report the outcome; repeat.

The worker talks only to a :class:`~hpo_mongo.trials.queue.JobQueue` (MongoDB for
``hpo-mongo-worker``, the driver's in-memory queue for ``ParallelTrials``). Each step is one
method:

- :meth:`Worker.claim` — the queue's atomic NEW → RUNNING (oldest tid first), recording this
  worker's lease rules (``lease_timeout``, ``max_attempts``) on the trial;
- :meth:`Worker.run_trial` — loads the domain (by content hash, cached) and evaluates the trial
  with the :class:`~hpo_mongo.worker.executor.Executor` (a forked child by default); the
  objective's ``report(value, step)`` calls are written here, each one conditioned on the claim,
  and decided here by the pruner stored with the domain (:meth:`Worker.reporter`);
- :meth:`Worker.report` — ``queue.finish``: the outcome and the attachments in one write
  conditioned on the claim; a trial taken away meanwhile is logged and nothing of it is kept.

Stopping: ``max_jobs`` trials evaluated, ``reserve_timeout`` seconds without finding a trial
(0 = wait forever), ``last_job_timeout`` seconds since start (no new claim after it), or
``stop()`` (signals) → exit code 0; ``max_consecutive_failures`` ERROR trials in a row → 1;
the store unreachable longer than ``max_disconnect`` → 3. An exception raised by the objective
(or a domain that cannot be loaded) makes the trial ERROR with type, message and traceback, and
the worker goes on.

Leases and robustness:

- a heartbeat thread updates the worker's document and renews the lease of the running trial
  every ``heartbeat_interval``; a worker that finds its lease gone (or whose report is refused)
  stops the evaluation and writes nothing;
- idle workers (and the driver) apply the lease rules (:mod:`hpo_mongo.trials.leases`) to the
  trials they serve;
- trials run in a forked child by default: crashes, timeouts and memory blow-ups fail the trial,
  not the worker, and every process a trial started ends with it;
- SIGTERM/SIGINT (:meth:`Worker.on_signal`): stop claiming, give the running trial
  ``grace_period`` seconds, then release it back to NEW; a second signal releases at once; exit 0;
- outages: every call is retried with the one backoff policy (:mod:`hpo_mongo.trials.outage`)
  on one outage clock; after ``max_disconnect`` seconds the worker exits 3.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import random
import socket
import threading
import time
from typing import Any, Callable, Mapping

from .._version import __version__
from ..domain import Domain
from ..exceptions import InvalidParameterError, InvalidResultError, InvalidTrial, ObjectiveLoadError
from ..pruners import NopPruner
from ..reporting import StoreReporter
from ..trials import leases
from ..trials.documents import JOB_STATE_DONE, JOB_STATE_ERROR, utcnow
from ..trials.outage import Disconnected, Outage, retry
from ..trials.queue import ANY_EXPERIMENT, JobQueue
from ..trials.queued import serving
from ..trials.reports import QueueReportHistory
from .ctrl import WorkerCtrl
from .executor import Executor, Outcome, run_trial

logger = logging.getLogger("hpo_mongo.worker")

#: the shortest wait between two claims that found nothing (seconds); it doubles while the queue stays
#: empty, up to ``--poll-interval``
MIN_IDLE_POLL = 0.01

EXIT_OK = 0
EXIT_MAX_FAILURES = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


def owner_id(host: str | None = None, pid: int | None = None) -> str:
    """``"host:pid"`` — the ``owner`` a worker process writes on the trials it claims."""
    return f"{host or socket.gethostname()}:{pid if pid is not None else os.getpid()}"


@dataclasses.dataclass
class WorkerConfig:
    """The worker's options: the flags of ``hpo-mongo-worker`` (docs/worker.md), checked here."""

    exp_key: Any = ANY_EXPERIMENT  #: ANY_EXPERIMENT = serve every experiment; None = the default one
    poll_interval: float = 1.0
    max_jobs: int | None = None
    max_consecutive_failures: int = 0  #: 0 = never stop for failures
    reserve_timeout: float = 0.0  #: 0 = wait forever
    last_job_timeout: float | None = None
    workdir: str | None = None
    secret: bytes | None = None
    max_disconnect: float = 300.0
    heartbeat_interval: float = leases.DEFAULT_HEARTBEAT_INTERVAL
    lease_timeout: float | None = None  #: None = leases.LEASE_PER_HEARTBEAT x heartbeat_interval
    max_attempts: int = leases.DEFAULT_MAX_ATTEMPTS
    subprocess: bool = True  #: False = --no-subprocess (evaluate in the worker process)
    trial_timeout: float | None = None
    grace_period: float = 30.0

    def __post_init__(self) -> None:
        if self.lease_timeout is not None and self.lease_timeout <= self.heartbeat_interval:
            raise InvalidParameterError(
                f"--lease-timeout ({self.lease_timeout:g}s) must be longer than --heartbeat-interval "
                f"({self.heartbeat_interval:g}s); use at least 5x the interval so a busy machine does not cause "
                f"spurious requeues")
        if self.workdir:
            self.workdir = os.path.abspath(self.workdir)

    @property
    def lease(self) -> float:
        """The lease in effect, recorded on the trials this worker claims (seconds)."""
        if self.lease_timeout:
            return float(self.lease_timeout)
        return leases.default_lease_timeout(self.heartbeat_interval)


class DomainCache:
    """Loaded domains by content hash (a worker serving several experiments keeps each one)."""

    def __init__(self, queue: JobQueue, secret: bytes | None = None, max_size: int = 16):
        self.queue, self.secret, self.max_size = queue, secret, max_size
        self._cache: dict[str, Any] = {}

    def domain_hash(self, doc: Mapping[str, Any]) -> str:
        digest = doc.get("domain_hash")
        if digest:
            return digest
        exp = self.queue.experiment(doc.get("exp_key")) or {}
        if not exp.get("domain_hash"):
            raise ObjectiveLoadError(
                f"trial {doc.get('tid')} (exp_key {doc.get('exp_key')!r}) has no domain_hash and its experiment "
                f"has no stored domain: it was not queued by fmin")
        return exp["domain_hash"]

    def get(self, doc: Mapping[str, Any]) -> Any:
        """The Domain of this trial; raises :class:`ObjectiveLoadError` (with versions) if unusable."""
        from ..payload import loads_domain, unpack_payload
        digest = self.domain_hash(doc)
        if digest in self._cache:
            return self._cache[digest]
        blob = self.queue.domain(digest)
        if blob is None:
            raise ObjectiveLoadError(f"the domain payload {digest} of trial {doc.get('tid')} is missing from "
                                     f"{self.queue.describe()}; was the experiment deleted?")
        raw, meta = unpack_payload(blob, self.secret)
        with serving(self.queue, self.secret):  # a store the objective references uses this worker's queue
            domain = loads_domain(raw, meta)
        if len(self._cache) >= self.max_size:
            self._cache.pop(next(iter(self._cache)))
        self._cache[digest] = domain
        return domain


def trial_workdir(doc: Mapping[str, Any], workdir: str | None, *, confine_to: str | None = None) -> str | None:
    """Where a trial runs: ``--workdir`` if given, else the trial's ``misc.workdir``, else the cwd (None).

    ``confine_to`` (a worker with a secret: the directory it was started in): ``misc.workdir``,
    resolved with realpath (a relative one against that directory), must lie inside it, since any
    writer of the store can set it; raises :class:`InvalidTrial` otherwise. Without ``confine_to``,
    hyperopt's semantics: any directory (``MongoTrials(workdir="/abs")``).
    """
    if workdir:
        return workdir
    wanted = (doc.get("misc") or {}).get("workdir") or None
    if wanted is None or confine_to is None:
        return wanted
    if not isinstance(wanted, str):
        raise InvalidTrial(f"trial {doc.get('tid')}: misc.workdir must be a string, got {type(wanted).__name__}")
    base = os.path.realpath(confine_to)
    real = os.path.realpath(os.path.join(base, wanted))
    if os.path.commonpath([base, real]) != base:
        raise InvalidTrial(
            f"trial {doc.get('tid')}: misc.workdir {wanted!r} resolves to {real!r}, outside {base!r}; a worker "
            f"with a secret runs trials only inside --workdir or the directory it was started in "
            f"(see docs/security.md)")
    return real


def load_domain(doc: Mapping[str, Any], get: Callable[[Mapping], Any]) -> tuple[Any, Outcome | None]:
    """``(domain, None)``, or ``(None, ERROR outcome)`` when the trial's domain cannot be loaded
    (missing module, version mismatch, bad signature: nothing is executed)."""
    try:
        return get(doc), None
    except Exception as e:  # noqa: BLE001 - ObjectiveLoadError, and anything unpickling raised
        if not isinstance(e, ObjectiveLoadError):
            e = ObjectiveLoadError(f"cannot load the objective: {type(e).__name__}: {e}")
        logger.error("trial %s: %s", doc.get("tid"), e)
        return None, Outcome.from_exception(e)


def evaluate_claimed_trial(doc: Mapping[str, Any], domains: DomainCache | Callable[[Mapping], Any], *,
                           ctrl: Any = None, workdir: str | None = None,
                           check: Callable[[Mapping, Mapping], None] | None = None) -> Outcome:
    """Evaluate one claimed trial document in this process; never raises for the objective's (or
    the domain's) errors (hyperopt's ``MongoWorker.run_one`` without the store writes).

    ``domains`` is a :class:`DomainCache` or a function ``doc -> Domain``. Loading failures
    (missing module, version mismatch, bad signature) give an ERROR outcome whose message names
    the missing module and both sides' python / cloudpickle versions.
    """
    domain, failed = load_domain(doc, domains.get if isinstance(domains, DomainCache) else domains)
    if failed is not None:
        return failed
    out = run_trial(domain, doc["misc"]["vals"], subprocess=False, ctrl=ctrl, workdir=trial_workdir(doc, workdir),
                    check=check)
    if out.error is not None:
        logger.error("trial %s failed: %s: %s", doc.get("tid"), out.error.get("type"), out.error.get("message"))
    return out


class Worker:
    """One worker process's loop (see the module docstring). ``run()`` returns the exit code.

    Identity: ``owner`` (``host:pid``) is written on the trials it claims; ``worker_id`` (the owner
    plus a random suffix) keys its own document in the queue's worker list.
    """

    def __init__(self, queue: JobQueue, config: WorkerConfig | None = None, *, owner: str | None = None):
        self.queue = queue
        self.config = config or WorkerConfig()
        self.owner = owner or owner_id()
        self.worker_info = {"host": socket.gethostname(), "pid": os.getpid()}
        self.worker_id = f"{self.owner}:{os.urandom(4).hex()}"
        self.domains = DomainCache(queue, self.config.secret)
        self.outage = Outage(self.config.max_disconnect, limit_name="--max-disconnect", logger=logger)
        self.executor = Executor(subprocess=self.config.subprocess, timeout=self.config.trial_timeout,
                                 check=queue.outcome_check())
        # with a secret, misc.workdir (anyone with write access sets it) must stay inside the start directory
        self._confine_to = os.getcwd() if self.config.secret and not self.config.workdir else None
        self.n_done = 0
        self.consecutive_failures = 0
        self.current: dict | None = None
        self.status = "idle"
        self._stop = threading.Event()
        self._cancel = threading.Event()       # stops the running evaluation (grace expired, 2nd signal, lease lost)
        self._lease_lost = threading.Event()
        self._lease_lock = threading.Lock()
        self._leased: dict | None = None       # the trial whose lease the heartbeat renews
        self._finishing = False
        self._grace_timer: threading.Timer | None = None
        self._release_reason = "stop requested"
        self._release_level = logging.WARNING  # INFO when the starting process ordered it (release_now)
        self._started = time.monotonic()
        self._started_at = utcnow()
        self._last_activity = self._started
        self._next_requeue = 0.0
        self._idle = 0.0  # the current wait between empty claims (see _idle_delay)
        self._heartbeat: Any = None
        self._histories: dict[Any, QueueReportHistory] = {}  # per exp_key: what its pruner reads

    # ---------------------------------------------------------------- store access with outage handling
    def _store(self, fn: Callable[[], Any], what: str, *, abort: Callable[[], bool] | None = None) -> Any:
        """``fn()`` retried across outages on this worker's outage clock; :class:`Disconnected` once
        it lasted ``max_disconnect``; None without calling again if ``abort()`` becomes true."""
        return retry(fn, what=what, outage=self.outage, abort=abort)

    # ---------------------------------------------------------------- heartbeat (background thread)
    def _worker_fields(self) -> dict:
        cur = self.current
        c = self.config
        return {"host": self.worker_info["host"], "pid": self.worker_info["pid"], "owner": self.owner,
                "version": __version__, "started": self._started_at,
                "current": None if cur is None else {"tid": cur.get("tid"), "exp_key": cur.get("exp_key"),
                                                     "job_id": cur.get("_id")},
                "exp_key": None if c.exp_key is ANY_EXPERIMENT else c.exp_key,
                "serves_all": c.exp_key is ANY_EXPERIMENT,
                "status": self.status, "n_done": self.n_done,
                "heartbeat_interval": c.heartbeat_interval, "lease_timeout": c.lease}

    def beat(self) -> None:
        """Update this worker's document and renew the running trial's lease (one heartbeat)."""
        self.queue.beat_worker(self.worker_id, self._worker_fields())
        with self._lease_lock:
            doc = self._leased
            if doc is None or self._lease_lost.is_set():
                return
            if self.queue.renew_lease(doc) or self._finishing:
                return
        self.lose_trial(doc, "this worker lost its lease (the trial was requeued, cancelled or finished elsewhere)")

    def lose_trial(self, doc: Mapping[str, Any], why: str) -> None:
        """The store refused a write of the running trial ``doc`` (its lease renewal or a report):
        stop its evaluation; nothing more of it is written (the trial is someone else's now)."""
        with self._lease_lock:
            if self._lease_lost.is_set() or self._leased is not doc:
                return
            self._lease_lost.set()
        logger.warning("trial %s (attempt %s): %s; stopping its evaluation, nothing will be written",
                       doc.get("tid"), doc.get("attempt"), why)
        self._cancel.set()
        self.executor.release()

    # ---------------------------------------------------------------- steps
    def claim(self) -> dict | None:
        """Claim the oldest NEW trial of the served experiment(s); None if there is none."""
        c = self.config
        return self.queue.claim(self.owner, exp_key=c.exp_key, worker=self.worker_info, lease_timeout=c.lease,
                                max_attempts=c.max_attempts)

    def requeue_stale(self) -> list[dict]:
        """Apply the lease rules to the served experiment(s); this worker's settings are only the
        defaults for trials that record none."""
        c = self.config
        events = self.queue.requeue_stale(c.exp_key, default_lease=c.lease, default_max_attempts=c.max_attempts)
        leases.log_events(events, logger)
        return events

    def _maybe_requeue(self) -> None:
        now = time.monotonic()
        if now < self._next_requeue:
            return
        every = max(self.config.heartbeat_interval, self.config.lease / 3.0)
        self._next_requeue = now + every * (0.75 + 0.5 * random.random())
        self._store(self.requeue_stale, "requeue stale trials", abort=self._stop.is_set)

    def run_trial(self, doc: dict) -> Outcome | None:
        """Evaluate a claimed trial (in a forked child unless ``subprocess=False``); None if the
        evaluation was stopped (grace period expired, second signal, lease lost)."""
        try:
            workdir = trial_workdir(doc, self.config.workdir, confine_to=self._confine_to)
        except InvalidTrial as e:
            logger.error("trial %s: %s", doc.get("tid"), e)
            return Outcome.from_exception(e)
        domain, failed = load_domain(doc, self.domains.get)
        if failed is not None:
            return failed
        ctrl = WorkerCtrl(self.queue, doc, self.reporter(doc, domain))
        out = self.executor.run(domain, doc["misc"]["vals"], ctrl=ctrl, workdir=workdir, cancel_event=self._cancel)
        if out.cancelled:
            return None
        if out.error is not None:
            logger.error("trial %s failed: %s: %s", doc.get("tid"), out.error.get("type"), out.error.get("message"))
        return out

    def reporter(self, doc: dict, domain: Any) -> StoreReporter:
        """The claimed trial's reporter: each report one write conditioned on the claim (retried
        across outages), decided by the pruner stored with ``domain`` from the experiment's reports
        (:class:`~hpo_mongo.trials.reports.QueueReportHistory`, cached here across trials). A
        refused report stops the trial as a lost lease does."""
        tid, exp_key = doc["tid"], doc.get("exp_key")
        history = self._histories.get(exp_key)
        if history is None:
            if len(self._histories) >= self.domains.max_size:
                self._histories.pop(next(iter(self._histories)))
            history = self._histories[exp_key] = QueueReportHistory(
                self.queue, exp_key, call=lambda fn, what: self._store(fn, what))
        history.start_trial()
        pruner = domain.pruner if isinstance(domain, Domain) and domain.pruner is not None else NopPruner()

        def record(step: int, value: float) -> bool:
            return self._store(lambda: self.queue.report(doc, step, value), f"record a report of trial {tid}")

        return StoreReporter(tid, record, pruner, history, on_lost=lambda: self.lose_trial(
            doc, "its report was refused: this worker no longer owns it (requeued, cancelled or finished elsewhere)"))

    def report(self, doc: dict, outcome: Outcome) -> Outcome | None:
        """Write the outcome and its attachments (``queue.finish``, retried across outages); return
        what was written (``outcome``, or the ERROR that replaced an outcome the store refused), None
        if this worker lost the trial meanwhile (then nothing of this attempt is kept)."""
        tid = doc.get("tid")
        self._finishing = True
        written: Outcome | None = outcome
        try:
            try:
                ok = self._finish(doc, outcome)
            except InvalidResultError as e:  # the store refused the outcome: record why instead
                logger.error("trial %s: %s", tid, e)
                written = Outcome.from_exception(e)
                try:
                    ok = self._finish(doc, written)
                except InvalidResultError as e2:
                    logger.error("trial %s: not even the error could be recorded (%s); the lease rules will "
                                 "requeue it", tid, e2)
                    ok = False
        finally:
            with self._lease_lock:
                self._leased = None
                self._finishing = False
        if not ok:
            logger.warning("trial %s (attempt %s) was taken from this worker (requeued, cancelled or deleted); "
                           "its result is dropped", tid, doc.get("attempt"))
            return None
        return written

    def _finish(self, doc: dict, outcome: Outcome) -> bool:
        state = outcome.state
        assert state is not None  # a cancelled evaluation is released (run_trial: None), never finished
        return self._store(lambda: self.queue.finish(doc, state, outcome.result, outcome.error,
                                                     attachments=outcome.attachments or None),
                           f"write the result of trial {doc.get('tid')}")

    # ---------------------------------------------------------------- control
    def stop(self) -> None:
        """Stop claiming; the loop returns after the current trial (or its release)."""
        self._stop.set()
        if self.status != "exited":
            self.status = "stopping"

    @property
    def stopping(self) -> bool:
        """Whether the worker was asked to stop (it claims nothing more)."""
        return self._stop.is_set()

    def on_signal(self, signum: int, count: int) -> None:
        """SIGTERM/SIGINT (called from the handler): 1st → stop claiming and start the grace period
        of the running trial; 2nd → release it now."""
        self.stop()
        if count >= 2:
            self._expire_grace("second signal")
            return
        if self.current is not None and self._grace_timer is None:
            logger.warning("the running trial %s has %gs (--grace-period) to finish before it is released",
                           self.current.get("tid"), self.config.grace_period)
            self._grace_timer = threading.Timer(self.config.grace_period, self._expire_grace,
                                                args=("grace period expired",))
            self._grace_timer.daemon = True
            self._grace_timer.start()

    def release_now(self, why: str) -> None:
        """Stop claiming and release the running trial at once, as ordered by the process that
        started this worker (a ``ParallelTrials`` driver ending fmin early): expected, so logged at
        INFO rather than as a signal's WARNING."""
        self._release_level = logging.INFO
        self.stop()
        self._expire_grace(why)

    def _expire_grace(self, why: str) -> None:
        if self.current is None:
            return
        self._release_reason = why
        if self.config.subprocess:
            self._cancel.set()
            self.executor.release()
        else:  # the objective runs in this process's main thread: release from here and exit
            self._release_inprocess_and_exit(why)

    def _release_inprocess_and_exit(self, why: str) -> None:
        doc = self.current
        try:
            if doc is not None:
                with self._lease_lock:
                    self._leased = None
                ok = self.queue.release(doc)
                logger.log(self._release_level, "trial %s released back to NEW (%s)%s", doc.get("tid"), why,
                           "" if ok else " — it was no longer owned by this worker")
            self.status = "exited"
            self.current = None
            self.beat()
        except Exception as e:  # noqa: BLE001 - exiting anyway; the lease rules requeue the trial
            logger.error("could not release trial %s (%s); the lease rules will requeue it",
                         doc.get("tid") if doc else None, e)
        logging.shutdown()
        os._exit(EXIT_OK)

    def _sleep(self, seconds: float) -> None:
        self._stop.wait(max(0.0, seconds))

    def _idle_delay(self) -> float:
        """The wait after an empty claim: :data:`MIN_IDLE_POLL` right after work, doubling while the
        queue stays empty, up to ``poll_interval`` (the idle ceiling); jittered so that idle workers
        do not poll in lockstep."""
        self._idle = min(self.config.poll_interval, self._idle * 2 if self._idle else MIN_IDLE_POLL)
        return self._idle * (0.75 + 0.5 * random.random())

    def _limit_reason(self) -> str | None:
        c = self.config
        if self._stop.is_set():
            return "stop requested"
        if c.max_jobs is not None and self.n_done >= c.max_jobs:
            return f"max_jobs={c.max_jobs} reached"
        if c.last_job_timeout is not None and time.monotonic() - self._started >= c.last_job_timeout:
            return f"last_job_timeout={c.last_job_timeout}s reached"
        return None

    def run(self) -> int:
        """Loop until a stop condition; return the exit code (0, 1 or 3)."""
        from .heartbeat import Heartbeat
        c = self.config
        logger.info("worker %s (id %s) on %s serving %s; evaluation %s, heartbeat %gs, lease %gs, max_attempts %d",
                    self.owner, self.worker_id, self.queue.describe(),
                    "every experiment" if c.exp_key is ANY_EXPERIMENT else
                    "the default experiment (exp_key None)" if c.exp_key is None else f"exp_key {c.exp_key!r}",
                    "in a child process per trial" if c.subprocess else "in-process (--no-subprocess)",
                    c.heartbeat_interval, c.lease, c.max_attempts)
        if not c.secret:
            logger.warning("worker started without a secret (HPO_MONGO_SECRET / --secret-file): it executes any "
                           "unsigned payload it finds in the store; anyone who can write to it can run code "
                           "here (see docs/security.md)")
        if c.trial_timeout and not c.subprocess:
            logger.warning("--trial-timeout with --no-subprocess interrupts Python code only (SIGALRM); an "
                           "objective blocked in native code runs on until it returns to Python")
        self._heartbeat = Heartbeat(self.beat, c.heartbeat_interval, name="hpo-mongo-worker-heartbeat").start()
        code = EXIT_OK
        try:
            code = self._loop()
        except Disconnected as e:
            logger.error("worker exits: %s", e)
            code = EXIT_UNREACHABLE
        finally:
            if self._grace_timer is not None:
                self._grace_timer.cancel()
            unreachable = code == EXIT_UNREACHABLE
            # the store is gone: do not wait for a beat in progress, nor try a last one
            self._heartbeat.stop(timeout=0.2 if unreachable else 5.0)
            self.executor.close()
            self.status, self.current = "exited", None
            if not unreachable:
                try:
                    self.beat()
                except Exception as e:  # noqa: BLE001 - best effort
                    logger.debug("final heartbeat failed: %s", e)
        return code

    def _loop(self) -> int:
        c = self.config
        while True:
            reason = self._limit_reason()
            if reason:
                logger.info("worker stops: %s (%d trials evaluated)", reason, self.n_done)
                return EXIT_OK
            self._maybe_requeue()
            self.executor.prepare()  # the next trial's child starts up while the claim travels
            doc = self._store(self.claim, "claim a trial", abort=self._stop.is_set)
            if doc is None:
                if self._stop.is_set():
                    continue
                if c.reserve_timeout and time.monotonic() - self._last_activity >= c.reserve_timeout:
                    logger.info("worker stops: no trial to claim for reserve_timeout=%ss", c.reserve_timeout)
                    return EXIT_OK
                self._sleep(self._idle_delay())
                continue
            self._idle = 0.0
            code = self.process(doc)
            if code is not None:
                return code

    def process(self, doc: dict) -> int | None:
        """Run and report one claimed trial; an exit code if the worker must stop now."""
        c = self.config
        self._cancel.clear()
        self._lease_lost.clear()
        self._release_reason = "stop requested"
        with self._lease_lock:
            self._leased = doc
        self.current, self.status = doc, "busy"
        logger.info("trial %s (exp_key %r, attempt %s) claimed", doc["tid"], doc.get("exp_key"), doc.get("attempt"))
        try:
            if self._stop.is_set():  # a signal arrived during the claim: give it back at once
                outcome = None
            else:
                outcome = self.run_trial(doc)
            if outcome is None:
                with self._lease_lock:
                    self._leased = None
                if self._lease_lost.is_set():
                    return None  # logged by the heartbeat; the trial belongs to someone else now
                ok = self._store(lambda: self.queue.release(doc), f"release trial {doc['tid']}")
                logger.log(self._release_level, "trial %s released back to NEW (%s)%s", doc["tid"],
                           self._release_reason, "" if ok else " — it was no longer owned by this worker")
                return EXIT_OK if self._stop.is_set() else None
            written = self.report(doc, outcome)
        finally:
            self.current = None
            if self.status == "busy":
                self.status = "idle"
            self._last_activity = time.monotonic()
        self.n_done += 1
        if written is None:
            return None  # the trial was taken away: its outcome is not this worker's to count or log
        if written.state == JOB_STATE_ERROR:
            self.consecutive_failures += 1
            if c.max_consecutive_failures and self.consecutive_failures >= c.max_consecutive_failures:
                logger.error("worker stops: %d consecutive failed trials (max_consecutive_failures=%d)",
                             self.consecutive_failures, c.max_consecutive_failures)
                return EXIT_MAX_FAILURES
        else:
            self.consecutive_failures = 0
        logger.info("trial %s %s", doc["tid"], "done" if written.state == JOB_STATE_DONE else "ERROR")
        return None


def main_worker_helper(options: Mapping[str, Any], url: Any = None) -> int:
    """Run a worker with ``options`` (WorkerConfig fields) on the queue at ``url``; return the exit code."""
    from ..trials.factory import connect_queue
    return Worker(connect_queue(url), WorkerConfig(**options)).run()
