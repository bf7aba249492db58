"""hpo_mongo.worker.executor: evaluation in a forked child (crashes, timeouts, cancel) and in-process."""
from __future__ import annotations

import os
import threading
import time

import pytest

from hpo_mongo import hp
from hpo_mongo.domain import Domain
from hpo_mongo.trials.documents import JOB_STATE_DONE, JOB_STATE_ERROR
from hpo_mongo.worker.executor import Executor, crash_message, run_trial

from tests.helpers_distributed import process_gone

SPACE = {"x": hp.uniform("x", -5, 5), "mode": hp.choice("mode", ["ok", "raise", "exit", "segv", "sleep", "att",
                                                                "pid", "big", "cwd", "sysexit"])}
MODES = ["ok", "raise", "exit", "segv", "sleep", "att", "pid", "big", "cwd", "sysexit"]


def objective(cfg):
    mode = cfg["mode"]
    if mode == "raise":
        raise ValueError(f"bad x {cfg['x']}")
    if mode == "exit":
        os._exit(3)
    if mode == "segv":
        import ctypes
        import faulthandler
        faulthandler.disable()  # pytest's faulthandler would print a dump for the expected crash
        ctypes.string_at(0)
    if mode == "sleep":
        time.sleep(cfg["x"])
        return cfg["x"]
    if mode == "att":
        return {"loss": 1.0, "status": "ok", "attachments": {"blob": b"\x00" * 3_000_000, "small": b"hi"}}
    if mode == "pid":
        return {"loss": 0.0, "status": "ok", "pid": os.getpid()}
    if mode == "big":
        return {"loss": 0.0, "status": "ok", "values": list(range(200_000))}
    if mode == "cwd":
        return {"loss": 0.0, "status": "ok", "cwd": os.getcwd()}
    if mode == "sysexit":
        raise SystemExit(5)
    return cfg["x"] ** 2


DOMAIN = Domain(objective, SPACE)


def vals(mode, x=1.5):
    return {"x": [x], "mode": [MODES.index(mode)]}


@pytest.mark.parametrize("subprocess", [True, False])
def test_ok(subprocess):
    out = run_trial(DOMAIN, vals("ok"), subprocess=subprocess)
    assert out.state == JOB_STATE_DONE and out.result == {"loss": 2.25, "status": "ok"} and out.error is None


@pytest.mark.parametrize("subprocess", [True, False])
def test_exception(subprocess):
    out = run_trial(DOMAIN, vals("raise"), subprocess=subprocess)
    assert out.state == JOB_STATE_ERROR
    assert out.error["type"] == "ValueError" and out.error["message"] == "bad x 1.5"
    assert "Traceback" in out.error["traceback"] and "objective" in out.error["traceback"]
    assert out.result == {"status": "fail", "failure": "ValueError: bad x 1.5"}


def test_system_exit_fails_trial_not_worker():
    out = run_trial(DOMAIN, vals("sysexit"))
    assert out.state == JOB_STATE_ERROR and out.error["type"] == "SystemExit"


def test_os_exit_is_a_crash():
    out = run_trial(DOMAIN, vals("exit"))
    assert out.state == JOB_STATE_ERROR and out.error["type"] == "WorkerCrash"
    assert "exited with code 3" in out.error["message"]


def test_segfault_is_a_crash():
    out = run_trial(DOMAIN, vals("segv"))
    assert out.state == JOB_STATE_ERROR and out.error["type"] == "WorkerCrash"
    assert "exit code -11 / SIGSEGV" in out.error["message"]
    assert out.result["failure"].startswith("WorkerCrash: the objective's process died")


def test_crash_message_sigkill():
    assert "out-of-memory" in crash_message(-9) and "SIGKILL" in crash_message(-9)


def test_timeout_kills_child():
    t0 = time.monotonic()
    out = run_trial(DOMAIN, vals("sleep", 4.0), timeout=0.3)
    assert time.monotonic() - t0 < 2.0
    assert out.state == JOB_STATE_ERROR and out.error["type"] == "Timeout"
    assert out.error["message"] == "timeout: trial exceeded 0.3 s"
    assert out.result == {"status": "fail", "failure": "timeout: trial exceeded 0.3 s"}


def test_fast_trial_under_timeout():
    out = run_trial(DOMAIN, vals("sleep", 0.01), timeout=5)
    assert out.state == JOB_STATE_DONE and out.result["loss"] == 0.01


@pytest.mark.parametrize("subprocess", [True, False])
def test_attachments(subprocess):
    out = run_trial(DOMAIN, vals("att"), subprocess=subprocess)
    assert out.state == JOB_STATE_DONE and out.result == {"loss": 1.0, "status": "ok"}
    assert out.attachments["small"] == b"hi" and len(out.attachments["blob"]) == 3_000_000


def test_large_result_through_pipe():
    out = run_trial(DOMAIN, vals("big"))
    assert out.state == JOB_STATE_DONE and len(out.result["values"]) == 200_000


