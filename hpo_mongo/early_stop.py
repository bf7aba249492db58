"""Early-stopping functions for ``fmin(early_stop_fn=...)`` (hyperopt's ``early_stop`` module)."""
from __future__ import annotations

from typing import Any, Callable

from .trials.documents import loss_of


def no_progress_loss(iteration_stop_count: int = 20, percent_increase: float = 0.0) -> Callable:
    """Stop when the best loss has not improved by ``percent_increase`` % for ``iteration_stop_count`` trials.

    Returns ``fn(trials, best_loss=None, iteration_no_progress=0) -> (stop, [best_loss, n])``.
    """

    def stop_fn(trials: Any, best_loss: float | None = None, iteration_no_progress: int = 0):
        losses = [x for x in (loss_of(t) for t in trials.trials) if x is not None]
        new_loss = min(losses) if losses else None
        if new_loss is None:
            return False, [best_loss, iteration_no_progress]
        if best_loss is None:
            return False, [new_loss, 0]
        threshold = best_loss - abs(best_loss * percent_increase / 100.0)
        if new_loss < threshold:
            return False, [new_loss, 0]
        iteration_no_progress += 1
        return iteration_no_progress >= iteration_stop_count, [best_loss, iteration_no_progress]

    return stop_fn
