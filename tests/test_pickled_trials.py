"""A MongoTrials pickled into the domain (an objective that references its trials) carries neither the
signing secret nor the URL's credentials, and reconnects on a worker with the worker's own connection."""
from __future__ import annotations

import pickle

import cloudpickle
import numpy as np
import pytest

from hpo_mongo import fmin, hp, rand
from hpo_mongo.exceptions import InvalidURLError
from hpo_mongo.trials.documents import JOB_STATE_DONE
from hpo_mongo.trials.mongo.queue import MongoJobQueue
from hpo_mongo.trials.mongo.store import MongoTrials
from hpo_mongo.trials.queued import serving

from tests.helpers_distributed import Procs, wait_until

SECRET = "pickled-trials-signing-secret-0123456789"
PASSWORD = "pa55-w0rd-never-pickled"


def test_pickled_mongotrials_has_no_secret_nor_password_and_reconnects_explicitly(monkeypatch):
    monkeypatch.delenv("HPO_MONGO_URL", raising=False)
    url = f"mongodb://alice:{PASSWORD}@127.0.0.1:1/expdb/runs?authSource=admin"
    trials = MongoTrials(url, exp_key="e", refresh=False, secret=SECRET.encode(), secret_file="/etc/hpo-secret")
    raw = cloudpickle.dumps(lambda cfg: len(trials.attachments))  # an objective that references its trials
    for leak in (SECRET.encode(), PASSWORD.encode(), b"/etc/hpo-secret", b"authSource"):
        assert leak not in raw, leak

    # outside a worker: no credentials to reconnect with, so a clear error (not a silent anonymous login)
    with pytest.raises(InvalidURLError, match="had credentials, which are never pickled; set HPO_MONGO_URL"):
        pickle.loads(raw)

    # with $HPO_MONGO_URL: its server and credentials, the pickled database, collection and exp_key
    monkeypatch.setenv("HPO_MONGO_URL", "mongodb://bob:other@127.0.0.1:2/elsewhere")
    t = pickle.loads(raw).__closure__[0].cell_contents
    assert (t.handle.db.name, t.handle.jobs.name, t.exp_key) == ("expdb", "runs", "e")
    assert t.handle.url.uri.startswith("mongodb://bob:other@127.0.0.1:2/") and t._secret is None

    # inside reconnect_through (what a worker does): that handle's client, and its secret
    worker = MongoJobQueue.connect("mongodb://127.0.0.1:3/expdb/runs")
    with serving(worker, b"worker-secret"):
        t = pickle.loads(raw).__closure__[0].cell_contents
    assert t.handle is worker and t._secret == b"worker-secret"
    with serving(worker):
        other = pickle.loads(cloudpickle.dumps(MongoTrials("mongodb://127.0.0.1:1/db2", refresh=False)))
    assert other.handle.client is worker.client and other.handle.db.name == "db2"

    # a URL without credentials still round-trips by itself (hyperopt's behaviour)
    monkeypatch.delenv("HPO_MONGO_URL")
    plain = pickle.loads(pickle.dumps(MongoTrials("mongodb://127.0.0.1:1/plain", exp_key="p", refresh=False)))
    assert plain.handle.url.uri == "mongodb://127.0.0.1:1/" and plain.handle.db.name == "plain"


def test_objective_using_its_trials_on_a_signed_worker(mongo_url, mongo_db, tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET)
    secret_file.chmod(0o600)
    trials = MongoTrials(mongo_url, exp_key="sec", secret=SECRET.encode(), poll_interval=0.02)
    trials.attachments["data"] = b"12345"

    def objective(cfg):  # runs on the worker, with the MongoTrials unpickled from the domain
        return {"loss": cfg["x"] ** 2 + len(trials.attachments["data"]), "status": "ok", "where": repr(trials)}

    with Procs(tmp_path) as procs:
        # the worker's own URL differs from the driver's (an extra option), to see which one is used
        worker = procs.worker(f"{mongo_url}?appname=worker-own-url", "--exp-key", "sec", "--no-subprocess",
                              "--secret-file", str(secret_file))
        wait_until(lambda: "serving" in worker.output(), timeout=30, what="the worker serving")
        fmin(objective, {"x": hp.uniform("x", -1, 1)}, algo=rand.suggest, max_evals=3, trials=trials,
             rstate=np.random.default_rng(0), show_progressbar=False)
        worker.signal()
        assert procs.wait([worker], timeout=30) == [0], procs.report()
    assert [t["state"] for t in trials] == [JOB_STATE_DONE] * 3, [t.get("error") for t in trials]
    for t in trials:
        assert t["result"]["loss"] >= 5 and "appname=worker-own-url" in t["result"]["where"]
    digest = mongo_db.experiments.find_one({"exp_key": "sec"})["domain_hash"]
    f = mongo_db["fs.files"].find_one({"filename": f"domain/{digest}"})
    blob = b"".join(c["data"] for c in mongo_db["fs.chunks"].find({"files_id": f["_id"]}).sort("n", 1))
    assert len(blob) == f["length"] and b"objective" in blob
    assert SECRET.encode() not in blob
