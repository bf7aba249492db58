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
"""
from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ..exceptions import ObjectiveLoadError, StoreUnavailable
from ..results import error_info
from ..trials.documents import JOB_STATE_DONE, JOB_STATE_ERROR, STATUS_FAIL
from ..trials.mongo import jobs as _jobs
from ..trials.mongo.store import MongoJobs, MongoTrials

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
        return cls(JOB_STATE_ERROR, {"status": STATUS_FAIL, "failure": f"{info['type']}: {info['message']}"},
                   info)


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


@contextlib.contextmanager
def _working_dir(path: str | None):
    if not path:
        yield
        return
    os.makedirs(path, exist_ok=True)
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def trial_workdir(doc: Mapping[str, Any], workdir: str | None) -> str | None:
    """Where a trial runs: ``--workdir`` if given, else the trial's ``misc.workdir``, else the cwd (None)."""
    return workdir or (doc.get("misc") or {}).get("workdir") or None


def evaluate_claimed_trial(doc: Mapping[str, Any], domains: DomainCache | Callable[[Mapping], Any], *,
                           ctrl: Any = None, workdir: str | None = None) -> TrialOutcome:
    """Evaluate one claimed trial document; never raises for the objective's (or the domain's) errors.

    ``domains`` is a :class:`DomainCache` or a function ``doc -> Domain``. Loading failures
    (missing module, version mismatch, bad signature) give an ERROR outcome whose message names
    the missing module and both sides' python / cloudpickle versions.
    """
    get = domains.get if isinstance(domains, DomainCache) else domains
    try:
        domain = get(doc)
    except Exception as e:  # noqa: BLE001 - ObjectiveLoadError, and anything unpickling raised
        if not isinstance(e, ObjectiveLoadError):
            e = ObjectiveLoadError(f"cannot load the objective: {type(e).__name__}: {e}")
        logger.error("trial %s: %s", doc.get("tid"), e)
        return TrialOutcome.from_exception(e)
    try:
        with _working_dir(trial_workdir(doc, workdir)):
            result, attachments = domain.evaluate(doc["misc"]["vals"], ctrl)
    except Exception as e:  # noqa: BLE001 - the objective's error is the trial's outcome
        logger.error("trial %s raised %s: %s", doc.get("tid"), type(e).__name__, e)
        return TrialOutcome.from_exception(e)
    return TrialOutcome(JOB_STATE_DONE, result, None, attachments)


class Worker:
    """One worker process's loop (see the module docstring). ``run()`` returns the exit code."""

    def __init__(self, handle: MongoJobs, config: WorkerConfig | None = None, *, owner: str | None = None):
        self.handle = handle
        self.config = config or WorkerConfig()
        self.owner = owner or _jobs.owner_id()
        self.worker_info = {"host": socket.gethostname(), "pid": os.getpid()}
        self.domains = DomainCache(handle, self.config.secret)
        self.n_done = 0
        self.consecutive_failures = 0
        self.current: dict | None = None
        self._stop = threading.Event()
        self._started = time.monotonic()
        self._last_activity = self._started

    # ---------------------------------------------------------------- steps
    def claim(self) -> dict | None:
        """Claim the oldest NEW trial of the served experiment(s); None if there is none."""
        return self.handle.reserve(self.owner, self.config.exp_key, self.worker_info)

    def run_trial(self, doc: dict) -> TrialOutcome:
        """Evaluate a claimed trial (in-process). Subclasses may run it elsewhere (a subprocess)."""
        return evaluate_claimed_trial(doc, self.domains, ctrl=WorkerCtrl(self.handle, doc),
                                      workdir=self.config.workdir)

    def report(self, doc: dict, outcome: TrialOutcome) -> bool:
        """Store attachments and write the outcome; False if this worker lost the trial meanwhile."""
        if outcome.attachments:
            ta = self.handle.trial_attachments(doc)
            for name, blob in outcome.attachments.items():
                ta[name] = blob
        ok = self.handle.finish(doc, outcome.state, outcome.result, outcome.error)
        if not ok:
            logger.warning("trial %s (attempt %s) was taken from this worker (requeued, cancelled or deleted); "
                           "its result is dropped", doc.get("tid"), doc.get("attempt"))
        return ok

    # ---------------------------------------------------------------- control
    def stop(self) -> None:
        """Stop claiming; the loop returns after the current trial."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

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
        c = self.config
        logger.info("worker %s serving %s", self.owner,
                    "every experiment" if c.exp_key is _jobs.ANY_EXPERIMENT else f"exp_key {c.exp_key!r}")
        unreachable_since: float | None = None
        while True:
            reason = self._limit_reason()
            if reason:
                logger.info("worker stops: %s (%d trials evaluated)", reason, self.n_done)
                return EXIT_OK
            try:
                doc = self.claim()
                unreachable_since = None
            except StoreUnavailable as e:
                now = time.monotonic()
                unreachable_since = unreachable_since or now
                if now - unreachable_since >= c.max_disconnect:
                    logger.error("server unreachable for %.0fs: %s", now - unreachable_since, e)
                    return EXIT_UNREACHABLE
                logger.warning("server unreachable (%s); retrying", e)
                self._sleep(min(5.0, max(c.poll_interval, 0.1)))
                continue
            if doc is None:
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
        self.current = doc
        logger.info("trial %s (exp_key %r, attempt %s) claimed", doc["tid"], doc.get("exp_key"), doc.get("attempt"))
        try:
            outcome = self.run_trial(doc)
            self.report(doc, outcome)
        finally:
            self.current = None
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
