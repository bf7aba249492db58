"""The restartable test server (tests/server_process.py): the H2 backend keeps its data across a clean
restart on the same port. (A memory server killed and restarted empty is what
tests/test_driver_recovery.py runs a driver through.)"""
from __future__ import annotations

import gridfs
import pymongo
import pytest
from pymongo.errors import DuplicateKeyError

pytestmark = pytest.mark.server


def _client(url: str) -> pymongo.MongoClient:
    return pymongo.MongoClient(url, serverSelectionTimeoutMS=10_000, tz_aware=True)


def test_h2_server_keeps_its_data_across_a_sigterm_restart_on_the_same_port(server_process, tmp_path):
    server = server_process(h2_file=tmp_path / "db.mv")
    port = server.port
    client = _client(server.url)
    db = client.smoke
    db.jobs.create_index("tid", unique=True, name="tid_unique")
    db.jobs.insert_many([{"tid": t, "state": 0} for t in range(50)])
    db.jobs.update_one({"tid": 7}, {"$set": {"state": 2}, "$currentDate": {"updated_at": True}})
    db.counters.find_one_and_update({"_id": "tid"}, {"$inc": {"seq": 50}}, upsert=True)
    file_id = gridfs.GridFS(db).put(b"x" * 300_000, filename="domain/abc")  # several chunks
    client.close()

    assert server.stop() is not None and not server.running
    server.start()
    assert server.port == port and server.starts == 2
    client = _client(server.url)
    db = client.smoke
    assert db.jobs.count_documents({}) == 50
    doc = db.jobs.find_one({"tid": 7})
    assert doc["state"] == 2 and doc["updated_at"].tzinfo is not None
    assert "tid_unique" in db.jobs.index_information()
    with pytest.raises(DuplicateKeyError):  # the unique index is still enforced
        db.jobs.insert_one({"tid": 7})
    after = db.counters.find_one_and_update({"_id": "tid"}, {"$inc": {"seq": 1}},
                                            return_document=pymongo.ReturnDocument.AFTER)
    assert after["seq"] == 51
    assert gridfs.GridFS(db).get(file_id).read() == b"x" * 300_000
    client.close()
