"""SparkTrials on a local Spark (``local[2]``): trials as Spark tasks, hyperopt's parallelism rule,
timeout / loss_threshold, Ctrl-C, attachments; and the clear error without pyspark.

The tests that start Spark carry the ``spark`` marker (deselected by default; ``scripts/test-spark``
runs them in a venv with pyspark). The others run everywhere.
"""
from __future__ import annotations

import logging
import os
import pickle
import signal
import sys
import threading
import time

import numpy as np
import pytest

from hpo_mongo import JOB_STATE_CANCEL, JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_NEW, SparkTrials, fmin, hp, rand
from hpo_mongo.exceptions import AllTrialsFailed, InvalidParameterError, MissingExtra
from hpo_mongo.spark import MAX_CONCURRENT_JOBS_ALLOWED, decide_parallelism
from tests.extras import require

SPACE = {"x": hp.uniform("x", -5, 5)}


def _run(objective, trials, max_evals, **kw):
    return fmin(objective, SPACE, algo=rand.suggest, max_evals=max_evals, trials=trials, show_progressbar=False,
                rstate=np.random.default_rng(0), **kw)


# ----------------------------------------------------------------------------- without Spark
def test_without_pyspark_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyspark", None)  # import pyspark raises ImportError
    with pytest.raises(MissingExtra, match=r"pip install pyspark.*ParallelTrials\(n_jobs\)"):
        SparkTrials(parallelism=2)


@pytest.mark.parametrize("kwargs, name", [({"timeout": -1}, "timeout"), ({"loss_threshold": "x"}, "loss_threshold"),
                                          ({"parallelism": 1.5}, "parallelism")])
def test_bad_arguments_fail_before_spark_starts(monkeypatch, kwargs, name):
    monkeypatch.setitem(sys.modules, "pyspark", None)
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter"):
        SparkTrials(**kwargs)


def test_parallelism_follows_hyperopts_rule(caplog):
    caplog.set_level(logging.WARNING, "hpo_mongo.spark")
    assert decide_parallelism(3, 8, 8) == 3
    assert decide_parallelism(None, 4, 6) == 6 and decide_parallelism(0, 4, 2) == 4
    assert decide_parallelism(-1, 0, 0) == 1
    assert decide_parallelism(500, 8, 1000) == MAX_CONCURRENT_JOBS_ALLOWED == SparkTrials.MAX_CONCURRENT_JOBS_ALLOWED
    assert "capped" in caplog.text
    caplog.clear()
    assert decide_parallelism(10, 2, 2) == 10 and "more than the cluster's 2 task slots" in caplog.text


# ----------------------------------------------------------------------------- on a local Spark
@pytest.fixture(scope="module")
def spark():
    require("pyspark", "spark")
    from pyspark.sql import SparkSession
    session = (SparkSession.builder.master("local[2]").appName("hpo_mongo-tests")
               .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
               .config("spark.pyspark.python", sys.executable).getOrCreate())  # the executors use this venv
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def _tagged(cfg):
    if cfg["x"] < -2:
        raise ValueError("x too small")
    time.sleep(0.1)
    return {"loss": (cfg["x"] - 1) ** 2, "status": "ok", "pid": os.getpid(),
            "attachments": {"note": f"x={cfg['x']:.3f}".encode()}}


@pytest.mark.spark
def test_trials_run_as_spark_tasks(spark):
    trials = SparkTrials(parallelism=2, spark_session=spark)
    assert trials.parallelism == 2 and trials.spark_session is spark
    _run(_tagged, trials, 8)
    docs = trials.trials
    assert len(docs) == 8 and {d["state"] for d in docs} <= {JOB_STATE_DONE, JOB_STATE_ERROR}
    done = [d for d in docs if d["state"] == JOB_STATE_DONE]
    errors = [d for d in docs if d["state"] == JOB_STATE_ERROR]
    assert done and errors  # an objective's exception is an ERROR trial and fmin goes on
    assert os.getpid() not in {d["result"]["pid"] for d in done}  # evaluated in Spark's Python workers
    assert errors[0]["error"]["type"] == "ValueError" and "too small" in errors[0]["error"]["message"]
    assert trials.trial_attachments(done[0])["note"] == f"x={done[0]['misc']['vals']['x'][0]:.3f}".encode()
    assert (trials.count_successful_trials(), trials.count_failed_trials(), trials.count_cancelled_trials(),
            trials.count_total_trials()) == (len(done), len(errors), 0, 8)
    again = pickle.loads(pickle.dumps(trials))  # fmin's trials_save_file: the trials without the SparkSession
    assert [d["result"] for d in again.trials] == [d["result"] for d in trials.trials]
    assert again.spark_session is spark  # the active one


