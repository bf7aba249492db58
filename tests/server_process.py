"""The mongo-java-server test server as a process you start, stop, kill and restart on one port.

    server = ServerProcess(h2_file=tmp_path / "db.mv").start()   # persistent (H2 backend)
    url = server.url                                             # mongodb://127.0.0.1:PORT
    server.restart()          # SIGTERM (H2 writes its file), then a new server on the same port
    server.restart(kill=True) # SIGKILL: the memory backend loses everything, H2 its last writes
    server.stop()

Without ``h2_file`` the server keeps its state in memory. The port is the one given, else the one
the first start picked; every restart binds it again. The server exits with the process that
started it (``--exit-on-stdin-eof``), even if that one is killed. Standard library only, so the
benchmarks in bench/ use it too (tests/mongo_server.py builds its fixtures on it).
"""
from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any

__all__ = ["ServerProcess", "ServerStartError", "REPO", "LIB_DIR", "LAUNCHER", "STARTUP_TIMEOUT",
           "compiled_launcher", "end_process", "installed", "ping", "read_ready_line", "tail"]

REPO = Path(__file__).resolve().parent.parent
SERVER_DIR = REPO / "tests" / "server"
LIB_DIR = SERVER_DIR / "lib"
LAUNCHER = SERVER_DIR / "Launcher.java"
#: where :func:`compiled_launcher` puts Launcher.class (git-ignored)
CLASSES_DIR = SERVER_DIR / "target" / "classes"

#: seconds allowed for a server to start (the source launcher compiles itself first)
STARTUP_TIMEOUT = float(os.environ.get("HPO_MONGO_TEST_STARTUP_TIMEOUT", "90"))


class ServerStartError(RuntimeError):
    """The test server did not start; the message has its command line and the end of its log."""


def installed(h2: bool = False) -> bool:
    """Whether scripts/install-test-server has put the server's jars (and the H2 backend) in place."""
    pattern = "mongo-java-server-h2-backend-*.jar" if h2 else "mongo-java-server-*.jar"
    return any(LIB_DIR.glob(pattern))


def ping(url: str, timeout: float) -> None:
    """Raise unless the server at ``url`` answers ``ping`` within ``timeout`` seconds."""
    import pymongo
    ms = max(100, int(timeout * 1000))
    client: Any = pymongo.MongoClient(url, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms)
    try:
        client.admin.command("ping")
    finally:
        client.close()


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file ("" if unreadable)."""
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def end_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
    """Send ``sig`` and wait up to ``timeout`` s (then SIGKILL); close the pipes. Returns the exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    return proc.returncode


def compiled_launcher(java: str) -> Path | None:
    """The directory of a compiled Launcher.class no older than Launcher.java (compiled now if
    needed), or None without ``javac``: then the source launcher compiles it at every start."""
    target = CLASSES_DIR / "Launcher.class"
    try:
        if target.stat().st_mtime >= LAUNCHER.stat().st_mtime:
            return CLASSES_DIR
    except OSError:
        pass
    javac = shutil.which("javac", path=os.path.dirname(java) or None) or shutil.which("javac")
    if javac is None:
        return None
    tmp = CLASSES_DIR.parent / f"classes.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    done = subprocess.run([javac, "-nowarn", "-cp", str(LIB_DIR / "*"), "-d", str(tmp), str(LAUNCHER)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if done.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        return None
    shutil.rmtree(CLASSES_DIR, ignore_errors=True)
    with contextlib.suppress(OSError):  # another process may have put its copy in place first
        os.replace(tmp, CLASSES_DIR)
    shutil.rmtree(tmp, ignore_errors=True)
    return CLASSES_DIR if (CLASSES_DIR / "Launcher.class").exists() else None


def read_ready_line(stdout: IO[str], deadline: float) -> str | None:
    """The launcher's ``ready mongodb://...`` URL, or None if it exits or the deadline passes.

    Keeps draining ``stdout`` for the whole life of the process (a full pipe would block it).
    """
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, name="mongo-test-server-stdout", daemon=True).start()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            return None
        if line is None:
            return None
        if line.startswith("ready mongodb://"):
            return line.split(None, 1)[1].strip()


