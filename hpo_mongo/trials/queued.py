"""``QueueTrials``: an asynchronous trial store on any :class:`~hpo_mongo.trials.queue.JobQueue`.

The driver keeps a local view of the experiment's jobs, refreshed incrementally
(``queue.changed``), queues NEW jobs and lets workers evaluate them; :class:`QueueSession` is
what fmin does with it while it runs (publish the domain, heartbeat, apply the lease rules,
notice and repair a store that lost what the driver has seen, keep the queue filled, wait,
withdraw or leave the queued trials at the end). ``MongoTrials`` is this store on MongoDB,
``ParallelTrials`` on an in-memory queue served to local worker processes.

A ``QueueTrials`` pickles without its connection, secret or credentials (an objective that
references its trials takes them to the workers inside the domain payload); unpickled inside
:func:`serving` (a worker loading a domain) it uses that worker's queue and secret.
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import socket
import sys
import time
from typing import Any, Callable, Iterable, Iterator, Mapping, MutableMapping

from .._version import __version__
from ..exceptions import InvalidParameterError, StoreError
from . import leases
from .base import BaseTrials
from .documents import JOB_FINISHED_STATES, JOB_STATE_NEW, JOB_STATE_RUNNING, queued_doc, sonify, validate_trial_doc
from .outage import Outage, retry
from .queue import JobQueue
from .session import Run

logger = logging.getLogger("hpo_mongo.trials")

#: the ``experiments.schema_version`` this code writes (docs/schema.md)
SCHEMA_VERSION = 1
DEFAULT_POLL_INTERVAL = 0.5
#: seconds between the driver's housekeeping rounds (heartbeat, lease rules, store check) while
#: its view changes; the interval doubles while nothing changes, up to :data:`DRIVER_TICK_IDLE_MAX`
DRIVER_HEARTBEAT_EVERY = 1.0
#: the longest interval between two housekeeping rounds (well inside ``leases.DRIVER_LIVE_WITHIN``)
DRIVER_TICK_IDLE_MAX = 5.0
#: the driver's shortest wait between two refreshes while trials keep changing (seconds); it
#: doubles while nothing changes, up to the store's ``poll_interval``
MIN_WAIT = 0.005
#: seconds with queued trials, none running and no live worker before the driver says so (once)
NO_WORKER_WARNING_AFTER = 5.0
#: stop reasons after which the driver withdraws the trials it queued (CANCEL)
EARLY_STOPS = ("timeout", "loss_threshold", "early_stop_fn")

_SERVING: contextvars.ContextVar[tuple[JobQueue, bytes | str | None] | None] = contextvars.ContextVar(
    "hpo_mongo_serving", default=None)


@contextlib.contextmanager
def serving(queue: JobQueue, secret: bytes | str | None = None) -> Iterator[None]:
    """While active (in this thread), a :class:`QueueTrials` being unpickled uses ``queue`` (its
    server, its credentials) and ``secret``: a worker loads each domain inside this context, and
    the driver checks that its pickled domain loads back the same way."""
    token = _SERVING.set((queue, secret))
    try:
        yield
    finally:
        _SERVING.reset(token)


def serving_context() -> tuple[JobQueue, bytes | str | None] | None:
    """The ``(queue, secret)`` of the :func:`serving` context active in this thread, else None
    (a store deciding what its pickle carries: nothing of its queue inside a domain payload)."""
    return _SERVING.get()


def algo_name(algo: Any) -> str | None:
    """``module.qualname`` of an algorithm (through ``functools.partial``), for the experiment document."""
    fn = getattr(algo, "func", algo)
    mod, name = getattr(fn, "__module__", None), getattr(fn, "__qualname__", getattr(fn, "__name__", None))
    return f"{mod}.{name}" if mod and name else (repr(fn) if fn is not None else None)


class QueueAttachments(MutableMapping):
    """``trials.attachments``: the experiment's attachments in its queue (name → bytes)."""

    def __init__(self, queue: JobQueue, exp_key: str | None):
        self._queue, self._exp_key = queue, exp_key

    def __getitem__(self, name: str) -> bytes:
        blob = self._queue.attachment(self._exp_key, name)
        if blob is None:
            raise KeyError(name)
        return blob

    def __setitem__(self, name: str, value: bytes | str) -> None:
        self._queue.set_attachment(self._exp_key, name, value.encode() if isinstance(value, str) else value)

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(name)
        self._queue.set_attachment(self._exp_key, name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._queue.attachment_names(self._exp_key))

    def __len__(self) -> int:
        return len(self._queue.attachment_names(self._exp_key))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._queue.attachment(self._exp_key, name) is not None

    def clear(self) -> None:
        for name in list(self):
            self._queue.set_attachment(self._exp_key, name, None)


