"""Early-stopping functions for ``fmin(early_stop_fn=...)`` (hyperopt's ``early_stop`` module)."""
from __future__ import annotations

from typing import Any, Callable

from .trials.documents import JOB_FINISHED_STATES, loss_of


def no_progress_loss(iteration_stop_count: int = 20, percent_increase: float = 0.0) -> Callable:
    """Stop after ``iteration_stop_count`` trials without an improvement of the best loss by more than
    ``percent_increase`` %; the first trial counts as one, as in hyperopt.

    Returns ``fn(trials, best_loss=None, iteration_no_progress=0, n_seen=0) -> (stop, [best_loss,
    iteration_no_progress, n_seen])``. Each call looks at the trials finished since the previous
    call (several, when workers finish together); a trial without a loss counts as no progress.
    """

    def stop_fn(trials: Any, best_loss: float | None = None, iteration_no_progress: int = 0, n_seen: int = 0):
        finished = [t for t in trials.trials if t["state"] in JOB_FINISHED_STATES]
        for t in finished[n_seen:]:
            loss = loss_of(t)
            if best_loss is None:
                best_loss = loss
                iteration_no_progress += 1
            elif loss is not None and loss < best_loss - abs(best_loss * percent_increase / 100.0):
                best_loss, iteration_no_progress = loss, 0
            else:
                iteration_no_progress += 1
        return iteration_no_progress >= iteration_stop_count, [best_loss, iteration_no_progress, len(finished)]

    return stop_fn
