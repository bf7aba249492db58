"""``Trials``: the in-memory store (the default), evaluated in-process by fmin.

Its run session (:class:`MemorySession`) evaluates the queued trials in fmin's own process, one
per step: the objective's exception is recorded as an ERROR trial and re-raised unless
``catch_eval_exceptions``; Ctrl-C puts the trial being evaluated back to NEW and propagates, so
``trials`` keeps everything that finished (a later fmin call resumes).
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Iterable, Iterator, MutableMapping

from ..ctrl import Ctrl
from ..pruners import NopPruner
from ..reporting import LocalReporter, evaluate_trial
from ..results import error_info, error_result
from .base import BaseTrials
from .documents import JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_NEW, JOB_STATE_RUNNING, JOB_STATES, tid_order, utcnow
from .reports import MemoryReports
from .session import Run

logger = logging.getLogger("hpo_mongo.fmin")


class _TrialAttachments(MutableMapping):
    """One trial's attachments, stored in the experiment dict as ``ATTACH::<tid>::<name>``."""

    def __init__(self, store: dict, tid: int):
        self._store, self._prefix = store, f"ATTACH::{tid}::"

    def __getitem__(self, name: str) -> bytes:
        return self._store[self._prefix + name]

    def __setitem__(self, name: str, value: bytes) -> None:
        self._store[self._prefix + name] = value

    def __delitem__(self, name: str) -> None:
        del self._store[self._prefix + name]

    def __iter__(self) -> Iterator[str]:
        n = len(self._prefix)
        return (k[n:] for k in list(self._store) if k.startswith(self._prefix))

    def __len__(self) -> int:
        return sum(1 for _ in self)


class Trials(BaseTrials):
    """In-memory trials with hyperopt's API. Picklable (the lock is dropped and rebuilt)."""

    asynchronous = False

    def __init__(self, exp_key: str | None = None, refresh: bool = True):
        super().__init__(exp_key)
        self._dynamic_trials: list[dict] = []
        self._ids: set[int] = set()
        self._last_tid = -1                 # the largest int tid allocated or inserted
        self._inserted: list[dict] = []     # inserted since the last refresh (refresh_inserted)
        self._attachments: dict[str, bytes] = {}
        self._lock = threading.RLock()
        if refresh:
            self.refresh()

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state.pop("_lock", None)
        state.pop("_reports", None)
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._lock = threading.RLock()
        self.__dict__.setdefault("_inserted", [])
        if "_last_tid" not in self.__dict__:  # pickled by an older version
            self._last_tid = max((i for i in self._ids if isinstance(i, int)), default=-1)

    def refresh(self) -> None:
        with self._lock:
            self._inserted = []
            if self._exp_key is None:
                self._trials = sorted(self._dynamic_trials, key=lambda t: tid_order(t["tid"]))
            else:
                self._trials = sorted((t for t in self._dynamic_trials if t["exp_key"] == self._exp_key),
                                      key=lambda t: tid_order(t["tid"]))

    def new_trial_ids(self, n: int) -> list[int]:
        with self._lock:
            start = self._next_tid()
            ids = list(range(start, start + n))
            self._ids.update(ids)
            self._last_tid = start + n - 1
            return ids

    def _next_tid(self) -> int:
        return self._last_tid + 1

    def _insert_trial_docs(self, docs: list[dict]) -> list[int]:
        with self._lock:
            for d in docs:
                self._ids.add(d["tid"])
                if isinstance(d["tid"], int):
                    self._last_tid = max(self._last_tid, d["tid"])
            self._dynamic_trials.extend(docs)
            self._inserted.extend(docs)
            return [d["tid"] for d in docs]

    def refresh_inserted(self) -> None:
        """Append what was inserted since the last refresh (when it comes after every trial in tid
        order, as the driver's inserts do), instead of sorting everything again."""
        with self._lock:
            new = [d for d in self._inserted if self._exp_key is None
                   or d["exp_key"] == self._exp_key]
            last = tid_order(self._trials[-1]["tid"]) if self._trials else None
            if new and all(isinstance(d["tid"], int) for d in new) and (
                    last is None or tid_order(min(d["tid"] for d in new)) > last):
                self._trials.extend(sorted(new, key=lambda d: d["tid"]))
                self._inserted = []
            elif new:
                self.refresh()

    def count_by_state_unsynced(self, arg: int | Iterable[int]) -> int:
        return self.count_by_state_synced(arg, trials=self._dynamic_trials)

    def delete_all(self) -> None:
        with self._lock:
            self._dynamic_trials = []
            self._ids = set()
            self._last_tid = -1
            self._attachments = {}
            self.__dict__.pop("_reports", None)
            self.refresh()

    def view(self, exp_key: str | None = None, refresh: bool = True) -> "Trials":
        """Another Trials over the same documents, filtered by ``exp_key``."""
        rval = object.__new__(Trials)
        rval.__dict__.update(self.__dict__)
        rval.__dict__.pop("_reports", None)
        rval.algo_cache = {}
        rval._inserted = []
        rval._exp_key = exp_key
        rval._trials = []
        if refresh:
            rval.refresh()
        return rval

    @property
    def attachments(self) -> dict[str, bytes]:
        return self._attachments

    def trial_attachments(self, trial: dict) -> MutableMapping[str, bytes]:
        return _TrialAttachments(self._attachments, trial["tid"])

    @property
    def reports(self) -> MemoryReports:
        """The intermediate values of this experiment's trials: what pruners read
        (:class:`~hpo_mongo.trials.reports.ReportHistory`) and what in-process reports write."""
        rep = self.__dict__.get("_reports")
        if rep is None:
            rep = self._reports = MemoryReports(self)
        return rep

    # ------------------------------------------------------------ in-process evaluation
    def open_session(self, run: Run) -> "MemorySession":
        return MemorySession(self, run)

    def _mark_running(self, doc: dict) -> None:
        self.reports.start_attempt(doc)
        now = utcnow()
        doc.update(state=JOB_STATE_RUNNING, book_time=now, refresh_time=now, owner="local")
        doc["version"] = doc.get("version", 0) + 1

    def _requeue(self, doc: dict) -> None:
        """Back to NEW (an interrupted in-process evaluation): no owner, no reports."""
        self.reports.start_attempt(doc)
        doc.update(state=JOB_STATE_NEW, owner=None, book_time=None)

    def _finish(self, doc: dict, state: int, result: dict | None, error: dict | None = None) -> None:
        now = utcnow()
        doc.update(state=state, refresh_time=now)
        doc["version"] = doc.get("version", 0) + 1
        if result is not None:
            doc["result"] = result
        if error is not None:
            doc["error"] = error
            doc["misc"]["error"] = (error["type"], error["message"])


