"""``SparkTrials``: hyperopt's Spark store — each trial is a one-task Spark job on a SparkSession.

hyperopt's signature and semantics (``SparkTrials(parallelism=None, timeout=None,
loss_threshold=None, spark_session=None)``), built on the same pieces as the other asynchronous
stores: a :class:`~hpo_mongo.trials.queued.QueueTrials` over an in-memory queue held by the
driver. While fmin runs, the run session (:class:`SparkRun`) claims NEW trials up to
``parallelism`` and gives each one a driver thread, which runs a Spark job of one task in a job
group of its own: the task unpickles the domain (broadcast once per run), evaluates the trial with
the worker's evaluation path (:func:`~hpo_mongo.worker.loop.evaluate_claimed_trial`: the result
rules, attachments returned in the result, errors as ERROR outcomes) and returns the
:class:`~hpo_mongo.worker.executor.Outcome`; the thread writes it with ``queue.finish``. An
objective's exception is an ERROR trial and fmin goes on; a failed Spark job (a lost executor,
hpo_mongo missing on the cluster) is an ERROR trial naming it.

- ``parallelism``: at most this many trials run at once; None or <= 0 is Spark's default
  parallelism or its current task slots, whichever is larger (at least 1), and the value is
  capped at :data:`MAX_CONCURRENT_JOBS_ALLOWED` (128), as in hyperopt.
- ``timeout``: seconds fmin may run (it wins over fmin's own ``timeout``, with a warning, as in
  hyperopt); ``loss_threshold``: used when fmin's is None.
- When fmin stops early (timeout, loss_threshold, early_stop_fn) the running trials' job groups
  are cancelled and those trials end CANCEL with the queued ones; when it is interrupted (Ctrl-C,
  an exception) they are cancelled too and go back to NEW (``trials`` holds everything that
  finished). The executors must have hpo_mongo (and what the objective imports) installed.

Without pyspark, constructing one raises :class:`~hpo_mongo.exceptions.MissingExtra` saying
``pip install pyspark`` or use :class:`~hpo_mongo.trials.parallel.ParallelTrials`.
"""
from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
import traceback
from typing import Any, Iterator, Mapping

from .exceptions import InvalidParameterError, MissingExtra
from .trials import leases
from .trials.documents import JOB_STATE_CANCEL, JOB_STATE_DONE, JOB_STATE_ERROR
from .trials.memory_queue import MemoryJobQueue, check_picklable
from .trials.queue import JobQueue
from .trials.queued import QueueSession, QueueTrials, serving_context
from .trials.session import Run

__all__ = ["SparkTrials", "MAX_CONCURRENT_JOBS_ALLOWED"]

logger = logging.getLogger("hpo_mongo.spark")

#: hyperopt's hard cap on the trials running at once
MAX_CONCURRENT_JOBS_ALLOWED = 128
#: seconds the driver waits for the threads of cancelled trials when fmin ends
CANCEL_WAIT = 30.0
MISSING = ("SparkTrials needs pyspark: pip install pyspark (or pip install 'hpo_mongo[spark]'), or evaluate in "
           "parallel on this machine without Spark with ParallelTrials(n_jobs)")


def _pyspark() -> Any:
    try:
        import pyspark
        import pyspark.sql  # noqa: F401
    except ImportError as e:
        raise MissingExtra(f"{MISSING} ({e})") from e
    return pyspark


def _max_concurrent_tasks(sc: Any) -> int:
    """The cluster's current task slots (a package-private Spark API, as hyperopt reads it), else
    Spark's default parallelism."""
    try:
        jsc = sc._jsc.sc()
        try:
            return int(jsc.maxNumConcurrentTasks(jsc.resourceProfileManager().defaultResourceProfile()))
        except Exception:  # noqa: BLE001 - Spark < 3.1 takes no resource profile
            return int(jsc.maxNumConcurrentTasks())
    except Exception:  # noqa: BLE001 - not a JVM-backed context
        return int(sc.defaultParallelism)


