"""Evaluate one trial: in a forked child process (default) or in-process (``--no-subprocess``).

Subprocess mode forks the worker with multiprocessing's ``fork`` context. The domain was unpickled
once in the worker, so the child inherits it (copy-on-write). The next trial's child is forked
ahead, while the worker claims (:meth:`Executor.prepare`), and waits on its pipe: a trial of the
same domain costs one pipe message to start and one to return (see bench/RESULTS.md); a trial of
another domain (a worker serving several experiments) gets a child forked with it. Every trial
runs in a fresh process. The child evaluates the objective, applies the result
rules (``Domain.evaluate``) and sends its :class:`Outcome` back over the trial's pipe, then exits,
so whatever the objective allocated (including GPU memory: do not initialise CUDA in the worker
itself, only in the objective) is released between trials. While it runs, the objective's ctrl
requests (a checkpoint, reading the trial's attachments, ``ctrl.trials``) travel over the same
pipe and the worker answers them (:class:`TrialCtrl`): the child never uses the worker's
connection to the store. So do its intermediate reports: a ctrl's :attr:`CollectingCtrl.reporter`
is made current for the evaluation (``hpo_mongo.report()`` works inside the objective), and a
pruned trial ends DONE with its pruned result.

What can go wrong in the child and how it is recorded (``Outcome.state`` ERROR):

- the objective raises → ``error = {type, message, traceback}``;
- the child dies (``os._exit``, a segfault in native code, the OOM killer) → ``type "WorkerCrash"``,
  "the objective's process died (exit code -11 / SIGSEGV ...)"; the worker survives;
- it runs longer than ``timeout`` → the child is killed, ``type "Timeout"``, "timeout: trial exceeded N s";
- the outcome cannot be stored (``check``, e.g. :func:`hpo_mongo.trials.mongo.jobs.check_storable`, run
  where the objective ran, before reporting) → ``error`` naming the offending key and type.

Each child runs in its own session and process group (``os.setsid``), so the processes an objective
starts (a training script, ``subprocess.Popen``) belong to the trial: on a timeout, a cancel, a crash
and after the trial ended, the whole group gets SIGTERM, then SIGKILL after :data:`KILL_GRACE`
seconds (:func:`end_trial_processes`); no process of a trial outlives it. In-process evaluation
(``--no-subprocess``) shares the worker's process group: there the objective must end what it starts.

``Executor.release()`` (or setting ``cancel_event``) ends the running child at once; the outcome is
then ``cancelled`` and the caller gives the trial back (state NEW).
"""
from __future__ import annotations

import abc
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

from ..reporting import Reporter, evaluate_trial
from ..results import error_info, error_result
from ..trials.documents import JOB_STATE_DONE, JOB_STATE_ERROR

logger = logging.getLogger("hpo_mongo.worker")

_WAIT_SLICE = 0.05  # how often a waiting parent checks the cancel event
#: seconds the processes of a trial get between SIGTERM and SIGKILL
KILL_GRACE = 2.0
_SIGNAL_HINTS = {
    signal.SIGSEGV: "segmentation fault in native code",
    signal.SIGKILL: "killed; the kernel's out-of-memory killer sends SIGKILL",
    signal.SIGABRT: "aborted by native code",
    signal.SIGBUS: "bus error in native code",
    signal.SIGFPE: "floating point exception in native code",
    signal.SIGILL: "illegal instruction in native code",
    signal.SIGTERM: "terminated",
}


@dataclass
class Outcome:
    """What became of one evaluation.

    ``state`` is JOB_STATE_DONE (``result`` normalized by the result rules, ``attachments`` split
    off) or JOB_STATE_ERROR (``error`` = {type, message, traceback}; ``result`` = {status: "fail",
    failure: "<type>: <message>"}), or ``None`` when the evaluation was cancelled (``cancelled``).
    """

    state: int | None
    result: dict = field(default_factory=dict)
    attachments: dict = field(default_factory=dict)
    error: dict | None = None
    duration: float = 0.0

    @property
    def cancelled(self) -> bool:
        return self.state is None

    @classmethod
    def failed(cls, error: dict, duration: float = 0.0, attachments: Mapping[str, Any] | None = None) -> "Outcome":
        """An ERROR outcome for ``error`` (``{type, message, traceback}``)."""
        return cls(JOB_STATE_ERROR, error_result(error), dict(attachments or {}), error, duration)

    @classmethod
    def from_exception(cls, exc: BaseException, duration: float = 0.0) -> "Outcome":
        """An ERROR outcome for an exception (its type, message and traceback)."""
        return cls.failed(error_info(exc), duration)