class ServerProcess:
    """One mongo-java-server process on a fixed port (see the module docstring)."""

    def __init__(self, port: int | None = None, h2_file: str | os.PathLike | None = None,
                 log_dir: str | os.PathLike | None = None, java: str | None = None):
        self.port = int(port) if port else None
        self.h2_file = Path(h2_file) if h2_file is not None else None
        self._own_dir = log_dir is None
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.java = java or shutil.which("java") or "java"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    # ------------------------------------------------------------------ state
    @property
    def url(self) -> str:
        """``mongodb://127.0.0.1:PORT`` (known once started)."""
        if self.port is None:
            raise RuntimeError("the server has not been started yet: its port is unknown")
        return f"mongodb://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def log(self) -> Path:
        assert self.log_dir is not None
        return self.log_dir / "server.log"

    def command(self) -> list[str]:
        classes = compiled_launcher(self.java)
        if classes is not None:  # saves the source launcher's compilation at every (re)start
            cmd = [self.java, "-cp", os.pathsep.join([str(LIB_DIR / "*"), str(classes)]), "Launcher"]
        else:
            cmd = [self.java, "-cp", str(LIB_DIR / "*"), str(LAUNCHER)]
        cmd += [str(self.port or 0), "--exit-on-stdin-eof"]
        if self.h2_file is not None:
            cmd += ["--h2", str(self.h2_file)]
        return cmd

    # ------------------------------------------------------------------ control
    def start(self, timeout: float = STARTUP_TIMEOUT) -> "ServerProcess":
        """Start the server and wait until it answers ``ping``; raises :class:`ServerStartError`.

        A port just released (the previous server on it was killed) may take a moment to be
        free again: the start is retried until ``timeout``.
        """
        if self.running:
            raise RuntimeError(f"the server on port {self.port} is already running")
        if self.log_dir is None:
            import tempfile
            self.log_dir = Path(tempfile.mkdtemp(prefix="hpo_mongo_java_server_"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        while True:
            problem = self._start_once(deadline)
            if problem is None:
                self.starts += 1
                return self
            if time.monotonic() >= deadline or "cannot listen" not in problem:
                raise ServerStartError(problem)
            time.sleep(0.2)

    def _start_once(self, deadline: float) -> str | None:
        cmd = self.command()
        with open(self.log, "ab") as err:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                    text=True, cwd=str(REPO))
        self.proc = proc
        assert proc.stdout is not None
        url = read_ready_line(proc.stdout, deadline)
        if url is None:
            self._end(signal.SIGTERM)
            return (f"the mongo-java-server test server did not start (exit code {proc.returncode}); "
                    f"command: {' '.join(cmd)}\n{tail(self.log)}")
        self.port = int(url.rsplit(":", 1)[1])
        try:
            ping(url, timeout=max(1.0, deadline - time.monotonic()))
        except Exception as e:  # noqa: BLE001 - reported with the log
            self._end(signal.SIGTERM)
            return f"the test server at {url} does not answer ping: {e}\n{tail(self.log)}"
        return None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait: a clean stop (an H2 server writes its file). Returns the exit code."""
        return self._end(signal.SIGTERM, timeout)

    def kill(self) -> int | None:
        """SIGKILL: the memory backend loses everything, the H2 backend its last writes."""
        return self._end(signal.SIGKILL)

    def restart(self, *, kill: bool = False, down: float = 0.0, timeout: float = STARTUP_TIMEOUT) -> "ServerProcess":
        """Stop (SIGTERM, or SIGKILL with ``kill``), stay down ``down`` seconds, start on the same port."""
        if kill:
            self.kill()
        else:
            self.stop()
        if down > 0:
            time.sleep(down)
        return self.start(timeout)

    def _end(self, sig: int, timeout: float = 30.0) -> int | None:
        return None if self.proc is None else end_process(self.proc, sig, timeout)

    def close(self) -> None:
        """Stop the server and remove the log directory it created (never the H2 file's)."""
        self.stop()
        if self._own_dir and self.log_dir is not None:
            shutil.rmtree(self.log_dir, ignore_errors=True)

    def __enter__(self) -> "ServerProcess":
        return self if self.running else self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()
