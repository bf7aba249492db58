"""The inspection layer and the ``hpo-mongo`` CLI work on any JobQueue: here a MemoryJobQueue with
a hand-moved clock (the real-server CLI tests are tests/test_cli*.py). Also: inspect/ and cli/
reach MongoDB only through ``trials.factory.connect_queue``, and the lease / liveness rules they
apply are those of ``trials.leases``."""
from __future__ import annotations

import ast
import datetime as _dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from hpo_mongo import hp
from hpo_mongo import inspect as hi
from hpo_mongo.cli.main import cli
from hpo_mongo.exceptions import UnknownExperiment, UnknownTrial
from hpo_mongo.space import compile_space
from hpo_mongo.trials import leases
from hpo_mongo.trials.documents import (JOB_STATE_CANCEL, JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_NEW,
                                        JOB_STATE_RUNNING, new_trial_doc)
from hpo_mongo.trials.memory_queue import MemoryJobQueue

PACKAGE = Path(__file__).resolve().parents[1] / "hpo_mongo"
ACTS = ["relu", "tanh", "gelu"]
LEASE = 5.0


# ----------------------------------------------------------------------------- imports
def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (relative imports resolved; ``from a import b`` gives ``a.b`` too)."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return out


#: queries that only a backend runs
RAW_QUERIES = {"find_one", "aggregate", "distinct", "list_collection_names", "update_one", "update_many",
               "delete_many", "count_documents", "insert_one", "find_one_and_update"}
BACKEND = ("hpo_mongo.trials.mongo", "pymongo", "gridfs", "bson")


def _front_modules() -> list[Path]:
    """What drives the store through the protocol: the inspection layer, the CLI, the worker, the
    driver and its session, the queue-backed store."""
    return (sorted((PACKAGE / "inspect").glob("*.py")) + sorted((PACKAGE / "cli").glob("*.py"))
            + sorted((PACKAGE / "worker").glob("*.py"))
            + [PACKAGE / "driver.py", PACKAGE / "trials" / "queued.py", PACKAGE / "trials" / "session.py",
               PACKAGE / "trials" / "memory.py"])


@pytest.mark.parametrize("path", [pytest.param(p, id=str(p.relative_to(PACKAGE))) for p in _front_modules()])
def test_inspect_and_cli_reach_mongo_only_through_the_factory(path):
    backend = sorted(m for m in _imports(path) if m.startswith(BACKEND))
    assert backend == [], f"{path.name} imports {backend}: use trials.factory.connect_queue and the JobQueue protocol"
    calls = {n.func.attr for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Call)
             and isinstance(n.func, ast.Attribute)}
    assert not calls & RAW_QUERIES, f"{path.name} runs raw queries: {sorted(calls & RAW_QUERIES)}"


def test_the_import_walk_sees_relative_and_lazy_imports():
    probe = PACKAGE / "trials" / "factory.py"  # imports MongoJobQueue inside a function, relatively
    assert "hpo_mongo.trials.mongo.queue" in _imports(probe)


# ----------------------------------------------------------------------------- the rules
NOW = _dt.datetime(2026, 1, 1, tzinfo=_dt.timezone.utc)


def _ago(seconds: float) -> _dt.datetime:
    return NOW - _dt.timedelta(seconds=seconds)


def test_lease_rules_with_and_without_an_override():
    running = {"heartbeat": _ago(20), "book_time": _ago(100), "lease_timeout": 30.0}
    assert not leases.lease_expired(running, NOW)
    assert leases.lease_expired(running, NOW, lease_timeout=10)
    assert not leases.lease_expired({"book_time": _ago(20)}, NOW)  # the default lease, from the claim
    assert leases.lease_expired({"book_time": _ago(40)}, NOW) and leases.lease_expired({}, NOW)
    old_worker = {"status": "idle", "heartbeat": _ago(20), "stale_timeout": 15.0}  # hpo_mongo 0.1's name
    assert leases.lease_timeout_of(old_worker) == 15.0 and not leases.worker_is_live(old_worker, NOW)
    assert leases.worker_is_live(old_worker, NOW, lease_timeout=25)
    assert not leases.worker_is_live(dict(old_worker, status="exited"), NOW, lease_timeout=25)


