"""``fmin``: the driver loop — refresh, suggest, queue, evaluate (in-process) or wait (workers).

The loop is the same for every store. In-memory :class:`~hpo_mongo.trials.memory.Trials` are
evaluated here, one trial at a time; asynchronous stores (MongoTrials) are evaluated by workers
while fmin keeps the queue filled and refreshes. The algorithm is called once per new trial,
each call with the next seed from ``rstate``, so the i-th suggestion gets the i-th seed
whatever the queue length or the timing of the workers.
"""
from __future__ import annotations

import logging
import os
import pickle
import sys
import time
import warnings
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from . import _validation as v
from .domain import Domain
from .exceptions import InvalidParameterError
from .pruners import BasePruner, NopPruner
from .reporting import LocalReporter, evaluate_trial, report, should_prune
from .results import error_info, error_result
from .space import space_eval
from .trials.base import BaseTrials
from .trials.documents import (JOB_FINISHED_STATES, JOB_PENDING_STATES, JOB_STATE_DONE,
                               JOB_STATE_ERROR, JOB_STATE_NEW, JOB_STATE_RUNNING, loss_of, new_trial_doc)
from .trials.memory import Trials

logger = logging.getLogger("hpo_mongo.fmin")

SEED_ENV_VARS = ("HPO_MONGO_FMIN_SEED", "HYPEROPT_FMIN_SEED")


class Ctrl:
    """Handle given to objectives that take ``ctrl`` (``pass_expr_memo_ctrl``)."""

    def __init__(self, trials: Any, current_trial: dict | None = None):
        self.trials = trials
        self.current_trial = current_trial

    @property
    def attachments(self):
        return self.trials.trial_attachments(self.current_trial)

    def checkpoint(self, result: dict | None = None) -> None:
        """Record an intermediate result on the running trial."""
        if result is not None and self.current_trial is not None:
            self.current_trial["result"] = dict(result)

    def report(self, value: float, step: int, *, raise_pruned: bool = True) -> None:
        """:func:`hpo_mongo.report` for ``pass_expr_memo_ctrl`` objectives."""
        report(value, step, raise_pruned=raise_pruned)

    def should_prune(self) -> bool:
        """:func:`hpo_mongo.should_prune` for ``pass_expr_memo_ctrl`` objectives."""
        return should_prune()


def default_algo() -> Callable:
    """TPE when available, else random search (with a warning)."""
    try:
        from .algos import tpe  # noqa: WPS433
        return tpe.suggest
    except (ImportError, AttributeError):
        from .algos import rand
        warnings.warn("TPE is not available yet; fmin(algo=None) uses rand.suggest", stacklevel=3)
        return rand.suggest


def _rstate(rstate: Any) -> np.random.Generator:
    if rstate is None:
        for var in SEED_ENV_VARS:
            if os.environ.get(var):
                return np.random.default_rng(int(os.environ[var]))
        return np.random.default_rng()
    if isinstance(rstate, np.random.Generator):
        return rstate
    if isinstance(rstate, np.random.RandomState):
        return np.random.default_rng(rstate.randint(2**31 - 1))
    raise InvalidParameterError(
        f"The 'rstate' parameter of fmin must be a numpy Generator (np.random.default_rng(seed)), "
        f"a RandomState or None. Got {rstate!r} instead.")


def _validate(max_evals, timeout, loss_threshold, max_queue_len, points_to_evaluate,
              early_stop_fn, catch_eval_exceptions, return_argmin, trials_save_file, algo,
              pruner=None) -> None:
    v.validate({
        "max_evals": (max_evals, [v.Interval(int, 0, None), v.NONE]),
        "timeout": (timeout, [v.Interval(float, 0, None, closed="neither"), v.NONE]),
        "loss_threshold": (loss_threshold, [v.Interval(float, None, None), v.NONE]),
        "max_queue_len": (max_queue_len, [v.Interval(int, 1, None)]),
        "points_to_evaluate": (points_to_evaluate, [v.NONE, v.Satisfies(
            lambda p: isinstance(p, (list, tuple)) and all(isinstance(x, Mapping) for x in p),
            "a list of dicts {label: value}")]),
        "early_stop_fn": (early_stop_fn, [v.NONE, v.CALLABLE]),
        "catch_eval_exceptions": (catch_eval_exceptions, [v.BOOL]),
        "return_argmin": (return_argmin, [v.BOOL]),
        "trials_save_file": (trials_save_file, [v.STRING, v.InstanceOf((os.PathLike,), "a path")]),
        "algo": (algo, [v.NONE, v.CALLABLE]),
        "pruner": (pruner, [v.NONE, v.InstanceOf((BasePruner,), "a pruner from hpo_mongo.pruners")]),
    }, "fmin")


