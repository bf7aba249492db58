"""Distributed mode with separate OS processes on the real test server (one server per session).

Drivers run in the test process (fmin in a thread where two run at once) or as their own
processes; workers are ``bin/hpo-mongo-worker`` processes. Every wait has a deadline
(tests/helpers_distributed.py kills the processes and shows their output on timeout).
"""
from __future__ import annotations

import json
import textwrap
import threading
from collections import Counter

import numpy as np

from hpo_mongo import Trials, fmin, hp, rand
from hpo_mongo.exceptions import AllTrialsFailed
from hpo_mongo.trials.documents import JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_NEW, JOB_STATE_RUNNING, new_trial_doc
from hpo_mongo.trials.mongo.queue import MongoJobQueue
from hpo_mongo.trials.mongo.store import MongoTrials
from hpo_mongo.worker.loop import Worker, WorkerConfig

from tests.helpers_distributed import LIGHT_IMPORT, Procs, always_fails, fails_below_zero, quadratic, tagged, wait_until


SPACE = {"x": hp.uniform("x", -3, 3), "y": hp.normal("y", 0, 1)}


def _pids(trials) -> set[int]:
    return {d["worker"]["pid"] for d in trials if d.get("worker")}


def test_six_processes_race_to_claim_200_trials_and_allocate_tids(mongo_url, tmp_path):
    t = MongoTrials(mongo_url, exp_key="race")
    t.ensure_indexes()
    tids = t.new_trial_ids(200)
    t.insert_trial_docs([new_trial_doc(tid, {"x": [float(tid)]}, exp_key="race") for tid in tids])
    go = tmp_path / "go"
    claimer = LIGHT_IMPORT + textwrap.dedent("""
        import json, os, sys, time
        from hpo_mongo.trials.mongo.queue import MongoJobQueue
        url, out, ready, go = sys.argv[1:5]
        h = MongoJobQueue.connect(url)
        h.jobs.find_one({})                      # connected before the start line
        open(ready, "w").close()
        while not os.path.exists(go):
            time.sleep(0.005)
        owner = f"claimer:{os.getpid()}"
        # first act as a driver: tids from the shared counter, racing the other processes
        new_tids = [i for _ in range(10) for i in h.new_tids(1)]
        got = []
        while True:
            doc = h.claim(owner, exp_key="race", lease_timeout=30.0, max_attempts=3)
            if doc is None:
                break
            got.append([doc["tid"], str(doc["_id"]), doc["attempt"], doc["owner"]])
        json.dump({"owner": owner, "claimed": got, "tids": new_tids}, open(out, "w"))
    """)
    with Procs(tmp_path) as procs:
        claimers = [procs.python(claimer, mongo_url, str(tmp_path / f"out{i}.json"), str(tmp_path / f"ready{i}"),
                                 str(go), name=f"claimer{i}") for i in range(6)]
        wait_until(lambda: all((tmp_path / f"ready{i}").exists() for i in range(6)) or
                   any(p.returncode not in (None, 0) for p in claimers), timeout=30, what="6 claimers ready")
        go.touch()
        assert procs.wait(claimers, timeout=30) == [0] * 6, procs.report()
    results = [json.loads((tmp_path / f"out{i}.json").read_text()) for i in range(6)]
    claimed = Counter(c[0] for r in results for c in r["claimed"])
    assert sorted(claimed) == tids and set(claimed.values()) == {1}  # every trial claimed exactly once
    assert sum(1 for r in results if r["claimed"]) >= 2  # they really raced
    allocated = sorted(tid for r in results for tid in r["tids"])  # 6 concurrent "drivers"
    assert allocated == list(range(200, 260))
    by_tid = {c[0]: (r["owner"], c) for r in results for c in r["claimed"]}
    for doc in t.handle.jobs.find({"exp_key": "race"}):
        owner, c = by_tid[doc["tid"]]
        assert doc["state"] == JOB_STATE_RUNNING and doc["attempt"] == 1 == c[2]
        assert doc["owner"] == owner == c[3] and str(doc["_id"]) == c[1]


def test_driver_and_three_workers_match_an_in_memory_run(mongo_url, tmp_path):
    with Procs(tmp_path) as procs:
        workers = [procs.worker(mongo_url, "--exp-key", "e60", "--no-subprocess", name=f"w{i}") for i in range(3)]
        # all three up (signal handlers installed) before the run: a SIGTERM during python's
        # start-up would kill a worker instead of stopping it cleanly
        wait_until(lambda: all("serving" in w.output() for w in workers), timeout=30, what="3 workers serving")
        mt = MongoTrials(mongo_url, exp_key="e60", poll_interval=0.02)
        best = fmin(quadratic, SPACE, algo=rand.suggest, max_evals=60, trials=mt, max_queue_len=3,
                    rstate=np.random.default_rng(2024), show_progressbar=False)
        for w in workers:
            w.signal()  # SIGTERM: a clean stop
        assert procs.wait(workers, timeout=30) == [0, 0, 0], procs.report()
    mem = Trials()
    best_mem = fmin(quadratic, SPACE, algo=rand.suggest, max_evals=60, trials=mem, max_queue_len=3,
                    rstate=np.random.default_rng(2024), show_progressbar=False)
    assert len(mt) == 60 and all(d["state"] == JOB_STATE_DONE for d in mt)
    def as_set(trials):
        return {(d["misc"]["vals"]["x"][0], d["misc"]["vals"]["y"][0]) for d in trials}
    assert as_set(mt) == as_set(mem)
    assert best == best_mem
    assert _pids(mt) <= {w.pid for w in workers}
    assert sorted(d["tid"] for d in mt) == list(range(60))


