"""Option bundles shared by every ``hpo-mongo`` command.

- :func:`mongo_options`: ``--mongo URL`` (env ``HPO_MONGO_URL``), ``--connect-timeout`` and
  ``--secret-file`` (accepted for parity with ``hpo-mongo-worker``; the CLI never unpickles);
- :func:`exp_options`: the above plus ``--exp-key`` — omitted means the default experiment
  (``exp_key`` None, displayed ``(default)``); ``--exp-key ''`` is the experiment whose key is
  the empty string, a different one;
- :func:`json_option`: ``--json``; :func:`wide_option`: ``--wide``; :func:`lease_timeout_option`:
  ``--lease-timeout`` (alias ``--stale-after``);
- :func:`group_options`: ``--mongo``, ``--exp-key`` and ``--connect-timeout`` before the
  subcommand (``hpo-mongo --mongo URL status``). The subcommand's own option wins when both are
  given; either wins over ``$HPO_MONGO_URL``. ``--exp-key`` given to the group applies to the
  commands that take one.

The command receives one ``target`` (a :class:`Target`) instead of the separate options.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable

import click
from click.core import ParameterSource

from ..trials.factory import connect_queue
from ..trials.queue import JobQueue

DEFAULT_CONNECT_TIMEOUT = 5.0
#: where the group's options wait for the subcommand (``ctx.meta`` is shared by nested contexts)
_GROUP_META = "hpo_mongo.group_options"
#: where the command's :class:`Target` is kept for the error handler (``_errors.ErrorHandlingGroup``)
TARGET_META = "hpo_mongo.target"


@dataclass
class Target:
    """Where a command looks: the queue at the URL (opened without network access; the connection
    is made on first use and fails fast when unreachable) and the experiment key."""

    url: str | None
    exp_key: str | None = None
    #: whether --exp-key was given (before or after the subcommand), not just the default experiment
    exp_key_given: bool = False
    timeout: float = DEFAULT_CONNECT_TIMEOUT
    secret_file: str | None = None
    _queue: JobQueue | None = field(default=None, repr=False)
    _where: str | None = field(default=None, repr=False)

    @property
    def queue(self) -> JobQueue:
        """The job queue (raises :class:`~hpo_mongo.exceptions.InvalidURLError` for a bad URL)."""
        if self._queue is None:
            ms = max(1, int(self.timeout * 1000))
            self._queue = connect_queue(self.url, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms)
            self._where = self._queue.describe()
        return self._queue

    def describe(self) -> str | None:
        """Where the queue lives, for messages (also once closed); None when the URL did not parse."""
        return self._where

    def close(self) -> None:
        if self._queue is not None:
            self._queue.close()
            self._queue = None


def _pick(ctx: click.Context, kwargs: dict, name: str) -> tuple[Any, bool]:
    """``(value, given)`` of option ``name``: the subcommand's when typed there, else the group's,
    else the subcommand's environment variable or default (``given`` False for the default)."""
    value = kwargs.pop(name)
    source = ctx.get_parameter_source(name)
    if source is ParameterSource.COMMANDLINE:
        return value, True
    group = ctx.meta.get(_GROUP_META, {})
    if name in group:
        return group[name], True
    return value, source is ParameterSource.ENVIRONMENT


def _make_target(ctx: click.Context, kwargs: dict, with_exp: bool) -> Target:
    url, _ = _pick(ctx, kwargs, "mongo")
    timeout, _ = _pick(ctx, kwargs, "connect_timeout")
    exp_key, exp_given = _pick(ctx, kwargs, "exp_key") if with_exp else (None, False)
    target = Target(url=url, timeout=timeout, secret_file=kwargs.pop("secret_file"),
                    exp_key=exp_key, exp_key_given=exp_given)
    ctx.meta[TARGET_META] = target
    ctx.call_on_close(target.close)
    target.queue  # noqa: B018 - parse the URL now: a bad one fails before anything else
    return target


_MONGO_HELP = "mongodb://host[:port]/db[/collection] (default db 'hpo', collection 'jobs')."
_TIMEOUT_HELP = "Give up on an unreachable server after this."
_EXP_HELP = "Experiment key; omit for the default experiment (exp_key None)."


def group_options(fn: Callable) -> Callable:
    """``--mongo``, ``--exp-key``, ``--connect-timeout`` on the ``hpo-mongo`` group itself."""
    @functools.wraps(fn)
    def wrapper(*args: Any, mongo: str | None, exp_key: str | None, connect_timeout: float | None,
                **kwargs: Any) -> Any:
        given = {"mongo": mongo, "exp_key": exp_key, "connect_timeout": connect_timeout}
        click.get_current_context().meta[_GROUP_META] = {k: v for k, v in given.items() if v is not None}
        return fn(*args, **kwargs)

    wrapper = click.option("--connect-timeout", type=click.FloatRange(min=0.01), default=None,
                           metavar="SECONDS", help=_TIMEOUT_HELP + f" [default: {DEFAULT_CONNECT_TIMEOUT:g}]")(wrapper)
    wrapper = click.option("--exp-key", default=None, metavar="KEY",
                           help=_EXP_HELP + " For the commands that take one.")(wrapper)
    wrapper = click.option("--mongo", "mongo", metavar="URL", default=None,
                           help=_MONGO_HELP + " [env var: HPO_MONGO_URL]")(wrapper)
    return wrapper


def _bundle(with_exp: bool) -> Callable:
    def decorator(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            ctx = click.get_current_context()
            kwargs["target"] = _make_target(ctx, kwargs, with_exp)
            return fn(*args, **kwargs)

        opts = [
            click.option("--mongo", "mongo", metavar="URL", envvar="HPO_MONGO_URL", show_envvar=True,
                         help=_MONGO_HELP),
            click.option("--connect-timeout", type=click.FloatRange(min=0.01), default=DEFAULT_CONNECT_TIMEOUT,
                         show_default=True, metavar="SECONDS", help=_TIMEOUT_HELP),
            click.option("--secret-file", type=click.Path(dir_okay=False), default=None,
                         help="Accepted for parity with hpo-mongo-worker; the CLI never unpickles."),
        ]
        if with_exp:
            opts.append(click.option("--exp-key", default=None, metavar="KEY", help=_EXP_HELP))
        for opt in reversed(opts):
            wrapper = opt(wrapper)
        return wrapper
    return decorator


#: ``--mongo``, ``--connect-timeout``, ``--secret-file``
mongo_options = _bundle(with_exp=False)
#: ``--mongo``, ``--connect-timeout``, ``--secret-file``, ``--exp-key``
exp_options = _bundle(with_exp=True)


def lease_timeout_option(what: str) -> Callable:
    """``--lease-timeout SECONDS`` (``--stale-after``, its older name, still works): one lease
    length replacing those the trials and workers record."""
    return click.option("--lease-timeout", "--stale-after", "lease_timeout", type=click.FloatRange(min=0),
                        default=None, metavar="SECONDS",
                        help=f"{what} (default: each one's own lease, i.e. the worker's --stale-timeout, "
                             "else 30). --stale-after is an older name.")


json_option = click.option("--json", "as_json", is_flag=True, help="Print stable JSON instead of a table.")
wide_option = click.option("--wide", is_flag=True,
                           help="Do not fit tables to the terminal width (COLUMNS): whole cells, every column.")
