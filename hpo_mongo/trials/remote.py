"""A :class:`~hpo_mongo.trials.queue.JobQueue` in another process: the queue's server and its proxy.

The local parallel mode keeps its :class:`~hpo_mongo.trials.memory_queue.MemoryJobQueue` in the
driver; worker processes reach it through a :class:`RemoteJobQueue` over a
``multiprocessing`` connection (a pipe or a local socket), served by a :class:`QueueServer`
thread in the driver. Every call is one request and one reply; the queue's invariants hold
because each call runs as one step of the served queue. The protocol's methods take and return
plain data, so the proxy adds nothing but transport: it passes the same contract suite.

A lost connection (the driver exited) raises :class:`~hpo_mongo.exceptions.StoreUnavailable` in
the caller, as an unreachable MongoDB would; exceptions raised by the served queue are re-raised
in the caller with their type.
"""
from __future__ import annotations

import datetime as _dt
import logging
import threading
import time
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Iterable, Mapping, Sequence

from ..exceptions import StoreUnavailable
from .queue import ANY_EXPERIMENT, CLAIM_KEYS, JobQueue

logger = logging.getLogger("hpo_mongo.queue")

#: the methods a proxy may call: those the protocol declares, except ``close`` (a proxy closes its
#: own connection; the served queue belongs to whoever serves it)
QUEUE_METHODS = frozenset(name for name, value in vars(JobQueue).items()
                          if callable(value) and not name.startswith("_")) - {"close"}


