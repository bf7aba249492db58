"""The algorithm interface and the read-only history every algorithm works from.

An algorithm is a function ``suggest(new_ids, domain, trials, seed, **options) -> list[dict]``
returning one NEW trial document per id in ``new_ids`` (built with
:func:`hpo_mongo.trials.documents.new_trial_doc`), or ``[]`` when the search space is
exhausted, which makes fmin stop. Options are bound with ``functools.partial``.
Algorithms never write to ``trials``.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from ..space import CompiledSpace
from ..trials.base import BaseTrials
from ..trials.documents import (JOB_FINISHED_STATES, JOB_STATE_DONE, JOB_STATE_NEW, JOB_STATE_RUNNING, loss_of,
                                new_trial_doc)


class SuggestFn(Protocol):
    def __call__(self, new_ids: Sequence[int], domain: Any, trials: Any, seed: int) -> list[dict]: ...


@dataclass(frozen=True)
class History:
    """Arrays over the trials of one experiment, in tid order.

    ``X`` is ``(n, P)`` (NaN where inactive), ``loss`` is NaN where no usable loss exists
    (pending, failed or errored trials), ``state`` the job states.
    """

    X: np.ndarray
    loss: np.ndarray
    state: np.ndarray
    tid: np.ndarray

    @property
    def ok(self) -> np.ndarray:
        """DONE trials with status ok and a loss."""
        return (self.state == JOB_STATE_DONE) & ~np.isnan(self.loss)

    @property
    def pending(self) -> np.ndarray:
        """NEW or RUNNING trials (two comparisons: cheaper than ``np.isin`` on the hot path)."""
        return (self.state == JOB_STATE_NEW) | (self.state == JOB_STATE_RUNNING)

    def __len__(self) -> int:
        return len(self.tid)


_TID = operator.itemgetter("tid")
_FINISHED = tuple(sorted(JOB_FINISHED_STATES))


def _loss(doc: dict) -> float:
    loss = loss_of(doc)
    return np.nan if loss is None else loss


def history(space: CompiledSpace, trials: Any) -> History:
    """Build (incrementally, cached in ``trials.algo_cache``) the :class:`History` of ``trials``.

    The value rows never change once a trial exists, so they are computed once per tid and
    cached; states and losses are re-read on every call, except for the leading run of
    finished (DONE / ERROR / CANCEL) trials, whose results no longer change.
    """
    docs = trials.trials
    store = trials.algo_cache if isinstance(trials, BaseTrials) else {}  # a foreign trials object: no caching
    cache = store.get("history")
    if cache is None or cache.get("space") is not space:
        cache = store["history"] = {"space": space, "tids": [], "X": np.empty((0, space.n_params))}
    tids = list(map(_TID, docs))
    old = cache["tids"]
    unchanged = False
    if len(old) <= len(tids) and tids[:len(old)] == old:
        unchanged = len(old) == len(tids)
        new_rows = [space.vals_to_row(d["misc"]["vals"]) for d in docs[len(old):]]
        if new_rows:
            cache["X"] = np.vstack([cache["X"], np.asarray(new_rows)])
        # losses and states of the leading run of finished trials cannot change any more
        start = min(cache.get("n_final", 0), len(old))
    else:
        cache["X"] = np.asarray([space.vals_to_row(d["misc"]["vals"]) for d in docs]).reshape(len(docs), space.n_params)
        start = 0
    cache["tids"] = tids
    tail = docs[start:]
    loss = np.concatenate([cache.get("loss", np.empty(0))[:start],
                           np.fromiter((_loss(d) for d in tail), dtype=float, count=len(tail))])
    state = np.concatenate([cache.get("state", np.empty(0, dtype=np.int64))[:start],
                            np.fromiter((d["state"] for d in tail), dtype=np.int64, count=len(tail))])
    tail_state = state[start:]
    final = np.zeros(tail_state.shape, dtype=bool)
    for s in _FINISHED:
        final |= tail_state == s
    cache["n_final"] = start + (int(np.argmin(final)) if not final.all() else len(final))
    cache["loss"], cache["state"] = loss, state
    tid = cache.get("tid_arr")
    if tid is None or not unchanged or len(tid) != len(tids):  # same tids: reuse the array
        tid = cache["tid_arr"] = np.fromiter(tids, dtype=np.int64, count=len(tids))
    return History(X=cache["X"], loss=loss, state=state, tid=tid)


def docs_from_rows(new_ids: Sequence[int], space: CompiledSpace, X: np.ndarray, trials: Any,
                   extra_misc: Callable[[int], dict] | None = None) -> list[dict]:
    """One NEW document per id from the rows of ``X`` (NaN = inactive)."""
    exp_key = getattr(trials, "_exp_key", None)
    return [new_trial_doc(tid, space.row_to_vals(X[i]), exp_key=exp_key,
                          extra_misc=extra_misc(i) if extra_misc else None)
            for i, tid in enumerate(new_ids)]
