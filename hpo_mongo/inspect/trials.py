"""Trial queries: one experiment's trials filtered and sorted, its best ones, one by ``tid``."""
from __future__ import annotations

from types import EllipsisType
from typing import Iterable

from ..exceptions import InvalidParameterError, UnknownTrial
from ..trials.documents import JOB_STATE_DONE, JOB_STATES, STATE_BY_NAME, STATE_NAMES, loss_of
from ..trials.queue import JobQueue
from .experiments import exp_label


def _states(state: Iterable[str] | str | None) -> list[int] | None:
    if state is None:
        return None
    names = [state] if isinstance(state, str) else list(state)
    if not names:
        return None
    out = []
    for n in names:
        if n not in STATE_BY_NAME:
            raise InvalidParameterError(f"unknown state {n!r}; choose from {', '.join(STATE_BY_NAME)}")
        out.append(STATE_BY_NAME[n])
    return out


def known_states() -> tuple[str, ...]:
    """State names accepted by ``--state``."""
    return tuple(STATE_NAMES[s] for s in JOB_STATES)


def find_trials(queue: JobQueue, exp_key: str | None, *, state: Iterable[str] | str | None = None,
                sort: str = "tid", limit: int | None = None, reverse: bool = False,
                full: bool = False) -> list[dict]:
    """The experiment's trial documents, filtered by state names, sorted by ``tid``, ``loss``
    (trials without a loss last) or ``time`` (claim time; unclaimed last), at most ``limit``;
    ``full=False`` leaves out the large fields (:data:`~hpo_mongo.trials.queue.LIST_FIELDS`)."""
    return queue.find(exp_key, states=_states(state), sort=sort, limit=limit, reverse=reverse, full=full)


def best_trials(queue: JobQueue, exp_key: str | None, n: int = 1) -> list[dict]:
    """The ``n`` DONE trials with status ok and the lowest losses (ties: lowest tid)."""
    if n < 1:
        raise InvalidParameterError(f"n must be >= 1, got {n}")
    docs = queue.find(exp_key, states=[JOB_STATE_DONE], sort="loss", limit=n)
    return [d for d in docs if loss_of(d) is not None]


def get_trial(queue: JobQueue, exp_key: str | None | EllipsisType, tid: int) -> dict:
    """The whole document of trial ``tid``; :class:`UnknownTrial` when it is not in the experiment.

    ``exp_key=...`` looks in every experiment (tids are unique in a queue).
    """
    if exp_key is ...:
        doc = queue.trial(tid)
        if doc is None:
            raise UnknownTrial(f"no trial {tid} in {queue.describe()}")
        return doc
    doc = queue.trial(tid, exp_key)
    if doc is not None:
        return doc
    other = queue.trial(tid)
    if other is not None:
        k = other.get("exp_key")
        how = "omit --exp-key" if k is None else f"pass --exp-key {k}"
        raise UnknownTrial(f"no trial {tid} in experiment {exp_label(exp_key)}: it belongs to "
                           f"experiment {exp_label(k)} ({how})")
    raise UnknownTrial(f"no trial {tid} in experiment {exp_label(exp_key)}")
