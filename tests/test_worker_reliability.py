"""What a worker must never do, on the real test server with worker processes: write anything after
it lost its trial (attachments included), die of a result MongoDB cannot store, leave the
objective's processes running, evaluate forged documents, overrun ``--max-disconnect``.

Timing: heartbeat 0.2 s, stale timeout 1.5 s, poll 0.05 s; every wait polls with a deadline.
Objectives are closures (pickled by value), so worker processes import nothing from the tests.
"""
from __future__ import annotations

import datetime
import os
import signal
import sys
import time

import pytest

from hpo_mongo.trials.session import Run

from hpo_mongo import hp
from hpo_mongo.domain import Domain
from hpo_mongo.trials.documents import (JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_NEW, JOB_STATE_RUNNING,
                                        new_trial_doc)
from hpo_mongo.trials.mongo.store import MongoTrials

from tests.helpers_distributed import Procs, process_gone as gone, wait_until, worker_cmd

pytestmark = [pytest.mark.server]

LEASE_FLAGS = ("--heartbeat-interval", "0.2", "--stale-timeout", "1.5")
NO_SECRET = {"HPO_MONGO_SECRET": ""}
SECRET = "reliability-test-secret-0123456789"
INVALID_RESULT = "hpo_mongo.exceptions.InvalidResultError"
INVALID_TRIAL = "hpo_mongo.exceptions.InvalidTrial"


def queue(url: str, exp_key: str | None, objective, space, vals: list[dict], *, ctrl: bool = False,
          secret: str | None = None, workdirs: list | None = None) -> list[int]:
    """Store the domain and the experiment as fmin does, then queue one NEW trial per ``vals``."""
    trials = MongoTrials(url, exp_key=exp_key, secret=secret.encode() if secret else None, refresh=False)
    domain = Domain(objective, space, pass_expr_memo_ctrl=ctrl)
    trials.open_session(Run(domain=domain, max_evals=len(vals)))
    ids = trials.new_trial_ids(len(vals))
    workdirs = workdirs or [None] * len(vals)
    trials.insert_trial_docs([new_trial_doc(tid, v, exp_key=exp_key, workdir=w)
                              for tid, v, w in zip(ids, vals, workdirs, strict=True)])
    return ids


def docs_by_tid(db, exp_key) -> dict[int, dict]:
    return {d["tid"]: d for d in db.jobs.find({"exp_key": exp_key})}


# ----------------------------------------------------------------------------- bug 1: stale attachments
def _attempt_objective(go_file: str, marker_dir: str):
    def objective(expr, memo, ctrl):
        import os as _os
        import time as _time
        attempt = ctrl.current_trial["attempt"]
        tag = f"{_os.getpid()}:{attempt}"
        open(_os.path.join(marker_dir, f"started{attempt}"), "w").close()
        if attempt == 1:  # the first claimer runs on (its worker frozen) until the second one finished
            deadline = _time.monotonic() + 60
            while not _os.path.exists(go_file) and _time.monotonic() < deadline:
                _time.sleep(0.02)
        ctrl.attachments["ctrl"] = tag.encode()
        with open(_os.path.join(marker_dir, f"attempt{attempt}"), "w") as f:
            f.write(tag)
        return {"loss": float(attempt), "status": "ok", "tag": tag, "attachments": {"result": tag.encode()}}
    return objective


