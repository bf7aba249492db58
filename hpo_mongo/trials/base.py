"""``BaseTrials``: the one store interface fmin, the algorithms and the CLI use.

Contract:
- ``trials`` is the refreshed list of this experiment's documents, sorted by tid; ``refresh()``
  brings it up to date (inserts are invisible until then, as in hyperopt). Every state is
  included (NEW, RUNNING, DONE, ERROR, CANCEL): unlike hyperopt, errors stay visible.
- States move NEW → RUNNING → DONE / ERROR / CANCEL; a requeued trial goes RUNNING → NEW.
- The driver writes NEW documents; whoever evaluates (fmin in-process, or a worker) writes
  state, result and times. Algorithms only read.
- ``asynchronous`` stores are evaluated by workers; fmin then only queues and waits.
- fmin drives a store through the run session it opens (:meth:`BaseTrials.open_session`,
  :mod:`hpo_mongo.trials.session`); algorithms may keep derived arrays in ``algo_cache``, which
  is never pickled.
Backends implement ``refresh``, ``new_trial_ids``, ``insert_trial_docs``,
``count_by_state_unsynced``, ``delete_all``, attachments and ``open_session``; everything else is
derived here.
"""
from __future__ import annotations

import abc
from typing import Any, Iterable, Iterator, MutableMapping

from ..exceptions import AllTrialsFailed
from .documents import JOB_STATE_DONE, STATE_NAMES, STATUS_OK, loss_of, validate_trial_doc
from .failures import FailureCause, describe_failures, group_failures
from .session import Run, RunSession


