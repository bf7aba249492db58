"""``fmin``: the driver loop — refresh, suggest, queue, evaluate (in-process) or wait (workers).

The loop is the same for every store. In-memory :class:`~hpo_mongo.trials.memory.Trials` are
evaluated here, one trial at a time; asynchronous stores (MongoTrials) are evaluated by workers
while fmin keeps the queue filled and refreshes. The algorithm is called once per new trial,
each call with the next seed from ``rstate``, so the i-th suggestion gets the i-th seed
whatever the queue length or the timing of the workers.
"""
from __future__ import annotations

import functools
import inspect
import logging
import os
import pickle
import sys
import time
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from . import _validation as v
from .ctrl import Ctrl  # noqa: F401 - hyperopt's name, re-exported
from .domain import Domain
from .exceptions import InvalidAnnotatedParameter, InvalidParameterError
from .progress import default_callback, no_progress_callback
from .pruners import BasePruner, NopPruner
from .space import Expr, space_eval
from .trials.base import BaseTrials
from .trials.documents import (JOB_FINISHED_STATES, JOB_PENDING_STATES, JOB_STATE_DONE, JOB_STATE_ERROR, loss_of,
                               new_trial_doc)
from .trials.failures import FailureLog
from .trials.memory import Trials
from .trials.session import Run, RunSession

logger = logging.getLogger("hpo_mongo.fmin")

SEED_ENV_VARS = ("HPO_MONGO_FMIN_SEED", "HYPEROPT_FMIN_SEED")
#: hyperopt's own error sentences for these fmin arguments (our messages start with them)
HYPEROPT_SENTENCES = {
    "timeout": "The timeout argument should be None or a positive value. Given value: {value}",
    "loss_threshold": "The loss_threshold argument should be None or a numeric value. Given value: {value}",
}
NO_TRIAL_SENTENCE = "There are no evaluation tasks, cannot return argmin of task losses."


def default_algo() -> Callable:
    """fmin's algorithm when none is given: TPE (hyperopt's default)."""
    from .algos import tpe
    return tpe.suggest


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


TIMEOUT = [v.Interval(float, 0, None, closed="neither"), v.NONE]
LOSS_THRESHOLD = [v.Interval(float, None, None), v.NONE]


def validate_timeout(timeout: Any) -> None:
    """hyperopt's check: None or a positive number (not a bool)."""
    v.validate({"timeout": (timeout, TIMEOUT)}, "fmin", HYPEROPT_SENTENCES)


def validate_loss_threshold(loss_threshold: Any) -> None:
    """hyperopt's check: None or a number (not a bool)."""
    v.validate({"loss_threshold": (loss_threshold, LOSS_THRESHOLD)}, "fmin", HYPEROPT_SENTENCES)


def _validate(max_evals, timeout, loss_threshold, max_queue_len, points_to_evaluate,
              early_stop_fn, catch_eval_exceptions, return_argmin, trials_save_file, algo,
              pruner=None) -> None:
    v.validate({
        "max_evals": (max_evals, [v.Interval(int, 0, None), v.NONE]),
        "timeout": (timeout, TIMEOUT),
        "loss_threshold": (loss_threshold, LOSS_THRESHOLD),
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
    }, "fmin", HYPEROPT_SENTENCES)


def fmin_pass_expr_memo_ctrl(f: Callable) -> Callable:
    """Mark ``f`` as taking ``expr=``, ``memo=`` and ``ctrl=`` instead of the evaluated point
    (``memo`` is ``{label: [value]}``; ``pyll.rec_eval(expr, memo=memo)`` builds the point)."""
    f.fmin_pass_expr_memo_ctrl = True  # type: ignore[attr-defined]  # hyperopt's marker attribute
    return f


def partial(fn: Callable, **kwargs: Any) -> functools.partial:
    """``functools.partial`` that keeps the :func:`fmin_pass_expr_memo_ctrl` mark."""
    rval = functools.partial(fn, **kwargs)
    if hasattr(fn, "fmin_pass_expr_memo_ctrl"):
        rval.fmin_pass_expr_memo_ctrl = fn.fmin_pass_expr_memo_ctrl  # type: ignore[attr-defined]  # the marker
    return rval


class _KeywordObjective:
    """The objective of ``space="annotated"``: called with the point's dict as keyword arguments."""

    def __init__(self, fn: Callable):
        self.fn = fn

    def __call__(self, point: Mapping[str, Any]) -> Any:
        return self.fn(**point)