class MemorySession:
    """fmin's run on in-memory :class:`Trials`: the objective is evaluated here, one trial per step."""

    def __init__(self, trials: Trials, run: Run):
        self.trials, self.run = trials, run
        trials.refresh()
        for doc in trials.trials:  # nothing else evaluates these: a RUNNING one was interrupted
            if doc["state"] == JOB_STATE_RUNNING:
                trials._requeue(doc)

    def tick(self) -> None:
        return None

    def room(self) -> int:
        return self.run.max_evals - self.trials.count_by_state_unsynced(JOB_STATES)

    def after_batch(self) -> None:
        return None  # one driver: room() is exact

    def queue_target(self, max_queue_len: int) -> int:
        return int(max_queue_len)

    def queued(self) -> int:
        return self.trials.count_by_state_unsynced(JOB_STATE_NEW)

    def advance(self) -> None:
        """Evaluate the oldest NEW trial (none once fmin's timeout has expired)."""
        trials = self.trials
        doc = next((t for t in trials.trials if t["state"] == JOB_STATE_NEW), None)
        if doc is None or self.run.expired():
            return
        trials._mark_running(doc)
        reporter = LocalReporter(trials.reports, doc, self.run.pruner or NopPruner())
        try:
            result, attachments = evaluate_trial(self.run.domain, doc["misc"]["vals"], Ctrl(trials, doc), reporter)
        except KeyboardInterrupt:
            trials._requeue(doc)
            raise
        except Exception as e:
            info = error_info(e)
            trials._finish(doc, JOB_STATE_ERROR, error_result(info), info)  # fmin reports it (FailureLog)
            if not self.run.catch_eval_exceptions:
                trials.refresh()
                raise
            return
        for name, blob in attachments.items():
            trials.trial_attachments(doc)[name] = blob
        trials._finish(doc, JOB_STATE_DONE, result)

    def end(self, stop_reason: str | None) -> None:
        return None


def trials_from_docs(docs: Iterable[dict], validate: bool = True, **kwargs: Any) -> Trials:
    """A Trials holding ``docs`` (hyperopt's ``trials_from_docs``)."""
    rval = Trials(**kwargs)
    docs = list(docs)
    if validate:
        rval.insert_trial_docs(docs)
    else:
        rval._insert_trial_docs(docs)
    rval.refresh()
    return rval
