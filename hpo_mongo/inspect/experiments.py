"""Experiments: finding one by ``exp_key``, listing them all, counting their trials by state."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..exceptions import UnknownExperiment
from ..trials.queue import ANY_EXPERIMENT, JobQueue
from .space_info import SpaceInfo

#: how the experiment with ``exp_key=None`` is displayed
DEFAULT_LABEL = "(default)"


def exp_label(exp_key: str | None) -> str:
    """How an ``exp_key`` is displayed: ``(default)`` for None, ``""`` for the empty string."""
    if exp_key is None:
        return DEFAULT_LABEL
    if exp_key == "":
        return '""'
    return str(exp_key)


@dataclass
class Experiment:
    """One experiment: its key, its ``experiments`` document (None if it has none) and space."""

    exp_key: str | None
    doc: dict | None
    space: SpaceInfo

    @property
    def label(self) -> str:
        return exp_label(self.exp_key)

    @property
    def max_evals(self) -> int | None:
        v = (self.doc or {}).get("max_evals")
        return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None

    @property
    def status(self) -> str | None:
        return (self.doc or {}).get("status")


def get_experiment(queue: JobQueue, exp_key: str | None) -> Experiment:
    """The experiment ``exp_key``; raises :class:`UnknownExperiment` naming the existing ones.

    An experiment with trials but no ``experiments`` document (written by an older driver) is
    still returned, with an empty space (values are then shown as stored).
    """
    doc = queue.experiment(exp_key)
    if doc is None and not queue.find(exp_key, limit=1):
        known = queue.experiment_keys()
        where = queue.describe()
        if not known:
            raise UnknownExperiment(f"no experiment {exp_label(exp_key)} in {where}: it holds no experiments")
        listed = ", ".join(exp_label(k) for k in known[:10]) + (", ..." if len(known) > 10 else "")
        hint = "; pass --exp-key KEY" if exp_key is None else ""
        raise UnknownExperiment(f"no experiment {exp_label(exp_key)} in {where} (experiments: {listed}){hint}")
    return Experiment(exp_key, doc, SpaceInfo.from_json((doc or {}).get("space")))


def count_by_state(queue: JobQueue, exp_key: Any = ...) -> dict[str, int]:
    """``{new, running, done, error, cancel, total, pruned}`` for one experiment (all when omitted);
    ``pruned`` counts the done trials a pruner stopped."""
    return queue.count_by_state(ANY_EXPERIMENT if exp_key is ... else exp_key)


def list_experiments(queue: JobQueue) -> list[dict]:
    """Every experiment in the queue: ``exp_key, status, max_evals, algorithm, counts`` (by state),
    ``best_loss, created, last_activity`` (see :meth:`JobQueue.experiment_summaries`)."""
    return queue.experiment_summaries()
