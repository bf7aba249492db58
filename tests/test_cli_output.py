"""``hpo-mongo`` output on the shared finished experiment of tests/test_cli.py (real test server):
options before the subcommand, tables within the terminal width, one JSON shape for a trial."""
from __future__ import annotations

import json

import pytest

from hpo_mongo.inspect import RECORD_KEYS
from tests.test_cli import LABELS, MAX_EVALS, exp, jrun, ok, run  # noqa: F401


def lines_of(out: str) -> list[str]:
    return out.rstrip("\n").splitlines()


# ----------------------------------------------------------------------------- options before the subcommand
def test_options_before_the_subcommand(exp, monkeypatch):
    monkeypatch.delenv("HPO_MONGO_URL", raising=False)
    assert jrun("--mongo", exp["url"], "status")["max_evals"] == MAX_EVALS
    assert jrun("--mongo", exp["url"], "--exp-key", "other", "status")["exp_key"] == "other"
    rows = jrun("--mongo", exp["url"], "--exp-key", "other", "list")
    assert rows and {r["exp_key"] for r in rows} == {"other"}
    assert "(default)" in ok("--mongo", exp["url"], "--connect-timeout", "2", "experiments")


def test_subcommand_options_win_over_the_groups(exp, monkeypatch):
    monkeypatch.delenv("HPO_MONGO_URL", raising=False)
    # the subcommand's --mongo wins over the group's (a malformed URL would fail with exit 2)
    assert jrun("--mongo", "http://nope", "status", "--mongo", exp["url"])["exp_key"] is None
    assert jrun("--exp-key", "nope", "status", "--mongo", exp["url"], "--exp-key", "other")["exp_key"] == "other"
    # the group's --mongo wins over $HPO_MONGO_URL
    monkeypatch.setenv("HPO_MONGO_URL", "http://nope")
    assert jrun("--mongo", exp["url"], "status")["exp_key"] is None
    r = run("status")
    assert r.exit_code == 2 and r.output.startswith("Error: invalid MongoDB URL 'http://nope'")


# ----------------------------------------------------------------------------- width
def test_tables_fit_60_columns(exp, monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    for args in (["list"], ["best", "-n", "3"], ["experiments"], ["status"], ["list", "--state", "error"]):
        out = ok(*args, "--mongo", exp["url"])
        assert all(len(line) <= 60 for line in lines_of(out)), (args, out)
    out = ok("list", "--mongo", exp["url"])
    lines = lines_of(out)
    assert lines[0].split()[:3] == ["tid", "state", "loss"]
    assert lines[-1].startswith("… ") and "more columns (--wide): " in lines[-1]  # what was left out
    assert len(lines) == 2 + len(jrun("list", "--mongo", exp["url"])) + 1
    assert "…" in out  # long cells are shortened


def test_tables_at_200_columns_and_wide(exp, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    out = ok("list", "--mongo", exp["url"])
    lines = lines_of(out)
    assert all(len(line) <= 200 for line in lines)
    assert lines[0].split() == ["tid", "state", "loss", *LABELS, "secs", "owner", "error"]  # every column
    data = {r["tid"]: r for r in jrun("list", "--mongo", exp["url"])}
    for line in lines[2:]:
        rec = data[int(line.split()[0])]
        opt = rec["params"]["opt"]
        if isinstance(opt, dict) and opt["name"] == "sgd":  # nested options compact: name(parameters)
            assert f"sgd(momentum={rec['params']['momentum']:.4g})" in line
        assert len(line) < 160  # no 229-character rows
    monkeypatch.setenv("COLUMNS", "60")
    wide = lines_of(ok("list", "--mongo", exp["url"], "--wide"))
    assert wide[0].split() == lines[0].split() and max(len(line) for line in wide) > 60
    assert not any("…" in line for line in wide)


def test_watch_fits_the_width(exp, monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    line = lines_of(ok("watch", "--mongo", exp["url"], "--timeout", "5"))[-1]
    assert len(line) <= 40 and line.startswith("[#") and f"{MAX_EVALS}/{MAX_EVALS}" in line
    monkeypatch.setenv("COLUMNS", "200")
    line = lines_of(ok("watch", "--mongo", exp["url"], "--timeout", "5"))[-1]
    assert line.startswith("[" + "#" * 24 + "]") and "best" in line


# ----------------------------------------------------------------------------- one JSON shape
def test_one_json_shape_for_a_trial(exp, tmp_path):
    listed = jrun("list", "--mongo", exp["url"])
    assert all(list(r) == list(RECORD_KEYS) for r in listed)
    by_tid = {r["tid"]: r for r in listed}
    best = jrun("best", "--mongo", exp["url"], "-n", "3")
    assert [b["tid"] for b in best] == [r["tid"] for r in jrun("list", "--mongo", exp["url"], "--sort", "loss",
                                                                 "--limit", "3")]
    for b in best:
        assert b == by_tid[b["tid"]]
    exported = json.loads(ok("export", "--mongo", exp["url"], "--format", "json"))
    assert exported == listed
    path = tmp_path / "t.jsonl"
    ok("export", "--mongo", exp["url"], "-o", str(path))
    assert [json.loads(line) for line in path.read_text().splitlines()] == listed
    err = next(r for r in listed if r["state"] == "error")
    for tid in (best[0]["tid"], err["tid"]):
        shown = jrun("show", str(tid), "--mongo", exp["url"])
        assert list(shown) == [*RECORD_KEYS, "document"]
        assert {k: v for k, v in shown.items() if k != "document"} == by_tid[tid]
    status_best = jrun("status", "--mongo", exp["url"])["best"]
    assert status_best == by_tid[best[0]["tid"]]
    # what the record holds
    ok_rec = best[0]
    assert ok_rec["state"] == "done" and ok_rec["status"] == "ok" and ok_rec["loss"] == ok_rec["result"]["loss"]
    assert list(ok_rec["params"]) == LABELS and ok_rec["result"]["n_layers"] == ok_rec["params"]["layers"]
    assert ok_rec["error"] is None and ok_rec["exp_key"] is None and ok_rec["owner"]
    assert ok_rec["start_time"].endswith("Z") and ok_rec["duration"] >= 0
    assert err["error"]["type"] == "ValueError" and "Traceback" in err["error"]["traceback"]
    assert err["loss"] is None and err["status"] == "fail"


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_export_records_in_memory_match_the_cli_shape(fmt, tmp_path):
    import numpy as np

    from hpo_mongo import Trials, fmin, hp, rand
    from hpo_mongo.export import export_trials
    trials = Trials()
    fmin(lambda p: p["x"] ** 2, {"x": hp.uniform("x", -1, 1)}, algo=rand.suggest, max_evals=3, trials=trials,
         rstate=np.random.default_rng(0), show_progressbar=False)
    path = tmp_path / f"t.{fmt}"
    assert export_trials(trials, path) == 3
    text = path.read_text()
    records = json.loads(text) if fmt == "json" else [json.loads(x) for x in text.splitlines()]
    assert [list(r) for r in records] == [list(RECORD_KEYS)] * 3
    assert [r["loss"] for r in records] == [r["params"]["x"] ** 2 for r in records]
