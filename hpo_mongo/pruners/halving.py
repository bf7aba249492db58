"""Asynchronous successive halving (ASHA) and Hyperband (brackets of ASHA).

Rungs sit at the resources ``r_k = min_resource * reduction_factor ** (min_early_stopping_rate + k)``
(k = 0, 1, ...); a trial reaches rung k with its first report at a step ``>= r_k``, and its value
at the rung is that report's value. On reaching a rung it is compared at once with every trial
of the experiment that reached the same rung (running, completed, pruned or failed alike) and
goes on only if it ranks in the top ``1 / reduction_factor`` of them (at least the best one goes
on, so the first trials at a rung are never stopped for lack of company): nothing waits for a
rung to fill. This is the promotion rule of Optuna's SuccessiveHalvingPruner; ``min_resource``
is Ray Tune's ``grace_period``.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _validation as v
from ..exceptions import InvalidParameterError
from ..trials.reports import ReportHistory, TrialReports
from .base import POSITIVE, STEPS, BasePruner, worst_if_nan

REDUCTION = v.Interval(int, 2, None)


def crossed_rungs(trial: TrialReports, first_rung: int, reduction_factor: int) -> list[int]:
    """The rung resources the trial's latest report reaches for the first time (usually none)."""
    step = int(trial.step[-1])
    before = int(trial.step[:-1].max(initial=-1))
    out, r = [], first_rung
    while r <= step:
        if r > before:
            out.append(r)
        r *= reduction_factor
    return out


def promotable(value: float, others: np.ndarray, reduction_factor: int) -> bool:
    """Whether ``value`` ranks in the top ``1/reduction_factor`` of itself and ``others`` (at
    least first place); NaN ranks worst, ties go on."""
    if math.isnan(value):
        return False
    competing = np.append(worst_if_nan(others), value)
    k = max(competing.size // reduction_factor - 1, 0)
    return bool(value <= np.partition(competing, k)[k])


def halving_prune(trial: TrialReports, history: ReportHistory, first_rung: int, reduction_factor: int,
                  peers=None) -> bool:
    """Successive-halving decision for the latest report; ``peers(tids) -> mask`` keeps the rows
    the trial competes with (Hyperband: its bracket). One ``reached`` query per rung reached."""
    for rung in crossed_rungs(trial, first_rung, reduction_factor):
        value = float(trial.value[-1])
        if math.isnan(value):
            return True
        rows = history.reached(rung)
        keep = rows.tid != trial.tid
        if peers is not None:
            keep &= peers(rows.tid)
        if not promotable(value, rows.value[keep], reduction_factor):
            return True
    return False


class SuccessiveHalvingPruner(BasePruner):
    """Asynchronous successive halving (ASHA), see the module docstring.

    - ``min_resource``: the step of the first rung (Ray Tune's ``grace_period``); default 1;
    - ``reduction_factor``: keep the top ``1/reduction_factor`` at each rung, rungs that factor apart;
    - ``min_early_stopping_rate``: skip the first rungs (the first one is at
      ``min_resource * reduction_factor ** min_early_stopping_rate``).
    """

    def __init__(self, min_resource: int = 1, reduction_factor: int = 4, min_early_stopping_rate: int = 0):
        v.validate({
            "min_resource": (min_resource, [POSITIVE]),
            "reduction_factor": (reduction_factor, [REDUCTION]),
            "min_early_stopping_rate": (min_early_stopping_rate, [STEPS]),
        }, type(self).__name__)
        self.min_resource = int(min_resource)
        self.reduction_factor = int(reduction_factor)
        self.min_early_stopping_rate = int(min_early_stopping_rate)

    @property
    def first_rung(self) -> int:
        return self.min_resource * self.reduction_factor ** self.min_early_stopping_rate

    def prune(self, trial: TrialReports, history: ReportHistory) -> bool:
        return halving_prune(trial, history, self.first_rung, self.reduction_factor)


def tid_hash(tids: np.ndarray) -> np.ndarray:
    """A well-mixed uint64 hash of each tid (splitmix64's finaliser), vectorized."""
    z = np.asarray(tids).astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


class HyperbandPruner(BasePruner):
    """Hyperband: ``n_brackets`` ASHA brackets, bracket ``b`` with ``min_early_stopping_rate = b``.

    ``n_brackets = floor(log_reduction_factor(max_resource / min_resource)) + 1``. Each trial
    belongs to one bracket, fixed by a hash of its tid (the same in every process), with
    bracket ``b`` drawing a share ``ceil(n_brackets * eta**s / (s + 1))``, ``s = n_brackets - 1 - b``,
    of the trials (Hyperband's allocation: aggressive brackets get more trials). A trial only
    competes with the trials of its own bracket. ``max_resource`` is the largest step a trial
    reports (required: it fixes the brackets before any trial has run, identically on every worker).
    """

    def __init__(self, min_resource: int = 1, max_resource: int | None = None, reduction_factor: int = 3):
        v.validate({
            "min_resource": (min_resource, [POSITIVE]),
            "max_resource": (max_resource, [POSITIVE]),
            "reduction_factor": (reduction_factor, [REDUCTION]),
        }, type(self).__name__)
        assert max_resource is not None  # validated: POSITIVE does not accept None
        if max_resource < min_resource:
            raise InvalidParameterError(
                f"The 'max_resource' parameter of HyperbandPruner must be >= min_resource ({min_resource}). "
                f"Got {max_resource!r} instead.")
        self.min_resource = int(min_resource)
        self.max_resource = int(max_resource)
        self.reduction_factor = int(reduction_factor)
        n, r = 0, self.min_resource
        while r <= self.max_resource:
            n, r = n + 1, r * self.reduction_factor
        eta = self.reduction_factor
        budgets = [math.ceil(n * eta ** (n - 1 - b) / (n - b)) for b in range(n)]
        self._cum_budget = np.cumsum(budgets).astype(np.uint64)

    @property
    def n_brackets(self) -> int:
        return len(self._cum_budget)

    def bracket_of(self, tids: np.ndarray) -> np.ndarray:
        """The bracket of each tid (int64 array)."""
        h = tid_hash(np.atleast_1d(tids)) % self._cum_budget[-1]
        return np.searchsorted(self._cum_budget, h, side="right").astype(np.int64)

    def prune(self, trial: TrialReports, history: ReportHistory) -> bool:
        b = int(self.bracket_of(np.array([trial.tid]))[0])
        first = self.min_resource * self.reduction_factor ** b
        return halving_prune(trial, history, first, self.reduction_factor,
                             peers=lambda tids: self.bracket_of(tids) == b)
