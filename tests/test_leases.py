"""Leases, requeue, crashes, signals, driver restart, outages and signed payloads — on a real server,
with workers and drivers as separate OS processes.

Timing: heartbeat 0.2 s, stale timeout 1.5 s (>= 5x the heartbeat so a busy 2-core machine does not
requeue live trials), poll 0.05 s. Every wait polls the database with a deadline.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hpo_mongo.trials.session import Run

pymongo = pytest.importorskip("pymongo")

from hpo_mongo import hp  # noqa: E402
from hpo_mongo.domain import Domain  # noqa: E402
from hpo_mongo.trials.documents import (JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_NEW,  # noqa: E402
                                        JOB_STATE_RUNNING, new_trial_doc)

from tests.helpers_distributed import DRIVER_SCRIPT as DRIVER, Procs as _Procs, wait_until  # noqa: E402

pytestmark = [pytest.mark.server]

REPO = Path(__file__).resolve().parents[1]
HEARTBEAT = 0.2
STALE = 1.5
POLL = 0.05
SECRET = "lease-test-secret-0123456789"
MODES = ["sleep", "exit", "marker"]
SPACE = {"mode": hp.choice("mode", MODES), "t": hp.uniform("t", 0, 100)}


def make_objective(marker: str | None = None):
    """A by-value objective (a closure): sleep ``t`` seconds, or os._exit(7), or write ``marker``."""
    def objective(cfg):
        import os as _os
        import time as _time
        if cfg["mode"] == "exit":
            _os._exit(7)
        if cfg["mode"] == "marker" and marker:
            with open(marker, "w") as f:
                f.write("executed")
        _time.sleep(cfg["t"])
        return {"loss": float(cfg["t"]), "status": "ok", "pid": _os.getpid()}
    return objective


# ----------------------------------------------------------------------------- helpers
#: the lease settings every worker of this module runs with
LEASE_FLAGS = ("--heartbeat-interval", str(HEARTBEAT), "--lease-timeout", str(STALE), "--log-level", "INFO")


@pytest.fixture
def url(mongo_url):
    """A fresh database on the test server for each test."""
    return mongo_url


def _db(url):
    client = pymongo.MongoClient(url, serverSelectionTimeoutMS=5000, tz_aware=True)
    return client, client.get_default_database()


class Procs(_Procs):
    """The module's processes: workers with its lease settings (:data:`LEASE_FLAGS`)."""

    def worker(self, url: str, *extra: str, **kw):  # type: ignore[override]
        return super().worker(url, *LEASE_FLAGS, *extra, poll=POLL, **kw)


@pytest.fixture
def procs(tmp_path):
    with Procs(tmp_path) as ps:
        yield ps


def wait_for(pred, timeout: float, what: str, interval: float = 0.02):
    return wait_until(pred, timeout=timeout, interval=interval, what=what)


def queue(url: str, exp_key: str, points: list[tuple[str, float]], *, objective=None,
          secret: str | None = None):
    """Store the domain and the experiment as fmin would, and queue one NEW trial per (mode, t)."""
    from hpo_mongo.trials.mongo.store import MongoTrials
    trials = MongoTrials(url, exp_key=exp_key, secret=secret.encode() if secret else None, refresh=False)
    trials.open_session(Run(domain=Domain(objective or make_objective(), SPACE), max_evals=len(points)))
    ids = trials.new_trial_ids(len(points))
    trials.insert_trial_docs([new_trial_doc(tid, {"mode": [MODES.index(m)], "t": [t]}, exp_key=exp_key)
                              for tid, (m, t) in zip(ids, points, strict=True)])
    return ids


def states(db, exp_key) -> dict[int, dict]:
    return {d["tid"]: d for d in db.jobs.find({"exp_key": exp_key})}


def exit_code(p, timeout: float) -> int:
    try:
        return p.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"process {p.pid} did not exit within {timeout}s") from None