def test_a_stale_worker_writes_no_attachment_and_no_result(mongo_url, mongo_db, tmp_path):
    """A claims, is frozen past its lease; B requeues, evaluates, finishes; A wakes: nothing of A's
    attempt is visible, the finished trial's attachments come from B's attempt, A's files are gone."""
    go, markers = tmp_path / "go", tmp_path / "markers"
    markers.mkdir()
    db = mongo_db
    with Procs(tmp_path) as procs:
        a = procs.worker(mongo_url, *LEASE_FLAGS, name="A", env=NO_SECRET)
        (tid,) = queue(mongo_url, "att", _attempt_objective(str(go), str(markers)), {"x": hp.uniform("x", 0, 1)},
                       [{"x": [0.5]}], ctrl=True)
        wait_until(lambda: (markers / "started1").exists(), 30, what="A's objective to start")
        a.signal(signal.SIGSTOP)
        try:
            b = procs.worker(mongo_url, *LEASE_FLAGS, "--max-jobs", "1", name="B", env=NO_SECRET)
            assert procs.wait([b], timeout=40) == [0], procs.report()
            done = db.jobs.find_one({"tid": tid})
            assert done["state"] == JOB_STATE_DONE and done["attempt"] == 2, done
            go.write_text("go")
            wait_until(lambda: (markers / "attempt1").exists(), 30, what="A's objective to end")
        finally:
            a.signal(signal.SIGCONT)
        wait_until(lambda: "taken from this worker" in a.output() or "lost its lease" in a.output(), 30,
                   what="A noticing it lost the trial")
        wait_until(lambda: db["fs.files"].count_documents({"metadata.tid": tid, "metadata.attempt": 1}) == 0
                   and "taken from this worker" in a.output(), 10, what="A deleting its attempt's files")
        a.signal(signal.SIGTERM)
        assert procs.wait([a], timeout=15) == [0], procs.report()
    doc = db.jobs.find_one({"tid": tid})
    b_tag = (markers / "attempt2").read_text()
    assert doc["state"] == JOB_STATE_DONE and doc["attempt"] == 2 and doc["result"]["tag"] == b_tag
    assert sorted(n for n, _ in doc["_attachments"]) == ["ctrl", "result"]
    reader = MongoTrials(mongo_url, exp_key="att")
    ta = reader.trial_attachments(reader.trials[0])
    assert ta["ctrl"] == b_tag.encode() and ta["result"] == b_tag.encode() and sorted(ta) == ["ctrl", "result"]
    files = list(db["fs.files"].find({"metadata.kind": "trial", "metadata.tid": tid}))
    assert sorted((f["filename"], f["metadata"]["attempt"]) for f in files) == [
        (f"trial/{tid}/2/ctrl", 2), (f"trial/{tid}/2/result", 2)]
    assert f"trial {tid} done" not in a.output()  # its result was dropped: not reported as done


# ----------------------------------------------------------------------------- bug 3: unstorable results
UNSTORABLE = ["object", "bigint", "nulkey", "huge", "strattach", "fine"]


def _unstorable_objective(cfg):
    case = cfg["case"]
    if case == "object":
        return {"loss": 1.0, "status": "ok", "obj": object()}
    if case == "bigint":
        return {"loss": 1.0, "status": "ok", "nested": {"n": [1, 2 ** 63]}}
    if case == "nulkey":
        return {"loss": 1.0, "status": "ok", "bad\x00key": 1}
    if case == "huge":
        return {"loss": 1.0, "status": "ok", "blob": "x" * (17 * 2 ** 20)}
    if case == "strattach":
        return {"loss": 1.0, "status": "ok", "attachments": {"log": "text, not bytes"}}
    return 0.5


def test_a_result_mongodb_cannot_store_fails_the_trial_not_the_worker(mongo_url, mongo_db, tmp_path):
    """Checked where the objective ran: in the forked child and with --no-subprocess (one worker each)."""
    def objective(cfg):
        return _unstorable_objective(cfg)
    modes = {"child": [], "in-process": ["--no-subprocess"]}
    ids = {m: queue(mongo_url, m, objective, {"case": hp.choice("case", UNSTORABLE)},
                    [{"case": [i]} for i in range(len(UNSTORABLE))]) for m in modes}
    with Procs(tmp_path) as procs:
        workers = [procs.worker(mongo_url, "--exp-key", m, "--max-jobs", str(len(UNSTORABLE)), *flags, name=m,
                                env=NO_SECRET) for m, flags in modes.items()]
        assert procs.wait(workers, timeout=60) == [0, 0], procs.report()
    expected = {"object": ("result['obj']", "object"), "bigint": ("result['nested']['n'][1]", "64-bit"),
                "nulkey": ("'bad\\x00key'", "NUL"), "huge": ("result['blob']", "MiB"),
                "strattach": ("attachment 'log'", "str")}
    for mode in modes:
        docs = docs_by_tid(mongo_db, mode)
        by_case = {case: docs[tid] for case, tid in zip(UNSTORABLE, ids[mode], strict=True)}
        for case, words in expected.items():
            d = by_case[case]
            assert d["state"] == JOB_STATE_ERROR, (mode, case, d)
            assert d["error"]["type"] == INVALID_RESULT, (mode, case, d["error"])
            for word in words:
                assert word in d["error"]["message"], (mode, case, word, d["error"]["message"])
            assert d["result"]["status"] == "fail" and d["_attachments"] == []
        assert by_case["fine"]["state"] == JOB_STATE_DONE and by_case["fine"]["result"]["loss"] == 0.5
    assert mongo_db["fs.files"].count_documents({"metadata.kind": "trial"}) == 0