def fmin(fn: Callable, space: Any, algo: Callable | None = None, max_evals: int | None = None,
         timeout: float | None = None, loss_threshold: float | None = None, trials: Any = None,
         rstate: Any = None, allow_trials_fmin: bool = True, pass_expr_memo_ctrl: bool | None = None,
         catch_eval_exceptions: bool = False, verbose: bool = True, return_argmin: bool = True,
         points_to_evaluate: list[dict] | None = None, max_queue_len: int = 1,
         show_progressbar: Any = True, early_stop_fn: Callable | None = None,
         trials_save_file: str = "", pruner: BasePruner | None = None) -> Any:
    """Minimize ``fn`` over ``space``; hyperopt's signature and semantics (see docs/compat.md).

    Returns the best point as ``{label: value}`` (choice values as indices) or, with
    ``return_argmin=False``, the evaluated space at that point. ``pruner`` (default: none) stops
    trials early from the values their objective ``report``s (docs/pruning.md).
    """
    _validate(max_evals, timeout, loss_threshold, max_queue_len, points_to_evaluate,
              early_stop_fn, catch_eval_exceptions, return_argmin, trials_save_file, algo, pruner)
    if allow_trials_fmin and trials is not None and not isinstance(trials, BaseTrials) and hasattr(trials, "fmin"):
        return trials.fmin(fn, space, algo=algo, max_evals=max_evals, timeout=timeout,
                           loss_threshold=loss_threshold, rstate=rstate, verbose=verbose,
                           max_queue_len=max_queue_len, show_progressbar=show_progressbar,
                           catch_eval_exceptions=catch_eval_exceptions, return_argmin=return_argmin,
                           points_to_evaluate=points_to_evaluate, early_stop_fn=early_stop_fn,
                           trials_save_file=trials_save_file,
                           **({} if pruner is None else {"pruner": pruner}))
    if algo is None:
        algo = default_algo()
    max_evals = sys.maxsize if max_evals is None else max_evals
    rng = _rstate(rstate)
    domain = Domain(fn, space, pass_expr_memo_ctrl=pass_expr_memo_ctrl)
    if trials is None:
        trials = _load_trials(trials_save_file) if trials_save_file else None
        if trials is None:
            trials = Trials()
    elif not isinstance(trials, BaseTrials):
        raise InvalidParameterError(
            f"The 'trials' parameter of fmin must be a Trials or MongoTrials. Got {trials!r} instead.")
    if trials.asynchronous and pruner is not None:
        raise InvalidParameterError(
            f"The 'pruner' parameter of fmin works with in-memory Trials only for now; {type(trials).__name__} "
            f"workers do not record reports yet. Got {pruner!r} instead.")
    trials.space_json = domain.space.to_json()  # lets export/plot show choice values, not indices
    loop = _FMinLoop(domain, algo, trials, rng, max_evals=max_evals, timeout=timeout,
                     loss_threshold=loss_threshold, catch_eval_exceptions=catch_eval_exceptions,
                     max_queue_len=max_queue_len, early_stop_fn=early_stop_fn,
                     trials_save_file=trials_save_file,
                     progress=show_progressbar if verbose else False,
                     pruner=pruner if pruner is not None else NopPruner())
    if points_to_evaluate:
        loop.insert_points(points_to_evaluate)
    loop.run()
    if not trials.trials:
        raise InvalidParameterError("fmin ran no trial (max_evals=0?), so there is no argmin to return")
    if return_argmin:
        return trials.argmin
    return space_eval(space, trials.argmin)