def test_child_vs_inprocess_pid():
    assert run_trial(DOMAIN, vals("pid")).result["pid"] != os.getpid()
    assert run_trial(DOMAIN, vals("pid"), subprocess=False).result["pid"] == os.getpid()


@pytest.mark.parametrize("subprocess", [True, False])
def test_workdir(tmp_path, subprocess):
    here = os.getcwd()
    out = run_trial(DOMAIN, vals("cwd"), subprocess=subprocess, workdir=str(tmp_path / "wd"))
    assert out.result["cwd"] == str(tmp_path / "wd") and os.getcwd() == here


def test_release_from_another_thread():
    ex = Executor()
    threading.Timer(0.2, ex.release).start()
    t0 = time.monotonic()
    out = ex.run(DOMAIN, vals("sleep", 5.0))
    assert out.cancelled and time.monotonic() - t0 < 2.0
    # the executor is reusable afterwards
    assert ex.run(DOMAIN, vals("ok")).state == JOB_STATE_DONE


def test_cancel_event():
    ev = threading.Event()
    threading.Timer(0.2, ev.set).start()
    out = run_trial(DOMAIN, vals("sleep", 5.0), cancel_event=ev)
    assert out.cancelled and out.state is None


def test_worker_survives_many_crashes_and_overhead_is_small():
    ex = Executor()
    for mode in ("segv", "exit", "raise"):
        assert ex.run(DOMAIN, vals(mode)).state == JOB_STATE_ERROR
    t0 = time.monotonic()
    n = 20
    for _ in range(n):
        assert ex.run(DOMAIN, vals("ok")).state == JOB_STATE_DONE
    per_trial = (time.monotonic() - t0) / n
    assert per_trial < 0.25, f"fork overhead {per_trial * 1000:.1f} ms per trial"


def test_inprocess_timeout_interrupts_python_code_and_restores_the_alarm():
    import signal as _signal
    before = _signal.getsignal(_signal.SIGALRM)
    t0 = time.monotonic()
    out = run_trial(DOMAIN, vals("sleep", x=5.0), subprocess=False, timeout=0.3)
    assert time.monotonic() - t0 < 3
    assert out.state == JOB_STATE_ERROR and out.error["type"] == "Timeout"
    assert out.error["message"] == "timeout: trial exceeded 0.3 s"
    assert _signal.getsignal(_signal.SIGALRM) is before
    assert _signal.getitimer(_signal.ITIMER_REAL) == (0.0, 0.0)
    ok = run_trial(DOMAIN, vals("ok"), subprocess=False, timeout=5)  # a fast trial is unaffected
    assert ok.state == JOB_STATE_DONE


# ----------------------------------------------------------------------------- the trial's processes
def _spawner(cfg):
    """Starts a grandchild that ignores SIGTERM, records its pid, then sleeps or raises."""
    import subprocess
    p = subprocess.Popen(["sh", "-c", "trap '' TERM; sleep 600 & wait"])
    with open(cfg["pidfile"], "w") as f:
        f.write(str(p.pid))
    if cfg["mode"] == "raise":
        raise ValueError("after starting a process")
    time.sleep(600)


@pytest.mark.parametrize("how", ["release", "raise"])
def test_a_trials_processes_end_with_it_even_when_they_ignore_sigterm(tmp_path, how):
    pidfile = tmp_path / "pid"
    domain = Domain(_spawner, {"pidfile": str(pidfile), "mode": hp.choice("mode", ["sleep", "raise"])})
    ex = Executor(kill_grace=0.3)
    if how == "release":
        threading.Thread(target=lambda: (_wait_for(pidfile.exists), ex.release()), daemon=True).start()
    out = ex.run(domain, {"mode": [0 if how == "release" else 1]})
    assert out.cancelled if how == "release" else out.error["type"] == "ValueError"
    ex.close()
    pid = int(pidfile.read_text())
    try:
        _wait_for(lambda: process_gone(pid), 5)
    finally:
        if not process_gone(pid):
            os.kill(pid, 9)


