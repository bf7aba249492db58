"""ParallelTrials with real worker processes: where trials run, crashes, timeouts, Ctrl-C, resume,
start methods, bad input; and the Ctrl-C rule of Trials and MongoTrials.

Drivers that must be interrupted or killed run as their own processes (``Procs``); the others run
fmin in the test process, whose children are then the workers.
"""
from __future__ import annotations

import os
import pickle
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from hpo_mongo import (JOB_STATE_CANCEL, JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_NEW, STATUS_PRUNED,
                       ParallelTrials, Trials, fmin, fmin_pass_expr_memo_ctrl, hp, pruners, rand, report)
from hpo_mongo.exceptions import AllTrialsFailed, InvalidParameterError, PicklingError, WorkerStartError
from tests.helpers_distributed import Procs, process_gone, wait_until

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

SPACE = {"x": hp.uniform("x", -5, 5)}


def _run(objective, trials, max_evals, **kw):
    kw.setdefault("algo", rand.suggest)
    return fmin(objective, SPACE, max_evals=max_evals, trials=trials, show_progressbar=False,
                rstate=__import__("numpy").random.default_rng(0), **kw)


def _children(pid: int | None = None) -> set[int]:
    """The live (non-zombie) direct children of ``pid`` (default: this process)."""
    pid = os.getpid() if pid is None else pid
    out = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.add(int(entry))
    return out


def _all_gone(pids, timeout: float = 10.0) -> None:
    wait_until(lambda: all(process_gone(p) for p in pids), timeout=timeout,
               what=f"processes {sorted(pids)} to end (left: {[p for p in pids if not process_gone(p)]})")


# ----------------------------------------------------------------------------- where and how trials run
def _curve(params):
    """Reports |x| + 1/step at steps 1..5 (from the forked child, over its pipe) and returns |x|."""
    x = abs(params["x"])
    for step in range(1, 6):
        report(x + 1.0 / step, step)
    return {"loss": x, "status": "ok", "pid": os.getpid()}


@pytest.mark.parametrize("subprocess", [True, False], ids=["forked", "in-process"])
def test_pruning_decided_in_the_workers(subprocess):
    """The pruner travels with the domain; each worker decides on its trials' reports: with
    ThresholdPruner(upper=2) exactly the trials whose first report |x| + 1 exceeds 2 stop at step 1."""
    trials = ParallelTrials(2, subprocess=subprocess)
    _run(_curve, trials, 12, pruner=pruners.ThresholdPruner(upper=2.0))
    docs = trials.trials
    assert len(docs) == 12 and {d["state"] for d in docs} == {JOB_STATE_DONE}
    for d in docs:
        x = abs(d["misc"]["vals"]["x"][0])
        pruned = d["result"]["status"] == STATUS_PRUNED
        assert pruned == (x + 1.0 > 2.0), (x, d["result"])
        if pruned:
            assert d["result"]["pruned_step"] == 1
        else:
            assert d["result"]["loss"] == x and d["result"]["pid"] != os.getpid()
    assert 0 < sum(d["result"]["status"] == STATUS_PRUNED for d in docs) < 12



@fmin_pass_expr_memo_ctrl
def _ctrl_objective(expr, memo, ctrl):
    time.sleep(0.2)
    ctrl.checkpoint({"status": "running", "progress": 0.5})
    seen = ctrl.trials.queue.trial(ctrl.current_trial["tid"])["result"]
    ctrl.attachments["note"] = b"from the worker"
    return {"loss": float(memo["x"][0]) ** 2, "status": "ok", "pid": os.getpid(), "worker": os.getppid(),
            "seen": seen, "omp": os.environ.get("OMP_NUM_THREADS")}


def test_trials_run_in_worker_processes_with_ctrl_and_attachments():
    before = _children()
    trials = ParallelTrials(2, threads_per_worker=3)
    best = _run(_ctrl_objective, trials, 6)
    assert set(best) == {"x"}
    docs = trials.trials
    assert [d["state"] for d in docs] == [JOB_STATE_DONE] * 6
    results = [d["result"] for d in docs]
    assert os.getpid() not in {r["pid"] for r in results} | {r["worker"] for r in results}
    registered = {w["pid"] for w in trials.queue.workers(include_exited=True)}
    assert len(registered) == 2 and {r["worker"] for r in results} <= registered
    assert len({r["pid"] for r in results}) == 6  # each trial in a forked child of its worker
    assert {r["omp"] for r in results} == {"3"}
    assert all(r["seen"] == {"status": "running", "progress": 0.5} for r in results)
    assert all(trials.trial_attachments(d)["note"] == b"from the worker" for d in docs)
    _all_gone({r["worker"] for r in results})
    assert _children() == before


