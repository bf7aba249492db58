"""Time as the inspection reads it: the queue's clock (the server's, for MongoDB)."""
from __future__ import annotations

import datetime as _dt

from ..exceptions import StoreError
from ..trials import leases
from ..trials.queue import JobQueue


def server_now(queue: JobQueue) -> _dt.datetime:
    """The queue's clock as aware UTC: heartbeats and claims are stamped with it, so ages computed
    from it do not depend on this machine's clock. An unreachable queue raises
    :class:`~hpo_mongo.exceptions.StoreUnavailable`."""
    now = leases.as_utc(queue.now())
    if now is None:
        raise StoreError(f"{queue.describe()} did not tell its time")
    return now
