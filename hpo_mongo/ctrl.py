"""``Ctrl``: the handle an objective gets when it takes ``ctrl`` (``pass_expr_memo_ctrl``), in-process.

hyperopt's ``base.Ctrl``: ``ctrl.trials`` (the store), ``ctrl.current_trial`` (the document being
evaluated), ``ctrl.attachments`` (the trial's attachments) and ``ctrl.checkpoint(result)``; and
``ctrl.report(value, step)`` / ``ctrl.should_prune()`` (pruning, docs/pruning.md).
Workers give their objectives their own ctrl with the same attributes (:mod:`hpo_mongo.worker.ctrl`).
"""
from __future__ import annotations

from typing import Any, MutableMapping

from .reporting import ReportingCtrl


class Ctrl(ReportingCtrl):
    """Handle given to objectives that take ``ctrl`` (``pass_expr_memo_ctrl``)."""

    def __init__(self, trials: Any, current_trial: dict | None = None):
        self.trials = trials
        self.current_trial = current_trial

    @property
    def attachments(self) -> MutableMapping[str, bytes]:
        return self.trials.trial_attachments(self.current_trial)

    def checkpoint(self, result: dict | None = None) -> None:
        """Record an intermediate result on the running trial."""
        if result is not None and self.current_trial is not None:
            self.current_trial["result"] = dict(result)
