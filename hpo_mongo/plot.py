"""Pictures of an experiment (matplotlib from the ``plot`` extra, Agg backend, no display needed).

:func:`plot_experiment` draws one figure:

- a convergence panel across the top: the loss of every successful trial against its trial
  number within the experiment (1, 2, … in creation order, not the database-wide tid), the best
  loss so far, the best trial as a star and failed trials as red ticks along the bottom; a
  colour bar gives the trial number, the colour every point of the figure has;
- when trials reported intermediate values (``report(value, step)``, pruning), their learning
  curves below it (:func:`plot_learning_curves`): value against step, pruned trials in grey
  ending in a cross where they were stopped, the other complete trials in light blue, trials still
  running dashed, the best trial in colour;
- one panel per parameter active in enough successful trials (value vs loss; a log x-axis for
  log-scaled kinds, integer ticks for integer kinds; a choice as a jittered strip plot labelled
  with its options' names and a bar at each option's median loss);
- parameters active in few trials (a choice branch rarely taken, see :func:`sparse_limit`) share
  one panel per branch: x is the position in each parameter's range (low → high), one marker per
  parameter, named with its range in the panel's legend;
- one legend for every kind of mark.

``plot_trials(trials, path, space=...)`` does the same for in-memory ``Trials`` or
``MongoTrials``; ``hpo-mongo plot`` calls :func:`plot_experiment`.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from . import inspect as hi
from .trials.documents import JOB_STATE_CANCEL, JOB_STATE_ERROR
from .trials.reports import KIND_COMPLETE, KIND_PRUNED, KIND_RUNNING, doc_kind

__all__ = ["require_matplotlib", "plot_experiment", "experiment_figure", "plot_trials", "plot_convergence",
           "plot_learning_curves", "plot_parameter", "sparse_limit"]

_BEST_COLOR = "#d62728"
_LINE_COLOR = "#ff7f0e"
_PRUNED_COLOR = "#9a9a9a"
_COMPLETE_COLOR = "#6fa8dc"
_CMAP = "viridis"
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "h")
_GROUP_COLORS = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")


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


def sparse_limit(n_ok: int) -> int:
    """A parameter active in fewer successful trials than this shares a panel with the other
    such parameters of its branch: 8, or 15 % of the successful trials, at most 20."""
    return int(min(20, max(8, math.ceil(0.15 * n_ok))))


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _log_losses(losses: np.ndarray) -> bool:
    """A log loss axis when losses are positive and span more than two decades."""
    if losses.size < 2 or np.any(losses <= 0):
        return False
    return float(np.max(losses) / np.min(losses)) > 100.0


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _integer_ticks(axis: Any) -> None:
    from matplotlib.ticker import MaxNLocator
    axis.set_major_locator(MaxNLocator(integer=True))


def plot_convergence(ax: Any, numbers: npt.ArrayLike, losses: npt.ArrayLike, failed: Sequence[int] = (),
                     *, log: bool = False, n_total: int | None = None) -> Any:
    """Loss per trial and the best loss so far against the trial number (1 = the first trial of
    the experiment); failed trials as ticks along the bottom. Returns the points' artist (its
    colours are the trial numbers, for a colour bar) or None."""
    x, y = np.asarray(numbers, dtype=float), np.asarray(losses, dtype=float)
    order = np.argsort(x, kind="stable")
    numbers, losses = x[order], y[order]
    n_total = int(n_total or max([*numbers.tolist(), *list(failed), 1]))
    points = None
    if losses.size:
        points = ax.scatter(numbers, losses, s=18, c=numbers, cmap=_CMAP, vmin=1, vmax=max(2, n_total),
                            alpha=0.85, zorder=2, label="successful trial")
        best = np.minimum.accumulate(losses)
        ax.step(numbers, best, where="post", color=_LINE_COLOR, lw=2.2, zorder=3, label="best loss so far")
        b = int(np.argmin(losses))
        ax.scatter([numbers[b]], [losses[b]], marker="*", s=190, color=_BEST_COLOR, edgecolor="black",
                   linewidth=0.6, zorder=4, label=f"best trial: loss {losses[b]:.4g} (trial {int(numbers[b])})")
    if len(failed):
        import matplotlib.transforms as mtransforms
        trans = mtransforms.blended_transform_factory(ax.transData, ax.transAxes)
        ax.scatter(list(failed), [0.03] * len(failed), marker="|", s=120, color=_BEST_COLOR,
                   transform=trans, zorder=3, label=f"failed trial ({len(failed)})")
    if log:
        ax.set_yscale("log")
    ax.set_xlim(0.5, n_total + 0.5)
    _integer_ticks(ax.xaxis)
    ax.set_xlabel("trial number within the experiment")
    ax.set_ylabel("loss")
    ax.set_title("convergence", loc="left", fontweight="bold")
    ax.grid(True, alpha=0.3)
    if losses.size or len(failed):
        ax.legend(loc="best", fontsize=8, framealpha=0.9)
    if not losses.size:
        ax.text(0.5, 0.5, "no successful trial yet", transform=ax.transAxes, ha="center", va="center")
    return points


def plot_learning_curves(ax: Any, curves: Sequence[Mapping[str, Any]], *, log: bool = False) -> None:
    """One line per trial: its reported values against their steps (in step order). ``curves``
    holds ``{"steps", "values", "kind", "best"}`` per trial, ``kind`` one of ``"complete"``,
    ``"pruned"``, ``"running"``, ``"other"`` (failed); the best trial is drawn last, in colour."""
    from matplotlib.lines import Line2D
    style: dict[str, dict[str, Any]]  # Line2D keyword arguments per kind of curve
    style = {"pruned": dict(color=_PRUNED_COLOR, lw=0.9, alpha=0.55),
             "complete": dict(color=_COMPLETE_COLOR, lw=1.0, alpha=0.8),
             "running": dict(color=_COMPLETE_COLOR, lw=1.0, alpha=0.8, ls="--"),
             "other": dict(color=_BEST_COLOR, lw=0.8, alpha=0.35, ls=":")}
    counts: dict[str, int] = {}
    best = None
    for c in curves:
        steps, values = np.asarray(c["steps"], dtype=float), np.asarray(c["values"], dtype=float)
        order = np.argsort(steps, kind="stable")
        steps, values = steps[order], values[order]
        if c.get("best"):
            best = (steps, values)
            continue
        kind = c["kind"] if c["kind"] in style else "other"
        counts[kind] = counts.get(kind, 0) + 1
        ax.plot(steps, values, zorder=1 if kind == "pruned" else 2, **style[kind])
        if kind == "pruned" and len(c["steps"]):
            ax.scatter([c["steps"][-1]], [c["values"][-1]], marker="x", s=14, color=_PRUNED_COLOR, zorder=1)
    if best is not None:
        ax.plot(*best, color=_BEST_COLOR, lw=2.4, zorder=4)
        ax.scatter([best[0][-1]], [best[1][-1]], marker="*", s=150, color=_BEST_COLOR, edgecolor="black",
                   linewidth=0.6, zorder=5)
    names = {"complete": "complete trial", "pruned": "pruned trial (x: where it stopped)", "running": "running trial",
             "other": "failed trial"}
    handles = [Line2D([], [], label=f"{names[k]} ({n})", **style[k]) for k, n in counts.items()]
    if best is not None:
        handles.append(Line2D([], [], color=_BEST_COLOR, lw=2.4, marker="*", markersize=10,
                              markeredgecolor="black", label="best trial"))
    if log:
        ax.set_yscale("log")
    _integer_ticks(ax.xaxis)
    ax.set_xlabel("step")
    ax.set_ylabel("reported value")
    ax.set_title("learning curves", loc="left", fontweight="bold")
    ax.grid(True, alpha=0.3)
    if handles:
        ax.legend(handles=handles, loc="best", fontsize=8, framealpha=0.9)


def _curves(docs: Sequence[Mapping[str, Any]], best_tid: Any) -> list[dict]:
    """The learning curves of the trials that reported values (see :func:`plot_learning_curves`)."""
    kinds = {KIND_COMPLETE: "complete", KIND_PRUNED: "pruned", KIND_RUNNING: "running"}
    out = []
    for d in docs:
        reports = [r for r in hi.reports_of(d) or () if _finite(r["step"]) and isinstance(r["value"], (int, float))]
        if not reports:
            continue
        out.append({"steps": [r["step"] for r in reports], "values": [float(r["value"]) for r in reports],
                    "kind": kinds.get(doc_kind(d), "other"), "best": d.get("tid") == best_tid})
    return out


def _condition_text(space: hi.SpaceInfo, label: str) -> str | None:
    """``classifier = svm`` for a parameter active in one branch (its innermost condition)."""
    paths = space.conditions(label)
    if len(paths) != 1 or not paths[0]:
        return None if len(paths) == 1 else "in several branches"
    choice, branch = paths[0][-1]
    options = space.options(choice)
    name = hi.option_labels(options)[branch] if options and branch < len(options) else str(branch)
    return f"{choice} = {name}"


def plot_parameter(ax: Any, label: str, values: Sequence[Any], losses: npt.ArrayLike,
                   order: Sequence[int], space: hi.SpaceInfo, *, best_index: int | None = None,
                   log_loss: bool = False, n_total: int | None = None, rng: Any = None) -> None:
    """One parameter: value vs loss. A choice → strip plot labelled with its options' names (its
    ``values`` are the stored option indices); log kinds → log x-axis; integer kinds → integer
    ticks. Colours are the trial numbers (``order``, 1-based, up to ``n_total``)."""
    rng = rng if rng is not None else np.random.default_rng(0)
    losses = np.asarray(losses, dtype=float)
    color = np.asarray(order, dtype=float)
    vmax = max(2, n_total or (int(color.max()) if color.size else 2))
    options = space.options(label) if space.is_categorical(label) else None
    if options is not None or (values and not all(_finite(v) for v in values)):
        if options is not None:
            names = hi.option_labels(options)
            x = np.array([int(v) for v in values], dtype=float)
        else:  # no space: distinct values in first-seen order
            keyed = [hi.compact_value(v) for v in values]
            names = list(dict.fromkeys(keyed))
            x = np.array([names.index(k) for k in keyed], dtype=float)
        jitter = x + rng.uniform(-0.18, 0.18, size=x.size)
        ax.scatter(jitter, losses, s=20, c=color, cmap=_CMAP, vmin=1, vmax=vmax, alpha=0.85, zorder=2)
        for i in range(len(names)):
            sel = x == i
            if sel.any():
                ax.hlines(np.median(losses[sel]), i - 0.3, i + 0.3, color="black", lw=1.6, zorder=3)
        slot = max(8, 56 // max(1, len(names)))  # characters one option's tick has room for
        shown = [_short(n, slot) for n in names]
        slanted = max((len(n) for n in shown), default=0) * len(shown) > 56
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(shown, rotation=25 if slanted else 0, ha="right" if slanted else "center", fontsize=8)
        ax.set_xlim(-0.6, len(names) - 0.4)
        x_best = jitter
    else:
        x = np.asarray(values, dtype=float)
        ax.scatter(x, losses, s=20, c=color, cmap=_CMAP, vmin=1, vmax=vmax, alpha=0.85, zorder=2)
        x_best = x
        p = space.param(label) or {}
        log_x = space.is_log(label) and x.size > 0 and bool(np.all(x > 0))
        if log_x:
            ax.set_xscale("log")
        elif space.is_integer(label) or (not p and x.size and np.all(np.mod(x, 1) == 0)):
            _integer_ticks(ax.xaxis)
        bounds = space.value_bounds(label)
        if bounds is not None and _finite(bounds[0]) and _finite(bounds[1]):
            low, high = bounds
            if log_x:
                ax.set_xlim(low / 1.15, high * 1.15)
            elif not space.is_log(label):
                pad = max(0.03 * (high - low), 0.5 if space.is_integer(label) else 0.0)
                ax.set_xlim(low - pad, high + pad)
    if best_index is not None:
        ax.scatter([x_best[best_index]], [losses[best_index]], marker="*", s=170, color=_BEST_COLOR,
                   edgecolor="black", linewidth=0.6, zorder=4)
    if log_loss:
        ax.set_yscale("log")
    cond = _condition_text(space, label)
    kind = space.kind(label)  # shown as is, for people
    title = f"{label}  [{kind}]" if kind else label
    ax.set_title(_short(title, 44), loc="left", fontsize=10, fontweight="bold")
    ax.set_xlabel(f"{losses.size} trials" + (f" (when {cond})" if cond else ""), fontsize=8, color="dimgray")
    ax.set_ylabel("loss", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(True, alpha=0.3)


def _position(space: hi.SpaceInfo, label: str, values: Sequence[Any]) -> tuple[np.ndarray, str]:
    """Values as positions in the parameter's range (0 = low, 1 = high) and the range as text."""
    p = space.param(label) or {}
    flags = space.flags(label)
    options = space.options(label) if space.is_categorical(label) else None
    if options is not None:
        names = hi.option_labels(options)
        n = max(1, len(names) - 1)
        return np.array([int(v) / n for v in values], dtype=float), " | ".join(_short(x, 18) for x in names)
    x = np.asarray(values, dtype=float)
    log = space.is_log(label)
    bounds = space.value_bounds(label)
    if bounds is not None and all(_finite(b) and (b > 0 or not log) for b in bounds):
        low, high = (math.log(bounds[0]), math.log(bounds[1])) if log else bounds
        text = (f"{bounds[0]:.3g}…{bounds[1]:.3g} (log)" if log else f"{low:.4g}…{high:.4g}")
    elif flags is not None and not flags.bounded and _finite(p.get("mu")) and _finite(p.get("sigma")):
        low, high = p["mu"] - 3 * p["sigma"], p["mu"] + 3 * p["sigma"]
        text = (f"{math.exp(low):.3g}…{math.exp(high):.3g} (log)" if log else f"{low:.4g}…{high:.4g}")
    else:  # no description: the observed range
        log = False
        low, high = (float(np.min(x)), float(np.max(x))) if x.size else (0.0, 1.0)
        text = f"{low:.4g}…{high:.4g} (seen)"
    xs = np.log(np.clip(x, 1e-300, None)) if log else x
    span = high - low
    return (np.clip((xs - low) / span, 0, 1) if span > 0 else np.full(x.size, 0.5)), text