def generate_trials_to_calculate(points: Iterable[Mapping[str, Any]]) -> Trials:
    """A Trials pre-filled with NEW trials at ``points`` (hyperopt's helper)."""
    trials = Trials()
    docs = []
    for tid, point in enumerate(points):
        vals = {k: (list(v) if isinstance(v, (list, tuple)) else [v]) for k, v in point.items()}
        docs.append(new_trial_doc(tid, vals))
    trials.insert_trial_docs(docs)
    trials.new_trial_ids(len(docs))
    trials.refresh()
    return trials


def _load_trials(path: str) -> Trials | None:
    if path and os.path.exists(path):
        with open(path, "rb") as f:
            return pickle.load(f)
    return None


def _save_trials(trials: Any, path: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        pickle.dump(trials, f)
    os.replace(tmp, path)


class _Progress:
    """tqdm bar showing finished trials and the best loss (or a user's progress context)."""

    def __init__(self, spec: Any, initial: int, total: int):
        self._cm = None
        self.bar = None
        if spec is False or spec is None:
            return
        if callable(spec) and spec is not True:
            self._cm = spec(initial=initial, total=total)
            self.bar = self._cm.__enter__()
            return
        from tqdm.auto import tqdm
        self.bar = tqdm(total=None if total == sys.maxsize else total, initial=initial,
                        dynamic_ncols=True, unit="trial")
        self.bar.set_postfix_str("best loss: ?")

    def update(self, n: int, best: float | None) -> None:
        if self.bar is None:
            return
        if n:
            self.bar.update(n)
        if best is not None:
            if hasattr(self.bar, "set_postfix_str"):
                self.bar.set_postfix_str(f"best loss: {best:.6g}")
            else:
                self.bar.postfix = f"best loss: {best:.6g}"

    def close(self) -> None:
        if self._cm is not None:
            self._cm.__exit__(None, None, None)
        elif self.bar is not None:
            self.bar.close()


class _FMinLoop:
    """One run of fmin (see the module docstring)."""

    def __init__(self, domain: Domain, algo: Callable, trials: BaseTrials, rng: np.random.Generator, *,
                 max_evals: int, timeout: float | None, loss_threshold: float | None,
                 catch_eval_exceptions: bool, max_queue_len: int, early_stop_fn: Callable | None,
                 trials_save_file: str, progress: Any, pruner: BasePruner):
        self.domain, self.algo, self.trials, self.rng = domain, algo, trials, rng
        self.pruner = pruner
        self.max_evals, self.timeout, self.loss_threshold = max_evals, timeout, loss_threshold
        self.catch = catch_eval_exceptions
        self.max_queue_len = max_queue_len
        self.early_stop_fn = early_stop_fn
        self.early_stop_args: list = []
        self.save_file = trials_save_file
        self.progress_spec = progress
        self.start = time.monotonic()
        self.exhausted = False
        self.stop_reason: str | None = None
        self._hooks: Any = None

    def hooks(self) -> Any:
        """The asynchronous store's hooks (``trials._fmin_hooks(self)``), created once; None otherwise.

        Created before anything is queued (also before ``points_to_evaluate``), so a store can
        check and publish the domain first.
        """
        if self._hooks is None:
            make = getattr(self.trials, "_fmin_hooks", None)
            self._hooks = make(self) if make else False
        return self._hooks or None

    # --------------------------------------------------------------- helpers
    def insert_points(self, points: list[Mapping[str, Any]]) -> None:
        """Queue user-given points first, unless the store already holds trials (a resumed run)."""
        if self.trials.asynchronous:
            self.hooks()
        self.trials.refresh()
        if self.trials.trials:
            logger.info("points_to_evaluate ignored: the trials already hold %d trials", len(self.trials.trials))
            return
        docs = []
        ids = self.trials.new_trial_ids(len(points))
        for tid, point in zip(ids, points):
            vals = self.domain.space.check_point(point, what=f"points_to_evaluate[{len(docs)}]")
            docs.append(new_trial_doc(tid, vals, exp_key=self.trials.exp_key))
        self.trials.insert_trial_docs(docs)
        self.trials.refresh()

    def _counts(self) -> tuple[int, int, int, float | None]:
        n_finished = n_pending = n_new = 0
        best = None
        for t in self.trials.trials:
            s = t["state"]
            if s in JOB_FINISHED_STATES:
                n_finished += 1
                if s == JOB_STATE_DONE:
                    loss = loss_of(t)
                    if loss is not None and (best is None or loss < best):
                        best = loss
            elif s in JOB_PENDING_STATES:
                n_pending += 1
                n_new += s == JOB_STATE_NEW
        return n_finished, n_pending, n_new, best

    def _should_stop(self, best: float | None, new_results: bool) -> str | None:
        if self.timeout is not None and time.monotonic() - self.start >= self.timeout:
            return "timeout"
        if self.loss_threshold is not None and best is not None and best <= self.loss_threshold:
            return "loss_threshold"
        if self.early_stop_fn is not None and new_results:
            stop, args = self.early_stop_fn(self.trials, *self.early_stop_args)
            self.early_stop_args = list(args) if args is not None else []
            if stop:
                return "early_stop_fn"
        return None

    def _suggest(self, n: int) -> int:
        """Ask the algorithm for ``n`` trials, one call (and one seed) per trial."""
        made = 0
        for _ in range(n):
            ids = self.trials.new_trial_ids(1)
            seed = int(self.rng.integers(2**31 - 1))
            docs = self.algo(ids, self.domain, self.trials, seed)
            if not docs:
                self.exhausted = True
                break
            self.trials.insert_trial_docs(docs)
            self.trials.refresh()
            made += len(docs)
        return made

    def _evaluate_new(self) -> None:
        """Evaluate the NEW trials in-process (in-memory store)."""
        trials = self.trials
        for doc in [t for t in trials.trials if t["state"] == JOB_STATE_NEW]:
            if self.timeout is not None and time.monotonic() - self.start >= self.timeout:
                return
            trials._mark_running(doc)
            ctrl = Ctrl(trials, doc)
            reporter = LocalReporter(trials.reports, doc, self.pruner)
            try:
                result, attachments = evaluate_trial(self.domain, doc["misc"]["vals"], ctrl, reporter)
            except KeyboardInterrupt:
                trials._requeue(doc)
                raise
            except Exception as e:
                info = error_info(e)
                trials._finish(doc, JOB_STATE_ERROR, error_result(info), info)
                logger.error("trial %s raised %s: %s", doc["tid"], info["type"], info["message"])
                if not self.catch:
                    trials.refresh()
                    raise
                continue
            for name, blob in attachments.items():
                trials.trial_attachments(doc)[name] = blob
            trials._finish(doc, JOB_STATE_DONE, result)

    # --------------------------------------------------------------- the loop
    def run(self) -> None:
        trials = self.trials
        trials.refresh()
        if not trials.asynchronous:  # nothing else evaluates in-memory trials: RUNNING ones were interrupted
            for t in trials.trials:
                if t["state"] == JOB_STATE_RUNNING:
                    trials._requeue(t)
        hooks = self.hooks()
        n_finished, _, _, best = self._counts()
        progress = _Progress(self.progress_spec, min(n_finished, self.max_evals), self.max_evals)
        shown = min(n_finished, self.max_evals)
        last_finished = n_finished
        try:
            while True:
                if hooks:
                    hooks.tick()
                trials.refresh()
                n_finished, n_pending, n_new, best = self._counts()
                progress.update(max(0, min(n_finished, self.max_evals) - shown), best)
                shown = max(shown, min(n_finished, self.max_evals))
                if self.save_file:
                    _save_trials(trials, self.save_file)
                if n_finished >= self.max_evals:
                    self.stop_reason = "max_evals"
                    break
                reason = self._should_stop(best, n_finished > last_finished)
                last_finished = n_finished
                if reason:
                    self.stop_reason = reason
                    logger.info("fmin stops: %s", reason)
                    break
                if self.exhausted and n_pending == 0:
                    self.stop_reason = "exhausted"
                    logger.info("fmin stops: the search space is exhausted")
                    break
                room = self.max_evals - n_finished - n_pending
                if trials.asynchronous:
                    want = hooks.queue_target(self.max_queue_len) - trials.count_by_state_unsynced(JOB_STATE_NEW)
                else:
                    want = self.max_queue_len - n_new
                if not self.exhausted and min(room, want) > 0:
                    self._suggest(min(room, want))
                if trials.asynchronous:
                    hooks.wait()
                else:
                    self._evaluate_new()
        finally:
            if hooks:
                hooks.end(self.stop_reason)
            progress.close()
