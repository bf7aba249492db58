"""Pruners: stop unpromising trials early from the values they ``report`` (``fmin(pruner=...)``).

Every pruner minimises, decides from the trial's own reports and the experiment's
:class:`~hpo_mongo.trials.reports.ReportHistory` (see :mod:`hpo_mongo.pruners.base`), and is a
validated, picklable value object, so every worker applies the same one.
"""
from .base import BasePruner
from .halving import HyperbandPruner, SuccessiveHalvingPruner
from .percentile import MedianPruner, PercentilePruner
from .simple import NopPruner, PatientPruner, ThresholdPruner

__all__ = ["BasePruner", "NopPruner", "MedianPruner", "PercentilePruner", "SuccessiveHalvingPruner",
           "HyperbandPruner", "ThresholdPruner", "PatientPruner"]
