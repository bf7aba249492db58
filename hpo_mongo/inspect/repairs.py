"""Repairs by hand: requeue or cancel trials, delete an experiment.

Each change is one conditioned write of the queue (:meth:`JobQueue.requeue_unchanged`,
:meth:`JobQueue.cancel_unchanged`): a trial that changed since it was read is skipped and
reported, never overwritten. What deleting an experiment removes is
:meth:`JobQueue.delete_experiment`'s to say.
"""
from __future__ import annotations

from typing import Sequence

from ..exceptions import InvalidParameterError
from ..trials.documents import JOB_STATE_CANCEL, JOB_STATE_ERROR, JOB_STATE_NEW, JOB_STATE_RUNNING, STATE_NAMES
from ..trials.queue import JobQueue
from .clock import server_now
from .experiments import get_experiment
from .liveness import stale_trials
from .trials import get_trial


def _select(queue: JobQueue, exp_key: str | None, tids: Sequence[int]) -> list[dict]:
    """The trials ``tids`` of the experiment, each once; :class:`UnknownTrial` for one it lacks."""
    return [get_trial(queue, exp_key, t) for t in dict.fromkeys(tids)]


def requeue_trials(queue: JobQueue, exp_key: str | None, *, tids: Sequence[int] = (),
                   stale: bool = False, errors: bool = False,
                   lease_timeout: float | None = None) -> dict:
    """Return trials to NEW so workers run them again: ``{"requeued": [tid], "skipped": [...]}``.

    ``tids`` may name ERROR, CANCEL or RUNNING trials (a running worker then loses its lease:
    its write-back no longer matches); ``errors`` selects every ERROR trial, ``stale`` every
    RUNNING trial whose lease expired (:func:`stale_trials`; ``lease_timeout`` replaces the
    recorded leases; like the lease rules, this increments ``requeues``). DONE trials are
    never requeued. Each update is conditional on the state and version read, so a trial that
    changed meanwhile is skipped and reported. ``attempt`` is left alone (only claims increment
    it); the error and result of a failed trial are cleared.
    """
    if not (tids or stale or errors):
        raise InvalidParameterError("nothing to requeue: name trial ids, or pass --stale or --errors")
    tids = [int(t) for t in tids]
    chosen: dict[int, dict] = {}
    skipped: list[dict] = []
    for d in _select(queue, exp_key, tids):
        if d.get("state") in (JOB_STATE_ERROR, JOB_STATE_CANCEL, JOB_STATE_RUNNING):
            chosen[d["tid"]] = d
        else:
            skipped.append({"tid": d["tid"], "reason": f"trial {d['tid']} is {STATE_NAMES.get(d.get('state'))}; "
                                                      "only error, cancel and running trials are requeued"})
    if errors:
        for d in queue.find(exp_key, states=[JOB_STATE_ERROR]):
            chosen.setdefault(d["tid"], d)
    stale_tids: set = set()
    if stale:
        for s in stale_trials(queue, exp_key, lease_timeout=lease_timeout):
            chosen.setdefault(s["tid"], s)
            stale_tids.add(s["tid"])
    requeued = []
    for tid in sorted(chosen):
        if queue.requeue_unchanged(chosen[tid], lost_lease=tid in stale_tids):
            requeued.append(tid)
        else:
            now = queue.trial(tid, exp_key)
            state = STATE_NAMES.get((now or {}).get("state"), "deleted")
            skipped.append({"tid": tid, "reason": f"trial {tid} changed meanwhile (now {state}); not requeued"})
    skipped.sort(key=lambda s: s["tid"])
    return {"requeued": requeued, "skipped": skipped}


def cancel_trials(queue: JobQueue, exp_key: str | None, tids: Sequence[int]) -> dict:
    """Mark NEW or RUNNING trials CANCEL: ``{"cancelled": [tid], "skipped": [...]}``.

    A cancelled running trial loses its owner, so the worker's result write-back (filtered on
    owner and attempt) no longer matches; finished trials are skipped with the reason.
    """
    if not tids:
        raise InvalidParameterError("name the trial ids to cancel")
    cancelled, skipped = [], []
    for d in _select(queue, exp_key, [int(t) for t in tids]):
        tid = d["tid"]
        if d.get("state") not in (JOB_STATE_NEW, JOB_STATE_RUNNING):
            skipped.append({"tid": tid, "reason": f"trial {tid} is already {STATE_NAMES.get(d.get('state'))}"})
            continue
        end_time = server_now(queue) if d.get("state") == JOB_STATE_RUNNING else None
        if queue.cancel_unchanged(d, failure="cancelled with hpo-mongo cancel", end_time=end_time):
            cancelled.append(tid)
        else:
            skipped.append({"tid": tid, "reason": f"trial {tid} changed meanwhile; not cancelled"})
    skipped.sort(key=lambda s: s["tid"])
    return {"cancelled": sorted(cancelled), "skipped": skipped}


def delete_experiment(queue: JobQueue, exp_key: str | None) -> dict:
    """Delete the experiment (:meth:`JobQueue.delete_experiment`: its trials and their
    attachments, its document and attachments, its domain payload unless another experiment
    shares it); :class:`UnknownExperiment` when there is none. Returns ``{"exp_key", "trials",
    "experiment", "files"}``."""
    get_experiment(queue, exp_key)
    return queue.delete_experiment(exp_key)
