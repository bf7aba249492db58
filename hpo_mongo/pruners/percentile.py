"""Median and percentile pruning: stop a trial whose best value so far is worse than the given
percentile of the completed trials' values at the same step (Optuna's semantics)."""
from __future__ import annotations

import numpy as np

from .. import _validation as v
from ..trials.reports import KIND_COMPLETE, ReportHistory, TrialReports
from .base import POSITIVE, STEPS, BasePruner, checked_step


class PercentilePruner(BasePruner):
    """Prune when the trial's best value so far is worse than the ``percentile``-th percentile of
    the values that **completed** trials (DONE, status ok) reported at the same step.

    - ``n_startup_trials``: no pruning until that many trials of the experiment completed;
    - ``n_warmup_steps``: no pruning at steps below it;
    - ``interval_steps``: after the warm-up, check only the first report in each window of that
      many steps;
    - ``n_min_trials``: no pruning at a step fewer than that many completed trials reported.

    The trial's own best is the lowest of all its reports (a trial whose reports are all NaN is
    pruned); the completed trials' value is their report at exactly that step (NaN values are
    left out of the percentile). Ties are kept: a trial equal to the percentile goes on.
    One ``at_step`` query per checked report (and ``completed_at_least`` until the start-up is over).
    """

    def __init__(self, percentile: float, n_startup_trials: int = 5, n_warmup_steps: int = 0,
                 interval_steps: int = 1, *, n_min_trials: int = 1):
        v.validate({
            "percentile": (percentile, [v.Interval(float, 0, 100)]),
            "n_startup_trials": (n_startup_trials, [STEPS]),
            "n_warmup_steps": (n_warmup_steps, [STEPS]),
            "interval_steps": (interval_steps, [POSITIVE]),
            "n_min_trials": (n_min_trials, [POSITIVE]),
        }, type(self).__name__)
        self.percentile = float(percentile)
        self.n_startup_trials = int(n_startup_trials)
        self.n_warmup_steps = int(n_warmup_steps)
        self.interval_steps = int(interval_steps)
        self.n_min_trials = int(n_min_trials)

    def prune(self, trial: TrialReports, history: ReportHistory) -> bool:
        if not checked_step(trial, self.n_warmup_steps, self.interval_steps):
            return False
        if not history.completed_at_least(max(self.n_startup_trials, 1)):
            return False
        own = trial.value[~np.isnan(trial.value)]
        if own.size == 0:
            return True
        rows = history.at_step(int(trial.step[-1]))
        values = rows.value[rows.kind == KIND_COMPLETE]
        if values.size < self.n_min_trials:
            return False
        values = values[~np.isnan(values)]
        if values.size == 0:
            return False
        return bool(own.min() > np.percentile(values, self.percentile))


class MedianPruner(PercentilePruner):
    """:class:`PercentilePruner` at the 50th percentile: prune a trial whose best value so far is
    worse than the median of the completed trials' values at the same step."""

    def __init__(self, n_startup_trials: int = 5, n_warmup_steps: int = 0, interval_steps: int = 1,
                 *, n_min_trials: int = 1):
        super().__init__(50.0, n_startup_trials, n_warmup_steps, interval_steps, n_min_trials=n_min_trials)

    def __repr__(self) -> str:
        return (f"MedianPruner(n_startup_trials={self.n_startup_trials}, n_warmup_steps={self.n_warmup_steps}, "
                f"interval_steps={self.interval_steps}, n_min_trials={self.n_min_trials})")