def _where(cfg):
    time.sleep(0.1)
    return {"loss": cfg["x"] ** 2, "status": "ok", "pid": os.getpid(), "omp": os.environ.get("OMP_NUM_THREADS")}


@pytest.mark.parametrize("start_method, subprocess", [("fork", True), ("fork", False), ("spawn", False)])
def test_start_methods_and_in_process_evaluation(start_method, subprocess):
    trials = ParallelTrials(2, start_method=start_method, subprocess=subprocess)
    _run(_where, trials, 6)
    pids = {d["result"]["pid"] for d in trials.trials}
    assert [d["state"] for d in trials.trials] == [JOB_STATE_DONE] * 6 and os.getpid() not in pids
    if subprocess:
        assert len(pids) == 6
    else:  # in-process: the workers themselves
        assert pids <= {w["pid"] for w in trials.queue.workers(include_exited=True)}
    expected = os.environ.get("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // 2)))
    assert {d["result"]["omp"] for d in trials.trials} == {expected}
    _all_gone(pids)


def test_an_objective_error_is_an_error_trial_and_the_run_goes_on():
    def objective(cfg):
        if cfg["x"] < 0:
            raise ValueError("negative")
        return cfg["x"]
    trials = ParallelTrials(2, subprocess=False)
    _run(objective, trials, 8)
    states = {d["state"] for d in trials.trials}
    assert states == {JOB_STATE_DONE, JOB_STATE_ERROR} and len(trials.trials) == 8
    err = next(d for d in trials.trials if d["state"] == JOB_STATE_ERROR)["error"]
    assert err["type"] == "ValueError" and "negative" in err["message"]


def test_fmin_options_loss_threshold_early_stop_progress_and_queue_length(capsys):
    from hpo_mongo.early_stop import no_progress_loss
    trials = ParallelTrials(2, subprocess=False)
    fmin(lambda cfg: 0.5, SPACE, algo=rand.suggest, max_evals=40, trials=trials, loss_threshold=1.0,
         max_queue_len=3, show_progressbar=True)
    assert trials.count_by_state_synced(JOB_STATE_DONE) >= 1 and len(trials.trials) < 40  # stopped at the first result
    out = capsys.readouterr()
    assert "best loss: 0.5" in out.out + out.err
    _run(lambda cfg: 1.0, trials, 40, early_stop_fn=no_progress_loss(3))
    done = trials.count_by_state_synced(JOB_STATE_DONE)
    assert done < 40 and {d["state"] for d in trials.trials} <= {JOB_STATE_DONE, JOB_STATE_CANCEL}


# ----------------------------------------------------------------------------- crashes and timeouts
def test_a_worker_killed_mid_trial_is_replaced_and_its_trial_retried(tmp_path):
    marks = tmp_path

    def objective(cfg):
        try:  # the first trial to get here blocks; its worker is killed
            fd = os.open(marks / "victim", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pass
        else:
            os.write(fd, str(os.getppid()).encode())  # the worker process holding this trial
            os.close(fd)
            time.sleep(60)
        time.sleep(0.3)
        return {"loss": cfg["x"] ** 2, "status": "ok", "worker": os.getppid()}

    trials = ParallelTrials(2)
    killed: list[int] = []

    def killer():
        pid = wait_until(lambda: (marks / "victim").exists() and (marks / "victim").read_text(), timeout=30,
                         what="the first trial")
        killed.append(int(pid))
        os.kill(killed[0], signal.SIGKILL)
    t = threading.Thread(target=killer, daemon=True)
    t.start()
    t0 = time.monotonic()
    _run(objective, trials, 8)
    t.join(5)
    assert killed, "the killer thread did not run"
    docs = trials.trials
    assert [d["state"] for d in docs] == [JOB_STATE_DONE] * 8, [d["state"] for d in docs]
    retried = [d for d in docs if d["requeues"]]
    assert len(retried) == 1 and retried[0]["attempt"] == 2 and retried[0]["result"]["worker"] != killed[0]
    assert time.monotonic() - t0 < 25  # noticed at once, not after the 10 s lease
    workers = trials.queue.workers(include_exited=True)
    assert len({w["owner"] for w in workers}) == 3  # the two first workers and the one that replaced the killed one
    assert {w["status"] for w in workers} == {"exited"}
    assert process_gone(killed[0])


def test_trial_timeout_ends_the_trial_and_the_process_it_started(tmp_path):
    def objective(cfg):
        import subprocess
        p = subprocess.Popen(["sleep", "60"])
        (tmp_path / f"sleep-{p.pid}").write_text("")
        time.sleep(60)
        return 0.0
    trials = ParallelTrials(1, trial_timeout=1.0)
    with pytest.raises(AllTrialsFailed):  # the only trial timed out
        _run(objective, trials, 1)
    (doc,) = trials.trials
    assert doc["state"] == JOB_STATE_ERROR and doc["error"]["type"] == "Timeout"
    (mark,) = tmp_path.glob("sleep-*")
    _all_gone([int(mark.name.split("-")[1])], timeout=5)


def test_early_stop_stops_running_trials_as_cancelled(tmp_path, capfd):
    def objective(cfg):
        if cfg["x"] != 0.0:
            import subprocess
            p = subprocess.Popen(["sleep", "60"])
            (tmp_path / f"sleep-{p.pid}").write_text("")
            time.sleep(60)
        return 0.5
    trials = ParallelTrials(2)
    t0 = time.monotonic()
    best = _run(objective, trials, 10, timeout=3, points_to_evaluate=[{"x": 0.0}])
    assert best == {"x": 0.0} and time.monotonic() - t0 < 3 + 8
    states = [d["state"] for d in trials.trials]
    assert states[0] == JOB_STATE_DONE and set(states[1:]) == {JOB_STATE_CANCEL}, states
    _all_gone([int(m.name.split("-")[1]) for m in tmp_path.glob("sleep-*")], timeout=5)
    # fmin ending early is no fault: the workers do not warn about the trials they were told to give back
    assert "released back to NEW" not in capfd.readouterr().err


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, name", [
    ({"n_jobs": 0}, "n_jobs"), ({"n_jobs": "2"}, "n_jobs"), ({"n_jobs": True}, "n_jobs"), ({"n_jobs": 1.5}, "n_jobs"),
    ({"n_jobs": -2}, "n_jobs"), ({"start_method": "forkserve"}, "start_method"),
    ({"trial_timeout": -1}, "trial_timeout"),
    ({"threads_per_worker": 0}, "threads_per_worker"), ({"subprocess": "yes"}, "subprocess"),
])
def test_bad_arguments_are_one_clear_error(kwargs, name):
    with pytest.raises(InvalidParameterError, match=f"The '{name}' parameter of ParallelTrials must be"):
        ParallelTrials(**kwargs)