def crash_message(exitcode: int | None) -> str:
    """Human description of a child that died without sending a result."""
    if exitcode is None:
        return "the objective's process died without reporting a result"
    if exitcode < 0:
        try:
            sig = signal.Signals(-exitcode)
            name, hint = sig.name, _SIGNAL_HINTS.get(sig, "")
        except ValueError:
            name, hint = f"signal {-exitcode}", ""
        return (f"the objective's process died (exit code {exitcode} / {name}"
                f"{': ' + hint if hint else ''}) before returning a result")
    return (f"the objective's process exited with code {exitcode} (os._exit or exit() from native code?) "
            f"before returning a result")


@contextlib.contextmanager
def working_dir(workdir: str | None):
    """Run the block in ``workdir`` (created if missing); no-op when it is None or empty."""
    if not workdir:
        yield
        return
    os.makedirs(workdir, exist_ok=True)
    old = os.getcwd()
    os.chdir(workdir)
    try:
        yield
    finally:
        os.chdir(old)


class _InProcessTimeout(BaseException):
    """Raised into an in-process objective by SIGALRM (a BaseException: ``except Exception`` in the
    objective does not swallow it)."""


class _Fired:
    """Truthy once the in-process alarm went off."""

    def __init__(self) -> None:
        self.value = False

    def __bool__(self) -> bool:
        return self.value


@contextlib.contextmanager
def _alarm(timeout: float | None):
    """In-process ``--trial-timeout``: SIGALRM interrupts Python code after ``timeout`` seconds.

    Only in the main thread on POSIX; native code that never returns to the interpreter cannot be
    interrupted this way (use the default forked child for that).
    """
    fired = _Fired()
    if not timeout or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield fired
        return

    def on_alarm(signum, frame):
        fired.value = True
        raise _InProcessTimeout()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        yield fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class CollectingCtrl(abc.ABC):
    """A ``ctrl`` that keeps what the objective attaches during the evaluation: the executor
    collects it where the objective ran and returns it with the outcome."""

    @abc.abstractmethod
    def collected_attachments(self) -> dict[str, Any]:
        """``{name: value}`` the objective wrote to ``ctrl.attachments`` during this evaluation."""

    @property
    def reporter(self) -> Reporter | None:
        """The trial's :class:`~hpo_mongo.reporting.Reporter`, current while the objective runs
        (None: ``report()`` raises NoCurrentTrial)."""
        return None


class TrialChannel:
    """The child's end of the trial pipe: one request, one reply (answered by :meth:`TrialCtrl.answer`)."""

    def __init__(self, conn: Any):
        self.conn = conn

    def call(self, name: str, *args: Any) -> Any:
        self.conn.send(("call", name, args))
        kind, value = self.conn.recv()
        if kind == "error":
            raise value
        return value


#: builds the child's ctrl from its end of the trial pipe (picklable: it reaches a child forked ahead over the pipe)
ChildCtrlFactory = Callable[[TrialChannel], CollectingCtrl]


class TrialCtrl(CollectingCtrl):
    """A ``ctrl`` living in the worker (``hpo_mongo.worker.ctrl.WorkerCtrl``): in a forked child the
    objective gets the ctrl :meth:`child_ctrl_factory` builds instead, whose requests the worker
    answers (:meth:`answer`) while it waits for the outcome."""

    @abc.abstractmethod
    def child_ctrl_factory(self) -> ChildCtrlFactory:
        """A picklable callable making the child's ctrl from a :class:`TrialChannel`
        (``channel.call(name, *args)`` sends a request and returns the reply)."""

    @abc.abstractmethod
    def answer(self, name: str, args: tuple) -> Any:
        """Answer one request of the child; an exception raised here is raised in the child."""


#: ``check(result, attachments)`` raises when the outcome cannot be recorded (names the problem)
OutcomeCheck = Callable[[Mapping[str, Any], Mapping[str, Any]], None]


def _collected(ctrl: Any) -> dict[str, Any]:
    return ctrl.collected_attachments() if isinstance(ctrl, CollectingCtrl) else {}


def _run_objective(domain: Any, vals: Mapping, ctrl: Any) -> tuple[dict, dict]:
    """``domain.evaluate``, with the ctrl's reporter current when it has one (a TrialPruned from
    the objective then becomes the pruned result)."""
    reporter = ctrl.reporter if isinstance(ctrl, CollectingCtrl) else None
    if reporter is None:
        return domain.evaluate(vals, ctrl)
    return evaluate_trial(domain, vals, ctrl, reporter)


