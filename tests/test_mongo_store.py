"""MongoTrials (hpo_mongo.trials.mongo.store) on the real test server.

``db`` is the session's test server (``mongo_db`` from tests/mongo_server.py). mongomock cannot
stand in: it does not take pymongo 4's bulk writes, which queue a driver's trials in one round
trip; the same semantics run fast on the in-memory queue in tests/test_queue_contract.py.
"""
from __future__ import annotations

import datetime as dt
import pickle
import threading
import time

import numpy as np
import pytest

from hpo_mongo import fmin, hp, rand
from hpo_mongo.exceptions import AllTrialsFailed, DuplicateTrialError, InvalidParameterError
from hpo_mongo.trials.documents import (JOB_STATE_CANCEL, JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_NEW,
                                        JOB_STATE_RUNNING, new_trial_doc)
from hpo_mongo.trials.mongo import jobs as J
from hpo_mongo.trials.mongo.queue import MongoJobQueue
from hpo_mongo.trials.mongo.store import MongoTrials
from hpo_mongo.trials.queue import ANY_EXPERIMENT
from hpo_mongo.worker.loop import Worker, WorkerConfig

from tests.helpers_distributed import quadratic

SPACE = {"x": hp.uniform("x", -2, 2)}


@pytest.fixture
def db(mongo_db):
    return mongo_db


def _queue(trials: MongoTrials, n: int, x0: float = 0.0) -> list[int]:
    tids = trials.new_trial_ids(n)
    trials.insert_trial_docs([new_trial_doc(t, {"x": [x0 + i]}, exp_key=trials.exp_key) for i, t in enumerate(tids)])
    return tids


# ----------------------------------------------------------------------------- tids, inserts, refresh
def test_tids_are_global_consecutive_and_start_at_zero(db):
    a, b = MongoTrials(db, exp_key="a"), MongoTrials(db, exp_key="b")
    assert a.new_trial_ids(3) == [0, 1, 2]
    assert b.new_trial_ids(2) == [3, 4]  # global to the database, as in hyperopt
    assert a.new_trial_ids(1) == [5]
    assert db["counters"].find_one({"_id": "tid"})["seq"] == 5  # seq = last allocated tid
    assert a.new_trial_ids(0) == []


def test_insert_is_visible_after_refresh_with_store_fields(db):
    t = MongoTrials(db, exp_key="e")
    _queue(t, 2)
    assert t.trials == []  # as in hyperopt: inserts show after refresh()
    t.refresh()
    assert [d["tid"] for d in t.trials] == [0, 1]
    d = t.trials[0]
    assert d["state"] == JOB_STATE_NEW and d["exp_key"] == "e" and d["version"] == 0 and d["attempt"] == 0
    assert d["owner"] is None and d["result"] == {"status": "new"} and d["_attachments"] == []
    assert isinstance(d["updated_at"], dt.datetime) and isinstance(d["created_at"], dt.datetime)
    assert d["misc"]["vals"] == {"x": [0.0]} and d["misc"]["idxs"] == {"x": [0]}
    assert t.count_by_state_unsynced(JOB_STATE_NEW) == 2
    assert t.count_by_state_unsynced([JOB_STATE_RUNNING, JOB_STATE_DONE]) == 0
    assert t.count_by_state_synced(JOB_STATE_NEW) == 2


def test_duplicate_tid_is_refused(db):
    t = MongoTrials(db, exp_key="e")
    t.ensure_indexes()
    t.insert_trial_doc(new_trial_doc(7, {"x": [1.0]}, exp_key="e"))
    with pytest.raises(DuplicateTrialError, match="tid 7"):
        t.insert_trial_doc(new_trial_doc(7, {"x": [2.0]}, exp_key="e"))


