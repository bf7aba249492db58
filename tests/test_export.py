"""``hpo-mongo export`` (CSV round-trip, JSON, JSON Lines) and the Python helpers
``export_trials`` / ``to_dataframe`` for in-memory Trials and MongoTrials."""
from __future__ import annotations

import csv
import json
import sys

import numpy as np
import pytest

from hpo_mongo.space import compile_space

from hpo_mongo.export import export_trials, to_dataframe
from hpo_mongo.inspect import RECORD_KEYS
from tests.extras import require
from tests.test_cli import ACT_OPTIONS, LABELS, exp, jrun, objective, ok, run, space  # noqa: F401

COLUMNS_HEAD = ["tid", "state", "status", "loss", *LABELS, "attempt", "owner", "book_time", "start_time",
                "end_time", "duration", "error"]


def test_csv_round_trip(exp, tmp_path):
    path = tmp_path / "trials.csv"
    r = run("export", "--mongo", exp["url"], "-o", str(path))  # format from the extension
    assert r.exit_code == 0, r.output
    assert r.output.startswith("wrote ") and "trials.csv (csv)" in r.output
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        assert reader.fieldnames[:len(COLUMNS_HEAD)] == COLUMNS_HEAD
        assert "result.n_layers" in reader.fieldnames  # scalar result entries as columns
    listed = {r["tid"]: r for r in jrun("list", "--mongo", exp["url"])}
    assert sorted(int(r["tid"]) for r in rows) == sorted(listed)
    for row in rows:
        ref = listed[int(row["tid"])]
        params = ref["params"]
        assert row["state"] == ref["state"]
        assert float(row["lr"]) == params["lr"]  # full precision survives
        assert int(row["layers"]) == params["layers"]
        assert row["act"] == params["act"] and row["act"] in ACT_OPTIONS
        opt = json.loads(row["opt"]) if row["opt"].startswith("{") else row["opt"]
        assert opt == params["opt"]
        assert (row["momentum"] == "") == (params["momentum"] is None)
        assert (row["loss"] == "") == (ref["loss"] is None)
        if ref["loss"] is not None:
            assert float(row["loss"]) == ref["loss"]
            assert int(row["result.n_layers"]) == params["layers"] == ref["result"]["n_layers"]
        if row["state"] == "error":
            assert row["error"].startswith("ValueError: diverged")
        assert row["start_time"].endswith("Z")


def test_json_and_jsonl(exp, tmp_path):
    out = ok("export", "--mongo", exp["url"], "--format", "json")  # to stdout
    data = json.loads(out)
    assert all(list(r) == list(RECORD_KEYS) for r in data)  # the trial records of list --json
    assert all(r["params"]["act"] in ACT_OPTIONS for r in data)
    path = tmp_path / "t.jsonl"
    ok("export", "--mongo", exp["url"], "-o", str(path), "--state", "done")
    lines = path.read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) == sum(r["state"] == "done" for r in data)
    assert all(r["state"] == "done" and isinstance(r["loss"], float) for r in rows)
    assert rows == [r for r in data if r["state"] == "done"]


def test_export_to_unwritable_path(exp, tmp_path):
    r = run("export", "--mongo", exp["url"], "-o", str(tmp_path / "missing" / "x.csv"))
    assert r.exit_code != 0 and r.output.startswith("Error: ") and "Traceback" not in r.output


@pytest.fixture(scope="module")
def memory_trials():
    from hpo_mongo import Trials, fmin, rand
    trials = Trials()
    fmin(objective, space(), algo=rand.suggest, max_evals=15, trials=trials, rstate=np.random.default_rng(1),
         show_progressbar=False, catch_eval_exceptions=True)
    return trials


def test_export_trials_in_memory(memory_trials, tmp_path):
    n = export_trials(memory_trials, tmp_path / "m.csv", space=space())
    assert n == 15
    with open(tmp_path / "m.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert all(r["act"] in ACT_OPTIONS for r in rows)  # values thanks to space=
    export_trials(memory_trials, tmp_path / "raw.json")  # fmin remembered the space: values too
    raw = json.loads((tmp_path / "raw.json").read_text())
    assert all(r["params"]["act"] in ACT_OPTIONS for r in raw)
    memory_trials.space_json = None  # a Trials that never went through fmin: stored indices
    try:
        export_trials(memory_trials, tmp_path / "raw2.json")
    finally:
        memory_trials.space_json = compile_space(space()).to_json()
    raw = json.loads((tmp_path / "raw2.json").read_text())
    assert all(r["params"]["act"] in (0, 1, 2) for r in raw)
    from hpo_mongo.exceptions import InvalidParameterError
    with pytest.raises(InvalidParameterError, match="cannot tell the format"):
        export_trials(memory_trials, tmp_path / "x.txt")


def test_to_dataframe_in_memory_and_mongo(memory_trials, exp):
    require("pandas", "pandas")
    df = to_dataframe(memory_trials, space=space())
    assert list(df.columns[:len(COLUMNS_HEAD)]) == COLUMNS_HEAD
    assert len(df) == 15 and set(df["act"]) <= set(ACT_OPTIONS)
    assert str(df["start_time"].dtype).startswith("datetime64")
    from hpo_mongo.trials.mongo.store import MongoTrials
    trials = MongoTrials(exp["url"])  # the space comes from the experiments document
    mdf = to_dataframe(trials)
    assert len(mdf) == len(trials.trials) and set(mdf["act"]) <= set(ACT_OPTIONS)
    assert mdf["loss"].min() == pytest.approx(trials.best_trial["result"]["loss"])
    assert mdf.groupby("opt")["loss"].count().sum() == mdf["loss"].notna().sum()  # nested options hashable


def test_pandas_missing_message(memory_trials, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"pandas is not installed: pip install 'hpo_mongo\[pandas\]'"):
        to_dataframe(memory_trials)
