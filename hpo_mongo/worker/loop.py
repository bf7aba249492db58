"""The worker: claim a NEW trial, evaluate it, report the outcome; repeat.

Structure (each step is one method, so the lease / subprocess / signal layer plugs in):

- :meth:`Worker.claim` — one atomic ``find_one_and_update`` NEW → RUNNING (oldest tid first);
- :meth:`Worker.run_trial` — evaluates the claimed trial; in-process it calls
  :func:`evaluate_claimed_trial`, the ONE function that turns a claimed trial document into a
  :class:`TrialOutcome` (load the domain by hash, call the objective, apply the result rules,
  never raise for the objective's errors);
- :meth:`Worker.report` — uploads the attachments under attempt-scoped names, then writes DONE/ERROR
  and the attachment references in one write conditioned on ``{_id, owner, attempt}``; a trial
  taken away meanwhile is logged and skipped, and the uploaded files are deleted again (a worker
  that lost its trial writes nothing a reader sees).

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
from typing import Any, Callable, Iterator, Mapping, MutableMapping

from ..exceptions import InvalidResultError, InvalidTrial, ObjectiveLoadError, StoreUnavailable
from ..results import error_info, error_result
from .._version import __version__
from ..trials.documents import JOB_STATE_DONE, JOB_STATE_ERROR, utcnow
from ..trials.mongo.connection import server_time, translate_errors
from ..trials import leases
from ..trials.mongo import jobs as _jobs
from ..trials.mongo.store import MongoJobs, MongoTrials, reconnect_through
from ..trials.mongo.attachments import as_blob
from . import executor as _executor
from .executor import CollectingCtrl, Executor

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


class AttemptAttachments(MutableMapping):
    """``ctrl.attachments`` on a worker: what the objective writes is kept here and stored with the
    trial's result, in the same owner-conditioned write (so a worker that lost its trial stores
    nothing); reads see those values first, then the attachments the trial already had."""

    def __init__(self, stored: Callable[[], MutableMapping[str, bytes]]):
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


class WorkerCtrl(CollectingCtrl):
    """The ``ctrl`` an objective gets on a worker (``pass_expr_memo_ctrl``): attachments, checkpoint.

    ``ctrl.attachments`` are stored with the result (:class:`AttemptAttachments`);
    ``ctrl.trials`` is a MongoTrials of the experiment, whose writes are immediate (not tied to
    this evaluation).
    """

    def __init__(self, handle: MongoJobs, trial: Mapping[str, Any]):
        self.handle, self.current_trial = handle, trial
        self._trials: MongoTrials | None = None
        self._attachments = AttemptAttachments(lambda: self.handle.trial_attachments(self.current_trial))

    @property
    def trials(self) -> MongoTrials:
        if self._trials is None:
            self._trials = MongoTrials(self.handle, exp_key=self.current_trial.get("exp_key"))
        return self._trials

    @property
    def attachments(self) -> AttemptAttachments:
        return self._attachments

    def collected_attachments(self) -> dict[str, bytes]:
        return dict(self._attachments.pending)

    def checkpoint(self, result: Mapping[str, Any] | None = None) -> None:
        if not self.handle.checkpoint(self.current_trial, result):
            logger.warning("checkpoint of trial %s ignored: this worker no longer owns it",
                           self.current_trial.get("tid"))


def trial_workdir(doc: Mapping[str, Any], workdir: str | None, *, confine_to: str | None = None) -> str | None:
    """Where a trial runs: ``--workdir`` if given, else the trial's ``misc.workdir``, else the cwd (None).

    ``confine_to`` (a worker with a secret: the directory it was started in): ``misc.workdir``,
    resolved with realpath (a relative one against that directory), must lie inside it, since any
    database writer can set it; raises :class:`InvalidTrial` otherwise. Without ``confine_to``,
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
    out = _executor.run_trial(domain, doc["misc"]["vals"], subprocess=False, ctrl=ctrl,
                              workdir=trial_workdir(doc, workdir), check=_jobs.check_storable)
    if out.error is not None:
        logger.error("trial %s failed: %s: %s", doc.get("tid"), out.error.get("type"), out.error.get("message"))
    return TrialOutcome(out.state, out.result, out.error, out.attachments)


class _Disconnected(Exception):
    """The server stayed unreachable longer than ``max_disconnect``."""


