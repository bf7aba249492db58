"""``hpo-mongo`` against the real test server on one small finished experiment.

The experiment (built once per test process by :func:`shared_experiment`): fmin with
MongoTrials and two ``hpo-mongo-worker`` processes, a 6-parameter space (log-uniform, integer,
uniform, a choice whose first option is a nested sub-space, the conditional parameter inside
it, a categorical of strings), an objective that raises for some points (ERROR trials with a
traceback), plus a second small experiment under ``exp_key="other"``.

Read commands run on the shared database; commands that change things run on a copy
(the ``clone`` fixture).
"""
from __future__ import annotations

import datetime as dt
import json
import math
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pymongo
import pytest
from click.testing import CliRunner

from hpo_mongo.cli.main import cli
from hpo_mongo.inspect import RECORD_KEYS

REPO = Path(__file__).resolve().parents[1]
LABELS = ["lr", "layers", "dropout", "opt", "momentum", "act"]
OPT_OPTIONS = [{"name": "sgd", "momentum": {"$param": "momentum"}}, {"name": "adam"}, "rmsprop"]
ACT_OPTIONS = ["relu", "tanh", "gelu"]
MAX_EVALS = 16


def space():
    from hpo_mongo import hp
    return {
        "lr": hp.loguniform("lr", math.log(1e-5), math.log(1e-1)),
        "layers": hp.uniformint("layers", 1, 6),
        "dropout": hp.uniform("dropout", 0.0, 0.6),
        "opt": hp.choice("opt", [{"name": "sgd", "momentum": hp.uniform("momentum", 0.5, 0.99)},
                                 {"name": "adam"}, "rmsprop"]),
        "act": hp.choice("act", ACT_OPTIONS),
    }


def objective(p):
    """A smooth loss over the 6 parameters; raises for large dropout with gelu or rmsprop."""
    opt = p["opt"] if isinstance(p["opt"], str) else p["opt"]["name"]
    if p["dropout"] > 0.42 and (p["act"] == "gelu" or opt == "rmsprop"):
        raise ValueError(f"diverged: dropout={p['dropout']:.3f} with {p['act']}/{opt}")
    loss = (math.log10(p["lr"]) + 3.0) ** 2 + 0.15 * (p["layers"] - 4) ** 2 + p["dropout"]
    loss += {"sgd": 0.4 * (1.0 - p["opt"]["momentum"]) if opt == "sgd" else 0, "adam": 0.0, "rmsprop": 0.3}[opt]
    loss += {"relu": 0.1, "tanh": 0.2, "gelu": 0.0}[p["act"]]
    return {"loss": loss, "status": "ok", "n_layers": p["layers"]}


# ----------------------------------------------------------------------------- the server
from tests.mongo_server import _with_database  # noqa: E402 - the URL of another database on the server

_SHARED: dict = {}


def shared_experiment(server_url: str, tmp_dir: Path) -> dict:
    """Run (once per process) the finished experiment; ``{"url", "db_name", "client", "server"}``."""
    if server_url in _SHARED:
        return _SHARED[server_url]
    from hpo_mongo import fmin, rand
    from hpo_mongo.trials.mongo.store import MongoTrials
    from tests.helpers_distributed import Procs

    db_name = f"hpo_test_cli_{uuid.uuid4().hex[:8]}"
    url = _with_database(server_url, db_name)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    with Procs(tmp_dir) as procs:
        for i in range(2):
            procs.worker(url, "--reserve-timeout", "20", name=f"worker{i}")
        trials = MongoTrials(url, poll_interval=0.05)
        fmin(objective, space(), algo=rand.suggest, max_evals=MAX_EVALS, trials=trials,
             rstate=np.random.default_rng(3), show_progressbar=False)
        other = MongoTrials(url, exp_key="other", poll_interval=0.05)
        fmin(objective, space(), algo=rand.suggest, max_evals=4, trials=other,
             rstate=np.random.default_rng(4), show_progressbar=False)
        for p in procs.procs:  # a clean stop: the workers mark themselves exited
            p.signal()
        procs.wait(timeout=20)
    client = pymongo.MongoClient(url, tz_aware=True)
    db = client[db_name]
    assert db.jobs.count_documents({"exp_key": None, "state": 3}) >= 1, "the experiment needs failed trials"
    assert db.jobs.count_documents({"exp_key": None, "state": 2}) >= 5
    _SHARED[server_url] = {"url": url, "db_name": db_name, "client": client, "server": server_url}
    return _SHARED[server_url]


