"""The worker: claim a NEW trial, evaluate it, report the outcome; repeat.

Structure (each step is one method, so the lease / subprocess / signal layer plugs in):

- :meth:`Worker.claim` — one atomic ``find_one_and_update`` NEW → RUNNING (oldest tid first);
- :meth:`Worker.run_trial` — evaluates the claimed trial; in-process it calls
  :func:`evaluate_claimed_trial`, the ONE function that turns a claimed trial document into a
  :class:`TrialOutcome` (load the domain by hash, call the objective, apply the result rules,
  never raise for the objective's errors);
- :meth:`Worker.report` — stores attachments, then writes DONE/ERROR conditioned on
  ``{_id, owner, attempt}``; a trial taken away meanwhile is logged and skipped.

Stopping: ``max_jobs`` trials evaluated, ``reserve_timeout`` seconds without finding a trial
(0 = wait forever), ``last_job_timeout`` seconds since start (no new claim after it), or
``stop()`` (signals) → exit code 0; ``max_consecutive_failures`` ERROR trials in a row → 1;
the server unreachable longer than ``max_disconnect`` → 3. An exception raised by the objective
(or a domain that cannot be loaded) makes the trial ERROR with type, message and traceback, and
the worker goes on.

Leases and robustness (issue 5):

- a heartbeat thread upserts the worker's document in ``workers`` and renews the lease
  (``heartbeat``, server clock) of the running trial every ``heartbeat_interval``; a worker that
  finds its lease gone stops the evaluation and writes nothing;
- idle workers (and the driver) requeue RUNNING trials whose lease is older than their
  ``lease_timeout`` (the claiming worker's ``stale_timeout``); the ``max_attempts``-th loss makes
  the trial ERROR "lost N times" (:func:`hpo_mongo.trials.mongo.jobs.requeue_stale`);
- trials run in a forked child by default (:mod:`hpo_mongo.worker.executor`): crashes, timeouts
  and memory blow-ups fail the trial, not the worker;
- SIGTERM/SIGINT (:meth:`Worker.on_signal`): stop claiming, give the running trial
  ``grace_period`` seconds, then release it back to NEW; a second signal releases at once; exit 0;
- server outages: every database call is retried with bounded exponential backoff; after
  ``max_disconnect`` seconds without the server the worker exits 3.
"""
from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ..exceptions import ObjectiveLoadError, StoreUnavailable
from ..results import error_info, error_result
from .._version import __version__
from ..trials.documents import JOB_STATE_DONE, JOB_STATE_ERROR, utcnow
from ..trials.mongo.connection import server_time, translate_errors
from ..trials.mongo import jobs as _jobs
from ..trials.mongo.store import MongoJobs, MongoTrials, reconnect_through
from .executor import working_dir

logger = logging.getLogger("hpo_mongo.worker")

EXIT_OK = 0
EXIT_MAX_FAILURES = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


@dataclass
class WorkerConfig:
    """The worker's options (the CLI flags of ``hpo-mongo-worker``)."""

    exp_key: Any = _jobs.ANY_EXPERIMENT  #: ANY_EXPERIMENT = serve every experiment; None = the default one
    poll_interval: float = 1.0
    max_jobs: int | None = None
    max_consecutive_failures: int = 0  #: 0 = never stop for failures
    reserve_timeout: float = 0.0  #: 0 = wait forever
    last_job_timeout: float | None = None
    workdir: str | None = None
    secret: bytes | None = None
    max_disconnect: float = 300.0
    heartbeat_interval: float = 5.0
    stale_timeout: float | None = None  #: None = 6 x heartbeat_interval
    max_attempts: int = 3
    subprocess: bool = True  #: False = --no-subprocess (evaluate in the worker process)
    trial_timeout: float | None = None
    grace_period: float = 30.0

    @property
    def lease_timeout(self) -> float:
        """The stale timeout in effect (``stale_timeout`` or 6 x ``heartbeat_interval``)."""
        return float(self.stale_timeout) if self.stale_timeout else 6.0 * float(self.heartbeat_interval)


