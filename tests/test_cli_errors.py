"""CLI errors are one ``Error:`` line, never a traceback; a live driver protects its experiment
from ``delete``; the CLI and the worker share one exit code per configuration error (real server)."""
from __future__ import annotations

import os
import subprocess

import pytest

from hpo_mongo.inspect import get_experiment, live_driver
from hpo_mongo.trials.factory import connect_queue
from tests.helpers_distributed import Procs, child_env, wait_until, worker_cmd
from tests.test_cli import clone, exp, run  # noqa: F401


def one_error_line(r, code: int) -> str:
    assert r.exit_code == code, (r.exit_code, r.output, r.exception)
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in r.output, r.output
    return lines[0]


# ----------------------------------------------------------------------------- export
@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_export_to_a_full_disk_is_one_line(exp):
    for fmt in ("csv", "json"):
        line = one_error_line(run("export", "--mongo", exp["url"], "--format", fmt, "-o", "/dev/full"), 1)
        assert line == "Error: /dev/full: No space left on device"


def test_export_refuses_unknown_extensions(exp, tmp_path):
    path = tmp_path / "x.xlsx"
    line = one_error_line(run("export", "--mongo", exp["url"], "-o", str(path)), 2)
    assert line == (f"Error: cannot tell the format of '{path}' (extension '.xlsx'): choose csv, json or jsonl "
                    "(--format / format=) or name the file .csv, .json or .jsonl")
    assert not path.exists()
    assert run("export", "--mongo", exp["url"], "-o", str(path), "--format", "csv").exit_code == 0  # chosen
    assert path.read_text().startswith("tid,state,status,loss,")
    plain = tmp_path / "trials"  # no extension: CSV
    assert run("export", "--mongo", exp["url"], "-o", str(plain)).exit_code == 0
    assert plain.read_text().startswith("tid,state,status,loss,")


# ----------------------------------------------------------------------------- delete while a driver runs
DRIVER = """
import sys
import numpy as np
from hpo_mongo import fmin, hp, rand
from hpo_mongo.trials.mongo.store import MongoTrials
trials = MongoTrials(sys.argv[1], poll_interval=0.05)
fmin(lambda p: p["x"] ** 2, {"x": hp.uniform("x", -1, 1)}, algo=rand.suggest, max_evals=10, trials=trials,
     rstate=np.random.default_rng(0), show_progressbar=False, timeout=30)
"""


@pytest.fixture
def queue(mongo_url):
    q = connect_queue(mongo_url)
    yield q
    q.close()


def test_delete_warns_while_the_driver_runs(mongo_url, mongo_db, queue, tmp_path):
    with Procs(tmp_path) as procs:
        driver = procs.python(DRIVER, mongo_url, name="driver")  # no worker: it waits for one
        exp = wait_until(lambda: mongo_db.experiments.find_one({"exp_key": None, "driver.heartbeat": {"$ne": None}})
                         and mongo_db.jobs.find_one({}) and get_experiment(queue, None),
                         timeout=60, what="the driver's experiment")
        info = live_driver(queue, exp)
        assert info is not None and info["pid"] == driver.pid
        r = run("delete", "--mongo", mongo_url, "--yes", input="n\n")  # --yes: still asked, declined
        assert r.exit_code == 1
        assert ("Warning: the driver of experiment (default) is running (" in r.output
                and f":{driver.pid}, heartbeat " in r.output and "Stop it first, or pass --force." in r.output)
        assert "Delete it while its driver runs? [y/N]" in r.output
        before = {d["_id"] for d in mongo_db.jobs.find({}, {"_id": 1})}
        assert before and mongo_db.experiments.count_documents({}) == 1
        r = run("delete", "--mongo", mongo_url, input="y\ny\n")  # asked twice, confirmed twice
        assert r.exit_code == 0 and r.output.count("[y/N]") == 2 and "deleted experiment (default)" in r.output
        # its trials are gone (the live driver, as warned, queues new ones in their place)
        assert not before & {d["_id"] for d in mongo_db.jobs.find({}, {"_id": 1})}
        driver.kill()


def test_delete_force_does_not_ask(clone, mongo_url):
    url, db = clone
    db.experiments.update_one({"exp_key": None}, {"$set": {"status": "running"},
                                                  "$currentDate": {"driver.heartbeat": True}})
    q = connect_queue(url)
    try:
        assert live_driver(q, get_experiment(q, None)) is not None
    finally:
        q.close()
    r = run("delete", "--mongo", url, "--force")
    assert r.exit_code == 0 and "[y/N]" not in r.output and "Warning" not in r.output
    assert db.jobs.count_documents({"exp_key": None}) == 0


# ----------------------------------------------------------------------------- configuration errors
def _with_credentials(base: str) -> str:
    return base.replace("mongodb://", "mongodb://bob:secret@", 1) + "/hpo_auth"


def _worker(url: str) -> subprocess.CompletedProcess:
    cmd = worker_cmd(url, "--reserve-timeout", "5", "--max-disconnect", "5")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=child_env())


@pytest.mark.parametrize("kind", ["authentication", "srv"])
def test_cli_and_worker_share_the_exit_code_of_a_refused_configuration(kind, mongo_server_url):
    url = _with_credentials(mongo_server_url) if kind == "authentication" else "mongodb+srv://nonexistent.invalid/hpo"
    line = one_error_line(run("status", "--mongo", url, "--connect-timeout", "5"), 2)
    w = _worker(url)
    assert w.returncode == 2, w.stderr[-2000:]
    worker_line = [ln for ln in w.stderr.splitlines() if ln.startswith("Error: ")]
    assert worker_line == [line], w.stderr[-2000:]  # the same message
    assert "server time" not in w.stderr and "Traceback" not in w.stderr
    if kind == "authentication":  # mongo-java-server has no authentication; MongoDB answers code 18
        assert "remove the user name and password from the URL" in line
    else:
        assert line.startswith("Error: cannot resolve the mongodb+srv:// host name (")
        assert line.endswith("); check the cluster name in the URL")