def test_driver_liveness():
    exp = {"status": "running", "driver": {"host": "h", "pid": 1, "heartbeat": _ago(leases.DRIVER_LIVE_WITHIN - 1)}}
    assert leases.driver_is_live(exp, NOW)
    assert not leases.driver_is_live(dict(exp, status="done"), NOW)
    assert not leases.driver_is_live({"status": "running", "driver": {"heartbeat": _ago(leases.DRIVER_LIVE_WITHIN)}},
                                     NOW)
    assert not leases.driver_is_live(None, NOW) and not leases.driver_is_live({"status": "running"}, NOW)


# ----------------------------------------------------------------------------- a memory queue
class Clock:
    def __init__(self):
        self.t = NOW

    def __call__(self):
        return self.t

    def advance(self, seconds):
        self.t += _dt.timedelta(seconds=seconds)


def _claim(q, owner):
    return q.claim(owner, exp_key="e", worker={"host": owner.split(":")[0], "pid": int(owner.split(":")[1])},
                   lease_timeout=LEASE, max_attempts=3)


@pytest.fixture
def mq():
    """Experiment "e" on a MemoryJobQueue: tids 0, 1 DONE (losses 2.0, 1.0), 2 ERROR, 3 RUNNING with a
    fresh lease, 4 RUNNING with an expired one, 5 NEW; a live driver; a live worker on tid 3, an
    exited one, a silent one."""
    clock = Clock()
    q = MemoryJobQueue(clock=clock)
    space = compile_space({"x": hp.uniform("x", -1, 1), "act": hp.choice("act", ACTS)}).to_json()
    q.save_experiment("e", {"status": "running", "max_evals": 6, "algorithm": "rand", "space": space,
                            "driver": {"host": "d", "pid": 7}})
    q.insert([new_trial_doc(t, {"x": [t / 10], "act": [t % 3]}, exp_key="e") for t in range(6)])
    q.beat_worker("s:1:x", {"host": "s", "pid": 1, "status": "idle", "serves_all": True, "lease_timeout": LEASE})
    q.beat_worker("g:2:x", {"host": "g", "pid": 2, "status": "exited", "serves_all": True})
    for loss in (2.0, 1.0):
        assert q.finish(_claim(q, "a:1"), JOB_STATE_DONE, {"status": "ok", "loss": loss})
    assert q.finish(_claim(q, "a:1"), JOB_STATE_ERROR, {"status": "fail", "failure": "E: boom"},
                    {"type": "E", "message": "boom", "traceback": "Traceback ..."})
    fresh, _lost = _claim(q, "w:3"), _claim(q, "w:4")
    clock.advance(2 * LEASE)
    assert q.renew_lease(fresh)
    q.beat_worker("w:3:x", {"host": "w", "pid": 3, "status": "busy", "serves_all": False, "exp_key": "e",
                            "lease_timeout": LEASE, "current": {"tid": 3, "exp_key": "e"}})
    q.beat_driver("e")
    return q, clock


def test_reads_on_a_memory_queue(mq):
    q, clock = mq
    (e,) = hi.list_experiments(q)
    assert e["exp_key"] == "e" and e["best_loss"] == 1.0 and e["max_evals"] == 6
    assert e["counts"] == {"new": 1, "running": 2, "done": 2, "error": 1, "cancel": 0, "total": 6, "pruned": 0}
    assert hi.count_by_state(q) == e["counts"] == hi.count_by_state(q, "e")
    exp = hi.get_experiment(q, "e")
    assert exp.space.labels == ["x", "act"] and exp.status == "running"
    with pytest.raises(UnknownExperiment, match=r"^no experiment nope in the in-memory queue .*\(experiments: e\)$"):
        hi.get_experiment(q, "nope")
    assert [d["tid"] for d in hi.find_trials(q, "e", state="done", sort="loss")] == [1, 0]
    assert [d["tid"] for d in hi.find_trials(q, "e", state=["new", "error"], reverse=True)] == [5, 2]
    best = hi.best_trials(q, "e", 5)
    assert [d["tid"] for d in best] == [1, 0]
    assert hi.trial_record(best[0], exp.space)["params"] == {"x": 0.1, "act": "tanh"}
    assert hi.get_trial(q, ..., 3)["exp_key"] == "e"
    with pytest.raises(UnknownTrial, match=r"belongs to experiment e \(pass --exp-key e\)"):
        hi.get_trial(q, None, 3)

    now = hi.server_now(q)
    assert now == clock.t
    stale = hi.stale_trials(q, "e")
    assert [(s["tid"], s["owner"], s["heartbeat_age"]) for s in stale] == [(4, "w:4", 2 * LEASE)]
    assert hi.stale_trials(q, "e", lease_timeout=3 * LEASE) == []
    source, workers = hi.live_workers(q, "e")
    assert source == "workers" and [(w["id"], w["current_tid"], w["status"]) for w in workers] == [("w:3:x", 3, "busy")]
    assert hi.live_workers(q, "e", lease_timeout=3 * LEASE)[1][0]["id"] == "s:1:x"  # silent, but within 15 s
    assert hi.throughput(q, "e") == {"minutes": 5.0, "finished": 3, "per_minute": 3 / (2 * LEASE / 60)}

    st = hi.experiment_status(q, exp)
    assert st["counts"] == e["counts"] and st["finished"] == 3 and st["best"]["tid"] == 1
    assert st["driver"] == {"host": "d", "pid": 7, "heartbeat_age": 0.0, "live": True}
    assert [s["tid"] for s in st["stale"]] == [4] and st["lease_timeout"] is None and st["server_time"] == now
    assert hi.live_driver(q, exp)["pid"] == 7
    clock.advance(leases.DRIVER_LIVE_WITHIN)
    assert hi.live_driver(q, exp) is None


