"""A local worker process: what :class:`~hpo_mongo.trials.parallel.ParallelTrials` starts.

The process runs the same :class:`~hpo_mongo.worker.loop.Worker` as ``hpo-mongo-worker`` (claim,
evaluate with the executor, report; heartbeat and leases), on a
:class:`~hpo_mongo.trials.remote.RemoteJobQueue` over a connection to the queue server thread of
its driver. A second, one-way connection carries the driver's orders: first the worker's
configuration, then ``("stop", {"release": bool})``. Its end of file means the driver is gone:
the running trial is ended at once (its whole process group) and the worker exits, so no worker
outlives its driver, however the driver ended.

A worker ignores SIGINT (the driver decides what a Ctrl-C means) and runs in a session of its own
(a terminal's Ctrl-C reaches only the driver; the driver can end the worker's process group).
SIGTERM from elsewhere is handled as by ``hpo-mongo-worker`` (stop claiming, grace period, release).

Two ways to start one (``start_method``):

- ``spawn``: a fresh interpreter (``python -c`` :data:`BOOT`), so the thread limits
  (:func:`thread_env`) are in its environment before any library initialises, and the user's
  script is never imported again (the objective arrives pickled by value, as on a Mongo worker);
- ``fork``: a copy of the driver (:func:`run_forked`): fast to start, but libraries the driver
  already initialised keep their threads, and a driver that ran OpenMP code can deadlock its
  children.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from multiprocessing.connection import Connection
from typing import Any, Iterable, Mapping

logger = logging.getLogger("hpo_mongo.worker")

#: the variables that cap the threads of the usual native libraries (OpenMP, OpenBLAS, MKL, BLIS,
#: Apple Accelerate, numexpr); read by each library when it initialises
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                   "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")

#: the program of a spawned worker: ``python -c BOOT queue_fd control_fd sys_path_json``; the
#: driver's ``sys.path`` comes first, so the worker imports what the driver imports
BOOT = ("import json, sys; _p = json.loads(sys.argv[3]); sys.path[:] = _p + [p for p in sys.path if p not in _p]; "
        "from hpo_mongo.worker.local import main; sys.exit(main(int(sys.argv[1]), int(sys.argv[2])))")


def thread_env(threads: int, environ: Mapping[str, str], *, override: bool) -> dict[str, str]:
    """The variables of :data:`THREAD_ENV_VARS` set to ``threads``: all of them with ``override``,
    else only those not set in ``environ`` (a value the user exported wins over the default)."""
    return {name: str(int(threads)) for name in THREAD_ENV_VARS if override or name not in environ}


def main(queue_fd: int, control_fd: int) -> int:
    """A spawned worker: serve on the two inherited connections; return the exit code."""
    return serve(Connection(queue_fd), Connection(control_fd, writable=False))


def run_forked(queue_conn: Connection, control: Connection, close: Iterable[Connection],
               env: Mapping[str, str]) -> None:
    """A forked worker (a ``multiprocessing`` fork target): leave the driver's session, drop the
    driver's ends of every worker connection it inherited, set the thread limits, serve."""
    os.setsid()
    for conn in close:
        try:
            conn.close()
        except OSError:
            pass
    os.environ.update(env)
    sys.exit(serve(queue_conn, control))


def serve(queue_conn: Connection, control: Connection) -> int:
    """Run one :class:`~hpo_mongo.worker.loop.Worker` with the configuration the driver sends first."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _, boot = control.recv()  # ("boot", {config, name, log_level})
    except (EOFError, OSError):
        return 3  # the driver went away before configuring this worker
    _configure_logging(boot.get("name", "worker"), int(boot.get("log_level", logging.WARNING)))
    from ..trials.remote import RemoteJobQueue
    from .loop import Worker, WorkerConfig
    from .signals import StopSignals
    worker = Worker(RemoteJobQueue(queue_conn), WorkerConfig(**boot["config"]))
    StopSignals((signal.SIGTERM,), on_signal=worker.on_signal).install()
    threading.Thread(target=_follow_driver, args=(control, worker), name="hpo-mongo-driver-orders",
                     daemon=True).start()
    return worker.run()


def _follow_driver(control: Connection, worker: Any) -> None:
    """Apply the driver's orders; when its connection ends, end the running trial and stop."""
    while True:
        try:
            kind, args = control.recv()
        except (EOFError, OSError):
            if not worker.stopping:
                logger.warning("the driver is gone: ending the running trial and exiting")
            worker.on_signal(signal.SIGTERM, 2)
            return
        if kind == "stop":
            if args.get("release"):
                worker.release_now("fmin ended")
            else:
                worker.on_signal(signal.SIGTERM, 1)


def _configure_logging(name: str, level: int) -> None:
    """This process's hpo_mongo records go to stderr, prefixed with the worker's name."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"hpo_mongo {name} (pid %(process)d): %(levelname)s %(message)s"))
    log = logging.getLogger("hpo_mongo")
    for old in list(log.handlers):
        log.removeHandler(old)
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False