def _closed_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_complete(db, exp_key, n):
    docs = list(db.jobs.find({"exp_key": exp_key}))
    tids = [d["tid"] for d in docs]
    assert len(tids) == len(set(tids)), f"duplicate tids: {sorted(tids)}"
    by_state = {}
    for d in docs:
        by_state.setdefault(d["state"], []).append(d["tid"])
    assert len(by_state.get(JOB_STATE_DONE, [])) == n, by_state
    assert not by_state.get(JOB_STATE_RUNNING) and not by_state.get(JOB_STATE_NEW), by_state
    return docs


def start_driver(procs: Procs, url: str, exp_key: str, n: int, sleep: float):
    """The driver script, always from the same file: a restarted driver pickles the same objective."""
    script = procs.dir / "driver.py"
    script.write_text(DRIVER)
    return procs.start("driver", [sys.executable, str(script), url, exp_key, str(n), str(sleep)])


# ----------------------------------------------------------------------------- tests
def test_stale_trial_requeued_then_error_after_max_attempts(url):
    """The lease rules on the server clock: requeue, then ERROR 'lost N times' (no process needed)."""
    import datetime as dt
    from hpo_mongo.trials.mongo import jobs as J
    from hpo_mongo.trials.mongo.connection import server_time
    client, db = _db(url)
    try:
        now = server_time(db)
        old = now - dt.timedelta(seconds=60)
        base = {"exp_key": "e", "state": JOB_STATE_RUNNING, "owner": "gone:1", "worker": {"host": "gone", "pid": 1},
                "heartbeat": old, "book_time": old, "version": 3, "result": {"status": "running"},
                "misc": {"vals": {}}}
        db.jobs.insert_many([
            {**base, "tid": 0, "attempt": 1, "requeues": 0},
            {**base, "tid": 1, "attempt": 3, "requeues": 2},
            {**base, "tid": 2, "attempt": 1, "requeues": 0, "heartbeat": now},  # alive
        ])
        events = J.requeue_stale(db.jobs, default_lease=STALE, default_max_attempts=3, now=server_time(db))
        assert sorted((e["tid"], e["outcome"]) for e in events) == [(0, "requeued"), (1, "failed")]
        docs = states(db, "e")
        assert docs[0]["state"] == JOB_STATE_NEW and docs[0]["owner"] is None and docs[0]["requeues"] == 1
        assert docs[0]["heartbeat"] is None and docs[0]["version"] == 4
        assert docs[1]["state"] == JOB_STATE_ERROR and "lost 3 times" in docs[1]["error"]["message"]
        assert docs[1]["result"]["status"] == "fail" and "lost 3 times" in docs[1]["result"]["failure"]
        assert docs[2]["state"] == JOB_STATE_RUNNING
        # a worker that lost its lease cannot write its result
        stale_claim = {"_id": docs[0]["_id"], "owner": "gone:1", "attempt": 1}
        assert J.finish(db.jobs, stale_claim, JOB_STATE_DONE, {"status": "ok", "loss": 1.0}) is False
        assert J.refresh_lease(db.jobs, stale_claim) is False
    finally:
        client.close()