@pytest.fixture(scope="session")
def exp(mongo_server_url, tmp_path_factory):
    """The shared finished experiment (one per test process, whichever module asks first)."""
    yield shared_experiment(mongo_server_url, tmp_path_factory.mktemp("shared_exp"))
    e = _SHARED.pop(mongo_server_url, None)
    if e is not None:
        e["client"].drop_database(e["db_name"])


@pytest.fixture
def clone(exp):
    """``(url, db)``: a copy of the shared database (GridFS included) for a test that writes."""
    src = exp["client"][exp["db_name"]]
    name = f"hpo_test_clone_{uuid.uuid4().hex[:8]}"
    dst = exp["client"][name]
    for coll in src.list_collection_names():
        docs = list(src[coll].find())
        if docs:
            dst[coll].insert_many(docs)
    yield _with_database(exp["server"], name), dst
    exp["client"].drop_database(name)


def run(*args: str, env: dict | None = None, input: str | None = None):
    return CliRunner().invoke(cli, list(args), env=env, input=input, catch_exceptions=True)


def ok(*args: str) -> str:
    r = run(*args)
    assert r.exit_code == 0, f"{args}: exit {r.exit_code}\n{r.output}\n{r.exception!r}"
    return r.output


def jrun(*args: str):
    return json.loads(ok(*args, "--json"))


def _option_of(params: dict):
    """The ``opt`` option a decoded row came from (the sgd option has its momentum filled in)."""
    opt = params["opt"]
    if isinstance(opt, dict) and opt.get("name") == "sgd":
        return dict(opt, momentum={"$param": "momentum"})
    return opt


def header(text: str) -> list[str]:
    return text.splitlines()[0].split()


# ----------------------------------------------------------------------------- basics
def test_version_via_python_m():
    out = subprocess.run([sys.executable, "-m", "hpo_mongo", "--version"], capture_output=True, text=True,
                         cwd=REPO, timeout=60)
    assert out.returncode == 0 and out.stdout.strip().startswith("hpo-mongo 0.")


def test_every_command_has_help():
    for name in ["experiments", "status", "list", "show", "best", "export", "requeue", "cancel", "delete",
                 "plot", "watch"]:
        out = ok(name, "--help")
        assert "--mongo" in out and "Example:" in out


# ----------------------------------------------------------------------------- read commands
def test_experiments_table_and_json(exp):
    out = ok("experiments", "--mongo", exp["url"])
    assert header(out)[:4] == ["exp_key", "status", "max_evals", "total"]
    lines = out.splitlines()
    assert lines[2].startswith("(default)") and lines[3].startswith("other")
    data = jrun("experiments", "--mongo", exp["url"])
    assert [e["exp_key"] for e in data] == [None, "other"]
    d = data[0]
    assert set(d) == {"exp_key", "status", "max_evals", "algorithm", "counts", "best_loss", "created",
                      "last_activity"}
    assert d["max_evals"] == MAX_EVALS
    assert d["counts"]["total"] == sum(d["counts"][s] for s in ("new", "running", "done", "error", "cancel"))
    assert d["counts"]["done"] + d["counts"]["error"] >= MAX_EVALS
    assert d["created"].endswith("Z") and d["last_activity"].endswith("Z")
    db = exp["client"][exp["db_name"]]
    best = min(t["result"]["loss"] for t in db.jobs.find({"exp_key": None, "state": 2}))
    assert d["best_loss"] == pytest.approx(best)