class BaseTrials(abc.ABC):
    """Shared, backend-independent half of the Trials API (see the module docstring)."""

    asynchronous: bool = False
    #: the JSON description of the search space (``CompiledSpace.to_json()``), set by fmin
    space_json: list | None = None

    def __init__(self, exp_key: str | None = None):
        self._exp_key = exp_key
        self._trials: list[dict] = []
        #: arrays algorithms derive from the trials (e.g. ``algos.base.history``); never pickled
        self.algo_cache: dict[str, Any] = {}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("algo_cache", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("space_json", None)
        self.algo_cache = {}

    # ------------------------------------------------------------ backend methods
    @abc.abstractmethod
    def refresh(self) -> None:
        """Bring ``trials`` up to date with the store."""

    def stage(self, docs: Iterable[dict]) -> None:
        """Queue documents the driver suggests in a batch: visible in ``trials`` at once (so the
        algorithm's next suggestion sees them pending), stored by :meth:`flush_staged` at the latest.
        By default stored now."""
        self.insert_trial_docs(docs)
        self.refresh_inserted()

    def flush_staged(self) -> None:  # noqa: B027 - a hook: stores that stage override it, the default stage() holds nothing
        """Store what :meth:`stage` holds back (in one write, where the store can)."""

    def refresh_inserted(self) -> None:
        """Make the documents this object inserted since the last refresh visible in ``trials``
        without reading the store: the driver's own inserts (it knows what it wrote). Other
        changes show at the next :meth:`refresh`. By default a full ``refresh()``."""
        self.refresh()

    @abc.abstractmethod
    def new_trial_ids(self, n: int) -> list[int]:
        """Allocate ``n`` fresh, unique tids."""

    @abc.abstractmethod
    def _insert_trial_docs(self, docs: list[dict]) -> list[int]:
        """Store validated NEW documents; return their tids."""

    @abc.abstractmethod
    def count_by_state_unsynced(self, arg: int | Iterable[int]) -> int:
        """Count this experiment's trials in state(s) ``arg`` in the store itself."""

    @abc.abstractmethod
    def delete_all(self) -> None:
        """Delete every trial (and attachment) of this experiment."""

    @property
    @abc.abstractmethod
    def attachments(self) -> MutableMapping[str, bytes]:
        """Experiment-level attachments (name → bytes)."""

    @abc.abstractmethod
    def trial_attachments(self, trial: dict) -> MutableMapping[str, bytes]:
        """Attachments of one trial (name → bytes)."""

    @abc.abstractmethod
    def open_session(self, run: Run) -> RunSession:
        """What fmin drives while it runs on this store (see :mod:`hpo_mongo.trials.session`)."""

    def space_description(self) -> list | None:
        """The JSON description of the search space (one dict per parameter: label, kind, choice
        options), which turns stored choice indices into values; None when unknown. Here: what
        fmin recorded on this object (``space_json``); queue-backed stores fall back to the
        experiment document."""
        return self.space_json

    # ------------------------------------------------------------ inserting
    def insert_trial_doc(self, doc: dict) -> int:
        """Validate and store one NEW document (visible after ``refresh()``)."""
        return self.insert_trial_docs([doc])[0]

    def insert_trial_docs(self, docs: Iterable[dict]) -> list[int]:
        """Validate and store NEW documents (visible after ``refresh()``)."""
        docs = [dict(d) for d in docs]
        for d in docs:
            validate_trial_doc(d, self._exp_key)
        return self._insert_trial_docs(docs)

    def new_trial_docs(self, tids, specs, results, miscs) -> list[dict]:
        """hyperopt's helper: documents from parallel lists (validated on insert)."""
        out = []
        # lists of unequal length: zip stops at the shortest (nothing checks that they match)
        for tid, spec, result, misc in zip(tids, specs, results, miscs, strict=False):
            out.append(dict(tid=tid, spec=spec, result=result, misc=misc, state=0, owner=None,
                            book_time=None, refresh_time=None, exp_key=self._exp_key, version=0))
        return out

    # ------------------------------------------------------------ views
    @property
    def exp_key(self) -> str | None:
        return self._exp_key

    @property
    def trials(self) -> list[dict]:
        return self._trials

    def __iter__(self) -> Iterator[dict]:
        return iter(self._trials)

    def __len__(self) -> int:
        return len(self._trials)

    def __getitem__(self, item: Any) -> Any:
        return self._trials[item]

    @property
    def tids(self) -> list[int]:
        return [t["tid"] for t in self._trials]

    @property
    def specs(self) -> list[Any]:
        return [t["spec"] for t in self._trials]

    @property
    def results(self) -> list[dict]:
        return [t["result"] for t in self._trials]

    @property
    def miscs(self) -> list[dict]:
        return [t["misc"] for t in self._trials]

    @property
    def idxs_vals(self) -> tuple[dict, dict]:
        return self.idxs, self.vals

    @property
    def idxs(self) -> dict[str, list]:
        """``{label: [tids where active]}`` over all trials."""
        out: dict[str, list] = {}
        for t in self._trials:
            for k, v in t["misc"]["idxs"].items():
                out.setdefault(k, []).extend(v)
        return out

    @property
    def vals(self) -> dict[str, list]:
        """``{label: [values where active]}`` over all trials (choice values are indices)."""
        out: dict[str, list] = {}
        for t in self._trials:
            for k, v in t["misc"]["vals"].items():
                out.setdefault(k, []).extend(v)
        return out

    def losses(self, bandit: Any = None) -> list[float | None]:
        """``result.loss`` per trial (None where missing)."""
        return [t["result"].get("loss") for t in self._trials]

    def statuses(self, bandit: Any = None) -> list[str]:
        return [t["result"].get("status") for t in self._trials]

    def count_by_state_synced(self, arg: int | Iterable[int], trials: Any = None) -> int:
        """Count trials in state(s) ``arg`` among the refreshed ``trials``."""
        states = {arg} if isinstance(arg, int) else set(arg)
        return sum(1 for t in (trials if trials is not None else self._trials) if t["state"] in states)

    @property
    def best_trial(self) -> dict:
        """The DONE trial with status ok and the lowest loss (ties: lowest tid)."""
        best, best_loss = None, None
        for t in self._trials:
            if t["state"] != JOB_STATE_DONE or t["result"].get("status") != STATUS_OK:
                continue
            loss = loss_of(t)
            if loss is not None and (best_loss is None or loss < best_loss):
                best, best_loss = t, loss
        if best is None:
            raise self._all_failed()
        return best

    def errors(self) -> list[FailureCause]:
        """Why trials failed, grouped by cause, most frequent first: ERROR trials (the objective
        raised, could not be loaded, was lost) and DONE trials with status fail (NaN loss…); each
        :class:`~hpo_mongo.trials.failures.FailureCause` has kind, message, count, tids, hosts and
        the first traceback."""
        return group_failures(self._trials)

    def _all_failed(self) -> AllTrialsFailed:
        """The error fmin and ``best_trial`` raise when no trial succeeded, naming the causes."""
        causes = self.errors()
        n = len(self._trials)
        if not causes:
            states = sorted({STATE_NAMES.get(t["state"], str(t["state"])) for t in self._trials})
            return AllTrialsFailed(f"no trial finished with status 'ok' and a loss ({n} trial(s): "
                                   f"{', '.join(states) or 'none'})")
        failed = sum(c.count for c in causes)
        return AllTrialsFailed(f"no trial succeeded: {failed} of {n} trial(s) failed:\n  "
                               f"{describe_failures(causes)}", causes)

    @property
    def argmin(self) -> dict[str, Any]:
        """The best trial's ``{label: value}`` (choice values as indices; inactive labels absent)."""
        return {k: v[0] for k, v in self.best_trial["misc"]["vals"].items() if v}

    def average_best_error(self, bandit: Any = None) -> float:
        """Loss (or ``true_loss``) of the best ok trial; hyperopt's variance weighting is not applied."""
        best = self.best_trial
        return float(best["result"].get("true_loss", best["result"]["loss"]))

    def to_dataframe(self, space: Any = None) -> Any:
        """One row per trial as a pandas DataFrame (needs the ``pandas`` extra); see hpo_mongo.export."""
        from ..export import to_dataframe
        return to_dataframe(self, space=space)

    def export(self, path: Any, format: str | None = None, space: Any = None) -> int:
        """Write one row per trial to ``path`` (.csv / .json / .jsonl); see hpo_mongo.export."""
        from ..export import export_trials
        return export_trials(self, path, format=format, space=space)

    def fmin(self, fn, space, algo=None, max_evals=None, **kwargs) -> Any:
        """``fmin`` on this store (hyperopt's ``Trials.fmin``)."""
        from ..driver import fmin
        return fmin(fn, space, algo=algo, max_evals=max_evals, trials=self,
                    allow_trials_fmin=False, **kwargs)