class QueueTrialAttachments(MutableMapping):
    """``trials.trial_attachments(trial)``: one trial's attachments (written at once: a user's writes)."""

    def __init__(self, queue: JobQueue, trial: Mapping[str, Any]):
        self._queue, self._trial = queue, trial

    def __getitem__(self, name: str) -> bytes:
        blob = self._queue.trial_attachment(self._trial["_id"], name)
        if blob is None:
            raise KeyError(name)
        return blob

    def __setitem__(self, name: str, value: bytes | str) -> None:
        if not self._queue.set_trial_attachment(self._trial, name, value.encode() if isinstance(value, str) else value):
            raise KeyError(f"trial {self._trial.get('tid')} is not in the store")

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(name)
        self._queue.set_trial_attachment(self._trial, name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._queue.trial_attachment_names(self._trial["_id"]))

    def __len__(self) -> int:
        return len(self._queue.trial_attachment_names(self._trial["_id"]))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._queue.trial_attachment_names(self._trial["_id"])


class QueueTrials(BaseTrials):
    """An asynchronous store on a job queue (see the module docstring).

    Args:
        queue: the :class:`~hpo_mongo.trials.queue.JobQueue`.
        exp_key: the experiment key (None is the default experiment).
        refresh: load the trials now.
        poll_interval: seconds fmin waits between refreshes while workers evaluate.
        secret / secret_file: sign the domain payload (default: ``$HPO_MONGO_SECRET``).
    """

    asynchronous = True
    #: while fmin runs, seconds the driver keeps retrying (bounded exponential backoff) when the
    #: store is unreachable before giving up with StoreUnavailable
    max_disconnect = 300.0
    #: the lease rules the driver applies to trials that record none (a worker records its own)
    max_attempts = leases.DEFAULT_MAX_ATTEMPTS
    lease_timeout = leases.DEFAULT_LEASE_TIMEOUT
    #: attributes never pickled: the connection, the signing secret, the driver's run state
    _NOT_PICKLED: tuple[str, ...] = ("_queue", "_secret", "_secret_file", "_outage", "_on_counter_behind", "_session")

    def __init__(self, queue: JobQueue, exp_key: str | None = None, *, refresh: bool = True,
                 poll_interval: float = DEFAULT_POLL_INTERVAL,
                 secret: bytes | str | None = None, secret_file: str | None = None):
        if exp_key is not None and not isinstance(exp_key, str):
            raise InvalidParameterError(f"The 'exp_key' parameter of {type(self).__name__} must be a str or None. "
                                        f"Got {exp_key!r} instead.")
        if not (isinstance(poll_interval, (int, float)) and not isinstance(poll_interval, bool) and poll_interval > 0):
            raise InvalidParameterError(f"The 'poll_interval' parameter of {type(self).__name__} must be a number "
                                        f"> 0. Got {poll_interval!r} instead.")
        super().__init__(exp_key)
        self._queue = queue
        self.poll_interval = float(poll_interval)
        self._secret, self._secret_file = secret, secret_file
        self._docs: dict[Any, dict] = {}
        self._inserted: list[dict] = []  # what this object queued since the last refresh, as stored
        self._staged: list[dict] = []    # suggested, shown, not stored yet (stage / flush_staged)
        self._cursor: Any = None
        self._domain_hash: str | None = None
        self._queued_ids: list[Any] = []
        self._max_tid = -1  # the highest tid this store has seen or allocated: never allocated again
        #: how many refreshes changed the local view (a run session waits longer while it stays the same)
        self.changes = 0
        self._outage: Outage | None = None  # while fmin runs: calls ride out outages on this clock
        #: while fmin runs: the session's store check, called when the tid counter is found behind
        self._on_counter_behind: Callable[[], None] | None = None
        if refresh:
            self.refresh()

    # ---------------------------------------------------------------- the queue
    @property
    def queue(self) -> JobQueue:
        """The job queue this store reads and writes."""
        return self._queue

    def _call(self, fn: Callable[[], Any], what: str) -> Any:
        """``fn()``; while fmin runs, retried across outages (see ``max_disconnect``)."""
        if self._outage is None:
            return fn()
        return retry(fn, what=what, outage=self._outage)

    # ---------------------------------------------------------------- pickling (never the secrets)
    def _reconnect_info(self) -> Any:
        """What a pickle keeps to reconnect without a :func:`serving` context (no credentials)."""
        raise TypeError(f"a {type(self).__name__} cannot be pickled outside a worker")

    def _reconnect(self, info: Any) -> JobQueue:
        """The queue to use when unpickled outside :func:`serving` (from ``_reconnect_info``)."""
        raise TypeError(f"a {type(self).__name__} cannot be unpickled outside a worker")

    def _rebind(self, queue: JobQueue, info: Any) -> JobQueue:
        """The worker's ``queue`` as this store used it (a subclass may switch database)."""
        return queue

    def __getstate__(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if k not in self._NOT_PICKLED}
        state.pop("algo_cache", None)
        state["_reconnect_info"] = self._reconnect_info()
        return state

    def __setstate__(self, state: dict) -> None:
        info = state.pop("_reconnect_info", None)
        for name in self._NOT_PICKLED:
            state.pop(name, None)
        self.__dict__.update(state)
        self.__dict__.setdefault("algo_cache", {})
        self._secret_file, self._outage, self._on_counter_behind = None, None, None
        context = _SERVING.get()
        if context is not None:
            self._queue, self._secret = self._rebind(context[0], info), context[1]
        else:
            self._queue, self._secret = self._reconnect(info), None

    # ---------------------------------------------------------------- BaseTrials backend
    def refresh(self) -> None:
        """Fetch the jobs written since the last refresh, keeping the highest version of each."""
        self._call(self._refresh_once, "refreshing the trials")

    def _refresh_once(self) -> None:
        docs, cursor = self._queue.changed(self._exp_key, self._cursor)
        changed = False
        for doc in docs:
            self._max_tid = max(self._max_tid, int(doc["tid"]))
            old = self._docs.get(doc["_id"])
            # at an equal version the store's copy wins over one this object built (it has the stamps)
            if old is None or doc.get("version", 0) >= old.get("version", 0) and doc is not old:
                changed = changed or old is None or doc.get("version", 0) > old.get("version", 0)
                self._docs[doc["_id"]] = doc
        self._cursor = cursor
        self._inserted = []
        if changed or len(self._trials) != len(self._docs):
            self._trials = sorted(self._docs.values(), key=lambda t: t["tid"])
            self.changes += 1

    def stage(self, docs: Iterable[dict]) -> None:
        """Hold the driver's suggestions until :meth:`flush_staged` stores the batch in one write;
        they show at once as NEW trials (keyed by tid until the store names them)."""
        docs = [dict(d) for d in docs]
        for d in docs:
            validate_trial_doc(d, self._exp_key)
            shown = {**queued_doc({**d, "domain_hash": d.get("domain_hash") or self._domain_hash}),
                     "_id": ("staged", d["tid"]), "version": int(d.get("version") or 0)}
            self._staged.append(shown)
            self._inserted.append(shown)
        self.refresh_inserted()

    def flush_staged(self) -> None:
        """Store the staged batch (one ``queue.insert``); on failure they leave the local view."""
        staged, self._staged = self._staged, []
        if not staged:
            return
        bodies = [{k: v for k, v in d.items() if k != "_id"} for d in staged]
        try:
            ids = self._call(lambda: self._queue.insert(bodies), "queueing trials")
        except BaseException:
            self._forget(d["_id"] for d in staged)
            raise
        self._queued_ids.extend(ids)
        for doc, job_id in zip(staged, ids, strict=True):
            self._docs.pop(doc["_id"], None)
            doc["_id"] = job_id
            self._docs[job_id] = doc

    def refresh_inserted(self) -> None:
        """Show what this object queued since the last refresh, as the store holds it (its queue
        fields, version 0), appended in tid order: no round trip to the store."""
        new, self._inserted = self._inserted, []
        if not new:
            return
        for doc in new:
            self._docs[doc["_id"]] = doc
        last = self._trials[-1]["tid"] if self._trials else None
        ordered = sorted(new, key=lambda d: d["tid"])
        if last is None or ordered[0]["tid"] > last:
            self._trials.extend(ordered)
        else:
            self._trials = sorted(self._docs.values(), key=lambda t: t["tid"])

    def new_trial_ids(self, n: int) -> list[int]:
        """``n`` fresh tids, all above every tid this store has seen or allocated.

        A queue that hands out such a tid again was reset or lost writes (a restored database, a
        server that lost its last writes): it is raised above them and asked again.
        """
        tids = self._call(lambda: self._queue.new_tids(n), "allocating trial ids")
        if tids and tids[0] <= self._max_tid:
            if self._on_counter_behind is not None:  # the run's store check: logs and repairs, counter included
                self._call(self._on_counter_behind, "checking the store")
            else:
                logger.warning("experiment %r: the store handed out tid %d, but tids up to %d were seen: it was reset "
                               "or lost writes; raising its tid counter above them", self._exp_key, tids[0],
                               self._max_tid)
                self._call(lambda: self._queue.reserve_tids(self._max_tid), "raising the tid counter")
            tids = self._call(lambda: self._queue.new_tids(n), "allocating trial ids")
        if tids:
            self._max_tid = max(self._max_tid, tids[-1])
        return tids

    def _insert_trial_docs(self, docs: list[dict]) -> list[int]:
        bodies = [{**d, "domain_hash": d.get("domain_hash") or self._domain_hash} for d in docs]
        ids = self._call(lambda: self._queue.insert(bodies), "queueing trials")
        self._queued_ids.extend(ids)
        for job_id, body in zip(ids, bodies, strict=True):
            self._max_tid = max(self._max_tid, int(body["tid"]))
            self._inserted.append({**queued_doc(body), "_id": job_id, "version": int(body.get("version") or 0)})
        return [d["tid"] for d in docs]

    def count_by_state_unsynced(self, arg: int | Iterable[int]) -> int:
        """Count this experiment's trials in state(s) ``arg`` in the store."""
        states = [arg] if isinstance(arg, int) else list(arg)
        return self._call(lambda: self._queue.count(self._exp_key, states), "counting trials")

    def delete_all(self) -> None:
        """Delete this experiment: its trials, their attachments, its document and attachments
        (the content-addressed domain payload stays while another experiment uses it)."""
        self._queue.delete_experiment(self._exp_key)
        self._forget_everything()

    def _forget_everything(self) -> None:
        self._docs.clear()
        self._trials = []
        self._cursor = None
        self._queued_ids = []
        self.refresh()

    @property
    def attachments(self) -> MutableMapping[str, bytes]:
        return QueueAttachments(self._queue, self._exp_key)

    def trial_attachments(self, trial: Mapping[str, Any]) -> MutableMapping[str, bytes]:
        return QueueTrialAttachments(self._queue, trial)

    def view(self, exp_key: str | None = None, refresh: bool = True) -> "QueueTrials":
        """Another store on the same queue, for experiment ``exp_key``."""
        return QueueTrials(self._queue, exp_key, refresh=refresh, poll_interval=self.poll_interval,
                           secret=self._secret, secret_file=self._secret_file)

    def space_description(self) -> list | None:
        """What fmin recorded here, else the experiment document's ``space`` (written by the driver
        that ran it, so a store opened later decodes values too)."""
        return super().space_description() or (self.experiment() or {}).get("space")

    def experiment(self) -> dict | None:
        """This experiment's document (None before fmin ran)."""
        return self._queue.experiment(self._exp_key)

    # ---------------------------------------------------------------- repairs of the local view
    def _forget(self, ids: Iterable[Any]) -> None:
        """Drop jobs from the local view (they are gone from the store)."""
        ids = set(ids)
        for oid in ids:
            self._docs.pop(oid, None)
        self._queued_ids = [oid for oid in self._queued_ids if oid not in ids]
        self._trials = sorted(self._docs.values(), key=lambda t: t["tid"])

    # ---------------------------------------------------------------- fmin
    def open_session(self, run: Run) -> "QueueSession":
        return QueueSession(self, run)

    def worker_hint(self) -> str:
        """How to start a worker for this experiment (for the driver's "no live worker" message)."""
        return f"start workers on {self._queue.describe()}"


