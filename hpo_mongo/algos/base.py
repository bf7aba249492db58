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
from ..trials.documents import (JOB_FINISHED_STATES, JOB_STATE_DONE, JOB_STATE_NEW, JOB_STATE_RUNNING,
                                STATUS_PRUNED, loss_of, new_trial_doc)


class SuggestFn(Protocol):
    def __call__(self, new_ids: Sequence[int], domain: Any, trials: Any, seed: int) -> list[dict]: ...


#: how model-based samplers rank pruned trials (see :func:`rank_pruned`); chosen by bench/pruning.py
PRUNED_RULE = "after_complete"
PRUNED_RULES = ("after_complete", "by_value", "ignore")


def rank_pruned(loss: np.ndarray, pruned: np.ndarray, pruned_step: np.ndarray, rule: str | None = None) -> np.ndarray:
    """The losses samplers rank by: ``loss`` with the pruned trials' entries replaced by stand-ins.

    ``loss`` holds the complete trials' losses and, where ``pruned``, the pruned trials' last
    reported values (NaN: none or NaN), ``pruned_step`` the step they were stopped at (-1: none).
    Rules (``rule=None``: :data:`PRUNED_RULE`, chosen by bench/pruning.py, bench/RESULTS.md):

    * ``"after_complete"`` (Optuna's): every pruned trial ranks after every complete trial with a
      finite loss; among themselves, the further they got the better, then the lower their last
      value (NaN last). So pruned trials fill the good group only while too few trials completed.
    * ``"by_value"``: a pruned trial ranks by its last value among the complete trials' losses (a
      pruned trial only ever passes a complete trial whose loss is worse than its last value).
    * ``"ignore"``: pruned trials are left out (NaN), as if they had failed.
    """
    rule = PRUNED_RULE if rule is None else rule
    out = np.where(pruned, np.nan, loss)
    if rule == "ignore" or not pruned.any():
        return out
    value = np.where(np.isnan(loss), np.inf, loss)[pruned]
    if rule == "by_value":
        out[pruned] = value
        return out
    if rule != "after_complete":
        raise ValueError(f"unknown pruned-trial rule {rule!r}; expected one of {PRUNED_RULES}")
    done = out[np.isfinite(out)]
    top = float(done.max()) if done.size else 0.0
    spacing = max(abs(top), 1.0)
    order = np.lexsort((value, -pruned_step[pruned]))  # furthest step first, then lowest value
    rank = np.empty(order.size)
    rank[order] = np.arange(order.size)
    out[pruned] = top + spacing * (1.0 + rank)
    return out


@dataclass(frozen=True)
class History:
    """Arrays over the trials of one experiment, in tid order.

    ``X`` is ``(n, P)`` (NaN where inactive), ``state`` the job states. ``loss`` is what samplers
    rank by (lower is better): the loss of complete trials (DONE, status ok) and, for pruned
    trials, the stand-in of :func:`rank_pruned` (so model-based samplers such as TPE learn from
    them); NaN where there is nothing to learn from (pending, failed or errored trials).
    ``pruned`` marks the pruned trials; samplers that must only see finished evaluations (anneal)
    use :attr:`complete`.
    """

    X: np.ndarray
    loss: np.ndarray
    state: np.ndarray
    tid: np.ndarray
    pruned: np.ndarray

    @property
    def ok(self) -> np.ndarray:
        """Trials samplers learn from: complete trials with a loss and ranked pruned trials."""
        return (self.state == JOB_STATE_DONE) & ~np.isnan(self.loss)

    @property
    def complete(self) -> np.ndarray:
        """DONE trials with status ok and a loss (``loss`` is their real loss)."""
        return self.ok & ~self.pruned

    @property
    def pending(self) -> np.ndarray:
        """NEW or RUNNING trials (two comparisons: cheaper than ``np.isin`` on the hot path)."""
        return (self.state == JOB_STATE_NEW) | (self.state == JOB_STATE_RUNNING)

    def __len__(self) -> int:
        return len(self.tid)


_TID = operator.itemgetter("tid")
_FINISHED = tuple(sorted(JOB_FINISHED_STATES))


def _loss(doc: dict) -> float:
    """The complete trial's loss, or a pruned trial's last reported value; NaN otherwise."""
    loss = loss_of(doc)
    if loss is not None:
        return loss
    res = doc.get("result") or {}
    if res.get("status") == STATUS_PRUNED and isinstance(res.get("loss"), (int, float)):
        return float(res["loss"])
    return np.nan


def _pruned_step(doc: dict) -> int:
    """The step a pruned trial stopped at (-1 if it reported none); -2 for other trials."""
    res = doc.get("result") or {}
    if res.get("status") != STATUS_PRUNED:
        return -2
    step = res.get("pruned_step")
    return int(step) if isinstance(step, int) else -1


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
    pstep = np.concatenate([cache.get("pstep", np.empty(0, dtype=np.int64))[:start],
                            np.fromiter((_pruned_step(d) for d in tail), dtype=np.int64, count=len(tail))])
    state = np.concatenate([cache.get("state", np.empty(0, dtype=np.int64))[:start],
                            np.fromiter((d["state"] for d in tail), dtype=np.int64, count=len(tail))])
    tail_state = state[start:]
    final = np.zeros(tail_state.shape, dtype=bool)
    for s in _FINISHED:
        final |= tail_state == s
    cache["n_final"] = start + (int(np.argmin(final)) if not final.all() else len(final))
    cache["loss"], cache["state"], cache["pstep"] = loss, state, pstep
    tid = cache.get("tid_arr")
    if tid is None or not unchanged or len(tid) != len(tids):  # same tids: reuse the array
        tid = cache["tid_arr"] = np.fromiter(tids, dtype=np.int64, count=len(tids))
    pruned = pstep > -2
    return History(X=cache["X"], loss=rank_pruned(loss, pruned, pstep) if pruned.any() else loss,
                   state=state, tid=tid, pruned=pruned)


def docs_from_rows(new_ids: Sequence[int], space: CompiledSpace, X: np.ndarray, trials: Any,
                   extra_misc: Callable[[int], dict] | None = None) -> list[dict]:
    """One NEW document per id from the rows of ``X`` (NaN = inactive)."""
    exp_key = getattr(trials, "_exp_key", None)
    return [new_trial_doc(tid, space.row_to_vals(X[i]), exp_key=exp_key,
                          extra_misc=extra_misc(i) if extra_misc else None)
            for i, tid in enumerate(new_ids)]