class QueueServer:
    """Serves one queue to any number of connections from a background thread.

    ``on_call(name)`` (optional) is called in that thread after each call it served, with the
    method's name: the driver of the local parallel mode wakes up as soon as a worker finished or
    released a trial, instead of at its next poll.
    """

    def __init__(self, queue: JobQueue, *, name: str = "hpo-mongo-queue-server",
                 on_call: Callable[[str], None] | None = None):
        self.queue = queue
        self._on_call = on_call
        self._conns: list[Connection] = []
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = _pipe()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)

    def start(self) -> "QueueServer":
        self._thread.start()
        return self

    def add(self, conn: Connection) -> None:
        """Serve one more connection (the server end of a pipe or an accepted socket)."""
        with self._lock:
            self._conns.append(conn)
        self._wake_w.send_bytes(b"x")

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake_w.send_bytes(b"x")
        if self._thread.is_alive():
            self._thread.join(timeout)
        with self._lock:
            for c in self._conns:
                c.close()
            self._conns.clear()

    def _serve(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                conns = [c for c in self._conns if not c.closed]
            for ready in wait([self._wake_r, *conns]):
                if ready is self._wake_r:
                    self._wake_r.recv_bytes()
                    continue
                self._answer(ready)  # type: ignore[arg-type]

    def _answer(self, conn: Connection) -> None:
        try:
            name, args, kwargs = conn.recv()
        except (EOFError, OSError):
            with self._lock:
                if conn in self._conns:
                    self._conns.remove(conn)
            conn.close()
            return
        try:
            if name not in QUEUE_METHODS:
                raise AttributeError(f"{name!r} is not a JobQueue method")
            reply = ("ok", getattr(self.queue, name)(*args, **kwargs))
        except Exception as e:  # noqa: BLE001 - sent back and re-raised in the caller
            reply = ("error", e)
        try:
            conn.send(reply)
        except Exception as e:  # noqa: BLE001 - e.g. an exception that does not pickle
            try:
                conn.send(("error", StoreUnavailable(f"the queue could not send its reply to {name}: {e}")))
            except (OSError, EOFError):
                pass
        if self._on_call is not None:
            try:
                self._on_call(name)
            except Exception:  # noqa: BLE001 - a listener's error must not stop the server
                logger.exception("QueueServer on_call(%r) failed", name)


def _pipe() -> tuple[Connection, Connection]:
    from multiprocessing import Pipe
    r, w = Pipe(duplex=False)
    return r, w


class RemoteJobQueue:
    """A :class:`~hpo_mongo.trials.queue.JobQueue` proxy (thread-safe): over a connection to a
    :class:`QueueServer`, or through ``call(name, args, kwargs)`` (another transport, e.g. a
    trial's pipe to its worker, which answers with its own queue)."""

    def __init__(self, conn: Connection | None = None, *,
                 call: Callable[[str, tuple, dict], Any] | None = None):
        if (conn is None) == (call is None):
            raise ValueError("RemoteJobQueue takes a connection or a call function")
        self._conn = conn
        self._transport = call
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close this proxy's connection (the served queue stays open)."""
        if self._conn is not None:
            self._conn.close()

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if self._transport is not None:
            return self._transport(name, args, kwargs)
        assert self._conn is not None
        with self._lock:
            try:
                self._conn.send((name, args, kwargs))
                kind, value = self._conn.recv()
            except (EOFError, OSError, BrokenPipeError) as e:
                raise StoreUnavailable(f"the process holding the trial queue is gone ({type(e).__name__}) "
                                       f"during {name}") from e
        if kind == "error":
            raise value
        return value

    # the protocol, method by method (see hpo_mongo.trials.queue for each contract)
    def describe(self) -> str:
        return self._call("describe")

    def outcome_check(self) -> Callable[[Mapping[str, Any], Mapping[str, Any]], None]:
        return self._call("outcome_check")

    def prepare(self) -> None:
        return self._call("prepare")

    def now(self) -> _dt.datetime:
        return self._call("now")

    def experiment(self, exp_key: str | None) -> dict | None:
        return self._call("experiment", exp_key)

    def save_experiment(self, exp_key: str | None, fields: Mapping[str, Any]) -> None:
        return self._call("save_experiment", exp_key, dict(fields))

    def beat_driver(self, exp_key: str | None) -> bool:
        return self._call("beat_driver", exp_key)

    def experiment_keys(self) -> list[str | None]:
        return self._call("experiment_keys")

    def experiment_summaries(self) -> list[dict]:
        return self._call("experiment_summaries")

    def delete_experiment(self, exp_key: str | None) -> dict:
        return self._call("delete_experiment", exp_key)

    def put_domain(self, digest: str, blob: bytes, exp_key: str | None) -> None:
        return self._call("put_domain", digest, blob, exp_key)

    def domain(self, digest: str) -> bytes | None:
        return self._call("domain", digest)

    def attachment(self, exp_key: str | None, name: str) -> bytes | None:
        return self._call("attachment", exp_key, name)

    def set_attachment(self, exp_key: str | None, name: str, blob: bytes | None) -> None:
        return self._call("set_attachment", exp_key, name, blob)

    def attachment_names(self, exp_key: str | None) -> list[str]:
        return self._call("attachment_names", exp_key)

    def trial_attachment(self, job_id: Any, name: str) -> bytes | None:
        return self._call("trial_attachment", job_id, name)

    def trial_attachment_names(self, job_id: Any) -> list[str]:
        return self._call("trial_attachment_names", job_id)

    def set_trial_attachment(self, job: Mapping[str, Any], name: str, blob: bytes | None) -> bool:
        return self._call("set_trial_attachment", _claim(job), name, blob)

    def new_tids(self, n: int) -> list[int]:
        return self._call("new_tids", n)

    def reserve_tids(self, above: int) -> None:
        return self._call("reserve_tids", above)

    def last_tid(self) -> int | None:
        return self._call("last_tid")

    def insert(self, docs: Sequence[Mapping[str, Any]]) -> list[Any]:
        return self._call("insert", [dict(d) for d in docs])

    def changed(self, exp_key: str | None, since: Any = None) -> tuple[list[dict], Any]:
        return self._call("changed", exp_key, since)

    def versions(self, exp_key: str | None) -> dict[Any, int]:
        return self._call("versions", exp_key)

    def existing(self, job_ids: Iterable[Any]) -> list[Any]:
        return self._call("existing", list(job_ids))

    def restore(self, docs: Sequence[Mapping[str, Any]]) -> int:
        return self._call("restore", [dict(d) for d in docs])

    def adopt_domain(self, exp_key: str | None, digest: str) -> int:
        return self._call("adopt_domain", exp_key, digest)

    def wait_for_changes(self, exp_key: Any, timeout: float) -> None:
        """Sleeps ``timeout`` here: a served queue answers one call at a time, so nothing blocks it."""
        time.sleep(max(0.0, timeout))

    def count(self, exp_key: Any, states: Iterable[int] | None = None) -> int:
        return self._call("count", exp_key, None if states is None else list(states))

    def cancel_new(self, exp_key: str | None, job_ids: Iterable[Any] | None = None) -> int:
        return self._call("cancel_new", exp_key, None if job_ids is None else list(job_ids))

    def delete_jobs(self, exp_key: str | None, job_ids: Iterable[Any] | None = None) -> int:
        return self._call("delete_jobs", exp_key, None if job_ids is None else list(job_ids))

    def withdraw_new(self, exp_key: str | None, job_ids: Iterable[Any]) -> list[Any]:
        return self._call("withdraw_new", exp_key, list(job_ids))

    def claim(self, owner: str, *, exp_key: Any = ANY_EXPERIMENT, worker: Mapping[str, Any] | None = None,
              lease_timeout: float, max_attempts: int) -> dict | None:
        return self._call("claim", owner, exp_key=exp_key, worker=None if worker is None else dict(worker),
                          lease_timeout=lease_timeout, max_attempts=max_attempts)

    def renew_lease(self, claim: Mapping[str, Any]) -> bool:
        return self._call("renew_lease", _claim(claim))

    def checkpoint(self, claim: Mapping[str, Any], result: Mapping[str, Any] | None = None) -> bool:
        return self._call("checkpoint", _claim(claim), None if result is None else dict(result))

    def finish(self, claim: Mapping[str, Any], state: int, result: Mapping[str, Any],
               error: Mapping[str, Any] | None = None,
               attachments: Mapping[str, bytes] | None = None) -> bool:
        return self._call("finish", _claim(claim), state, dict(result), None if error is None else dict(error),
                          None if attachments is None else dict(attachments))

    def release(self, claim: Mapping[str, Any], *, count_as_lost: bool = False) -> bool:
        return self._call("release", _claim(claim), count_as_lost=count_as_lost)

    def requeue_stale(self, exp_key: Any = ANY_EXPERIMENT, *, default_lease: float,
                      default_max_attempts: int) -> list[dict]:
        return self._call("requeue_stale", exp_key, default_lease=default_lease,
                          default_max_attempts=default_max_attempts)

    def report(self, claim: Mapping[str, Any], step: int, value: float) -> bool:
        return self._call("report", _claim(claim), int(step), float(value))

    def reports_at(self, exp_key: str | None, step: int, *, reached: bool = False,
                   exclude_tids: Sequence[int] = ()) -> dict[str, list]:
        return self._call("reports_at", exp_key, int(step), reached=reached, exclude_tids=list(exclude_tids))

    def completed_at_least(self, exp_key: str | None, n: int) -> bool:
        return self._call("completed_at_least", exp_key, int(n))

    def beat_worker(self, worker_id: str, fields: Mapping[str, Any]) -> None:
        return self._call("beat_worker", worker_id, dict(fields))

    def workers(self, *, include_exited: bool = False) -> list[dict]:
        return self._call("workers", include_exited=include_exited)

    def find(self, exp_key: str | None, *, states: Iterable[int] | None = None, sort: str = "tid",
             limit: int | None = None, reverse: bool = False, full: bool = False) -> list[dict]:
        return self._call("find", exp_key, states=None if states is None else list(states), sort=sort,
                          limit=limit, reverse=reverse, full=full)

    def trial(self, tid: int, exp_key: Any = ANY_EXPERIMENT) -> dict | None:
        return self._call("trial", tid, exp_key)

    def count_by_state(self, exp_key: Any = ANY_EXPERIMENT) -> dict[str, int]:
        return self._call("count_by_state", exp_key)

    def finished_since(self, exp_key: str | None, since: _dt.datetime) -> int:
        return self._call("finished_since", exp_key, since)

    def first_claim(self, exp_key: str | None) -> _dt.datetime | None:
        return self._call("first_claim", exp_key)

    def requeue_unchanged(self, doc: Mapping[str, Any], *, lost_lease: bool = False) -> bool:
        return self._call("requeue_unchanged", {k: doc.get(k) for k in ("_id", "state", "version")},
                          lost_lease=lost_lease)

    def cancel_unchanged(self, doc: Mapping[str, Any], *, failure: str, end_time: _dt.datetime | None = None) -> bool:
        return self._call("cancel_unchanged", {k: doc.get(k) for k in ("_id", "state", "version")},
                          failure=failure, end_time=end_time)


def _claim(job: Mapping[str, Any]) -> dict:
    """The part of a claim the queue reads (:data:`CLAIM_KEYS`; documents can be large)."""
    return {k: job.get(k) for k in CLAIM_KEYS if k in job}
