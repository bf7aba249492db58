"""Read commands of ``hpo-mongo``: experiments, status, list, show, best, export, plot, watch.

Each command is thin: it asks :mod:`hpo_mongo.inspect` and hands the answer to the renderer
(:mod:`hpo_mongo.cli._output`). Errors are mapped in :mod:`hpo_mongo.cli._errors`.
"""
from __future__ import annotations

import sys
import time
from typing import Any

import click

from .. import inspect as hi
from ..export import FORMATS
from ._output import (cell, dumps, echo_json, echo_lines, echo_table, ellipsize, emit, fmt_age, fmt_number,
                      key_values, output_width, table)
from ._options import exp_options, json_option, lease_timeout_option, mongo_options, wide_option

STATE_CHOICE = click.Choice(list(hi.known_states()))


def _params_text(params: dict, indent: int = 2) -> str:
    shown = [(k, "" if v is None else cell(v, None)) for k, v in params.items()]
    return key_values([(k, v if v != "" else "(inactive)") for k, v in shown], indent=indent)


# ----------------------------------------------------------------------------- experiments
@click.command(name="experiments", short_help="Every experiment: counts, best loss, activity.")
@mongo_options
@json_option
@wide_option
def experiments_cmd(target: Any, as_json: bool, wide: bool) -> None:
    """Every experiment in the database: counts by state (pruned: done trials its pruner stopped
    early), best loss, created, last activity.

    The experiment whose exp_key is None is shown as (default).

    \b
    Example:
        hpo-mongo experiments --mongo mongodb://localhost:27017/hpo
    """
    exps = hi.list_experiments(target.queue)
    rows = [{"exp_key": hi.exp_label(e["exp_key"]), "status": e["status"], "max_evals": e["max_evals"],
             **{k: e["counts"].get(k, 0) for k in ("total", "new", "running", "done", "pruned", "error", "cancel")},
             "best_loss": e["best_loss"], "created": e["created"], "last_activity": e["last_activity"]}
            for e in exps]
    emit(exps, as_json, lambda: echo_table(
        rows, ["exp_key", "status", "max_evals", "total", "new", "running", "done", "pruned", "error", "cancel",
               "best_loss", "created", "last_activity"],
        empty=f"no experiments in {target.describe()}", wide=wide))


# ----------------------------------------------------------------------------- status
@click.command(name="status", short_help="Counts, best trial, throughput, workers, stale trials.")
@exp_options
@json_option
@wide_option
@click.option("--minutes", type=click.FloatRange(min=0.01), default=hi.DEFAULT_WINDOW_MINUTES, show_default=True,
              help="Window for the throughput.")
@lease_timeout_option("A running trial or worker whose heartbeat is older than this is stale")
def status_cmd(target: Any, as_json: bool, wide: bool, minutes: float, lease_timeout: float | None) -> None:
    """Counts by state, the best loss with its parameter values, throughput, live workers and
    stale trials of one experiment.

    \b
    Example:
        hpo-mongo status --exp-key mnist
    """
    exp = hi.get_experiment(target.queue, target.exp_key)
    st = hi.experiment_status(target.queue, exp, minutes=minutes, lease_timeout=lease_timeout)
    emit(st, as_json, lambda: echo_lines(_status_text(st, None if wide else output_width()), wide=wide))


