"""The worker loop (hpo_mongo.worker.loop) and the hpo-mongo-worker CLI, on the real test server.

Most tests run the Worker in-process (threads) for speed; the ones about what a separate worker
process can or cannot import start ``bin/hpo-mongo-worker``.
"""
from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner

from hpo_mongo import fmin, hp, rand
from hpo_mongo.exceptions import AllTrialsFailed, PicklingError
from hpo_mongo.trials.documents import JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_NEW, JOB_STATE_RUNNING
from hpo_mongo.trials.mongo import jobs as J
from hpo_mongo.trials.mongo.queue import MongoJobQueue
from hpo_mongo.trials.mongo.store import MongoTrials
from hpo_mongo.worker.executor import Outcome
from hpo_mongo.worker.loop import (EXIT_MAX_FAILURES, EXIT_OK, Worker, WorkerConfig,
                                   evaluate_claimed_trial)

from tests.helpers_distributed import Procs, always_fails, fails_below_zero, quadratic, wait_until

SPACE = {"x": hp.uniform("x", -1, 1)}


class _Fmin:
    """fmin running in a background thread (the driver), so the test can drive a worker."""

    def __init__(self, fn, url, exp_key="e", space=SPACE, **kw):
        self.trials = MongoTrials(url, exp_key=exp_key, poll_interval=0.02)
        # the collections and indexes exist before the test polls them: the java test server can fail
        # ("Unknown error: null") an operation that races with the implicit creation of a collection
        self.trials.queue.prepare()
        self.error = None
        kw.setdefault("rstate", np.random.default_rng(0))
        kw.setdefault("show_progressbar", False)

        def run():
            try:
                self.best = fmin(fn, space, algo=rand.suggest, trials=self.trials, **kw)
            except BaseException as e:  # noqa: BLE001 - reported by join()
                self.error = e
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self, timeout=20):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "fmin did not finish"
        self.trials.refresh()
        return self


def _worker(url, **cfg):
    cfg.setdefault("poll_interval", 0.02)
    cfg.setdefault("subprocess", False)  # in-process evaluation: fast (forked children: test_leases.py)
    return Worker(MongoJobQueue.connect(url), WorkerConfig(**cfg))


def test_objective_error_is_recorded_and_worker_goes_on(mongo_url):
    run = _Fmin(fails_below_zero, mongo_url, max_evals=12)
    w = _worker(mongo_url, max_jobs=12)
    assert w.run() == EXIT_OK and w.n_done == 12
    run.join()
    errors = [d for d in run.trials if d["state"] == JOB_STATE_ERROR]
    done = [d for d in run.trials if d["state"] == JOB_STATE_DONE]
    assert errors and done and len(errors) + len(done) == 12
    for d in errors:
        assert d["error"]["type"] == "ValueError" and "is negative" in d["error"]["message"]
        assert "Traceback" in d["error"]["traceback"] and "fails_below_zero" in d["error"]["traceback"]
        assert d["result"]["status"] == "fail" and d["result"]["failure"].startswith("ValueError: x=")
        assert d["end_time"] >= d["start_time"]
    assert all(d["misc"]["vals"]["x"][0] >= 0 for d in done)
    assert run.error is None and run.best["x"] >= 0


def test_max_consecutive_failures_stops_with_exit_code_1(mongo_url):
    run = _Fmin(always_fails, mongo_url, max_evals=5, max_queue_len=5)
    wait_until(lambda: run.trials.count_by_state_unsynced(JOB_STATE_NEW) == 5, what="5 queued trials")
    w = _worker(mongo_url, max_consecutive_failures=3)
    assert w.run() == EXIT_MAX_FAILURES
    assert run.trials.count_by_state_unsynced(JOB_STATE_ERROR) == 3
    assert run.trials.count_by_state_unsynced(JOB_STATE_NEW) == 2
    assert _worker(mongo_url, max_jobs=2).run() == EXIT_OK
    run.join()
    assert isinstance(run.error, AllTrialsFailed)


def test_success_resets_the_failure_count(mongo_url):
    w = _worker(mongo_url, max_consecutive_failures=2)
    outcomes = iter([JOB_STATE_ERROR, JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_DONE, JOB_STATE_ERROR,
                     JOB_STATE_ERROR])
    w.run_trial = lambda doc: Outcome(next(outcomes), {"status": "ok", "loss": 0.0})
    w.report = lambda doc, outcome: outcome
    docs = iter(range(6))
    w.claim = lambda: {"tid": next(docs, None)} if True else None
    codes = [w.process({"tid": i}) for i in range(6)]
    assert codes == [None, None, None, None, None, EXIT_MAX_FAILURES]


