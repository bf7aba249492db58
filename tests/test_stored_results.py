"""What a worker stores for results the rules turn into failures (docs/schema.md: an unusable
``result.loss`` is null, the reason in ``failure``) — on the real server."""
from __future__ import annotations

import math
import threading

import numpy as np

from hpo_mongo import fmin, hp, rand
from hpo_mongo.trials.documents import JOB_STATE_DONE
from hpo_mongo.trials.mongo.queue import MongoJobQueue
from hpo_mongo.trials.mongo.store import MongoTrials
from hpo_mongo.worker.loop import Worker, WorkerConfig

RETURNS = [{"loss": "abc", "status": "ok"}, -math.inf, {"loss": -math.inf, "status": "ok"},
           {"loss": object, "status": "ok"}, 1.0]


def objective(p):
    return RETURNS[p["i"]]


def test_unusable_losses_are_stored_as_null_with_the_reason(mongo_url, mongo_db):
    handle = MongoJobQueue.connect(mongo_url)
    worker = Worker(handle, WorkerConfig(exp_key="rules", poll_interval=0.02, subprocess=False,
                                         max_jobs=len(RETURNS)))
    th = threading.Thread(target=worker.run, daemon=True)
    th.start()
    trials = MongoTrials(mongo_url, exp_key="rules", poll_interval=0.02)
    fmin(objective, {"i": hp.randint("i", len(RETURNS))}, algo=rand.suggest, max_evals=len(RETURNS),
         trials=trials, points_to_evaluate=[{"i": i} for i in range(len(RETURNS))],
         rstate=np.random.default_rng(0), show_progressbar=False)
    th.join(10)
    docs = {d["misc"]["vals"]["i"][0]: d for d in mongo_db.jobs.find({"exp_key": "rules"})}
    assert all(d["state"] == JOB_STATE_DONE for d in docs.values())
    assert mongo_db.jobs.count_documents({"exp_key": "rules", "result.loss": {"$type": "string"}}) == 0
    failures = {i: (d["result"]["status"], d["result"]["loss"], d["result"].get("failure")) for i, d in docs.items()}
    assert failures[0] == ("fail", None, "loss must be a number, got str ('abc')")
    assert failures[1] == ("fail", None, "objective returned an invalid result: loss is -inf")
    assert failures[2] == ("fail", None, "loss is -inf")
    assert failures[3][:2] == ("fail", None) and "got type (<class 'object'>)" in failures[3][2]
    assert failures[4] == ("ok", 1.0, None)
    assert trials.best_trial["misc"]["vals"]["i"] == [4]


def test_a_nul_in_a_label_is_refused_at_definition():
    import pytest

    from hpo_mongo.exceptions import InvalidSpaceError
    for make in (lambda: hp.uniform("a\x00b", 0, 1), lambda: hp.choice("c\x00", [1, 2]),
                 lambda: hp.randint("\x00", 3)):
        with pytest.raises(InvalidSpaceError, match=r"contains a NUL character \(\\x00\)"):
            make()
