"""Pruning on workers: reports written through the job queue and decided where they happen.

The deterministic tests run one :class:`Worker` in this process on an in-memory queue (trials
claimed in tid order, so every pruner decision is known), in both evaluation modes: in-process
(``--no-subprocess``) and a forked child per trial (reports sent to the worker over the trial's
pipe). The coordination tests use the real test server: two claims driven by hand, and worker
processes with fmin as the driver.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from hpo_mongo import hp, pruners, report
from hpo_mongo.domain import Domain
from hpo_mongo.exceptions import InvalidParameterError, TrialNotOwned
from hpo_mongo.reporting import StoreReporter
from hpo_mongo.trials.documents import JOB_STATE_CANCEL, JOB_STATE_DONE, JOB_STATE_ERROR, new_trial_doc
from hpo_mongo.trials.memory_queue import MemoryJobQueue
from hpo_mongo.trials.queued import QueueTrials
from hpo_mongo.trials.reports import KIND_COMPLETE, KIND_RUNNING, QueueReportHistory
from hpo_mongo.trials.session import Run
from hpo_mongo.worker.ctrl import WorkerCtrl
from hpo_mongo.worker.loop import EXIT_OK, DomainCache, Worker, WorkerConfig

SPACE = {"x": hp.uniform("x", 0, 10)}
MODES = pytest.mark.parametrize("subprocess", [False, True], ids=["in-process", "forked"])


def curve(params):
    """Reports x + 1/step at steps 1..5 and returns the last value."""
    value = None
    for step in range(1, 6):
        value = params["x"] + 1.0 / step
        report(value, step)
    return value


def publish(queue, fn, xs, *, pruner=None, exp_key="e", ctrl=False):
    """What fmin does before workers start (domain with its pruner, experiment), then one NEW
    trial per x; returns the driver's store."""
    trials = QueueTrials(queue, exp_key, refresh=False)
    trials.open_session(Run(domain=Domain(fn, SPACE, pass_expr_memo_ctrl=ctrl), max_evals=len(xs), pruner=pruner))
    tids = trials.new_trial_ids(len(xs))
    trials.insert_trial_docs([new_trial_doc(t, {"x": [float(x)]}, exp_key=exp_key)
                              for t, x in zip(tids, xs, strict=True)])
    return trials


def work(queue, n, subprocess):
    worker = Worker(queue, WorkerConfig(max_jobs=n, poll_interval=0.01, subprocess=subprocess, reserve_timeout=5))
    assert worker.run() == EXIT_OK
    return worker


def by_tid(queue, exp_key="e"):
    return {d["tid"]: d for d in queue.find(exp_key, full=True)}


# ----------------------------------------------------------------------------- the decisions
@MODES
def test_a_worker_records_reports_and_applies_the_pruner_stored_with_the_experiment(subprocess):
    q = MemoryJobQueue()
    # trials 0 and 1 complete first; then, against their median at each step (ties go on):
    # x=2 is worse at step 1, x=0.5 ties at every step, x=5 is worse at step 1
    publish(q, curve, [0.0, 1.0, 2.0, 0.5, 5.0], pruner=pruners.MedianPruner(n_startup_trials=2))
    work(q, 5, subprocess)
    docs = by_tid(q)
    assert {t: d["result"]["status"] for t, d in docs.items()} == {0: "ok", 1: "ok", 2: "pruned", 3: "ok", 4: "pruned"}
    for t in (2, 4):
        d = docs[t]
        assert d["state"] == JOB_STATE_DONE and d["result"]["pruned_step"] == 1
        assert d["result"]["loss"] == d["misc"]["vals"]["x"][0] + 1.0
        assert d["reports"] == [{"step": 1, "value": d["misc"]["vals"]["x"][0] + 1.0}]
    for t in (0, 1, 3):
        assert [r["step"] for r in docs[t]["reports"]] == [1, 2, 3, 4, 5]
        assert docs[t]["reports"][-1]["value"] == docs[t]["result"]["loss"]
    assert q.count_by_state("e")["pruned"] == 2
    assert q.experiment("e")["pruner"] == repr(pruners.MedianPruner(n_startup_trials=2))


