"""``MongoTrials``: the trial store on MongoDB (pymongo 4), evaluated by ``hpo-mongo-worker`` processes.

Collections (docs/schema.md has every field): ``jobs`` (one document per trial), ``experiments``
(one per exp_key), ``counters`` (the tid sequence) and the GridFS bucket ``fs`` (the pickled
domain, attachments).

- tids are global to the database (as in hyperopt) and come from one ``counters`` document
  incremented with ``find_one_and_update($inc)``: unique under any number of concurrent drivers.
- Every write sets ``updated_at`` with ``$currentDate`` (the server's clock). ``refresh()`` is
  incremental: it asks for this experiment's documents updated since the newest ``updated_at``
  it has seen minus an overlap window (``refresh_overlap``, 2 s), and keeps per ``_id`` the
  document with the highest ``version``. Outside fmin, documents deleted by another process stay
  visible until ``delete_all`` or a new ``MongoTrials``; while fmin runs, the driver checks every
  second that the database still holds what it has seen and repairs it (``QueueSession``).
- Indexes are created by the driver when fmin starts an experiment (``MongoJobQueue.prepare``),
  never by workers: jobs unique {tid}, {exp_key, state, tid}, {exp_key, updated_at}; experiments
  unique {exp_key}.
- fmin is asynchronous: the driver only queues NEW trials (by default the number of RUNNING
  trials plus ``max(2, max_queue_len)``), refreshes and waits. When fmin stops early (timeout,
  loss_threshold, early_stop_fn), the NEW trials it queued are moved to CANCEL; when it is
  interrupted (an exception, Ctrl-C) they stay NEW, so a new fmin call resumes with them.

Nothing here uses transactions, sessions, TTL indexes or ``w=0``.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Iterable, Mapping

from pymongo.database import Database

from ...exceptions import InvalidParameterError, InvalidURLError
from ..queued import DEFAULT_POLL_INTERVAL, QueueTrials
from .connection import ENV_URL, MongoURL, parse_url, translate_errors
from .queue import DEFAULT_REFRESH_OVERLAP, MongoJobQueue

logger = logging.getLogger("hpo_mongo.mongo")


def _reconnect(url: MongoURL) -> MongoJobQueue:
    """The queue an unpickled MongoTrials of ``url`` uses outside a worker: ``url`` itself when it
    had no credentials, else ``$HPO_MONGO_URL`` (same database)."""
    if url.uri:
        return MongoJobQueue.connect(url)
    env = os.environ.get(ENV_URL, "").strip()
    if not env:
        raise InvalidURLError(
            f"cannot reconnect an unpickled MongoTrials of {url.display!r}: its URL had credentials, which are "
            f"never pickled; set {ENV_URL} to a URL of that server with credentials (its database "
            f"{url.database!r} and collection {url.collection!r} are kept)")
    base = parse_url(env)
    return MongoJobQueue.connect(dataclasses.replace(base, database=url.database, collection=url.collection))


class MongoTrials(QueueTrials):
    """Trials stored in MongoDB and evaluated by workers (hyperopt's ``MongoTrials``).

    Args:
        arg: ``mongodb://host[:port]/db[/collection]`` or ``mongodb+srv://…`` (default database
            ``hpo``, collection ``jobs``); None reads ``$HPO_MONGO_URL``. A pymongo Database
            or a :class:`~hpo_mongo.trials.mongo.queue.MongoJobQueue` is accepted too.
        exp_key: the experiment key (None is the default experiment).
        cmd, workdir: hyperopt's; ``workdir`` becomes ``misc.workdir`` of the trials fmin queues.
        refresh: load the trials now.
        poll_interval: seconds fmin waits between refreshes while workers evaluate.
        refresh_overlap: seconds subtracted from the newest ``updated_at`` seen when refreshing.
        secret / secret_file: sign the domain payload (default: ``$HPO_MONGO_SECRET``).
    Raises:
        InvalidURLError, StoreUnavailable.
    """

    def __init__(self, arg: Any = None, exp_key: str | None = None, cmd: Any = None,
                 workdir: str | None = None, refresh: bool = True, *,
                 poll_interval: float = DEFAULT_POLL_INTERVAL,
                 refresh_overlap: float = DEFAULT_REFRESH_OVERLAP,
                 secret: bytes | str | None = None, secret_file: str | None = None):
        if not (isinstance(refresh_overlap, (int, float)) and not isinstance(refresh_overlap, bool)
                and refresh_overlap >= 0):
            raise InvalidParameterError(f"The 'refresh_overlap' parameter of MongoTrials must be a number >= 0. "
                                        f"Got {refresh_overlap!r} instead.")
        self.cmd, self.workdir = cmd, workdir
        self.refresh_overlap = float(refresh_overlap)
        if exp_key is not None and not isinstance(exp_key, str):
            raise InvalidParameterError(f"The 'exp_key' parameter of MongoTrials must be a str or None. "
                                        f"Got {exp_key!r} instead.")
        super().__init__(MongoJobQueue.coerce(arg, refresh_overlap=refresh_overlap), exp_key, refresh=refresh,
                         poll_interval=poll_interval, secret=secret, secret_file=secret_file)

    # ---------------------------------------------------------------- hyperopt's names
    @property
    def handle(self) -> MongoJobQueue:
        """The queue (hyperopt's name: its ``MongoJobs`` handle)."""
        return self._queue  # type: ignore[return-value]

    @property
    def jobs(self) -> Any:
        """The pymongo ``jobs`` collection."""
        return self.handle.jobs

    @property
    def db(self) -> Database:
        return self.handle.db

    def refresh_tids(self, tids: Iterable[int] | None = None) -> None:
        """hyperopt's name; ``refresh()`` (the tids argument is ignored)."""
        self.refresh()

    def ensure_indexes(self) -> None:
        self.handle.prepare()

    def __repr__(self) -> str:
        return f"MongoTrials({self.handle.describe()!r}, exp_key={self._exp_key!r}, {len(self._trials)} trials)"

    # ---------------------------------------------------------------- pickling (never the credentials)
    def _reconnect_info(self) -> MongoURL:
        if self.handle.url is None:
            raise TypeError("a MongoTrials built from a Database object cannot be pickled; build it from a URL")
        return self.handle.url.without_credentials()

    def _reconnect(self, info: Any) -> MongoJobQueue:
        return _reconnect(info)

    def _rebind(self, queue: Any, info: Any) -> Any:
        if isinstance(queue, MongoJobQueue) and isinstance(info, MongoURL):
            return queue.on_database(info.database, info.collection)
        return queue

    # ---------------------------------------------------------------- hyperopt's delete_all(cond)
    def delete_all(self, cond: Mapping[str, Any] | None = None) -> None:
        """Delete this experiment's trials matching the Mongo filter ``cond`` (default: the whole
        experiment: trials, attachments, its document; the shared domain payload stays)."""
        if not cond:
            return super().delete_all()
        with translate_errors("deleting trials"):
            ids = [d["_id"] for d in self.jobs.find({**dict(cond), "exp_key": self._exp_key}, {"_id": 1})]
        self.handle.delete_jobs(self._exp_key, ids)
        self._forget_everything()

    def view(self, exp_key: str | None = None, refresh: bool = True) -> "MongoTrials":
        """Another MongoTrials on the same connection, for experiment ``exp_key``."""
        return MongoTrials(self.handle, exp_key=exp_key, cmd=self.cmd, workdir=self.workdir, refresh=refresh,
                           poll_interval=self.poll_interval, refresh_overlap=self.refresh_overlap,
                           secret=self._secret, secret_file=self._secret_file)

    def worker_hint(self) -> str:
        key = "" if self._exp_key is None else f" --exp-key {self._exp_key}"
        return f"hpo-mongo-worker --mongo {self.handle.describe()}{key}"
