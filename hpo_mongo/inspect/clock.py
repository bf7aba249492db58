"""Times as the inspection reads them: the server's clock, and stored dates as aware UTC."""
from __future__ import annotations

import datetime as _dt
from typing import Any

from ..exceptions import HpoMongoError


def _utc(t: Any) -> _dt.datetime | None:
    if not isinstance(t, _dt.datetime):
        return None
    return t.replace(tzinfo=_dt.timezone.utc) if t.tzinfo is None else t.astimezone(_dt.timezone.utc)


def server_now(db: Any) -> _dt.datetime:
    """The server's clock (heartbeats are written with it); the local clock if the server does
    not tell it. An unreachable server raises :class:`StoreUnavailable`."""
    from ..exceptions import StoreUnavailable
    from ..trials.mongo.connection import server_time
    try:
        t = _utc(server_time(db))
    except StoreUnavailable:
        raise
    except HpoMongoError:
        t = None
    return t if t is not None else _dt.datetime.now(_dt.timezone.utc)


def _age(now: _dt.datetime, t: Any) -> float | None:
    t = _utc(t)
    return None if t is None else max(0.0, (now - t).total_seconds())
