"""Where a :class:`~hpo_mongo.trials.queue.JobQueue` comes from, by URL.

The worker, the driver's run session and the CLI get their queue here and then use only the
protocol, so none of them imports a backend module. Today every URL names MongoDB
(``mongodb://``, ``mongodb+srv://``, hyperopt's ``mongo://`` or a bare ``host:port/db``; see
:func:`hpo_mongo.trials.mongo.connection.parse_url`).
"""
from __future__ import annotations

from typing import Any

from .queue import JobQueue


def connect_queue(url: Any = None, **options: Any) -> JobQueue:
    """The queue at ``url`` (None: ``$HPO_MONGO_URL``); ``options`` are the backend's client options.

    Raises :class:`~hpo_mongo.exceptions.InvalidURLError` for a malformed URL (no network access
    happens here: the connection is made on first use)."""
    from .mongo.queue import MongoJobQueue
    return MongoJobQueue.connect(url, **options)

