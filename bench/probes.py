"""Measurement probes for bench/throughput.py, installed in its subprocesses by bench/shim/sitecustomize.py.

Nothing in hpo_mongo is changed: the probes register a pymongo command listener (every command
the process sends, by command and collection, with its client-side round-trip time; and the
monitor's server heartbeats) and, when asked, wrap a few methods of the driver and the worker with
wall-clock timers (exclusive time, main thread only), to show where a trial's time goes.

Environment (read once, at interpreter start-up, by the shim):

* ``HPO_BENCH_PROBE=/path/prefix`` — install the listener; snapshots are appended as JSON lines to
  ``/path/prefix.<pid>.jsonl`` on SIGUSR1, on :func:`snapshot` and at exit;
* ``HPO_BENCH_TIMING=1`` — also install the timing hooks;
* ``HPO_BENCH_ROLE`` — a label written into every snapshot (``driver``, ``worker-3``, ...).

The bench takes one snapshot when a measured run starts and one when it ends, and reports the
difference, so start-up and shutdown are not counted.
"""
from __future__ import annotations

import atexit
import functools
import json
import os
import signal
import threading
import time
from collections import defaultdict
from typing import Any, Callable

ENV_PROBE = "HPO_BENCH_PROBE"
ENV_TIMING = "HPO_BENCH_TIMING"
ENV_ROLE = "HPO_BENCH_ROLE"

_lock = threading.Lock()
_counts: dict[str, int] = defaultdict(int)
_rtt: dict[str, float] = defaultdict(float)
_heartbeats = [0]
_timing: dict[str, float] = defaultdict(float)
_calls: dict[str, int] = defaultdict(int)
_path: str | None = None
_installed = False


# ----------------------------------------------------------------------------- command listener
def _key(event: Any) -> str:
    name = event.command_name
    target = event.command.get(name) if hasattr(event, "command") else None
    return f"{name} {target}" if isinstance(target, str) else name


def _listener_classes():
    from pymongo import monitoring

    class Commands(monitoring.CommandListener):
        """Counts commands by ``"<command> <collection>"`` and sums their round-trip times."""

        def __init__(self) -> None:
            self._started: dict[int, str] = {}

        def started(self, event: Any) -> None:
            k = _key(event)
            with _lock:
                _counts[k] += 1
                self._started[event.request_id] = k

        def _done(self, event: Any) -> None:
            with _lock:
                k = self._started.pop(event.request_id, None)
                if k is not None:
                    _rtt[k] += event.duration_micros / 1e6

        succeeded = failed = _done

    class Heartbeats(monitoring.ServerHeartbeatListener):
        """Counts the monitor's heartbeats (not reported as commands)."""

        def started(self, event: Any) -> None:
            pass

        def succeeded(self, event: Any) -> None:
            with _lock:
                _heartbeats[0] += 1

        def failed(self, event: Any) -> None:
            with _lock:
                _heartbeats[0] += 1

    return Commands(), Heartbeats()


# ----------------------------------------------------------------------------- timing hooks
_stack = threading.local()


class _Section:
    """Exclusive wall time of a named section: time spent in nested sections is not counted twice."""

    __slots__ = ("name", "t0", "paused")

    def __init__(self, name: str):
        self.name, self.t0, self.paused = name, 0.0, 0.0


def _timed_call(name: Callable[..., str] | str, fn: Callable, args: tuple, kwargs: dict) -> Any:
    if threading.current_thread() is not threading.main_thread():
        return fn(*args, **kwargs)
    st = getattr(_stack, "s", None)
    if st is None:
        st = _stack.s = []
    sec = _Section("")
    now = time.perf_counter()
    if st:
        st[-1].paused += now  # the parent's clock stops while the child runs
    sec.t0 = now
    st.append(sec)
    result = None
    try:
        result = fn(*args, **kwargs)
        return result
    finally:
        end = time.perf_counter()
        st.pop()
        label = name(result) if callable(name) else name
        with _lock:
            _timing[label] += (end - sec.t0) + sec.paused
            _calls[label] += 1
        if st:
            st[-1].paused -= end


