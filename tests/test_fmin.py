"""fmin options and the result rules (in-memory Trials, rand/grid only)."""
import math
import pickle
import time

import numpy as np
import pytest

from hpo_mongo import (JOB_STATE_DONE, JOB_STATE_ERROR, STATUS_FAIL, STATUS_OK, Trials, fmin, grid, hp,
                       rand, space_eval)
from hpo_mongo.early_stop import no_progress_loss
from hpo_mongo.exceptions import AllTrialsFailed, InvalidParameterError, InvalidSpaceError

SPACE = hp.uniform("x", -5, 5)


def quad(x):
    return (x - 3) ** 2


def run(fn=quad, space=SPACE, n=20, seed=0, **kw):
    trials = kw.pop("trials", None)
    trials = Trials() if trials is None else trials
    kw.setdefault("algo", rand.suggest)
    best = fmin(fn, space, max_evals=n, trials=trials, rstate=np.random.default_rng(seed),
                show_progressbar=False, **kw)
    return best, trials


def test_basic_run_records_hyperopt_documents():
    best, trials = run()
    assert len(trials) == 20 and trials.tids == list(range(20))
    t = trials.trials[0]
    assert set(t) >= {"tid", "state", "spec", "result", "misc", "exp_key", "owner", "version",
                      "book_time", "refresh_time"}
    assert set(t["misc"]) >= {"tid", "cmd", "idxs", "vals", "workdir"}
    assert t["misc"]["idxs"] == {"x": [0]} and len(t["misc"]["vals"]["x"]) == 1
    assert t["state"] == JOB_STATE_DONE and t["result"]["status"] == STATUS_OK
    assert best == trials.argmin and abs(best["x"] - trials.best_trial["misc"]["vals"]["x"][0]) == 0
    assert min(loss for loss in trials.losses()) == trials.best_trial["result"]["loss"]
    assert trials.statuses() == ["ok"] * 20
    assert len(trials.vals["x"]) == 20 and trials.idxs["x"] == list(range(20))


def test_same_rstate_same_trials_different_rstate_different():
    _, a = run(seed=7)
    _, b = run(seed=7)
    _, c = run(seed=8)
    assert a.vals == b.vals
    assert a.vals != c.vals


def test_resume_continues_to_max_evals_in_total():
    trials = Trials()
    run(n=10, trials=trials)
    assert len(trials) == 10
    run(n=25, trials=trials, seed=1)
    assert len(trials) == 25 and trials.tids == list(range(25))
    run(n=25, trials=trials, seed=2)  # already done: nothing new
    assert len(trials) == 25


def test_trials_fmin_method():
    trials = Trials()
    best = trials.fmin(quad, SPACE, algo=rand.suggest, max_evals=5, rstate=np.random.default_rng(0),
                       show_progressbar=False)
    assert len(trials) == 5 and "x" in best


def test_timeout_stops_early():
    def slow(x):
        time.sleep(0.05)
        return x

    t0 = time.monotonic()
    _, trials = run(fn=slow, n=1000, timeout=0.3)
    assert 2 <= len(trials) < 50
    assert time.monotonic() - t0 < 5


def test_loss_threshold_stops_once_reached():
    _, trials = run(fn=lambda x: 0.0 if len(calls) >= 4 else calls.append(1) or 1.0, n=100, loss_threshold=0.5)
    assert len(trials) == 5


calls: list = []


def test_early_stop_fn_and_no_progress_loss():
    _, trials = run(fn=lambda x: 1.0, n=200, early_stop_fn=no_progress_loss(10))
    assert len(trials) == 10  # as hyperopt: the first trial counts as one without progress

    seen = []

    def stopper(trials, count=0):
        seen.append(count)
        return count >= 3, [count + 1]

    _, trials = run(n=50, early_stop_fn=stopper)
    assert seen == [0, 1, 2, 3] and len(trials) == 4


def test_points_to_evaluate_without_and_with_trials():
    space = {"x": SPACE, "c": hp.choice("c", ["a", "b"])}
    pts = [{"x": 3.0, "c": 1}, {"x": -1.0, "c": 0}]
    best, trials = run(fn=lambda d: (d["x"] - 3) ** 2, space=space, n=5, points_to_evaluate=pts)
    assert trials.trials[0]["misc"]["vals"] == {"x": [3.0], "c": [1]}
    assert trials.trials[1]["misc"]["vals"] == {"x": [-1.0], "c": [0]}
    assert best == {"x": 3.0, "c": 1}
    given = Trials()
    run(fn=lambda d: d["x"], space=space, n=3, points_to_evaluate=pts, trials=given)
    assert given.trials[0]["misc"]["vals"]["x"] == [3.0] and len(given) == 3