def test_status_text_and_json(exp):
    data = jrun("status", "--mongo", exp["url"])
    assert set(data) >= {"exp_key", "status", "max_evals", "counts", "finished", "best", "throughput",
                         "workers", "workers_source", "stale", "server_time"}
    assert data["exp_key"] is None and data["max_evals"] == MAX_EVALS
    assert data["finished"] == data["counts"]["done"] + data["counts"]["error"] + data["counts"]["cancel"]
    best = data["best"]
    assert list(best["params"]) == LABELS
    assert best["params"]["act"] in ACT_OPTIONS  # a value, not an index
    assert _option_of(best["params"]) in OPT_OPTIONS
    assert data["throughput"]["finished"] >= 1 and data["throughput"]["per_minute"] > 0
    assert data["stale"] == []
    assert data["workers_source"] == "workers" and data["workers"] == []  # both stopped cleanly
    text = ok("status", "--mongo", exp["url"])
    assert text.splitlines()[0].split() == ["experiment", "(default)"]
    assert f"loss {best['loss']:.6g}"[:10] in text
    assert f"act = {best['params']['act']}" in text
    assert "throughput" in text and "stale       none" in text


def test_list_one_column_per_parameter_with_values(exp):
    out = ok("list", "--mongo", exp["url"])
    cols = header(out)
    assert cols[:3] == ["tid", "state", "loss"] and cols[3:9] == LABELS
    data = jrun("list", "--mongo", exp["url"])
    assert [r["tid"] for r in data] == sorted(r["tid"] for r in data)
    assert len(data) >= MAX_EVALS
    for r in data:
        p = r["params"]
        assert list(p) == LABELS
        assert p["act"] in ACT_OPTIONS and _option_of(p) in OPT_OPTIONS
        is_sgd = isinstance(p["opt"], dict) and p["opt"]["name"] == "sgd"
        assert (p["momentum"] is not None) == is_sgd  # None when inactive
        if is_sgd:  # the nested option shows the value the objective received
            assert p["opt"] == {"name": "sgd", "momentum": p["momentum"]}
        assert isinstance(p["layers"], int) and 1 <= p["layers"] <= 6
        assert (r["loss"] is None) == (r["state"] != "done")
    # blank cell in the table for an inactive parameter: the momentum column of an adam trial
    adam = next(r for r in data if r["params"]["opt"] == {"name": "adam"})
    line = next(ln for ln in out.splitlines()[2:] if ln.split()[0] == str(adam["tid"]))
    start = out.splitlines()[0].index("momentum")
    assert line[start:start + len("momentum")].strip() == ""
    assert " adam " in line  # a nested option shown by its name
    sgd = next(r for r in data if isinstance(r["params"]["opt"], dict) and r["params"]["opt"]["name"] == "sgd")
    line = next(ln for ln in out.splitlines()[2:] if ln.split()[0] == str(sgd["tid"]))
    assert f"sgd(momentum={sgd['params']['momentum']:.4g})" in line


def test_list_filters_and_sorts(exp):
    errors = jrun("list", "--mongo", exp["url"], "--state", "error")
    assert errors and all(r["state"] == "error" and r["error"]["type"] == "ValueError"
                          and r["error"]["message"].startswith("diverged") for r in errors)
    by_loss = jrun("list", "--mongo", exp["url"], "--sort", "loss", "--limit", "5")
    assert len(by_loss) == 5
    assert [r["loss"] for r in by_loss] == sorted(r["loss"] for r in by_loss)
    allrows = jrun("list", "--mongo", exp["url"], "--sort", "loss")
    losses = [r["loss"] for r in allrows]
    n_ok = sum(x is not None for x in losses)
    assert all(x is not None for x in losses[:n_ok]) and all(x is None for x in losses[n_ok:])
    by_time = jrun("list", "--mongo", exp["url"], "--sort", "time", "--reverse", "--limit", "3")
    times = [r["book_time"] for r in by_time]
    assert times == sorted(times, reverse=True)
    r = run("list", "--mongo", exp["url"], "--state", "bogus")
    assert r.exit_code == 2 and "bogus" in r.output