def test_an_unpicklable_objective_fails_before_any_process_starts():
    lock = threading.Lock()
    before = _children()
    trials = ParallelTrials(2)
    with pytest.raises(PicklingError, match="lock"):
        _run(lambda cfg: (lock, cfg["x"])[1], trials, 3)
    assert _children() == before and trials.trials == []


def test_more_jobs_than_cores_warns():
    with pytest.warns(UserWarning, match="more worker processes than"):
        ParallelTrials(len(os.sched_getaffinity(0)) + 1)


def test_workers_that_cannot_start_stop_fmin_with_a_clear_error(monkeypatch):
    monkeypatch.setattr(sys, "executable", "/bin/false")
    before = _children()
    with pytest.raises(WorkerStartError, match="ended before serving a trial.*exited with code 1"):
        _run(lambda cfg: cfg["x"], ParallelTrials(1), 3)
    assert _children() == before


# ----------------------------------------------------------------------------- resume
def test_save_file_resumes_without_re_evaluating(tmp_path):
    path = tmp_path / "run.pkl"

    def objective(cfg):
        return {"loss": cfg["x"] ** 2, "status": "ok", "token": os.urandom(8).hex()}
    first = ParallelTrials(1, subprocess=False, save_file=path)
    _run(objective, first, 3)
    tokens = [d["result"]["token"] for d in first.trials]
    again = ParallelTrials(1, subprocess=False, save_file=path)
    assert [d["result"]["token"] for d in again.trials] == tokens
    _run(objective, again, 5)
    assert [d["state"] for d in again.trials] == [JOB_STATE_DONE] * 5
    assert [d["result"]["token"] for d in again.trials][:3] == tokens and again.tids == [0, 1, 2, 3, 4]
    with open(path, "rb") as f:
        assert [d["tid"] for d in pickle.load(f).trials] == [0, 1, 2, 3, 4]
    # fmin(trials=None) loads the file itself, as hyperopt does, and continues the saved ParallelTrials
    fmin(objective, SPACE, algo=rand.suggest, max_evals=6, trials_save_file=str(path), show_progressbar=False)
    with open(path, "rb") as f:
        resumed = pickle.load(f)
    assert isinstance(resumed, ParallelTrials) and [d["result"]["token"] for d in resumed.trials][:3] == tokens
    assert [d["state"] for d in resumed.trials] == [JOB_STATE_DONE] * 6