def refill_margin(finished_per_loop: float, workers: int) -> int:
    """NEW trials to queue beyond one per worker: as many as the workers finish during one driver
    loop (they claim that many before the driver refills the queue), at most one more per worker.
    Objectives slower than the loop get none: extra trials would only wait, seen by TPE as pending."""
    return min(int(workers), int(finished_per_loop))


class QueueSession:
    """What fmin does with a :class:`QueueTrials` (see :mod:`hpo_mongo.trials.session`).

    Opening it pickles the domain (a :class:`~hpo_mongo.exceptions.PicklingError` here means
    nothing was queued), then publishes the experiment (:meth:`publish`: the queue's indexes, the
    domain payload, the experiment document), retried across outages like the rest of the run.

    Every tick (once a second while trials change, backing off to every
    :data:`DRIVER_TICK_IDLE_MAX` seconds while nothing does) the driver heartbeats, applies the
    lease rules to the experiment, counts the live workers serving it and checks that the store
    still holds what it has seen (:meth:`check_store`), so that a store reset under it (a
    restarted or restored server, one that lost its last writes, an experiment or trials deleted
    while it runs) never leaves it waiting for trials that no longer exist, nor reusing a tid:

    - the tid counter is raised above every tid the driver has seen;
    - a missing experiment document, domain payload or index is created again;
    - the finished trials it holds that the store lost are written back (same ``_id``, tid and
      result: nothing finished is lost) — after a reset also those it holds only in an older
      version (a server that lost its last writes);
    - its queued and running trials that vanished are dropped from its view, so that new ones are
      suggested in their place (with new tids).

    Each repair is logged as one WARNING. A finished trial that cannot be written back because
    another trial now holds its tid stops fmin with :class:`~hpo_mongo.exceptions.DuplicateTrialError`.
    """

    def __init__(self, trials: QueueTrials, run: Run):
        from ..payload import dumps_domain, load_secret, pack_payload, payload_hash, size_warning
        self.trials, self.run = trials, run
        secret = trials._secret if trials._secret is not None else load_secret(trials._secret_file)
        domain = run.domain if run.pruner is None else run.domain.with_pruner(run.pruner)  # workers apply it
        with serving(trials.queue, secret):  # the check that the pickle loads back reconnects
            raw = dumps_domain(domain)  # raises PicklingError naming the culprit; nothing queued yet
        self._blob = pack_payload(raw, secret, {"kind": "domain"})
        self._digest = payload_hash(self._blob)
        self._signed = bool(secret)
        warning = size_warning(len(self._blob))
        if warning:
            logger.warning("experiment %r: %s", trials.exp_key, warning)
        self._last_beat = time.monotonic()
        self._tick_every = DRIVER_HEARTBEAT_EVERY
        self._tick_changes = -1  # the view's change count at the last tick
        self.live_workers = 0
        self._idle_since: float | None = None  # queued trials, none running, no live worker: since when
        self._seen_changes = -1
        self._wait = MIN_WAIT
        self._told_no_worker = False
        self._finished_seen: int | None = None  # finished trials in the view at the last queue_target
        self._finished_per_loop = 0.0  # trials finished per driver loop, smoothed
        trials._outage = Outage(trials.max_disconnect, limit_name=f"{type(trials).__name__}.max_disconnect",
                                logger=logger)
        try:
            trials._call(self.publish, "setting up the experiment")
        except BaseException:
            trials._outage = None
            raise
        trials._domain_hash = self._digest
        trials._on_counter_behind = self.check_store
        logger.info("experiment %r: domain %s stored; workers may start", trials.exp_key, self._digest[:12])

    @property
    def queue(self) -> JobQueue:
        return self.trials.queue

    def publish(self) -> None:
        """Prepare the queue, store the domain payload, create or update the experiment document and
        give the domain to NEW trials queued without one (each step idempotent)."""
        from ..payload import local_versions
        t, run, q = self.trials, self.run, self.queue
        q.prepare()
        q.put_domain(self._digest, self._blob, t.exp_key)
        versions = local_versions()
        max_evals = run.max_evals
        q.save_experiment(t.exp_key, {
            "max_evals": None if max_evals is None or max_evals >= sys.maxsize else int(max_evals),
            "algorithm": algo_name(run.algo),
            "status": "running",
            "stop_reason": None,
            "driver": {"host": socket.gethostname(), "pid": os.getpid()},
            "domain_hash": self._digest,
            "python_version": versions["python"],
            "cloudpickle_version": versions["cloudpickle"],
            "hpo_mongo_version": __version__,
            "schema_version": SCHEMA_VERSION,
            "space": sonify(run.domain.space.to_json()),
            "signed": self._signed,
            "pruner": None if run.pruner is None else repr(run.pruner),
        })
        q.beat_driver(t.exp_key)
        q.adopt_domain(t.exp_key, self._digest)  # trials queued before a domain existed (an older run)

    # ---------------------------------------------------------------- the run
    def tick(self) -> None:
        """The driver heartbeat, the lease rules on this experiment, the count of live workers, and
        the check that the store still holds what the driver has seen: once a second while the view
        changes (or while trials wait for a worker, to say so in time), backing off to every
        :data:`DRIVER_TICK_IDLE_MAX` seconds while nothing happens (trials running for minutes)."""
        t, q = self.trials, self.queue
        quiet = t.changes == self._tick_changes and (self._idle_since is None or self._told_no_worker)
        if time.monotonic() - self._last_beat < (self._tick_every if quiet else DRIVER_HEARTBEAT_EVERY):
            return
        self._last_beat = time.monotonic()
        self._tick_changes = t.changes
        self._tick_every = min(DRIVER_TICK_IDLE_MAX, 2 * self._tick_every) if quiet else DRIVER_HEARTBEAT_EVERY

        def beat() -> bool:
            found = q.beat_driver(t.exp_key)
            leases.log_events(q.requeue_stale(t.exp_key, default_lease=t.lease_timeout,
                                              default_max_attempts=t.max_attempts), logger)
            now = q.now()
            self.live_workers = sum(1 for w in q.workers()
                                    if leases.worker_is_live(w, now, t.lease_timeout)
                                    and leases.worker_serves(w, t.exp_key))
            return found
        found = t._call(beat, "the driver heartbeat")
        t._call(lambda: self.check_store(experiment_found=found), "checking the store")
        self._check_workers()

    def _check_workers(self) -> None:
        """Say once (a WARNING) when trials have been waiting for :data:`NO_WORKER_WARNING_AFTER`
        seconds with none running and no live worker serving the experiment, and how to start one."""
        states = [d["state"] for d in self.trials.trials]
        waiting = JOB_STATE_NEW in states and JOB_STATE_RUNNING not in states and not self.live_workers
        if not waiting:
            self._idle_since = None
            return
        now = time.monotonic()
        if self._idle_since is None:
            self._idle_since = now
        elif not self._told_no_worker and now - self._idle_since >= NO_WORKER_WARNING_AFTER:
            self._told_no_worker = True
            logger.warning("experiment %r: %d trial(s) have been queued for %.0f s and no worker is evaluating "
                           "them (none is live); start one: %s", self.trials.exp_key, states.count(JOB_STATE_NEW),
                           now - self._idle_since, self.trials.worker_hint())

    def check_store(self, experiment_found: bool | None = None) -> None:
        """Compare the store with what the driver has seen and repair it (see the class docstring).

        Cheap when nothing is wrong: the tid counter, the number of this experiment's trials and
        which of the driver's pending trials still exist (plus the experiment document when
        ``experiment_found`` is None; the heartbeat tells otherwise).
        """
        t, q = self.trials, self.queue
        lost: list[str] = []
        if experiment_found is None:
            experiment_found = q.experiment(t.exp_key) is not None
        if not experiment_found:
            lost.append("the experiment document")
        counter = q.last_tid()
        if t._max_tid >= 0 and (counter is None or counter < t._max_tid):
            lost.append(f"the tid counter (at {'nothing' if counter is None else counter}, while this driver "
                        f"has seen tid {t._max_tid})")
            q.reserve_tids(t._max_tid)
        docs = list(t._docs.values())
        pending = [d["_id"] for d in docs if d["state"] not in JOB_FINISHED_STATES]
        older: list[dict] = []  # finished here, an older version there (the server lost writes)
        vanished: list[dict] = []
        if lost:  # a reset: compare every job's version
            versions = q.versions(t.exp_key)
            vanished = [d for d in docs if d["_id"] not in versions]
            older = [d for d in docs if d["state"] in JOB_FINISHED_STATES and d["_id"] in versions
                     and versions[d["_id"]] < d.get("version", 0)]
        else:
            stored = q.count(t.exp_key)
            if stored < len(docs) or (pending and len(q.existing(pending)) < len(pending)):
                present = q.versions(t.exp_key)
                vanished = [d for d in docs if d["_id"] not in present]
            elif stored > self.run.max_evals:
                self._withdraw_past_max_evals()
        mine = set(t._queued_ids)
        theirs = {d["_id"] for d in vanished if d["state"] == JOB_STATE_NEW and d["_id"] not in mine}
        if theirs:  # another driver's queued trials: that driver withdrew, cancelled or repairs them
            t._forget(theirs)
            vanished = [d for d in vanished if d["_id"] not in theirs]
        if not lost and not vanished:
            return
        finished = [d for d in vanished if d["state"] in JOB_FINISHED_STATES] + older
        gone = sorted((d for d in vanished if d["state"] not in JOB_FINISHED_STATES), key=lambda d: d["tid"])
        if vanished:
            lost.append(f"{len(vanished)} of its {len(docs)} trials")
        if older:
            lost.append(f"the results of {len(older)} finished trials")
        self.publish()
        restored = q.restore(sorted(finished, key=lambda d: d["tid"]))
        t._forget(d["_id"] for d in gone)
        repairs = ["the counter, the experiment document, the domain and the indexes are in place"]
        if finished:
            repairs.append(f"{restored} finished trial(s) written back")
        if gone:
            repairs.append(f"{len(gone)} queued/running trial(s) vanished (" +
                           ", ".join(f"tid {d['tid']}" for d in gone[:10]) + (", ..." if len(gone) > 10 else "") +
                           "): new ones are queued in their place")
        logger.warning("experiment %r: the store lost %s (reset, restored, or deleted while fmin runs); %s",
                       t.exp_key, ", ".join(lost), "; ".join(repairs))

    def queue_target(self, max_queue_len: int) -> int:
        """NEW trials to keep queued: one per live worker serving this experiment plus the
        :func:`refill_margin` (at least ``max_queue_len``); before any worker registered, the
        RUNNING ones plus ``max(2, max_queue_len)``. Called once per driver loop."""
        finished = sum(1 for d in self.trials.trials if d["state"] in JOB_FINISHED_STATES)
        if self._finished_seen is not None:
            self._finished_per_loop = (self._finished_per_loop + max(0, finished - self._finished_seen)) / 2
        self._finished_seen = finished
        if self.live_workers:
            workers = self.live_workers
            return max(int(max_queue_len), workers + refill_margin(self._finished_per_loop, workers))
        running = sum(1 for d in self.trials.trials if d["state"] == JOB_STATE_RUNNING)
        return running + max(2, int(max_queue_len))

    def room(self) -> int:
        return self.run.max_evals - len(self.trials.trials)

    def after_batch(self) -> None:
        """One count of the experiment's trials in the store; past ``max_evals`` (another driver
        stored a batch at the same time), :meth:`_withdraw_past_max_evals`."""
        t = self.trials
        if self.run.max_evals >= sys.maxsize:
            return
        if t._call(lambda: self.queue.count(t.exp_key), "counting trials") > self.run.max_evals:
            self._withdraw_past_max_evals()

    def _withdraw_past_max_evals(self) -> None:
        """Delete this driver's still-NEW trials ranked by tid past ``max_evals`` in the refreshed
        view. Every driver applies the same ranking, so together they keep the first ``max_evals``."""
        t, max_evals = self.trials, self.run.max_evals
        t.refresh()
        mine = set(t._queued_ids)
        past = [d["_id"] for d in t.trials[max_evals:] if d["state"] == JOB_STATE_NEW and d["_id"] in mine]
        if not past:
            return
        gone = t._call(lambda: self.queue.withdraw_new(t.exp_key, past), "withdrawing queued trials")
        t._forget(gone)
        if gone:
            logger.info("experiment %r: another driver queued trials at the same time; %d queued trial(s) of this "
                        "driver past max_evals=%d withdrawn", t.exp_key, len(gone), max_evals)

    def queued(self) -> int:
        """NEW trials in the refreshed view (claims show in the refresh that precedes this call)."""
        return sum(1 for d in self.trials.trials if d["state"] == JOB_STATE_NEW)

    def advance(self) -> None:
        """Wait for the workers: briefly while the view keeps changing, then longer and longer (up
        to ``poll_interval``) while nothing happens; the queue wakes it early when it can."""
        t = self.trials
        if t.changes != self._seen_changes:
            self._seen_changes = t.changes
            self._wait = MIN_WAIT
        else:
            self._wait = min(t.poll_interval, self._wait * 2)
        self.queue.wait_for_changes(t.exp_key, self._wait)

    def end(self, stop_reason: str | None) -> None:
        """Cancel this driver's still-NEW trials if fmin stopped early; record the experiment status.
        Interrupted (an exception, Ctrl-C: ``stop_reason`` None), the queued trials stay NEW so a
        new fmin call resumes with them."""
        t, q = self.trials, self.queue
        t._on_counter_behind = None
        try:
            if stop_reason in EARLY_STOPS:
                n = q.cancel_new(t.exp_key, t._queued_ids)
                if n:
                    logger.info("fmin stopped (%s): %d queued trials cancelled", stop_reason, n)
            status = "done" if stop_reason in ("max_evals", "exhausted") else "stopped"
            q.save_experiment(t.exp_key, {"status": status, "stop_reason": stop_reason})
            t._queued_ids = []
            t.refresh()
        except StoreError as e:  # never hide the reason fmin is ending
            logger.warning("could not record the end of fmin: %s", e)
        finally:
            t._outage = None