def test_a_write_the_server_refuses_is_recorded_as_the_trials_error(mongo_url, mongo_db):
    """The second line of defence: an outcome that escaped the check is refused at the write
    (client-side encoding or the server) and the trial becomes ERROR naming why."""
    from hpo_mongo.trials.mongo.queue import MongoJobQueue
    from hpo_mongo.worker.executor import Outcome
    from hpo_mongo.worker.loop import Worker, WorkerConfig
    queue(mongo_url, "refused", lambda cfg: 0.0, {"x": hp.uniform("x", 0, 1)}, [{"x": [0.5]}])
    w = Worker(MongoJobQueue.connect(mongo_url), WorkerConfig(subprocess=False))
    doc = w.claim()
    written = w.report(doc, Outcome(JOB_STATE_DONE, {"status": "ok", "loss": 1.0, "obj": object()},
                                    {"note": b"kept?"}))
    assert written is not None and written.state == JOB_STATE_ERROR
    stored = mongo_db.jobs.find_one({"_id": doc["_id"]})
    assert stored["state"] == JOB_STATE_ERROR and stored["error"]["type"] == INVALID_RESULT
    assert "result['obj']" in stored["error"]["message"] and stored["_attachments"] == []
    assert mongo_db["fs.files"].count_documents({"metadata.kind": "trial"}) == 0


# ----------------------------------------------------------------------------- bug 5: max_attempts
def test_every_requeuer_applies_the_max_attempts_the_claiming_worker_recorded(mongo_url, mongo_db, tmp_path):
    from hpo_mongo.trials.mongo import jobs as J
    from hpo_mongo.trials.mongo.connection import server_time

    def objective(cfg):
        import time as _time
        _time.sleep(60)
        return 0.0
    (tid,) = queue(mongo_url, "attempts", objective, {"x": hp.uniform("x", 0, 1)}, [{"x": [0.5]}])
    with Procs(tmp_path) as procs:
        w = procs.worker(mongo_url, *LEASE_FLAGS, "--max-attempts", "5", env=NO_SECRET)
        wait_until(lambda: "attempt 1) claimed" in w.output(), 30, what="the claim")
        w.kill()  # kill -9: the lease is lost
    doc = mongo_db.jobs.find_one({"tid": tid})
    assert doc["max_attempts"] == 5 and doc["lease_timeout"] == 1.5
    # as if lost three times already: the fourth loss stays below the worker's 5
    mongo_db.jobs.update_one({"tid": tid}, {"$set": {"requeues": 3}})

    def requeue_as_the_driver():  # MongoTrials' own default is 3
        events = J.requeue_stale(mongo_db.jobs, now=server_time(mongo_db),
                                 default_max_attempts=MongoTrials.max_attempts)
        return [e["outcome"] for e in events]
    outcomes = wait_until(lambda: requeue_as_the_driver() or None, 10, what="the lease to expire")
    assert outcomes == ["requeued"]
    doc = mongo_db.jobs.find_one({"tid": tid})
    assert doc["state"] == JOB_STATE_NEW and doc["requeues"] == 4
    # the fifth loss reaches it: ERROR, naming the recorded limit
    long_ago = server_time(mongo_db) - datetime.timedelta(seconds=60)
    mongo_db.jobs.update_one({"tid": tid}, {"$set": {"state": JOB_STATE_RUNNING, "owner": "gone:1",
                                                     "heartbeat": long_ago, "attempt": 5}})
    assert requeue_as_the_driver() == ["failed"]
    doc = mongo_db.jobs.find_one({"tid": tid})
    assert doc["state"] == JOB_STATE_ERROR and "lost 5 times" in doc["error"]["message"]
    assert "max_attempts=5" in doc["error"]["message"]