def test_points_to_evaluate_errors_name_the_problem():
    with pytest.raises(InvalidSpaceError, match=r"points_to_evaluate\[0\]: unknown label\(s\) \['y'\]"):
        run(points_to_evaluate=[{"y": 1}])
    with pytest.raises(InvalidSpaceError, match="outside hyperparameter 'x'"):
        run(points_to_evaluate=[{"x": 11}])
    with pytest.raises(InvalidSpaceError, match="no value for active hyperparameter 'x'"):
        run(points_to_evaluate=[{}])


def test_return_argmin_false_gives_values():
    space = {"c": hp.choice("c", ["small", "large"]), "x": SPACE}
    best = fmin(lambda d: (d["c"] == "large") + abs(d["x"]), space, algo=rand.suggest, max_evals=30,
                rstate=np.random.default_rng(0), return_argmin=False, show_progressbar=False)
    assert best["c"] == "small" and isinstance(best["x"], float)
    idx = fmin(lambda d: (d["c"] == "large") + abs(d["x"]), space, algo=rand.suggest, max_evals=30,
               rstate=np.random.default_rng(0), show_progressbar=False)
    assert idx["c"] == 0 and space_eval(space, idx) == best


# ---------------------------------------------------------------- result rules
@pytest.mark.parametrize("ret,status,loss,failure", [
    (1.5, "ok", 1.5, None),
    (np.float32(2.0), "ok", 2.0, None),
    (3, "ok", 3.0, None),
    (float("inf"), "ok", math.inf, None),
    ({"loss": 0.5, "status": "ok", "extra": [1, 2]}, "ok", 0.5, None),
    ({"loss": float("nan"), "status": "ok"}, "fail", None, "loss is NaN"),
    (float("nan"), "fail", None, "NaN"),
    ({"loss": "abc", "status": "ok"}, "fail", None, "loss must be a number, got str ('abc')"),
    (-math.inf, "fail", None, "loss is -inf"),
    ({"loss": -math.inf, "status": "ok"}, "fail", None, "loss is -inf"),
    ({"loss": -math.inf, "status": "fail"}, "fail", None, None),
    ({"loss": 1.0, "status": "weird"}, "fail", 1.0, "unknown status 'weird'"),
    ({"loss": 1.0}, "fail", 1.0, "no 'status'"),
    ({"status": "ok"}, "fail", None, "has no 'loss'"),
    ({"status": "fail", "reason": "diverged"}, "fail", None, None),
    ("a string", "fail", None, "loss must be a number, got str"),
    (None, "fail", None, "got NoneType"),
    (True, "fail", None, "bool"),
])
def test_result_rules(ret, status, loss, failure):
    trials = Trials()
    try:
        run(fn=lambda x: ret, n=1, trials=trials)
    except AllTrialsFailed:
        assert status == "fail"
    t = trials.trials[0]
    assert t["state"] == JOB_STATE_DONE
    assert t["result"]["status"] == status
    assert t["result"].get("loss") == loss
    if failure:
        assert failure in t["result"]["failure"]
    if isinstance(ret, dict) and "extra" in ret:
        assert t["result"]["extra"] == [1, 2]


def test_failed_trials_are_not_best_and_all_failed_raises():
    with pytest.raises(AllTrialsFailed):
        run(fn=lambda x: {"status": STATUS_FAIL}, n=3)
    _, trials = run(fn=lambda x: float("nan") if x > 0 else x, n=20)
    assert trials.best_trial["result"]["loss"] <= 0


def test_attachments_are_stored_per_trial():
    _, trials = run(fn=lambda x: {"loss": x, "status": "ok", "attachments": {"blob": b"\x00\x01"}}, n=2)
    t = trials.trials[1]
    assert "attachments" not in t["result"]
    assert trials.trial_attachments(t)["blob"] == b"\x00\x01"
    assert trials.attachments["ATTACH::1::blob"] == b"\x00\x01"


def test_exception_propagates_and_trial_is_recorded():
    def boom(x):
        raise ValueError("bad x")

    trials = Trials()
    with pytest.raises(ValueError, match="bad x"):
        run(fn=boom, n=3, trials=trials)
    assert len(trials) == 1 and trials.trials[0]["state"] == JOB_STATE_ERROR


def test_catch_eval_exceptions_records_error_and_continues():
    def sometimes(x):
        if x > 0:
            raise ValueError(f"positive {x:.2f}")
        return x

    _, trials = run(fn=sometimes, n=20, catch_eval_exceptions=True)
    errs = [t for t in trials.trials if t["state"] == JOB_STATE_ERROR]
    assert errs and len(trials) == 20  # max_evals counts ERROR trials too
    e = errs[0]["error"]
    assert e["type"] == "ValueError" and e["message"].startswith("positive")
    assert "Traceback" in e["traceback"] and "sometimes" in e["traceback"]
    assert errs[0]["misc"]["error"][0] == "ValueError"


