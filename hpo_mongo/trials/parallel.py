"""``ParallelTrials``: trials evaluated in parallel by worker processes on this machine, no database.

The driver holds a :class:`~hpo_mongo.trials.memory_queue.MemoryJobQueue` and serves it from a
thread (:class:`~hpo_mongo.trials.remote.QueueServer`); while fmin runs, ``n_jobs`` local worker
processes (:mod:`hpo_mongo.worker.local`) run the same worker loop as ``hpo-mongo-worker`` on it,
each through its own connection. So everything the distributed mode does holds here too: each
trial in a forked child of its worker by default (a crash or ``trial_timeout`` fails the trial and
ends its whole process group), attachments and ``ctrl.checkpoint``, leases and requeues, the
domain pickled once with cloudpickle (closures, lambdas, objectives defined in ``__main__``),
pending-aware suggestions.

The run session (:class:`ParallelSession`, a :class:`~hpo_mongo.trials.queued.QueueSession`)
starts the workers once the domain is published, so bad input fails before any process exists.
Every step it notices dead workers: their trial goes back to NEW at once (or to ERROR on its
``max_attempts``-th loss, :mod:`~hpo_mongo.trials.leases`' rules) and a new worker takes the
place; workers that keep dying before serving stop fmin with
:class:`~hpo_mongo.exceptions.WorkerStartError`. When fmin ends, :meth:`LocalWorkers.stop` ends
them: a running trial is released (its processes get SIGTERM, then SIGKILL after
:data:`~hpo_mongo.worker.executor.KILL_GRACE` seconds), a worker still there after
:data:`~hpo_mongo.worker.pool.STOP_TIMEOUT` is killed with its process group, and a second Ctrl-C kills at once. A
released trial is CANCEL after an early stop (timeout, loss_threshold, early_stop_fn) and stays
NEW after an interruption (Ctrl-C, an exception): ``trials`` holds everything that finished,
and a later fmin resumes.

Saved runs: a ``ParallelTrials`` pickles with its queue (outside a domain payload), so
``pickle.dump(trials)``, ``save_file=`` (written at most every :data:`SAVE_EVERY` seconds and
when fmin ends) and fmin's ``trials_save_file`` all hold the whole run; loading one puts the
trials that were RUNNING back to NEW (their workers ended with the process that saved them).
"""
from __future__ import annotations

import logging
import os
import pickle
import sys
import threading
import time
import warnings
from typing import Any

from .. import _validation as v
from ..exceptions import InvalidParameterError, WorkerStartError
from . import leases
from .documents import JOB_STATE_RUNNING
from .memory_queue import MemoryJobQueue
from .queue import ANY_EXPERIMENT, CLAIM_KEYS, JobQueue
from .queued import QueueSession, QueueTrials, serving_context
from .session import Run
# the one place a store starts workers: ParallelTrials runs the worker layer's loop in local processes
from ..worker import local
from ..worker.loop import owner_id
from ..worker.pool import (LOCAL_HEARTBEAT_INTERVAL, LOCAL_LEASE_TIMEOUT, LOCAL_WORKER_POLL, START_METHODS,
                           LocalWorkers, available_cores, describe_exit)

logger = logging.getLogger("hpo_mongo.trials")

#: seconds fmin waits at most between two steps (it wakes up as soon as a trial finishes)
DEFAULT_PARALLEL_POLL = 0.1
#: workers dying before they serve, in a row, before fmin gives up (WorkerStartError)
MAX_START_FAILURES = 3
#: seconds between two writes of ``save_file`` while fmin runs
SAVE_EVERY = 1.0


def _load_saved(path: str) -> "ParallelTrials":
    """The ParallelTrials pickled in ``path`` (by ``save_file=``, ``trials_save_file`` or pickle)."""
    with open(path, "rb") as f:
        saved = pickle.load(f)
    if not isinstance(saved, ParallelTrials):
        raise InvalidParameterError(
            f"{path!r} holds a {type(saved).__name__}, not a saved ParallelTrials: a ParallelTrials resumes only "
            f"from a file written by ParallelTrials(save_file=...) or by fmin(trials_save_file=...) with a "
            f"ParallelTrials; use another file name")
    return saved


