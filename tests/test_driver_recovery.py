"""The driver under a database that loses or deletes what it holds, and through connection drops at
set-up — on the real test server, with the driver and the workers as separate OS processes.

- a NEW trial deleted under a running driver is queued again and fmin completes max_evals;
- the test server killed -9 and restarted on the same port, empty (memory backend) or without its
  last writes (H2): the driver notices, restores the finished trials it holds, never reuses a tid,
  and completes — within a deadline;
- a connection drop during fmin's set-up (indexes, domain, experiment document) is ridden out.
"""
from __future__ import annotations

import json
import textwrap

import pymongo
import pytest

from hpo_mongo.trials.documents import JOB_STATE_DONE, JOB_STATE_NEW

from tests.helpers_distributed import DRIVER_SCRIPT as DRIVER, Procs, wait_until

pytestmark = pytest.mark.server

def _db(url: str):
    base, _, name = url.rpartition("/")
    client = pymongo.MongoClient(base + "/", serverSelectionTimeoutMS=5000, tz_aware=True)
    return client, client[name]


def _driver_trials(proc) -> list[list]:
    line = [ln for ln in proc.output().splitlines() if ln.startswith("DRIVER DONE ")][-1]
    return json.loads(line[len("DRIVER DONE "):])


def test_a_new_trial_deleted_under_a_running_driver_is_queued_again(mongo_url, tmp_path):
    client, db = _db(mongo_url)
    n = 6
    with Procs(tmp_path) as procs:
        drv = procs.python(DRIVER, mongo_url, "del", str(n), "0.0", name="driver")
        # no worker yet: the driver queues 2 NEW trials and waits
        wait_until(lambda: db.jobs.count_documents({"exp_key": "del", "state": JOB_STATE_NEW}) >= 2, timeout=60,
                   what="2 NEW trials queued")
        victim = db.jobs.find_one({"exp_key": "del", "state": JOB_STATE_NEW}, sort=[("tid", 1)])
        db.jobs.delete_one({"_id": victim["_id"]})
        worker = procs.worker(mongo_url, "--exp-key", "del", "--no-subprocess", name="worker")
        assert procs.wait([drv], timeout=60) == [0], procs.report()
        worker.signal()
        assert procs.wait([worker], timeout=30) == [0], procs.report()
        log = drv.output()
    docs = list(db.jobs.find({"exp_key": "del"}))
    tids = [d["tid"] for d in docs]
    assert len(tids) == len(set(tids)) and victim["tid"] not in tids
    assert sum(d["state"] == JOB_STATE_DONE for d in docs) == n == len(docs)
    assert sorted(t[0] for t in _driver_trials(drv)) == sorted(tids)
    assert log.count("vanished") == 1 and f"tid {victim['tid']}" in log, log
    client.close()


@pytest.mark.parametrize("backend", ["memory", pytest.param("h2", marks=pytest.mark.slow)])
def test_server_killed_and_restarted_under_a_running_driver(backend, server_process, tmp_path):
    """memory: the restarted server is empty; h2: it lost its last writes (about a second)."""
    server = server_process(h2_file=tmp_path / "db.mv" if backend == "h2" else None)
    url = f"{server.url}/reset"
    client, db = _db(url)
    n = 16
    with Procs(tmp_path) as procs:
        drv = procs.python(DRIVER, url, "rs", str(n), "0.05", name="driver")
        workers = [procs.worker(url, "--exp-key", "rs", "--no-subprocess", name=f"w{i}") for i in range(2)]
        wait_until(lambda: db.jobs.count_documents({"exp_key": "rs", "state": JOB_STATE_DONE}) >= 5, timeout=60,
                   what="5 DONE trials")
        before = {d["tid"]: d for d in db.jobs.find({"exp_key": "rs"})}
        server.restart(kill=True)
        assert procs.wait([drv], timeout=60) == [0], procs.report()  # the driver's deadline
        for w in workers:
            w.signal()
        procs.wait(workers, timeout=30)
        log = drv.output()
    docs = list(db.jobs.find({"exp_key": "rs"}))
    tids = [d["tid"] for d in docs]
    assert len(tids) == len(set(tids)), sorted(tids)
    assert sum(d["state"] == JOB_STATE_DONE for d in docs) == n
    x = {d["tid"]: d["misc"]["vals"]["x"][0] for d in docs}
    for tid, old in before.items():  # no tid the driver had seen is reused for another point
        assert tid not in x or x[tid] == old["misc"]["vals"]["x"][0], tid
    # the finished trials the driver had seen were written back: all but the results written just
    # before the kill, which the driver had not refreshed yet (at most one per worker)
    done_before = {tid for tid, d in before.items() if d["state"] == JOB_STATE_DONE}
    assert len(done_before - set(x)) <= len(workers), (sorted(done_before), sorted(x))
    assert {t[0]: t[2] for t in _driver_trials(drv)} == x
    assert db.experiments.find_one({"exp_key": "rs"})["status"] == "done"
    assert db["fs.files"].count_documents({"filename": {"$regex": "^domain/"}}) == 1
    assert "lost" in log, log
    client.close()


