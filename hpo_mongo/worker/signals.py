"""SIGTERM/SIGINT handling for the worker: the first signal asks to stop, the second to release now.

``StopSignals(on_signal).install()`` (main thread only) replaces the SIGTERM and SIGINT handlers and
calls ``on_signal(signum, count)`` from the handler: the worker (``Worker.on_signal``) stops
claiming at the first signal and gives the running trial its grace period, and releases it at
once at the second. ``uninstall()`` restores the previous handlers.
"""
from __future__ import annotations

import logging
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

    def install(self) -> "StopSignals":
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("signal handlers can only be installed from the main thread")
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

    def __enter__(self) -> "StopSignals":
        return self.install()

    def __exit__(self, *exc) -> None:
        self.uninstall()

    def _handle(self, signum: int, frame) -> None:  # noqa: ARG002
        self.count += 1
        name = signal.Signals(signum).name
        if self.count == 1:
            logger.warning("%s received: no new trials will be claimed; the running trial (if any) may finish "
                           "within the grace period, then it is released. Send it again to release at once.", name)
        else:
            logger.warning("%s received again: releasing the running trial now", name)
        if self.on_signal is not None:
            try:
                self.on_signal(signum, self.count)
            except Exception:  # noqa: BLE001 - never raise from a signal handler
                logger.exception("signal callback failed")
