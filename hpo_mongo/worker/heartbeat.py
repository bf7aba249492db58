"""A background thread that calls ``beat()`` every ``interval`` seconds until stopped.

The worker uses it to upsert its ``workers`` document and refresh the lease (``heartbeat``) of
the running trial, idle or busy, independently of how long the objective takes. An exception in
``beat`` is logged (once per distinct message, then at debug level) and the thread carries on: a
server outage must not kill the heartbeat, the next beat simply retries.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

logger = logging.getLogger("hpo_mongo.worker")


class Heartbeat:
    """``Heartbeat(beat, interval).start()`` … ``.stop()``; also a context manager."""

    def __init__(self, beat: Callable[[], object], interval: float, *, name: str = "hpo-mongo-heartbeat",
                 beat_now: bool = True):
        if not interval or interval <= 0:
            raise ValueError(f"heartbeat interval must be > 0 seconds, got {interval!r}")
        self.beat = beat
        self.interval = float(interval)
        self.beat_now = beat_now
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.beats = 0           # successful beats
        self.failures = 0        # consecutive failed beats
        self._last_error: str | None = None

    def start(self) -> "Heartbeat":
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> "Heartbeat":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        if not self.beat_now:
            self._sleep(self.interval)
        while not self._stop.is_set():
            t0 = time.monotonic()
            self._beat_once()
            self._sleep(max(0.0, self.interval - (time.monotonic() - t0)))

    def _sleep(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    def _beat_once(self) -> None:
        try:
            self.beat()
        except Exception as e:  # noqa: BLE001 - log and keep beating
            self.failures += 1
            msg = f"{type(e).__name__}: {e}"
            if msg != self._last_error:
                logger.warning("heartbeat failed (will retry every %.3g s): %s", self.interval, msg)
                self._last_error = msg
            else:
                logger.debug("heartbeat failed again: %s", msg)
        else:
            if self.failures:
                logger.info("heartbeat OK again after %d failed attempt(s)", self.failures)
            self.beats += 1
            self.failures = 0
            self._last_error = None
