"""``hyperopt.plotting`` compatibility: ``main_plot_history``, ``main_plot_histogram`` and
``main_plot_vars`` draw on the current matplotlib backend (so they show in notebooks) with the
panels of :mod:`hpo_mongo.plot`; each returns its figure. Needs the ``plot`` extra."""
from __future__ import annotations

from typing import Any

import numpy as np

from .exceptions import MissingExtra
from .trials.documents import JOB_STATE_CANCEL, JOB_STATE_DONE, JOB_STATE_ERROR, loss_of

__all__ = ["main_plot_history", "main_plot_histogram", "main_plot_vars"]


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingExtra("matplotlib is not installed: pip install 'hpo_mongo[plot]' to draw plots") from None
    return plt


def _ok_and_failed(trials: Any) -> tuple[list[int], list[float], list[int]]:
    """Trial numbers (1 = the first trial, in tid order) and losses of the successful trials,
    and the numbers of the failed ones."""
    numbers, losses, failed = [], [], []
    for number, t in enumerate(sorted(trials.trials, key=lambda t: t["tid"]), start=1):
        loss = loss_of(t) if t["state"] == JOB_STATE_DONE else None
        if loss is not None and np.isfinite(loss):
            numbers.append(number)
            losses.append(loss)
        elif t["state"] in (JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_CANCEL):
            failed.append(number)
    return numbers, losses, failed


def main_plot_history(trials: Any, do_show: bool = True, status_colors: Any = None,
                      title: str = "Loss History") -> Any:
    """Loss of every trial and the best loss so far (hyperopt's ``main_plot_history``)."""
    from .plot import plot_convergence
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 4))
    numbers, losses, failed = _ok_and_failed(trials)
    plot_convergence(ax, numbers, losses, failed, n_total=len(trials.trials))
    ax.set_title(title, loc="left", fontweight="bold")
    if do_show:
        plt.show()
    return fig


def main_plot_histogram(trials: Any, do_show: bool = True, title: str = "Loss Histogram") -> Any:
    """Histogram of the losses of successful trials (hyperopt's ``main_plot_histogram``)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    _, losses, failed = _ok_and_failed(trials)
    ax.hist(losses, bins=min(30, max(5, len(losses) // 3)) if losses else 5, color="#4c72b0")
    ax.set_xlabel("loss")
    ax.set_ylabel("trials")
    ax.set_title(f"{title} ({len(losses)} ok, {len(failed)} failed)", loc="left", fontweight="bold")
    if do_show:
        plt.show()
    return fig


def main_plot_vars(trials: Any, do_show: bool = True, fontsize: int = 10, colorize_best: Any = None,
                   columns: int = 5, arrange_by_loss: bool = False, space: Any = None) -> Any:
    """One panel per parameter, value vs loss (hyperopt's ``main_plot_vars``), plus convergence."""
    from .export import space_of
    from .plot import experiment_figure
    plt = _pyplot()
    fig, _ = experiment_figure(list(trials.trials), space_of(trials, space), ncols=max(1, int(columns)))
    if do_show:
        plt.show()
    return fig
