"""The local worker processes of ``ParallelTrials``: started, watched, replaced and stopped by the driver.

Each runs the ordinary worker loop (:mod:`hpo_mongo.worker.local`) on the driver's queue through
its own connection; :class:`LocalWorkers` is the driver's side of them.
"""
from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import subprocess as _subprocess
import sys
import time
from multiprocessing.connection import Connection
from typing import Any, Callable

from ..exceptions import WorkerStartError
from ..trials.queue import JobQueue
from ..trials.remote import QueueServer
from . import local
from .executor import process_table

logger = logging.getLogger("hpo_mongo.trials")

#: how workers are started (see :mod:`hpo_mongo.worker.local`); the first is the default
START_METHODS = ("spawn", "fork")
#: a local worker's lease (seconds) and heartbeat: a worker that stops heartbeating loses its
#: trial after this long (one that dies is noticed at once)
LOCAL_LEASE_TIMEOUT = 10.0
LOCAL_HEARTBEAT_INTERVAL = 1.0
#: seconds the driver waits for its workers to exit when fmin ends, before killing them
STOP_TIMEOUT = 6.0
#: seconds between two claims of an idle local worker
LOCAL_WORKER_POLL = 0.02
def available_cores() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def describe_exit(code: int) -> str:
    """How a worker process ended, from its exit code (negative: the signal that killed it)."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


# ----------------------------------------------------------------------------- the worker processes
def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _children(pid: int) -> list[int]:
    """The pids of ``pid``'s children (Linux ``/proc``; empty elsewhere)."""
    return [child for child, _state, ppid, _pgrp in process_table() or () if ppid == pid]


class LocalWorker:
    """One worker process: a ``subprocess.Popen`` (spawn) or a ``multiprocessing`` process (fork),
    with the driver's ends of its queue connection and of its order pipe."""

    def __init__(self, index: int, process: Any, queue_conn: Connection, control: Connection):
        self.index, self.process = index, process
        self.queue_conn, self.control = queue_conn, control
        self.name = f"worker {index}"
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    def exitcode(self) -> int | None:
        """None while it runs; its exit code once it ended (negative: killed by that signal)."""
        if isinstance(self.process, _subprocess.Popen):
            return self.process.poll()
        return self.process.exitcode

    def order(self, kind: str, **args: Any) -> None:
        try:
            self.control.send((kind, args))
        except (OSError, EOFError, BrokenPipeError):
            pass  # it is gone already

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        """Signal the worker's process group: the worker and whatever an in-process objective left."""
        _killpg(self.pid, sig)

    def kill_trials(self, sig: int = signal.SIGKILL) -> None:
        """Signal the process group of each child of the worker (a trial's forked child leads its
        own group: the trial and every process it started). Linux only (``/proc``)."""
        for pid in _children(self.pid):
            _killpg(pid, sig)

    def close(self) -> None:
        """Close the order pipe (the queue connection belongs to the server, which drops it at its end)."""
        try:
            self.control.close()
        except OSError:
            pass


class LocalWorkers:
    """The worker processes of one run and the thread serving them the queue."""

    def __init__(self, queue: JobQueue, *, n: int, start_method: str, config: dict, env: dict[str, str],
                 log_level: int, on_call: Callable[[str], None] | None = None):
        self.n, self.start_method, self.config, self.env, self.log_level = n, start_method, config, env, log_level
        self.server = QueueServer(queue, name="hpo-mongo-parallel-queue", on_call=on_call)
        self.workers: dict[int, LocalWorker] = {}
        self._started = False

    def start(self) -> None:
        """Start the queue server and ``n`` workers (they come up in the background)."""
        self.server.start()
        self._started = True
        for i in range(self.n):
            self.workers[i] = self._start(i)

    def _start(self, index: int) -> LocalWorker:
        mine, theirs = multiprocessing.Pipe(duplex=True)
        orders_r, orders_w = multiprocessing.Pipe(duplex=False)
        try:
            if self.start_method == "fork":
                inherited = [c for w in self.workers.values() for c in (w.queue_conn, w.control)] + [mine, orders_w]
                proc: Any = multiprocessing.get_context("fork").Process(
                    target=local.run_forked, args=(theirs, orders_r, inherited, self.env),
                    name=f"hpo-mongo-worker-{index}")
                proc.start()
            else:
                if not sys.executable:
                    raise WorkerStartError("cannot start worker processes: sys.executable is empty (an embedded "
                                           "interpreter?); use ParallelTrials(start_method='fork')")
                fds = (theirs.fileno(), orders_r.fileno())
                path = json.dumps([p for p in sys.path if isinstance(p, str)])
                proc = _subprocess.Popen([sys.executable, "-c", local.BOOT, str(fds[0]), str(fds[1]), path],
                                         env={**os.environ, **self.env}, pass_fds=fds, start_new_session=True,
                                         stdin=_subprocess.DEVNULL)
        except BaseException:
            for conn in (mine, theirs, orders_r, orders_w):
                conn.close()
            raise
        theirs.close()
        orders_r.close()
        worker = LocalWorker(index, proc, mine, orders_w)
        worker.order("boot", config=self.config, name=worker.name, log_level=self.log_level)
        self.server.add(mine)
        return worker

    def reap(self) -> list[tuple[LocalWorker, int]]:
        """The workers that ended since the last call, with their exit codes (removed from the pool)."""
        dead = []
        for index, w in list(self.workers.items()):
            code = w.exitcode()
            if code is None:
                continue
            w.kill_group()  # what an in-process objective of it may have left running
            w.close()
            del self.workers[index]
            dead.append((w, code))
        return dead

    def replace(self, index: int) -> LocalWorker:
        worker = self.workers[index] = self._start(index)
        return worker

    def stop(self, *, release: bool, timeout: float = STOP_TIMEOUT) -> None:
        """Stop every worker. ``release``: running trials are released at once (their processes
        get SIGTERM, then SIGKILL); else workers stop claiming and exit when idle, and those still
        busy after ``timeout`` / 2 release theirs. What is left after ``timeout`` is killed. A
        Ctrl-C meanwhile kills at once (and is raised again once everything is gone)."""
        try:
            for w in self.workers.values():
                w.order("stop", release=release)
            start = time.monotonic()
            while any(w.exitcode() is None for w in self.workers.values()) and time.monotonic() < start + timeout:
                if not release and time.monotonic() >= start + timeout / 2:
                    release = True
                    for w in self.workers.values():
                        w.order("stop", release=True)
                time.sleep(0.02)
            late = [w for w in self.workers.values() if w.exitcode() is None]
            if late:
                logger.warning("%d worker process(es) still running %gs after fmin ended (%s): killed", len(late),
                               timeout, ", ".join(f"pid {w.pid}" for w in late))
        except KeyboardInterrupt:
            logger.warning("interrupted again: killing the worker processes now")
            self.kill()
            raise
        self.kill()

    def kill(self) -> None:
        """End every worker now (SIGKILL to the process groups of its trials, then to its own) and
        the queue server."""
        for w in self.workers.values():
            w.kill_trials(signal.SIGKILL)
            w.kill_group(signal.SIGKILL)
        for w in self.workers.values():
            try:
                if isinstance(w.process, _subprocess.Popen):
                    w.process.wait(5)
                else:
                    w.process.join(5)
            except Exception:  # noqa: BLE001 - best effort: it was sent SIGKILL
                pass
            w.close()
        self.workers.clear()
        if self._started:
            self.server.stop()
            self._started = False


# ----------------------------------------------------------------------------- the store
