"""``hpo-mongo-worker``: evaluate queued trials (hyperopt's ``hyperopt-mongo-worker`` flags).

Parsing and startup only; the loop is :class:`hpo_mongo.worker.loop.Worker`.

Exit codes: 0 clean stop (``--max-jobs`` reached, ``--reserve-timeout`` / ``--last-job-timeout``
expired, SIGTERM/SIGINT); 1 ``--max-consecutive-failures`` reached; 2 usage or configuration
error (bad flag, bad URL, unreadable secret file, a server refusing the configuration: failed
authentication, a ``mongodb+srv://`` name without SRV records); 3 the server was unreachable for longer than
``--max-disconnect``.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import sys
from typing import Any

import click

from ..exceptions import HpoMongoError, InvalidParameterError
from ..trials.queue import ANY_EXPERIMENT
from ..worker import loop as _loop
from ._errors import exit_code

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: the flags' defaults are WorkerConfig's (written once, there)
DEFAULT = {f.name: f.default for f in dataclasses.fields(_loop.WorkerConfig)}


def _serves(exp_key: str | None, default_experiment: bool) -> Any:
    """The ``exp_key`` WorkerConfig takes: one experiment, the default one, or every experiment."""
    if default_experiment and exp_key is not None:
        raise InvalidParameterError(f"--default-experiment and --exp-key {exp_key!r} exclude each other: "
                                    f"give one of them")
    return None if default_experiment else ANY_EXPERIMENT if exp_key is None else exp_key


@click.command(name="hpo-mongo-worker", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--mongo", "mongo", envvar="HPO_MONGO_URL", metavar="URL",
              help="mongodb://host[:port]/db[/collection] or mongodb+srv://… (default: $HPO_MONGO_URL; "
                   "database 'hpo', collection 'jobs').")
@click.option("--exp-key", default=None, metavar="KEY",
              help="Only evaluate trials of this experiment (default: every experiment in the database).")
@click.option("--default-experiment", is_flag=True, default=False,
              help="Only evaluate trials of the default experiment (exp_key None: MongoTrials(url) without "
                   "exp_key); excludes --exp-key.")
@click.option("--poll-interval", type=click.FloatRange(min=0, min_open=True), default=DEFAULT["poll_interval"],
              show_default=True, metavar="SECONDS",
              help="The longest wait between two claims while no trial is queued: an idle worker "
                   "polls at once after work, then waits twice as long each time, up to this.")
@click.option("--max-jobs", type=click.IntRange(min=1), default=None, metavar="N",
              help="Stop after evaluating N trials (default: unlimited).")
@click.option("--max-consecutive-failures", type=click.IntRange(min=0), default=DEFAULT["max_consecutive_failures"],
              show_default=True, metavar="N",
              help="Stop (exit 1) after N trials in a row end in ERROR; 0 = never.")
@click.option("--reserve-timeout", type=click.FloatRange(min=0), default=DEFAULT["reserve_timeout"], show_default=True,
              metavar="SECONDS", help="Stop (exit 0) after SECONDS without a trial to claim; 0 = wait forever.")
@click.option("--last-job-timeout", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="Do not claim a new trial SECONDS after the worker started (exit 0).")
@click.option("--workdir", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Run every trial with this working directory (created if missing; default: the trial's "
                   "misc.workdir, else the current directory).")
@click.option("--heartbeat-interval", type=click.FloatRange(min=0, min_open=True),
              default=DEFAULT["heartbeat_interval"], show_default=True, metavar="SECONDS",
              help="Seconds between heartbeats (the workers document and the running trial's "
                   "lease), idle or busy.")
@click.option("--lease-timeout", "--stale-timeout", "lease_timeout", type=click.FloatRange(min=0, min_open=True),
              default=None, metavar="SECONDS",
              help="A RUNNING trial whose lease is older than this goes back to NEW (default: 6x "
                   "--heartbeat-interval). Recorded on the trials this worker claims. --stale-timeout is its "
                   "older name.")
@click.option("--max-attempts", type=click.IntRange(min=1), default=DEFAULT["max_attempts"], show_default=True,
              metavar="N", help="A trial lost (lease expired) N times becomes ERROR 'lost N times'.")
@click.option("--no-subprocess", "subprocess", flag_value=False, default=True,
              help="Evaluate in the worker process instead of a forked child per trial (a crash in the "
                   "objective then kills the worker; --trial-timeout then interrupts Python code only).")
@click.option("--trial-timeout", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help="Kill a trial's process after SECONDS and record ERROR 'timeout' (default: no limit).")
@click.option("--grace-period", type=click.FloatRange(min=0), default=DEFAULT["grace_period"], show_default=True,
              metavar="SECONDS",
              help="On SIGTERM/SIGINT the running trial gets SECONDS to finish, then it is released back to "
                   "NEW; a second signal releases it at once.")
@click.option("--max-disconnect", type=click.FloatRange(min=0, min_open=True), default=DEFAULT["max_disconnect"],
              show_default=True, metavar="SECONDS",
              help="Exit with code 3 when the server is unreachable for longer than SECONDS.")
@click.option("--secret-file", type=click.Path(dir_okay=False), default=None, metavar="PATH",
              help="File holding the shared secret: refuse unsigned or tampered payloads "
                   "(default: $HPO_MONGO_SECRET; see docs/security.md).")
@click.option("--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False), default="INFO",
              show_default=True)
def main(mongo: str | None, exp_key: str | None, default_experiment: bool, secret_file: str | None,
         log_level: str, **options: Any) -> None:
    """Claim NEW trials from MongoDB and evaluate them until a stop condition (see exit codes).

    \b
    Exit codes: 0 clean stop (max-jobs, reserve/last-job timeout, SIGTERM/SIGINT),
    1 max consecutive failures reached, 2 usage/configuration error,
    3 server unreachable longer than --max-disconnect.
    """
    logging.basicConfig(level=getattr(logging, log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
    from ..payload import load_secret
    from ..trials.factory import connect_queue
    try:
        config = _loop.WorkerConfig(exp_key=_serves(exp_key, default_experiment), secret=load_secret(secret_file),
                                    **options)
        queue = connect_queue(mongo, **_client_options(mongo, config.max_disconnect))
    except HpoMongoError as e:
        click.echo(f"Error: {e}", err=True)
        sys.exit(exit_code(e) or _loop.EXIT_USAGE)
    worker = _loop.Worker(queue, config)
    signals = _install_stop_signals(worker)
    try:
        code = worker.run()
    except HpoMongoError as e:
        click.echo(f"Error: {e}", err=True)
        # the CLI's mapping; any other store error is a configuration problem too: 2, not 1 (failures)
        code = exit_code(e) or _loop.EXIT_USAGE
    finally:
        if signals is not None:
            signals.uninstall()
    sys.exit(code)


#: the longest a worker's operation waits for a reachable server (seconds): the worker retries
#: failed operations itself, so --max-disconnect is honoured to within about twice this
WORKER_SERVER_SELECTION_TIMEOUT = 0.5


def _client_options(mongo, max_disconnect: float) -> dict:
    """Server selection bounded (at most :data:`WORKER_SERVER_SELECTION_TIMEOUT`, a quarter of
    --max-disconnect when that is shorter) so the worker exits within about a second after
    --max-disconnect (unless the URL sets serverSelectionTimeoutMS itself)."""
    url = (mongo or os.environ.get("HPO_MONGO_URL") or "").lower()
    if "serverselectiontimeoutms" in url:
        return {}
    seconds = min(WORKER_SERVER_SELECTION_TIMEOUT, max(0.2, max_disconnect / 4.0))
    return {"serverSelectionTimeoutMS": int(1000 * seconds)}


def _install_stop_signals(worker):
    """SIGTERM/SIGINT: stop claiming; the running trial gets --grace-period, then it is released back
    to NEW; a second signal releases it at once; exit 0 (see hpo_mongo.worker.signals)."""
    from ..worker.signals import StopSignals
    try:
        return StopSignals(on_signal=worker.on_signal).install()
    except (RuntimeError, ValueError, OSError):  # not the main thread / platform without it
        return None


if __name__ == "__main__":  # pragma: no cover
    main()