def _status_text(st: dict, width: int | None = None) -> str:
    """The human form of ``status``; its tables fit ``width`` (the other lines are cut by the caller)."""
    c = st["counts"]
    pairs: list[tuple[str, str]] = [("experiment", hi.exp_label(st["exp_key"]))]
    if st["status"]:
        pairs.append(("status", st["status"]))
    if st["algorithm"]:
        pairs.append(("algorithm", st["algorithm"]))
    if st.get("pruner"):
        pairs.append(("pruner", st["pruner"]))
    if st["max_evals"]:
        pct = 100.0 * st["finished"] / st["max_evals"]
        pairs.append(("progress", f"{st['finished']}/{st['max_evals']} finished ({pct:.0f}%)"))
    else:
        pairs.append(("progress", f"{st['finished']} finished"))
    pruned = f" (pruned {c['pruned']})" if c.get("pruned") else ""
    pairs.append(("trials", "  ".join(f"{k} {c[k]}" + (pruned if k == "done" else "")
                                      for k in ("new", "running", "done", "error", "cancel"))
                  + f"  (total {c['total']})"))
    if st["best"]:
        pairs.append(("best", f"loss {fmt_number(st['best']['loss'])} (trial {st['best']['tid']})"))
        for k, v in st["best"]["params"].items():
            pairs.append(("", f"{k} = {'(inactive)' if v is None else cell(v, None)}"))
    else:
        pairs.append(("best", "no successful trial yet"))
    tp = st["throughput"]
    pairs.append(("throughput", f"{tp['per_minute']:.3g} trials/min ({tp['finished']} finished in the last "
                                f"{tp['minutes']:g} min)"))
    if st["driver"]:
        d = st["driver"]
        pairs.append(("driver", f"{d['host']}:{d['pid']}, heartbeat {fmt_age(d['heartbeat_age'])} ago"
                                + ("" if d["live"] else " (not running)")))
    src = "" if st["workers_source"] == "workers" else " (from running trials: no workers collection)"
    pairs.append(("workers", f"{len(st['workers'])} live{src}"))
    lines = [key_values(pairs)]
    if st["workers"]:
        rows = [{"host": w["host"], "pid": w["pid"], "status": w["status"], "trial": w["current_tid"],
                 "heartbeat": fmt_age(w["heartbeat_age"]) + " ago"} for w in st["workers"]]
        lines.append(_indent(table(rows, ["host", "pid", "status", "trial", "heartbeat"], width=_less(width, 2)), 2))
    if st["stale"]:
        lease = f"{st['lease_timeout']:g}s" if st["lease_timeout"] is not None else "their lease"
        lines.append(key_values([("stale", f"{len(st['stale'])} running trial(s) silent for longer than {lease} "
                                           "(hpo-mongo requeue --stale)")], width=10))
        rows = [{"tid": s["tid"], "owner": s["owner"], "silent": fmt_age(s["heartbeat_age"])} for s in st["stale"]]
        lines.append(_indent(table(rows, ["tid", "owner", "silent"], width=_less(width, 2)), 2))
    else:
        lines.append(key_values([("stale", "none")], width=10))
    return "\n".join(lines)


def _less(width: int | None, n: int) -> int | None:
    return None if width is None else max(1, width - n)


def _indent(text: str, n: int) -> str:
    return "\n".join(" " * n + line for line in text.splitlines())


# ----------------------------------------------------------------------------- list / best
_LIST_COLUMNS_TAIL = ("duration", "owner", "error")
_HEADERS = {"duration": "secs"}


def _param_columns(columns: list[str]) -> list[str]:
    """The parameter columns of ``hi.to_rows(...)`` columns (rows built without result columns)."""
    return columns[len(hi.FIXED_COLUMNS):len(columns) - len(hi.TAIL_COLUMNS)]


def _list_view(columns: list[str], rows: list[dict]) -> list[str]:
    """The list table's columns; with ``status`` (ok / pruned / fail) and ``step`` (of the latest
    report) when the trials reported intermediate values."""
    reported = ["status", "loss", "step"] if any(r["step"] is not None for r in rows) else ["loss"]
    return ["tid", "state", *reported, *_param_columns(columns), *_LIST_COLUMNS_TAIL]


@click.command(name="list", short_help="Trials, one column per parameter.")
@exp_options
@json_option
@wide_option
@click.option("--state", "states", type=STATE_CHOICE, multiple=True,
              help="Only trials in this state (repeatable).")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="At most N trials.")
@click.option("--sort", type=click.Choice(["tid", "loss", "time"]), default="tid", show_default=True,
              help="tid, loss (trials without a loss last) or time (claim time).")