def test_stop_conditions_exit_0(mongo_url):
    t0 = time.monotonic()
    assert _worker(mongo_url, reserve_timeout=0.3).run() == EXIT_OK  # nothing queued
    assert 0.25 <= time.monotonic() - t0 < 3
    t0 = time.monotonic()
    assert _worker(mongo_url, last_job_timeout=0.2).run() == EXIT_OK
    assert time.monotonic() - t0 < 3
    w = _worker(mongo_url)
    threading.Timer(0.2, w.stop).start()
    assert w.run() == EXIT_OK  # stop() (what SIGTERM does): idle workers never exit by themselves


def test_unpicklable_objective_fails_at_the_driver_and_queues_nothing(mongo_url):
    lock = threading.Lock()

    def objective(p):
        with lock:
            return p["x"] ** 2
    t = MongoTrials(mongo_url, exp_key="u")
    with pytest.raises(PicklingError, match="lock"):
        fmin(objective, SPACE, algo=rand.suggest, max_evals=3, trials=t, show_progressbar=False)
    db = t.handle.db
    assert db["jobs"].count_documents({}) == 0
    assert db["experiments"].count_documents({}) == 0
    assert db["fs.files"].count_documents({}) == 0


def test_result_is_dropped_when_the_trial_was_taken_away(mongo_url, caplog):
    run = _Fmin(quadratic, mongo_url, max_evals=1)
    wait_until(lambda: run.trials.count_by_state_unsynced(JOB_STATE_NEW) == 1, what="a queued trial")
    w = _worker(mongo_url)
    doc = w.claim()
    assert doc["state"] == JOB_STATE_RUNNING and doc["owner"] == w.owner
    assert w.queue.release(doc)  # e.g. requeued by the lease rules
    other = _worker(mongo_url, max_jobs=1)
    assert other.run() == EXIT_OK
    caplog.set_level("WARNING", logger="hpo_mongo.worker")
    assert not w.report(doc, Outcome(JOB_STATE_DONE, {"status": "ok", "loss": 123.0}))
    assert "taken from this worker" in caplog.text
    run.join()
    (final,) = run.trials.trials
    assert final["owner"] == other.owner and final["attempt"] == 2 and final["result"]["loss"] != 123.0


def test_attachments_returned_by_the_objective_go_to_gridfs(mongo_url):
    run = _Fmin(_with_attachment, mongo_url, max_evals=2)
    assert _worker(mongo_url, max_jobs=2).run() == EXIT_OK
    run.join()
    for d in run.trials:
        assert [n for n, _ in d["_attachments"]] == ["report"]
        assert run.trials.trial_attachments(d)["report"] == f"x={d['misc']['vals']['x'][0]:.3f}".encode()
        assert "attachments" not in d["result"]


def _with_attachment(p):
    return {"loss": p["x"] ** 2, "status": "ok", "attachments": {"report": f"x={p['x']:.3f}".encode()}}


def test_workdir(mongo_url, tmp_path):
    run = _Fmin(_cwd_objective, mongo_url, max_evals=1)
    assert _worker(mongo_url, max_jobs=1, workdir=str(tmp_path / "wd")).run() == EXIT_OK
    run.join()
    assert run.trials.trials[0]["result"]["cwd"] == str(tmp_path / "wd")
    assert os.getcwd() != str(tmp_path / "wd")  # restored


def _cwd_objective(p):
    return {"loss": 0.0, "status": "ok", "cwd": os.getcwd()}


def test_evaluate_claimed_trial_turns_load_errors_into_an_error_outcome():
    def broken_loader(doc):
        raise ModuleNotFoundError("No module named 'secret_model'", name="secret_model")
    out = evaluate_claimed_trial({"tid": 1, "misc": {"vals": {}}}, broken_loader)
    assert out.state == JOB_STATE_ERROR and out.error["type"] == "hpo_mongo.exceptions.ObjectiveLoadError"
    assert "secret_model" in out.error["message"]