def decide_parallelism(requested: int | None, default_parallelism: int, max_tasks: int) -> int:
    """hyperopt's rule: the requested value, or (None, <= 0) the larger of Spark's default
    parallelism and its task slots (at least 1); capped at :data:`MAX_CONCURRENT_JOBS_ALLOWED`."""
    if max_tasks == 0:
        logger.warning("the Spark cluster has no executors now: trials start once executors register")
    if requested is None or requested <= 0:
        parallelism = max(default_parallelism, max_tasks, 1)
        logger.warning("parallelism was %s: using %d, the larger of Spark's default parallelism (%d) and its task "
                       "slots (%d); set it explicitly, the task slots depend on the cluster's size", requested,
                       parallelism, default_parallelism, max_tasks)
    else:
        parallelism = int(requested)
    if parallelism > MAX_CONCURRENT_JOBS_ALLOWED:
        logger.warning("parallelism %d capped at SparkTrials.MAX_CONCURRENT_JOBS_ALLOWED (%d)", parallelism,
                       MAX_CONCURRENT_JOBS_ALLOWED)
        parallelism = MAX_CONCURRENT_JOBS_ALLOWED
    if parallelism > max_tasks:
        logger.warning("parallelism %d is more than the cluster's %d task slots now (dynamic allocation may add "
                       "executors)", parallelism, max_tasks)
    return parallelism


_STACK_LINE = re.compile(r"^(at |\.\.\. \d+ more|Caused by:|Driver stacktrace)")


def job_failure(tid: int, error: BaseException) -> str:
    """The message of a trial whose Spark job failed: the last line of the (Python or JVM) error,
    which names the cause, and what to check when it is a missing module."""
    lines = [ln.strip() for ln in str(error).strip().splitlines() if ln.strip()]
    jvm = next((ln[2:] for ln in lines if ln.startswith(": ")), None)  # a Py4JJavaError's own message
    cause = jvm or next((ln for ln in reversed(lines) if not _STACK_LINE.match(ln)), type(error).__name__)
    hint = (" (is hpo_mongo, with what the objective imports, installed for the executors' Python? "
            "spark.pyspark.python / PYSPARK_PYTHON choose it)" if "ModuleNotFoundError" in cause else "")
    return f"the Spark job of trial {tid} failed: {cause[:1000]}{hint}"


# ----------------------------------------------------------------------------- on the executors
_DOMAINS: dict[str, Any] = {}  # in a reused Python worker of Spark: the domains it loaded, by payload hash


def _task_domain(blob: bytes) -> Any:
    from .payload import loads_domain, payload_hash, unpack_payload
    digest = payload_hash(blob)
    if digest not in _DOMAINS:
        raw, meta = unpack_payload(blob, None)  # the driver's own broadcast: nothing to verify
        _DOMAINS.clear()
        _DOMAINS[digest] = loads_domain(raw, meta)
    return _DOMAINS[digest]


def evaluate_in_task(blob: bytes, doc: Mapping[str, Any]) -> Any:
    """Runs in a Spark task: evaluate the trial ``doc`` (tid and ``misc.vals``) with the domain
    payload ``blob``; the :class:`~hpo_mongo.worker.executor.Outcome` (never raises for the
    objective's or the domain's errors)."""
    from .worker.loop import evaluate_claimed_trial
    return evaluate_claimed_trial(doc, lambda _doc: _task_domain(blob), check=check_picklable)


