"""Each hot query is served by an index the driver declares (``MongoJobQueue.prepare``).

Neither test-server backend has ``explain``, so the check is on the queries themselves: every
filter and sort a driver and a worker send during a short run (captured with a pymongo command
listener on the real test server) must start with the keys of a declared index — equality keys
first (in any order), then the sort or range key — or look a document up by ``_id``.
"""
from __future__ import annotations

import threading

import numpy as np
from pymongo import monitoring

from hpo_mongo import fmin, hp, pruners, rand, report
from hpo_mongo.trials.mongo.queue import INDEXES, MongoJobQueue
from hpo_mongo.trials.mongo.store import MongoTrials
from hpo_mongo.trials.queue import ANY_EXPERIMENT
from hpo_mongo.worker.loop import Worker, WorkerConfig

HOT = {"find", "findAndModify", "update", "delete", "count", "aggregate"}


class Recorder(monitoring.CommandListener):
    def __init__(self):
        self.commands: list[tuple[str, str, dict, dict]] = []

    def started(self, event):
        if event.command_name not in HOT:
            return
        cmd = event.command
        coll = cmd.get(event.command_name)
        if event.command_name == "update":
            for u in cmd.get("updates", []):
                self.commands.append(("update", coll, dict(u.get("q", {})), {}))
        elif event.command_name == "delete":
            for d in cmd.get("deletes", []):
                self.commands.append(("delete", coll, dict(d.get("q", {})), {}))
        elif event.command_name == "aggregate":
            match = next((st["$match"] for st in cmd.get("pipeline", []) if "$match" in st), {})
            self.commands.append(("aggregate", coll, dict(match), {}))
        else:
            flt = cmd.get("filter", cmd.get("query", {})) or {}
            self.commands.append((event.command_name, coll, dict(flt), dict(cmd.get("sort") or {})))

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


def _objective(params):
    for step in range(1, 4):
        report(params["x"] + 1.0 / step, step)
    return params["x"]


RANGE_OPS = ("$gt", "$gte", "$lt", "$lte", "$ne", "$nin", "$in", "$elemMatch", "$exists", "$type")


def served(flt: dict, sort: dict, indexes: list[list[str]]) -> bool:
    """Whether an index starts with equality keys of ``flt`` (any order; at least one), followed by
    ``sort``'s first key when there is a sort, or by a range key of ``flt``; lookups by ``_id`` are
    served by the primary key. Other filter keys are then checked on the few documents found."""
    keys = [k for k in flt if not k.startswith("$")]
    if "_id" in keys:
        return True
    equality = {k for k in keys if not (isinstance(flt[k], dict) and any(op in flt[k] for op in RANGE_OPS))}
    ranges = [k for k in keys if k not in equality]
    for ix in indexes:
        used = 0
        while used < len(ix) and ix[used] in equality:
            used += 1
        nxt = ix[used] if used < len(ix) else None
        if sort:
            if nxt == next(iter(sort)) and (used or len(equality) == 0):
                return True
            continue
        if used or (ranges and ix[0] in ranges):
            return True
    return False


def test_every_hot_query_of_a_run_is_served_by_a_declared_index(mongo_url):
    rec = Recorder()
    driver_q = MongoJobQueue.connect(mongo_url, event_listeners=[rec])
    worker_q = MongoJobQueue.connect(mongo_url, event_listeners=[rec])
    workers = [Worker(worker_q, WorkerConfig(exp_key="ix", poll_interval=0.02, subprocess=False, max_jobs=6)),
               Worker(worker_q, WorkerConfig(exp_key=ANY_EXPERIMENT, poll_interval=0.02, subprocess=False,
                                             max_jobs=2), owner="other:1")]
    threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
    for t in threads:
        t.start()
    trials = MongoTrials(driver_q, exp_key="ix", poll_interval=0.02)
    fmin(_objective, {"x": hp.uniform("x", 0, 1)}, algo=rand.suggest, max_evals=8, trials=trials,
         pruner=pruners.MedianPruner(n_startup_trials=2), show_progressbar=False, rstate=np.random.default_rng(0))
    for w in workers:
        w.stop()
    for t in threads:
        t.join(20)
    jobs = [[k for k, _ in keys] for coll, keys, _, _ in INDEXES if coll == "jobs"]
    experiments = [[k for k, _ in keys] for coll, keys, _, _ in INDEXES if coll == "experiments"]
    seen = {(name, coll, tuple(sorted(flt)), tuple(sort)) for name, coll, flt, sort in rec.commands}
    assert any(name == "findAndModify" and coll == "jobs" for name, coll, *_ in seen)  # the claims were seen
    unserved = []
    for name, coll, flt, sort in rec.commands:
        if coll == "jobs" and not served(flt, sort, jobs):
            unserved.append((name, flt, sort))
        if coll == "experiments" and not served(flt, sort, experiments):
            unserved.append((name, flt, sort))
    assert not unserved, unserved
    driver_q.close()
    worker_q.close()


def test_the_check_itself():
    jobs = [["tid"], ["exp_key", "state", "tid"], ["state", "tid"], ["exp_key", "updated_at"]]
    assert served({"exp_key": "e", "state": 0}, {"tid": 1}, jobs)
    assert served({"state": 0}, {"tid": 1}, jobs)
    assert served({"exp_key": "e", "updated_at": {"$gte": 1}}, {}, jobs)
    assert served({"_id": 5, "owner": "w", "attempt": 1, "state": 1}, {}, jobs)
    assert not served({"owner": "w"}, {}, jobs)
    assert not served({"exp_key": "e"}, {"result.loss": 1}, [["tid"], ["exp_key", "updated_at"]])
    assert not served({"state": 0}, {"tid": 1}, [["exp_key", "state", "tid"]])  # a claim across experiments
