"""``hpo-mongo-worker``: evaluate queued trials (hyperopt's ``hyperopt-mongo-worker`` flags).

Parsing and startup only; the loop is :class:`hpo_mongo.worker.loop.Worker`.

Exit codes: 0 clean stop (``--max-jobs`` reached, ``--reserve-timeout`` / ``--last-job-timeout``
expired, SIGTERM/SIGINT); 1 ``--max-consecutive-failures`` reached; 2 usage or configuration
error (bad flag, bad URL, unreadable secret file); 3 the server was unreachable for longer than
``--max-disconnect``.
"""
from __future__ import annotations

import logging
import os
import sys

import click

from ..exceptions import HpoMongoError, InvalidParameterError, StoreUnavailable
from ..worker import loop as _loop

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def build_config(exp_key, poll_interval, max_jobs, max_consecutive_failures, reserve_timeout,
                 last_job_timeout, workdir, secret=None, max_disconnect=300.0) -> "_loop.WorkerConfig":
    """The WorkerConfig for these flag values (``exp_key`` None = every experiment)."""
    return _loop.WorkerConfig(
        exp_key=_loop._jobs.ANY_EXPERIMENT if exp_key is None else exp_key,
        poll_interval=poll_interval, max_jobs=max_jobs,
        max_consecutive_failures=max_consecutive_failures, reserve_timeout=reserve_timeout,
        last_job_timeout=last_job_timeout, workdir=os.path.abspath(workdir) if workdir else None,
        secret=secret, max_disconnect=max_disconnect)


@click.command(name="hpo-mongo-worker", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--mongo", "mongo", envvar="HPO_MONGO_URL", metavar="URL",
              help="mongodb://host[:port]/db[/collection] or mongodb+srv://… (default: $HPO_MONGO_URL; "
                   "database 'hpo', collection 'jobs').")
@click.option("--exp-key", default=None, metavar="KEY",
              help="Only evaluate trials of this experiment (default: every experiment in the database).")
@click.option("--poll-interval", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              metavar="SECONDS", help="Seconds between polls when no trial is queued (sub-second allowed).")
@click.option("--max-jobs", type=click.IntRange(min=1), default=None, metavar="N",
              help="Stop after evaluating N trials (default: unlimited).")
@click.option("--max-consecutive-failures", type=click.IntRange(min=0), default=0, show_default=True,
              metavar="N", help="Stop (exit 1) after N trials in a row end in ERROR; 0 = never.")
@click.option("--reserve-timeout", type=click.FloatRange(min=0), default=0.0, show_default=True,
              metavar="SECONDS", help="Stop (exit 0) after SECONDS without a trial to claim; 0 = wait forever.")
@click.option("--last-job-timeout", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="Do not claim a new trial SECONDS after the worker started (exit 0).")
@click.option("--workdir", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Run every trial with this working directory (created if missing; default: the trial's "
                   "misc.workdir, else the current directory).")
@click.option("--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False), default="INFO",
              show_default=True)
def main(mongo, exp_key, poll_interval, max_jobs, max_consecutive_failures, reserve_timeout,
         last_job_timeout, workdir, log_level):
    """Claim NEW trials from MongoDB and evaluate them until a stop condition (see exit codes).

    \b
    Exit codes: 0 clean stop (max-jobs, reserve/last-job timeout, SIGTERM/SIGINT),
    1 max consecutive failures reached, 2 usage/configuration error,
    3 server unreachable longer than --max-disconnect.
    """
    logging.basicConfig(level=getattr(logging, log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
    from ..payload import load_secret
    from ..trials.mongo.store import MongoJobs
    try:
        secret = load_secret()
        config = build_config(exp_key, poll_interval, max_jobs, max_consecutive_failures, reserve_timeout,
                              last_job_timeout, workdir, secret)
        handle = MongoJobs.new_from_connection_str(mongo)
    except InvalidParameterError as e:
        click.echo(f"Error: {e}", err=True)
        sys.exit(_loop.EXIT_USAGE)
    except StoreUnavailable as e:
        click.echo(f"Error: {e}", err=True)
        sys.exit(_loop.EXIT_UNREACHABLE)
    worker = _loop.Worker(handle, config)
    _install_stop_signals(worker)
    try:
        code = worker.run()
    except HpoMongoError as e:
        click.echo(f"Error: {e}", err=True)
        code = _loop.EXIT_UNREACHABLE if isinstance(e, StoreUnavailable) else 1
    sys.exit(code)


def _install_stop_signals(worker) -> None:
    """SIGTERM/SIGINT: stop claiming, finish the current trial, exit 0 (issue 5 adds the grace period)."""
    import signal

    def handler(signum, frame):
        if worker.stopping:  # second signal: stop now
            raise KeyboardInterrupt
        logging.getLogger("hpo_mongo.worker").info("signal %d: stopping after the current trial", signum)
        worker.stop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            signal.signal(sig, handler)
        except (ValueError, OSError):  # not the main thread / platform without it
            pass


if __name__ == "__main__":  # pragma: no cover
    main()
