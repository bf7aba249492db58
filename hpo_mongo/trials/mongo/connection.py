"""Connection URLs, the pymongo client, and the one place pymongo errors become hpo_mongo errors.

- :func:`parse_url` turns every accepted URL form into a :class:`MongoURL` (no network, no DNS);
- :func:`connect` builds a lazily-connecting, tz-aware :class:`pymongo.MongoClient`;
- :func:`translate_errors` maps pymongo's exceptions onto :mod:`hpo_mongo.exceptions`;
- :func:`server_time` reads the server's clock (leases and heartbeats are judged by it).

Accepted URL forms (``[..]`` is optional; the collection defaults to ``jobs``, the database to ``hpo``)::

    mongo://[user[:password]@]host[:port][/db[/collection]][?options]          (hyperopt)
    host[:port][/db[/collection]]                                               (bare)
    mongodb://[user[:password]@]host1[:port1][,host2[:port2]...][/db[/collection]][?options]
    mongodb+srv://[user[:password]@]cluster.example.net[/db[/collection]][?options]

In the ``mongo://`` and bare forms the user name and password are taken as written (as hyperopt
does; ``%XX`` escapes are decoded); in the ``mongodb://`` forms they follow the MongoDB URI rules
(reserved characters percent-encoded, e.g. with :func:`urllib.parse.quote_plus`).
Passwords never appear in messages or logs: :attr:`MongoURL.display` replaces them with ``***``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import logging
import os
import re
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import quote, unquote

from hpo_mongo.exceptions import (DuplicateTrialError, InvalidParameterError, InvalidURLError,
                                  StoreConfigurationError, StoreError, StoreUnavailable)

if TYPE_CHECKING:  # pymongo is imported lazily: importing this module stays cheap
    import pymongo

__all__ = ["MongoURL", "parse_url", "connect", "translate_errors", "configuration_problem",
           "server_time", "ENV_URL", "DEFAULT_CLIENT_OPTIONS"]

_logger = logging.getLogger(__name__)

T = TypeVar("T")

#: environment variable read by ``parse_url(None)``
ENV_URL = "HPO_MONGO_URL"

#: pymongo options :func:`connect` uses unless the URL's query or the caller sets them
DEFAULT_CLIENT_OPTIONS: dict[str, Any] = {
    "serverSelectionTimeoutMS": 10_000,   # how long an operation waits for a reachable server
    "connectTimeoutMS": 10_000,
    "socketTimeoutMS": 60_000,            # no single operation of ours should take a minute
    "appname": "hpo_mongo",
}

_FORMS = (
    "accepted forms:\n"
    "  mongo://[user[:password]@]host[:port][/db[/collection]][?options]   (hyperopt)\n"
    "  host[:port][/db[/collection]]\n"
    "  mongodb://[user[:password]@]host1[:port1][,host2[:port2]...][/db[/collection]][?options]\n"
    "  mongodb+srv://[user[:password]@]cluster.example.net[/db[/collection]][?options]"
)

_SCHEMES = {"mongo": "mongodb", "mongodb": "mongodb", "mongodb+srv": "mongodb+srv"}
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# "mongodb:/host" (one slash); "mongo:27017" stays a host named mongo (docker-compose style)
_BROKEN_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):/(?!/)")
_HOSTNAME_RE = re.compile(r"^[A-Za-z0-9_~-]+(\.[A-Za-z0-9_~-]+)*\.?$")
_IPV6_RE = re.compile(r"^\[[0-9A-Fa-f:.]+(%[0-9A-Za-z._~-]+)?\]$")
_PORT_RE = re.compile(r"^[0-9]+$")
_DB_FORBIDDEN = set('/\\. "$\x00')
_DUPLICATE_KEY_CODES = frozenset({11000, 11001, 12582})
_AUTHENTICATION_FAILED = 18
_UNAUTHORIZED = 13
_COMMAND_NOT_FOUND = 59
_AUTH_COMMANDS = ("saslstart", "saslcontinue", "authenticate")
#: URI options (lower case) whose values are secrets, like a password
_SECRET_OPTIONS = frozenset({"tlscertificatekeyfilepassword", "sslpemkeypassword", "authmechanismproperties"})


@dataclasses.dataclass(frozen=True)
class MongoURL:
    """A parsed connection URL: a pymongo URI plus the database and collection it names."""

    #: standard ``mongodb://`` / ``mongodb+srv://`` URI for pymongo: credentials and query options
    #: kept, no database path. Contains the password: never log it (``repr`` leaves it out).
    uri: str = dataclasses.field(repr=False)
    database: str
    collection: str
    #: the URL as given, password replaced by ``***``: safe for messages and logs
    display: str

    def __str__(self) -> str:
        return self.display

    @property
    def has_credentials(self) -> bool:
        """Whether the URI carries a user (and password) or an option whose value is a secret."""
        authority, _, query = self.uri.partition("://")[2].partition("?")
        options = {p.partition("=")[0].lower() for p in re.split(r"[&;]", query) if p}
        return "@" in authority or bool(options & _SECRET_OPTIONS)

    def without_credentials(self) -> "MongoURL":
        """This URL if it has no credentials, else one that names only the database and collection
        (``uri`` empty, ``display`` without its query): safe to pickle or store."""
        if not self.has_credentials:
            return self
        return MongoURL(uri="", database=self.database, collection=self.collection,
                        display=self.display.partition("?")[0])


# ----------------------------------------------------------------------------- parsing
def _mask(url: str) -> str:
    """Best-effort password masking for URLs that may not parse (over-masks rather than leaks)."""
    m = _SCHEME_RE.match(url)
    start = m.end() if m else 0
    at = url.rfind("@")
    if at < start:
        return url
    colon = url.find(":", start, at)
    if colon < 0:
        return url
    return url[:colon + 1] + "***" + url[at:]


def _invalid(url: str, problem: str) -> InvalidURLError:
    return InvalidURLError(f"invalid MongoDB URL {_mask(url)!r}: {problem}\n{_FORMS}")


def _check_host(url: str, host: str, *, standard: bool) -> None:
    """Validate one ``host[:port]`` entry of the host list."""
    if not host:
        raise _invalid(url, "empty host name")
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            raise _invalid(url, f"unterminated IPv6 address in {host!r}")
        name, rest = host[:end + 1], host[end + 1:]
        if rest and not rest.startswith(":"):
            raise _invalid(url, f"unexpected text after the IPv6 address in {host!r}")
        has_port, port = bool(rest), rest[1:]
        if not _IPV6_RE.match(name):
            raise _invalid(url, f"bad IPv6 address {name!r}")
    else:
        name, sep, port = host.partition(":")
        has_port = bool(sep)
        if ":" in port:
            raise _invalid(url, f"bad host {host!r} (write IPv6 addresses in brackets: [::1]:27017)")
        decoded = unquote(name)
        is_socket = standard and "/" in decoded and decoded.endswith(".sock")
        if not name:
            raise _invalid(url, f"empty host name in {host!r}")
        if not (is_socket or _HOSTNAME_RE.match(name)):
            raise _invalid(url, f"bad host name {name!r}")
    if has_port:
        if not _PORT_RE.match(port):
            raise _invalid(url, f"port must be an integer in 1..65535, got {port!r}")
        if not 1 <= int(port) <= 65535:
            raise _invalid(url, f"port must be an integer in 1..65535, got {port}")


def _check_database(url: str, name: str) -> None:
    if any(c in _DB_FORBIDDEN for c in name):
        raise _invalid(url, f"database name {name!r} contains one of / \\ . \" $ space or NUL")
    if len(name.encode("utf-8")) >= 64:
        raise _invalid(url, f"database name {name!r} is longer than 63 bytes")


def _check_collection(url: str, name: str) -> None:
    if "$" in name or "\x00" in name:
        raise _invalid(url, f"collection name {name!r} contains '$' or NUL")
    if name.startswith("system."):
        raise _invalid(url, f"collection name {name!r} is reserved (system.*)")


def _validate_with_pymongo(url: str, uri: str, query: str, userinfo: str | None, srv: bool) -> None:
    """Let pymongo validate credentials and options, without any DNS lookup."""
    from pymongo import uri_parser
    from pymongo.errors import PyMongoError
    try:
        if not srv:
            uri_parser.parse_uri(uri, validate=True, warn=False)  # plain parsing: no network
            return
        if userinfo is not None:
            uri_parser.parse_userinfo(userinfo)
        if query:
            uri_parser.split_options(query, validate=True, warn=False)
    except (PyMongoError, ValueError, TypeError) as e:
        problem = str(e)
        if "escaped" in problem:
            problem = ("the user name and password must be percent-encoded in mongodb:// URLs "
                       "(urllib.parse.quote_plus)")
        raise _invalid(url, problem) from None


def parse_url(url: str | None, *, default_db: str = "hpo", default_collection: str = "jobs") -> MongoURL:
    """Parse any accepted URL form into a :class:`MongoURL`, so the rest of the code sees one shape.

    ``url=None`` reads ``$HPO_MONGO_URL``. No network access (``mongodb+srv`` is not resolved here).
    Raises :class:`InvalidURLError` (naming the URL, password masked, and the accepted forms).
    """
    if url is None:
        url = os.environ.get(ENV_URL, "").strip()
        if not url:
            raise InvalidURLError(f"no MongoDB URL given: pass --mongo URL or set {ENV_URL}\n{_FORMS}")
    if isinstance(url, MongoURL):
        return url
    if not isinstance(url, str):
        raise InvalidURLError(f"a MongoDB URL must be a string, got {type(url).__name__}\n{_FORMS}")
    raw = url.strip()
    if not raw:
        raise InvalidURLError(f"empty MongoDB URL: pass --mongo URL or set {ENV_URL}\n{_FORMS}")
    if any(c.isspace() or ord(c) < 32 for c in raw):
        raise _invalid(raw, "contains whitespace or control characters")

    m = _SCHEME_RE.match(raw)
    if m:
        scheme = m.group(1).lower()
        if scheme not in _SCHEMES:
            raise _invalid(raw, f"unsupported scheme '{m.group(1)}://'")
        prefix = m.end()
    else:
        b = _BROKEN_SCHEME_RE.match(raw)
        if b and b.group(1).lower() in _SCHEMES:
            raise _invalid(raw, f"malformed scheme {b.group(1)!r}: expected '{b.group(1)}://'")
        scheme, prefix = None, 0
    standard = scheme in ("mongodb", "mongodb+srv")
    srv = scheme == "mongodb+srv"
    rest = raw[prefix:]
    if "#" in rest:
        raise _invalid(raw, "fragments ('#') are not allowed")

    # authority = everything up to the first '/' or '?'
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    path, _, query = tail.partition("?")
    if "?" in query:
        raise _invalid(raw, "more than one '?'")

    userinfo_raw, at, hosts_raw = authority.rpartition("@")
    userinfo: str | None = userinfo_raw if at else None
    display = raw
    userinfo_out = ""
    if userinfo is not None:
        if not userinfo:
            raise _invalid(raw, "empty user name before '@'")
        user, colon, password = userinfo.partition(":")
        if not user:
            raise _invalid(raw, "empty user name")
        if colon:
            pw_start = prefix + len(user) + 1
            display = raw[:pw_start] + "***" + raw[prefix + len(userinfo):]
        if standard:
            userinfo_out = userinfo
        else:  # hyperopt style: literal credentials (%XX decoded), re-encoded for pymongo's URI rules
            userinfo_out = quote(unquote(user), safe="")
            if colon:
                userinfo_out += ":" + quote(unquote(password), safe="")

    if not hosts_raw:
        raise _invalid(raw, "no host given")
    hosts = hosts_raw.split(",")
    try:
        for host in hosts:
            _check_host(raw, host, standard=standard)
    except InvalidURLError:
        if "@" in tail:  # most likely a password with an unencoded '/', '?' or '#'
            raise _invalid(raw, "cannot find the host: percent-encode '/', '?', '#' and '@' in "
                                "user names and passwords (urllib.parse.quote_plus)") from None
        raise
    if srv:
        if len(hosts) != 1:
            raise _invalid(raw, "mongodb+srv:// takes exactly one host name")
        if ":" in hosts[0] and not hosts[0].startswith("["):
            raise _invalid(raw, "mongodb+srv:// host names take no port")
        if hosts[0].startswith("["):
            raise _invalid(raw, "mongodb+srv:// needs a DNS host name, not an IP address")

    database, collection = default_db, default_collection
    if path not in ("", "/"):
        segments = path[1:].split("/")
        if len(segments) == 3 and segments[2] == "":  # "/db/collection/"
            segments = segments[:2]
        if len(segments) > 2:
            raise _invalid(raw, "the path must be /db or /db/collection")
        if not segments[0]:
            raise _invalid(raw, "empty database name in the path")
        database = unquote(segments[0])
        if len(segments) == 2 and segments[1]:
            collection = unquote(segments[1])
    if not database:
        raise _invalid(raw, "empty database name")
    if not collection:
        raise _invalid(raw, "empty collection name")
    _check_database(raw, database)
    _check_collection(raw, collection)

    out_scheme = _SCHEMES[scheme] if scheme else "mongodb"
    uri = f"{out_scheme}://" + (f"{userinfo_out}@" if userinfo is not None else "") + hosts_raw + "/"
    if query:
        uri += "?" + query
    _validate_with_pymongo(raw, uri, query, userinfo_out if userinfo is not None else None, srv)
    return MongoURL(uri=uri, database=database, collection=collection, display=display)


# ----------------------------------------------------------------------------- client
_FORBIDDEN_CLIENT_OPTIONS = ("server_api", "serverapi", "loadbalanced")


def connect(url: MongoURL, **kw: Any) -> pymongo.MongoClient:
    """A lazily-connecting, tz-aware MongoClient for ``url``, with bounded timeouts.

    ``kw`` are pymongo client options; they win over the URL's query, which wins over
    :data:`DEFAULT_CLIENT_OPTIONS`. Sessions, transactions, ``w=0`` and ``server_api`` are not
    used (the in-memory test server lacks them) and are refused here.
    """
    import pymongo
    from pymongo.errors import ConfigurationError

    if isinstance(url, str):
        url = parse_url(url)
    given = {k.lower(): v for k, v in kw.items()}
    for name in _FORBIDDEN_CLIENT_OPTIONS:
        if name in given:
            raise InvalidParameterError(f"connect(): the {name!r} option is not supported by hpo_mongo")
    if given.get("w") in (0, "0"):
        raise InvalidParameterError("connect(): unacknowledged writes (w=0) are not supported")
    query = url.uri.partition("?")[2]
    in_uri = {p.partition("=")[0].lower() for p in re.split(r"[&;]", query) if p}
    options: dict[str, Any] = {k: v for k, v in DEFAULT_CLIENT_OPTIONS.items()
                               if k.lower() not in in_uri and k.lower() not in given}
    options.update(kw)
    options["tz_aware"] = True
    options.setdefault("connect", False)  # connect on first use (fork-safe; no DNS at construction)
    try:
        return pymongo.MongoClient(url.uri, **options)
    except (ConfigurationError, ValueError, TypeError) as e:
        raise InvalidURLError(f"cannot use MongoDB URL {url.display!r}: {e}") from e


# ----------------------------------------------------------------------------- errors
def _is_duplicate_key(err: BaseException) -> bool:
    from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure
    if isinstance(err, DuplicateKeyError):
        return True
    if isinstance(err, BulkWriteError):
        write_errors = (err.details or {}).get("writeErrors") or []
        return bool(write_errors) and all(e.get("code") in _DUPLICATE_KEY_CODES for e in write_errors)
    return isinstance(err, OperationFailure) and err.code in _DUPLICATE_KEY_CODES


def _one_line(err: BaseException | str, limit: int = 400) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def configuration_problem(err: BaseException) -> StoreConfigurationError | None:
    """The :class:`StoreConfigurationError` for a pymongo error no retry can fix (failed
    authentication, missing privileges, a ``mongodb+srv://`` name that does not resolve, other
    client configuration errors); None for any other error. The message says what to check."""
    from pymongo.errors import ConfigurationError, OperationFailure
    text = _one_line(err)
    if isinstance(err, ConfigurationError):
        if any(w in text for w in ("DNS", "SRV", "resolution", "resolve")):
            return StoreConfigurationError(
                f"cannot resolve the mongodb+srv:// host name ({text}); check the cluster name in the URL")
        return StoreConfigurationError(f"MongoDB client configuration error ({text}); check the URL and its options")
    if not isinstance(err, OperationFailure):
        return None
    text = _one_line(str((err.details or {}).get("errmsg") or text))
    if err.code == _AUTHENTICATION_FAILED:
        return StoreConfigurationError(
            f"MongoDB authentication failed ({text}); check the user name, password and authSource in the URL")
    if err.code == _COMMAND_NOT_FOUND and any(c in text.lower() for c in _AUTH_COMMANDS):
        return StoreConfigurationError(
            f"the MongoDB server does not support authentication ({text}); remove the user name and "
            "password from the URL")
    if err.code == _UNAUTHORIZED:
        return StoreConfigurationError(
            f"the MongoDB user is not authorized ({text}); it needs the readWrite role on the database")
    return None


class _ErrorTranslator(contextlib.ContextDecorator):
    """The context manager / decorator returned by :func:`translate_errors`."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> _ErrorTranslator:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> Literal[False]:  # never swallows: translates or propagates
        if exc is None:
            return False
        from pymongo.errors import ConnectionFailure, PyMongoError
        problem = configuration_problem(exc)
        if problem is not None:
            raise problem from exc
        if isinstance(exc, ConnectionFailure):
            raise StoreUnavailable(f"MongoDB unreachable during {self.what}: {_one_line(exc)}") from exc
        if isinstance(exc, PyMongoError):
            if _is_duplicate_key(exc):
                raise DuplicateTrialError(f"duplicate key during {self.what}: {_one_line(exc)}") from exc
            raise StoreError(f"MongoDB error during {self.what}: {_one_line(exc)}") from exc
        return False  # not pymongo's: propagate unchanged


