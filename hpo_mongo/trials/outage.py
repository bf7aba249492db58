"""Riding out an unreachable store: the one backoff policy of workers and drivers.

:func:`retry` calls an *idempotent* operation until the queue answers, sleeping with exponential
backoff (``base * 2**(n-1)`` seconds, at most ``cap``, jittered to 50-100 % so that many workers
do not retry in lockstep). An :class:`Outage` is the clock of one process's outage, shared by
every call it makes (the worker's loop and its heartbeat, the driver's refresh and its tick):
the outage begins when the first failing call of it began, is logged once when it begins and
once when it ends, and gives up — :class:`Disconnected` — once ``max_disconnect`` seconds have
passed since it began, however many calls took part. The sleeps never go past that moment.

Only :class:`~hpo_mongo.exceptions.StoreUnavailable` (and pymongo's ``ConnectionFailure``) is
retried; every other error propagates at once. A write can succeed on the server although its
reply was lost, so a non-idempotent operation retried here may run twice.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from typing import Callable, TypeVar

from ..exceptions import InvalidParameterError, StoreUnavailable

T = TypeVar("T")

_logger = logging.getLogger("hpo_mongo.outage")

#: the first delay and the longest one (seconds)
BASE_DELAY = 0.1
MAX_DELAY = 5.0


class Disconnected(StoreUnavailable):
    """The store stayed unreachable for longer than the outage allowed (``max_disconnect``)."""


def _unreachable_errors() -> tuple[type[BaseException], ...]:
    try:
        from pymongo.errors import ConnectionFailure
    except ImportError:  # pragma: no cover - pymongo is a dependency
        return (StoreUnavailable,)
    return (StoreUnavailable, ConnectionFailure)


def backoff_delay(attempt: int, base: float = BASE_DELAY, cap: float = MAX_DELAY) -> float:
    """The sleep before retry number ``attempt`` (1-based): capped exponential, jittered to 50-100 %."""
    return min(cap, base * 2 ** min(attempt - 1, 60)) * random.uniform(0.5, 1.0)


class Outage:
    """One process's outage clock (see the module docstring); thread-safe.

    ``max_disconnect`` None retries forever; ``limit_name`` names the setting in messages
    (``--max-disconnect`` for a worker, ``MongoTrials.max_disconnect`` for a driver).
    """

    def __init__(self, max_disconnect: float | None, *, limit_name: str = "max_disconnect",
                 logger: logging.Logger | None = None, clock: Callable[[], float] = time.monotonic):
        if max_disconnect is not None and max_disconnect < 0:
            raise InvalidParameterError(f"max_disconnect must be >= 0 or None, got {max_disconnect!r}")
        self.max_disconnect = max_disconnect
        self.limit_name = limit_name
        self.logger = logger if logger is not None else _logger
        self.clock = clock
        self.down_since: float | None = None
        self._lock = threading.Lock()

    def failed(self, error: BaseException, what: str, *, since: float) -> float:
        """Record a failed call that began at ``since``; return how long the outage has lasted."""
        with self._lock:
            if self.down_since is None:
                self.down_since = since
                self.logger.warning("the store is unreachable (%s: %s); retrying with backoff%s", what,
                                    _one_line(error), "" if self.max_disconnect is None else
                                    f" for up to {self.max_disconnect:g}s ({self.limit_name})")
            return self.clock() - self.down_since

    def recovered(self) -> None:
        """Record a successful call: the outage, if any, is over."""
        with self._lock:
            if self.down_since is None:
                return
            lasted, self.down_since = self.clock() - self.down_since, None
        self.logger.warning("the store is reachable again after %.1fs", lasted)

    def left(self, lasted: float) -> float | None:
        """Seconds the outage may still last (None: forever)."""
        return None if self.max_disconnect is None else self.max_disconnect - lasted


def retry(fn: Callable[[], T], *, what: str, outage: Outage | None = None, max_wait: float | None = None,
          abort: Callable[[], bool] | None = None, base: float = BASE_DELAY, cap: float = MAX_DELAY,
          logger: logging.Logger | None = None, sleep: Callable[[float], object] = time.sleep) -> T | None:
    """``fn()``, retried while the store is unreachable; only for idempotent operations (see the
    module docstring).

    ``outage``: the process's shared clock; without one, this call has its own, limited to
    ``max_wait`` seconds (None: forever). ``abort()`` true after a failure: return None without
    calling again (a worker asked to stop). Raises :class:`Disconnected` when the outage lasted
    too long, naming ``what`` and the number of attempts.
    """
    if not base > 0 or not cap >= base:
        raise InvalidParameterError(f"retry(): need 0 < base <= cap, got base={base!r} cap={cap!r}")
    if outage is None:
        outage = Outage(max_wait, logger=logger)
    errors = _unreachable_errors()
    attempt = 0
    slept = 0.0
    while True:
        started = outage.clock()
        try:
            value = fn()
        except errors as e:
            attempt += 1
            # lasted: the real clock, or the sleeps when ``sleep`` is a fake that does not wait
            lasted = max(outage.failed(e, what, since=started), slept)
            left = outage.left(lasted)
            if left is not None and left <= 0:
                raise Disconnected(
                    f"the store was unreachable during {what}: gave up after {lasted:.1f}s and {attempt} "
                    f"attempt{'s' if attempt != 1 else ''} ({outage.limit_name} {outage.max_disconnect:g}s): "
                    f"{_one_line(e)}") from e
            if abort is not None and abort():
                return None
            delay = backoff_delay(attempt, base, cap)
            if left is not None:
                delay = min(delay, left)
            outage.logger.info("still unreachable during %s (attempt %d); next attempt in %.1fs", what, attempt, delay)
            sleep(delay)
            slept += delay
            continue
        outage.recovered()
        return value


def _one_line(err: BaseException, limit: int = 400) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."