def test_without_worker_documents_the_running_trials_tell_the_workers():
    clock = Clock()
    q = MemoryJobQueue(clock=clock)
    q.insert([new_trial_doc(t, {}, exp_key="e") for t in range(2)])
    fresh, _lost = _claim(q, "h:5"), _claim(q, "h:6")
    clock.advance(2 * LEASE)
    assert q.renew_lease(fresh)
    source, workers = hi.live_workers(q, "e")
    assert source == "trials"
    assert [(w["host"], w["pid"], w["current_tid"], w["status"]) for w in workers] == [("h", 5, 0, "busy")]


def test_repairs_on_a_memory_queue(mq):
    q, _ = mq
    out = hi.requeue_trials(q, "e", stale=True, tids=[0])
    assert out["requeued"] == [4] and [s["tid"] for s in out["skipped"]] == [0]
    assert "only error, cancel and running trials are requeued" in out["skipped"][0]["reason"]
    lost = q.trial(4)
    assert lost["state"] == JOB_STATE_NEW and lost["requeues"] == 1 and lost["owner"] is None
    assert hi.requeue_trials(q, "e", errors=True)["requeued"] == [2]
    assert q.trial(2)["requeues"] == 0 and q.trial(2)["error"] is None
    with pytest.raises(UnknownTrial):
        hi.requeue_trials(q, "e", tids=[99])
    out = hi.cancel_trials(q, "e", [3, 5, 1])
    assert out["cancelled"] == [3, 5] and out["skipped"] == [{"tid": 1, "reason": "trial 1 is already done"}]
    assert q.trial(3)["state"] == JOB_STATE_CANCEL and q.trial(3)["end_time"] is not None
    q.set_attachment("e", "notes", b"n")
    out = hi.delete_experiment(q, "e")
    assert out == {"exp_key": "e", "trials": 6, "experiment": True, "files": 1}
    with pytest.raises(UnknownExperiment, match="holds no experiments"):
        hi.delete_experiment(q, "e")


# ----------------------------------------------------------------------------- the CLI on it
@pytest.fixture
def cli_on(mq, monkeypatch):
    q, clock = mq
    monkeypatch.setattr("hpo_mongo.cli._options.connect_queue", lambda url, **options: q)

    def run(*args):
        r = CliRunner().invoke(cli, ["--mongo", "memory:unused", *args], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        return r.output
    return q, clock, run


def test_the_cli_runs_on_any_queue(cli_on):
    q, clock, run = cli_on
    st = json.loads(run("status", "--exp-key", "e", "--json"))
    assert st["counts"]["running"] == 2 and [s["tid"] for s in st["stale"]] == [4] and st["workers_source"] == "workers"
    text = run("status", "--exp-key", "e", "--lease-timeout", "100")
    assert "stale       none" in text and "workers     2 live" in text
    assert [r["tid"] for r in json.loads(run("list", "--exp-key", "e", "--json", "--state", "done"))] == [0, 1]
    assert "act" in run("best", "--exp-key", "e").splitlines()[0]
    clock.advance(2)
    out = json.loads(run("requeue", "--exp-key", "e", "--stale", "--stale-after", "1", "--json"))  # the older name
    assert out["requeued"] == [3, 4]
    assert q.count("e", [JOB_STATE_RUNNING]) == 0