def test_the_pruner_travels_inside_the_signed_domain_payload():
    q = MemoryJobQueue()
    secret = b"a-shared-secret-for-the-payload"
    trials = QueueTrials(q, "e", refresh=False, secret=secret)
    pruner = pruners.SuccessiveHalvingPruner(min_resource=2, reduction_factor=3)
    trials.open_session(Run(domain=Domain(curve, SPACE), max_evals=1, pruner=pruner))
    first = q.experiment("e")["domain_hash"]
    loaded = DomainCache(q, secret).get({"tid": 0, "exp_key": "e", "domain_hash": first})
    assert loaded.pruner == pruner and loaded.pruner is not pruner
    trials.open_session(Run(domain=Domain(curve, SPACE), max_evals=1, pruner=pruners.NopPruner()))
    assert q.experiment("e")["domain_hash"] != first  # another pruner: another payload
    assert q.experiment("e")["pruner"] == "NopPruner()"


@MODES
def test_report_works_without_a_pruner_and_for_ctrl_objectives(subprocess):
    def with_ctrl(expr, memo, ctrl):
        for step in (0, 2, 1, 2):  # out of order, then step 2 again: its first value stays
            ctrl.report(float(step) * 10 + memo["x"][0], step)
        assert ctrl.should_prune() is False
        return 1.0

    q = MemoryJobQueue()
    publish(q, with_ctrl, [0.5], ctrl=True)
    work(q, 1, subprocess)
    (doc,) = by_tid(q).values()
    assert doc["result"] == {"loss": 1.0, "status": "ok"}
    assert doc["reports"] == [{"step": 0, "value": 0.5}, {"step": 2, "value": 20.5}, {"step": 1, "value": 10.5}]


BAD_REPORTS = {1.0: ("abc", 1), 2.0: (1.0, -1), 3.0: (1.0, 2.0), 4.0: (1.0, True), 5.0: (None, 3)}


def bad_input(params):
    x = params["x"]
    if x in BAD_REPORTS:
        report(*BAD_REPORTS[x])
    report(math.nan, 0)  # NaN and inf are values, not errors
    report(math.inf, 1)
    return x