def _evaluate(domain: Any, vals: Mapping, ctrl: Any, check: OutcomeCheck | None = None) -> Outcome:
    """Evaluate once: DONE with the result and the attachments (the ctrl's plus the result's, the
    result's win), or ERROR with the exception (keeping what the objective attached, unless
    ``check`` refuses it). Never raises: SystemExit and KeyboardInterrupt fail the trial too."""
    t0 = time.monotonic()
    try:
        result, attachments = _run_objective(domain, vals, ctrl)
        attachments = {**_collected(ctrl), **attachments}
        if check is not None:
            check(result, attachments)
        return Outcome(JOB_STATE_DONE, result, attachments, None, time.monotonic() - t0)
    except BaseException as e:  # noqa: BLE001 - SystemExit/KeyboardInterrupt in the objective fail the trial
        info = error_info(e)
    attachments = _collected(ctrl)
    if check is not None and attachments:
        try:
            check({}, attachments)
        except Exception:  # noqa: BLE001 - the error is the outcome; unstorable attachments go
            attachments = {}
    return Outcome.failed(info, time.monotonic() - t0, attachments)


def _load_libc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes
        return ctypes.CDLL(None, use_errno=True)
    except Exception:  # noqa: BLE001
        return None


_LIBC = _load_libc()  # loaded once in the worker; forked children inherit it


def _die_with_parent() -> None:
    """Linux: the child gets SIGKILL if the worker dies (kill -9), instead of running on as an orphan."""
    libc = _LIBC
    if libc is None:
        return
    try:
        parent = os.getppid()
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the worker died before prctl took effect
            os._exit(1)
    except Exception:  # noqa: BLE001 - best effort
        pass


def _child_setup() -> None:
    """The child's own session and process group (ended as a whole: :func:`end_trial_processes`),
    death with the worker, default SIGTERM; SIGINT ignored (the worker decides what a Ctrl-C means)."""
    os.setsid()
    _die_with_parent()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _child_main(domain: Any, conn: Any, check: OutcomeCheck | None = None, job: tuple | None = None,
                worker_end: Any = None) -> None:
    """Runs in the forked child: evaluate one trial, send the outcome, exit without running the
    parent's atexit hooks. ``job`` is ``(vals, ctrl, workdir)`` for a child forked with its trial;
    a child forked ahead (``job`` None) waits for ``("run", vals, ctrl factory, workdir)`` on the
    pipe, acknowledges it with ``("started",)``, and exits quietly at EOF (no trial came): the
    worker's end of the pipe (``worker_end``), inherited by the fork, is closed here for that."""
    code = 0
    try:
        if worker_end is not None:
            worker_end.close()
        _child_setup()
        if job is None:
            try:
                _, vals, make_ctrl, workdir = conn.recv()
            except EOFError:
                return
            conn.send(("started",))
            ctrl = make_ctrl(TrialChannel(conn)) if make_ctrl is not None else None
        else:
            vals, ctrl, workdir = job
            if isinstance(ctrl, TrialCtrl):  # requests go to the worker over the pipe, never through its client
                ctrl = ctrl.child_ctrl_factory()(TrialChannel(conn))
        with working_dir(workdir):
            outcome = _evaluate(domain, vals, ctrl, check)
        try:
            conn.send(("outcome", outcome))
        except Exception as e:  # noqa: BLE001 - e.g. an unpicklable value in the result
            conn.send(("outcome", Outcome.failed({
                "type": "InvalidResultError",
                "message": f"the result could not be sent back to the worker: {type(e).__name__}: {e}",
                "traceback": traceback.format_exc()}, outcome.duration)))
    except BaseException:  # noqa: BLE001
        code = 1
        with contextlib.suppress(Exception):
            traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            conn.close()
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


@dataclass
class _Child:
    """A forked child and the worker's end of its pipe; ``domain`` is the one it inherited."""

    proc: Any
    conn: Any
    domain: Any


class _DiedWaiting(Exception):
    """A child forked ahead died before it took its trial (the trial then gets a fresh child)."""