@click.option("--reverse", is_flag=True, help="Descending order (e.g. the latest trials first).")
def list_cmd(target: Any, as_json: bool, wide: bool, states: tuple, limit: int | None, sort: str,
             reverse: bool) -> None:
    """A table of trials with one column per parameter (values, not indices; blank when the
    parameter was inactive in that trial); when trials reported intermediate values (pruning),
    their status (ok, pruned, fail) and the step of their latest report. --json gives one trial
    record per trial (the shape of show, best and export --format json).

    \b
    Example:
        hpo-mongo list --state error
        hpo-mongo list --sort loss --limit 10
    """
    exp = hi.get_experiment(target.queue, target.exp_key)
    docs = hi.find_trials(target.queue, exp.exp_key, state=states or None, sort=sort,
                          limit=limit, reverse=reverse)
    if as_json:
        echo_json([hi.trial_record(d, exp.space) for d in docs])
        return
    columns, rows = hi.to_rows(docs, exp.space)
    echo_table(rows, _list_view(columns, rows), headers=_HEADERS, wide=wide,
               empty=f"no trials in experiment {exp.label}" + (f" in state {', '.join(states)}" if states else ""))


@click.command(name="best", short_help="The best trials with their parameter values.")
@exp_options
@json_option
@wide_option
@click.option("-n", "n", type=click.IntRange(min=1), default=1, show_default=True, help="How many trials.")
def best_cmd(target: Any, as_json: bool, wide: bool, n: int) -> None:
    """The best trials (lowest loss among done trials with status ok) with their parameter values,
    best first (--json: their trial records, as list --json gives them).

    \b
    Example:
        hpo-mongo best -n 5
    """
    exp = hi.get_experiment(target.queue, target.exp_key)
    docs = hi.best_trials(target.queue, exp.exp_key, n)
    if not as_json and not docs:
        raise click.ClickException(f"experiment {exp.label} has no successful trial yet")
    if as_json:
        echo_json([hi.trial_record(d, exp.space) for d in docs])
        return
    columns, rows = hi.to_rows(docs, exp.space)
    for i, r in enumerate(rows):
        r["rank"] = i + 1
    echo_table(rows, ["rank", "tid", "loss", *_param_columns(columns), "duration"], headers=_HEADERS, wide=wide)


# ----------------------------------------------------------------------------- show
@click.command(name="show", short_help="One whole trial, traceback included.")
@exp_options
@json_option
@click.argument("tid", type=int)
def show_cmd(target: Any, as_json: bool, tid: int) -> None:
    """The whole trial TID: state, result, parameter values, intermediate values (step: value, in
    report order), times, worker, error traceback.
    Tids are unique in the database: without --exp-key the trial is found in any experiment.
    --json gives its trial record (as list --json does) plus "document", the stored document.

    \b
    Example:
        hpo-mongo show 17
    """
    if target.exp_key_given:
        exp = hi.get_experiment(target.queue, target.exp_key)
        doc = hi.get_trial(target.queue, exp.exp_key, tid)
    else:
        doc = hi.get_trial(target.queue, ..., tid)
        exp = hi.get_experiment(target.queue, doc.get("exp_key"))
    rec = hi.trial_record(doc, exp.space)
    emit(dict(rec, document=doc), as_json, lambda: click.echo(_show_text(rec, doc)))


def _show_text(rec: dict, doc: dict) -> str:
    res = rec["result"]
    pairs = [("trial", f"{rec['tid']} (experiment {hi.exp_label(rec['exp_key'])})"),
             ("state", rec["state"]), ("status", res.get("status")),
             ("loss", rec["loss"] if rec["loss"] is not None else res.get("loss")),
             ("attempt", rec["attempt"]), ("requeues", rec["requeues"]),
             ("owner", rec["owner"]), ("booked", rec["book_time"]),
             ("started", rec["start_time"]), ("ended", rec["end_time"]),
             ("duration", None if rec["duration"] is None else f"{rec['duration']:.3f}s"),
             ("heartbeat", doc.get("heartbeat")), ("updated", doc.get("updated_at")),
             ("version", doc.get("version"))]
    w = 11
    out = [key_values([(k, v) for k, v in pairs if v is not None], width=w)]
    out.append("params")
    out.append(_params_text(rec["params"]) if rec["params"] else "  (none)")
    extra = {k: v for k, v in res.items() if k not in ("status", "loss")}
    if extra:
        out.append("result")
        out.append(key_values([(k, v if isinstance(v, str) else cell(v, None)) for k, v in extra.items()], indent=2))
    if rec["attachments"]:
        out.append(key_values([("attachments", ", ".join(rec["attachments"]))], width=w))
    if rec["reports"]:
        out.append(f"reports    {len(rec['reports'])} (step: value, in report order)")
        out.append(_reports_text(rec["reports"], output_width()))
    err = rec["error"]
    if err:
        line = f"{err['type']}: {err['message']}" if err.get("type") else str(err.get("message"))
        out.append(key_values([("error", line)], width=w))
        if err.get("traceback"):
            out.append("traceback")
            out.append(_indent(str(err["traceback"]).rstrip(), 2))
    return "\n".join(out)