def test_show_finds_a_tid_in_any_experiment(exp):
    """Tids are unique in the database: show needs no --exp-key, and names the experiment."""
    rec = jrun("list", "--mongo", exp["url"], "--exp-key", "other", "--limit", "1")[0]
    out = ok("show", str(rec["tid"]), "--mongo", exp["url"])
    assert out.splitlines()[0].split() == ["trial", str(rec["tid"]), "(experiment", "other)"]
    shown = jrun("show", str(rec["tid"]), "--mongo", exp["url"])
    assert shown["exp_key"] == "other" and shown["params"] == rec["params"]  # decoded with other's space
    assert jrun("show", str(rec["tid"]), "--mongo", exp["url"], "--exp-key", "other")["tid"] == rec["tid"]


def test_show_has_the_traceback(exp):
    err = jrun("list", "--mongo", exp["url"], "--state", "error", "--limit", "1")[0]
    out = ok("show", str(err["tid"]), "--mongo", exp["url"])
    assert out.splitlines()[0].split()[:2] == ["trial", str(err["tid"])]
    assert "state        error" in out
    assert "Traceback (most recent call last)" in out and "ValueError: diverged" in out
    data = jrun("show", str(err["tid"]), "--mongo", exp["url"])
    assert data["state"] == "error" and data["error"]["type"] == "ValueError"
    assert "Traceback" in data["error"]["traceback"]
    assert list(data["params"]) == LABELS and data["params"]["act"] in ACT_OPTIONS
    doc = data["document"]  # the stored document is there too
    assert doc["misc"]["vals"]["act"][0] in (0, 1, 2) and isinstance(doc["_id"], str) and doc["state"] == 3


def test_best(exp):
    data = jrun("best", "--mongo", exp["url"], "-n", "3")
    assert len(data) == 3
    assert [d["loss"] for d in data] == sorted(d["loss"] for d in data)
    assert list(data[0]) == list(RECORD_KEYS)
    assert data[0]["params"]["act"] in ACT_OPTIONS
    status = jrun("status", "--mongo", exp["url"])
    assert data[0]["tid"] == status["best"]["tid"]
    out = ok("best", "--mongo", exp["url"], "-n", "2")
    assert header(out)[:3] == ["rank", "tid", "loss"] and len(out.splitlines()) == 4


def test_other_experiment_and_exp_key(exp):
    data = jrun("status", "--mongo", exp["url"], "--exp-key", "other")
    assert data["exp_key"] == "other" and data["max_evals"] == 4
    rows = jrun("list", "--mongo", exp["url"], "--exp-key", "other")
    assert 4 <= len(rows) and all(isinstance(r["params"]["act"], str) and r["exp_key"] == "other" for r in rows)


def test_env_var_url(exp):
    r = run("status", env={"HPO_MONGO_URL": exp["url"]})
    assert r.exit_code == 0 and "(default)" in r.output


