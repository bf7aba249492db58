"""The pymongo example queries of docs/schema.md and docs/inspecting.md return what the documents
say (real server).

The blocks tagged ``# example: <name>`` are extracted from the document and run as written,
with ``db`` (a pymongo Database) and ``exp_key`` defined, against an experiment produced by a
real fmin + worker run (DONE, ERROR, RUNNING trials, attachments, a live worker document).
"""
from __future__ import annotations

import re
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from hpo_mongo import fmin, hp, rand
from hpo_mongo.trials.documents import JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_RUNNING
from hpo_mongo.trials.mongo.queue import MongoJobQueue
from hpo_mongo.trials.mongo.store import MongoTrials
from hpo_mongo.worker.loop import Worker, WorkerConfig

DOC = Path(__file__).resolve().parents[1] / "docs" / "schema.md"
INSPECTING = DOC.parent / "inspecting.md"
EXAMPLE_RE = re.compile(r"```python\n(# example: (\w+).*?)```", re.S)
EXP_KEY = "my-exp"
KINDS = ["linear", "tree", "forest"]
SPACE = {"kind": hp.choice("kind", KINDS), "x": hp.uniform("x", -1, 1)}


def examples(doc: Path = DOC) -> dict[str, str]:
    return {name: code for code, name in EXAMPLE_RE.findall(doc.read_text())}


def objective(p):
    if p["x"] < -0.5:
        raise ValueError(f"x={p['x']:.3f} too small")
    return {"loss": p["x"] ** 2 + KINDS.index(p["kind"]), "status": "ok",
            "attachments": {"note": f"kind={p['kind']}".encode()}}


@pytest.fixture
def experiment(mongo_url):
    """A finished 16-trial experiment plus two RUNNING trials claimed by a worker with a heartbeat."""
    handle = MongoJobQueue.connect(mongo_url)
    worker = Worker(handle, WorkerConfig(exp_key=EXP_KEY, poll_interval=0.02, subprocess=False, max_jobs=16))
    th = threading.Thread(target=worker.run, daemon=True)
    th.start()
    trials = MongoTrials(mongo_url, exp_key=EXP_KEY, poll_interval=0.02)
    fmin(objective, SPACE, algo=rand.suggest, max_evals=16, trials=trials, rstate=np.random.default_rng(5),
         show_progressbar=False)
    th.join(10)
    # two more trials, claimed and left RUNNING by a live worker
    from hpo_mongo.domain import Domain
    ids = trials.new_trial_ids(2)
    trials.insert_trial_docs(rand.suggest(ids[:1], Domain(objective, SPACE), trials, 1)
                             + rand.suggest(ids[1:], Domain(objective, SPACE), trials, 2))
    busy = Worker(handle, WorkerConfig(exp_key=EXP_KEY, subprocess=False))
    running = [busy.claim() for _ in ids]
    busy.current, busy.status = running[-1], "busy"
    busy.beat()
    trials.refresh()
    return handle.db, trials, busy


def _run(name: str, db, doc: Path = DOC) -> object:
    code = examples(doc)[name]
    ns = {"db": db, "exp_key": EXP_KEY}
    exec(compile(code, f"docs/{doc.name}:{name}", "exec"), ns)  # noqa: S102 - the documented example
    return ns["result"]


def test_the_document_has_the_examples():
    assert set(examples()) >= {"best5", "running", "errors", "counts", "best_point", "experiments", "attachment"}


def test_schema_examples(experiment):
    db, trials, busy = experiment
    docs = trials.trials
    ok = sorted((d for d in docs if d["state"] == JOB_STATE_DONE), key=lambda d: d["result"]["loss"])
    errors = [d for d in docs if d["state"] == JOB_STATE_ERROR]
    running = [d for d in docs if d["state"] == JOB_STATE_RUNNING]
    assert len(ok) >= 5 and errors and len(running) == 2  # the fixture made every case

    best5 = _run("best5", db)
    assert [d["tid"] for d in best5] == [d["tid"] for d in ok[:5]]
    assert [d["result"]["loss"] for d in best5] == [d["result"]["loss"] for d in ok[:5]]
    assert best5[0]["misc"]["vals"] == ok[0]["misc"]["vals"] and "_id" not in best5[0]

    run = _run("running", db)
    assert [d["tid"] for d in run] == [d["tid"] for d in running]
    for job in run:
        assert job["owner"] == busy.owner and job["attempt"] == 1 and job["heartbeat"] is not None
        assert job["worker_doc"]["owner"] == busy.owner and job["worker_doc"]["status"] == "busy"

    errs = _run("errors", db)
    assert [e[0] for e in errs] == [d["tid"] for d in errors]
    for _tid, typ, msg, tb in errs:
        assert typ == "ValueError" and "too small" in msg and tb.startswith("Traceback") and "objective" in tb

    assert _run("counts", db) == dict(Counter(d["state"] for d in docs))

    point = _run("best_point", db)
    best = trials.best_trial
    assert point == {"kind": KINDS[best["misc"]["vals"]["kind"][0]], "x": best["misc"]["vals"]["x"][0]}
    assert point["kind"] in KINDS

    assert _run("experiments", db) == {EXP_KEY: ("done", len(ok))}

    tid, name, blob = _run("attachment", db)
    doc = next(d for d in docs if d["tid"] == tid)
    assert name == "note" and blob == trials.trial_attachments(doc)["note"]
    assert blob == f"kind={KINDS[doc['misc']['vals']['kind'][0]]}".encode()


def test_inspecting_live_workers_example(experiment):
    """The documented query lists live workers only: not an exited one, not a silent one."""
    import datetime as dt

    from hpo_mongo.trials.mongo.connection import server_time
    db, trials, busy = experiment
    now = server_time(db)
    db.workers.insert_one({"_id": "silent", "host": "gone", "pid": 1, "status": "idle", "serves_all": True,
                           "heartbeat": now - dt.timedelta(minutes=10)})
    db.workers.insert_one({"_id": "elsewhere", "host": "h", "pid": 2, "status": "idle", "serves_all": False,
                           "exp_key": "other-exp", "heartbeat": now})
    exited = db.workers.count_documents({"status": "exited"})
    assert exited >= 1  # the fixture's first worker stopped cleanly
    live = _run("live_workers", db, INSPECTING)
    assert [w["_id"] for w in live] == [busy.worker_id]


def test_inspecting_sample_algorithm_name_is_what_fmin_records():
    from hpo_mongo import tpe
    from hpo_mongo.trials.queued import algo_name
    assert f"algorithm   {algo_name(tpe.suggest)}\n" in INSPECTING.read_text()