def test_kill9_worker_mid_trial_is_requeued(url, procs):
    client, db = _db(url)
    queue(url, "k9", [("sleep", 0.6)] * 4)
    workers = [procs.worker(url), procs.worker(url)]
    running = wait_for(lambda: db.jobs.find_one({"exp_key": "k9", "state": JOB_STATE_RUNNING}), 20,
                       "a RUNNING trial")
    victim = running["worker"]["pid"]
    w1 = next(w for w in workers if w.pid == victim)
    w2 = next(w for w in workers if w.pid != victim)
    os.kill(victim, signal.SIGKILL)
    w1.wait(5)
    wait_for(lambda: db.jobs.count_documents({"exp_key": "k9", "state": JOB_STATE_DONE}) == 4, 25,
             "4 DONE trials")
    docs = check_complete(db, "k9", 4)
    lost = next(d for d in docs if d["tid"] == running["tid"])
    assert lost["requeues"] == 1 and lost["attempt"] == 2 and lost["worker"]["pid"] == w2.pid
    assert sum(d["requeues"] for d in docs) == 1

    # the survivor again: a trial taken away from it while it runs (requeued by hand, as
    # `hpo-mongo requeue` or another requeuer would) is noticed at the next heartbeat: the child is
    # stopped, nothing is written, and the worker goes on (here: claims it again and finishes it)
    queue(url, "lost", [("sleep", 1.0)])
    first = wait_for(lambda: db.jobs.find_one({"exp_key": "lost", "state": JOB_STATE_RUNNING}), 20, "RUNNING")
    res = db.jobs.update_one({"_id": first["_id"], "attempt": 1},
                             {"$set": {"state": JOB_STATE_NEW, "owner": None, "heartbeat": None},
                              "$inc": {"version": 1}})
    assert res.modified_count == 1
    doc = wait_for(lambda: db.jobs.find_one({"exp_key": "lost", "state": JOB_STATE_DONE}), 20, "DONE")
    assert doc["attempt"] == 2
    w2.send_signal(signal.SIGTERM)
    assert exit_code(w2, 10) == 0
    log = procs.log(w2)  # complete once the worker has exited (it logs "done" after the result write)
    assert "lost its lease" in log and "stopping its evaluation" in log
    assert log.count(f"trial {doc['tid']} done") == 1
    # the workers collection: both registered, w2 exited cleanly
    w = {d["pid"]: d for d in db.workers.find()}
    assert w2.pid in w and w[w2.pid]["status"] == "exited" and w[w2.pid]["current"] is None
    client.close()


def test_driver_killed_and_restarted(url, procs):
    client, db = _db(url)
    n = 10
    drv = start_driver(procs, url, "drv", n, 0.1)
    workers = [procs.worker(url)]
    wait_for(lambda: db.jobs.count_documents({"exp_key": "drv", "state": JOB_STATE_DONE}) >= 3, 30,
             "3 DONE trials")
    drv.kill()
    drv.wait(5)
    drv2 = start_driver(procs, url, "drv", n, 0.1)
    assert exit_code(drv2, 40) == 0, procs.log(drv2)
    assert "DRIVER DONE" in procs.log(drv2)
    check_complete(db, "drv", n)
    assert db.jobs.count_documents({"exp_key": "drv"}) == n
    domains = list(db["fs.files"].find({"filename": {"$regex": "^domain/"}}))
    assert len(domains) == 1, [d["filename"] for d in domains]
    assert db.experiments.count_documents({"exp_key": "drv"}) == 1
    for w in workers:
        w.send_signal(signal.SIGTERM)
    assert [exit_code(w, 10) for w in workers] == [0]
    client.close()