def test_watch_returns_on_a_finished_experiment(exp):
    out = ok("watch", "--mongo", exp["url"], "--interval", "0.1", "--timeout", "10")
    line = out.strip().splitlines()[-1]
    assert line.startswith("[") and f"/{MAX_EVALS}" in line and "best" in line
    states = [json.loads(x) for x in ok("watch", "--mongo", exp["url"], "--json", "--timeout", "10").splitlines()]
    assert len(states) == 1 and states[0]["finished"] == MAX_EVALS and states[0]["max_evals"] == MAX_EVALS
    assert set(states[0]) == {"exp_key", "max_evals", "finished", "counts", "best_loss", "best_tid", "per_minute"}


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("args, code, message", [
    (["status", "--mongo", "http://nope"], 2, "Error: invalid MongoDB URL 'http://nope': unsupported scheme"),
    (["status"], 2, "Error: no MongoDB URL given: pass --mongo URL or set HPO_MONGO_URL; expected mongodb://"),
    (["list", "--mongo", "mongodb://127.0.0.1:1/x", "--connect-timeout", "0.3"], 3,
     "Error: cannot reach the MongoDB server at"),
])
def test_bad_url_and_unreachable_server(args, code, message, monkeypatch):
    monkeypatch.delenv("HPO_MONGO_URL", raising=False)
    r = run(*args)
    assert r.exit_code == code, r.output
    assert r.output.startswith(message) and len(r.output.strip().splitlines()) == 1
    assert "Traceback" not in r.output and isinstance(r.exception, SystemExit)


def test_unknown_exp_key_and_tid(exp):
    r = run("status", "--mongo", exp["url"], "--exp-key", "nope")
    assert r.exit_code == 1
    assert r.output.strip() == f"Error: no experiment nope in {exp['url']} (experiments: (default), other)"
    r = run("show", "999999", "--mongo", exp["url"])
    assert r.exit_code == 1 and r.output.strip() == f"Error: no trial 999999 in {exp['url']}"
    r = run("show", "999999", "--mongo", exp["url"], "--exp-key", "other")
    assert r.exit_code == 1 and r.output.strip() == "Error: no trial 999999 in experiment other"
    default_tid = jrun("list", "--mongo", exp["url"], "--limit", "1")[0]["tid"]
    r = run("show", str(default_tid), "--mongo", exp["url"], "--exp-key", "other")
    assert r.exit_code == 1
    assert r.output.strip() == (f"Error: no trial {default_tid} in experiment other: it belongs to experiment "
                                "(default) (omit --exp-key)")
    r = run("show", "abc", "--mongo", exp["url"])
    assert r.exit_code == 2 and "'abc' is not a valid integer" in r.output


def test_empty_database_message(mongo_url):
    url = mongo_url
    assert ok("experiments", "--mongo", url).strip() == f"no experiments in {url}"
    r = run("status", "--mongo", url)
    assert r.exit_code == 1 and "holds no experiments" in r.output


# ----------------------------------------------------------------------------- writes (on copies)
def test_requeue_errors_and_tids(clone):
    url, db = clone
    before = {d["tid"]: d for d in db.jobs.find({"exp_key": None})}
    errors = sorted(t for t, d in before.items() if d["state"] == 3)
    out = ok("requeue", "--errors", "--mongo", url)
    assert out.splitlines()[0] == (f"requeued {len(errors)} trial{'s' if len(errors) > 1 else ''} of experiment "
                                   f"(default): " + ", ".join(map(str, errors)))
    for t in errors:
        d = db.jobs.find_one({"tid": t})
        assert d["state"] == 0 and d["owner"] is None and d["error"] is None and d["result"] == {"status": "new"}
        assert d["version"] == before[t]["version"] + 1 and d["updated_at"] > before[t]["updated_at"]
        assert d["attempt"] == before[t]["attempt"]  # only a claim counts attempts
    done = next(t for t, d in before.items() if d["state"] == 2)
    data = jrun("requeue", str(errors[0]), str(done), "--mongo", url)
    assert data["requeued"] == [] and {s["tid"] for s in data["skipped"]} == {errors[0], done}
    assert db.jobs.find_one({"tid": done})["state"] == 2
    r = run("requeue", "--mongo", url)
    assert r.exit_code == 2 and "--stale or --errors" in r.output
    r = run("requeue", "424242", "--mongo", url)
    assert r.exit_code == 1 and r.output.strip() == "Error: no trial 424242 in experiment (default)"