def test_exp_key_isolation_in_refresh_count_and_views(db):
    a, b, default = MongoTrials(db, exp_key="a"), MongoTrials(db, exp_key="b"), MongoTrials(db)
    _queue(a, 2)
    _queue(b, 3)
    _queue(default, 1)
    for t in (a, b, default):
        t.refresh()
    assert {d["exp_key"] for d in a} == {"a"} and len(a) == 2
    assert {d["exp_key"] for d in b} == {"b"} and len(b) == 3
    assert [d["exp_key"] for d in default] == [None]
    assert a.count_by_state_unsynced(JOB_STATE_NEW) == 2
    v = a.view(exp_key="b")
    assert isinstance(v, MongoTrials) and v.exp_key == "b" and len(v) == 3 and v.handle is a.handle


def test_refresh_is_incremental_and_dedupes_by_version(db):
    t = MongoTrials(db, exp_key="e", refresh_overlap=0.5)
    _queue(t, 3)
    t.refresh()
    first = t.trials[0]
    # a worker-style write: version+1 and updated_at from the server clock → picked up
    t.jobs.update_one({"_id": first["_id"]}, {"$set": {"state": JOB_STATE_RUNNING},
                                              "$currentDate": {"updated_at": True}, "$inc": {"version": 1}})
    t.refresh()
    assert t.trials[0]["state"] == JOB_STATE_RUNNING and t.trials[0]["version"] == 1
    assert first["state"] == JOB_STATE_NEW  # returned documents are replaced, never mutated
    # a change without a version bump is ignored (de-duplication by _id and version)
    t.jobs.update_one({"_id": first["_id"]}, {"$set": {"owner": "sneaky"}, "$currentDate": {"updated_at": True}})
    t.refresh()
    assert t.trials[0]["owner"] is None
    # the query only asks for documents updated since the last refresh minus the overlap window:
    # a document whose updated_at lies before that window is not fetched again
    old = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
    t.jobs.update_one({"_id": t.trials[1]["_id"]}, {"$set": {"state": JOB_STATE_DONE, "updated_at": old},
                                                     "$inc": {"version": 1}})
    t.refresh()
    assert t.trials[1]["state"] == JOB_STATE_NEW
    fresh = MongoTrials(db, exp_key="e")  # a new store reads everything
    assert fresh.trials[1]["state"] == JOB_STATE_DONE
    # documents stay sorted by tid
    assert [d["tid"] for d in fresh.trials] == sorted(d["tid"] for d in fresh.trials)


def test_delete_all_removes_trials_attachments_and_experiment(db):
    a, b = MongoTrials(db, exp_key="a"), MongoTrials(db, exp_key="b")
    _queue(a, 2)
    _queue(b, 1)
    a.refresh()
    a.trial_attachments(a.trials[0])["log"] = b"hello"
    a.attachments["notes"] = b"n"
    db["experiments"].insert_one({"exp_key": "a"})
    a.delete_all()
    assert len(a) == 0 and a.count_by_state_unsynced(JOB_STATE_NEW) == 0
    assert db["jobs"].count_documents({"exp_key": "b"}) == 1
    assert db["fs.files"].count_documents({}) == 0
    assert db["experiments"].count_documents({"exp_key": "a"}) == 0
    _queue(a, 1)
    a.refresh()
    assert len(a) == 1


def test_delete_all_with_condition(db):
    t = MongoTrials(db, exp_key="e")
    _queue(t, 3)
    t.jobs.update_one({"tid": 1}, {"$set": {"state": JOB_STATE_ERROR}})
    t.delete_all({"state": JOB_STATE_ERROR})
    assert [d["tid"] for d in t.trials] == [0, 2]


# ----------------------------------------------------------------------------- attachments
def test_experiment_attachments(db):
    a, b = MongoTrials(db, exp_key="a"), MongoTrials(db, exp_key="b")
    a.attachments["model"] = b"v1"
    a.attachments["model"] = b"v2"  # overwrite keeps one file
    a.attachments["other"] = b"o"
    b.attachments["model"] = b"b's"
    assert a.attachments["model"] == b"v2" and b.attachments["model"] == b"b's"
    assert sorted(a.attachments) == ["model", "other"] and len(a.attachments) == 2
    assert "model" in a.attachments and "nope" not in a.attachments
    assert db["fs.files"].count_documents({"filename": "exp/a/model"}) == 1
    del a.attachments["other"]
    with pytest.raises(KeyError):
        a.attachments["other"]
    a.attachments["text"] = "str"  # as hyperopt: a str is stored UTF-8 encoded
    assert a.attachments["text"] == b"str"
    with pytest.raises(TypeError):
        a.attachments["bad"] = 3.5


