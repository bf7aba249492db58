"""Pictures of an experiment (matplotlib from the ``plot`` extra, Agg backend, no display needed).

:func:`plot_experiment` draws one figure: a convergence panel across the top (the loss of every
successful trial in tid order and the best loss so far; failed trials as red ticks along the
bottom) and one panel per parameter (value vs loss; a log x-axis for log-scaled kinds;
categorical parameters as jittered strip plots labelled with their options). Points are
coloured by trial order, so one sees where the search concentrated later on; the best trial is
a red star everywhere.

``plot_trials(trials, path, space=...)`` does the same for in-memory ``Trials`` or
``MongoTrials``; ``hpo-mongo plot`` calls :func:`plot_experiment`.
"""
from __future__ import annotations

import json
import math
from typing import Any, Mapping, Sequence

import numpy as np

from . import inspect as hi
from .trials.documents import JOB_STATE_CANCEL, JOB_STATE_ERROR

__all__ = ["require_matplotlib", "plot_experiment", "experiment_figure", "plot_trials", "plot_convergence",
           "plot_parameter"]

_BEST_COLOR = "#d62728"
_LINE_COLOR = "#ff7f0e"
_CMAP = "viridis"


def require_matplotlib() -> Any:
    """Import matplotlib with the Agg backend, or raise a clear error naming the extra."""
    try:
        import matplotlib
    except ImportError:
        from .exceptions import MissingExtra
        raise MissingExtra("matplotlib is not installed: pip install 'hpo_mongo[plot]' to draw plots") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


_NAME_KEYS = ("name", "type", "kind", "model", "algo", "algorithm", "method", "optimizer")


def _short(v: Any, n: int = 14) -> str:
    """A tick label for a choice option; a nested sub-space shows its name-like entry if it has one."""
    if isinstance(v, dict):
        for k in _NAME_KEYS:
            if isinstance(v.get(k), (str, int, float)) and not isinstance(v.get(k), bool):
                return _short(v[k], n)
    if isinstance(v, (dict, list, tuple)):
        text = hi.flat_value(v)
    elif isinstance(v, float):
        text = f"{v:.4g}"
    else:
        text = str(v)
    return text if len(text) <= n else text[: n - 1] + "…"


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _log_losses(losses: np.ndarray) -> bool:
    """A log loss axis when losses are positive and span more than two decades."""
    if losses.size < 2 or np.any(losses <= 0):
        return False
    return float(np.max(losses) / np.min(losses)) > 100.0


def plot_convergence(ax: Any, tids: Sequence[int], losses: Sequence[float], failed: Sequence[int] = (),
                     *, log: bool = False) -> None:
    """Loss per trial (in tid order) and the best loss so far, on one axes."""
    tids, losses = np.asarray(tids), np.asarray(losses, dtype=float)
    order = np.argsort(tids, kind="stable")
    tids, losses = tids[order], losses[order]
    if losses.size:
        ax.scatter(tids, losses, s=18, c=np.arange(losses.size), cmap=_CMAP, alpha=0.85, zorder=2,
                   label="loss of a trial")
        best = np.minimum.accumulate(losses)
        ax.step(tids, best, where="post", color=_LINE_COLOR, lw=2.2, zorder=3, label="best so far")
        b = int(np.argmin(losses))
        ax.scatter([tids[b]], [losses[b]], marker="*", s=190, color=_BEST_COLOR, edgecolor="black",
                   linewidth=0.6, zorder=4, label=f"best: {losses[b]:.4g} (trial {tids[b]})")
    if len(failed):
        import matplotlib.transforms as mtransforms
        trans = mtransforms.blended_transform_factory(ax.transData, ax.transAxes)
        ax.scatter(list(failed), [0.02] * len(failed), marker="|", s=120, color=_BEST_COLOR,
                   transform=trans, zorder=3, label=f"failed ({len(failed)})")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("trial id")
    ax.set_ylabel("loss")
    ax.set_title("convergence", loc="left", fontweight="bold")
    ax.grid(True, alpha=0.3)
    if losses.size or len(failed):
        ax.legend(loc="best", fontsize=8, framealpha=0.85)
    else:
        ax.text(0.5, 0.5, "no finished trial yet", transform=ax.transAxes, ha="center", va="center")