class Executor:
    """Runs trials one at a time; :meth:`release` stops the running one (from any thread).

    ``check(result, attachments)`` (optional) runs where the objective ran, before the outcome is
    returned: when it raises, the trial is an error naming the problem (e.g. a value MongoDB
    cannot store) instead of failing later in the worker.

    With ``prefork`` (the default in subprocess mode), :meth:`prepare` forks the next trial's child
    ahead of its trial: it inherits the domain of the last trial and waits on its pipe, so a trial
    of the same domain starts with one pipe message instead of a fork (the fork and the child's
    start-up are off the trial's clock). Every trial still gets a fresh process that exits after it.
    """

    def __init__(self, subprocess: bool = True, timeout: float | None = None, *,
                 check: OutcomeCheck | None = None, kill_grace: float = KILL_GRACE, prefork: bool = True):
        self.subprocess = subprocess
        self.timeout = timeout
        self.check = check
        self.kill_grace = kill_grace
        self.prefork = bool(prefork and subprocess)
        self._cancel = threading.Event()
        self._proc: Any = None
        self._lock = threading.Lock()
        self._enders: list[threading.Thread] = []  # end the processes of finished trials, off the clock
        self._spare: _Child | None = None          # forked ahead, waiting for its trial
        self._last_domain: Any = None

    # ------------------------------------------------------------------ control
    def release(self) -> None:
        """Stop the running evaluation now (its outcome is ``cancelled``). No-op when idle.

        The trial's processes get SIGTERM here; the thread running the trial escalates to SIGKILL.
        In-process evaluations cannot be interrupted; the flag only marks their outcome cancelled.
        """
        self._cancel.set()
        with self._lock:
            proc = self._proc
        if proc is not None:
            _signal_trial(proc, signal.SIGTERM)

    def prepare(self) -> None:
        """Fork the next trial's child now, for the domain of the last trial (no-op without
        ``prefork``, before a first trial, or when one is waiting already)."""
        if self.prefork and self._spare is None and self._last_domain is not None:
            self._spare = self._fork(self._last_domain, None)

    # ------------------------------------------------------------------ running
    def run(self, domain: Any, vals: Mapping, *, ctrl: Any = None, workdir: str | None = None,
            cancel_event: threading.Event | None = None, timeout: float | None = None) -> Outcome:
        self._cancel.clear()
        self._enders = [t for t in self._enders if t.is_alive()]
        timeout = self.timeout if timeout is None else timeout
        if not self.subprocess:
            return self._run_inprocess(domain, vals, ctrl, workdir, cancel_event, timeout)
        self._last_domain = domain
        spare = self._take_spare(domain)
        if spare is not None:
            factory = ctrl.child_ctrl_factory() if isinstance(ctrl, TrialCtrl) else None
            try:
                spare.conn.send(("run", vals, factory, workdir))
            except Exception as e:  # noqa: BLE001 - it died waiting, or the job does not pickle: fork with the trial
                logger.debug("the child forked ahead cannot take the trial (%s); forking one with it", e)
                self._end(spare, finished=False)
            else:
                try:
                    return self._wait(spare, ctrl, cancel_event, timeout, started=False)
                except _DiedWaiting as e:
                    logger.warning("the child forked ahead for the trial died before it started (%s); "
                                   "forking a new one", e)
        return self._wait(self._fork(domain, (vals, ctrl, workdir)), ctrl, cancel_event, timeout, started=True)

    def close(self) -> None:
        """End the child waiting for a trial, and wait until the processes of every trial are
        ended (call when the worker stops)."""
        spare, self._spare = self._spare, None
        if spare is not None:
            self._end(spare, finished=True)
        while self._enders:
            self._enders.pop().join(self.kill_grace + 6.0)

    def _cancelled(self, cancel_event: threading.Event | None) -> bool:
        return self._cancel.is_set() or (cancel_event is not None and cancel_event.is_set())

    def _run_inprocess(self, domain, vals, ctrl, workdir, cancel_event, timeout=None) -> Outcome:
        with working_dir(workdir), _alarm(timeout) as fired, _interrupts() as interrupted:
            outcome = _evaluate(domain, vals, ctrl, self.check)
        if fired:
            msg = f"timeout: trial exceeded {timeout:g} s"
            return Outcome.failed({"type": "Timeout", "message": msg,
                                   "traceback": (outcome.error or {}).get("traceback", "")}, outcome.duration)
        if interrupted:
            # a real Ctrl-C (SIGINT) is for the worker; one the objective raised fails the trial
            raise KeyboardInterrupt
        if self._cancelled(cancel_event):
            return Outcome(None, duration=outcome.duration)
        return outcome

    # ------------------------------------------------------------------ children
    def _fork(self, domain: Any, job: tuple | None) -> _Child:
        ctx = multiprocessing.get_context("fork")
        mine, theirs = ctx.Pipe(duplex=True)
        proc = ctx.Process(target=_child_main, args=(domain, theirs, self.check, job, mine), daemon=True,
                           name="hpo-mongo-trial")
        proc.start()
        theirs.close()
        return _Child(proc, mine, domain)

    def _take_spare(self, domain: Any) -> _Child | None:
        """The child forked ahead if it inherited ``domain`` (one for another domain is ended)."""
        spare, self._spare = self._spare, None
        if spare is not None and spare.domain is not domain:
            self._end(spare, finished=True)
            return None
        return spare

    def _end(self, child: _Child, finished: bool) -> None:
        """End ``child``'s processes: off the clock when it ``finished`` (sent its outcome, or was
        told to exit by closing its pipe), now otherwise (cancelled, timed out, crashed)."""
        with contextlib.suppress(Exception):
            child.conn.close()
        if finished:
            ender = threading.Thread(target=_end_finished_trial, args=(child.proc, self.kill_grace), daemon=True,
                                     name="hpo-mongo-trial-end")
            ender.start()
            self._enders.append(ender)
        else:
            end_trial_processes(child.proc, self.kill_grace)

    def _wait(self, child: _Child, ctrl: Any, cancel_event: threading.Event | None, timeout: float | None,
              started: bool) -> Outcome:
        """Serve the child's requests until its outcome arrives (or it dies, times out, is cancelled).
        Raises :class:`_DiedWaiting` when a child forked ahead dies before acknowledging its trial."""
        proc, conn = child.proc, child.conn
        t0 = time.monotonic()
        with self._lock:
            self._proc = proc
        deadline = None if not timeout else t0 + timeout
        message = None
        try:
            while True:
                if self._cancelled(cancel_event):
                    return Outcome(None, duration=time.monotonic() - t0)
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    _signal_trial(proc, signal.SIGTERM)
                    if conn.poll():  # finished at the very last moment
                        message = _recv(conn)
                        if message is not None and message[0] == "outcome":
                            break
                        message = None
                    msg = f"timeout: trial exceeded {timeout:g} s"
                    return Outcome.failed({"type": "Timeout", "message": msg, "traceback": ""}, time.monotonic() - t0)
                wait = _WAIT_SLICE if deadline is None else max(0.0, min(_WAIT_SLICE, deadline - now))
                ready = multiprocessing.connection.wait([conn, proc.sentinel], timeout=wait)
                if conn in ready:
                    message = _recv(conn)
                    if message == ("started",):
                        started, message = True, None
                        continue
                    if _answered(message, ctrl, conn):
                        message = None
                        continue
                    break  # the outcome, or EOF: the child is gone
                if proc.sentinel in ready:
                    message = _recv(conn) if conn.poll() else None
                    while message == ("started",) or _answered(message, ctrl, conn):  # a last request, then EOF
                        started = True
                        message = _recv(conn) if conn.poll() else None
                    break
            dt = time.monotonic() - t0
            if message is None:
                proc.join(5)
                if not started:
                    raise _DiedWaiting(crash_message(proc.exitcode))
                if self._cancelled(cancel_event):
                    return Outcome(None, duration=dt)
                return Outcome.failed({"type": "WorkerCrash", "message": crash_message(proc.exitcode),
                                       "traceback": ""}, dt)
            outcome = message[1]
            outcome.duration = dt
            return outcome
        finally:
            with self._lock:
                self._proc = None
            self._end(child, finished=message is not None)