def test_requeue_stale(clone):
    url, db = clone
    tid = db.jobs.find_one({"exp_key": None, "state": 2}, sort=[("tid", 1)])["tid"]
    old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    db.jobs.update_one({"tid": tid}, {"$set": {"state": 1, "heartbeat": old, "owner": "ghost:1"}})
    status = jrun("status", "--mongo", url)
    assert [s["tid"] for s in status["stale"]] == [tid]
    assert "1 running trial(s) silent for longer than their lease" in ok("status", "--mongo", url)
    before = db.jobs.find_one({"tid": tid})
    data = jrun("requeue", "--stale", "--mongo", url)
    assert data["requeued"] == [tid]
    after = db.jobs.find_one({"tid": tid})
    assert after["state"] == 0 and after["owner"] is None and after["heartbeat"] is None
    assert after["requeues"] == before.get("requeues", 0) + 1  # as the lease rules count it


def test_cancel(clone):
    url, db = clone
    err = db.jobs.find_one({"exp_key": None, "state": 3})["tid"]
    ok("requeue", str(err), "--mongo", url)
    done = db.jobs.find_one({"exp_key": None, "state": 2})["tid"]
    v = db.jobs.find_one({"tid": err})["version"]
    out = ok("cancel", str(err), str(done), "--mongo", url)
    assert out.splitlines() == [f"cancelled 1 trial of experiment (default): {err}",
                                f"skipped {done}: trial {done} is already done"]
    d = db.jobs.find_one({"tid": err})
    assert d["state"] == 4 and d["version"] == v + 1 and d["owner"] is None
    assert db.jobs.find_one({"tid": done})["state"] == 2


def test_delete(clone):
    url, db = clone
    from hpo_mongo.trials.mongo.store import MongoTrials
    trials, other_trials = MongoTrials(url), MongoTrials(url, exp_key="other")
    trials.attachments["notes"] = b"experiment notes"
    trials.trial_attachments(trials.trials[0])["model"] = b"weights"
    other_trials.attachments["notes"] = b"kept"
    other_trials.trial_attachments(other_trials.trials[0])["model"] = b"kept too"
    n_other = db.jobs.count_documents({"exp_key": "other"})
    n_files = db["fs.files"].count_documents({})
    assert n_files >= 5  # domain(s) + 4 attachments
    r = run("delete", "--mongo", url, input="n\n")
    assert r.exit_code == 1 and db.jobs.count_documents({"exp_key": None}) > 0  # declined: nothing gone
    data = jrun("delete", "--yes", "--mongo", url)
    assert data["trials"] >= MAX_EVALS and data["experiment"] is True
    assert data["files"] >= 2 and db["fs.files"].count_documents({}) == n_files - data["files"]
    assert not db["fs.files"].find_one({"filename": "exp//notes"})
    assert not db["fs.files"].find_one({"filename": f"trial/{trials.trials[0]['tid']}/model"})
    assert other_trials.attachments["notes"] == b"kept"
    assert MongoTrials(url, exp_key="other").trial_attachments(other_trials.trials[0])["model"] == b"kept too"
    assert db.jobs.count_documents({"exp_key": None}) == 0
    assert db.experiments.count_documents({"exp_key": None}) == 0
    assert db.jobs.count_documents({"exp_key": "other"}) == n_other
    assert db.experiments.count_documents({"exp_key": "other"}) == 1
    # the domain file is shared with "other" only if both pickled the same objective and space
    other = db.experiments.find_one({"exp_key": "other"})
    assert db["fs.files"].count_documents({"filename": f"domain/{other['domain_hash']}"}) == 1
    out = ok("experiments", "--mongo", url)
    assert "(default)" not in out and "other" in out
    r = run("status", "--mongo", url)
    assert r.exit_code == 1 and "(experiments: other); pass --exp-key KEY" in r.output
