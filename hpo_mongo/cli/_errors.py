"""The one place where errors become a one-line ``Error: …`` and an exit code (never a traceback).

Exit codes (the same meaning as ``hpo-mongo-worker``'s; :func:`exit_code` is the mapping both use):

- 1: the request cannot be served: unknown experiment or trial, a store error, an unwritable file;
- 2: usage or configuration: bad options or arguments, a malformed URL, a missing optional extra,
  a configuration the server refuses (failed authentication, missing privileges, a
  ``mongodb+srv://`` name that does not resolve);
- 3: the MongoDB server cannot be reached.
"""
from __future__ import annotations

from typing import Any

import click

from ..exceptions import (HpoMongoError, InvalidParameterError, InvalidURLError, MissingExtra, StoreConfigurationError,
                          StoreUnavailable)
from ._options import TARGET_META, Target

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


def exit_code(exc: BaseException) -> int | None:
    """The exit code of ``hpo-mongo`` and ``hpo-mongo-worker`` for ``exc``: :data:`EXIT_UNREACHABLE`
    (the server cannot be reached), :data:`EXIT_USAGE` (usage, URL, missing extra, a configuration
    the server refuses), None for other errors (each program has its own code for those)."""
    if isinstance(exc, StoreUnavailable):
        return EXIT_UNREACHABLE
    if isinstance(exc, (InvalidParameterError, MissingExtra, StoreConfigurationError)):
        return EXIT_USAGE
    return None


class CliError(click.ClickException):
    """A one-line error with a chosen exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE):
        super().__init__(message)
        # click (8.2+) types exit_code as a ClassVar, yet reads it from the instance (e.exit_code);
        # older clicks declare a plain attribute, hence unused-ignore
        self.exit_code = exit_code  # type: ignore[misc, unused-ignore]


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def to_click_error(exc: BaseException, *, url_display: str | None = None,
                   timeout: float | None = None) -> CliError | None:
    """The CLI error for ``exc``, or None when it is not an error the CLI explains (a bug)."""
    if isinstance(exc, StoreUnavailable):
        where = f" at {url_display}" if url_display else ""
        within = f" within {timeout:g}s" if timeout else ""
        return CliError(f"cannot reach the MongoDB server{where}{within} "
                        "(is it running? check --mongo / HPO_MONGO_URL)", EXIT_UNREACHABLE)
    if isinstance(exc, InvalidURLError):  # its later lines list every accepted form: keep one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid MongoDB URL"
        return CliError(_one_line(first.rstrip(" :;") + "; expected mongodb://host[:port][/db[/collection]], "
                                  "mongodb+srv://… or mongo://host:port/db/jobs"), EXIT_USAGE)
    if isinstance(exc, HpoMongoError):
        return CliError(_one_line(str(exc)), exit_code(exc) or EXIT_FAILURE)
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return CliError(_one_line(f"{where}{exc.strerror or exc}"), EXIT_FAILURE)
    return None


class ErrorHandlingGroup(click.Group):
    """A click group whose subcommands' errors go through :func:`to_click_error`."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Abort, click.exceptions.Exit):
            raise
        except Exception as exc:  # noqa: BLE001 - mapped below, re-raised when unknown
            target: Target | None = ctx.meta.get(TARGET_META)
            err = to_click_error(exc, url_display=None if target is None else target.describe(),
                                 timeout=None if target is None else target.timeout)
            if err is None:
                raise
            raise err from None