def test_trial_attachments_are_listed_in_the_document(db):
    t = MongoTrials(db, exp_key="e")
    _queue(t, 2)
    t.refresh()
    ta = t.trial_attachments(t.trials[0])
    ta["weights"] = b"\x00\x01"
    ta["weights"] = b"\x00\x02"
    ta["log"] = b"text"
    t.refresh()
    doc = t.trials[0]
    assert sorted(n for n, _ in doc["_attachments"]) == ["log", "weights"]
    assert t.trial_attachments(doc)["weights"] == b"\x00\x02" and sorted(t.trial_attachments(doc)) == ["log", "weights"]
    assert len(t.trial_attachments(t.trials[1])) == 0
    f = db["fs.files"].find_one({"filename": "trial/0/weights"})
    assert f["metadata"] == {"kind": "trial", "exp_key": "e", "tid": 0, "name": "weights"}
    del t.trial_attachments(doc)["log"]
    t.refresh()
    assert [n for n, _ in t.trials[0]["_attachments"]] == ["weights"]


# ----------------------------------------------------------------------------- claim / finish queries
def test_claim_oldest_first_and_finish_conditioned_on_owner_and_attempt(db):
    t = MongoTrials(db, exp_key="e")
    _queue(t, 3)
    h = t.handle

    def reserve(owner, exp_key=ANY_EXPERIMENT):
        return h.claim(owner, exp_key=exp_key, lease_timeout=30.0, max_attempts=3)
    c1 = reserve("hostA:1", "e")
    assert c1["tid"] == 0 and c1["state"] == JOB_STATE_RUNNING and c1["owner"] == "hostA:1"
    assert c1["attempt"] == 1 and c1["version"] == 1 and c1["worker"] == {"host": "hostA", "pid": 1}
    assert c1["book_time"] is not None and c1["heartbeat"] is not None
    assert reserve("hostA:1", "other") is None  # exp_key filter
    assert reserve("hostB:2")["tid"] == 1  # ANY_EXPERIMENT
    # the trial is taken back (requeued) and claimed again: the first claimer's write-back must fail
    assert h.release(c1, count_as_lost=True)
    c1b = reserve("hostC:3", "e")
    assert c1b["tid"] == 0 and c1b["attempt"] == 2 and c1b["requeues"] == 1
    assert not h.finish(c1, JOB_STATE_DONE, {"status": "ok", "loss": 1.0})
    assert h.finish(c1b, JOB_STATE_DONE, {"status": "ok", "loss": 2.0})
    doc = db["jobs"].find_one({"tid": 0})
    assert doc["state"] == JOB_STATE_DONE and doc["result"]["loss"] == 2.0 and doc["owner"] == "hostC:3"
    # a retried write-back (its first reply lost) reports success and changes nothing
    assert h.finish(c1b, JOB_STATE_DONE, {"status": "ok", "loss": 3.0})
    assert db["jobs"].find_one({"tid": 0})["result"]["loss"] == 2.0


def test_cancel_new_only_touches_new_trials(db):
    t = MongoTrials(db, exp_key="e")
    _queue(t, 3)
    t.handle.claim("h:1", exp_key="e", lease_timeout=30.0, max_attempts=3)
    assert J.cancel_new(t.jobs, "e") == 2
    t.refresh()
    assert [d["state"] for d in t.trials] == [JOB_STATE_RUNNING, JOB_STATE_CANCEL, JOB_STATE_CANCEL]


def test_bad_arguments():
    with pytest.raises(InvalidParameterError, match="MongoDB URL"):
        MongoTrials(12)
    with pytest.raises(InvalidParameterError, match="exp_key"):
        MongoTrials(object.__new__(MongoJobQueue), exp_key=3)