def test_sigterm_grace_period(url, procs):
    client, db = _db(url)
    queue(url, "long", [("sleep", 30.0)])
    queue(url, "long2", [("sleep", 30.0)])
    queue(url, "short", [("sleep", 2.5)])  # long enough to be still running when the others are
    # three workers at once (each on its own experiment) to save start-up time
    w_long = procs.worker(url, "--grace-period", "0.5", exp_key="long")
    w_twice = procs.worker(url, "--grace-period", "30", exp_key="long2")
    w_short = procs.worker(url, "--grace-period", "10", exp_key="short")
    for key, w in (("long", w_long), ("long2", w_twice), ("short", w_short)):
        wait_for(lambda key=key: db.jobs.find_one({"exp_key": key, "state": JOB_STATE_RUNNING}), 20, f"{key} RUNNING")
        # the worker has taken the trial on (a signal during the claim itself gives it back at once)
        wait_for(lambda w=w: "attempt 1) claimed" in procs.log(w), 20, f"{key} claimed in the worker's log")
    t0 = time.monotonic()
    for w in (w_long, w_twice, w_short):
        w.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    w_twice.send_signal(signal.SIGINT)  # a second signal releases at once

    # a long trial: released to NEW after the grace period, worker exits 0
    assert exit_code(w_long, 10) == 0
    assert 0.4 <= time.monotonic() - t0 < 5
    doc = db.jobs.find_one({"exp_key": "long"})
    assert doc["state"] == JOB_STATE_NEW and doc["owner"] is None and doc.get("error") is None
    assert doc["attempt"] == 1 and doc["requeues"] == 0  # a voluntary release is not a lost lease
    assert "released back to NEW (grace period expired)" in procs.log(w_long)

    # the second signal: released at once although the grace period is 30 s
    assert exit_code(w_twice, 5) == 0
    assert db.jobs.find_one({"exp_key": "long2"})["state"] == JOB_STATE_NEW
    assert "released back to NEW (second signal)" in procs.log(w_twice)

    # a short trial finishes within the grace period and is recorded
    assert exit_code(w_short, 10) == 0
    doc = db.jobs.find_one({"exp_key": "short"})
    assert doc["state"] == JOB_STATE_DONE and doc["result"]["loss"] == 2.5
    assert "has 10s (--grace-period) to finish" in procs.log(w_short)
    workers = {d["pid"]: d for d in db.workers.find()}
    assert {workers[w.pid]["status"] for w in (w_long, w_twice, w_short)} == {"exited"}
    client.close()


def test_timeout_and_crash_in_child(url, procs):
    client, db = _db(url)
    tids = queue(url, "tc", [("sleep", 20.0), ("exit", 0.0), ("sleep", 0.01)])
    w = procs.worker(url, "--trial-timeout", "0.5", "--max-jobs", "3", exp_key="tc")
    # meanwhile: a worker that cannot reach any server exits 3 after --max-disconnect
    nowhere = procs.worker(f"mongodb://127.0.0.1:{_closed_port()}/x", "--max-disconnect", "1.5")
    assert exit_code(w, 25) == 0, procs.log(w)
    assert exit_code(nowhere, 20) == 3, procs.log(nowhere)
    assert "--max-disconnect" in procs.log(nowhere) and "unreachable" in procs.log(nowhere)
    docs = states(db, "tc")
    t_out, crash, ok = (docs[t] for t in tids)
    assert t_out["state"] == JOB_STATE_ERROR and t_out["error"]["type"] == "Timeout"
    assert t_out["result"]["failure"] == "timeout: trial exceeded 0.5 s"
    assert crash["state"] == JOB_STATE_ERROR and crash["error"]["type"] == "WorkerCrash"
    assert "exited with code 7" in crash["error"]["message"]
    assert ok["state"] == JOB_STATE_DONE and ok["result"]["pid"] != w.pid  # evaluated in a child
    # without a secret: one warning at start
    assert procs.log(w).count("without a secret") == 1
    client.close()


def test_outage_through_proxy(url, procs, mongo_server_url):
    from tests.tcp_proxy import TcpProxy
    server = mongo_server_url.split("://", 1)[1].split("/", 1)[0]
    host, port = server.rsplit(":", 1)
    dbname = url.rsplit("/", 1)[1]
    client, db = _db(url)
    n = 16
    with TcpProxy(host, int(port)) as proxy:
        # a short server selection timeout: reads fail during the pause instead of waiting it out
        # inside pymongo, so the clients' own retry (and its log line) is exercised
        purl = f"mongodb://127.0.0.1:{proxy.port}/{dbname}?serverSelectionTimeoutMS=500"
        drv = start_driver(procs, purl, "out", n, 0.1)
        workers = [procs.worker(purl)]
        wait_for(lambda: db.jobs.count_documents({"exp_key": "out", "state": JOB_STATE_DONE}) >= 4, 30,
                 "4 DONE trials")
        proxy.pause(3.0)
        assert exit_code(drv, 45) == 0, procs.log(drv)
        assert proxy.refused > 0
    check_complete(db, "out", n)
    assert db.jobs.count_documents({"exp_key": "out"}) == n
    logs = "".join(procs.log(p) for p in workers + [drv])
    assert "unreachable" in logs.lower()  # the outage was noticed (and ridden out)
    client.close()