def test_worker_that_cannot_import_the_objective_records_why(mongo_url, tmp_path):
    """The objective lives in a module only the driver can import: ERROR naming it and the versions."""
    mod_dir = tmp_path / "driver_only"
    mod_dir.mkdir()
    (mod_dir / "driver_only_objective.py").write_text("def objective(p):\n    return p['x'] ** 2\n")
    sys.path.insert(0, str(mod_dir))
    try:
        import driver_only_objective
        run = _Fmin(driver_only_objective.objective, mongo_url, max_evals=2)
        with Procs(tmp_path) as procs:
            w = procs.worker(mongo_url, "--max-jobs", "2", "--exp-key", "e")
            assert procs.wait([w], timeout=30) == [0], procs.report()
        run.join()
    finally:
        sys.path.remove(str(mod_dir))
        sys.modules.pop("driver_only_objective", None)
    assert isinstance(run.error, AllTrialsFailed)
    for d in run.trials:
        assert d["state"] == JOB_STATE_ERROR
        msg = d["error"]["message"]
        assert d["error"]["type"] == "hpo_mongo.exceptions.ObjectiveLoadError"
        assert "driver_only_objective" in msg and "python" in msg and "cloudpickle" in msg
        assert "driver:" in msg and "worker:" in msg


# ----------------------------------------------------------------------------- the CLI
def test_cli_help_lists_the_flags():
    from hpo_mongo.cli.worker import main
    out = CliRunner().invoke(main, ["--help"]).output
    for flag in ("--mongo", "--exp-key", "--poll-interval", "--max-jobs", "--max-consecutive-failures",
                 "--reserve-timeout", "--last-job-timeout", "--workdir", "--log-level", "Exit codes"):
        assert flag in out


@pytest.mark.parametrize("args", [["--mongo", "mongodb://"], ["--poll-interval", "0"],
                                  ["--max-jobs", "0"], ["--log-level", "LOUD"], ["--bogus"]])
def test_cli_usage_errors_exit_2(args, monkeypatch):
    from hpo_mongo.cli.worker import main
    monkeypatch.setenv("HPO_MONGO_URL", "mongodb://127.0.0.1:1/hpo")
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2, res.output


def test_cli_runs_a_worker_from_the_environment_url(mongo_url, monkeypatch):
    from hpo_mongo.cli.worker import main
    run = _Fmin(quadratic, mongo_url, max_evals=3)
    wait_until(lambda: run.trials.count_by_state_unsynced(JOB_STATE_NEW) >= 1, what="a queued trial")
    monkeypatch.setenv("HPO_MONGO_URL", mongo_url)
    res = CliRunner().invoke(main, ["--max-jobs", "3", "--poll-interval", "0.02", "--exp-key", "e"])
    assert res.exit_code == 0, res.output
    run.join()
    assert [d["state"] for d in run.trials] == [JOB_STATE_DONE] * 3


def test_mongoexp_compat_names():
    import hpo_mongo
    from hpo_mongo import mongoexp
    from hpo_mongo.cli.worker import main
    assert mongoexp.MongoTrials is MongoTrials is hpo_mongo.MongoTrials
    assert issubclass(mongoexp.MongoJobs, MongoJobQueue)  # hyperopt's constructor signature on top
    assert mongoexp.main_worker is main and mongoexp.Worker is Worker
    assert J.ANY_EXPERIMENT is not None


def _ctrl_objective(expr, memo, ctrl):
    ctrl.checkpoint({"status": "running", "progress": 0.5})
    doc = ctrl.current_trial
    seen = ctrl.trials.queue.trial(doc["tid"])["result"]  # through the worker, from a forked child too
    ctrl.attachments["ctrl_note"] = b"from ctrl"
    return {"loss": float(memo["x"][0]) ** 2, "status": "ok", "seen": seen}


def test_ctrl_checkpoint_and_attachments_on_a_worker(mongo_url):
    run = _Fmin(_ctrl_objective, mongo_url, max_evals=1, pass_expr_memo_ctrl=True)
    assert _worker(mongo_url, max_jobs=1).run() == EXIT_OK
    run.join()
    (d,) = run.trials.trials
    assert d["state"] == JOB_STATE_DONE and d["result"]["seen"] == {"status": "running", "progress": 0.5}
    assert [n for n, _ in d["_attachments"]] == ["ctrl_note"]
    assert run.trials.trial_attachments(d)["ctrl_note"] == b"from ctrl"


def test_hyperopt_style_url_and_collection_name(mongo_url):
    """``mongo://host:port/db/<collection>``: driver and worker use that collection."""
    base, _, dbname = mongo_url.rpartition("/")
    url = base.replace("mongodb://", "mongo://") + f"/{dbname}/my_jobs"
    run = _Fmin(quadratic, url, max_evals=2)
    assert _worker(url, max_jobs=2).run() == EXIT_OK
    run.join()
    db = run.trials.handle.db
    assert db.name == dbname and db["my_jobs"].count_documents({"state": JOB_STATE_DONE}) == 2
    assert db["jobs"].count_documents({}) == 0