def _save(trials: "ParallelTrials", path: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        pickle.dump(trials, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)


class ParallelTrials(QueueTrials):
    """Trials evaluated by ``n_jobs`` worker processes on this machine (see the module docstring).

    Args:
        n_jobs: worker processes; -1 = one per available core (more than the cores is allowed,
            with a warning).
        exp_key: the experiment key.
        trial_timeout: seconds a trial may run; then its processes are ended and it is ERROR
            "Timeout" (in-process evaluations: Python code only).
        start_method: ``"spawn"`` (the default: a fresh interpreter per worker) or ``"fork"``
            (copies of the driver; only safe if the driver has not started threads in native
            libraries such as OpenMP or BLAS).
        subprocess: evaluate each trial in a forked child of its worker (the default: crash and
            timeout isolation, ~20 ms per trial); False evaluates in the worker process.
        save_file: a file holding the whole run (queue, results, attachments): loaded now if
            it exists (the run continues where it stopped), rewritten while fmin runs.
        threads_per_worker: the value of ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``,
            ``MKL_NUM_THREADS`` ... in the workers; default ``max(1, cores // n_jobs)``, not
            overriding a variable already exported.
        poll_interval: seconds fmin waits at most between two steps (it wakes up when a trial
            finishes).

    Class attributes: ``lease_timeout`` (10 s), ``heartbeat_interval`` (1 s),
    ``worker_poll_interval`` (0.02 s), ``max_attempts`` (3).
    """

    lease_timeout = LOCAL_LEASE_TIMEOUT
    heartbeat_interval = LOCAL_HEARTBEAT_INTERVAL
    worker_poll_interval = LOCAL_WORKER_POLL

    _queue: MemoryJobQueue

    def __init__(self, n_jobs: int = -1, *, exp_key: str | None = None, trial_timeout: float | None = None,
                 start_method: str | None = None, subprocess: bool = True,
                 save_file: str | os.PathLike | None = None, threads_per_worker: int | None = None,
                 poll_interval: float = DEFAULT_PARALLEL_POLL):
        v.validate({
            "n_jobs": (n_jobs, [v.Satisfies(lambda x: x == -1 and not isinstance(x, bool), "-1 (every core)"),
                                v.Interval(int, 1, None)]),
            "trial_timeout": (trial_timeout, [v.Interval(float, 0, None, closed="neither"), v.NONE]),
            "start_method": (start_method, [v.Satisfies(lambda m: m in START_METHODS, " or ".join(
                repr(m) for m in START_METHODS)), v.NONE]),
            "subprocess": (subprocess, [v.BOOL]),
            "save_file": (save_file, [v.NONE, v.STRING, v.InstanceOf((os.PathLike,), "a path")]),
            "threads_per_worker": (threads_per_worker, [v.Interval(int, 1, None), v.NONE]),
        }, "ParallelTrials")
        if os.name != "posix":
            raise NotImplementedError("ParallelTrials runs on Linux and macOS (it needs process groups and "
                                      "inheritable pipes); on Windows use Trials, or MongoTrials with workers")
        cores = available_cores()
        self.n_jobs = cores if n_jobs == -1 else int(n_jobs)
        if self.n_jobs > cores:
            warnings.warn(f"ParallelTrials(n_jobs={self.n_jobs}) starts more worker processes than the {cores} "
                          f"core(s) this process may use: trials will compete for them", stacklevel=2)
        self.start_method = start_method or START_METHODS[0]
        self.trial_timeout = None if trial_timeout is None else float(trial_timeout)
        self.subprocess = subprocess
        self.threads_per_worker = threads_per_worker
        self.save_file = os.fspath(save_file) if save_file else None
        secret: bytes | str | None
        queue, secret = MemoryJobQueue(), os.urandom(32)  # the key signs the payload for our own workers
        if self.save_file and os.path.exists(self.save_file):
            saved = _load_saved(self.save_file)
            queue, secret = saved._queue, saved._secret
        super().__init__(queue, exp_key, poll_interval=poll_interval, secret=secret)

    def __repr__(self) -> str:
        return (f"ParallelTrials(n_jobs={self.n_jobs}, exp_key={self._exp_key!r}, start_method={self.start_method!r}, "
                f"{len(self._trials)} trials)")

    # ---------------------------------------------------------------- what the workers get
    @property
    def queue(self) -> MemoryJobQueue:
        """The in-memory job queue this store holds (its workers reach it through the driver)."""
        return self._queue

    @property
    def threads(self) -> int:
        """The thread limit of each worker (``threads_per_worker``, else ``cores // n_jobs``)."""
        if self.threads_per_worker is not None:
            return self.threads_per_worker
        return max(1, available_cores() // self.n_jobs)

    def worker_config(self) -> dict:
        """The :class:`~hpo_mongo.worker.loop.WorkerConfig` fields of this store's workers."""
        return {"exp_key": self._exp_key, "poll_interval": self.worker_poll_interval,
                "heartbeat_interval": self.heartbeat_interval, "lease_timeout": self.lease_timeout,
                "max_attempts": self.max_attempts, "subprocess": self.subprocess,
                "trial_timeout": self.trial_timeout, "secret": self._secret, "max_disconnect": 0.0}

    def worker_env(self) -> dict[str, str]:
        """The thread-limit variables set in the workers' environment (see ``threads_per_worker``)."""
        return local.thread_env(self.threads, os.environ, override=self.threads_per_worker is not None)

    def worker_hint(self) -> str:
        return f"the {self.n_jobs} local worker processes start with fmin"

    # ---------------------------------------------------------------- fmin
    def open_session(self, run: Run) -> "ParallelSession":
        if (run.save_file and not self.save_file and os.path.exists(run.save_file)
                and self._queue.count(ANY_EXPERIMENT) == 0):
            saved = _load_saved(run.save_file)  # fmin(trials_save_file=...) with a fresh ParallelTrials: resume
            self._queue, self._secret = saved._queue, saved._secret
            self._forget_everything()
            logger.info("experiment %r: resumed from %s (%d trials)", self._exp_key, run.save_file, len(self._trials))
        return ParallelSession(self, run)

    def save(self, path: str | os.PathLike | None = None) -> None:
        """Write the whole run to ``path`` (default: ``save_file``), atomically."""
        target = os.fspath(path) if path is not None else self.save_file
        if not target:
            raise InvalidParameterError("ParallelTrials.save(): no path given and no save_file set")
        _save(self, target)

    # ---------------------------------------------------------------- pickling: with the queue, unless in a payload
    def _reconnect_info(self) -> Any:
        if serving_context() is not None:  # inside a domain payload: the worker brings its own queue
            return None
        return {"queue": self._queue, "secret": self._secret}

    def _reconnect(self, info: Any) -> JobQueue:
        if not info:
            raise TypeError("a ParallelTrials pickled inside a domain payload is loaded only by its workers")
        return info["queue"]

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        if state["_reconnect_info"] is not None:  # a saved run: the view is rebuilt from the queue
            state.update(_docs={}, _trials=[], _cursor=None, _queued_ids=[])
        return state

    def __setstate__(self, state: dict) -> None:
        info = state.get("_reconnect_info")
        super().__setstate__(state)
        if serving_context() is not None or not info:
            return
        self._secret = info["secret"]
        leases.log_events(leases.requeue_lost(self._queue, owner=None, default_max_attempts=self.max_attempts,
                                       why="the process that ran it ended before it finished"), logger)
        self.refresh()


class ParallelSession(QueueSession):
    """fmin's run on :class:`ParallelTrials`: a :class:`QueueSession` that also runs the workers."""

    trials: ParallelTrials

    def __init__(self, trials: ParallelTrials, run: Run):
        super().__init__(trials, run)  # pickles and publishes the domain: bad input fails here, nothing started
        # trials still queued from an earlier run (resumed, or interrupted) run this run's objective
        trials.queue.reassign_domain(trials.exp_key, self._digest)
        self._changed = threading.Event()
        self._start_failures = 0
        self._last_save = time.monotonic()
        self._saved_at: Any = object()
        self.pool = LocalWorkers(trials.queue, n=trials.n_jobs, start_method=trials.start_method,
                                 config=trials.worker_config(), env=trials.worker_env(),
                                 log_level=logging.getLogger("hpo_mongo.worker").getEffectiveLevel(),
                                 on_call=self._on_call)
        try:
            self.pool.start()
        except BaseException:
            self.pool.kill()
            trials._outage = None
            raise
        logger.info("experiment %r: %d local worker processes (%s, %d thread(s) each)", trials.exp_key,
                    trials.n_jobs, trials.start_method, trials.threads)

    def _on_call(self, name: str) -> None:
        if name in ("finish", "release"):  # a worker is free: fmin may queue the next trial now
            self._changed.set()

    def tick(self) -> None:
        super().tick()
        self.watch_workers()
        if self.trials.save_file and time.monotonic() - self._last_save >= SAVE_EVERY:
            self._save_if_changed()

    def watch_workers(self) -> None:
        """Requeue the trial of every worker that died and start another in its place; raise
        :class:`WorkerStartError` when they keep dying before serving."""
        q, t = self.queue, self.trials
        for w, code in self.pool.reap():
            owner = owner_id(pid=w.pid)
            docs = [doc for doc in q.workers(include_exited=True) if doc.get("owner") == owner]
            for doc in docs:  # it will not say so itself: no longer a live worker for status and queue length
                q.beat_worker(doc["_id"], {"status": "exited", "current": None})
            self._start_failures = 0 if docs else self._start_failures + 1
            why = f"its worker process ({w.name}, pid {w.pid}) {describe_exit(code)}"
            leases.log_events(leases.requeue_lost(q, owner=owner, why=why, default_max_attempts=t.max_attempts), logger)
            if self._start_failures >= MAX_START_FAILURES:
                raise WorkerStartError(
                    f"{MAX_START_FAILURES} worker processes in a row ended before serving a trial (the last one "
                    f"{describe_exit(code)}); their error output, above, says why (start method "
                    f"{t.start_method!r}, python {sys.executable})")
            logger.warning("%s (pid %d) %s; starting another", w.name, w.pid, describe_exit(code))
            self.pool.replace(w.index)

    def advance(self) -> None:
        self._changed.wait(self.trials.poll_interval)
        self._changed.clear()

    def _save_if_changed(self) -> None:
        t = self.trials
        t.refresh()
        if t._cursor != self._saved_at:
            t.save()
            self._saved_at = t._cursor
        self._last_save = time.monotonic()

    def end(self, stop_reason: str | None) -> None:
        """Stop the workers (running trials released), then as :class:`QueueSession`: released
        trials are CANCEL after an early stop, NEW after an interruption; write ``save_file``."""
        try:  # after max_evals (or an exhausted space) nothing runs: the workers just exit
            self.pool.stop(release=stop_reason not in ("max_evals", "exhausted"))
        finally:
            try:
                q = self.queue
                for doc in q.find(self.trials.exp_key, states=[JOB_STATE_RUNNING]):
                    q.release({k: doc.get(k) for k in CLAIM_KEYS})  # its worker was killed before releasing it
                super().end(stop_reason)
            finally:
                if self.trials.save_file:
                    try:
                        self.trials.save()
                    except OSError as e:  # never hide why fmin is ending
                        logger.warning("could not write %s: %s", self.trials.save_file, e)