def translate_errors(what: str | Callable[..., T] = "a database operation") -> Any:
    """Map pymongo errors to hpo_mongo's: the project's ONE such mapping, so callers catch only ours.

    A configuration the server refuses (:func:`configuration_problem`) becomes
    :class:`StoreConfigurationError`, ``ConnectionFailure`` (AutoReconnect, NetworkTimeout,
    ServerSelectionTimeoutError...) :class:`StoreUnavailable`, a duplicate key (also inside a BulkWriteError)
    :class:`DuplicateTrialError`, any other ``PyMongoError`` :class:`StoreError`; the message names
    the operation and the original is the ``__cause__``. Use as ``with translate_errors("claim"):``,
    ``@translate_errors("claim")`` or bare ``@translate_errors`` (named after the function).
    """
    if callable(what):
        return _ErrorTranslator(getattr(what, "__qualname__", "a database operation"))(what)
    return _ErrorTranslator(what)


# ----------------------------------------------------------------------------- clock
def _as_utc(value: Any) -> _dt.datetime | None:
    if not isinstance(value, _dt.datetime):
        return None
    if value.tzinfo is None:  # pymongo returns naive UTC without tz_aware=True
        return value.replace(tzinfo=_dt.timezone.utc)
    return value.astimezone(_dt.timezone.utc)


def server_time(db: Any) -> _dt.datetime:
    """The server's clock as tz-aware UTC, so leases do not depend on each worker's clock.

    Reads ``localTime`` from ``isMaster`` (no privileges needed; mongo-java-server has no
    ``hello``), falling back to ``hello`` and then ``serverStatus``.
    """
    last: BaseException | None = None
    with translate_errors("reading the server time"):
        from pymongo.errors import OperationFailure
        for command in ("isMaster", "hello", "serverStatus"):
            try:
                reply = db.command(command)
            except OperationFailure as e:  # unknown command or not authorized: try the next one
                if e.code != _UNAUTHORIZED and configuration_problem(e) is not None:
                    raise  # the connection itself was refused (authentication): no command can succeed
                last = e
                continue
            t = _as_utc(reply.get("localTime"))
            if t is not None:
                return t
    raise StoreError("MongoDB error during reading the server time: no localTime in the replies of "
                     "isMaster, hello or serverStatus" + (f" (last error: {_one_line(last)})" if last else ""))