# ----------------------------------------------------------------------------- bug 7: process groups
def _spawning_objective(pid_dir: str):
    def objective(cfg):
        import os as _os
        import subprocess as _sp
        import time as _time
        p = _sp.Popen(["sleep", "600"])
        with open(_os.path.join(pid_dir, cfg["mode"]), "w") as f:
            f.write(str(p.pid))
        if cfg["mode"] == "hang":
            _time.sleep(600)
        return 0.0
    return objective


def test_no_process_an_objective_started_outlives_its_trial(mongo_url, mongo_db, tmp_path):
    """--trial-timeout ends the trial's whole process group, and so does the end of a trial."""
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    modes = ["hang", "return"]
    ids = queue(mongo_url, "spawn", _spawning_objective(str(pid_dir)), {"mode": hp.choice("mode", modes)},
                [{"mode": [0]}, {"mode": [1]}])
    pids: list[int] = []
    try:
        with Procs(tmp_path) as procs:
            w = procs.worker(mongo_url, "--trial-timeout", "1", "--max-jobs", "2", env=NO_SECRET)
            assert procs.wait([w], timeout=40) == [0], procs.report()
        pids = [int((pid_dir / m).read_text()) for m in modes]
        wait_until(lambda: all(gone(p) for p in pids), 10, what=f"the objectives' sleep processes {pids} to end")
    finally:
        for p in pids:
            if not gone(p):
                os.kill(p, signal.SIGKILL)
    docs = docs_by_tid(mongo_db, "spawn")
    assert docs[ids[0]]["state"] == JOB_STATE_ERROR and docs[ids[0]]["error"]["type"] == "Timeout"
    assert docs[ids[1]]["state"] == JOB_STATE_DONE


# ----------------------------------------------------------------------------- forged documents
def _cwd_objective(cfg):
    import os as _os
    return {"loss": 0.0, "status": "ok", "cwd": _os.getcwd()}


def test_signed_worker_keeps_misc_workdir_inside_its_start_directory(mongo_url, mongo_db, tmp_path):
    base, outside = tmp_path / "base", tmp_path / "outside"
    base.mkdir()
    (base / "escape").symlink_to(tmp_path / "via-link", target_is_directory=True)
    signed = queue(mongo_url, "signed", _cwd_objective, {"x": hp.uniform("x", 0, 1)}, [{"x": [0.5]}] * 3,
                   secret=SECRET, workdirs=[str(outside), "inside/sub", "escape/deeper"])
    unsigned = queue(mongo_url, "unsigned", _cwd_objective, {"x": hp.uniform("x", 0, 1)}, [{"x": [0.5]}],
                     workdirs=[str(outside)])
    with Procs(tmp_path) as procs:
        ws = procs.worker(mongo_url, "--exp-key", "signed", "--max-jobs", "3", env={"HPO_MONGO_SECRET": SECRET},
                          cwd=base)
        wu = procs.worker(mongo_url, "--exp-key", "unsigned", "--max-jobs", "1", env=NO_SECRET, cwd=base)
        assert procs.wait([ws, wu], timeout=40) == [0, 0], procs.report()
    docs = docs_by_tid(mongo_db, "signed")
    absolute, inside, escape = (docs[t] for t in signed)
    for d, where in ((absolute, str(outside)), (escape, str(tmp_path / "via-link" / "deeper"))):
        assert d["state"] == JOB_STATE_ERROR and d["error"]["type"] == INVALID_TRIAL, d
        assert "outside" in d["error"]["message"] and where in d["error"]["message"], d["error"]["message"]
    assert inside["state"] == JOB_STATE_DONE and inside["result"]["cwd"] == str((base / "inside" / "sub").resolve())
    assert not (tmp_path / "via-link").exists()
    # without a secret, hyperopt's semantics: MongoTrials(workdir="/abs") is honoured
    (u,) = (mongo_db.jobs.find_one({"tid": t}) for t in unsigned)
    assert u["state"] == JOB_STATE_DONE and u["result"]["cwd"] == str(outside)


FORGED_SPACE_OPTIONS = ["a", "b", "c"]