# ----------------------------------------------------------------------------- real server only
def test_indexes_created_by_the_driver(mongo_db):
    t = MongoTrials(mongo_db, exp_key="e")
    assert "jobs" not in mongo_db.list_collection_names() or len(mongo_db["jobs"].index_information()) <= 1
    t.ensure_indexes()
    keys = {tuple(v["key"]): v.get("unique", False) for v in mongo_db["jobs"].index_information().values()}
    assert keys[(("tid", 1),)] is True
    assert (("exp_key", 1), ("state", 1), ("tid", 1)) in keys
    assert (("exp_key", 1), ("updated_at", 1)) in keys
    exp_keys = {tuple(v["key"]): v.get("unique", False) for v in mongo_db["experiments"].index_information().values()}
    assert exp_keys[(("exp_key", 1),)] is True


def test_concurrent_tid_allocation_is_unique(mongo_url):
    stores = [MongoTrials(mongo_url, exp_key=f"e{i}", refresh=False) for i in range(4)]
    got: list[int] = []
    lock = threading.Lock()

    def alloc(s):
        for _ in range(25):
            ids = s.new_trial_ids(2)
            with lock:
                got.extend(ids)
    threads = [threading.Thread(target=alloc, args=(s,)) for s in stores]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(got) == list(range(200))


def test_pickles_by_url(mongo_url):
    t = MongoTrials(mongo_url, exp_key="e")
    _queue(t, 2)
    t.refresh()
    t2 = pickle.loads(pickle.dumps(t))
    assert t2.exp_key == "e" and [d["tid"] for d in t2.trials] == [0, 1]
    t2.refresh()
    assert len(t2) == 2


def _worker_thread(url, **cfg):
    w = Worker(MongoJobQueue.connect(url), WorkerConfig(poll_interval=0.02, subprocess=False, **cfg))
    box = {}
    th = threading.Thread(target=lambda: box.setdefault("rc", w.run()), daemon=True)
    th.start()
    return w, th, box


def test_fmin_resume_finished_and_extend(mongo_url):
    w, th, _ = _worker_thread(mongo_url, exp_key="e")
    try:
        t = MongoTrials(mongo_url, exp_key="e", poll_interval=0.02)
        fmin(quadratic, SPACE, algo=rand.suggest, max_evals=5, trials=t, rstate=np.random.default_rng(1),
             show_progressbar=False)
        assert len(t) == 5 and all(d["state"] == JOB_STATE_DONE for d in t)
        exp = t.experiment()
        assert exp["status"] == "done" and exp["max_evals"] == 5 and exp["domain_hash"] == t.trials[0]["domain_hash"]
        assert exp["algorithm"] == "hpo_mongo.algos.rand.suggest" and exp["space"][0]["label"] == "x"
        # a finished experiment returns at once, queuing nothing
        start = time.monotonic()
        t2 = MongoTrials(mongo_url, exp_key="e", poll_interval=0.02)
        fmin(quadratic, SPACE, algo=rand.suggest, max_evals=5, trials=t2, show_progressbar=False)
        assert time.monotonic() - start < 5 and len(t2) == 5
        # a larger max_evals continues the same experiment
        fmin(quadratic, SPACE, algo=rand.suggest, max_evals=8, trials=t2, show_progressbar=False)
        assert len(t2) == 8 and all(d["state"] == JOB_STATE_DONE for d in t2)
        assert len({d["domain_hash"] for d in t2}) == 1  # content-addressed: stored once
        assert t2.handle.db["fs.files"].count_documents({"metadata.kind": "domain"}) == 1
    finally:
        w.stop()
        th.join(5)


