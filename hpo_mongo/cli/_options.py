"""Option bundles shared by every ``hpo-mongo`` command.

- :func:`mongo_options`: ``--mongo URL`` (env ``HPO_MONGO_URL``), ``--connect-timeout`` and
  ``--secret-file`` (accepted for parity with ``hpo-mongo-worker``; the CLI never unpickles);
- :func:`exp_options`: the above plus ``--exp-key`` — omitted means the default experiment
  (``exp_key`` None, displayed ``(default)``); ``--exp-key ''`` is the experiment whose key is
  the empty string, a different one;
- :func:`json_option`: ``--json``.

The command receives one ``target`` (a :class:`Target`) instead of the separate options.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable

import click

DEFAULT_CONNECT_TIMEOUT = 5.0


@dataclass
class Target:
    """Where a command looks: the parsed URL, the experiment key, and a lazy connection."""

    url: str | None
    exp_key: str | None = None
    timeout: float = DEFAULT_CONNECT_TIMEOUT
    secret_file: str | None = None
    _parsed: Any = field(default=None, repr=False)
    _client: Any = field(default=None, repr=False)

    @property
    def parsed(self) -> Any:
        if self._parsed is None:
            from ..trials.mongo.connection import parse_url
            self._parsed = parse_url(self.url)
        return self._parsed

    @property
    def display(self) -> str | None:
        try:
            return self.parsed.display
        except Exception:  # noqa: BLE001 - a bad URL is reported elsewhere
            return None

    @property
    def jobs(self) -> str:
        """The name of the jobs collection."""
        return self.parsed.collection

    @property
    def db(self) -> Any:
        """The pymongo Database (connects on first use; fails fast when unreachable)."""
        if self._client is None:
            from ..trials.mongo.connection import connect
            ms = max(1, int(self.timeout * 1000))
            self._client = connect(self.parsed, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms)
        return self._client[self.parsed.database]

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _make_target(ctx: click.Context, kwargs: dict, with_exp: bool) -> Target:
    target = Target(url=kwargs.pop("mongo"), timeout=kwargs.pop("connect_timeout"),
                    secret_file=kwargs.pop("secret_file"),
                    exp_key=kwargs.pop("exp_key") if with_exp else None)
    ctx.meta["hpo_mongo.target"] = target
    ctx.call_on_close(target.close)
    target.parsed  # noqa: B018 - parse now: a bad URL fails before anything else
    return target


def _bundle(with_exp: bool) -> Callable:
    def decorator(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            ctx = click.get_current_context()
            kwargs["target"] = _make_target(ctx, kwargs, with_exp)
            return fn(*args, **kwargs)

        opts = [
            click.option("--mongo", "mongo", metavar="URL", envvar="HPO_MONGO_URL", show_envvar=True,
                         help="mongodb://host[:port]/db[/collection] (default db 'hpo', collection 'jobs')."),
            click.option("--connect-timeout", type=click.FloatRange(min=0.01), default=DEFAULT_CONNECT_TIMEOUT,
                         show_default=True, metavar="SECONDS", help="Give up on an unreachable server after this."),
            click.option("--secret-file", type=click.Path(dir_okay=False), default=None,
                         help="Accepted for parity with hpo-mongo-worker; the CLI never unpickles."),
        ]
        if with_exp:
            opts.append(click.option("--exp-key", default=None, metavar="KEY",
                                     help="Experiment key; omit for the default experiment (exp_key None)."))
        for opt in reversed(opts):
            wrapper = opt(wrapper)
        return wrapper
    return decorator


#: ``--mongo``, ``--connect-timeout``, ``--secret-file``
mongo_options = _bundle(with_exp=False)
#: ``--mongo``, ``--connect-timeout``, ``--secret-file``, ``--exp-key``
exp_options = _bundle(with_exp=True)

json_option = click.option("--json", "as_json", is_flag=True, help="Print stable JSON instead of a table.")