def annotated_space(fn: Callable) -> tuple[Callable, dict[str, Any]]:
    """hyperopt's ``space="annotated"``: the space is ``{parameter: hp node}`` read from ``fn``'s
    annotations, and the objective takes the parameters as keywords (a ``return`` annotation is
    ignored; string annotations are evaluated in the objective's module)."""
    annotations = inspect.getfullargspec(fn).annotations
    if any(isinstance(a, str) for a in annotations.values()):  # ``from __future__ import annotations``
        try:
            annotations = inspect.get_annotations(inspect.unwrap(fn), eval_str=True)
        except Exception:  # noqa: BLE001 - leave them as strings: the check below names the problem
            pass
    annotations = {k: a for k, a in annotations.items() if k != "return"}
    for node in annotations.values():
        if not isinstance(node, Expr):
            raise InvalidAnnotatedParameter(
                'When using `space="annotated"`, please annotate the objective function arguments with a '
                "`pyll.base.Apply` subclass. See example in `fmin` docstring")
    return _KeywordObjective(fn), annotations


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
    if isinstance(space, str) and space == "annotated":
        fn, space = annotated_space(fn)
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
        raise InvalidParameterError(f"{NO_TRIAL_SENTENCE} fmin ran no trial (max_evals=0?)")
    if return_argmin:
        return trials.argmin
    if (catch_eval_exceptions and not trials.asynchronous
            and all(t["state"] == JOB_STATE_ERROR for t in trials.trials)):
        return None  # as hyperopt, which drops ERROR trials: no trial, nothing to evaluate
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
    """The progress context of one run: hyperopt's progress callbacks (``True`` = tqdm)."""

    def __init__(self, spec: Any, initial: int, total: int):
        if spec is False or spec is None:
            spec = no_progress_callback
        elif spec is True:
            spec = default_callback
        self._cm = spec(initial=initial, total=total)
        self.bar = self._cm.__enter__()

    def update(self, n: int, best: float | None) -> None:
        if n:
            self.bar.update(n)
        if best is not None:
            if hasattr(self.bar, "set_postfix_str"):
                self.bar.set_postfix_str(f"best loss: {best:.6g}")
            else:
                self.bar.postfix = f"best loss: {best:.6g}"

    def close(self) -> None:
        self._cm.__exit__(None, None, None)


class _FMinLoop:
    """One run of fmin (see the module docstring)."""

    def __init__(self, domain: Domain, algo: Callable, trials: BaseTrials, rng: np.random.Generator, *,
                 max_evals: int, timeout: float | None, loss_threshold: float | None,
                 catch_eval_exceptions: bool, max_queue_len: int, early_stop_fn: Callable | None,
                 trials_save_file: str, progress: Any, start: float | None = None,
                 pruner: BasePruner | None = None):
        self.domain, self.algo, self.trials, self.rng = domain, algo, trials, rng
        self.max_evals, self.timeout, self.loss_threshold = max_evals, timeout, loss_threshold
        self.catch = catch_eval_exceptions
        self.max_queue_len = max_queue_len
        self.early_stop_fn = early_stop_fn
        self.early_stop_args: list = []
        self.save_file = trials_save_file
        self.progress_spec = progress
        self.start = time.monotonic() if start is None else start
        self.exhausted = False
        self.stop_reason: str | None = None
        self.run_spec = Run(domain=domain, algo=algo, max_evals=max_evals, catch_eval_exceptions=catch_eval_exceptions,
                            deadline=None if timeout is None else self.start + timeout,
                            pruner=pruner if pruner is not None else NopPruner(),
                            loss_threshold=loss_threshold, save_file=trials_save_file or "")
        self._session: RunSession | None = None
        self.failures = FailureLog(logger)

    def session(self) -> RunSession:
        """The store's run session, opened once, before anything is queued (also before
        ``points_to_evaluate``), so a store can check and publish the domain first."""
        if self._session is None:
            self._session = self.trials.open_session(self.run_spec)
        return self._session

    # --------------------------------------------------------------- helpers
    def insert_points(self, points: Sequence[Mapping[str, Any]]) -> None:
        """Queue user-given points first, unless the store already holds trials (a resumed run)."""
        self.session()
        self.trials.refresh()
        if self.trials.trials:
            logger.info("points_to_evaluate ignored: the trials already hold %d trials", len(self.trials.trials))
            return
        docs: list[dict] = []
        ids = self.trials.new_trial_ids(len(points))
        for tid, point in zip(ids, points, strict=True):
            vals = self.domain.space.check_point(point, what=f"points_to_evaluate[{len(docs)}]")
            docs.append(new_trial_doc(tid, vals, exp_key=self.trials.exp_key))
        self.trials.insert_trial_docs(docs)
        self.trials.refresh()

    def _counts(self) -> tuple[int, int, float | None]:
        n_finished = n_pending = 0
        best = None
        for t in self.trials.trials:
            s = t["state"]
            if s in JOB_FINISHED_STATES:
                n_finished += 1
                self.failures.note(t)
                if s == JOB_STATE_DONE:
                    loss = loss_of(t)
                    if loss is not None and (best is None or loss < best):
                        best = loss
            elif s in JOB_PENDING_STATES:
                n_pending += 1
        return n_finished, n_pending, best

    def _should_stop(self, best: float | None, new_results: bool) -> str | None:
        run = self.run_spec  # the limits as the store's session may have set them (session.py)
        if run.expired():
            return "timeout"
        if run.loss_threshold is not None and best is not None and best <= run.loss_threshold:
            return "loss_threshold"
        if self.early_stop_fn is not None and new_results:
            stop, args = self.early_stop_fn(self.trials, *self.early_stop_args)
            self.early_stop_args = list(args) if args is not None else []
            if stop:
                return "early_stop_fn"
        return None

    def _suggest(self, n: int) -> int:
        """Ask the algorithm for ``n`` trials, one call (and one seed) per trial, each seeing the
        ones before it as pending. The store says first how many ``max_evals`` leaves room for
        (another driver may share the experiment); the tids come in one block."""
        n = min(n, self.session().room())
        if n <= 0:
            return 0
        made = 0
        try:
            for tid in self.trials.new_trial_ids(n):
                seed = int(self.rng.integers(2**31 - 1))
                docs = self.algo([tid], self.domain, self.trials, seed)
                if not docs:
                    self.exhausted = True
                    break
                self.trials.stage(docs)  # shown at once, stored with the batch: no round trip per trial
                made += len(docs)
        finally:
            self.trials.flush_staged()
        if made:
            self.session().after_batch()
        return made

    # --------------------------------------------------------------- the loop
    def run(self) -> None:
        trials = self.trials
        session = self.session()  # first: the set-up also makes the store ride out outages from here on
        trials.refresh()
        n_finished, _, best = self._counts()
        progress = _Progress(self.progress_spec, min(n_finished, self.max_evals), self.max_evals)
        shown = min(n_finished, self.max_evals)
        last_finished = n_finished
        try:
            while True:
                session.tick()
                trials.refresh()
                n_finished, n_pending, best = self._counts()
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
                want = session.queue_target(self.max_queue_len) - session.queued()
                if not self.exhausted and min(room, want) > 0:
                    self._suggest(min(room, want))
                session.advance()
        finally:
            session.end(self.stop_reason)
            progress.close()
            self.failures.summary()