def _wait_for(pred, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# ----------------------------------------------------------------------------- in-process Ctrl-C
def _raises_keyboard_interrupt(cfg):
    if cfg["real"]:
        time.sleep(5)
        return 0.0
    raise KeyboardInterrupt


def test_inprocess_keyboard_interrupt_of_the_objective_fails_the_trial_a_real_sigint_stops():
    import signal as _signal
    # Python's own SIGINT handling, whatever the test process inherited (a shell's background
    # job starts with SIGINT ignored)
    previous = _signal.signal(_signal.SIGINT, _signal.default_int_handler)
    try:
        domain = Domain(_raises_keyboard_interrupt, {"real": hp.choice("real", [False, True])})
        out = run_trial(domain, {"real": [0]}, subprocess=False)
        assert out.state == JOB_STATE_ERROR and out.error["type"] == "KeyboardInterrupt"
        assert _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler
        timer = threading.Timer(0.2, os.kill, args=(os.getpid(), _signal.SIGINT))
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            run_trial(domain, {"real": [1]}, subprocess=False)
        assert _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler
    finally:
        _signal.signal(_signal.SIGINT, previous)


def test_check_refuses_an_outcome_where_the_objective_ran():
    from hpo_mongo.trials.mongo.jobs import check_storable
    for subprocess in (True, False):
        out = run_trial(DOMAIN, vals("att"), subprocess=subprocess, check=check_storable)
        assert out.state == JOB_STATE_DONE
        big = run_trial(DOMAIN, vals("big"), subprocess=subprocess,
                        check=lambda result, attachments: check_storable({"n": 2 ** 64}, attachments))
        assert big.state == JOB_STATE_ERROR and "result['n']" in big.error["message"]


# ----------------------------------------------------------------------------- the child forked ahead
def _spare(ex: Executor):
    ex.prepare()
    assert ex._spare is not None, "prepare() forked no child"
    return ex._spare.proc


def test_a_child_forked_ahead_takes_the_next_trial_and_each_trial_gets_a_fresh_process():
    ex = Executor()
    try:
        ex.prepare()  # before any trial: nothing to fork for
        assert ex._spare is None
        pids = [ex.run(DOMAIN, vals("pid")).result["pid"]]  # forked with its trial
        for _ in range(3):
            ahead = _spare(ex)
            ex.prepare()  # idempotent while one waits
            assert ex._spare.proc is ahead
            ahead_pid = ahead.pid  # the process object is closed once the trial's process is ended
            out = ex.run(DOMAIN, vals("pid"))
            assert out.state == JOB_STATE_DONE and out.result["pid"] == ahead_pid
            pids.append(out.result["pid"])
        assert len(set(pids)) == 4 and os.getpid() not in pids
    finally:
        ex.close()


def test_a_child_forked_ahead_reports_crashes_timeouts_cancels_and_requests_like_one_forked_with_its_trial():
    ex = Executor(kill_grace=0.3)
    try:
        ex.run(DOMAIN, vals("ok"))
        _spare(ex)
        out = ex.run(DOMAIN, vals("segv"))
        assert out.error["type"] == "WorkerCrash" and "SIGSEGV" in out.error["message"]
        _spare(ex)
        out = ex.run(DOMAIN, vals("sleep", 5.0), timeout=0.3)
        assert out.error["type"] == "Timeout"
        _spare(ex)
        threading.Timer(0.2, ex.release).start()
        assert ex.run(DOMAIN, vals("sleep", 5.0)).cancelled
        _spare(ex)
        out = ex.run(DOMAIN, vals("att"))
        assert out.state == JOB_STATE_DONE and out.attachments["small"] == b"hi"
    finally:
        ex.close()


def test_a_child_that_died_waiting_is_replaced_not_blamed_on_the_trial():
    ex = Executor()
    try:
        ex.run(DOMAIN, vals("ok"))
        ahead = _spare(ex)
        dead = ahead.pid
        os.kill(dead, 9)
        ahead.join(5)
        out = ex.run(DOMAIN, vals("pid"))
        assert out.state == JOB_STATE_DONE and out.result["pid"] != dead
    finally:
        ex.close()


def test_a_trial_of_another_domain_gets_its_own_child_and_close_ends_the_one_waiting():
    other = Domain(lambda cfg: {"loss": -1.0, "status": "ok", "pid": os.getpid()}, {"x": hp.uniform("x", 0, 1)})
    ex = Executor()
    ex.run(DOMAIN, vals("ok"))
    ahead = _spare(ex).pid
    out = ex.run(other, {"x": [0.5]})
    assert out.result["loss"] == -1.0 and out.result["pid"] != ahead  # not the child that inherited DOMAIN
    waiting = _spare(ex).pid
    assert ex._spare.domain is other
    ex.close()
    _wait_for(lambda: process_gone(ahead) and process_gone(waiting), 5)


def test_trial_ctrl_requests_reach_the_worker_from_a_child_forked_ahead():
    from hpo_mongo.trials.memory_queue import MemoryJobQueue
    from hpo_mongo.worker.ctrl import WorkerCtrl

    def objective(expr, memo, ctrl):
        ctrl.attachments["note"] = b"from the child"
        return {"loss": float(len(list(ctrl.attachments))), "status": "ok", "tid": ctrl.current_trial["tid"]}

    domain = Domain(objective, {"x": hp.uniform("x", 0, 1)}, pass_expr_memo_ctrl=True)
    from hpo_mongo.trials.documents import new_trial_doc
    queue = MemoryJobQueue()
    queue.insert([new_trial_doc(t, {"x": [0.5]}) for t in (0, 1)])
    ex = Executor()
    try:
        for tid in (0, 1):
            claim = queue.claim("w", exp_key=None, lease_timeout=60, max_attempts=3)
            assert claim["tid"] == tid
            if tid:
                _spare(ex)
            out = ex.run(domain, {"x": [0.5]}, ctrl=WorkerCtrl(queue, claim))
            assert out.state == JOB_STATE_DONE, out.error
            assert out.result["tid"] == tid and out.attachments == {"note": b"from the child"}
    finally:
        ex.close()
