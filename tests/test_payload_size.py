"""Large domain payloads (an objective capturing big data) on the real test server: reported at
fmin start, refused before anything is queued when the server does not take them, and read
back chunk by chunk whatever their size (a 100 MB round trip through a real worker: slow)."""
from __future__ import annotations

import logging
import threading
import math

import gridfs
import numpy as np
import pytest
from pymongo.errors import OperationFailure

from hpo_mongo import fmin, hp, rand
from hpo_mongo.exceptions import StoreError
from hpo_mongo.payload import PAYLOAD_WARN_BYTES, size_warning
from hpo_mongo.trials.mongo import attachments as att
from hpo_mongo.trials.mongo.queue import MongoJobQueue
from hpo_mongo.trials.mongo.store import MongoTrials
from hpo_mongo.worker.loop import Worker, WorkerConfig
from tests.helpers_distributed import Procs

SPACE = {"i": hp.randint("i", 1000)}


def test_size_warning_threshold():
    assert PAYLOAD_WARN_BYTES == 16 * 2**20
    assert size_warning(PAYLOAD_WARN_BYTES) is None
    text = size_warning(80 * 2**20)
    assert text.startswith("the pickled objective is 80.0 MB (over 16 MB)")
    assert "Load large data inside the objective" in text


def test_files_are_read_in_bounded_batches(mongo_db, monkeypatch):
    monkeypatch.setattr(att, "READ_BATCH_BYTES", 600 * 1024)  # two 255 kB chunks per query
    blob = np.random.default_rng(0).bytes(3 * 2**20 + 17)
    att.put_domain(mongo_db, blob, "h1", None)
    replies = []
    real_find = type(mongo_db["fs.chunks"]).find

    def spy(coll, flt, *a, **kw):
        cur = real_find(coll, flt, *a, **kw)
        if coll.name == "fs.chunks":
            replies.append(flt["n"])
        return cur
    monkeypatch.setattr(type(mongo_db["fs.chunks"]), "find", spy)
    assert att.get_domain(mongo_db, "h1") == blob
    chunk = 255 * 1024
    assert len(replies) == math.ceil(math.ceil(len(blob) / chunk) / 2)
    assert all(r["$lt"] - r["$gte"] <= 2 for r in replies)
    assert att.get_domain(mongo_db, "nope") is None


def test_a_missing_chunk_is_an_error_not_short_data(mongo_db):
    att.put_domain(mongo_db, b"x" * (600 * 1024), "h2", None)
    f = mongo_db["fs.files"].find_one({"filename": "domain/h2"})
    mongo_db["fs.chunks"].delete_one({"files_id": f["_id"], "n": 1})
    with pytest.raises(StoreError, match=r"GridFS file 'domain/h2' .* is incomplete: chunks 0\.\.2 expected, "
                                         r"found \[0, 2\]"):
        att.get_domain(mongo_db, "h2")
    with pytest.raises(StoreError, match="was not stored whole"):  # a driver finding it refuses it too
        att.put_domain(mongo_db, b"x" * (600 * 1024), "h2", None)


def _big_objective(n_bytes: int):
    data = np.arange(n_bytes // 8, dtype=np.float64)

    def objective(p):
        return float(data[p["i"] * (data.size // 1000)] + data.sum() % 7)
    return objective, data


def test_large_payload_is_reported_at_fmin_start(mongo_url, mongo_db, caplog):
    objective, _ = _big_objective(PAYLOAD_WARN_BYTES + 2**20)
    caplog.set_level(logging.WARNING, logger="hpo_mongo")
    worker = Worker(MongoJobQueue.connect(mongo_url),
                    WorkerConfig(poll_interval=0.02, subprocess=False, max_jobs=1, reserve_timeout=30))
    th = threading.Thread(target=worker.run, daemon=True)
    th.start()
    trials = MongoTrials(mongo_url, poll_interval=0.05)
    fmin(objective, SPACE, algo=rand.suggest, max_evals=1, trials=trials, rstate=np.random.default_rng(0),
         show_progressbar=False)
    th.join(30)
    assert trials.trials[0]["state"] == 2  # a large payload still works
    warned = [r.getMessage() for r in caplog.records if "the pickled objective is" in r.getMessage()]
    assert len(warned) == 1 and "is 17.0 MB (over 16 MB)" in warned[0], warned


def test_a_refused_upload_fails_before_anything_is_queued(mongo_url, mongo_db, monkeypatch):
    real_write = gridfs.GridIn.write

    def refuse_after_a_while(self, data):
        real_write(self, bytes(data)[: 2**20])  # some chunks reach the server, then it refuses
        raise OperationFailure("quota exceeded", 12501)
    monkeypatch.setattr(gridfs.GridIn, "write", refuse_after_a_while)
    objective, _ = _big_objective(4 * 2**20)
    trials = MongoTrials(mongo_url, poll_interval=0.05)
    with pytest.raises(StoreError, match=r"MongoDB refused the domain payload \(4\.0 MB\) in GridFS: quota exceeded"):
        fmin(objective, SPACE, algo=rand.suggest, max_evals=2, trials=trials, rstate=np.random.default_rng(0),
             show_progressbar=False)
    assert mongo_db.jobs.count_documents({}) == 0  # nothing queued
    assert mongo_db["fs.files"].count_documents({}) == 0 and mongo_db["fs.chunks"].count_documents({}) == 0


@pytest.mark.slow
def test_100_mb_payload_round_trip_through_a_worker(mongo_url, mongo_db, tmp_path):
    """An objective capturing 100 MB: stored once, read back by a real worker, evaluated."""
    n_bytes = 100 * 2**20
    objective, data = _big_objective(n_bytes)
    with Procs(tmp_path) as procs:
        procs.worker(mongo_url, "--reserve-timeout", "60", "--max-jobs", "2")
        trials = MongoTrials(mongo_url, poll_interval=0.05)
        fmin(objective, SPACE, algo=rand.suggest, max_evals=2, trials=trials, rstate=np.random.default_rng(0),
             show_progressbar=False)
        assert procs.wait(timeout=120) == [0], procs.report()
    f = mongo_db["fs.files"].find_one({"metadata.kind": "domain"})
    assert f["length"] > n_bytes
    assert [t["state"] for t in trials.trials] == [2, 2], [t.get("error") for t in trials.trials]
    for t in trials.trials:  # the worker's copy of the array was whole
        assert t["result"]["loss"] == objective({"i": t["misc"]["vals"]["i"][0]})
    blob = att.get_domain(mongo_db, f["metadata"]["hash"])  # and the driver side reads it back too
    assert len(blob) == f["length"]