def test_trials_save_file_resumes(tmp_path):
    path = str(tmp_path / "trials.pkl")
    fmin(quad, SPACE, algo=rand.suggest, max_evals=5, trials_save_file=path, show_progressbar=False,
         rstate=np.random.default_rng(0))
    assert len(pickle.load(open(path, "rb"))) == 5
    fmin(quad, SPACE, algo=rand.suggest, max_evals=8, trials_save_file=path, show_progressbar=False,
         rstate=np.random.default_rng(1))
    assert len(pickle.load(open(path, "rb"))) == 8


def test_progressbar_shows_best_loss(capsys):
    fmin(quad, SPACE, algo=rand.suggest, max_evals=5, rstate=np.random.default_rng(0))
    out = capsys.readouterr().out  # as hyperopt: the bar goes to stdout, prints go through tqdm
    assert "best loss:" in out and "5/5" in out


@pytest.mark.parametrize("kw,needle", [
    ({"max_evals": -1}, "The 'max_evals' parameter of fmin must be an int in the range [0, inf) or None. Got -1"),
    ({"max_evals": 2.5}, "'max_evals' parameter of fmin"),
    ({"timeout": 0}, "The 'timeout' parameter of fmin must be a float in the range (0, inf) or None. Got 0"),
    ({"timeout": True}, "'timeout'"),
    ({"loss_threshold": "x"}, "'loss_threshold'"),
    ({"max_queue_len": 0}, "'max_queue_len'"),
    ({"points_to_evaluate": [1]}, "'points_to_evaluate'"),
    ({"early_stop_fn": 3}, "'early_stop_fn' parameter of fmin must be None or a callable"),
    ({"rstate": 42}, "'rstate' parameter of fmin"),
    ({"algo": "tpe"}, "'algo' parameter of fmin"),
    ({"trials": []}, "'trials' parameter of fmin"),
])
def test_invalid_fmin_arguments_name_the_parameter(kw, needle):
    args = dict(max_evals=3, algo=rand.suggest, show_progressbar=False)
    args.update(kw)
    with pytest.raises(InvalidParameterError) as ei:
        fmin(quad, SPACE, **args)
    assert needle in str(ei.value)


def test_fn_must_be_callable():
    with pytest.raises(InvalidParameterError, match="'fn' parameter must be callable"):
        fmin(3, SPACE, algo=rand.suggest, max_evals=1, show_progressbar=False)


def test_grid_search_enumerates_and_stops_when_exhausted():
    space = {"c": hp.choice("c", [{"k": "a", "u": hp.uniform("u", 0, 1)}, {"k": "b"}]),
             "n": hp.randint("n", 2), "q": hp.quniform("q", 0, 1, 0.5)}
    trials = Trials()
    fmin(lambda d: 0.0, space, algo=grid.suggest, max_evals=1000, trials=trials, show_progressbar=False)
    # branch a: 5 u-values x 2 n x 3 q = 30; branch b: 2 x 3 = 6
    assert len(trials) == 36
    pts = {tuple((k, tuple(v)) for k, v in sorted(t["misc"]["vals"].items())) for t in trials.trials}
    assert len(pts) == 36
    us = sorted({t["misc"]["vals"]["u"][0] for t in trials.trials if t["misc"]["vals"]["u"]})
    assert us == [0, 0.25, 0.5, 0.75, 1.0]


def test_grid_resumes_and_spacings():
    from functools import partial

    from hpo_mongo.algos.grid import grid_values
    from hpo_mongo.space import compile_space
    cs = compile_space({"a": hp.loguniform("a", 0, 2), "n": hp.normal("n", 0, 1), "u": hp.uniformint("u", 1, 3)})
    d = {p.label: p.dist for p in cs.params}
    assert np.allclose(grid_values(d["a"], 3), np.exp([0, 1, 2]))
    n = grid_values(d["n"], 4)
    assert np.allclose(n, -n[::-1]) and len(n) == 4
    assert list(grid_values(d["u"])) == [1, 2, 3]
    trials = Trials()
    fmin(lambda d: 0, {"u": hp.uniformint("u", 1, 3), "x": hp.uniform("x", 0, 1)},
         algo=partial(grid.suggest, n_points=2), max_evals=4, trials=trials, show_progressbar=False)
    fmin(lambda d: 0, {"u": hp.uniformint("u", 1, 3), "x": hp.uniform("x", 0, 1)},
         algo=partial(grid.suggest, n_points=2), max_evals=100, trials=trials, show_progressbar=False)
    assert len(trials) == 6
    assert len({(t["misc"]["vals"]["u"][0], t["misc"]["vals"]["x"][0]) for t in trials.trials}) == 6


def test_algo_none_uses_default(recwarn):
    best = fmin(quad, SPACE, max_evals=3, rstate=np.random.default_rng(0), show_progressbar=False)
    assert "x" in best