@MODES
def test_bad_input_to_report_fails_the_trial_not_the_worker(subprocess):
    q = MemoryJobQueue()
    publish(q, bad_input, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    worker = work(q, 6, subprocess)
    docs = by_tid(q)
    assert worker.n_done == 6
    for tid in range(5):
        d = docs[tid]
        assert d["state"] == JOB_STATE_ERROR and d["error"]["type"] == "hpo_mongo.exceptions.InvalidParameterError"
        assert d["reports"] == []
    assert "'value' parameter of report" in docs[0]["error"]["message"] and "str" in docs[0]["error"]["message"]
    assert "'step' parameter of report" in docs[1]["error"]["message"] and "-1" in docs[1]["error"]["message"]
    assert "'step' parameter of report" in docs[2]["error"]["message"] and "2.0" in docs[2]["error"]["message"]
    assert "'step' parameter" in docs[3]["error"]["message"]
    assert "'value' parameter of report" in docs[4]["error"]["message"]
    ok = docs[5]
    assert ok["state"] == JOB_STATE_DONE and ok["result"]["loss"] == 6.0
    assert math.isnan(ok["reports"][0]["value"]) and ok["reports"][1] == {"step": 1, "value": math.inf}


def test_the_worker_checks_a_childs_report_request_itself():
    q = MemoryJobQueue()
    publish(q, curve, [1.0])
    claim = q.claim("w:1", lease_timeout=30, max_attempts=3)
    ctrl = WorkerCtrl(q, claim)
    with pytest.raises(InvalidParameterError, match="'value' parameter of report"):
        ctrl.answer("report", (1, "garbage"))
    with pytest.raises(InvalidParameterError, match="'step' parameter of report"):
        ctrl.answer("report", (-3, 1.0))
    assert ctrl.answer("report", (1, 0.25)) is False
    assert q.trial(claim["tid"])["reports"] == [{"step": 1, "value": 0.25}]


def cancelled_mid_run(expr, memo, ctrl):
    """Reports step 1, then cancels its own trial (as `hpo-mongo cancel` would) and reports again."""
    report(1.0, 1)
    queue = ctrl.trials.queue
    assert queue.cancel_unchanged(queue.trial(ctrl.current_trial["tid"]), failure="cancelled by the test")
    report(2.0, 2)  # refused: raises TrialNotOwned here, and the worker ends the evaluation
    return 0.0


@MODES
def test_a_refused_report_stops_the_trial_as_a_lost_lease_does(subprocess, caplog):
    caplog.set_level("WARNING", logger="hpo_mongo.worker")
    q = MemoryJobQueue()
    publish(q, cancelled_mid_run, [1.0], ctrl=True)
    publish(q, curve, [0.0], exp_key="after")
    worker = work(q, 1, subprocess)  # the lost trial is not counted, as with a lost lease
    (doc,) = by_tid(q).values()
    assert doc["state"] == JOB_STATE_CANCEL and doc["result"]["failure"] == "cancelled by the test"
    assert doc["reports"] == [{"step": 1, "value": 1.0}] and doc["attempt"] == 1
    assert "its report was refused" in caplog.text
    (after,) = by_tid(q, "after").values()
    assert after["state"] == JOB_STATE_DONE and worker.n_done == 1  # the worker went on


# ----------------------------------------------------------------------------- the history a worker reads
class Recording:
    """A queue that records the report queries it answers."""

    def __init__(self, queue):
        self.queue, self.calls = queue, []

    def __getattr__(self, name):
        return getattr(self.queue, name)

    def reports_at(self, exp_key, step, *, reached=False, exclude_tids=()):
        self.calls.append(("reports_at", step, reached, sorted(exclude_tids)))
        return self.queue.reports_at(exp_key, step, reached=reached, exclude_tids=exclude_tids)

    def completed_at_least(self, exp_key, n):
        self.calls.append(("completed_at_least", n))
        return self.queue.completed_at_least(exp_key, n)

    def experiment(self, exp_key):
        self.calls.append(("experiment",))
        return self.queue.experiment(exp_key)


def test_the_history_caches_the_rows_of_finished_trials_only():
    q = MemoryJobQueue()
    publish(q, curve, [0.0, 1.0, 2.0])
    claims = [q.claim("w:1", lease_timeout=30, max_attempts=3) for _ in range(3)]
    for c in claims:
        q.report(c, 1, float(c["tid"]))
    q.finish(claims[0], JOB_STATE_DONE, {"status": "ok", "loss": 0.0})
    rec = Recording(q)
    h = QueueReportHistory(rec, "e")
    rows = h.at_step(1)
    assert sorted(zip(rows.tid.tolist(), rows.kind.tolist(), strict=True)) == [(0, KIND_COMPLETE), (1, KIND_RUNNING),
                                                                              (2, KIND_RUNNING)]
    q.finish(claims[1], JOB_STATE_DONE, {"status": "ok", "loss": 1.0})
    rows = h.at_step(1)
    assert sorted(zip(rows.tid.tolist(), rows.kind.tolist(), strict=True)) == [(0, KIND_COMPLETE), (1, KIND_COMPLETE),
                                                                              (2, KIND_RUNNING)]
    h.at_step(1)
    assert rec.calls == [("experiment",), ("reports_at", 1, False, []), ("reports_at", 1, False, [0]),
                         ("reports_at", 1, False, [0, 1])]
    assert h.reached(1).tid.size == 3 and rec.calls[-1] == ("reports_at", 1, True, [])
    # completed_at_least: asked until True, then answered from memory
    rec.calls.clear()
    assert h.completed_at_least(2) and h.completed_at_least(1) and h.completed_at_least(2)
    assert not h.completed_at_least(3)
    assert rec.calls == [("completed_at_least", 2), ("completed_at_least", 3)]


def test_the_history_forgets_an_experiment_deleted_and_created_again():
    q = MemoryJobQueue()
    publish(q, curve, [0.0])
    c = q.claim("w:1", lease_timeout=30, max_attempts=3)
    q.report(c, 1, 0.5)
    q.finish(c, JOB_STATE_DONE, {"status": "ok", "loss": 0.5})
    h = QueueReportHistory(q, "e")
    assert h.at_step(1).tid.tolist() == [0] and h.completed_at_least(1)
    q.delete_experiment("e")
    publish(q, curve, [3.0])
    h.start_trial()  # the worker's next trial
    assert h.at_step(1).tid.size == 0 and not h.completed_at_least(1)


# ----------------------------------------------------------------------------- on the real server
@pytest.mark.server
def test_a_stale_claims_report_is_refused_and_the_new_attempt_starts_afresh(mongo_url):
    from hpo_mongo.trials.mongo.queue import MongoJobQueue
    import time
    q = MongoJobQueue.connect(mongo_url)
    publish(q, curve, [1.0])
    first = q.claim("a:1", lease_timeout=0.3, max_attempts=3)
    lost = []
    stale = StoreReporter(first["tid"], lambda s, v: q.report(first, s, v), pruners.NopPruner(),
                          QueueReportHistory(q, "e"), on_lost=lambda: lost.append(True))
    assert stale.report(1.5, 1) is False
    time.sleep(0.5)
    assert [e["outcome"] for e in q.requeue_stale("e", default_lease=30, default_max_attempts=3)] == ["requeued"]
    second = q.claim("b:2", lease_timeout=30, max_attempts=3)
    assert second["attempt"] == 2 and second["reports"] == []
    with pytest.raises(TrialNotOwned, match="no longer owns"):
        stale.report(1.25, 2)
    assert lost == [True]
    fresh = StoreReporter(second["tid"], lambda s, v: q.report(second, s, v), pruners.NopPruner(),
                          QueueReportHistory(q, "e"))
    fresh.report(9.0, 1)
    assert q.trial(second["tid"])["reports"] == [{"step": 1, "value": 9.0}]
    assert q.reports_at("e", 2, reached=True)["tid"] == []
    q.close()


def test_each_hot_query_is_served_by_a_declared_index():
    """The filters of the report write and the pruners' queries start with the keys of an index
    that ``prepare()`` creates (residual keys, e.g. ``tid $nin``, come after them)."""
    from hpo_mongo.trials.mongo import jobs, reports
    from hpo_mongo.trials.mongo.queue import INDEXES
    indexes = [[k for k, _ in keys] for coll, keys, _, _ in INDEXES if coll == "jobs"] + [["_id"]]
    claim = {"_id": 1, "owner": "w:1", "attempt": 1}
    queries = {
        "report": ({**jobs.owned_filter(claim), "reports.step": {"$ne": 3}}, ["_id"]),
        "at_step": (reports.step_query("e", 3)[0], ["exp_key", "reports.step"]),
        "reached, without cached rows": (reports.step_query("e", 3, reached=True, exclude_tids=[1, 2])[0],
                                         ["exp_key", "reports.step"]),
        "completed_at_least": (reports.complete_filter("e"), ["exp_key", "state"]),
    }
    for name, (flt, leading) in queries.items():
        assert list(flt)[:len(leading)] == leading, name
        assert any(ix[:len(leading)] == leading for ix in indexes), name


# ----------------------------------------------------------------------------- worker processes
NO_SECRET = {"HPO_MONGO_SECRET": ""}


@pytest.mark.server
def test_pruning_end_to_end_with_forked_and_in_process_worker_processes(mongo_url, mongo_db, tmp_path):
    from hpo_mongo import fmin, tpe
    from hpo_mongo.trials.mongo.store import MongoTrials
    from tests.helpers_distributed import Procs, learning_curve, wait_until

    with Procs(tmp_path) as procs:
        workers = [procs.worker(mongo_url, "--exp-key", "prune", *flags, name=f"w{i}", env=NO_SECRET)
                   for i, flags in enumerate([(), (), ("--no-subprocess",)])]
        wait_until(lambda: mongo_db.workers.count_documents({"status": {"$ne": "exited"}}) == 3, 30,
                   what="the three workers to start")
        trials = MongoTrials(mongo_url, exp_key="prune", poll_interval=0.05)
        fmin(learning_curve, {"x": hp.uniform("x", -3, 3)}, algo=tpe.suggest, max_evals=36, trials=trials,
             pruner=pruners.MedianPruner(n_startup_trials=4), max_queue_len=3, show_progressbar=False,
             rstate=np.random.default_rng(3))
        for w in workers:
            w.signal()
        assert procs.wait(timeout=30) == [0, 0, 0], procs.report()
    docs = {d["tid"]: d for d in trials.queue.find("prune", full=True)}
    assert len(docs) == 36 and all(d["state"] == JOB_STATE_DONE for d in docs.values()), procs.report()
    pruned = [d for d in docs.values() if d["result"]["status"] == "pruned"]
    complete = [d for d in docs.values() if d["result"]["status"] == "ok"]
    assert pruned and len(pruned) + len(complete) == 36
    for d in complete:
        assert [r["step"] for r in d["reports"]] == list(range(1, 11))
    for d in pruned:  # stopped at its last report, which is its loss
        steps = [r["step"] for r in d["reports"]]
        assert steps == list(range(1, d["result"]["pruned_step"] + 1))  # may be the last report too
        assert d["result"]["loss"] == d["reports"][-1]["value"]
    owners = {d["owner"].rsplit(":", 1)[1] for d in docs.values()}
    assert len(owners) >= 2  # the workers shared the trials
    assert trials.best_trial["result"]["status"] == "ok"
    assert trials.count_by_state_unsynced(JOB_STATE_DONE) == 36


def _long_running(expr, memo, ctrl):
    """Attempt 1 reports a step every 10 ms for up to 20 s; attempt 2 reports three and returns."""
    import time as _time
    attempt = ctrl.current_trial["attempt"]
    for step in range(1, 2000 if attempt == 1 else 4):
        ctrl.report(100.0 * attempt + step, step)
        _time.sleep(0.01 if attempt == 1 else 0)
    return float(attempt)


@pytest.mark.server
@pytest.mark.parametrize("mode", [(), ("--no-subprocess",)], ids=["forked", "in-process"])
def test_a_worker_whose_trial_was_requeued_has_its_next_report_refused(mongo_url, mongo_db, tmp_path, mode):
    """A trial requeued by hand while its worker runs it (the heartbeat is seconds away): the
    worker's next report is refused, the evaluation stops, nothing of that attempt is kept; the
    next attempt starts with no reports."""
    from hpo_mongo.trials.mongo.queue import MongoJobQueue
    from tests.helpers_distributed import Procs, wait_until
    q = MongoJobQueue.connect(mongo_url)
    publish(q, _long_running, [0.5], ctrl=True, exp_key="requeued")
    with Procs(tmp_path) as procs:
        a = procs.worker(mongo_url, "--heartbeat-interval", "3", "--stale-timeout", "30", *mode, name="A",
                         env=NO_SECRET)
        running = wait_until(lambda: (lambda d: d if d and len(d.get("reports") or []) >= 3 else None)(
            mongo_db.jobs.find_one({"exp_key": "requeued", "state": 1})), 30, what="the first attempt's reports")
        assert q.requeue_unchanged(running)  # what `hpo-mongo requeue` does
        wait_until(lambda: (mongo_db.jobs.find_one({"exp_key": "requeued"}) or {}).get("state") == JOB_STATE_DONE,
                   30, what="the second attempt")
        a.signal()
        assert procs.wait([a], timeout=15) == [0], procs.report()
    assert "its report was refused" in a.output(), a.output()
    doc = mongo_db.jobs.find_one({"exp_key": "requeued"})
    assert doc["attempt"] == 2 and doc["result"]["loss"] == 2.0
    assert doc["reports"] == [{"step": k, "value": 200.0 + k} for k in (1, 2, 3)]
    q.close()


def _stalled_objective(go_file: str, marker_dir: str):
    def objective(expr, memo, ctrl):
        import os as _os
        import time as _time
        attempt = ctrl.current_trial["attempt"]
        ctrl.report(100.0 * attempt + 1, 1)
        open(_os.path.join(marker_dir, f"started{attempt}"), "w").close()
        if attempt == 1:  # runs on (its worker frozen) until the second attempt finished
            deadline = _time.monotonic() + 60
            while not _os.path.exists(go_file) and _time.monotonic() < deadline:
                _time.sleep(0.02)
        for step in (2, 3):
            ctrl.report(100.0 * attempt + step, step)
        open(_os.path.join(marker_dir, f"ended{attempt}"), "w").close()
        return float(attempt)
    return objective


@pytest.mark.slow
@pytest.mark.server
@pytest.mark.parametrize("mode", [(), ("--no-subprocess",)], ids=["forked", "in-process"])
def test_a_stale_workers_reports_are_refused_and_its_trial_stops(mongo_url, mongo_db, tmp_path, mode):
    """A reports step 1 and is frozen past its lease; B requeues the trial and evaluates it (its own
    reports only); A wakes: its next report (or heartbeat) is refused, nothing of its attempt is kept."""
    import signal
    from hpo_mongo.trials.mongo.queue import MongoJobQueue
    from tests.helpers_distributed import Procs, wait_until
    go, markers = tmp_path / "go", tmp_path / "markers"
    markers.mkdir()
    q = MongoJobQueue.connect(mongo_url)
    publish(q, _stalled_objective(str(go), str(markers)), [0.5], ctrl=True, exp_key="stale")
    lease = ("--heartbeat-interval", "0.2", "--stale-timeout", "1.5")
    with Procs(tmp_path) as procs:
        a = procs.worker(mongo_url, *lease, *mode, name="A", env=NO_SECRET)
        wait_until(lambda: (markers / "started1").exists(), 30, what="A's trial to report step 1")
        a.signal(signal.SIGSTOP)
        try:
            b = procs.worker(mongo_url, *lease, *mode, "--max-jobs", "1", name="B", env=NO_SECRET)
            assert procs.wait([b], timeout=40) == [0], procs.report()
            go.write_text("go")
        finally:
            a.signal(signal.SIGCONT)
        wait_until(lambda: "its report was refused" in a.output() or "lost its lease" in a.output(), 30,
                   what="A noticing it lost the trial")
        a.signal(signal.SIGTERM)
        assert procs.wait([a], timeout=15) == [0], procs.report()
    doc = mongo_db.jobs.find_one({"exp_key": "stale"})
    assert doc["state"] == JOB_STATE_DONE and doc["attempt"] == 2 and doc["result"]["loss"] == 2.0
    assert doc["reports"] == [{"step": 1, "value": 201.0}, {"step": 2, "value": 202.0}, {"step": 3, "value": 203.0}]
    assert not (markers / "ended1").exists() or "its report was refused" in a.output()
    q.close()


@pytest.mark.server
def test_the_schema_examples_on_reports(mongo_url):
    """docs/schema.md's report queries return what the worker stored (the median pruner's query)."""
    from hpo_mongo.trials.mongo.queue import MongoJobQueue
    from tests.test_schema_queries import EXP_KEY, _run
    q = MongoJobQueue.connect(mongo_url)
    publish(q, curve, [0.0, 1.0, 2.0, 0.5], pruner=pruners.MedianPruner(n_startup_trials=2), exp_key=EXP_KEY)
    work(q, 4, subprocess=False)
    docs = by_tid(q, EXP_KEY)
    at3 = _run("reports_at_step", q.db)
    assert at3 == {t: d["reports"][2]["value"] for t, d in docs.items() if len(d["reports"]) >= 3}
    assert sorted(at3) == [0, 1, 3]  # trial 2 was pruned at step 1
    assert at3 == dict(zip(*(lambda r: (r["tid"], r["value"]))(q.reports_at(EXP_KEY, 3)), strict=True))
    curves = _run("curves", q.db)
    assert curves[2] == ("pruned", [(1, 3.0)])
    assert curves[0] == ("ok", [(s, 1.0 / s) for s in range(1, 6)])
    q.close()


# ----------------------------------------------------------------------------- the CLI
def test_the_cli_counts_lists_shows_exports_and_plots_the_reports(monkeypatch, tmp_path):
    import csv
    import json

    from click.testing import CliRunner

    from hpo_mongo.cli.main import cli
    from tests.extras import require
    q = MemoryJobQueue()
    publish(q, curve, [0.0, 1.0, 2.0, 0.5, 5.0], pruner=pruners.MedianPruner(n_startup_trials=2))
    work(q, 5, subprocess=False)
    publish(q, lambda p: p["x"], [1.0], exp_key="plain")  # no reports: the list stays as it was
    work(q, 1, subprocess=False)
    monkeypatch.setattr("hpo_mongo.cli._options.connect_queue", lambda url, **options: q)

    def run(*args):
        r = CliRunner().invoke(cli, ["--mongo", "memory:unused", *args], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        return r.output

    text = run("status", "--exp-key", "e")
    assert "pruner      MedianPruner(n_startup_trials=2," in text and "done 5 (pruned 2)" in text
    assert json.loads(run("status", "--exp-key", "e", "--json"))["counts"]["pruned"] == 2
    header, *rows = run("experiments").splitlines()
    assert header.split()[6:8] == ["done", "pruned"] and rows[1].split()[6:8] == ["5", "2"]
    listed = [line.split() for line in run("list", "--exp-key", "e").splitlines()]
    assert listed[0][:5] == ["tid", "state", "status", "loss", "step"]
    assert [(r[0], r[2], r[4]) for r in listed[2:]] == [("0", "ok", "5"), ("1", "ok", "5"), ("2", "pruned", "1"),
                                                        ("3", "ok", "5"), ("4", "pruned", "1")]
    assert run("list", "--exp-key", "plain").split()[:3] == ["tid", "state", "loss"]
    records = json.loads(run("list", "--exp-key", "e", "--json"))
    assert [r["step"] for r in records] == [5, 5, 1, 5, 1] and all(r["reports"] is None for r in records)
    shown = run("show", "1")
    head = "reports    5 (step: value, in report order)\n"
    assert shown.split(head)[1].split() == ["1:", "2", "2:", "1.5", "3:", "1.33333", "4:", "1.25", "5:", "1.2"]
    assert json.loads(run("show", "2", "--json"))["reports"] == [{"step": 1, "value": 3.0}]
    out = tmp_path / "t.csv"
    run("export", "--exp-key", "e", "-o", str(out))
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert json.loads(rows[2]["reports"]) == [[1, 3.0]] and rows[2]["step"] == "1"
    exported = json.loads(run("export", "--exp-key", "e", "--format", "json"))
    assert [len(r["reports"]) for r in exported] == [5, 5, 1, 5, 1]
    require("matplotlib", "plot")
    png = tmp_path / "curves.png"
    info = json.loads(run("plot", "--exp-key", "e", "-o", str(png), "--json"))
    assert info["panels"] == 3 and png.stat().st_size > 10_000  # convergence, learning curves, x