def _plot_group(ax: Any, title: str, members: Sequence[dict], space: hi.SpaceInfo, *, log_loss: bool,
                rng: Any) -> None:
    """Parameters active in few trials, together: loss against the position in each one's range."""
    for i, m in enumerate(members):
        pos, rng_text = _position(space, m["label"], m["values"])
        pos = pos + rng.uniform(-0.012, 0.012, size=pos.size)
        losses = np.asarray(m["losses"], dtype=float)
        ax.scatter(pos, losses, s=30, marker=_MARKERS[i % len(_MARKERS)], color=_GROUP_COLORS[i % len(_GROUP_COLORS)],
                   alpha=0.85, zorder=2, edgecolor="white", linewidth=0.4,
                   label=f"{_short(m['label'], 22)} ({len(losses)}): {rng_text}")
        if m["best_index"] is not None:
            ax.scatter([pos[m["best_index"]]], [losses[m["best_index"]]], marker="*", s=170, color=_BEST_COLOR,
                       edgecolor="black", linewidth=0.6, zorder=4)
    if log_loss:
        ax.set_yscale("log")
    ax.set_xlim(-0.05, 1.05)
    ax.set_xticks([0, 0.5, 1])
    ax.set_xticklabels(["low", "middle", "high"], fontsize=8)
    ax.set_xlabel("position in each parameter's range (parameters active in few trials)", fontsize=8,
                  color="dimgray")
    ax.set_ylabel("loss", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(True, alpha=0.3)
    ax.set_title(_short(title, 44), loc="left", fontsize=10, fontweight="bold")
    ax.legend(loc="best", fontsize=7, framealpha=0.9, handletextpad=0.3, borderpad=0.3)


def _active(docs_ok: Sequence[tuple[Mapping[str, Any], int, float]], label: str, space: hi.SpaceInfo,
            best_number: int | None) -> dict:
    """The successful trials in which ``label`` was active: its values (option indices for a
    choice), losses, trial numbers and which of them is the best trial."""
    categorical = space.is_categorical(label) and space.options(label) is not None
    out: dict[str, Any] = {"label": label, "values": [], "losses": [], "numbers": [], "best_index": None}
    for d, number, loss in docs_ok:
        raw = ((d.get("misc") or {}).get("vals") or {}).get(label)
        if isinstance(raw, (list, tuple)):
            raw = raw[0] if raw else None
        if raw is None:
            continue
        if number == best_number:
            out["best_index"] = len(out["values"])
        out["values"].append(raw if categorical else space.decode(label, raw))
        out["losses"].append(loss)
        out["numbers"].append(number)
    return out


def _group_key(space: hi.SpaceInfo, label: str) -> tuple[str, int] | None:
    paths = space.conditions(label)
    return paths[0][0] if len(paths) == 1 and paths[0] else None


def _group_title(space: hi.SpaceInfo, key: Any) -> str:
    if key is None or key[0] == "pool":
        return "parameters active in few trials"
    choice, branch = key
    options = space.options(choice)
    name = hi.option_labels(options)[branch] if options and branch < len(options) else str(branch)
    return f"when {choice} = {_short(name, 24)}"


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
    """The figure of :func:`plot_experiment`, not saved: ``(matplotlib figure, number of panels)``.

    With ``labels``, exactly those parameters get a panel each (no grouping)."""
    import matplotlib.pyplot as plt
    from matplotlib.gridspec import GridSpec
    from matplotlib.lines import Line2D
    space = space or hi.SpaceInfo()
    docs = sorted(docs, key=lambda d: d.get("tid", 0))
    _, rows = hi.to_rows(docs, space)
    numbers = {id(d): i + 1 for i, d in enumerate(docs)}
    ok = [(d, numbers[id(d)], float(r["loss"])) for d, r in zip(docs, rows, strict=True)
          if r["status"] == "ok" and _finite(r["loss"]) and r["state"] == "done"]
    failed = [numbers[id(d)] for d in docs if d.get("state") in (JOB_STATE_ERROR, JOB_STATE_CANCEL)
              or (d.get("result") or {}).get("status") == "fail"]
    all_labels = list(hi.row_columns(space, docs)[1].values())
    if labels:
        unknown = [lab for lab in labels if lab not in all_labels]
        if unknown:
            from .exceptions import InvalidParameterError
            raise InvalidParameterError(f"unknown parameter(s) {unknown}; the experiment has {all_labels}")
        all_labels = list(labels)
    losses = np.array([loss for _, _, loss in ok], dtype=float)
    log_loss = _log_losses(losses)
    best_number = ok[int(np.argmin(losses))][1] if losses.size else None
    curves = _curves(docs, ok[int(np.argmin(losses))][0].get("tid") if losses.size else None)
    top = 2 if curves else 1  # rows above the parameter panels

    # panels: one per parameter active often enough, one per branch for the rarely active ones
    active = {lab: _active(ok, lab, space, best_number) for lab in all_labels}
    never = [lab for lab in all_labels if not active[lab]["values"]] if not labels else []
    panels: list[tuple[str, Any]] = []
    groups: dict[Any, list[dict]] = {}
    limit = sparse_limit(len(ok))
    for lab in all_labels:
        a = active[lab]
        if lab in never:
            continue
        if labels or len(a["values"]) >= limit:
            panels.append(("param", a))
        else:
            key = _group_key(space, lab)
            if key not in groups:
                groups[key] = []
                panels.append(("group", key))
            groups[key].append(a)
    # a branch with one rarely active parameter: pooled with the other such ones, or a panel of its own
    lone = [k for k, members in groups.items() if len(members) == 1]
    if len(lone) > 1:
        pool = ("pool", None)
        groups[pool] = [groups.pop(k)[0] for k in lone]
        panels = [p for p in panels if not (p[0] == "group" and p[1] in lone)] + [("group", pool)]
    else:
        panels = [("param", groups.pop(p[1])[0]) if p[0] == "group" and p[1] in lone else p for p in panels]

    n_par = len(panels)
    ncols = max(1, min(ncols, n_par)) if n_par else ncols
    prow = math.ceil(n_par / ncols) if n_par else 0
    spare = prow * ncols - n_par  # empty cells of the last row: the legend goes there, else below
    below = 0.75 if prow and spare == 0 else 0.0
    width = max(4.4 * ncols, 10.0)
    fig = plt.figure(figsize=(width, 4.2 + 3.6 * (top - 1) + 3.1 * prow + below), dpi=dpi)
    gs = GridSpec(top + prow, ncols, figure=fig, height_ratios=[1.3] * top + [1.0] * prow, hspace=0.5, wspace=0.28)
    ax0 = fig.add_subplot(gs[0, :])
    points = plot_convergence(ax0, [n for _, n, _ in ok], losses, failed, log=log_loss, n_total=len(docs))
    if points is not None:
        cbar = fig.colorbar(points, ax=ax0, pad=0.01, fraction=0.03, aspect=15)
        cbar.set_label("trial number", fontsize=8)
        cbar.ax.tick_params(labelsize=7)
        _integer_ticks(cbar.ax.yaxis)
    if curves:
        reported = np.array([v for c in curves for v in c["values"]], dtype=float)
        plot_learning_curves(fig.add_subplot(gs[1, :]), curves,
                             log=_log_losses(reported[np.isfinite(reported)]))
    rng = np.random.default_rng(0)
    for i, (kind, item) in enumerate(panels):
        ax = fig.add_subplot(gs[top + i // ncols, i % ncols])
        if kind == "param":
            plot_parameter(ax, item["label"], item["values"], item["losses"], item["numbers"], space,
                           best_index=item["best_index"], log_loss=log_loss, n_total=len(docs), rng=rng)
        else:
            _plot_group(ax, _group_title(space, item), groups[item], space, log_loss=log_loss, rng=rng)
        if losses.size:
            ax.set_ylim(ax0.get_ylim())  # one loss scale everywhere: panels compare at a glance

    # one legend for the marks of the parameter panels
    if n_par:
        cmap = plt.get_cmap(_CMAP)
        handles = [Line2D([], [], ls="", marker="o", color=cmap(0.15), label="successful trial (colour: trial number)"),
                   Line2D([], [], ls="", marker="*", markersize=13, color=_BEST_COLOR, markeredgecolor="black",
                          label="best trial")]
        if any(k == "param" and space.is_categorical(it["label"]) for k, it in panels):
            handles.append(Line2D([], [], color="black", lw=1.6, label="median loss of an option"))
        if groups and any(k == "group" for k, _ in panels):
            handles.append(Line2D([], [], ls="", marker="s", color=_GROUP_COLORS[1],
                                  label="rarely active parameter (marker per parameter)"))
        legend = dict(handles=handles, fontsize=9, frameon=True, title="marks in the parameter panels",
                      title_fontsize=9)
        if spare:
            lax = fig.add_subplot(gs[prow, ncols - spare:])
            lax.axis("off")
            lax.legend(loc="center", ncol=1, **legend)
        else:
            fig.legend(loc="lower center", ncol=len(handles), bbox_to_anchor=(0.5, 0.05 / fig.get_figheight()),
                       **legend)
    n_pruned = sum(doc_kind(d) == KIND_PRUNED for d in docs)
    sub = f"{len(docs)} trials, {len(ok)} successful, " + (f"{n_pruned} pruned, " if n_pruned else "") \
        + f"{len(failed)} failed or cancelled"
    if never:
        sub += "; never active in a successful trial: " + ", ".join(_short(x, 20) for x in never[:6]) \
               + (", …" if len(never) > 6 else "")
    fig.suptitle(f"{title or 'hpo_mongo experiment'}\n{sub}", fontsize=11, y=0.995)
    fig.subplots_adjust(top=1 - 0.62 / fig.get_figheight(), bottom=(0.5 + below) / fig.get_figheight(),
                        left=0.6 / width, right=1 - 0.25 / width)
    return fig, top + n_par


def plot_trials(trials: Any, path: Any, *, space: Any = None, title: str | None = None,
                labels: Sequence[str] | None = None, dpi: int = 110) -> dict:
    """:func:`plot_experiment` for a ``Trials`` / ``MongoTrials`` (``space`` — the hp space —
    turns choice indices into option labels when the store does not hold it)."""
    from .export import space_of
    docs = list(getattr(trials, "trials", trials))
    return plot_experiment(docs, space_of(trials, space), path, title=title, labels=labels, dpi=dpi)
