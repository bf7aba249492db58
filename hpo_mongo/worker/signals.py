"""SIGTERM/SIGINT handling for the worker: the first signal asks to stop, the second to release now.

``StopSignals(on_signal).install()`` (main thread only) replaces the SIGTERM and SIGINT handlers and
calls ``on_signal(signum, count)`` for each signal: the worker (``Worker.on_signal``) stops
claiming at the first signal and gives the running trial its grace period, and releases it at
once at the second. ``uninstall()`` restores the previous handlers.

The handler itself only counts and writes one record to a pipe; a dispatcher thread logs and calls
``on_signal``. A handler runs in the main thread between two bytecodes, possibly while that thread
holds a lock (an ``Event.wait`` holds its condition's lock on the way in and out, a pymongo call its
pool's): taking the same lock from the handler would deadlock the worker.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType
from typing import Any, Callable

logger = logging.getLogger("hpo_mongo.worker")

DEFAULT_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    def __init__(self, signals: tuple[int, ...] = DEFAULT_SIGNALS,
                 on_signal: Callable[[int, int], None] | None = None):
        self.signals = tuple(signals)
        self.on_signal = on_signal
        self.count = 0
        # what signal.signal returned: a handler, SIG_DFL / SIG_IGN, or None (not installed from Python)
        self._previous: dict[int, Callable[[int, FrameType | None], Any] | int | signal.Handlers | None] = {}
        self._pipe: tuple[int, int] | None = None
        self._dispatcher: threading.Thread | None = None

    def install(self) -> "StopSignals":
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("signal handlers can only be installed from the main thread")
        self._pipe = os.pipe()
        self._dispatcher = threading.Thread(target=self._dispatch, args=(self._pipe[0],),
                                            name="hpo-mongo-signals", daemon=True)
        self._dispatcher.start()
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        for sig, prev in self._previous.items():
            try:
                signal.signal(sig, prev if prev is not None else signal.SIG_DFL)
            except (ValueError, TypeError):  # not the main thread / odd previous handler
                pass
        self._previous.clear()
        if self._pipe is not None:
            # the records left, then an end record (a forked child may hold a copy of the write end:
            # no EOF to wait for)
            os.write(self._pipe[1], b"\0\0")
            os.close(self._pipe[1])
            if self._dispatcher is not None:
                self._dispatcher.join(timeout=5.0)
            self._pipe = self._dispatcher = None

    def __enter__(self) -> "StopSignals":
        return self.install()

    def __exit__(self, *exc) -> None:
        self.uninstall()

    def _handle(self, signum: int, frame) -> None:  # noqa: ARG002
        """The signal handler: count, and pass (signum, count) to the dispatcher; takes no lock."""
        self.count += 1
        if self._pipe is not None:
            os.write(self._pipe[1], bytes((signum & 0xFF, min(self.count, 0xFF))))

    def _dispatch(self, fd: int) -> None:
        try:
            while True:
                record = os.read(fd, 2)
                if len(record) < 2 or record[0] == 0:
                    return  # uninstalled
                self._notify(record[0], record[1])
        finally:
            os.close(fd)

    def _notify(self, signum: int, count: int) -> None:
        name = signal.Signals(signum).name
        if count == 1:
            logger.warning("%s received: no new trials will be claimed; the running trial (if any) may finish "
                           "within the grace period, then it is released. Send it again to release at once.", name)
        else:
            logger.warning("%s received again: releasing the running trial now", name)
        if self.on_signal is not None:
            try:
                self.on_signal(signum, count)
            except Exception:  # noqa: BLE001 - the dispatcher outlives a failing callback
                logger.exception("signal callback failed")
