"""hpo_mongo.worker.heartbeat and hpo_mongo.worker.signals."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from hpo_mongo.worker.heartbeat import Heartbeat
from hpo_mongo.worker.signals import StopSignals


def test_heartbeat_beats_and_stops():
    calls = []
    hb = Heartbeat(lambda: calls.append(time.monotonic()), 0.02).start()
    deadline = time.monotonic() + 2
    while len(calls) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    hb.stop()
    assert len(calls) >= 5 and not hb.alive
    n = len(calls)
    time.sleep(0.06)
    assert len(calls) == n


def test_heartbeat_survives_exceptions(caplog):
    caplog.set_level("INFO", logger="hpo_mongo.worker")
    state = {"n": 0}

    def beat():
        state["n"] += 1
        if state["n"] <= 3:
            raise ConnectionError("server away")
    with Heartbeat(beat, 0.01) as hb:
        deadline = time.monotonic() + 2
        while hb.beats < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert hb.beats >= 2 and hb.failures == 0
    msgs = [r.getMessage() for r in caplog.records]
    assert sum("heartbeat failed" in m for m in msgs) == 1  # logged once, not once per beat
    assert any("OK again after 3" in m for m in msgs)


def test_heartbeat_stop_does_not_wait_for_the_interval():
    calls = []
    hb = Heartbeat(lambda: calls.append(1), 10.0, beat_now=False).start()
    t0 = time.monotonic()
    hb.stop()
    assert time.monotonic() - t0 < 2 and not hb.alive and calls == []


def test_heartbeat_rejects_bad_interval():
    with pytest.raises(ValueError):
        Heartbeat(lambda: None, 0)


def test_signals_first_then_second():
    seen = []
    prev = signal.getsignal(signal.SIGTERM)
    with StopSignals(on_signal=lambda s, n: seen.append((s, n))) as sigs:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
        assert sigs.count == 1
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
        assert sigs.count == 2
    assert seen == [(signal.SIGTERM, 1), (signal.SIGINT, 2)]
    assert signal.getsignal(signal.SIGTERM) is prev


def test_signal_callback_does_not_run_inside_the_interrupted_thread():
    """A signal arriving while the main thread holds a lock the callback needs (Event.wait holds its
    condition's lock on the way in and out): the callback waits for the lock instead of deadlocking."""
    lock, called = threading.Lock(), threading.Event()

    def on_signal(signum, count):
        if lock.acquire(timeout=5):
            lock.release()
            called.set()
    with StopSignals(on_signal=on_signal):
        with lock:
            os.kill(os.getpid(), signal.SIGTERM)
            assert not called.wait(0.05)  # the handler ran in this thread, the callback waits for the lock
        assert called.wait(5)


def test_signals_main_thread_only():
    errors = []

    def run():
        try:
            StopSignals().install()
        except RuntimeError as e:
            errors.append(e)
    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert errors