def plot_parameter(ax: Any, label: str, values: Sequence[Any], losses: Sequence[float],
                   order: Sequence[int], space: hi.SpaceInfo, *, best_index: int | None = None,
                   log_loss: bool = False, n_total: int | None = None, rng: Any = None) -> None:
    """One parameter: value vs loss. Categorical → strip plot with option labels; log kinds →
    log x-axis; colours follow trial order (``order``: rank of each trial by tid)."""
    rng = rng if rng is not None else np.random.default_rng(0)
    losses = np.asarray(losses, dtype=float)
    color = np.asarray(order, dtype=float)
    vmax = max(1, (n_total or (color.max() + 1 if color.size else 1)) - 1)
    kind = space.kind(label)
    title = f"{label}" + (f"  [{kind}]" if kind else "")
    if space.is_categorical(label) or (values and not all(_finite(v) for v in values)):
        options = space.options(label)
        if options is None or not space.is_categorical(label):  # no space: distinct values, first-seen order
            options = list(dict.fromkeys(json.dumps(v, sort_keys=True, default=str) for v in values))
            keyed = [json.dumps(v, sort_keys=True, default=str) for v in values]
        else:  # values are the stored option indices
            keyed = [str(int(v)) for v in values]
            options = [json.dumps(o, sort_keys=True, default=str) for o in options]
            pos = {str(i): i for i in range(len(options))}
        if not (space.is_categorical(label) and space.options(label) is not None):
            pos = {o: i for i, o in enumerate(options)}
        x = np.array([pos.get(k, -1) for k in keyed], dtype=float)
        x = x + rng.uniform(-0.18, 0.18, size=x.size)
        ax.scatter(x, losses, s=20, c=color, cmap=_CMAP, vmin=0, vmax=vmax, alpha=0.85, zorder=2)
        # median loss per option as a short bar
        for i in range(len(options)):
            sel = np.array([pos.get(k, -1) == i for k in keyed])
            if sel.any():
                ax.hlines(np.median(losses[sel]), i - 0.3, i + 0.3, color="black", lw=1.6, zorder=3)
        labels = [_short(json.loads(o)) for o in options]
        ax.set_xticks(range(len(options)))
        ax.set_xticklabels(labels, rotation=20 if max((len(s) for s in labels), default=0) > 6 else 0,
                           ha="right" if max((len(s) for s in labels), default=0) > 6 else "center", fontsize=8)
        ax.set_xlim(-0.6, len(options) - 0.4)
        if best_index is not None:
            ax.scatter([x[best_index]], [losses[best_index]], marker="*", s=170, color=_BEST_COLOR,
                       edgecolor="black", linewidth=0.6, zorder=4)
    else:
        x = np.asarray(values, dtype=float)
        ax.scatter(x, losses, s=20, c=color, cmap=_CMAP, vmin=0, vmax=vmax, alpha=0.85, zorder=2)
        if best_index is not None:
            ax.scatter([x[best_index]], [losses[best_index]], marker="*", s=170, color=_BEST_COLOR,
                       edgecolor="black", linewidth=0.6, zorder=4)
        if space.is_log(label) and x.size and np.all(x > 0):
            ax.set_xscale("log")
        p = space.param(label) or {}
        f = space.flags(label)
        if f is not None and f.bounded and f.ordered and _finite(p.get("low")) and _finite(p.get("high")):
            if f.log:
                ax.set_xlim(math.exp(p["low"]) / 1.15, math.exp(p["high"]) * 1.15)
            else:
                pad = 0.03 * (p["high"] - p["low"])
                ax.set_xlim(p["low"] - pad, p["high"] + pad)
    if log_loss:
        ax.set_yscale("log")
    if not losses.size:
        ax.text(0.5, 0.5, "never active in a successful trial", transform=ax.transAxes,
                ha="center", va="center", fontsize=9, color="gray")
    ax.set_title(title, loc="left", fontsize=10, fontweight="bold")
    ax.set_ylabel("loss", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(True, alpha=0.3)


def plot_experiment(docs: Sequence[Mapping[str, Any]], space: hi.SpaceInfo | None, path: Any, *,
                    title: str | None = None, labels: Sequence[str] | None = None, dpi: int = 110,
                    ncols: int = 3) -> dict:
    """Draw the figure (see the module docstring) for trial documents and write it to ``path``
    (PNG, or any format matplotlib infers from the extension). Returns ``{"trials", "panels",
    "path"}``."""
    plt = require_matplotlib()
    fig, n_panels = experiment_figure(docs, space, title=title, labels=labels, dpi=dpi, ncols=ncols)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return {"trials": len(docs), "panels": n_panels, "path": str(path)}


def experiment_figure(docs: Sequence[Mapping[str, Any]], space: hi.SpaceInfo | None, *,
                      title: str | None = None, labels: Sequence[str] | None = None, dpi: int = 110,
                      ncols: int = 3) -> tuple[Any, int]:
    """The figure of :func:`plot_experiment`, not saved: ``(matplotlib figure, number of panels)``."""
    import matplotlib.pyplot as plt
    from matplotlib.gridspec import GridSpec
    space = space or hi.SpaceInfo()
    docs = sorted(docs, key=lambda d: d.get("tid", 0))
    _, rows = hi.to_rows(docs, space)
    ok = [(d, r) for d, r in zip(docs, rows) if r["status"] == "ok" and _finite(r["loss"]) and r["state"] == "done"]
    failed = [d.get("tid") for d in docs if d.get("state") in (JOB_STATE_ERROR, JOB_STATE_CANCEL)
              or (d.get("result") or {}).get("status") == "fail"]
    all_labels = list(hi.row_columns(space, docs)[1].values())
    if labels:
        unknown = [lab for lab in labels if lab not in all_labels]
        if unknown:
            from .exceptions import InvalidParameterError
            raise InvalidParameterError(f"unknown parameter(s) {unknown}; the experiment has {all_labels}")
        all_labels = list(labels)
    losses = np.array([r["loss"] for _, r in ok], dtype=float)
    log_loss = _log_losses(losses)
    n_par = len(all_labels)
    prow = math.ceil(n_par / ncols) if n_par else 0
    fig = plt.figure(figsize=(4.4 * ncols, 3.9 + 3.0 * prow), dpi=dpi)
    gs = GridSpec(1 + prow, ncols, figure=fig, height_ratios=[1.25] + [1.0] * prow, hspace=0.48, wspace=0.26)
    ax0 = fig.add_subplot(gs[0, :])
    plot_convergence(ax0, [d.get("tid") for d, _ in ok], losses, failed, log=log_loss)
    best_pos = int(np.argmin(losses)) if losses.size else None
    rng = np.random.default_rng(0)
    for i, lab in enumerate(all_labels):
        ax = fig.add_subplot(gs[1 + i // ncols, i % ncols])
        vals, ls, order, best_index = [], [], [], None
        categorical = space.is_categorical(lab) and space.options(lab) is not None
        for rank, ((d, _), loss) in enumerate(zip(ok, losses)):
            raw = ((d.get("misc") or {}).get("vals") or {}).get(lab)
            raw = raw[0] if isinstance(raw, (list, tuple)) and raw else (None if isinstance(raw, (list, tuple)) else raw)
            v = raw if categorical or raw is None else space.decode(lab, raw)
            if v is None:
                continue
            if rank == best_pos:
                best_index = len(vals)
            vals.append(v)
            ls.append(loss)
            order.append(rank)
        plot_parameter(ax, lab, vals, ls, order, space, best_index=best_index, log_loss=log_loss,
                       n_total=len(ok), rng=rng)
        if losses.size:
            ax.set_ylim(ax0.get_ylim())  # one loss scale everywhere: panels compare at a glance
    n_err = len(failed)
    sub = f"{len(docs)} trials, {len(ok)} successful, {n_err} failed or cancelled"
    if ok:
        sub += "; colour = trial order (dark = early, yellow = late); ★ = best"
    fig.suptitle(f"{title or 'hpo_mongo experiment'}\n{sub}", fontsize=11, y=0.995)
    fig.subplots_adjust(top=1 - 0.55 / fig.get_figheight(), bottom=0.35 / fig.get_figheight() + 0.02,
                        left=0.06, right=0.98)
    return fig, 1 + n_par


def plot_trials(trials: Any, path: Any, *, space: Any = None, title: str | None = None,
                labels: Sequence[str] | None = None, dpi: int = 110) -> dict:
    """:func:`plot_experiment` for a ``Trials`` / ``MongoTrials`` (``space`` — the hp space —
    turns choice indices into option labels when the store does not hold it)."""
    from .export import _space_of
    docs = list(getattr(trials, "trials", trials))
    return plot_experiment(docs, _space_of(trials, space), path, title=title, labels=labels, dpi=dpi)