def test_signed_payloads(url, procs, tmp_path):
    client, db = _db(url)
    marker = str(tmp_path / "EXECUTED")
    unsigned = queue(url, "unsigned", [("marker", 0.0)], objective=make_objective(marker))
    tampered = queue(url, "tampered", [("marker", 0.0)], objective=make_objective(marker), secret=SECRET)
    good = queue(url, "good", [("sleep", 0.01)], secret=SECRET)
    # tamper with the signed domain of "tampered": flip one byte in its GridFS chunk
    digest = db.experiments.find_one({"exp_key": "tampered"})["domain_hash"]
    f = db["fs.files"].find_one({"filename": f"domain/{digest}"})
    chunk = db["fs.chunks"].find_one({"files_id": f["_id"], "n": 0})
    data = bytearray(chunk["data"])
    data[len(data) // 2] ^= 0x5A
    db["fs.chunks"].update_one({"_id": chunk["_id"]}, {"$set": {"data": bytes(data)}})

    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    w = procs.worker(url, "--max-jobs", "3", "--secret-file", str(secret_file))
    assert exit_code(w, 25) == 0, procs.log(w)
    docs = {d["exp_key"]: d for d in db.jobs.find()}
    u, t, g = docs["unsigned"], docs["tampered"], docs["good"]
    assert u["tid"] == unsigned[0] and t["tid"] == tampered[0] and g["tid"] == good[0]
    assert u["state"] == JOB_STATE_ERROR and "payload is not signed but this worker requires signatures" \
        in u["error"]["message"]
    assert t["state"] == JOB_STATE_ERROR and "signature does not match" in t["error"]["message"]
    assert "PayloadSignatureError" in u["error"]["type"]
    assert g["state"] == JOB_STATE_DONE
    assert not os.path.exists(marker)
    assert db.experiments.find_one({"exp_key": "good"})["signed"] is True


def test_driver_queue_target_counts_live_workers(url):
    import datetime as dt
    from hpo_mongo.trials.mongo import jobs as J
    from hpo_mongo.trials.mongo.connection import server_time
    from hpo_mongo.trials.mongo.store import MongoTrials
    client, db = _db(url)
    trials = MongoTrials(url, exp_key="q", refresh=False)
    hooks = trials.open_session(Run(domain=Domain(make_objective(), SPACE), max_evals=10))
    try:
        assert hooks.queue_target(1) == 2  # no worker registered yet: max(2, max_queue_len)
        for i in range(5):
            J.upsert_worker(db.workers, f"h:{i}:x", {"host": "h", "pid": i, "status": "idle",
                                                     "serves_all": i < 3, "exp_key": None if i < 3 else "q"})
        J.upsert_worker(db.workers, "h:9:x", {"host": "h", "pid": 9, "status": "idle", "serves_all": False,
                                              "exp_key": "other"})
        J.upsert_worker(db.workers, "h:8:x", {"host": "h", "pid": 8, "status": "exited", "serves_all": True,
                                              "exp_key": None})
        db.workers.update_one({"_id": "h:4:x"}, {"$set": {"heartbeat": server_time(db) - dt.timedelta(hours=1)}})
        hooks._last_beat = 0.0
        hooks.tick()
        assert hooks.queue_target(1) == 4  # 3 serving every experiment + 1 serving "q"; dead/exited/other excluded
        assert hooks.queue_target(6) == 6
    finally:
        hooks.end("max_evals")
        client.close()