def _reports_text(reports: list[dict], width: int | None, indent: int = 2) -> str:
    """``step: value`` cells, as many per line as ``width`` allows (every one of them is shown)."""
    cells = [f"{r['step']}: {'null' if r['value'] is None else fmt_number(float(r['value']))}" for r in reports]
    size = max(len(c) for c in cells) + 2
    per_line = max(1, ((width or 100) - indent) // size)
    return "\n".join(" " * indent + "".join(c.ljust(size) for c in cells[i:i + per_line]).rstrip()
                     for i in range(0, len(cells), per_line))


# ----------------------------------------------------------------------------- export
@click.command(name="export", short_help="Trials as CSV, JSON or JSON Lines.")
@exp_options
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default=None,
              help="Default: from the -o extension (.csv, .json, .jsonl), else csv.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True, allow_dash=True), default="-",
              show_default=True, help="File to write ('-' = standard output).")
@click.option("--state", "states", type=STATE_CHOICE, multiple=True, help="Only trials in this state (repeatable).")
def export_cmd(target: Any, fmt: str | None, output: str, states: tuple) -> None:
    """Every trial: CSV has one row per trial, parameters flattened to their values (choice
    options, not indices), the intermediate values as a reports column ([[step, value], ...])
    and scalar result entries as result.<key> columns; JSON and JSON Lines hold one trial
    record per trial (the shape of list --json, with its reports).

    \b
    Example:
        hpo-mongo export --format csv -o trials.csv
    """
    from .. import export as ex
    fmt = ex.choose_format(output, fmt, default="csv")
    exp = hi.get_experiment(target.queue, target.exp_key)
    docs = hi.find_trials(target.queue, exp.exp_key, state=states or None, full=True)
    n = ex.write_trials(docs, exp.space, output, fmt)
    if output != "-":
        click.echo(f"wrote {n} trials of experiment {exp.label} to {output} ({fmt})", err=True)


# ----------------------------------------------------------------------------- plot
@click.command(name="plot", short_help="Convergence, learning curves and per-parameter panels (PNG).")
@exp_options
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), required=True,
              help="PNG file to write.")
@click.option("--params", "labels", default=None, metavar="A,B,...", help="Only these parameters.")
@click.option("--dpi", type=click.IntRange(min=30, max=600), default=110, show_default=True)
@json_option
def plot_cmd(target: Any, output: str, labels: str | None, dpi: int, as_json: bool) -> None:
    """Convergence (loss per trial and best so far), the learning curves when trials reported
    intermediate values (value vs step; pruned trials in grey, the best trial in colour) and
    one panel per parameter (value vs loss; log axes for log-scaled parameters; categorical
    parameters as strip plots). Needs the 'plot' extra (matplotlib).

    \b
    Example:
        hpo-mongo plot -o progress.png
    """
    from .. import plot as hp_plot
    hp_plot.require_matplotlib()
    exp = hi.get_experiment(target.queue, target.exp_key)
    docs = hi.find_trials(target.queue, exp.exp_key, full=True)  # with their reports: the learning curves
    only = [s.strip() for s in labels.split(",") if s.strip()] if labels else None
    info = hp_plot.plot_experiment(docs, exp.space, output, title=f"experiment {exp.label}", labels=only, dpi=dpi)
    if as_json:
        echo_json(info)
    else:
        click.echo(f"wrote {output}: {info['trials']} trials, {info['panels']} panels", err=True)


