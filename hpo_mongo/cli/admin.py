"""Commands of ``hpo-mongo`` that change the database: requeue, cancel, delete.

Each reports exactly what it changed (and what it skipped and why); ``--json`` gives the same
report as JSON. Updates are conditional on the state and version read (see
:func:`hpo_mongo.inspect.requeue_trials`), so a trial a worker changed meanwhile is skipped.
"""
from __future__ import annotations

from typing import Any

import click

from .. import inspect as hi
from ._output import emit, fmt_age
from ._options import exp_options, json_option, lease_timeout_option


def _report(verb: str, changed: list, skipped: list, label: str) -> str:
    lines = []
    if changed:
        lines.append(f"{verb} {len(changed)} trial{'s' if len(changed) != 1 else ''} of experiment {label}: "
                     + ", ".join(str(t) for t in changed))
    else:
        lines.append(f"{verb} nothing in experiment {label}")
    lines.extend(f"skipped {s['tid']}: {s['reason']}" for s in skipped)
    return "\n".join(lines)


@click.command(name="requeue", short_help="Put error/stale/named trials back in the queue.")
@exp_options
@json_option
@click.option("--stale", is_flag=True, help="Every running trial whose lease expired (heartbeat too old).")
@click.option("--errors", is_flag=True, help="Every trial in state error.")
@lease_timeout_option("With --stale: a running trial whose heartbeat is older than this is stale")
@click.argument("tids", nargs=-1, type=int)
def requeue_cmd(target: Any, as_json: bool, stale: bool, errors: bool, lease_timeout: float | None,
                tids: tuple) -> None:
    """Put trials back to NEW so that workers run them again: the named TIDS (error, cancel or
    running trials), every stale running trial (--stale) or every failed one (--errors).

    \b
    Example:
        hpo-mongo requeue --errors
        hpo-mongo requeue 12 17
    """
    if not (tids or stale or errors):
        raise click.UsageError("name trial ids, or pass --stale or --errors")
    exp = hi.get_experiment(target.queue, target.exp_key)
    out = hi.requeue_trials(target.queue, exp.exp_key, tids=tids, stale=stale, errors=errors,
                            lease_timeout=lease_timeout)
    emit(dict(exp_key=exp.exp_key, **out), as_json, _report("requeued", out["requeued"], out["skipped"], exp.label))


@click.command(name="cancel", short_help="Cancel new or running trials.")
@exp_options
@json_option
@click.argument("tids", nargs=-1, type=int, required=True)
def cancel_cmd(target: Any, as_json: bool, tids: tuple) -> None:
    """Cancel new or running trials TIDS (a worker running one loses it: its result is dropped).

    \b
    Example:
        hpo-mongo cancel 21 22
    """
    exp = hi.get_experiment(target.queue, target.exp_key)
    out = hi.cancel_trials(target.queue, exp.exp_key, tids)
    emit(dict(exp_key=exp.exp_key, **out), as_json, _report("cancelled", out["cancelled"], out["skipped"], exp.label))


@click.command(name="delete", short_help="Delete an experiment with its GridFS files.")
@exp_options
@json_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (unless the experiment's driver is running).")
@click.option("--force", is_flag=True, help="Do not ask even when the experiment's driver is running.")
def delete_cmd(target: Any, as_json: bool, yes: bool, force: bool) -> None:
    """Delete the experiment: its trials, its experiments document and its GridFS files.

    When its driver is running (a recent driver heartbeat on the experiments document), the
    command warns and asks again, even with --yes; --force deletes without asking.

    \b
    Example:
        hpo-mongo delete --exp-key old-run --yes
    """
    exp = hi.get_experiment(target.queue, target.exp_key)
    if not (yes or force):
        n = hi.count_by_state(target.queue, exp.exp_key)["total"]
        click.confirm(f"Delete experiment {exp.label} and its {n} trials from {target.describe()}?", abort=True)
    driver = None if force else hi.live_driver(target.queue, exp)
    if driver is not None:
        click.echo(f"Warning: the driver of experiment {exp.label} is running ({driver['host']}:{driver['pid']}, "
                   f"heartbeat {fmt_age(driver['heartbeat_age'])} ago): it writes back the finished trials it holds "
                   "and queues new ones, so the experiment would not stay deleted. Stop it first, or pass --force.",
                   err=True)
        click.confirm("Delete it while its driver runs?", abort=True)
    out = hi.delete_experiment(target.queue, exp.exp_key)
    text = (f"deleted experiment {exp.label}: {out['trials']} trials, "
            f"{'its experiments document, ' if out['experiment'] else ''}{out['files']} GridFS files")
    emit(out, as_json, text)


COMMANDS = [requeue_cmd, cancel_cmd, delete_cmd]