def test_connections_dropped_during_fmin_setup_are_ridden_out(mongo_server_url, mongo_url, mongo_db, tmp_path):
    import numpy as np

    from hpo_mongo import fmin, hp, rand
    from hpo_mongo.trials.mongo.store import MongoTrials
    from tests.helpers_distributed import quadratic
    from tests.tcp_proxy import TcpProxy

    host, port = mongo_server_url.split("://", 1)[1].rsplit(":", 1)
    with Procs(tmp_path) as procs, TcpProxy(host, int(port)) as proxy:
        worker = procs.worker(mongo_url, "--exp-key", "setup", "--no-subprocess")
        wait_until(lambda: "serving" in worker.output(), timeout=30, what="the worker serving")
        # a short server selection timeout, so the outage reaches the driver's retry instead of
        # being waited out inside pymongo
        url = f"mongodb://127.0.0.1:{proxy.port}/{mongo_url.rsplit('/', 1)[1]}?serverSelectionTimeoutMS=300"
        trials = MongoTrials(url, exp_key="setup", refresh=False, poll_interval=0.02)
        proxy.pause(1.5)  # fmin's first steps — the set-up: indexes, domain, experiment — meet the outage
        fmin(quadratic, {"x": hp.uniform("x", -1, 1)}, algo=rand.suggest, max_evals=3, trials=trials,
             rstate=np.random.default_rng(0), show_progressbar=False)
        assert proxy.refused > 0
        worker.signal()
        assert procs.wait([worker], timeout=30) == [0], procs.report()
    assert [t["state"] for t in trials] == [JOB_STATE_DONE] * 3
    assert mongo_db.experiments.find_one({"exp_key": "setup"})["status"] == "done"
    assert "tid_unique" in mongo_db.jobs.index_information()


@pytest.mark.slow
def test_two_drivers_on_one_experiment_do_not_overshoot_max_evals(mongo_url, tmp_path):
    """Both drivers queue at once (no worker yet, a queue as long as max_evals): the room is counted on
    the server before each suggestion, so together they queue max_evals trials (one more at worst)."""
    client, db = _db(mongo_url)
    n = 10
    go = tmp_path / "go"
    driver = textwrap.dedent("""
        import os, sys, time
        import numpy as np
        from hpo_mongo import fmin, hp, rand
        from hpo_mongo.exceptions import AllTrialsFailed
        from hpo_mongo.trials.mongo.store import MongoTrials
        trials = MongoTrials(sys.argv[1], exp_key="two", poll_interval=0.02)
        trials.count_by_state_unsynced(0)  # connected
        open(sys.argv[2] + ".ready." + str(os.getpid()), "w").close()
        while not os.path.exists(sys.argv[2]):
            time.sleep(0.002)
        try:  # no worker: nothing is evaluated, fmin stops at its timeout
            fmin(lambda cfg: cfg["x"] ** 2, {"x": hp.uniform("x", -5, 5)}, algo=rand.suggest,
                 max_evals=int(sys.argv[3]), trials=trials, show_progressbar=False, max_queue_len=int(sys.argv[3]),
                 timeout=2.0)
        except AllTrialsFailed:
            pass
    """)
    with Procs(tmp_path) as procs:
        drivers = [procs.python(driver, mongo_url, str(go), str(n), name=f"driver{i}") for i in range(2)]
        wait_until(lambda: len(list(tmp_path.glob("go.ready.*"))) == 2, timeout=60, what="both drivers ready")
        go.touch()
        assert procs.wait(drivers, timeout=60) == [0, 0], procs.report()
    docs = list(db.jobs.find({"exp_key": "two"}, {"tid": 1}))
    assert n <= len(docs) <= n + 1, len(docs)
    assert len({d["tid"] for d in docs}) == len(docs)
    client.close()