class FMinIter:
    """hyperopt's ``FMinIter``: fmin's loop driven step by step.

    ``run(N)`` evaluates (or, with MongoTrials, waits for) N more finished trials, ``exhaust()``
    runs up to ``max_evals``, and iterating runs one trial per step. ``timeout`` counts from
    construction. ``run`` always waits for its trials (``block_until_done`` is accepted and ignored).
    """

    catch_eval_exceptions = False
    pickle_protocol = -1

    def __init__(self, algo: Callable, domain: Domain, trials: BaseTrials, rstate: Any,
                 asynchronous: bool | None = None, max_queue_len: int = 1, poll_interval_secs: float = 1.0,
                 max_evals: int = sys.maxsize, timeout: float | None = None, loss_threshold: float | None = None,
                 verbose: bool = False, show_progressbar: Any = True, early_stop_fn: Callable | None = None,
                 trials_save_file: str = ""):
        if asynchronous is not None and bool(asynchronous) != trials.asynchronous:
            raise InvalidParameterError(
                f"The 'asynchronous' parameter of FMinIter must be None or {trials.asynchronous} "
                f"(what the trials store is). Got {asynchronous!r} instead.")
        self.algo, self.domain, self.trials = algo, domain, trials
        self.rstate = _rstate(rstate)
        self.asynchronous = trials.asynchronous
        self.max_queue_len, self.poll_interval_secs = max_queue_len, poll_interval_secs
        self.max_evals, self.timeout, self.loss_threshold = max_evals, timeout, loss_threshold
        self.verbose, self.early_stop_fn, self.trials_save_file = verbose, early_stop_fn, trials_save_file
        self.progress = show_progressbar if verbose else False
        self.early_stop_args: list = []
        self.start_time = time.monotonic()
        self.stop_reason: str | None = None

    def _n_finished(self) -> int:
        self.trials.refresh()
        return sum(1 for t in self.trials.trials if t["state"] in JOB_FINISHED_STATES)

    def run(self, N: int, block_until_done: bool = True) -> None:
        loop = _FMinLoop(self.domain, self.algo, self.trials, self.rstate, max_evals=self._n_finished() + N,
                         timeout=self.timeout, loss_threshold=self.loss_threshold,
                         catch_eval_exceptions=self.catch_eval_exceptions, max_queue_len=self.max_queue_len,
                         early_stop_fn=self.early_stop_fn, trials_save_file=self.trials_save_file,
                         progress=self.progress, start=self.start_time)
        loop.early_stop_args = self.early_stop_args
        loop.run()
        self.early_stop_args, self.stop_reason = loop.early_stop_args, loop.stop_reason

    def exhaust(self) -> "FMinIter":
        self.run(max(0, self.max_evals - self._n_finished()))
        return self

    def __iter__(self) -> "FMinIter":
        return self

    def __next__(self) -> BaseTrials:
        """Run one more trial; StopIteration once an early stop fired or ``max_evals`` is reached."""
        self.run(1)
        if self.stop_reason not in (None, "max_evals") or self._n_finished() >= self.max_evals:
            raise StopIteration
        return self.trials