def test_forged_vals_fail_as_errors_naming_the_label(mongo_url, mongo_db, tmp_path):
    marker = tmp_path / "called"

    def objective(cfg):
        with open(str(marker), "a") as f:
            f.write(f"{cfg}\n")
        return 0.0
    space = {"x": hp.uniform("x", 0, 1),
             "c": hp.choice("c", [{"kind": "plain"}, {"kind": "deep", "y": hp.uniform("y", 0, 1)}])}
    forged = {"out of bounds": ({"x": [5.0], "c": [0], "y": []}, ["'x'", "range"]),
              "a string": ({"x": ["0.5; rm -rf /"], "c": [0], "y": []}, ["'x'", "str"]),
              "choice index": ({"x": [0.5], "c": [7], "y": []}, ["'c'"]),
              "unknown label": ({"x": [0.5], "c": [0], "y": [], "zzz": [1]}, ["'zzz'"]),
              "missing active": ({"x": [0.5], "c": [1], "y": []}, ["'y'"])}
    ids = queue(mongo_url, "forged", objective, space, [{"x": [0.5], "c": [1], "y": [0.25]}] * (len(forged) + 1))
    # what a database writer without the secret can do (the last trial stays as queued)
    for tid, (vals, _) in zip(ids, forged.values(), strict=False):
        mongo_db.jobs.update_one({"tid": tid}, {"$set": {"misc.vals": vals}, "$inc": {"version": 1}})
    with Procs(tmp_path) as procs:
        w = procs.worker(mongo_url, "--max-jobs", str(len(ids)), env=NO_SECRET)
        assert procs.wait([w], timeout=40) == [0], procs.report()
    docs = docs_by_tid(mongo_db, "forged")
    for tid, (what, (_, words)) in zip(ids, forged.items(), strict=False):  # the forged ones
        d = docs[tid]
        assert d["state"] == JOB_STATE_ERROR and d["error"]["type"] == INVALID_TRIAL, (what, d)
        for word in words:
            assert word in d["error"]["message"], (what, word, d["error"]["message"])
    assert docs[ids[-1]]["state"] == JOB_STATE_DONE
    assert marker.read_text().count("\n") == 1  # the objective saw only the genuine point


# ----------------------------------------------------------------------------- smaller worker items
def test_default_experiment_only(mongo_url, mongo_db, tmp_path):
    ids = queue(mongo_url, None, lambda cfg: 0.0, {"x": hp.uniform("x", 0, 1)}, [{"x": [0.5]}] * 2)
    queue(mongo_url, "other", lambda cfg: 0.0, {"x": hp.uniform("x", 0, 1)}, [{"x": [0.5]}])
    with Procs(tmp_path) as procs:
        w = procs.worker(mongo_url, "--default-experiment", "--reserve-timeout", "0.5", env=NO_SECRET)
        both = procs.worker(mongo_url, "--default-experiment", "--exp-key", "other", name="both", env=NO_SECRET)
        assert procs.wait([w, both], timeout=40) == [0, 2], procs.report()
    assert "exclude each other" in both.output()
    assert "serving the default experiment (exp_key None)" in w.output()
    assert {t: d["state"] for t, d in docs_by_tid(mongo_db, None).items()} == {t: JOB_STATE_DONE for t in ids}
    assert [d["state"] for d in mongo_db.jobs.find({"exp_key": "other"})] == [JOB_STATE_NEW]


def test_secret_file_checks(mongo_url, tmp_path):
    loose = tmp_path / "loose"
    loose.write_text(SECRET + "\n")
    loose.chmod(0o644)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    as_limited = [sys.executable, "-c", "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, "
                  "(1 << 30, 1 << 30)); sys.argv = sys.argv[1:]; exec(open(sys.argv[0]).read())"]
    with Procs(tmp_path) as procs:
        w_loose = procs.worker(mongo_url, "--secret-file", str(loose), "--reserve-timeout", "0.2", name="loose")
        w_fifo = procs.worker(mongo_url, "--secret-file", str(fifo), name="fifo")
        w_zero = procs.start("zero", as_limited + worker_cmd(mongo_url, "--secret-file", "/dev/zero")[1:])
        assert procs.wait(timeout=40) == [0, 2, 2], procs.report()
    assert "can be accessed by group or others (mode 0644)" in w_loose.output() and "chmod 600" in w_loose.output()
    assert "is not a regular file (a FIFO)" in w_fifo.output()
    assert "is not a regular file (a character device)" in w_zero.output()
    assert "Traceback" not in w_zero.output() + w_fifo.output()