# ----------------------------------------------------------------------------- watch
@click.command(name="watch", short_help="A live status line until max_evals.")
@exp_options
@click.option("--interval", type=click.FloatRange(min=0.05), default=2.0, show_default=True, metavar="SECONDS")
@click.option("--timeout", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="Stop watching after this long (exit code 0).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per change (JSON Lines) instead of the bar.")
def watch_cmd(target: Any, interval: float, timeout: float | None, as_json: bool) -> None:
    """A live status line (progress bar, counts, best loss, rate, ETA) until the experiment
    reaches max_evals (or its driver marks it done or stopped and nothing is pending).

    \b
    Example:
        hpo-mongo watch --exp-key mnist
    """
    tty = sys.stdout.isatty() and not as_json
    start = time.monotonic()
    last = None
    try:
        while True:
            exp = hi.get_experiment(target.queue, target.exp_key)
            counts = hi.count_by_state(target.queue, exp.exp_key)
            best = hi.best_trials(target.queue, exp.exp_key, 1)
            tp = hi.throughput(target.queue, exp.exp_key, minutes=hi.DEFAULT_WINDOW_MINUTES)
            width = output_width()
            line, finished = _watch_line(exp, counts, best, tp, tty,
                                         width=None if width is None else width - (1 if tty else 0))
            if as_json:
                state = {"exp_key": exp.exp_key, "max_evals": exp.max_evals, "finished": finished,
                         "counts": counts, "best_loss": float(best[0]["result"]["loss"]) if best else None,
                         "best_tid": best[0]["tid"] if best else None, "per_minute": tp["per_minute"]}
                key = dumps({k: v for k, v in state.items() if k != "per_minute"}, indent=None)
                if key != last:
                    click.echo(dumps(state, indent=None))
                last = key
            elif tty:
                click.echo("\r" + line + "\x1b[K", nl=False)
            elif line != last:
                click.echo(line)
            if not as_json:
                last = line
            pending = counts["new"] + counts["running"]
            if exp.max_evals and finished >= exp.max_evals and not counts["running"]:
                break
            if exp.status in ("done", "stopped") and not pending:
                break
            if timeout is not None and time.monotonic() - start >= timeout:
                break
            time.sleep(interval)
    except KeyboardInterrupt:
        pass
    if tty:
        click.echo()


def _watch_line(exp: hi.Experiment, counts: dict, best: list, tp: dict, unicode_ok: bool,
                width: int | None = None) -> tuple[str, int]:
    """The status line of ``watch`` and the number of finished trials. Within ``width``, the bar
    narrows first (24 down to 8 characters), then the last parts are left out."""
    finished = counts["done"] + counts["error"] + counts["cancel"]
    total = exp.max_evals or max(counts["total"], 1)
    full, empty = ("█", "░") if unicode_ok and (sys.stdout.encoding or "").lower().startswith("utf") else ("#", "-")
    parts = [f"{finished}/{exp.max_evals if exp.max_evals else '?'}",
             f"done {counts['done']}" + (f" (pruned {counts['pruned']})" if counts.get("pruned") else "")
             + f" error {counts['error']} running {counts['running']} new {counts['new']}"]
    if best:
        parts.append(f"best {fmt_number(float(best[0]['result']['loss']))} (trial {best[0]['tid']})")
    rate = tp["per_minute"]
    parts.append(f"{rate:.3g}/min")
    if exp.max_evals and rate > 0 and finished < exp.max_evals:
        parts.append(f"eta {fmt_age((exp.max_evals - finished) / rate * 60)}")

    def render(bar_width: int, n_parts: int) -> str:
        filled = min(bar_width, int(round(bar_width * finished / total))) if total else 0
        bar = full * filled + empty * (bar_width - filled)
        return f"[{bar}] " + "  ".join(parts[:n_parts])

    line = render(24, len(parts))
    if width is not None and len(line) > width:
        for n_parts in range(len(parts), 0, -1):
            bar_width = min(24, width - len(render(0, n_parts)))
            if bar_width >= 8:
                line = render(bar_width, n_parts)
                break
        else:
            line = ellipsize(render(8, 1), width)
    return line, finished


COMMANDS = [experiments_cmd, status_cmd, list_cmd, show_cmd, best_cmd, export_cmd, plot_cmd, watch_cmd]