@pytest.mark.parametrize("max_queue_len, queued", [(1, 2), (3, 3)])
def test_queue_target_and_early_stop_cancels_queued_trials(mongo_url, max_queue_len, queued):
    """With no worker, fmin queues RUNNING(0) + max(2, max_queue_len) NEW trials (not hyperopt's 1),
    and cancels them when its timeout stops it."""
    t = MongoTrials(mongo_url, exp_key="e", poll_interval=0.02)
    with pytest.raises(AllTrialsFailed):  # no worker: nothing finishes before the timeout
        fmin(quadratic, SPACE, algo=rand.suggest, max_evals=10, timeout=1.0, trials=t, show_progressbar=False,
             max_queue_len=max_queue_len)
    assert len(t) == queued and all(d["state"] == JOB_STATE_CANCEL for d in t)
    assert t.count_by_state_unsynced(JOB_STATE_NEW) == 0
    assert t.experiment()["status"] == "stopped" and t.experiment()["stop_reason"] == "timeout"


def test_points_to_evaluate_are_queued_after_the_domain(mongo_url):
    w, th, _ = _worker_thread(mongo_url, exp_key="p")
    try:
        t = MongoTrials(mongo_url, exp_key="p", poll_interval=0.02)
        fmin(quadratic, SPACE, algo=rand.suggest, max_evals=3, trials=t, show_progressbar=False,
             points_to_evaluate=[{"x": 1.0}, {"x": 0.5}])
        assert [d["misc"]["vals"]["x"][0] for d in t][:2] == [1.0, 0.5]
        assert all(d["state"] == JOB_STATE_DONE and d["domain_hash"] for d in t)
        assert t.trials[0]["result"]["loss"] == 0.0
    finally:
        w.stop()
        th.join(5)


@pytest.mark.parametrize("how", ["loss_threshold", "early_stop_fn"])
def test_loss_threshold_and_early_stop_fn_stop_an_async_run(mongo_url, how):
    w, th, _ = _worker_thread(mongo_url, exp_key="s")
    try:
        t = MongoTrials(mongo_url, exp_key="s", poll_interval=0.02)
        kw = ({"loss_threshold": 100.0} if how == "loss_threshold" else
              {"early_stop_fn": lambda trials, *args: (sum(d["state"] == JOB_STATE_DONE for d in trials) >= 3, [])})
        fmin(quadratic, SPACE, algo=rand.suggest, max_evals=200, trials=t, show_progressbar=False,
             max_queue_len=4, **kw)
        states = [d["state"] for d in t]
        assert JOB_STATE_NEW not in states and 1 <= states.count(JOB_STATE_DONE) < 50
        assert t.experiment()["stop_reason"] == how and t.experiment()["status"] == "stopped"
    finally:
        w.stop()
        th.join(5)


def test_worker_attachments_are_attempt_scoped_and_switched_by_finish(db):
    from hpo_mongo.trials.mongo import attachments as A
    t = MongoTrials(db, exp_key="e")
    _queue(t, 1)
    t.refresh()
    t.trial_attachments(t.trials[0])["input"] = b"given by the user"  # before the evaluation
    h = t.handle
    first = h.claim("hostA:1", exp_key="e", lease_timeout=30.0, max_attempts=3)
    assert h.finish(first, JOB_STATE_DONE, {"status": "ok", "loss": 1.0}, attachments={"model": b"A"})
    (model,) = [f for f in db["fs.files"].find({"metadata.attempt": 1})]
    assert model["filename"] == f"trial/{first['tid']}/1/model"
    ta = t.trial_attachments(first)
    assert ta["model"] == b"A" and ta["input"] == b"given by the user" and sorted(ta) == ["input", "model"]
    # requeued by hand and evaluated again: the second attempt's files replace the first's; a
    # stale worker of attempt 1 writing again is refused and leaves nothing behind
    J.requeue_unchanged(db.jobs, db.jobs.find_one({"_id": first["_id"]}))
    second = h.claim("hostB:2", exp_key="e", lease_timeout=30.0, max_attempts=3)
    assert not h.finish(first, JOB_STATE_DONE, {"status": "ok", "loss": 9.0}, attachments={"model": b"stale A"})
    assert t.trial_attachments(second)["model"] == b"A"  # what the document references stays readable
    assert [f["_id"] for f in db["fs.files"].find({"metadata.attempt": 1})] == [model["_id"]]
    assert h.finish(second, JOB_STATE_DONE, {"status": "ok", "loss": 2.0}, attachments={"other": b"B"})
    ta = t.trial_attachments(second)
    assert sorted(ta) == ["input", "other"] and ta["other"] == b"B" and "model" not in ta
    assert db["fs.files"].count_documents({"metadata.attempt": 1}) == 0
    # a file written without a reference (a trial dict without _id) is still found by its name
    A.TrialAttachments(db, db.jobs, {"tid": second["tid"], "exp_key": "e"})["legacy"] = b"old style"
    assert t.trial_attachments(second)["legacy"] == b"old style" and "legacy" in t.trial_attachments(second)