def test_keyboard_interrupt_in_process(mongo_url, mongo_db, tmp_path):
    """--no-subprocess: an objective raising KeyboardInterrupt fails its trial; a real SIGINT to the
    worker still stops the worker (the trial finishes within the grace period)."""
    def objective(cfg):
        import time as _time
        if cfg["mode"] == "raise":
            raise KeyboardInterrupt("the objective's own")
        if cfg["mode"] == "slow":
            _time.sleep(1.0)
        return 1.0
    space = {"mode": hp.choice("mode", ["raise", "ok", "slow"])}
    raised, ok = queue(mongo_url, "kbd", objective, space, [{"mode": [0]}, {"mode": [1]}])
    (slow,) = queue(mongo_url, "sigint", objective, space, [{"mode": [2]}])
    with Procs(tmp_path) as procs:
        w = procs.worker(mongo_url, "--no-subprocess", "--exp-key", "kbd", "--max-jobs", "2", env=NO_SECRET)
        s = procs.worker(mongo_url, "--no-subprocess", "--exp-key", "sigint", "--grace-period", "20",
                         name="sigint", env=NO_SECRET)
        wait_until(lambda: "attempt 1) claimed" in s.output(), 30, what="the slow trial's claim")
        s.signal(signal.SIGINT)
        assert procs.wait([w, s], timeout=40) == [0, 0], procs.report()
    docs = {**docs_by_tid(mongo_db, "kbd"), **docs_by_tid(mongo_db, "sigint")}
    assert docs[raised]["state"] == JOB_STATE_ERROR and docs[raised]["error"]["type"] == "KeyboardInterrupt"
    assert docs[ok]["state"] == JOB_STATE_DONE
    assert docs[slow]["state"] == JOB_STATE_DONE and "SIGINT received" in s.output()


def test_sigterm_during_start_up_exits_0(mongo_url, tmp_path):
    """A SIGTERM while the worker is still importing is a clean stop (exit 0), not a death by signal."""
    with Procs(tmp_path) as procs:
        w = procs.worker(mongo_url, env=NO_SECRET)

        def catches_sigterm() -> bool:
            try:
                with open(f"/proc/{w.pid}/status") as f:
                    caught = next(line for line in f if line.startswith("SigCgt:"))
            except (FileNotFoundError, StopIteration):
                return False
            return bool(int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
        wait_until(catches_sigterm, 20, interval=0.002, what="a SIGTERM handler")
        w.signal(signal.SIGTERM)
        assert procs.wait([w], timeout=20) == [0], procs.report()
    # the start-up handler stopped it, not the worker's own (which logs what it does with the trial)
    assert "no new trials will be claimed" not in w.output() and "during start-up" in w.output()


@pytest.mark.slow
def test_max_disconnect_is_honoured_to_within_two_seconds(mongo_url, mongo_db, tmp_path, mongo_server_url):
    """The outage clock starts with the first failed call, the backoff never sleeps past the limit,
    and each call waits at most a second for a server: exit 3 at the limit plus at most 2 s."""
    from tests.tcp_proxy import TcpProxy
    host, port = mongo_server_url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)
    dbname = mongo_url.rsplit("/", 1)[1]
    limit = 6.0
    with TcpProxy(host, int(port)) as proxy, Procs(tmp_path) as procs:
        w = procs.worker(f"mongodb://127.0.0.1:{proxy.port}/{dbname}", "--max-disconnect", str(limit),
                         env=NO_SECRET)
        wait_until(lambda: mongo_db.workers.find_one({"pid": w.pid}), 30, what="the worker's first heartbeat")
        proxy.pause(120)
        t0 = time.monotonic()
        assert procs.wait([w], timeout=60) == [3], procs.report()
        elapsed = time.monotonic() - t0
    assert "--max-disconnect" in w.output()
    assert limit - 0.5 <= elapsed <= limit + 2.0, f"exited {elapsed:.1f}s after the outage began"