#: an unguarded script (no ``if __name__ == "__main__"``): the objective lives in ``__main__`` and the
#: workers are spawned; ``argv``: save file, evaluation log, max_evals, block (tids >= 3 block)
RESUME_DRIVER = """
    import os, sys, time
    from hpo_mongo import fmin, hp, rand, ParallelTrials

    save, log, n, block = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"

    def objective(expr, memo, ctrl):
        tid = ctrl.current_trial["tid"]
        with open(log, "a") as f:
            f.write(f"start {tid} {os.getppid()}\\n")
        if block and tid >= 3:
            time.sleep(60)
        return {"loss": memo["x"][0] ** 2, "status": "ok"}

    trials = ParallelTrials(2)
    fmin(objective, {"x": hp.uniform("x", -5, 5)}, algo=rand.suggest, max_evals=n, trials=trials,
         pass_expr_memo_ctrl=True, trials_save_file=save, show_progressbar=False)
    print("STATES", [t["state"] for t in trials.trials], flush=True)
"""


def test_a_crashed_run_resumes_from_trials_save_file(tmp_path):
    save, log = tmp_path / "run.pkl", tmp_path / "evals.log"
    with Procs(tmp_path) as procs:
        first = procs.python(RESUME_DRIVER, str(save), str(log), "6", "1", name="driver")

        def started():
            lines = log.read_text().split() if log.exists() else []
            return [int(t) for t in lines[1::3]]
        wait_until(lambda: len(started()) >= 5, timeout=40, what="two blocked trials after three quick ones")
        # three trials finished (the driver saved them), two block: kill the driver outright
        wait_until(lambda: save.exists() and sum(t["state"] == JOB_STATE_DONE for t in pickle.loads(
            save.read_bytes()).trials) == 3, timeout=20, what="the save file to hold 3 finished trials")
        workers = {int(w) for w in log.read_text().split()[2::3]}
        first.signal(signal.SIGKILL)
        procs.wait([first], timeout=10)
        _all_gone(workers)  # the workers saw their driver go and ended their trials
        second = procs.python(RESUME_DRIVER, str(save), str(log), "6", "0", name="driver2")
        assert procs.wait([second], timeout=60) == [0], procs.report()
    assert "STATES [2, 2, 2, 2, 2, 2]" in second.output()
    runs = started()
    assert sorted(t for t in runs if t < 3) == [0, 1, 2]  # finished before the crash: not evaluated again
    assert sorted(set(runs)) == [0, 1, 2, 3, 4, 5]


# ----------------------------------------------------------------------------- Ctrl-C
CTRL_C_DRIVER = """
    import os, subprocess, sys, time
    from hpo_mongo import fmin, hp, rand, ParallelTrials

    marks, block_sigterm = sys.argv[1], sys.argv[2] == "1"

    def objective(cfg):
        if cfg["x"] == 0.0:
            return 0.0
        import signal
        if block_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        p = subprocess.Popen(["sleep", "60"])
        with open(os.path.join(marks, f"run-{os.getpid()}"), "w") as f:
            f.write(f"{os.getppid()} {p.pid}")
        time.sleep(60)
        return 1.0

    trials = ParallelTrials(2)
    try:
        fmin(objective, {"x": hp.uniform("x", -5, 5)}, algo=rand.suggest, max_evals=10, trials=trials,
             points_to_evaluate=[{"x": 0.0}], show_progressbar=False)
    except KeyboardInterrupt:
        print("INTERRUPTED", [t["state"] for t in trials.trials], flush=True)
        raise
"""