@contextlib.contextmanager
def _interrupts():
    """Tell a real SIGINT apart from a KeyboardInterrupt the objective raises itself: while Python's
    default SIGINT handler is in place (no worker signal handling installed), a SIGINT during the
    block is recorded before the KeyboardInterrupt is raised. Yields a truthy-once-interrupted flag."""
    flag = _Fired()
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield flag  # the worker's own handler (or none) deals with SIGINT: it never raises here
        return

    def on_sigint(signum, frame):
        flag.value = True
        signal.default_int_handler(signum, frame)

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _recv(conn: Any) -> Any:
    """The next message from the child (``("outcome", Outcome)`` or ``("call", name, args)``), None at EOF."""
    try:
        return conn.recv()
    except (EOFError, OSError):
        return None
    except Exception as e:  # noqa: BLE001 - e.g. the result references a class the parent cannot import
        return ("outcome", Outcome.failed({
            "type": "InvalidResultError",
            "message": f"the result could not be read by the worker: {type(e).__name__}: {e}",
            "traceback": traceback.format_exc()}))


def _answered(message: Any, ctrl: Any, conn: Any) -> bool:
    """If ``message`` is a request of the child, answer it (through the worker's ctrl) and say so."""
    if not (isinstance(message, tuple) and message and message[0] == "call"):
        return False
    _, name, args = message
    try:
        if not isinstance(ctrl, TrialCtrl):
            raise RuntimeError(f"this evaluation has no worker ctrl to answer {name!r}")
        reply: tuple = ("ok", ctrl.answer(name, args))
    except Exception as e:  # noqa: BLE001 - raised again in the child, where the objective called
        reply = ("error", e)
    try:
        conn.send(reply)
    except Exception as e:  # noqa: BLE001 - the reply (or the error) does not pickle
        with contextlib.suppress(Exception):
            conn.send(("error", RuntimeError(f"the worker could not send its answer to {name!r}: {e}")))
    return True