def test_exp_key_isolation_and_a_worker_serving_every_experiment(mongo_url, tmp_path):
    results: dict[str, object] = {}

    def driver(key, n):
        trials = MongoTrials(mongo_url, exp_key=key, poll_interval=0.02)
        try:
            fmin(tagged, {"x": hp.uniform("x", -1, 1)}, algo=rand.suggest, max_evals=n, trials=trials,
                 max_queue_len=2, show_progressbar=False)
        except BaseException as e:  # noqa: BLE001
            results[key + "_error"] = e
        results[key] = trials
    with Procs(tmp_path) as procs:
        # bound to an experiment with nothing queued: it ignores a's and b's trials, then its
        # reserve timeout ends it; the worker without --exp-key serves both experiments
        bound = procs.worker(mongo_url, "--exp-key", "other", "--reserve-timeout", "1.5", "--no-subprocess",
                             name="bound")
        free = procs.worker(mongo_url, "--no-subprocess", name="any")
        threads = [threading.Thread(target=driver, args=(k, n)) for k, n in (("a", 10), ("b", 7))]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        assert procs.wait([bound], timeout=30) == [0], procs.report()
        free.signal()
        assert procs.wait([free], timeout=20) == [0], procs.report()
    assert not any(k.endswith("_error") for k in results), results
    a, b = results["a"], results["b"]
    assert len(a) == 10 and {d["exp_key"] for d in a} == {"a"}
    assert len(b) == 7 and {d["exp_key"] for d in b} == {"b"}
    assert not {d["tid"] for d in a} & {d["tid"] for d in b}  # tids are global to the database
    assert {d["result"]["pid"] for d in a} == {d["result"]["pid"] for d in b} == {free.pid}
    assert all(d["state"] == JOB_STATE_DONE for d in list(a) + list(b))
    assert "serving exp_key 'other'" in bound.output() or "other" in bound.output()
    assert MongoTrials(mongo_url, exp_key="other").trials == []


def test_failing_objective_worker_processes(mongo_url, tmp_path):
    """ERROR with traceback and the worker goes on; --max-consecutive-failures stops one (exit 1)."""
    with Procs(tmp_path) as procs:
        w = procs.worker(mongo_url, "--exp-key", "f", "--no-subprocess", name="keeps-going")
        quitter = procs.worker(mongo_url, "--exp-key", "boom", "--max-consecutive-failures", "3", "--no-subprocess",
                               name="quitter")
        boom = MongoTrials(mongo_url, exp_key="boom", poll_interval=0.02)
        box: dict = {}

        def drive():
            try:
                fmin(always_fails, {"x": hp.uniform("x", -1, 1)}, algo=rand.suggest, max_evals=5, max_queue_len=5,
                     trials=boom, show_progressbar=False)
            except AllTrialsFailed as e:
                box["error"] = e
        th = threading.Thread(target=drive)
        th.start()
        t = MongoTrials(mongo_url, exp_key="f", poll_interval=0.02)
        fmin(fails_below_zero, {"x": hp.uniform("x", -1, 1)}, algo=rand.suggest, max_evals=12, trials=t,
             rstate=np.random.default_rng(3), show_progressbar=False)
        assert w.returncode is None  # still serving after errors
        errors = [d for d in t if d["state"] == JOB_STATE_ERROR]
        assert errors and len(errors) < 12
        assert all("ValueError" in d["error"]["traceback"] and "is negative" in d["error"]["traceback"] for d in errors)
        w.signal()
        assert procs.wait([w, quitter], timeout=30) == [0, 1], procs.report()
        assert "3 consecutive failed trials" in quitter.output()
        assert boom.count_by_state_unsynced(JOB_STATE_ERROR) == 3
        wait_until(lambda: boom.count_by_state_unsynced(JOB_STATE_NEW) == 2, timeout=10, what="the 2 other trials")
        finisher = Worker(MongoJobQueue.connect(mongo_url),
                          WorkerConfig(exp_key="boom", max_jobs=2, poll_interval=0.02, subprocess=False))
        assert finisher.run() == 0
        th.join(20)
    assert isinstance(box.get("error"), AllTrialsFailed)