@dataclass
class TrialOutcome:
    """What evaluating one trial produced: the state to write (DONE/ERROR), result, error, attachments."""

    state: int
    result: dict
    error: dict | None = None
    attachments: dict[str, bytes] = field(default_factory=dict)

    @classmethod
    def from_exception(cls, exc: BaseException) -> "TrialOutcome":
        info = error_info(exc)
        return cls(JOB_STATE_ERROR, error_result(info), info)


class DomainCache:
    """Loaded domains by content hash (a worker serving several experiments keeps each one)."""

    def __init__(self, handle: MongoJobs, secret: bytes | None = None, max_size: int = 16):
        self.handle, self.secret, self.max_size = handle, secret, max_size
        self._cache: dict[str, Any] = {}

    def domain_hash(self, doc: Mapping[str, Any]) -> str:
        digest = doc.get("domain_hash")
        if digest:
            return digest
        exp = self.handle.experiment(doc.get("exp_key")) or {}
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
        blob = self.handle.domain_blob(digest)
        if blob is None:
            raise ObjectiveLoadError(f"the domain payload {digest} of trial {doc.get('tid')} is missing from "
                                     f"GridFS (file domain/{digest}); was the experiment deleted?")
        raw, meta = unpack_payload(blob, self.secret)
        with reconnect_through(self.handle, self.secret):  # a MongoTrials in the domain uses this worker's connection
            domain = loads_domain(raw, meta)
        if len(self._cache) >= self.max_size:
            self._cache.pop(next(iter(self._cache)))
        self._cache[digest] = domain
        return domain


class WorkerCtrl:
    """The ``ctrl`` an objective gets on a worker (``pass_expr_memo_ctrl``): attachments, checkpoint."""

    def __init__(self, handle: MongoJobs, trial: Mapping[str, Any]):
        self.handle, self.current_trial = handle, trial
        self._trials: MongoTrials | None = None

    @property
    def trials(self) -> MongoTrials:
        if self._trials is None:
            self._trials = MongoTrials(self.handle, exp_key=self.current_trial.get("exp_key"))
        return self._trials

    @property
    def attachments(self):
        return self.handle.trial_attachments(self.current_trial)

    def checkpoint(self, result: Mapping[str, Any] | None = None) -> None:
        if not self.handle.checkpoint(self.current_trial, result):
            logger.warning("checkpoint of trial %s ignored: this worker no longer owns it",
                           self.current_trial.get("tid"))


def trial_workdir(doc: Mapping[str, Any], workdir: str | None) -> str | None:
    """Where a trial runs: ``--workdir`` if given, else the trial's ``misc.workdir``, else the cwd (None)."""
    return workdir or (doc.get("misc") or {}).get("workdir") or None


def load_domain(doc: Mapping[str, Any], get: Callable[[Mapping], Any]) -> tuple[Any, TrialOutcome | None]:
    """``(domain, None)``, or ``(None, ERROR outcome)`` when the trial's domain cannot be loaded
    (missing module, version mismatch, bad signature: nothing is executed)."""
    try:
        return get(doc), None
    except Exception as e:  # noqa: BLE001 - ObjectiveLoadError, and anything unpickling raised
        if not isinstance(e, ObjectiveLoadError):
            e = ObjectiveLoadError(f"cannot load the objective: {type(e).__name__}: {e}")
        logger.error("trial %s: %s", doc.get("tid"), e)
        return None, TrialOutcome.from_exception(e)