# ----------------------------------------------------------------------------- ending a trial's processes
def _signal_trial(proc: Any, sig: int) -> bool:
    """Send ``sig`` to the trial's process group (led by its child); False when nothing is left.

    A child that has not reached ``os.setsid`` yet has no group of its own: it gets the signal alone.
    """
    try:
        os.killpg(proc.pid, sig)
        return True
    except ProcessLookupError:
        pass
    except PermissionError:  # a member changed user: the group exists
        return True
    with contextlib.suppress(Exception):
        if proc.is_alive():
            os.kill(proc.pid, sig)
            return True
    return False


def _trial_alive(proc: Any) -> bool:
    """Whether the child (reaped here once it exited) or any process of its group is still there."""
    with contextlib.suppress(Exception):
        if proc.is_alive():
            return True
    _reap_orphans(proc.pid)
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return _live_members(proc.pid)


def process_table() -> Iterator[tuple[int, str, int, int]] | None:
    """``(pid, state, ppid, pgrp)`` of every process, read from Linux's ``/proc`` (state ``"Z"``:
    a zombie); None where there is no ``/proc``."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None

    def rows() -> Iterator[tuple[int, str, int, int]]:
        for entry in entries:
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    state, ppid, pgrp = f.read().rsplit(b")", 1)[1].split()[:3]
                yield int(entry), state.decode(), int(ppid), int(pgrp)
            except (OSError, ValueError):
                continue
    return rows()


def _live_members(pgid: int) -> bool:
    """Whether the group has a member that is not a zombie. Killed processes whose parent is gone
    stay zombies until init reaps them; on Linux ``/proc`` tells them apart (elsewhere every
    member counts)."""
    table = process_table()
    if table is None:
        return True
    return any(pgrp == pgid and state != "Z" for _pid, state, _ppid, pgrp in table)


def _reap_orphans(pgid: int) -> None:
    """Reap the exited processes of a trial's group that were re-parented to this worker (when it is
    PID 1, a container's entrypoint): only after the child itself was reaped, by multiprocessing."""
    while hasattr(os, "waitid"):
        try:
            if os.waitid(os.P_PGID, pgid, os.WEXITED | os.WNOHANG) is None:
                return
        except (ChildProcessError, OSError):
            return


def end_trial_processes(proc: Any, grace: float = KILL_GRACE) -> None:
    """End the trial's child and every process it started (its process group): SIGTERM, then
    SIGKILL to whatever is left after ``grace`` seconds; reaps the child."""
    if _signal_trial(proc, signal.SIGTERM):
        deadline = time.monotonic() + grace
        while _trial_alive(proc):
            if time.monotonic() >= deadline:
                _signal_trial(proc, signal.SIGKILL)
                break
            time.sleep(0.02)
    with contextlib.suppress(Exception):
        proc.join(5)
    with contextlib.suppress(Exception):
        proc.close()


def _end_finished_trial(proc: Any, grace: float) -> None:
    """After a trial sent its outcome: let its child exit by itself, then end what it left running."""
    with contextlib.suppress(Exception):
        proc.join(5)
    end_trial_processes(proc, grace)


def run_trial(domain: Any, vals: Mapping, *, subprocess: bool = True, timeout: float | None = None,
              ctrl: Any = None, workdir: str | None = None,
              cancel_event: threading.Event | None = None, check: OutcomeCheck | None = None) -> Outcome:
    """Evaluate ``domain`` at ``vals`` once (see the module docstring)."""
    return Executor(subprocess=subprocess, timeout=timeout, check=check, prefork=False).run(
        domain, vals, ctrl=ctrl, workdir=workdir, cancel_event=cancel_event)
