"""The in-memory Trials API (hyperopt's names) and document validation."""
import pickle

import numpy as np
import pytest

from hpo_mongo import JOB_STATE_DONE, JOB_STATE_NEW, Trials, fmin, hp, rand, trials_from_docs
from hpo_mongo.exceptions import InvalidTrial
from hpo_mongo.trials.documents import new_trial_doc, validate_trial_doc
from tests.extras import require


def small(n=6):
    t = Trials()
    fmin(lambda d: d["x"] if d["c"] == "a" else 10 + d["x"],
         {"c": hp.choice("c", [{"k": "a"}, {"k": "b", "y": hp.uniform("y", 0, 1)}]), "x": hp.uniform("x", 0, 1)},
         algo=rand.suggest, max_evals=n, trials=t, rstate=np.random.default_rng(4), show_progressbar=False)
    return t


def test_api_names_and_shapes():
    t = small()
    assert len(t) == 6 and list(t) == t.trials and t[0] is t.trials[0]
    assert t.count_by_state_synced(JOB_STATE_DONE) == 6 and t.count_by_state_unsynced([JOB_STATE_NEW]) == 0
    assert len(t.specs) == len(t.results) == len(t.miscs) == 6
    idxs, vals = t.idxs_vals
    assert set(vals) == {"c", "x", "y"} and len(vals["x"]) == 6 and len(vals["y"]) == len(idxs["y"])
    assert t.argmin == {k: v[0] for k, v in t.best_trial["misc"]["vals"].items() if v}
    assert t.average_best_error() == t.best_trial["result"]["loss"]


def test_insert_requires_refresh_and_validates():
    t = Trials()
    tid = t.new_trial_ids(1)[0]
    t.insert_trial_doc(new_trial_doc(tid, {"x": [1.0]}))
    assert len(t) == 0
    t.refresh()
    assert len(t) == 1
    bad = new_trial_doc(5, {"x": [1.0]})
    bad["misc"]["tid"] = 6
    with pytest.raises(InvalidTrial, match="misc.tid 6 differs from tid 5"):
        t.insert_trial_doc(bad)
    with pytest.raises(InvalidTrial, match="missing"):
        validate_trial_doc({"tid": 1})
    k = Trials(exp_key="k")
    with pytest.raises(InvalidTrial, match="exp_key None differs"):
        k.insert_trial_doc(new_trial_doc(0, {}))


def test_delete_all_view_pickle_and_from_docs():
    t = small()
    blob = pickle.dumps(t)
    t2 = pickle.loads(blob)
    assert t2.vals == t.vals
    t3 = trials_from_docs(t.trials)
    assert t3.tids == t.tids
    assert len(t.view(exp_key="other")) == 0
    t.delete_all()
    assert len(t) == 0 and t.attachments == {}


def test_new_ids_are_unique_and_increasing():
    t = Trials()
    a = t.new_trial_ids(3)
    b = t.new_trial_ids(2)
    assert a == [0, 1, 2] and b == [3, 4]


def test_export_and_dataframe_show_choice_values(tmp_path):
    t = small()
    path = tmp_path / "t.csv"
    assert t.export(str(path)) == 6
    lines = path.read_text().splitlines()
    assert lines[0].startswith("tid,state,status,loss") and len(lines) == 7
    require("pandas", "pandas")
    df = t.to_dataframe()
    assert len(df) == 6
    # choice columns hold the chosen option (a sub-space, as JSON with its values), never an index
    assert all(v.startswith('{"k":') for v in df["c"])
