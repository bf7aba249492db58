"""Helpers for tests that run drivers and workers as separate OS processes, each with a deadline.

- :func:`worker_cmd` / :class:`Procs.worker` start ``bin/hpo-mongo-worker`` (short poll interval);
- :meth:`Procs.python` runs a python snippet (a driver, a claimer) as its own process;
- :meth:`Procs.wait` waits for them with a deadline; on timeout every process is killed and the
  assertion shows each one's output. ``with Procs(tmp_path) as procs:`` kills leftovers on exit.
- objectives used by worker processes live here (importable as ``tests.helpers_distributed``:
  the processes get the repository root on ``PYTHONPATH``).
"""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Sequence

import pymongo

REPO = Path(__file__).resolve().parents[1]
WORKER_SCRIPT = REPO / "bin" / "hpo-mongo-worker"
#: poll interval used by workers in tests (≤ 0.1 s keeps the suite fast)
TEST_POLL = 0.05


#: first lines of a child script that needs only the store modules: registers the ``hpo_mongo``
#: package without running its ``__init__`` (which imports every algorithm, and scipy), so six
#: processes start in a fraction of the time. Drivers and workers import the real package.
LIGHT_IMPORT = (
    "import sys, types, pathlib\n"
    f"_pkg = types.ModuleType('hpo_mongo'); _pkg.__path__ = [{str(REPO / 'hpo_mongo')!r}]\n"
    "sys.modules.setdefault('hpo_mongo', _pkg)\n"
)


#: a driver process, ``DRIVER_SCRIPT url exp_key n sleep``: fmin of (x - 1)^2 after ``sleep`` seconds
#: over x ~ U(-5, 5) with rand.suggest (seed 0, max_queue_len 2); at the end it prints
#: ``DRIVER DONE [[tid, state, x], ...]`` (its trials, as it sees them)
DRIVER_SCRIPT = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    from hpo_mongo import fmin, hp, rand
    from hpo_mongo.trials.mongo.store import MongoTrials

    def objective(cfg):
        time.sleep(float(sys.argv[4]))
        return (cfg["x"] - 1.0) ** 2

    url, exp_key, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    trials = MongoTrials(url, exp_key=exp_key, poll_interval=0.05)
    fmin(objective, {"x": hp.uniform("x", -5, 5)}, algo=rand.suggest, max_evals=n, trials=trials,
         show_progressbar=False, rstate=np.random.default_rng(0), max_queue_len=2)
    print("DRIVER DONE " + json.dumps([[t["tid"], t["state"], t["misc"]["vals"]["x"][0]] for t in trials]),
          flush=True)
""")


def child_env(extra: dict[str, str] | None = None, pythonpath: Sequence[str | os.PathLike] = ()) -> dict[str, str]:
    """The environment for a child: the repo root (and ``pythonpath``) first on PYTHONPATH."""
    env = dict(os.environ)
    env.pop("HPO_MONGO_URL", None)  # a test names its server and secret explicitly
    env.pop("HPO_MONGO_SECRET", None)
    parts = [str(p) for p in pythonpath] + [str(REPO)]
    if env.get("PYTHONPATH"):
        parts.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def worker_cmd(url: str, *flags: str, poll: float = TEST_POLL) -> list[str]:
    """The command line of an ``hpo-mongo-worker`` process on ``url``."""
    return [sys.executable, str(WORKER_SCRIPT), "--mongo", url, "--poll-interval", str(poll), *flags]


class Proc:
    """A started child process with its output captured in a file."""

    def __init__(self, name: str, popen: subprocess.Popen, log: Path):
        self.name, self.popen, self.log = name, popen, log

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def signal(self, sig: int = signal.SIGTERM) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    send_signal = signal

    def poll(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float | None = None) -> int:
        """The exit code; ``subprocess.TimeoutExpired`` if it runs longer than ``timeout``."""
        return self.popen.wait(timeout)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait()


def _default_signals() -> None:  # pragma: no cover - runs in the child before exec
    """A child starts with SIGINT and SIGTERM at their defaults, as from an interactive shell, even when
    the test run itself was started in the background (which ignores SIGINT)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


