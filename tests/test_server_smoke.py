"""Smoke test of every server feature hpo_mongo relies on, run against the session's test server.

Mainly for the in-memory mongo-java-server (tests/server/), an independent implementation of the
wire protocol: when the product starts using another server feature, add it here first.
The same tests pass against a real MongoDB (HPO_MONGO_TEST_URL or a mongod on PATH).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import gridfs
import pytest
from pymongo import ASCENDING, DESCENDING, InsertOne, ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

pytestmark = pytest.mark.server

NEW, RUNNING, DONE = 0, 1, 2
UTC = dt.timezone.utc


def _utc(t: dt.datetime) -> dt.datetime:
    """Command replies are decoded tz-naive (db.command ignores the client's tz_aware): they are UTC."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


def _near_now(t: dt.datetime, slack: float = 120.0) -> bool:
    """``t`` is tz-aware and within ``slack`` seconds of this machine's clock."""
    return t.tzinfo is not None and abs((t - dt.datetime.now(UTC)).total_seconds()) < slack


# ----------------------------------------------------------------------------- claiming
def test_find_one_and_update_claims_lowest_new_tid(mongo_db):
    jobs = mongo_db.jobs
    jobs.create_index([("tid", ASCENDING)], unique=True)
    # inserted out of order, with a lower tid already running: the lowest NEW one must win
    jobs.insert_many([{"tid": t, "state": NEW, "owner": None} for t in (5, 3, 9, 4)]
                     + [{"tid": 1, "state": RUNNING, "owner": "x"}])
    doc = jobs.find_one_and_update({"state": NEW}, {"$set": {"state": RUNNING, "owner": "me"}},
                                   sort=[("tid", ASCENDING)], return_document=ReturnDocument.AFTER)
    assert doc["tid"] == 3
    assert doc["state"] == RUNNING and doc["owner"] == "me"  # AFTER: the updated document
    before = jobs.find_one_and_update({"state": NEW}, {"$set": {"state": RUNNING}},
                                      sort=[("tid", ASCENDING)], return_document=ReturnDocument.BEFORE)
    assert before["tid"] == 4 and before["state"] == NEW
    # descending sort and a projection
    last = jobs.find_one_and_update({"state": NEW}, {"$set": {"state": RUNNING}}, sort=[("tid", DESCENDING)],
                                    projection={"tid": 1, "_id": 0}, return_document=ReturnDocument.AFTER)
    assert last == {"tid": 9}
    assert jobs.find_one_and_update({"state": "no such"}, {"$set": {"state": DONE}}) is None


def test_inc_and_counter_upsert(mongo_db):
    counters = mongo_db.counters
    # the store's pattern: create the counter with $setOnInsert, then allocate with $inc
    counters.update_one({"_id": "tid"}, {"$setOnInsert": {"seq": -1}}, upsert=True)
    counters.update_one({"_id": "tid"}, {"$setOnInsert": {"seq": 1000}}, upsert=True)  # no-op now
    doc = counters.find_one_and_update({"_id": "tid"}, {"$inc": {"seq": 5}}, upsert=True,
                                       return_document=ReturnDocument.AFTER)
    assert doc["seq"] == 4
    # an upsert that creates the document through find_one_and_update itself
    doc = counters.find_one_and_update({"_id": "other"}, {"$inc": {"seq": 1}}, upsert=True,
                                       return_document=ReturnDocument.AFTER)
    assert doc == {"_id": "other", "seq": 1}
    doc = counters.find_one_and_update({"_id": "other"}, {"$inc": {"seq": 2, "n.calls": 1}},
                                       return_document=ReturnDocument.AFTER)
    assert doc["seq"] == 3 and doc["n"] == {"calls": 1}
    res = counters.update_one({"_id": "third"}, {"$inc": {"seq": 1}}, upsert=True)
    assert res.upserted_id == "third"
    # raising a counter that fell behind ($max, the driver's repair after a reset), creating it if gone
    counters.update_one({"_id": "other"}, {"$max": {"seq": 10}}, upsert=True)
    counters.update_one({"_id": "other"}, {"$max": {"seq": 7}}, upsert=True)  # never lowers it
    assert counters.find_one({"_id": "other"})["seq"] == 10
    counters.update_one({"_id": "gone"}, {"$max": {"seq": 41}}, upsert=True)
    assert counters.find_one({"_id": "gone"})["seq"] == 41


def test_unique_index_raises_duplicate_key(mongo_db):
    jobs = mongo_db.jobs
    jobs.create_index([("tid", ASCENDING)], unique=True, name="tid_unique")
    jobs.create_index([("exp_key", ASCENDING), ("n", ASCENDING)], unique=True, name="exp_n_unique")
    jobs.create_index([("exp_key", ASCENDING), ("state", ASCENDING), ("tid", ASCENDING)], name="plain")
    names = set(jobs.index_information())
    assert {"tid_unique", "exp_n_unique", "plain"} <= names
    assert jobs.index_information()["tid_unique"].get("unique") is True

    jobs.insert_one({"tid": 1, "exp_key": "a", "n": 1})
    with pytest.raises(DuplicateKeyError) as info:
        jobs.insert_one({"tid": 1, "exp_key": "b", "n": 1})
    assert info.value.code == 11000
    with pytest.raises(DuplicateKeyError):  # compound index
        jobs.insert_one({"tid": 2, "exp_key": "a", "n": 1})
    jobs.insert_one({"tid": 3, "exp_key": "b", "n": 1})  # same n, other exp_key: fine
    with pytest.raises(DuplicateKeyError):  # an update can violate it too
        jobs.update_one({"tid": 3}, {"$set": {"tid": 1}})
    with pytest.raises(BulkWriteError) as bulk:
        jobs.insert_many([{"tid": 10}, {"tid": 1}, {"tid": 11}], ordered=True)
    assert [(e["index"], e["code"]) for e in bulk.value.details["writeErrors"]] == [(1, 11000)]
    assert jobs.count_documents({"tid": {"$in": [10, 11]}}) == 1  # ordered: stopped at the error
    # bulk_write with ordered inserts (how the store queues new trials)
    with pytest.raises(BulkWriteError):
        jobs.bulk_write([InsertOne({"tid": 20, "n": 20}), InsertOne({"tid": 20, "n": 21}),
                         InsertOne({"tid": 21, "n": 22})], ordered=True)
    assert jobs.count_documents({"tid": {"$in": [20, 21]}}) == 1


def _is_mongo_java_server(db) -> bool:
    try:
        return db.command("serverStatus").get("process") == "java"
    except OperationFailure:
        return False


def test_bulk_write_error_counts(mongo_db):
    """nInserted of a failed ordered bulk insert: what was inserted, not what was sent."""
    jobs = mongo_db.jobs
    jobs.create_index([("tid", ASCENDING)], unique=True)
    jobs.insert_one({"tid": 1})
    with pytest.raises(BulkWriteError) as bulk:
        jobs.insert_many([{"tid": 10}, {"tid": 1}, {"tid": 11}], ordered=True)
    n = bulk.value.details["nInserted"]
    if n != 1 and _is_mongo_java_server(mongo_db):
        pytest.xfail(f"mongo-java-server reports nInserted={n} (documents sent) instead of 1 for a failed "
                     "ordered bulk insert; the documents themselves are right. Do not rely on nInserted.")
    assert n == 1


# ----------------------------------------------------------------------------- reports (pruning)
def _reporting_jobs(db):
    jobs = db.jobs
    jobs.create_index([("exp_key", ASCENDING), ("reports.step", ASCENDING)])  # multikey
    jobs.insert_many([{"tid": 0, "exp_key": "e", "state": RUNNING, "owner": "w", "attempt": 1, "reports": []},
                      {"tid": 1, "exp_key": "e", "state": DONE, "result": {"status": "ok"},
                       "reports": [{"step": 5, "value": 1.0}, {"step": 0, "value": 2.0}]}])
    return jobs


def test_push_conditioned_on_an_absent_array_element(mongo_db):
    """The report write: owner-conditioned, and only while the step is not in the array yet."""
    jobs = _reporting_jobs(mongo_db)

    def push(step, value):
        return jobs.update_one({"tid": 0, "owner": "w", "attempt": 1, "state": RUNNING, "reports.step": {"$ne": step}},
                               {"$push": {"reports": {"step": step, "value": value}}}).matched_count

    assert [push(1, 0.5), push(1, 0.7), push(3, float("nan")), push(2, float("inf"))] == [1, 0, 1, 1]
    reports = jobs.find_one({"tid": 0})["reports"]
    assert [r["step"] for r in reports] == [1, 3, 2]
    assert reports[0]["value"] == 0.5 and reports[2]["value"] == float("inf")
    assert reports[1]["value"] != reports[1]["value"]  # NaN stored as NaN


def test_elem_match_projection_returns_the_first_matching_element(mongo_db):
    """The pruners' queries: the first report at (or past) a step, in array order."""
    jobs = _reporting_jobs(mongo_db)
    jobs.update_one({"tid": 0}, {"$push": {"reports": {"$each": [{"step": 1, "value": 0.5}, {"step": 3, "value": 0.4},
                                                                 {"step": 2, "value": 0.3}]}}})
    got = {d["tid"]: d["reports"] for d in jobs.find({"exp_key": "e", "reports.step": {"$gte": 2}},
                                                      {"tid": 1, "state": 1, "result.status": 1,
                                                       "reports": {"$elemMatch": {"step": {"$gte": 2}}}})}
    assert got == {0: [{"step": 3, "value": 0.4}], 1: [{"step": 5, "value": 1.0}]}
    at = list(jobs.find({"exp_key": "e", "reports.step": 2, "tid": {"$nin": [1]}},
                        {"tid": 1, "reports": {"$elemMatch": {"step": 2}}}))
    assert [(d["tid"], d["reports"]) for d in at] == [(0, [{"step": 2, "value": 0.3}])]
    sliced = {d["tid"]: d["reports"] for d in jobs.find({"exp_key": "e"}, {"tid": 1, "reports": {"$slice": -1}})}
    assert sliced == {0: [{"step": 2, "value": 0.3}], 1: [{"step": 0, "value": 2.0}]}
    assert "reports" not in jobs.find_one({"tid": 0}, {"reports": 0})
    assert jobs.count_documents({"exp_key": "e", "state": DONE, "result.status": "ok"}, limit=1) == 1


def test_positional_projection(mongo_db):
    """``reports.$`` should return the element the query matched; hpo_mongo uses $elemMatch instead."""
    jobs = _reporting_jobs(mongo_db)
    jobs.update_one({"tid": 0},
                    {"$push": {"reports": {"$each": [{"step": 1, "value": 0.5}, {"step": 2, "value": 0.3}]}}})
    (doc,) = jobs.find({"tid": 0, "reports.step": 2}, {"reports.$": 1})
    if doc["reports"] != [{"step": 2, "value": 0.3}] and _is_mongo_java_server(mongo_db):
        pytest.xfail(f"mongo-java-server answers a positional projection with the array's first element "
                     f"({doc['reports']}), not the matched one: the report queries use $elemMatch")
    assert doc["reports"] == [{"step": 2, "value": 0.3}]


def test_current_date_sets_datetime(mongo_db):
    exps = mongo_db.experiments
    exps.insert_one({"exp_key": "e", "driver": {"pid": 1}})
    exps.update_one({"exp_key": "e"}, {"$currentDate": {"updated_at": True, "driver.heartbeat": True},
                                       "$set": {"status": "running"}})
    doc = exps.find_one({"exp_key": "e"})
    assert isinstance(doc["updated_at"], dt.datetime) and _near_now(doc["updated_at"])
    assert isinstance(doc["driver"]["heartbeat"], dt.datetime) and doc["driver"]["pid"] == 1
    # the {"$type": "date"} form, and inside find_one_and_update
    got = exps.find_one_and_update({"exp_key": "e"}, {"$currentDate": {"t2": {"$type": "date"}}},
                                   return_document=ReturnDocument.AFTER)
    assert isinstance(got["t2"], dt.datetime) and got["t2"] >= doc["updated_at"]


# ----------------------------------------------------------------------------- server clock
def test_server_time_from_ismaster_local_time(mongo_db):
    reply = mongo_db.command("isMaster")
    assert "localTime" in reply, f"isMaster has no localTime: {sorted(reply)}"
    assert isinstance(reply["localTime"], dt.datetime) and _near_now(_utc(reply["localTime"]))


def test_server_time_from_server_status_local_time(mongo_db):
    try:
        reply = mongo_db.command("serverStatus")
    except OperationFailure as e:  # e.g. a hosted MongoDB without the clusterMonitor role
        pytest.skip(f"serverStatus refused by this server: {e}")
    assert "localTime" in reply, f"serverStatus has no localTime: {sorted(reply)}"
    assert isinstance(reply["localTime"], dt.datetime) and _near_now(_utc(reply["localTime"]))


def test_server_time_advances_with_current_date(mongo_db):
    """The clock $currentDate writes and the one isMaster reports agree (leases compare the two)."""
    t0 = _utc(mongo_db.command("isMaster")["localTime"])
    mongo_db.clock.insert_one({"_id": 1})
    mongo_db.clock.update_one({"_id": 1}, {"$currentDate": {"at": True}})
    at = mongo_db.clock.find_one({"_id": 1})["at"]
    t1 = _utc(mongo_db.command("isMaster")["localTime"])
    assert t0 - dt.timedelta(seconds=1) <= at <= t1 + dt.timedelta(seconds=1)


# ----------------------------------------------------------------------------- GridFS
def test_gridfs_legacy_put_get_delete(mongo_db):
    fs = gridfs.GridFS(mongo_db)
    small = b"hello attachments"
    big = os.urandom(600 * 1024)  # spans 3 chunks of 255 KiB: the chunk order matters
    a = fs.put(small, filename="a.txt", metadata={"tid": 1})
    b = fs.put(big, filename="b.bin")
    assert fs.get(a).read() == small
    assert fs.get(b).read() == big
    assert fs.exists(a) and fs.exists({"filename": "b.bin"})
    assert fs.get_last_version("a.txt").read() == small
    assert sorted(fs.list()) == ["a.txt", "b.bin"]
    assert [f.filename for f in fs.find({"metadata.tid": 1})] == ["a.txt"]
    fs.delete(b)
    assert not fs.exists(b)
    with pytest.raises(gridfs.NoFile):
        fs.get(b)
    assert mongo_db["fs.chunks"].count_documents({"files_id": b}) == 0


def test_gridfs_bucket_upload_download_delete(mongo_db):
    bucket = gridfs.GridFSBucket(mongo_db, bucket_name="att")
    data = os.urandom(300 * 1024) + b"tail"
    fid = bucket.upload_from_stream("trial-1/model", data, metadata={"tid": 1})
    assert bucket.open_download_stream(fid).read() == data
    assert bucket.open_download_stream_by_name("trial-1/model").read() == data
    fid2 = bucket.upload_from_stream("trial-1/model", b"v2")  # a newer revision of the same name
    assert bucket.open_download_stream_by_name("trial-1/model").read() == b"v2"
    assert bucket.open_download_stream_by_name("trial-1/model", revision=0).read() == data
    assert {f._id for f in bucket.find({"filename": "trial-1/model"})} == {fid, fid2}
    bucket.delete(fid)
    with pytest.raises(gridfs.NoFile):
        bucket.open_download_stream(fid)
    assert mongo_db["att.chunks"].count_documents({"files_id": fid}) == 0
    with pytest.raises(gridfs.NoFile):
        bucket.delete(fid)


# ----------------------------------------------------------------------------- queries
def _fill(coll, n=10):
    base = dt.datetime(2024, 1, 1, tzinfo=UTC)
    coll.insert_many([{"tid": i, "exp_key": "ab"[i % 2], "state": [NEW, RUNNING, DONE][i % 3],
                       "updated_at": base + dt.timedelta(minutes=i),
                       "result": {"status": "ok", "loss": float(10 - i)} if i % 3 == 2 else {"status": "new"}}
                      for i in range(n)])
    return base


def test_count_documents(mongo_db):
    _fill(mongo_db.jobs)
    assert mongo_db.jobs.count_documents({}) == 10
    assert mongo_db.jobs.count_documents({"exp_key": "a"}) == 5
    assert mongo_db.jobs.count_documents({"exp_key": "a", "state": {"$in": [NEW, DONE]}}) == 4
    assert mongo_db.jobs.count_documents({"state": DONE}, limit=2) == 2
    assert mongo_db.jobs.count_documents({"nope": {"$exists": True}}) == 0


def test_update_many(mongo_db):
    _fill(mongo_db.jobs)
    res = mongo_db.jobs.update_many({"state": NEW, "exp_key": "a"},
                                    {"$set": {"state": -1}, "$inc": {"version": 1}, "$currentDate": {"t": True}})
    assert res.matched_count == res.modified_count == 2  # tids 0 and 6
    assert sorted(d["tid"] for d in mongo_db.jobs.find({"state": -1, "version": 1})) == [0, 6]
    assert mongo_db.jobs.update_many({"state": 99}, {"$set": {"x": 1}}).matched_count == 0


def test_find_gt_on_datetime(mongo_db):
    base = _fill(mongo_db.jobs)
    cut = base + dt.timedelta(minutes=6)
    assert [d["tid"] for d in mongo_db.jobs.find({"updated_at": {"$gt": cut}}).sort("tid", 1)] == [7, 8, 9]
    assert [d["tid"] for d in mongo_db.jobs.find({"updated_at": {"$gte": cut}}, {"tid": 1})
            .sort("tid", 1)] == [6, 7, 8, 9]
    # a naive datetime means UTC to pymongo: same answer
    naive = cut.replace(tzinfo=None)
    assert mongo_db.jobs.count_documents({"updated_at": {"$gt": naive}}) == 3
    doc = mongo_db.jobs.find_one({"tid": 9})
    assert doc["updated_at"] == base + dt.timedelta(minutes=9) and doc["updated_at"].tzinfo is not None


def test_distinct(mongo_db):
    _fill(mongo_db.jobs)
    mongo_db.jobs.insert_one({"tid": 100, "exp_key": None, "state": NEW})
    assert set(mongo_db.jobs.distinct("exp_key")) == {None, "a", "b"}
    assert sorted(mongo_db.jobs.distinct("tid", {"state": DONE})) == [2, 5, 8]
    assert sorted(mongo_db.jobs.distinct("result.status")) == ["new", "ok"]


def test_aggregate_group(mongo_db):
    base = _fill(mongo_db.jobs)
    rows = list(mongo_db.jobs.aggregate([
        {"$group": {"_id": {"k": "$exp_key", "s": "$state"}, "n": {"$sum": 1},
                    "first": {"$min": "$updated_at"}, "last": {"$max": "$updated_at"}}}]))
    by_key = {(r["_id"]["k"], r["_id"]["s"]): r for r in rows}
    assert sum(r["n"] for r in rows) == 10 and len(rows) == 6
    assert by_key[("a", NEW)]["n"] == 2 and by_key[("a", NEW)]["first"] == base
    assert by_key[("b", DONE)]["last"] == base + dt.timedelta(minutes=5)
    best = list(mongo_db.jobs.aggregate([{"$match": {"state": DONE, "result.status": "ok"}},
                                         {"$group": {"_id": "$exp_key", "best": {"$min": "$result.loss"}}}]))
    assert {r["_id"]: r["best"] for r in best} == {"a": 2.0, "b": 5.0}


def test_other_operators_the_product_uses(mongo_db):
    jobs = mongo_db.jobs
    _fill(jobs)
    # $type "number", dotted sort + limit + projection (inspect's "best")
    cur = jobs.find({"result.status": "ok", "result.loss": {"$type": "number"}}, {"tid": 1, "result.loss": 1})
    assert [d["tid"] for d in cur.sort([("result.loss", 1), ("tid", 1)]).limit(2)] == [8, 5]
    # $ne, $or, $in, skip
    assert jobs.count_documents({"state": {"$ne": NEW}}) == 6
    assert jobs.count_documents({"$or": [{"tid": 1}, {"exp_key": "b", "state": DONE}]}) == 2
    assert [d["tid"] for d in jobs.find({"tid": {"$in": [1, 2, 3]}}).sort("tid", -1).skip(1)] == [2, 1]
    # $push of a pair, $unset, $setOnInsert via upsert, delete_one / delete_many
    jobs.update_one({"tid": 1}, {"$push": {"_attachments": ["name", "id1"]}, "$unset": {"result": ""}})
    doc = jobs.find_one({"tid": 1})
    assert doc["_attachments"] == [["name", "id1"]] and "result" not in doc
    jobs.update_one({"tid": 50}, {"$setOnInsert": {"state": NEW}, "$set": {"exp_key": "c"}}, upsert=True)
    assert jobs.find_one({"tid": 50}, {"_id": 0}) == {"tid": 50, "state": NEW, "exp_key": "c"}
    bulk = jobs.bulk_write([UpdateOne({"tid": 2}, {"$set": {"x": 1}}), InsertOne({"tid": 60})], ordered=True)
    assert bulk.modified_count == 1 and bulk.inserted_count == 1
    assert jobs.delete_one({"tid": 60}).deleted_count == 1
    assert jobs.delete_many({"exp_key": "b"}).deleted_count == 5
    assert "jobs" in mongo_db.list_collection_names()
    # a conditional update that must not match (the lease check of finish())
    assert jobs.update_one({"tid": 0, "owner": "someone else"}, {"$set": {"state": DONE}}).matched_count == 0


# ----------------------------------------------------------------------------- concurrency
_CLAIMER = r"""
import json, sys, time
import pymongo
from pymongo import ReturnDocument
url, worker = sys.argv[1], sys.argv[2]
client = pymongo.MongoClient(url, serverSelectionTimeoutMS=20000)
db = client.get_default_database()
db.command("ping")
print("ready", flush=True)
deadline = time.monotonic() + 60
while db.control.find_one({"_id": "go"}) is None:  # start together, to make the race real
    if time.monotonic() > deadline:
        sys.exit("no go signal")
claimed = []
while True:
    doc = db.jobs.find_one_and_update(
        {"state": 0}, {"$set": {"state": 1, "owner": worker}, "$inc": {"claims": 1}},
        sort=[("tid", 1)], return_document=ReturnDocument.AFTER)
    if doc is None:
        break
    if doc["owner"] != worker or doc["claims"] != 1:
        sys.exit(f"bad claim {doc!r}")
    claimed.append(doc["tid"])
    time.sleep(0.001)  # let the others interleave
print(json.dumps(claimed), flush=True)
"""


def test_four_processes_claim_each_doc_exactly_once(mongo_db, mongo_url, tmp_path):
    n_docs, n_procs = 200, 4
    mongo_db.jobs.create_index([("tid", ASCENDING)], unique=True)
    mongo_db.jobs.insert_many([{"tid": t, "state": NEW, "owner": None, "claims": 0} for t in range(n_docs)])
    script = tmp_path / "claimer.py"
    script.write_text(_CLAIMER)
    procs = [subprocess.Popen([sys.executable, str(script), mongo_url, f"w{i}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(n_procs)]
    try:
        for p in procs:  # wait until every process is connected
            line = p.stdout.readline()
            assert line.strip() == "ready", (line, p.stderr.read() if p.poll() is not None else "")
        mongo_db.control.insert_one({"_id": "go"})
        results = {}
        for i, p in enumerate(procs):
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
            results[f"w{i}"] = json.loads(out.strip().splitlines()[-1])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    claimed = [t for tids in results.values() for t in tids]
    assert sorted(claimed) == list(range(n_docs)), "some doc claimed twice or never"
    for tids in results.values():  # each process sees its claims in increasing tid order
        assert tids == sorted(tids)
    assert sum(1 for tids in results.values() if tids) >= 2, f"no race happened: {[len(t) for t in results.values()]}"
    docs = list(mongo_db.jobs.find({}, {"tid": 1, "owner": 1, "claims": 1, "state": 1}))
    assert all(d["claims"] == 1 and d["state"] == 1 for d in docs)
    owner_of = {d["tid"]: d["owner"] for d in docs}
    assert all(owner_of[t] == w for w, tids in results.items() for t in tids)
