"""pytest plugin: a real MongoDB wire-protocol server for the tests that need one.

Fixtures:

- ``mongo_server_url`` (session): the base URL ``mongodb://127.0.0.1:PORT`` of one server per test
  session, found in this order:

  1. ``$HPO_MONGO_TEST_URL`` (a MongoDB you run; used as given, nothing is started),
  2. a ``mongod`` on PATH (started on a free port with a temporary ``--dbpath``),
  3. the in-memory mongo-java-server (``tests/server/Launcher.java``; install it once with
     ``scripts/install-test-server``, which needs Java 17+ and Maven).

  ``HPO_MONGO_TEST_SERVER=mongod|java`` forces 2. or 3. Without any server the tests are
  skipped, or fail when ``HPO_MONGO_REQUIRE_SERVER=1`` (CI sets it so nothing is skipped silently).
- ``mongo_url`` (function): ``<base>/hpo_test_<uuid hex>``, a fresh database dropped afterwards.
- ``mongo_db`` (function): a tz-aware ``pymongo`` Database object for that fresh database.
- ``server_process`` (function): a factory ``server_process(h2_file=None, port=None)`` of test
  servers of the test's own (:class:`tests.server_process.ServerProcess`), to stop, kill and restart
  on their port (``h2_file``: the persistent H2 backend); all stopped afterwards. Always the java
  server, whatever ``$HPO_MONGO_TEST_URL`` says.

Tests using these fixtures get the ``server`` mark (``-m "not server"`` deselects them).
Load it with ``pytest_plugins = ["tests.mongo_server"]`` or ``from tests.mongo_server import *``
in a conftest.py.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest

from tests.server_process import (LIB_DIR, REPO, STARTUP_TIMEOUT, ServerProcess, ServerStartError, end_process,
                                  installed, ping, tail)

__all__ = ["mongo_server_url", "mongo_url", "mongo_db", "server_process", "ServerProcess", "free_port",
           "pytest_configure", "pytest_collection_modifyitems", "SERVER_FIXTURES", "NO_SERVER_MESSAGE"]


ENV_URL = "HPO_MONGO_TEST_URL"
ENV_REQUIRE = "HPO_MONGO_REQUIRE_SERVER"
ENV_KIND = "HPO_MONGO_TEST_SERVER"

SERVER_FIXTURES = frozenset({"mongo_server_url", "mongo_url", "mongo_db", "server_process"})

NO_SERVER_MESSAGE = (
    "no MongoDB test server available: run scripts/install-test-server (needs Java 17+ and Maven) "
    f"to install the in-memory mongo-java-server, put mongod on PATH, or set {ENV_URL}="
    "mongodb://host:port to use a real MongoDB"
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- pytest hooks
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "server: needs a real Mongo wire-protocol server (HPO_MONGO_TEST_URL, mongod or mongo-java-server)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.server)


# ----------------------------------------------------------------------------- helpers
def _require() -> bool:
    return os.environ.get(ENV_REQUIRE, "").strip().lower() in ("1", "true", "yes", "on")


def _no_server(reason: str) -> None:
    message = f"{NO_SERVER_MESSAGE} ({reason})"
    if _require():
        pytest.fail(f"{ENV_REQUIRE}=1 but {message}", pytrace=False)
    pytest.skip(message)


def _parent_death_signal() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: let the kernel SIGTERM the server if pytest dies without tearing down."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort only
        pass


class _Server:
    """A mongod started for this session; ``close()`` terminates it and removes its files."""

    def __init__(self, proc: subprocess.Popen, url: str, log: Path, workdir: Path | None = None):
        self.proc, self.url, self.log, self.workdir = proc, url, log, workdir

    def close(self) -> None:
        end_process(self.proc)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _start_java() -> ServerProcess:
    server = ServerProcess()
    try:
        return server.start(STARTUP_TIMEOUT)
    except ServerStartError as e:
        server.close()
        pytest.fail(str(e), pytrace=False)
        raise AssertionError("unreachable") from e


def _start_mongod(mongod: str) -> _Server:
    last_error = ""
    for _ in range(3):  # free_port() can race with another process: try a few ports
        workdir = Path(tempfile.mkdtemp(prefix="hpo_mongo_mongod_"))
        (workdir / "db").mkdir()
        log = workdir / "mongod.log"
        port = free_port()
        cmd = [mongod, "--port", str(port), "--bind_ip", "127.0.0.1", "--dbpath", str(workdir / "db"),
               "--logpath", str(log), "--nounixsocket", "--wiredTigerCacheSizeGB", "0.25"]
        preexec = _parent_death_signal if sys.platform.startswith("linux") else None
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.STDOUT, preexec_fn=preexec)
        url = f"mongodb://127.0.0.1:{port}"
        server = _Server(proc, url, log, workdir)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                ping(url, timeout=min(1.0, max(0.1, deadline - time.monotonic())))
                return server
            except Exception as e:  # noqa: BLE001 - not up yet; the ping itself waits
                last_error = str(e)
        last_error = f"exit code {proc.poll()}: {last_error}\n{tail(log)}"
        server.close()
    pytest.fail(f"could not start {mongod} as a test server: {last_error}", pytrace=False)
    raise AssertionError("unreachable")


def _start_server() -> tuple[str, _Server | ServerProcess | None]:
    """(base URL, process to stop or None) of the server this session uses; skips/fails if none."""
    env_url = os.environ.get(ENV_URL, "").strip()
    if env_url:
        try:
            ping(env_url, timeout=10)
        except Exception as e:  # noqa: BLE001
            pytest.fail(f"{ENV_URL}={_mask(env_url)} is set but the server does not answer: {e}", pytrace=False)
        return env_url.rstrip("/"), None

    kind = os.environ.get(ENV_KIND, "auto").strip().lower() or "auto"
    if kind not in ("auto", "mongod", "java"):
        pytest.fail(f"{ENV_KIND} must be 'mongod', 'java' or 'auto', got {kind!r}", pytrace=False)
    reasons = []
    if kind in ("auto", "mongod"):
        mongod = shutil.which("mongod")
        if mongod:
            server = _start_mongod(mongod)
            return server.url, server
        reasons.append("no mongod on PATH")
    if kind in ("auto", "java"):
        java = shutil.which("java")
        if not any(LIB_DIR.glob("mongo-java-server-*.jar")):
            reasons.append(f"{LIB_DIR.relative_to(REPO)} has no mongo-java-server jar")
        elif not java:
            reasons.append("java is not on PATH")
        else:
            server = _start_java()
            return server.url, server
    _no_server("; ".join(reasons))
    raise AssertionError("unreachable")


def _mask(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, _, hosts = rest.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{hosts}" if ":" in userinfo else url


def _with_database(base: str, name: str) -> str:
    """``base`` (``mongodb://[user:pw@]host[:port][/db][?query]``) pointing at database ``name``."""
    scheme, _, rest = base.partition("://")
    rest, _, query = rest.partition("?")
    hosts, _, old_db = rest.partition("/")
    params = parse_qsl(query, keep_blank_values=True)
    if old_db and "@" in hosts and not any(k.lower() == "authsource" for k, _ in params):
        params.append(("authSource", old_db))  # the credentials belong to the original database
    url = f"{scheme}://{hosts}/{name}"
    return f"{url}?{urlencode(params)}" if params else url


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def mongo_server_url() -> Iterator[str]:
    """Base URL (``mongodb://127.0.0.1:PORT``) of the session's test server; see the module doc."""
    url, server = _start_server()
    try:
        yield url
    finally:
        if server is not None:
            server.close()


@pytest.fixture
def mongo_url(mongo_server_url: str) -> Iterator[str]:
    """URL of a fresh database ``hpo_test_<uuid hex>`` on the test server, dropped afterwards."""
    import pymongo
    name = f"hpo_test_{uuid.uuid4().hex}"
    yield _with_database(mongo_server_url, name)
    with contextlib.suppress(Exception):
        client: Any = pymongo.MongoClient(_with_database(mongo_server_url, name), serverSelectionTimeoutMS=5000)
        try:
            client.drop_database(name)
        finally:
            client.close()


@pytest.fixture
def mongo_db(mongo_url: str) -> Iterator[Any]:
    """A tz-aware ``pymongo`` Database for the fresh database of ``mongo_url``."""
    import pymongo
    client: Any = pymongo.MongoClient(mongo_url, tz_aware=True, serverSelectionTimeoutMS=10_000)
    try:
        yield client.get_default_database()
    finally:
        client.close()


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[Any]:
    """``server_process(h2_file=None, port=None)``: start a test server of this test's own (module doc)."""
    started: list[ServerProcess] = []

    def start(h2_file: str | os.PathLike | None = None, port: int | None = None) -> ServerProcess:
        reasons = []
        if not shutil.which("java"):
            reasons.append("java is not on PATH")
        if not installed(h2=h2_file is not None):
            reasons.append(f"{LIB_DIR.relative_to(REPO)} lacks the mongo-java-server"
                           f"{' H2 backend' if h2_file is not None else ''} jar (re-run scripts/install-test-server)")
        if reasons:
            _no_server("; ".join(reasons))
        server = ServerProcess(port=port, h2_file=h2_file, log_dir=tmp_path / f"server{len(started)}")
        started.append(server)
        try:
            return server.start()
        except ServerStartError as e:
            pytest.fail(str(e), pytrace=False)
            raise AssertionError("unreachable") from e

    try:
        yield start
    finally:
        for server in started:
            server.close()
