"""The JobQueue contract (hpo_mongo/trials/queue.py), run against every implementation.

``queue`` is parametrized over the in-memory queue, the same queue behind the remote proxy (a
pipe to a server thread, as the local parallel mode's workers use it) and MongoJobQueue on the
real test server. ``later(seconds)`` moves the queue's clock: by hand for the in-memory ones,
by sleeping for MongoDB (whose clock is the server's).
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import math
import pickle
import threading
import time

import pytest

from hpo_mongo.exceptions import DuplicateTrialError, InvalidResultError
from hpo_mongo.trials import leases
from hpo_mongo.trials.documents import (JOB_STATE_CANCEL, JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_NEW,
                                        JOB_STATE_RUNNING, new_trial_doc)
from hpo_mongo.trials.memory_queue import MemoryJobQueue
from hpo_mongo.trials.queue import ANY_EXPERIMENT, LAST_REPORT, LIST_FIELDS, REPORTS_FIELD, JobQueue
from hpo_mongo.trials.reports import KIND_COMPLETE, KIND_OTHER, KIND_PRUNED, KIND_RUNNING
from hpo_mongo.trials.remote import QueueServer, RemoteJobQueue

LEASE = 0.6  # seconds: short enough for the real server, where time passes for real


class FakeClock:
    def __init__(self):
        self.t = _dt.datetime(2026, 1, 1, tzinfo=_dt.timezone.utc)

    def __call__(self):
        return self.t

    def advance(self, seconds):
        self.t += _dt.timedelta(seconds=seconds)


class Harness:
    def __init__(self, queue, later):
        self.queue, self.later = queue, later


def _memory():
    clock = FakeClock()
    return Harness(MemoryJobQueue(clock=clock), clock.advance), None


def _remote():
    from multiprocessing import Pipe
    clock = FakeClock()
    server = QueueServer(MemoryJobQueue(clock=clock)).start()
    here, there = Pipe()
    server.add(there)
    return Harness(RemoteJobQueue(here), clock.advance), server.stop


def _mongo(request):
    from hpo_mongo.trials.mongo.queue import MongoJobQueue
    url = request.getfixturevalue("mongo_url")
    q = MongoJobQueue.connect(url)
    q.prepare()
    return Harness(q, lambda s: time.sleep(s)), q.close


@pytest.fixture(params=["memory", "remote", "mongo"])
def h(request):
    if request.param == "memory":
        harness, stop = _memory()
    elif request.param == "remote":
        harness, stop = _remote()
    else:
        harness, stop = _mongo(request)
    yield harness
    if stop is not None:
        stop()


def queue_docs(q, tids, exp_key="e"):
    return q.insert([new_trial_doc(t, {"x": [float(t)]}, exp_key=exp_key) for t in tids])


def claim(q, owner="w:1", exp_key=ANY_EXPERIMENT, lease=LEASE, max_attempts=3):
    return q.claim(owner, exp_key=exp_key, worker={"host": "w", "pid": 1}, lease_timeout=lease,
                   max_attempts=max_attempts)


# ----------------------------------------------------------------------------- protocol
def test_implements_the_protocol(h):
    assert isinstance(h.queue, JobQueue)
    assert isinstance(h.queue.describe(), str) and "password" not in h.queue.describe()
    assert pickle.loads(pickle.dumps(ANY_EXPERIMENT)) is ANY_EXPERIMENT


def test_close_may_be_repeated(h):
    h.queue.count(ANY_EXPERIMENT)
    assert h.queue.close() is None
    h.queue.close()


# ----------------------------------------------------------------------------- tids and insert
def test_tids_are_fresh_and_reserve_moves_past(h):
    q = h.queue
    q.prepare()  # idempotent
    a = q.new_tids(3)
    assert a == list(range(a[0], a[0] + 3))
    b = q.new_tids(2)
    assert b[0] > a[-1]
    q.reserve_tids(b[-1] + 100)
    assert q.last_tid() == b[-1] + 100
    assert q.new_tids(1)[0] > b[-1] + 100
    q.reserve_tids(0)  # never moves back
    assert q.last_tid() == b[-1] + 101


def test_insert_then_changed_gives_each_job_once_with_versions(h):
    q = h.queue
    ids = queue_docs(q, [0, 1, 2])
    assert len(set(ids)) == 3
    docs, cursor = q.changed("e")
    assert sorted(d["tid"] for d in docs) == [0, 1, 2]
    d0 = next(d for d in docs if d["tid"] == 0)
    assert d0["state"] == JOB_STATE_NEW and d0["attempt"] == 0 and d0["requeues"] == 0
    assert d0["_attachments"] == [] and d0["version"] >= 0 and d0["updated_at"] is not None
    d0["state"] = 99  # a copy: the queue is unchanged
    assert q.trial(0)["state"] == JOB_STATE_NEW
    assert queue_docs(q, [3], exp_key="other")
    c = claim(q, exp_key="e")
    more, _ = q.changed("e", cursor)
    latest = {d["_id"]: d for d in more}
    assert c["_id"] in latest and latest[c["_id"]]["state"] == JOB_STATE_RUNNING
    assert latest[c["_id"]]["version"] > d0["version"]
    assert all(d["exp_key"] == "e" for d in more)


def test_a_reused_tid_is_refused(h):
    q = h.queue
    queue_docs(q, [5])
    with pytest.raises(DuplicateTrialError):
        queue_docs(q, [5], exp_key="other")
    assert q.count(ANY_EXPERIMENT) == 1


def test_count_job_ids_cancel_new_and_delete_jobs(h):
    q = h.queue
    ids = queue_docs(q, [0, 1, 2, 3])
    claim(q)
    assert q.count("e") == 4 and q.count("e", [JOB_STATE_NEW]) == 3
    assert sorted(map(str, q.versions("e"))) == sorted(map(str, ids))
    assert q.existing([ids[0], ids[1]]) == [ids[0], ids[1]]
    assert q.cancel_new("e", [ids[1]]) == 1
    assert q.count("e", [JOB_STATE_CANCEL]) == 1
    assert q.cancel_new("e") == 2
    assert q.count("e", [JOB_STATE_NEW]) == 0
    assert q.delete_jobs("e", [ids[3]]) == 1
    assert q.count("e") == 3 and q.trial(3) is None and q.existing([ids[3], ids[0]]) == [ids[0]]
    assert q.delete_jobs("e") == 3 and q.count(ANY_EXPERIMENT) == 0


def test_withdraw_new_deletes_only_unclaimed_jobs_of_the_experiment(h):
    q = h.queue
    ids = queue_docs(q, [0, 1, 2])
    other = queue_docs(q, [3], exp_key="other")
    claimed = claim(q)  # tid 0
    assert claimed["_id"] == ids[0]
    gone = q.withdraw_new("e", [ids[0], ids[2], other[0]])
    assert gone == [ids[2]]  # the claimed one and the other experiment's stay
    assert sorted(map(str, q.existing(ids + other))) == sorted(map(str, [ids[0], ids[1], other[0]]))
    assert q.withdraw_new("e", [ids[2]]) == [] and q.count(ANY_EXPERIMENT) == 3


# ----------------------------------------------------------------------------- claims
def test_claim_takes_the_oldest_tid_of_the_served_experiment(h):
    q = h.queue
    q.insert([new_trial_doc(t, {}, exp_key=k) for t, k in [(4, "a"), (2, "b"), (3, None), (1, "a")]])
    assert claim(q, exp_key="a")["tid"] == 1
    assert claim(q, exp_key=None)["tid"] == 3
    c = claim(q)
    assert c["tid"] == 2 and c["owner"] == "w:1" and c["state"] == JOB_STATE_RUNNING
    assert c["attempt"] == 1 and c["lease_timeout"] == LEASE and c["max_attempts"] == 3
    assert c["worker"] == {"host": "w", "pid": 1}
    assert c["heartbeat"] is not None and c["book_time"] is not None
    assert claim(q, exp_key="b") is None
    assert claim(q)["tid"] == 4
    assert claim(q) is None


def test_concurrent_claims_never_share_a_job(h):
    q = h.queue
    queue_docs(q, range(30))
    got, lock = [], threading.Lock()

    def grab(i):
        while True:
            c = claim(q, owner=f"w:{i}")
            if c is None:
                return
            with lock:
                got.append(c["tid"])

    threads = [threading.Thread(target=grab, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(got) == list(range(30))


def test_writes_of_a_lost_claim_match_nothing(h):
    q = h.queue
    queue_docs(q, [0])
    c = claim(q)
    assert q.renew_lease(c) and q.checkpoint(c, {"status": "running", "step": 1})
    assert q.trial(0)["result"] == {"status": "running", "step": 1}
    # the job is requeued by hand (a running worker loses it), then claimed by another worker
    assert q.requeue_unchanged(q.trial(0))
    c2 = claim(q, owner="w:2")
    assert c2["attempt"] == 2
    assert not q.renew_lease(c) and not q.checkpoint(c, {"status": "x"})
    assert not q.finish(c, JOB_STATE_DONE, {"status": "ok", "loss": 1.0}, attachments={"a": b"stale"})
    assert not q.release(c)
    assert q.trial_attachment_names(c2["_id"]) == []
    assert q.finish(c2, JOB_STATE_DONE, {"status": "ok", "loss": 2.0})
    done = q.trial(0)
    assert done["state"] == JOB_STATE_DONE and done["result"]["loss"] == 2.0 and done["owner"] == "w:2"
    assert done["end_time"] is not None


def test_finish_stores_attachments_with_the_result_and_is_safe_to_retry(h):
    q = h.queue
    queue_docs(q, [0])
    assert q.set_trial_attachment(q.trial(0), "before", b"by the user")
    c = claim(q)
    assert q.finish(c, JOB_STATE_DONE, {"status": "ok", "loss": 0.5}, attachments={"model": b"m1", "log": b"l"})
    assert q.finish(c, JOB_STATE_DONE, {"status": "ok", "loss": 0.5}, attachments={"model": b"m1", "log": b"l"})
    assert q.trial_attachment_names(c["_id"]) == ["before", "log", "model"]
    assert q.trial_attachment(c["_id"], "model") == b"m1"
    assert q.trial_attachment(c["_id"], "before") == b"by the user"
    assert q.trial_attachment(c["_id"], "nope") is None


def test_a_finished_jobs_attachments_come_from_the_attempt_of_its_result(h):
    q = h.queue
    queue_docs(q, [0])
    first = claim(q)
    assert q.finish(first, JOB_STATE_DONE, {"status": "ok", "loss": 9.0}, attachments={"log": b"attempt 1"})
    assert q.requeue_unchanged(q.trial(0))  # evaluated again, by hand
    second = claim(q, owner="w:2")
    assert q.trial_attachment(second["_id"], "log") == b"attempt 1"  # until the new result lands
    assert q.finish(second, JOB_STATE_DONE, {"status": "ok", "loss": 1.0}, attachments={"model": b"attempt 2"})
    assert q.trial_attachment_names(second["_id"]) == ["model"]
    assert q.trial_attachment(second["_id"], "model") == b"attempt 2"


def test_the_outcome_check_names_what_the_queue_cannot_store(h):
    check = h.queue.outcome_check()
    assert pickle.loads(pickle.dumps(check)) is check  # a module-level function: it travels to workers
    check({"status": "ok", "loss": 1.0, "nested": {"a": [1, 2]}}, {"a": b"x"})
    with pytest.raises(InvalidResultError, match="'a'"):
        check({"status": "ok", "loss": 1.0}, {"a": 3})
    with pytest.raises(InvalidResultError, match=r"result\['obj'\]"):
        check({"status": "ok", "loss": 1.0, "obj": threading.Lock()}, {})


def test_an_outcome_the_store_refuses_raises_and_leaves_the_claim(h):
    q = h.queue
    queue_docs(q, [0])
    c = claim(q)
    with pytest.raises(InvalidResultError):
        q.finish(c, JOB_STATE_DONE, {"status": "ok", "loss": 1.0}, attachments={"a": "not bytes"})
    assert q.trial(0)["state"] == JOB_STATE_RUNNING and q.trial_attachment_names(c["_id"]) == []
    assert q.finish(c, JOB_STATE_DONE, {"status": "ok", "loss": 1.0})


def test_user_attachments_outside_a_worker(h):
    q = h.queue
    (job_id,) = queue_docs(q, [0])
    job = q.trial(0)
    assert q.set_trial_attachment(job, "note", b"by hand")
    assert q.trial_attachment(job_id, "note") == b"by hand"
    assert q.set_trial_attachment(job, "note", b"again")
    assert q.trial_attachment(job_id, "note") == b"again"
    assert q.set_trial_attachment(job, "note", None)
    assert q.trial_attachment_names(job_id) == []


def test_release_returns_the_job_to_new(h):
    q = h.queue
    queue_docs(q, [0])
    c = claim(q)
    assert q.release(c)
    d = q.trial(0)
    assert d["state"] == JOB_STATE_NEW and d["owner"] is None and d["heartbeat"] is None and d["requeues"] == 0
    c = claim(q)
    assert c["attempt"] == 2
    assert q.release(c, count_as_lost=True)
    assert q.trial(0)["requeues"] == 1


def test_error_outcome_keeps_hyperopts_misc_error(h):
    q = h.queue
    queue_docs(q, [0])
    c = claim(q)
    err = {"type": "ValueError", "message": "bad", "traceback": "tb"}
    assert q.finish(c, JOB_STATE_ERROR, {"status": "fail", "failure": "ValueError: bad"}, err)
    d = q.trial(0)
    assert d["state"] == JOB_STATE_ERROR and d["error"] == err and d["misc"]["error"] == ["ValueError", "bad"]


# ----------------------------------------------------------------------------- lease rules
def test_requeue_stale_applies_the_lease_recorded_on_each_job(h):
    q = h.queue
    queue_docs(q, [0, 1])
    short = claim(q, owner="w:1", lease=LEASE)
    long_ = claim(q, owner="w:2", lease=60.0)
    h.later(LEASE * 1.5)
    events = q.requeue_stale(default_lease=30.0, default_max_attempts=3)
    assert [(e["tid"], e["outcome"]) for e in events] == [(short["tid"], "requeued")]
    assert events[0]["owner"] == "w:1" and events[0]["exp_key"] == "e"
    d = q.trial(short["tid"])
    assert d["state"] == JOB_STATE_NEW and d["requeues"] == 1 and d["owner"] is None
    assert q.trial(long_["tid"])["state"] == JOB_STATE_RUNNING
    assert not q.finish(short, JOB_STATE_DONE, {"status": "ok", "loss": 1.0})


def test_a_renewed_lease_is_not_requeued(h):
    q = h.queue
    queue_docs(q, [0])
    c = claim(q)
    h.later(LEASE * 0.6)
    assert q.renew_lease(c)
    h.later(LEASE * 0.6)
    assert q.requeue_stale(default_lease=30.0, default_max_attempts=3) == []
    assert q.trial(0)["state"] == JOB_STATE_RUNNING


def test_the_max_attempts_recorded_by_the_claiming_worker_decides(h):
    q = h.queue
    queue_docs(q, [0])
    for attempt in range(1, 4):
        c = claim(q, owner=f"w:{attempt}", max_attempts=3)
        assert c["attempt"] == attempt
        h.later(LEASE * 1.5)
        # the requeuer's own default (2) does not override what the job records (3)
        events = q.requeue_stale(exp_key="e", default_lease=30.0, default_max_attempts=2)
        assert len(events) == 1
        if attempt < 3:
            assert events[0]["outcome"] == "requeued"
    assert events[0]["outcome"] == "failed" and "lost 3 times" in events[0]["message"]
    d = q.trial(0)
    assert d["state"] == JOB_STATE_ERROR and d["error"]["type"] == leases.LOST_ERROR_TYPE
    assert d["result"]["status"] == "fail" and "lost 3 times" in d["result"]["failure"]
    assert d["misc"]["error"][0] == leases.LOST_ERROR_TYPE


def test_requeue_stale_is_limited_to_the_experiment(h):
    q = h.queue
    q.insert([new_trial_doc(0, {}, exp_key="a"), new_trial_doc(1, {}, exp_key="b")])
    claim(q, exp_key="a")
    claim(q, exp_key="b")
    h.later(LEASE * 1.5)
    assert [e["tid"] for e in q.requeue_stale("b", default_lease=30.0, default_max_attempts=3)] == [1]
    assert q.trial(0)["state"] == JOB_STATE_RUNNING


# ----------------------------------------------------------------------------- experiments and blobs
def test_experiment_documents_and_driver_heartbeat(h):
    q = h.queue
    assert q.experiment("e") is None and not q.beat_driver("e")
    q.save_experiment("e", {"status": "running", "max_evals": 10, "driver": {"host": "d", "pid": 7}})
    assert q.beat_driver("e")
    q.save_experiment("e", {"status": "done", "driver": {"pid": 8}})
    doc = q.experiment("e")
    assert doc["exp_key"] == "e" and doc["status"] == "done" and doc["max_evals"] == 10
    assert doc["driver"]["host"] == "d" and doc["driver"]["pid"] == 8 and doc["driver"]["heartbeat"] is not None
    assert doc["created"] is not None and doc["updated_at"] is not None
    q.save_experiment(None, {"status": "running"})
    assert q.experiment(None)["exp_key"] is None


def test_blobs_domain_and_experiment_attachments(h):
    q = h.queue
    digest = hashlib.sha256(b"payload").hexdigest()
    q.put_domain(digest, b"payload", "e")
    q.put_domain(digest, b"payload", "f")  # content-addressed: stored once
    assert q.domain(digest) == b"payload" and q.domain("nope") is None
    q.set_attachment("e", "notes", b"1")
    q.set_attachment("e", "notes", b"2")
    q.set_attachment("e", "data", b"3")
    q.set_attachment("f", "notes", b"other experiment")
    assert q.attachment("e", "notes") == b"2" and q.attachment_names("e") == ["data", "notes"]
    q.set_attachment("e", "data", None)
    assert q.attachment("e", "data") is None and q.attachment_names("e") == ["notes"]


def test_delete_experiment_removes_everything_it_owns(h):
    q = h.queue
    d1, d2 = hashlib.sha256(b"1").hexdigest(), hashlib.sha256(b"2").hexdigest()
    q.save_experiment("e", {"domain_hash": d1})
    q.save_experiment("f", {"domain_hash": d2})
    q.save_experiment("g", {"domain_hash": d2})
    q.put_domain(d1, b"1", "e")
    q.put_domain(d2, b"2", "f")
    q.set_attachment("e", "a", b"x")
    queue_docs(q, [0, 1])
    queue_docs(q, [2], exp_key="f")
    c = claim(q, exp_key="e")
    q.finish(c, JOB_STATE_DONE, {"status": "ok", "loss": 1.0}, attachments={"m": b"model"})
    out = q.delete_experiment("e")
    assert out["exp_key"] == "e" and out["trials"] == 2 and out["experiment"] is True and out["files"] >= 3
    assert q.experiment("e") is None and q.count("e") == 0 and q.domain(d1) is None
    assert q.attachment("e", "a") is None
    assert q.count("f") == 1 and q.experiment("f") is not None
    q.delete_experiment("f")
    assert q.domain(d2) == b"2"  # still used by g


def test_experiment_keys_and_summaries(h):
    q = h.queue
    q.save_experiment("b", {"status": "running", "max_evals": 5, "algorithm": "tpe"})
    q.insert([new_trial_doc(0, {}, exp_key=None), new_trial_doc(1, {}, exp_key="b"),
              new_trial_doc(2, {}, exp_key="b")])
    c = claim(q, exp_key="b")
    q.finish(c, JOB_STATE_DONE, {"status": "ok", "loss": 0.25})
    assert q.experiment_keys() == [None, "b"]
    by_key = {s["exp_key"]: s for s in q.experiment_summaries()}
    b = by_key["b"]
    assert b["status"] == "running" and b["max_evals"] == 5 and b["algorithm"] == "tpe"
    assert b["counts"]["done"] == 1 and b["counts"]["new"] == 1 and b["counts"]["total"] == 2
    assert b["best_loss"] == 0.25 and b["created"] is not None and b["last_activity"] is not None
    assert by_key[None]["counts"]["total"] == 1 and by_key[None]["best_loss"] is None


# ----------------------------------------------------------------------------- workers
def test_worker_documents(h):
    q = h.queue
    started = q.now()
    q.beat_worker("w:1:aa", {"host": "w", "pid": 1, "status": "idle", "started": started, "lease_timeout": LEASE})
    q.beat_worker("w:1:aa", {"status": "busy", "started": started + _dt.timedelta(days=1)})
    q.beat_worker("w:2:bb", {"host": "w", "pid": 2, "status": "exited"})
    (w,) = q.workers()
    assert w["_id"] == "w:1:aa" and w["status"] == "busy" and w["host"] == "w"
    assert [x["_id"] for x in q.workers(include_exited=True)] == ["w:1:aa", "w:2:bb"]  # by host, pid
    assert abs((leases.as_utc(w["started"]) - started).total_seconds()) < 0.01  # set only on creation
    assert leases.worker_is_live(w, q.now())
    h.later(LEASE * 1.5)
    assert not leases.worker_is_live(w, q.now())


# ----------------------------------------------------------------------------- inspection and repairs
def test_find_sorts_filters_limits_and_projects(h):
    q = h.queue
    queue_docs(q, range(5))
    losses = {0: 3.0, 1: 1.0, 2: None, 3: 2.0}
    for _ in range(4):
        c = claim(q)
        loss = losses[c["tid"]]
        result = {"status": "ok", "loss": loss} if loss is not None else {"status": "fail", "failure": "x"}
        q.finish(c, JOB_STATE_DONE, result)
    assert [d["tid"] for d in q.find("e")] == [0, 1, 2, 3, 4]
    assert [d["tid"] for d in q.find("e", reverse=True, limit=2)] == [4, 3]
    assert [d["tid"] for d in q.find("e", sort="loss")] == [1, 3, 0, 2, 4]
    assert [d["tid"] for d in q.find("e", sort="loss", reverse=True)][:3] == [0, 3, 1]
    assert [d["tid"] for d in q.find("e", sort="loss", limit=2)] == [1, 3]
    assert [d["tid"] for d in q.find("e", states=[JOB_STATE_NEW])] == [4]
    assert [d["tid"] for d in q.find("e", sort="time")][-1] == 4  # unclaimed last
    assert q.find("e", limit=0) == []
    listed = q.find("e", limit=1)[0]
    assert set(listed) <= set(LIST_FIELDS) | {LAST_REPORT} and "misc" in listed and listed[LAST_REPORT] is None
    assert "created_at" in q.find("e", limit=1, full=True)[0]
    assert q.trial(3)["result"]["loss"] == 2.0 and q.trial(3, exp_key="e")["tid"] == 3
    assert q.trial(3, exp_key="other") is None and q.trial(99) is None


def test_counts_throughput_and_first_claim(h):
    q = h.queue
    queue_docs(q, range(4))
    before = q.now() - _dt.timedelta(seconds=1)
    assert q.first_claim("e") is None
    c = claim(q)
    q.finish(c, JOB_STATE_DONE, {"status": "ok", "loss": 1.0})
    claim(q)
    assert q.count_by_state("e") == {"new": 2, "running": 1, "done": 1, "error": 0, "cancel": 0, "total": 4,
                                     "pruned": 0}
    assert q.count_by_state()["total"] == 4
    assert q.finished_since("e", before) == 1
    assert q.finished_since("e", q.now() + _dt.timedelta(seconds=5)) == 0
    assert leases.as_utc(q.first_claim("e")) >= before


def test_repairs_are_conditioned_on_the_version_read(h):
    q = h.queue
    queue_docs(q, [0, 1])
    c = claim(q)
    q.finish(c, JOB_STATE_ERROR, {"status": "fail", "failure": "E: x"}, {"type": "E", "message": "x", "traceback": ""})
    read = q.trial(0)
    stale_read = dict(read, version=read["version"] - 1)
    assert not q.requeue_unchanged(stale_read)
    assert q.requeue_unchanged(read)
    d = q.trial(0)
    assert d["state"] == JOB_STATE_NEW and d["error"] is None and d["result"] == {"status": "new"}
    assert "error" not in d["misc"] and d["attempt"] == 1
    assert not q.requeue_unchanged(read)  # its version moved on
    new = q.trial(1)
    assert q.cancel_unchanged(new, failure="cancelled by hand")
    d = q.trial(1)
    assert d["state"] == JOB_STATE_CANCEL and d["result"] == {"status": "fail", "failure": "cancelled by hand"}
    assert not q.cancel_unchanged(new, failure="again")


def test_cancel_unchanged_takes_a_running_job_from_its_worker(h):
    q = h.queue
    queue_docs(q, [0])
    c = claim(q)
    assert q.cancel_unchanged(q.trial(0), failure="cancelled", end_time=q.now())
    assert not q.finish(c, JOB_STATE_DONE, {"status": "ok", "loss": 1.0})
    d = q.trial(0)
    assert d["state"] == JOB_STATE_CANCEL and d["owner"] is None and d["end_time"] is not None


def test_restore_writes_back_lost_and_rolled_back_jobs(h):
    q = h.queue
    queue_docs(q, [0, 1])
    c = claim(q)
    q.finish(c, JOB_STATE_DONE, {"status": "ok", "loss": 1.0})
    held = {d["tid"]: d for d in q.changed("e")[0]}
    q.delete_jobs("e")
    assert q.restore([held[0]]) == 1 and q.restore([held[0]]) == 0  # idempotent
    back = q.trial(0)
    assert back["state"] == JOB_STATE_DONE and back["result"]["loss"] == 1.0 and back["_id"] == held[0]["_id"]
    assert back["version"] >= held[0]["version"]
    q.insert([new_trial_doc(1, {}, exp_key="e")])  # someone else took tid 1 meanwhile
    with pytest.raises(DuplicateTrialError):
        q.restore([held[1]])


def test_adopt_domain_gives_queued_jobs_without_one_the_domain(h):
    q = h.queue
    q.insert([new_trial_doc(0, {}, exp_key="e"), {**new_trial_doc(1, {}, exp_key="e"), "domain_hash": "old"}])
    assert q.adopt_domain("e", "new") == 1
    assert q.trial(0)["domain_hash"] == "new" and q.trial(1)["domain_hash"] == "old"


# ----------------------------------------------------------------------------- reports (pruning)
def _steps(reports):
    """``[(step, value)]`` with NaN as the string "nan" (NaN != NaN)."""
    return [(r["step"], "nan" if math.isnan(r["value"]) else r["value"]) for r in reports]


def _rows(answer):
    values = ["nan" if math.isnan(v) else v for v in answer["value"]]
    return sorted(zip(answer["tid"], values, answer["kind"], strict=True))


def test_reports_are_one_owner_conditioned_write_each_first_value_wins_in_report_order(h):
    q = h.queue
    queue_docs(q, [0])
    c = claim(q)
    assert c[REPORTS_FIELD] == []
    for step, value in [(1, 0.5), (3, math.nan), (2, math.inf), (1, 9.0), (0, -math.inf)]:
        assert q.report(c, step, value) is True  # a repeated step is "already there"
    assert _steps(q.trial(0)[REPORTS_FIELD]) == [(1, 0.5), (3, "nan"), (2, math.inf), (0, -math.inf)]
    h.later(LEASE * 1.5)
    assert [e["outcome"] for e in q.requeue_stale(default_lease=30.0, default_max_attempts=3)] == ["requeued"]
    assert q.trial(0)[REPORTS_FIELD] == []  # back to NEW: the attempt's reports are gone
    assert q.report(c, 4, 1.0) is False  # the stale claim writes nothing
    c2 = claim(q, owner="w:2")
    assert q.report(c, 4, 1.0) is False and q.trial(0)[REPORTS_FIELD] == []
    assert q.report(c2, 7, 0.25) is True
    assert _steps(q.trial(0)[REPORTS_FIELD]) == [(7, 0.25)]
    q.finish(c2, JOB_STATE_DONE, {"status": "ok", "loss": 0.25})
    assert q.report(c2, 8, 0.1) is False  # finished: no more reports
    assert _steps(q.trial(0)[REPORTS_FIELD]) == [(7, 0.25)]  # a finished job keeps its attempt's reports


def test_a_report_bumps_no_version_and_the_refresh_leaves_reports_out(h):
    q = h.queue
    queue_docs(q, [0, 1])
    c = claim(q)
    _, cursor = q.changed("e")
    version = q.trial(c["tid"])["version"]
    for step in range(5):
        assert q.report(c, step, 1.0 / (step + 1))
    doc = q.trial(c["tid"])
    assert doc["version"] == version and len(doc[REPORTS_FIELD]) == 5
    assert [d for d in q.changed("e", cursor)[0] if d["version"] > version] == []
    assert all(REPORTS_FIELD not in d for d in q.changed("e")[0])
    listed = {d["tid"]: d for d in q.find("e")}
    assert listed[c["tid"]][LAST_REPORT] == {"step": 4, "value": 0.2} and REPORTS_FIELD not in listed[c["tid"]]
    assert listed[1 - c["tid"]][LAST_REPORT] is None
    assert len({d["tid"]: d for d in q.find("e", full=True)}[c["tid"]][REPORTS_FIELD]) == 5


def test_every_return_to_new_empties_the_reports(h):
    q = h.queue
    queue_docs(q, [0])
    c = claim(q)
    q.report(c, 0, 1.0)
    assert q.release(c)
    assert q.trial(0)[REPORTS_FIELD] == [] and q.reports_at("e", 0)["tid"] == []
    c = claim(q)
    q.report(c, 0, 1.0)
    q.finish(c, JOB_STATE_ERROR, {"status": "fail"}, {"type": "E", "message": "m", "traceback": ""})
    assert q.reports_at("e", 0)["tid"] == [0]
    assert q.requeue_unchanged(q.trial(0))
    assert q.trial(0)[REPORTS_FIELD] == [] and q.reports_at("e", 0)["tid"] == []
    c = claim(q)
    assert c["attempt"] == 3 and c[REPORTS_FIELD] == []


def test_reports_at_gives_one_row_per_current_attempt_with_the_trials_kind(h):
    q = h.queue
    queue_docs(q, range(5))
    queue_docs(q, [10], exp_key="other")
    claims = {}
    for _ in range(6):
        c = claim(q)
        claims[c["tid"]] = c
    # tid: reports in report order, then its outcome
    plan = {0: ([(1, 1.0), (2, 0.8), (4, 0.5)], ("ok", 0.5)),
            1: ([(1, 2.0), (3, 1.5)], ("pruned", 1.5)),
            2: ([(2, 0.3), (1, 0.9), (5, math.nan)], None),          # running, reported out of order
            3: ([(1, 3.0)], ("error", None)),
            4: ([], ("ok", 9.0)),
            10: ([(1, 0.1), (2, 0.1)], None)}                          # another experiment
    for tid, (reports, outcome) in plan.items():
        for step, value in reports:
            assert q.report(claims[tid], step, value)
        if outcome is None:
            continue
        status, loss = outcome
        if status == "error":
            q.finish(claims[tid], JOB_STATE_ERROR, {"status": "fail"}, {"type": "E", "message": "m", "traceback": ""})
        else:
            q.finish(claims[tid], JOB_STATE_DONE, {"status": status, "loss": loss})
    assert _rows(q.reports_at("e", 1)) == [(0, 1.0, KIND_COMPLETE), (1, 2.0, KIND_PRUNED), (2, 0.9, KIND_RUNNING),
                                         (3, 3.0, KIND_OTHER)]
    assert _rows(q.reports_at("e", 2)) == [(0, 0.8, KIND_COMPLETE), (2, 0.3, KIND_RUNNING)]
    assert _rows(q.reports_at("e", 6)) == []
    # reached: the first report at or past the step, in report order
    assert _rows(q.reports_at("e", 2, reached=True)) == [(0, 0.8, KIND_COMPLETE), (1, 1.5, KIND_PRUNED),
                                                       (2, 0.3, KIND_RUNNING)]
    assert _rows(q.reports_at("e", 3, reached=True)) == [(0, 0.5, KIND_COMPLETE), (1, 1.5, KIND_PRUNED),
                                                       (2, "nan", KIND_RUNNING)]
    assert _rows(q.reports_at("e", 1, reached=True, exclude_tids=[0, 2, 99])) == [(1, 2.0, KIND_PRUNED),
                                                                                (3, 3.0, KIND_OTHER)]
    assert _rows(q.reports_at("other", 1)) == [(10, 0.1, KIND_RUNNING)]
    assert _rows(q.reports_at(None, 1)) == []


def test_completed_at_least_and_pruned_counts(h):
    q = h.queue
    queue_docs(q, range(4))
    assert q.completed_at_least("e", 0) and not q.completed_at_least("e", 1)
    for status in ("ok", "pruned", "ok", "fail"):
        q.finish(claim(q), JOB_STATE_DONE, {"status": status, "loss": 1.0 if status != "fail" else None})
    assert q.completed_at_least("e", 2) and not q.completed_at_least("e", 3)
    assert not q.completed_at_least("other", 1)
    counts = q.count_by_state("e")
    assert counts["done"] == 4 and counts["pruned"] == 1 and counts["total"] == 4
    (summary,) = [s for s in q.experiment_summaries() if s["exp_key"] == "e"]
    assert summary["counts"]["pruned"] == 1 and summary["best_loss"] == 1.0


def test_wait_for_changes_returns_within_its_timeout(h):
    q = h.queue
    t0 = time.monotonic()
    q.wait_for_changes("e", 0.2)
    assert time.monotonic() - t0 < 5.0  # at most its timeout (plus scheduling), never an error


def test_the_in_memory_queue_wakes_a_waiting_driver_at_once():
    q = MemoryJobQueue()
    threading.Timer(0.05, lambda: queue_docs(q, [0])).start()
    t0 = time.monotonic()
    q.wait_for_changes("e", 10.0)
    assert time.monotonic() - t0 < 5.0
