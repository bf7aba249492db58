"""The driver says what is wrong: no live worker, failures grouped by cause, AllTrialsFailed naming them."""
from __future__ import annotations

import logging
import socket
import sys
import textwrap

import numpy as np
import pytest

from hpo_mongo import Trials, fmin, hp, rand
from hpo_mongo.exceptions import AllTrialsFailed
from hpo_mongo.trials import queued
from hpo_mongo.trials.failures import cause_key, group_failures
from hpo_mongo.trials.mongo.store import MongoTrials
from tests.helpers_distributed import Procs

QUIET = {"show_progressbar": False, "rstate": np.random.default_rng(0)}


def _bad_x(params):
    raise ValueError(f"bad x {params['x']}")


def test_in_memory_failures_are_grouped_and_named_by_all_trials_failed(caplog):
    trials = Trials()
    with caplog.at_level(logging.WARNING, logger="hpo_mongo.fmin"), pytest.raises(AllTrialsFailed) as info:
        fmin(_bad_x, {"x": hp.uniform("x", 0, 1)}, algo=rand.suggest, max_evals=4, trials=trials,
             catch_eval_exceptions=True, **QUIET)
    (cause,) = trials.errors()  # "bad x 0.63" and "bad x 0.27": one cause
    assert cause.kind == "ValueError" and cause.count == 4 and cause.tids == [0, 1, 2, 3]
    assert "Traceback" in cause.traceback and "_bad_x" in cause.traceback
    assert info.value.causes == trials.errors()
    msg = str(info.value)
    assert msg.startswith("no trial succeeded: 4 of 4 trial(s) failed:") and "4 × ValueError: bad x" in msg
    assert "the first traceback (trial 0)" in msg and "_bad_x" in msg
    firsts = [r.getMessage() for r in caplog.records if "failed: ValueError" in r.getMessage()]
    assert len(firsts) == 1 and firsts[0].startswith("trial 0 failed: ValueError: bad x")  # then only counted
    assert any(r.getMessage().startswith("4 trial(s) failed: 4 × ValueError") for r in caplog.records)


def test_causes_keep_what_is_missing_apart_and_count_failed_results():
    docs = [{"tid": 0, "state": 3, "error": {"type": "ModuleNotFoundError", "message": "No module named 'a'"}},
            {"tid": 1, "state": 3, "error": {"type": "ModuleNotFoundError", "message": "No module named 'b'"}},
            {"tid": 2, "state": 3, "error": {"type": "ModuleNotFoundError", "message": "No module named 'a'"},
             "worker": {"host": "node7"}},
            {"tid": 3, "state": 2, "result": {"status": "fail", "failure": "loss is NaN"}},
            {"tid": 4, "state": 2, "result": {"status": "ok", "loss": 1.0}}]
    causes = group_failures(docs)
    assert [(c.kind, c.count, c.tids) for c in causes] == [
        ("ModuleNotFoundError", 2, [0, 2]), ("ModuleNotFoundError", 1, [1]), ("fail", 1, [3])]
    assert causes[0].hosts == ["node7"] and causes[2].headline() == "loss is NaN"
    assert cause_key("E", "x 1.5 at 0x7f3a") == cause_key("E", "x 22 at 0x1")


def test_a_driver_without_workers_says_so_once(mongo_url, monkeypatch, caplog):
    monkeypatch.setattr(queued, "NO_WORKER_WARNING_AFTER", 0.3)
    trials = MongoTrials(mongo_url, exp_key="lonely", poll_interval=0.05)
    with caplog.at_level(logging.WARNING, logger="hpo_mongo.trials"), pytest.raises(AllTrialsFailed) as info:
        fmin(lambda p: p["x"], {"x": hp.uniform("x", 0, 1)}, algo=rand.suggest, max_evals=3, trials=trials,
             timeout=2.5, **QUIET)
    assert "trial(s): cancel)" in str(info.value)  # nothing ran: the queued trials were withdrawn
    said = [r.getMessage() for r in caplog.records if "no worker is evaluating" in r.getMessage()]
    assert len(said) == 1, said
    assert "start one: hpo-mongo-worker --mongo mongodb://" in said[0] and "--exp-key lonely" in said[0]


OBJECTIVE_MODULE = textwrap.dedent("""
    def objective(params):
        return params["x"] ** 2
""")


def test_a_worker_that_cannot_import_the_objective_is_named_by_the_driver(mongo_url, tmp_path, monkeypatch,
                                                                          caplog):
    """The objective lives in a module only the driver can import (a common deployment mistake)."""
    modules = tmp_path / "driver_only"
    modules.mkdir()
    (modules / "driver_only_objective.py").write_text(OBJECTIVE_MODULE)
    monkeypatch.syspath_prepend(str(modules))
    import driver_only_objective
    trials = MongoTrials(mongo_url, exp_key="unimportable", poll_interval=0.05)
    with Procs(tmp_path) as procs:
        procs.worker(mongo_url, "--exp-key", "unimportable")
        with caplog.at_level(logging.WARNING, logger="hpo_mongo.fmin"), pytest.raises(AllTrialsFailed) as info:
            fmin(driver_only_objective.objective, {"x": hp.uniform("x", -1, 1)}, algo=rand.suggest, max_evals=4,
                 trials=trials, timeout=60, **QUIET)
    sys.modules.pop("driver_only_objective", None)
    (cause,) = trials.errors()
    assert cause.kind == "hpo_mongo.exceptions.ObjectiveLoadError" and cause.count == 4
    assert "driver_only_objective" in cause.message and cause.hosts == [socket.gethostname()]
    msg = str(info.value)
    assert "4 × hpo_mongo.exceptions.ObjectiveLoadError: cannot load the objective on this worker" in msg
    assert f"(first: trial {cause.first_tid} on {socket.gethostname()})" in msg
    firsts = [r.getMessage() for r in caplog.records if "failed: hpo_mongo.exceptions.ObjectiveLoadError" in
              r.getMessage()]
    assert len(firsts) == 1 and f"on {socket.gethostname()}" in firsts[0]