class Procs:
    """A group of child processes (``with Procs(tmp_path) as procs:``); leftovers are killed on exit."""

    def __init__(self, tmp_path: Path):
        self.dir = Path(tmp_path)
        self.procs: list[Proc] = []

    def __enter__(self) -> "Procs":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.kill_all()

    def start(self, name: str, cmd: Sequence[str], *, env: dict[str, str] | None = None,
              cwd: str | os.PathLike | None = None, pythonpath: Sequence[str | os.PathLike] = ()) -> Proc:
        log = self.dir / f"{name}.{len(self.procs)}.log"
        fh = open(log, "wb")
        try:
            popen = subprocess.Popen(list(cmd), stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=child_env(env, pythonpath), cwd=str(cwd or self.dir),
                                     preexec_fn=_default_signals)
        finally:
            fh.close()
        p = Proc(name, popen, log)
        self.procs.append(p)
        return p

    def worker(self, url: str, *flags: str, name: str = "worker", poll: float = TEST_POLL,
               exp_key: str | None = None, secret: str | None = None, **kw: Any) -> Proc:
        """Start ``hpo-mongo-worker --mongo url --poll-interval poll [--exp-key K] *flags`` (with
        ``HPO_MONGO_SECRET=secret`` when given)."""
        if exp_key is not None:
            flags = ("--exp-key", exp_key, *flags)
        if secret is not None:
            kw["env"] = {**(kw.get("env") or {}), "HPO_MONGO_SECRET": secret}
        return self.start(name, worker_cmd(url, *flags, poll=poll), **kw)

    def log(self, p: Proc) -> str:
        """The output of ``p`` so far."""
        return p.output()

    def python(self, code: str, *args: str, name: str = "python", **kw: Any) -> Proc:
        """Run a python snippet (dedented) as its own process; ``sys.argv[1:]`` = ``args``."""
        script = self.dir / f"{name}.{len(self.procs)}.py"
        script.write_text(textwrap.dedent(code))
        return self.start(name, [sys.executable, str(script), *args], **kw)

    def wait(self, procs: Sequence[Proc] | None = None, timeout: float = 30.0) -> list[int]:
        """Wait for ``procs`` (default: all) to exit; return their exit codes.

        On timeout every process of the group is killed and an AssertionError shows their output.
        """
        procs = list(self.procs if procs is None else procs)
        deadline = time.monotonic() + timeout
        for p in procs:
            left = deadline - time.monotonic()
            try:
                p.popen.wait(timeout=max(0.01, left))
            except subprocess.TimeoutExpired:
                self.kill_all()
                raise AssertionError(f"{p.name} (pid {p.pid}) still running after {timeout}s;\n"
                                     + self.report()) from None
        return [p.popen.returncode for p in procs]

    def kill_all(self) -> None:
        for p in self.procs:
            p.kill()

    def report(self, tail: int = 3000) -> str:
        """Every process's exit code and the end of its output (for assertion messages)."""
        out = []
        for p in self.procs:
            out.append(f"--- {p.name} pid={p.pid} rc={p.returncode}\n{p.output()[-tail:]}")
        return "\n".join(out)


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02, what: str = "condition") -> Any:
    """Poll ``predicate()`` until truthy (returned) or raise AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except pymongo.errors.OperationFailure:  # mongo-java-server: a query racing an index build
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def process_gone(pid: int) -> bool:
    """The process no longer exists, or is a zombie (killed, waiting for init to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


# ----------------------------------------------------------------------------- objectives
# Worker processes import these by reference (module tests.helpers_distributed).
def quadratic(params: dict) -> float:
    """(x - 1)^2 (+ y^2 when the space has y)."""
    return (params["x"] - 1.0) ** 2 + params.get("y", 0.0) ** 2


def fails_below_zero(params: dict) -> float:
    """Raises ValueError for x < 0; else x^2."""
    if params["x"] < 0:
        raise ValueError(f"x={params['x']:.3f} is negative")
    return params["x"] ** 2


def always_fails(params: dict) -> float:
    raise RuntimeError("objective exploded")


def tagged(params: dict) -> dict:
    """Returns the loss plus the pid of the evaluating process (to see who evaluated what)."""
    return {"loss": float(params["x"]) ** 2, "status": "ok", "pid": os.getpid()}


def learning_curve(params: dict) -> float:
    """Reports (x - 1)^2 + 1/step at steps 1..10 (a short sleep each, so that workers interleave);
    returns the last value. Pruning tests use it with fmin(pruner=...)."""
    from hpo_mongo import report
    value = math.inf
    for step in range(1, 11):
        time.sleep(0.003)
        value = (params["x"] - 1.0) ** 2 + 1.0 / step
        report(value, step)
    return value