def timed(name: Callable[..., str] | str, fn: Callable) -> Callable:
    """``fn`` wrapped with a timer; ``name`` is a label or a function of the result giving one."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return _timed_call(name, fn, args, kwargs)
    return wrapper


def _in(label: str) -> Callable[[Any], str]:
    return lambda _result: label


def _patch(cls: Any, attr: str, name: Callable[..., str] | str) -> None:
    setattr(cls, attr, timed(name, getattr(cls, attr)))


def install_timing() -> None:
    """Wrap the driver's and the worker's steps (see the section names in bench/README.md)."""
    from hpo_mongo import driver
    from hpo_mongo.trials import queued
    from hpo_mongo.trials.mongo import store
    from hpo_mongo.worker import executor, loop

    in_suggest = threading.local()

    def refresh_label(_result: Any) -> str:
        return "refresh after insert" if getattr(in_suggest, "on", False) else "refresh (poll loop)"

    orig_suggest = driver._FMinLoop._suggest

    def suggest(self: Any, n: int) -> int:
        in_suggest.on = True
        algo = self.algo
        self.algo = timed("suggest (algorithm)", algo)
        try:
            return orig_suggest(self, n)
        finally:
            self.algo = algo
            in_suggest.on = False

    driver._FMinLoop._suggest = timed("suggest loop (other)", suggest)
    _patch(store.MongoTrials, "refresh", refresh_label)
    _patch(store.MongoTrials, "new_trial_ids", "tid round trip")
    _patch(store.MongoTrials, "flush_staged", "insert (one per batch)")
    _patch(store.MongoTrials, "count_by_state_unsynced", "count NEW (server)")
    _patch(queued.QueueSession, "advance", "wait for workers")
    _patch(queued.QueueSession, "tick", "tick (heartbeat, requeue, live workers)")
    _patch(queued.QueueSession, "queue_target", "queue target (python)")
    _patch(queued.QueueSession, "after_batch", "count after a batch (server)")
    _patch(driver._FMinLoop, "_counts", "counts (python)")

    _patch(loop.Worker, "claim", lambda doc: "claim (got a trial)" if doc is not None else "claim (empty)")
    _patch(loop.Worker, "_sleep", "poll sleep (idle)")
    _patch(loop.Worker, "_maybe_requeue", "requeue check")
    _patch(loop.Worker, "report", "result write")
    _patch(loop.Worker, "process", "process (other)")
    _patch(loop.Worker, "run_trial", "run_trial (other)")
    _patch(executor.Executor, "prepare", "fork ahead (executor.prepare)")
    _patch(executor.Executor, "_fork", "fork (ahead, or with the trial)")
    _patch(executor.Executor, "_wait", "trial in the child (executor)")
    _patch(executor.Executor, "_run_inprocess", "evaluate in-process")



# ----------------------------------------------------------------------------- snapshots
def state(tag: str = "") -> dict:
    """The counters so far (a snapshot)."""
    t = os.times()
    with _lock:
        return {"pid": os.getpid(), "role": os.environ.get(ENV_ROLE, ""), "tag": tag,
                "t": time.monotonic(), "cpu": t.user + t.system,
                "counts": dict(_counts), "rtt": dict(_rtt), "heartbeats": _heartbeats[0],
                "timing": dict(_timing), "calls": dict(_calls)}


def snapshot(tag: str = "") -> None:
    """Append a snapshot to this process's probe file (no-op when the probes are not installed)."""
    if _path is None or os.getpid() != _owner_pid:
        return
    line = json.dumps(state(tag))
    with open(_path, "a") as f:
        f.write(line + "\n")


_owner_pid = -1


def install() -> None:
    """Install what the environment asks for (called by the shim at start-up)."""
    global _installed, _path, _owner_pid
    prefix = os.environ.get(ENV_PROBE)
    if _installed or not prefix:
        return
    _installed = True
    from pymongo import monitoring
    for listener in _listener_classes():
        monitoring.register(listener)
    if os.environ.get(ENV_TIMING) == "1":
        install_timing()
    _owner_pid = os.getpid()  # forked trial children inherit the probes but never write
    _path = f"{prefix}.{_owner_pid}.jsonl"
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGUSR1, lambda signum, frame: snapshot("signal"))
    atexit.register(snapshot, "exit")


def read(prefix: str) -> list[dict]:
    """Every snapshot written under ``prefix`` (all processes), in file order."""
    import glob
    out = []
    for p in sorted(glob.glob(f"{glob.escape(prefix)}.*.jsonl")):
        with open(p) as f:
            out.extend(json.loads(line) for line in f if line.strip())
    return out


def delta(a: dict, b: dict) -> dict:
    """``b - a`` for two snapshots of one process."""
    def sub(x: dict, y: dict) -> dict:
        return {k: y.get(k, 0) - x.get(k, 0) for k in set(x) | set(y) if y.get(k, 0) - x.get(k, 0)}
    return {"pid": b["pid"], "role": b["role"], "seconds": b["t"] - a["t"], "cpu": b["cpu"] - a["cpu"],
            "counts": sub(a["counts"], b["counts"]), "rtt": sub(a["rtt"], b["rtt"]),
            "heartbeats": b["heartbeats"] - a["heartbeats"],
            "timing": sub(a["timing"], b["timing"]), "calls": sub(a["calls"], b["calls"])}