# ----------------------------------------------------------------------------- the store
class SparkTrials(QueueTrials):
    """hyperopt's ``SparkTrials`` (see the module docstring)."""

    MAX_CONCURRENT_JOBS_ALLOWED = MAX_CONCURRENT_JOBS_ALLOWED
    #: the driver renews the leases of the trials its Spark jobs run; a trial whose thread died
    #: without a word is requeued after this long
    lease_timeout = 60.0
    _NOT_PICKLED = QueueTrials._NOT_PICKLED + ("_spark",)

    _queue: MemoryJobQueue

    def __init__(self, parallelism: int | None = None, timeout: float | None = None,
                 loss_threshold: float | None = None, spark_session: Any = None):
        from .driver import validate_loss_threshold, validate_timeout
        validate_timeout(timeout)
        validate_loss_threshold(loss_threshold)
        if parallelism is not None and (isinstance(parallelism, bool) or not isinstance(parallelism, int)):
            raise InvalidParameterError(f"The 'parallelism' parameter of SparkTrials must be an int or None. "
                                        f"Got {parallelism!r} instead.")
        pyspark = _pyspark()
        if spark_session is None:
            spark_session = (pyspark.sql.SparkSession.getActiveSession()
                             or pyspark.sql.SparkSession.builder.getOrCreate())
        self._spark = spark_session
        sc = self.spark_context
        self.parallelism = decide_parallelism(parallelism, int(sc.defaultParallelism), _max_concurrent_tasks(sc))
        self.timeout, self.loss_threshold = timeout, loss_threshold
        super().__init__(MemoryJobQueue(), None, poll_interval=0.1)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._spark = None  # the active session is looked up again when needed
        if serving_context() is None:  # a saved run: its Spark jobs ended with the process that saved it
            leases.log_events(leases.requeue_lost(self._queue, owner=None, default_max_attempts=self.max_attempts,
                                                  why="the process that ran it ended before it finished"), logger)
            self.refresh()

    @property
    def queue(self) -> MemoryJobQueue:
        """The in-memory job queue of this driver (the Spark jobs run its claimed trials)."""
        return self._queue

    @property
    def spark_session(self) -> Any:
        """The SparkSession the trials run on (the active one again after unpickling)."""
        if self._spark is None:
            self._spark = _pyspark().sql.SparkSession.builder.getOrCreate()
        return self._spark

    @property
    def spark_context(self) -> Any:
        try:
            return self.spark_session.sparkContext
        except Exception as e:  # noqa: BLE001 - Spark Connect sessions have no SparkContext
            raise InvalidParameterError(f"SparkTrials needs a SparkSession with a SparkContext (not Spark Connect): "
                                        f"{type(e).__name__}: {e}") from e

    def __repr__(self) -> str:
        return f"SparkTrials(parallelism={self.parallelism}, {len(self._trials)} trials)"

    # hyperopt's counters
    def count_successful_trials(self) -> int:
        return self.count_by_state_unsynced(JOB_STATE_DONE)

    def count_failed_trials(self) -> int:
        return self.count_by_state_unsynced(JOB_STATE_ERROR)

    def count_cancelled_trials(self) -> int:
        return self.count_by_state_unsynced(JOB_STATE_CANCEL)

    def count_total_trials(self) -> int:
        return self.count_by_state_unsynced([JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_CANCEL])

    def worker_hint(self) -> str:
        return "SparkTrials runs its trials as Spark jobs while fmin runs"

    def open_session(self, run: Run) -> "SparkRun":
        return SparkRun(self, run)

    # pickling: with its queue (fmin's trials_save_file), never the SparkSession
    def _reconnect_info(self) -> Any:
        return None if serving_context() is not None else {"queue": self._queue}

    def _reconnect(self, info: Any) -> JobQueue:
        if not info:
            raise TypeError("a SparkTrials referenced by the objective is not available inside a Spark task")
        return info["queue"]


class _TrialJob:
    """One running trial: its claim, its job group, the thread running its Spark job."""

    def __init__(self, claim: dict, group: str):
        self.claim, self.group = claim, group
        self.cancelled = False
        self.thread: threading.Thread | None = None


