"""Pruners that look at the trial's own reports only: no pruning, a threshold, patience."""
from __future__ import annotations

import math

import numpy as np

from .. import _validation as v
from ..exceptions import InvalidParameterError
from ..trials.reports import ReportHistory, TrialReports
from .base import POSITIVE, STEPS, BasePruner, checked_step, worst_if_nan


class NopPruner(BasePruner):
    """Never prunes (``fmin``'s default): ``report`` only records the values."""

    def prune(self, trial: TrialReports, history: ReportHistory) -> bool:
        return False


class ThresholdPruner(BasePruner):
    """Prune when the latest value is below ``lower``, above ``upper`` or NaN (e.g. a diverged loss).

    At least one bound is required; ``n_warmup_steps`` and ``interval_steps`` as in
    :class:`~hpo_mongo.pruners.MedianPruner`. Needs no query.
    """

    def __init__(self, lower: float | None = None, upper: float | None = None, n_warmup_steps: int = 0,
                 interval_steps: int = 1):
        number = v.Interval(float, None, None)
        v.validate({
            "lower": (lower, [number, v.NONE]),
            "upper": (upper, [number, v.NONE]),
            "n_warmup_steps": (n_warmup_steps, [STEPS]),
            "interval_steps": (interval_steps, [POSITIVE]),
        }, "ThresholdPruner")
        if lower is None and upper is None:
            raise InvalidParameterError("ThresholdPruner needs 'lower' or 'upper' (or both); got neither.")
        if lower is not None and upper is not None and lower > upper:
            raise InvalidParameterError(
                f"The 'lower' parameter of ThresholdPruner must be <= upper ({upper!r}). Got {lower!r} instead.")
        self.lower = None if lower is None else float(lower)
        self.upper = None if upper is None else float(upper)
        self.n_warmup_steps = int(n_warmup_steps)
        self.interval_steps = int(interval_steps)

    def prune(self, trial: TrialReports, history: ReportHistory) -> bool:
        if not checked_step(trial, self.n_warmup_steps, self.interval_steps):
            return False
        value = float(trial.value[-1])
        return (math.isnan(value) or (self.lower is not None and value < self.lower)
                or (self.upper is not None and value > self.upper))


class PatientPruner(BasePruner):
    """Prune only when the trial has not improved for ``patience`` steps, and then only if
    ``wrapped_pruner`` (None: no other condition) also says so.

    "Not improved": the best of the last ``patience + 1`` reports (in step order) is not below the
    best of the earlier ones by more than ``min_delta`` (Keras' EarlyStopping meaning of
    ``min_delta``; an exact plateau counts as no improvement; NaN values count as worst). No
    query of its own; the wrapped pruner is asked only when the patience ran out.
    """

    def __init__(self, wrapped_pruner: BasePruner | None, patience: int, min_delta: float = 0.0):
        v.validate({
            "wrapped_pruner": (wrapped_pruner, [v.InstanceOf((BasePruner,), "a pruner"), v.NONE]),
            "patience": (patience, [STEPS]),
            "min_delta": (min_delta, [v.Interval(float, 0, None)]),
        }, "PatientPruner")
        self.wrapped_pruner = wrapped_pruner
        self.patience = int(patience)
        self.min_delta = float(min_delta)

    def prune(self, trial: TrialReports, history: ReportHistory) -> bool:
        if trial.n <= self.patience + 1:
            return False
        values = worst_if_nan(trial.value[np.argsort(trial.step, kind="stable")])
        split = trial.n - self.patience - 1
        stalled = values[split:].min() >= values[:split].min() - self.min_delta
        if not stalled:
            return False
        return True if self.wrapped_pruner is None else self.wrapped_pruner.prune(trial, history)