def _pids_of_runs(marks: Path) -> set[int]:
    pids = set()
    for m in marks.glob("run-*"):
        pids.add(int(m.name.split("-")[1]))
        pids.update(int(p) for p in m.read_text().split())
    return pids


def test_ctrl_c_stops_everything_and_keeps_what_finished(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    with Procs(tmp_path) as procs:
        driver = procs.python(CTRL_C_DRIVER, str(marks), "0", name="driver")
        wait_until(lambda: len(list(marks.glob("run-*"))) >= 2 and all(m.read_text() for m in marks.glob("run-*")),
                   timeout=40, what="two running trials")
        pids = _pids_of_runs(marks)
        t0 = time.monotonic()
        driver.signal(signal.SIGINT)
        procs.wait([driver], timeout=20)
        took = time.monotonic() - t0
    out = driver.output()
    assert driver.returncode != 0 and "KeyboardInterrupt" in out, out
    line = next(ln for ln in out.splitlines() if ln.startswith("INTERRUPTED"))
    states = eval(line.split(" ", 1)[1])
    assert states[0] == JOB_STATE_DONE and states.count(JOB_STATE_DONE) == 1
    assert set(states[1:]) == {JOB_STATE_NEW}  # released: a later fmin evaluates them
    assert took < 10
    _all_gone(pids, timeout=5)


@pytest.mark.slow
def test_a_second_ctrl_c_kills_at_once(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    with Procs(tmp_path) as procs:
        driver = procs.python(CTRL_C_DRIVER, str(marks), "1", name="driver")  # trials ignore SIGTERM
        wait_until(lambda: len(list(marks.glob("run-*"))) >= 2 and all(m.read_text() for m in marks.glob("run-*")),
                   timeout=40, what="two running trials")
        pids = _pids_of_runs(marks)
        driver.signal(signal.SIGINT)
        time.sleep(0.3)
        t0 = time.monotonic()
        driver.signal(signal.SIGINT)
        procs.wait([driver], timeout=20)
        took = time.monotonic() - t0
    out = driver.output()
    assert "interrupted again: killing the worker processes now" in out
    states = eval(next(ln for ln in out.splitlines() if ln.startswith("INTERRUPTED")).split(" ", 1)[1])
    assert states[0] == JOB_STATE_DONE and set(states[1:]) == {JOB_STATE_NEW}, states
    assert took < 1.5, took
    _all_gone(pids, timeout=5)


def _interrupt_soon(delay: float) -> threading.Timer:
    timer = threading.Timer(delay, os.kill, args=(os.getpid(), signal.SIGINT))
    timer.start()
    return timer


@pytest.fixture
def python_sigint():
    """Python's own SIGINT handling, whatever the test process inherited (a background job starts
    with SIGINT ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_rule_in_memory_trials(python_sigint):
    def objective(cfg):
        if cfg["x"] != 0.0:
            time.sleep(30)
        return 0.0
    trials = Trials()
    _interrupt_soon(0.5)
    with pytest.raises(KeyboardInterrupt):
        _run(objective, trials, 5, points_to_evaluate=[{"x": 0.0}])
    assert [d["state"] for d in trials.trials] == [JOB_STATE_DONE, JOB_STATE_NEW]


def test_ctrl_c_rule_mongo_trials_leaves_queued_trials_new(python_sigint, mongo_url):
    from hpo_mongo.trials.mongo.store import MongoTrials
    trials = MongoTrials(mongo_url, exp_key="ctrl-c", poll_interval=0.05)
    _interrupt_soon(0.5)
    with pytest.raises(KeyboardInterrupt):
        _run(lambda cfg: 0.0, trials, 5)  # no worker: the trials stay queued
    trials.refresh()
    assert trials.trials and {d["state"] for d in trials.trials} == {JOB_STATE_NEW}
    assert trials.experiment()["status"] == "stopped"


def test_ctrl_c_script_text_is_valid_python():
    compile(textwrap.dedent(CTRL_C_DRIVER), "driver", "exec")
    compile(textwrap.dedent(RESUME_DRIVER), "driver", "exec")