class SparkRun(QueueSession):
    """fmin's run on :class:`SparkTrials`: a :class:`QueueSession` that evaluates each claimed
    trial as a one-task Spark job from a driver thread."""

    trials: SparkTrials

    def __init__(self, trials: SparkTrials, run: Run):
        super().__init__(trials, run)  # pickles and publishes the domain: bad input fails here
        trials.queue.reassign_domain(trials.exp_key, self._digest)
        if trials.timeout is not None:
            if run.deadline is not None:
                logger.warning("SparkTrials(timeout=%g) wins over fmin's timeout", trials.timeout)
            run.deadline = time.monotonic() + trials.timeout
        if run.loss_threshold is None:
            run.loss_threshold = trials.loss_threshold
        self._sc = trials.spark_context
        self._broadcast = self._sc.broadcast(self._blob)
        self._owner = f"spark-driver:{socket.gethostname()}:{os.getpid()}"
        self._worker_id = f"{self._owner}:{os.urandom(4).hex()}"
        self._group = f"hpo_mongo-{os.urandom(6).hex()}"
        self._jobs: dict[Any, _TrialJob] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._last_renew = 0.0
        self._beat("busy")

    def _beat(self, status: str) -> None:
        """The driver's dispatcher as the experiment's one worker (``hpo-mongo status``, queue length)."""
        t = self.trials
        self.queue.beat_worker(self._worker_id, {
            "host": socket.gethostname(), "pid": os.getpid(), "owner": self._owner, "exp_key": t.exp_key,
            "serves_all": False, "status": status, "lease_timeout": t.lease_timeout,
            "spark_parallelism": t.parallelism})

    def tick(self) -> None:
        super().tick()
        if time.monotonic() - self._last_renew >= 1.0:
            self._last_renew = time.monotonic()
            self._beat("busy")
            with self._lock:
                claims = [job.claim for job in self._jobs.values()]
            for claim in claims:
                self.queue.renew_lease(claim)

    def queue_target(self, max_queue_len: int) -> int:
        """NEW trials to keep queued: enough for the free Spark slots (at least ``max_queue_len``)."""
        with self._lock:
            running = len(self._jobs)
        return max(int(max_queue_len), self.trials.parallelism - running)

    def advance(self) -> None:
        self._dispatch()
        self._wake.wait(self.trials.poll_interval)
        self._wake.clear()

    def _dispatch(self) -> None:
        """Claim NEW trials while fewer than ``parallelism`` run, and start a Spark job for each."""
        t = self.trials
        while True:
            with self._lock:
                if len(self._jobs) >= t.parallelism:
                    return
            claim = self.queue.claim(self._owner, exp_key=t.exp_key, worker={"host": socket.gethostname(),
                                     "pid": os.getpid()}, lease_timeout=t.lease_timeout, max_attempts=t.max_attempts)
            if claim is None:
                return
            job = _TrialJob(claim, f"{self._group}-{claim['tid']}-{claim['attempt']}")
            job.thread = _pyspark().InheritableThread(target=self._run_job, args=(job,),
                                                      name=f"hpo-mongo-spark-trial-{claim['tid']}", daemon=True)
            with self._lock:
                self._jobs[claim["_id"]] = job
            job.thread.start()

    def _run_job(self, job: _TrialJob) -> None:
        from .worker.executor import Outcome
        claim, sc, bc = job.claim, self._sc, self._broadcast
        doc = {"tid": claim["tid"], "exp_key": claim.get("exp_key"), "misc": {"vals": claim["misc"]["vals"]}}
        outcome: Outcome | None = None
        try:
            sc.setJobGroup(job.group, f"hpo_mongo trial {claim['tid']}", interruptOnCancel=True)

            def task(partition: Iterator[Any]) -> Iterator[Any]:
                for _ in partition:  # read the input to its end: Spark then reuses this Python worker
                    pass
                from hpo_mongo.spark import evaluate_in_task
                yield evaluate_in_task(bc.value, doc)
            (outcome,) = sc.parallelize([0], 1).mapPartitions(task).collect()
        except Exception as e:  # noqa: BLE001 - a cancelled or failed Spark job
            if not job.cancelled:
                error = {"type": "SparkJobFailed", "message": job_failure(claim["tid"], e),
                         "traceback": f"{traceback.format_exc()}\n{e}"}
                outcome = Outcome.failed(error)
                logger.error("trial %s: %s", claim["tid"], error["message"])
        try:
            if outcome is not None and not job.cancelled:
                assert outcome.state is not None  # the task evaluates without a cancel event: DONE or ERROR
                self.queue.finish(claim, outcome.state, outcome.result, outcome.error,
                                  attachments=outcome.attachments or None)
        finally:
            with self._lock:
                self._jobs.pop(claim["_id"], None)
            self._wake.set()

    def end(self, stop_reason: str | None) -> None:
        """Cancel the running trials' Spark jobs (they go back to NEW; after an early stop the
        queued trials, those included, become CANCEL) and end as :class:`QueueSession`."""
        try:
            self._cancel_running()
        finally:
            try:
                super().end(stop_reason)
            finally:
                try:
                    self._beat("exited")
                    self._broadcast.unpersist()
                except Exception as e:  # noqa: BLE001 - never hide why fmin is ending
                    logger.debug("SparkTrials clean-up: %s", e)

    def _cancel_running(self) -> None:
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.cancelled = True
            try:
                self._sc.cancelJobGroup(job.group)
            except Exception as e:  # noqa: BLE001
                logger.warning("could not cancel the Spark job of trial %s: %s", job.claim["tid"], e)
        deadline = time.monotonic() + CANCEL_WAIT
        try:
            for job in jobs:
                if job.thread is not None:
                    job.thread.join(max(0.0, deadline - time.monotonic()))
        except KeyboardInterrupt:
            logger.warning("interrupted again: not waiting for the cancelled Spark jobs")
            raise
        finally:
            for job in jobs:
                if self.queue.release(job.claim):
                    logger.info("trial %s: its Spark job was cancelled; back to NEW", job.claim["tid"])