def _slow_unless_one(cfg):
    if cfg["x"] != 1.0:
        time.sleep(60)
    return 0.25


@pytest.mark.spark
def test_timeout_cancels_the_running_jobs(spark):
    trials = SparkTrials(parallelism=2, timeout=3, spark_session=spark)
    t0 = time.monotonic()
    best = _run(_slow_unless_one, trials, 20, points_to_evaluate=[{"x": 1.0}])
    assert best == {"x": 1.0} and time.monotonic() - t0 < 3 + 15
    states = [d["state"] for d in trials.trials]
    assert states[0] == JOB_STATE_DONE and set(states[1:]) == {JOB_STATE_CANCEL}, states
    assert trials.count_cancelled_trials() == len(states) - 1
    sc = spark.sparkContext
    assert not [j for j in sc.statusTracker().getActiveJobsIds()]  # nothing left running on Spark


@pytest.mark.spark
def test_loss_threshold_of_the_store_stops_fmin(spark):
    trials = SparkTrials(parallelism=1, loss_threshold=10.0, spark_session=spark)
    _run(lambda cfg: 1.0, trials, 30)
    assert 1 <= trials.count_successful_trials() < 30


@pytest.mark.spark
def test_ctrl_c_cancels_running_trials_back_to_new(spark):
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        trials = SparkTrials(parallelism=2, spark_session=spark)
        threading.Timer(4.0, os.kill, args=(os.getpid(), signal.SIGINT)).start()
        with pytest.raises(KeyboardInterrupt):
            _run(_slow_unless_one, trials, 10, points_to_evaluate=[{"x": 1.0}])
    finally:
        signal.signal(signal.SIGINT, previous)
    states = [d["state"] for d in trials.trials]
    assert states[0] == JOB_STATE_DONE and set(states[1:]) == {JOB_STATE_NEW}, states
    assert not spark.sparkContext.statusTracker().getActiveJobsIds()


@pytest.mark.spark
def test_a_crashed_task_is_an_error_trial_naming_the_cause(spark):
    trials = SparkTrials(parallelism=1, spark_session=spark)
    with pytest.raises(AllTrialsFailed, match=r"no trial succeeded: 1 of 1 trial\(s\) failed:\n  1 × SparkJobFailed"):
        _run(lambda cfg: os._exit(3), trials, 1)  # the objective kills Spark's Python worker
    (doc,) = trials.trials
    assert doc["state"] == JOB_STATE_ERROR and doc["error"]["type"] == "SparkJobFailed"
    assert doc["error"]["message"].startswith("the Spark job of trial 0 failed:")
    assert "Python worker exited unexpectedly" in doc["error"]["message"]


@pytest.mark.spark
def test_an_objective_the_executors_cannot_import_is_an_error_trial(spark, tmp_path, monkeypatch):
    (tmp_path / "only_on_the_driver.py").write_text("def objective(cfg):\n    return cfg['x']\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import only_on_the_driver
    trials = SparkTrials(parallelism=1, spark_session=spark)
    with pytest.raises(AllTrialsFailed, match=r"1 × hpo_mongo.exceptions.ObjectiveLoadError: .*'only_on_the_driver'"):
        _run(only_on_the_driver.objective, trials, 1)
    (doc,) = trials.trials
    assert doc["state"] == JOB_STATE_ERROR and doc["error"]["type"].endswith("ObjectiveLoadError")
    assert "only_on_the_driver" in doc["error"]["message"]