class Worker:
    """One worker process's loop (see the module docstring). ``run()`` returns the exit code."""

    def __init__(self, handle: MongoJobs, config: WorkerConfig | None = None, *, owner: str | None = None):
        self.handle = handle
        self.config = config or WorkerConfig()
        self.owner = owner or _jobs.owner_id()
        self.worker_info = {"host": socket.gethostname(), "pid": os.getpid()}
        self.worker_id = f"{self.owner}:{os.urandom(4).hex()}"
        self.domains = DomainCache(handle, self.config.secret)
        self.executor = Executor(subprocess=self.config.subprocess, timeout=self.config.trial_timeout,
                                 check=_jobs.check_storable)
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
        self._started = time.monotonic()
        self._started_at = utcnow()
        self._last_activity = self._started
        self._down_since: float | None = None  # monotonic time the current outage began
        self._next_requeue = 0.0
        self._heartbeat = None

    # ---------------------------------------------------------------- database access with outage handling
    def _store(self, fn: Callable[[], Any], what: str, *, abort: Callable[[], bool] | None = None) -> Any:
        """Call ``fn`` until it reaches the server: bounded exponential backoff (0.1 s doubling to 5 s),
        one clear log line per outage; raises :class:`_Disconnected` once ``max_disconnect`` s have
        passed since the first failed call of the outage began (the sleeps never go past that
        point; the last call then takes at most the client's server selection timeout).
        Returns None without calling again if ``abort()`` becomes true."""
        delay = 0.1
        while True:
            started = time.monotonic()
            try:
                value = fn()
            except StoreUnavailable as e:
                self._note_down(e, what, since=started)
                down = time.monotonic() - self._down_since
                left = self.config.max_disconnect - down
                if left <= 0:
                    raise _Disconnected(f"the server has been unreachable for {down:.1f}s (more than "
                                        f"--max-disconnect {self.config.max_disconnect:g}s) while trying to "
                                        f"{what}: {e}") from e
                logger.info("server still unreachable after %.1fs; next attempt to %s in %.1fs", down, what,
                            min(delay, left))
                if abort is not None and abort():
                    return None
                time.sleep(min(delay, left))
                delay = min(delay * 2, 5.0)
                continue
            if self._down_since is not None:
                logger.warning("server reachable again after %.1fs", time.monotonic() - self._down_since)
                self._down_since = None
            return value

    def _note_down(self, error: BaseException, what: str, *, since: float) -> None:
        """Start the outage clock (and log once) at the first failed call of an outage, from the
        moment that call began (``since``, monotonic)."""
        if self._down_since is None:
            self._down_since = since
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
                                   lease_timeout=self.config.lease_timeout, max_attempts=self.config.max_attempts)

    def requeue_stale(self) -> list[dict]:
        """Apply the lease rules to the served experiment(s) (server clock); ``max_attempts`` is
        used only for trials that do not record their claimer's."""
        c = self.config
        with translate_errors():
            now = server_time(self.handle.db)
            events = _jobs.requeue_stale(self.handle.coll, now=now, default_lease=c.lease_timeout,
                                         default_max_attempts=c.max_attempts, exp_key=c.exp_key)
        leases.log_events(events, logger)
        return events

    def _maybe_requeue(self) -> None:
        now = time.monotonic()
        if now < self._next_requeue:
            return
        every = max(self.config.heartbeat_interval, self.config.lease_timeout / 3.0)
        self._next_requeue = now + every * (0.75 + 0.5 * random.random())
        try:
            self.requeue_stale()
        except StoreUnavailable as e:
            self._note_down(e, "requeue stale trials", since=now)  # the claim that follows retries / gives up

    def run_trial(self, doc: dict) -> TrialOutcome | None:
        """Evaluate a claimed trial (in a forked child unless ``subprocess=False``); None if the
        evaluation was stopped (grace period expired, second signal, lease lost)."""
        try:
            workdir = trial_workdir(doc, self.config.workdir, confine_to=self._confine_to)
        except InvalidTrial as e:
            logger.error("trial %s: %s", doc.get("tid"), e)
            return TrialOutcome.from_exception(e)
        domain, failed = load_domain(doc, self.domains.get)
        if failed is not None:
            return failed
        out = self.executor.run(domain, doc["misc"]["vals"], ctrl=WorkerCtrl(self.handle, doc),
                                workdir=workdir, cancel_event=self._cancel)
        if out.cancelled:
            return None
        if out.error is not None:
            logger.error("trial %s failed: %s: %s", doc.get("tid"), out.error.get("type"), out.error.get("message"))
        return TrialOutcome(out.state, out.result, out.error, out.attachments)

    def report(self, doc: dict, outcome: TrialOutcome) -> TrialOutcome | None:
        """Store the attachments and write the outcome; return what was written (``outcome``, or the
        ERROR that replaced a result MongoDB refused), None if this worker lost the trial meanwhile.

        The attachments are uploaded under this attempt's names, then the result and the references
        go in one write conditioned on the claim (retried across outages, up to ``max_disconnect``),
        so a trial requeued while the server was away is not overwritten; when that write is
        refused, the uploaded files are deleted again.
        """
        tid = doc.get("tid")
        self._finishing = True
        uploaded: list[list] = []
        try:
            if outcome.attachments:
                uploaded = self._store(lambda: self.handle.put_attempt_files(doc, outcome.attachments),
                                       f"store the attachments of trial {tid}")
            refs, replaced = self._store(lambda: self.handle.refs_after_attempt(doc, uploaded),
                                         f"read the attachments of trial {tid}")
            if not uploaded and not replaced:
                refs = None  # nothing changes: leave the references as they are
            written: TrialOutcome | None = outcome
            try:
                ok = self._finish(doc, outcome, refs)
            except InvalidResultError as e:  # the server refused the document: record why instead
                logger.error("trial %s: %s", tid, e)
                written = TrialOutcome.from_exception(e)
                refs, replaced = None, []
                try:
                    ok = self._finish(doc, written, None)
                except InvalidResultError as e2:
                    logger.error("trial %s: not even the error could be recorded (%s); the lease rules will "
                                 "requeue it", tid, e2)
                    ok = False
            keep = [fid for _, fid in refs or ()] if ok else []
            if uploaded or (ok and replaced):
                def tidy() -> None:
                    self.handle.discard_attempt_files(doc, keep=keep)
                    if ok and replaced:
                        self.handle.delete_trial_file_ids(doc, replaced)
                self._store(tidy, f"delete unreferenced attachment files of trial {tid}")
        finally:
            with self._lease_lock:
                self._leased = None
                self._finishing = False
        if not ok:
            logger.warning("trial %s (attempt %s) was taken from this worker (requeued, cancelled or deleted); "
                           "its result is dropped%s", tid, doc.get("attempt"),
                           " and its attachment files deleted" if uploaded else "")
            return None
        return written

    def _finish(self, doc: dict, outcome: TrialOutcome, refs: list | None) -> bool:
        """The conditioned result write (with ``refs`` as ``_attachments``); False if the trial was lost."""
        tid = doc.get("tid")
        ok = self._store(lambda: self.handle.finish(doc, outcome.state, outcome.result, outcome.error,
                                                    attachments=refs),
                         f"write the result of trial {tid}")
        if not ok:  # a retried write may have landed before the connection dropped
            cur = self._store(lambda: self.handle.coll.find_one(
                {"_id": doc["_id"]}, {"state": 1, "owner": 1, "attempt": 1}), f"check trial {tid}")
            ok = bool(cur and cur.get("owner") == doc.get("owner") and cur.get("attempt") == doc.get("attempt")
                      and cur.get("state") == outcome.state)
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
                ok = self.handle.release(doc)
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
                    "every experiment" if c.exp_key is _jobs.ANY_EXPERIMENT else
                    "the default experiment (exp_key None)" if c.exp_key is None else f"exp_key {c.exp_key!r}",
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
            unreachable = code == EXIT_UNREACHABLE
            # the server is gone: do not wait for a beat in progress, nor try a last one
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
                ok = self._store(lambda: self.handle.release(doc), f"release trial {doc['tid']}")
                logger.warning("trial %s released back to NEW (%s)%s", doc["tid"], self._release_reason,
                               "" if ok else " — it was no longer owned by this worker")
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
    """Run a worker with ``options`` (WorkerConfig fields) on ``url``; return the exit code."""
    handle = MongoJobs.new_from_connection_str(url)
    return Worker(handle, WorkerConfig(**options)).run()
