"""``Trials``: the in-memory store (the default), evaluated in-process by fmin."""
from __future__ import annotations

import threading
from typing import Any, Iterable, Iterator, MutableMapping

from .base import BaseTrials
from .documents import (JOB_STATE_NEW, JOB_STATE_RUNNING, STATUS_NEW, new_trial_doc,  # noqa: F401
                        utcnow)
from .reports import MemoryReports


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
        self._attachments: dict[str, bytes] = {}
        self._lock = threading.RLock()
        if refresh:
            self.refresh()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_lock", None)
        state.pop("_history_cache", None)
        state.pop("_reports", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    def refresh(self) -> None:
        with self._lock:
            if self._exp_key is None:
                self._trials = sorted(self._dynamic_trials, key=lambda t: t["tid"])
            else:
                self._trials = sorted((t for t in self._dynamic_trials if t["exp_key"] == self._exp_key),
                                      key=lambda t: t["tid"])

    def new_trial_ids(self, n: int) -> list[int]:
        with self._lock:
            start = max(self._ids, default=-1) + 1
            ids = list(range(start, start + n))
            self._ids.update(ids)
            return ids

    def _insert_trial_docs(self, docs: list[dict]) -> list[int]:
        with self._lock:
            for d in docs:
                self._ids.add(d["tid"])
            self._dynamic_trials.extend(docs)
            return [d["tid"] for d in docs]

    def count_by_state_unsynced(self, arg: int | Iterable[int]) -> int:
        return self.count_by_state_synced(arg, trials=self._dynamic_trials)

    def delete_all(self) -> None:
        with self._lock:
            self._dynamic_trials = []
            self._ids = set()
            self._attachments = {}
            self.__dict__.pop("_reports", None)
            self.refresh()

    def view(self, exp_key: str | None = None, refresh: bool = True) -> "Trials":
        """Another Trials over the same documents, filtered by ``exp_key``."""
        rval = object.__new__(Trials)
        rval.__dict__.update(self.__dict__)
        rval.__dict__.pop("_reports", None)
        rval.__dict__.pop("_history_cache", None)
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