def evaluate_claimed_trial(doc: Mapping[str, Any], domains: DomainCache | Callable[[Mapping], Any], *,
                           ctrl: Any = None, workdir: str | None = None) -> TrialOutcome:
    """Evaluate one claimed trial document; never raises for the objective's (or the domain's) errors.

    ``domains`` is a :class:`DomainCache` or a function ``doc -> Domain``. Loading failures
    (missing module, version mismatch, bad signature) give an ERROR outcome whose message names
    the missing module and both sides' python / cloudpickle versions.
    """
    domain, failed = load_domain(doc, domains.get if isinstance(domains, DomainCache) else domains)
    if failed is not None:
        return failed
    try:
        with working_dir(trial_workdir(doc, workdir)):
            result, attachments = domain.evaluate(doc["misc"]["vals"], ctrl)
    except Exception as e:  # noqa: BLE001 - the objective's error is the trial's outcome
        logger.error("trial %s raised %s: %s", doc.get("tid"), type(e).__name__, e)
        return TrialOutcome.from_exception(e)
    return TrialOutcome(JOB_STATE_DONE, result, None, attachments)


class _Disconnected(Exception):
    """The server stayed unreachable longer than ``max_disconnect``."""


class Worker:
    """One worker process's loop (see the module docstring). ``run()`` returns the exit code."""

    def __init__(self, handle: MongoJobs, config: WorkerConfig | None = None, *, owner: str | None = None):
        from .executor import Executor
        self.handle = handle
        self.config = config or WorkerConfig()
        self.owner = owner or _jobs.owner_id()
        self.worker_info = {"host": socket.gethostname(), "pid": os.getpid()}
        self.worker_id = f"{self.owner}:{os.urandom(4).hex()}"
        self.domains = DomainCache(handle, self.config.secret)
        self.executor = Executor(subprocess=self.config.subprocess, timeout=self.config.trial_timeout)
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
        self._started = time.monotonic()
        self._started_at = utcnow()
        self._last_activity = self._started
        self._down_since: float | None = None  # monotonic time the current outage began
        self._next_requeue = 0.0
        self._heartbeat = None

    # ---------------------------------------------------------------- database access with outage handling
    def _store(self, fn: Callable[[], Any], what: str, *, abort: Callable[[], bool] | None = None) -> Any:
        """Call ``fn`` until it reaches the server: bounded exponential backoff (0.1 s doubling to 5 s),
        one clear log line per outage; raises :class:`_Disconnected` after ``max_disconnect`` s.
        Returns None without calling again if ``abort()`` becomes true."""
        delay = 0.1
        while True:
            try:
                value = fn()
            except StoreUnavailable as e:
                now = time.monotonic()
                self._note_down(e, what)
                down = now - self._down_since
                if down >= self.config.max_disconnect:
                    raise _Disconnected(f"the server has been unreachable for {down:.0f}s (more than "
                                        f"--max-disconnect {self.config.max_disconnect:g}s) while trying to "
                                        f"{what}: {e}") from e
                logger.info("server still unreachable after %.1fs; next attempt to %s in %.1fs", down, what, delay)
                if abort is not None and abort():
                    return None
                time.sleep(min(delay, max(0.01, self.config.max_disconnect - down)))
                delay = min(delay * 2, 5.0)
                continue
            if self._down_since is not None:
                logger.warning("server reachable again after %.1fs", time.monotonic() - self._down_since)
                self._down_since = None
            return value

    def _note_down(self, error: BaseException, what: str) -> None:
        """Start the outage clock (and log once) at the first failed call of an outage."""
        if self._down_since is None:
            self._down_since = time.monotonic()
            logger.warning("server unreachable (%s: %s); retrying with backoff for up to %gs "
                           "(--max-disconnect)", what, error, self.config.max_disconnect)

    # ---------------------------------------------------------------- heartbeat (background thread)
    def _worker_fields(self) -> dict:
        cur = self.current
        c = self.config
        return {"host": self.worker_info["host"], "pid": self.worker_info["pid"], "owner": self.owner,
                "version": __version__, "started": self._started_at,
                "current": None if cur is None else {"tid": cur.get("tid"), "exp_key": cur.get("exp_key"),
                                                     "job_id": cur.get("_id")},
                "exp_key": None if c.exp_key is _jobs.ANY_EXPERIMENT else c.exp_key,
                "serves_all": c.exp_key is _jobs.ANY_EXPERIMENT,
                "status": self.status, "n_done": self.n_done,
                "heartbeat_interval": c.heartbeat_interval, "stale_timeout": c.lease_timeout}

    def beat(self) -> None:
        """Upsert this worker's document and renew the running trial's lease (one heartbeat)."""
        with translate_errors():
            _jobs.upsert_worker(self.handle.workers, self.worker_id, self._worker_fields())
            with self._lease_lock:
                doc = self._leased
                if doc is None or self._lease_lost.is_set():
                    return
                if _jobs.refresh_lease(self.handle.coll, doc) or self._finishing:
                    return
                self._lease_lost.set()
        logger.warning("trial %s (attempt %s): this worker lost its lease (the trial was requeued, cancelled or "
                       "finished elsewhere); stopping its evaluation, nothing will be written",
                       doc.get("tid"), doc.get("attempt"))
        self._cancel.set()
        self.executor.release()

    # ---------------------------------------------------------------- steps
    def claim(self) -> dict | None:
        """Claim the oldest NEW trial of the served experiment(s); None if there is none."""
        return self.handle.reserve(self.owner, exp_key=self.config.exp_key, worker=self.worker_info,
                                   lease_timeout=self.config.lease_timeout)

    def requeue_stale(self) -> tuple[int, int]:
        """Apply the lease rules to the served experiment(s) (server clock)."""
        c = self.config
        with translate_errors():
            now = server_time(self.handle.db)
            return _jobs.requeue_stale(self.handle.coll, now=now, stale_timeout=c.lease_timeout,
                                       max_attempts=c.max_attempts, exp_key=c.exp_key, log=logger)

    def _maybe_requeue(self) -> None:
        now = time.monotonic()
        if now < self._next_requeue:
            return
        every = max(self.config.heartbeat_interval, self.config.lease_timeout / 3.0)
        self._next_requeue = now + every * (0.75 + 0.5 * random.random())
        try:
            self.requeue_stale()
        except StoreUnavailable as e:
            self._note_down(e, "requeue stale trials")  # the claim that follows retries / gives up

    def run_trial(self, doc: dict) -> TrialOutcome | None:
        """Evaluate a claimed trial (in a forked child unless ``subprocess=False``); None if the
        evaluation was stopped (grace period expired, second signal, lease lost)."""
        domain, failed = load_domain(doc, self.domains.get)
        if failed is not None:
            return failed
        out = self.executor.run(domain, doc["misc"]["vals"], ctrl=WorkerCtrl(self.handle, doc),
                                workdir=trial_workdir(doc, self.config.workdir), cancel_event=self._cancel)
        if out.cancelled:
            return None
        if out.error is not None:
            logger.error("trial %s failed: %s: %s", doc.get("tid"), out.error.get("type"), out.error.get("message"))
        return TrialOutcome(out.state, out.result, out.error, out.attachments)

    def report(self, doc: dict, outcome: TrialOutcome) -> bool:
        """Store attachments and write the outcome; False if this worker lost the trial meanwhile.

        Retried across outages (up to ``max_disconnect``); the write is conditioned on the claim, so
        a trial requeued while the server was away is not overwritten.
        """
        tid = doc.get("tid")
        self._finishing = True
        try:
            if outcome.attachments:
                def put():
                    ta = self.handle.trial_attachments(doc)
                    with translate_errors():
                        for name, blob in outcome.attachments.items():
                            ta[name] = blob
                self._store(put, f"store the attachments of trial {tid}")
            ok = self._store(lambda: self.handle.finish(doc, outcome.state, outcome.result, outcome.error),
                             f"write the result of trial {tid}")
            if not ok:  # a retried write may have landed before the connection dropped
                cur = self._store(lambda: self.handle.coll.find_one(
                    {"_id": doc["_id"]}, {"state": 1, "owner": 1, "attempt": 1}), f"check trial {tid}")
                ok = bool(cur and cur.get("owner") == doc.get("owner") and cur.get("attempt") == doc.get("attempt")
                          and cur.get("state") == outcome.state)
        finally:
            with self._lease_lock:
                self._leased = None
                self._finishing = False
        if not ok:
            logger.warning("trial %s (attempt %s) was taken from this worker (requeued, cancelled or deleted); "
                           "its result is dropped", tid, doc.get("attempt"))
        return ok

    # ---------------------------------------------------------------- control
    def stop(self) -> None:
        """Stop claiming; the loop returns after the current trial (or its release)."""
        self._stop.set()
        if self.status != "exited":
            self.status = "stopping"

    @property
    def stopping(self) -> bool:
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
                ok = self.handle.release(doc, requeue=False)
                logger.warning("trial %s released back to NEW (%s)%s", doc.get("tid"), why,
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
        p = self.config.poll_interval
        return p * (0.75 + 0.5 * random.random())  # jitter: idle workers don't poll in lockstep

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
        logger.info("worker %s (id %s) serving %s; evaluation %s, heartbeat %gs, lease %gs, max_attempts %d",
                    self.owner, self.worker_id,
                    "every experiment" if c.exp_key is _jobs.ANY_EXPERIMENT else f"exp_key {c.exp_key!r}",
                    "in a child process per trial" if c.subprocess else "in-process (--no-subprocess)",
                    c.heartbeat_interval, c.lease_timeout, c.max_attempts)
        if not c.secret:
            logger.warning("worker started without a secret (HPO_MONGO_SECRET / --secret-file): it executes any "
                           "unsigned payload it finds in the database; anyone who can write to it can run code "
                           "here (see docs/security.md)")
        if c.trial_timeout and not c.subprocess:
            logger.warning("--trial-timeout with --no-subprocess interrupts Python code only (SIGALRM); an "
                           "objective blocked in native code runs on until it returns to Python")
        self._heartbeat = Heartbeat(self.beat, c.heartbeat_interval, name="hpo-mongo-worker-heartbeat").start()
        code = EXIT_OK
        try:
            code = self._loop()
        except _Disconnected as e:
            logger.error("worker exits: %s", e)
            code = EXIT_UNREACHABLE
        finally:
            if self._grace_timer is not None:
                self._grace_timer.cancel()
            self._heartbeat.stop()
            self.executor.close()
            self.status, self.current = "exited", None
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
            doc = self._store(self.claim, "claim a trial", abort=self._stop.is_set)
            if doc is None:
                if self._stop.is_set():
                    continue
                if c.reserve_timeout and time.monotonic() - self._last_activity >= c.reserve_timeout:
                    logger.info("worker stops: no trial to claim for reserve_timeout=%ss", c.reserve_timeout)
                    return EXIT_OK
                self._sleep(self._idle_delay())
                continue
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
                ok = self._store(lambda: self.handle.release(doc, requeue=False), f"release trial {doc['tid']}")
                logger.warning("trial %s released back to NEW (%s)%s", doc["tid"], self._release_reason,
                               "" if ok else " — it was no longer owned by this worker")
                return EXIT_OK if self._stop.is_set() else None
            self.report(doc, outcome)
        finally:
            self.current = None
            if self.status == "busy":
                self.status = "idle"
            self._last_activity = time.monotonic()
        self.n_done += 1
        if outcome.state == JOB_STATE_ERROR:
            self.consecutive_failures += 1
            if c.max_consecutive_failures and self.consecutive_failures >= c.max_consecutive_failures:
                logger.error("worker stops: %d consecutive failed trials (max_consecutive_failures=%d)",
                             self.consecutive_failures, c.max_consecutive_failures)
                return EXIT_MAX_FAILURES
        else:
            self.consecutive_failures = 0
        logger.info("trial %s %s", doc["tid"], "done" if outcome.state == JOB_STATE_DONE else "ERROR")
        return None


def main_worker_helper(options: Mapping[str, Any], url: Any = None) -> int:
    """Run a worker with ``options`` (WorkerConfig fields) on ``url``; return the exit code."""
    handle = MongoJobs.new_from_connection_str(url)
    return Worker(handle, WorkerConfig(**options)).run()
