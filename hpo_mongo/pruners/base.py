"""The pruner interface: stop a trial early from its own reports and the other trials' ones.

A pruner is called after each stored report of a running trial with
``prune(trial, history) -> bool`` (True = stop it), where ``trial`` is the trial's own
:class:`~hpo_mongo.trials.reports.TrialReports` (its last row is the report just made) and
``history`` the experiment's :class:`~hpo_mongo.trials.reports.ReportHistory`.

Contract every pruner keeps:

- **A value object.** Parameters are validated in ``__init__`` and never change; a decision
  is a function of ``(trial, history)`` only. So the pruner is pickled with the experiment and
  every worker holding a copy decides the same, with no state shared between processes.
- **Few queries.** A decision reads the history with at most one value query (``at_step`` or
  ``reached``) per rung or step it checks, plus the cacheable ``completed_at_least``; the own-trial
  conditions (warm-up, interval) are checked first, so most reports cost no query at all.
- **Minimisation.** Lower values are better; NaN is worse than anything (a NaN report of the
  trial itself prunes it wherever the pruner would compare it), ±inf compare as numbers.
"""
from __future__ import annotations

import abc
from typing import Any

import numpy as np

from .. import _validation as v
from ..trials.reports import ReportHistory, TrialReports

STEPS = v.Interval(int, 0, None)
POSITIVE = v.Interval(int, 1, None)


class BasePruner(abc.ABC):
    """Decides whether a running trial stops after its latest report (see the module docstring)."""

    @abc.abstractmethod
    def prune(self, trial: TrialReports, history: ReportHistory) -> bool:
        """True to stop ``trial`` now; called right after its report ``trial.step[-1]`` was stored."""

    def params(self) -> dict[str, Any]:
        """The constructor parameters (public attributes)."""
        return {k: val for k, val in vars(self).items() if not k.startswith("_")}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={val!r}' for k, val in self.params().items())})"

    def __eq__(self, other: Any) -> bool:
        return type(other) is type(self) and other.params() == self.params()

    def __hash__(self) -> int:
        return hash((type(self).__name__, repr(self)))


def checked_step(trial: TrialReports, n_warmup_steps: int, interval_steps: int) -> bool:
    """Whether a pruner with this warm-up and interval looks at the report just made.

    Reports before ``n_warmup_steps`` are never checked; after it, only the first report in each
    window of ``interval_steps`` steps is (a report at a step lower than an earlier one is not).
    """
    step = int(trial.step[-1])
    if step < n_warmup_steps:
        return False
    window = (step - n_warmup_steps) // interval_steps * interval_steps + n_warmup_steps
    return int(trial.step[:-1].max(initial=-1)) < window


def worst_if_nan(values: np.ndarray) -> np.ndarray:
    """``values`` with NaN replaced by +inf (NaN ranks worst)."""
    return np.where(np.isnan(values), np.inf, values)
