"""``hyperopt.plotting`` compatibility: ``main_plot_history``, ``main_plot_histogram`` and
``main_plot_vars`` draw on the current matplotlib backend (so they show in notebooks) with the
panels of :mod:`hpo_mongo.plot`; each returns its figure. Needs the ``plot`` extra."""
from __future__ import annotations

from typing import Any

import numpy as np

from .exceptions import MissingExtra
from .trials.documents import JOB_STATE_CANCEL, JOB_STATE_DONE, JOB_STATE_ERROR, loss_of

__all__ = ["main_plot_history", "main_plot_histogram", "main_plot_vars", "main_plot_1D_attachment"]


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


def main_plot_1D_attachment(trials: Any, attachment_name: str, do_show: bool = True, colorize_by_loss: bool = True,
                            max_darkness: float = 0.5, num_trails: int | None = None,
                            preprocessing_fn: Any = lambda x: x, line_width: float = 0.1) -> Any:  # noqa: N802
    """One line per trial of its pickled 1-D attachment ``attachment_name``, shaded by loss
    (hyperopt's ``main_plot_1D_attachment``; ``num_trails`` picks that many trials evenly by loss)."""
    import pickle
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.set_title(attachment_name)
    with_loss: list[tuple[float, Any]] = []  # (loss, trial) of the trials that have a loss
    for t in trials.trials:
        t_loss = loss_of(t)
        if t_loss is not None:
            with_loss.append((t_loss, t))
    losses = [t_loss for t_loss, _ in with_loss]
    lo, hi = (min(losses), max(losses)) if losses else (0.0, 1.0)
    if num_trails is None:
        plotted = list(trials.trials)
    else:
        ranked = [t for _, t in sorted(with_loss, key=lambda lt: lt[0])]
        plotted = ([ranked[i] for i in np.linspace(0, len(ranked), num_trails, endpoint=False, dtype=int)]
                   if ranked else [])
    for trial in plotted:
        attachments = trials.trial_attachments(trial)
        if attachment_name not in attachments:
            continue
        data = np.squeeze(np.asanyarray(pickle.loads(attachments[attachment_name])))
        if data.ndim != 1:
            continue
        loss = loss_of(trial)
        shade = max_darkness * (loss - lo) / (hi - lo) if (colorize_by_loss and loss is not None and hi > lo) else 0.0
        ax.plot(preprocessing_fn(data), color=(0.0, 0.0, 0.0, shade) if colorize_by_loss else None,
                linewidth=line_width, label=f"loss: {loss:.5}" if loss is not None else "no loss")
    if len(plotted) < 10 and plotted:
        ax.legend()
    if do_show:
        plt.show()
    return fig