def test_refresh_downloads_again_only_what_changed_in_the_overlap_window(db):
    """A write stamped just before the last refresh but visible only after it is still found; the
    jobs of the overlap window that did not change are not downloaded again."""
    q = MongoJobQueue(db)
    q.insert([new_trial_doc(t, {"x": [float(t)]}, exp_key="e") for t in range(5)])
    docs, cursor = q.changed("e")
    assert len(docs) == 5
    again, cursor = q.changed("e", cursor)
    assert again == []  # all five are in the overlap window, unchanged: not downloaded again
    newest = cursor[0]
    # a write the server stamped a moment before ``newest`` that the last read did not see yet
    db.jobs.update_one({"tid": 3}, {"$set": {"state": JOB_STATE_CANCEL, "updated_at": newest - dt.timedelta(
        seconds=0.5)}, "$inc": {"version": 1}})
    late, cursor = q.changed("e", cursor)
    assert [(d["tid"], d["state"]) for d in late] == [(3, JOB_STATE_CANCEL)]
    assert q.changed("e", cursor)[0] == []


class _CountingFinds:
    """The jobs collection, counting its ``find`` calls."""

    def __init__(self, jobs):
        self._jobs, self.finds = jobs, 0

    def find(self, *args, **kwargs):
        self.finds += 1
        return self._jobs.find(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._jobs, name)


def test_an_idle_refresh_reads_the_settled_overlap_window_only_every_few_seconds(db, monkeypatch):
    """Once the overlap window was read ``refresh_overlap`` seconds after the newest stamp was first
    seen, a refresh is one query; the window is read again every WINDOW_RECHECK seconds (a late
    write of a primary whose clock is behind is found then), and as soon as a newer write shows."""
    from hpo_mongo.trials.mongo import queue as Q
    clock = [1000.0]
    monkeypatch.setattr(Q.time, "monotonic", lambda: clock[0])
    q = MongoJobQueue(db, refresh_overlap=2.0)
    q.insert([new_trial_doc(t, {"x": [float(t)]}, exp_key="e") for t in range(3)])
    jobs = q.jobs = _CountingFinds(q.jobs)

    def refresh(cursor):
        before = jobs.finds
        docs, cursor = q.changed("e", cursor)
        return docs, cursor, jobs.finds - before
    docs, cursor, n = refresh(None)
    assert len(docs) == 3 and n == 1
    assert refresh(cursor)[2] == 2  # the window is read while it may still fill
    clock[0] += 2.5
    _, cursor, n = refresh(cursor)
    assert n == 2  # read once more, late enough: settled
    for _ in range(3):
        clock[0] += 1.0
        docs, cursor, n = refresh(cursor)
        assert (docs, n) == ([], 1)
    db.jobs.update_one({"tid": 1}, {"$set": {"state": JOB_STATE_CANCEL, "updated_at": cursor.newest - dt.timedelta(
        seconds=0.5)}, "$inc": {"version": 1}})  # a primary whose clock is behind
    clock[0] += Q.WINDOW_RECHECK
    docs, cursor, n = refresh(cursor)
    assert [(d["tid"], d["state"]) for d in docs] == [(1, JOB_STATE_CANCEL)] and n == 3
    q.insert([new_trial_doc(3, {"x": [3.0]}, exp_key="e")])
    docs, cursor, n = refresh(cursor)
    assert [d["tid"] for d in docs] == [3]
    assert refresh(cursor)[2] == 2  # a newer stamp: its window is read until it settles
