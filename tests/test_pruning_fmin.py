"""End-to-end pruning with fmin and in-memory Trials; report()'s input rules; samplers and pruned trials."""
from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from hpo_mongo import (STATUS_OK, AllTrialsFailed, STATUS_PRUNED, NoCurrentTrial, Trials, TrialPruned, anneal, fmin,
                       hp, pruners, rand, report, should_prune, tpe)
from hpo_mongo.algos.base import history, rank_pruned
from hpo_mongo.exceptions import InvalidParameterError
from hpo_mongo.trials.documents import JOB_STATE_DONE, JOB_STATE_ERROR

SPACE = {"x": hp.uniform("x", -3, 3)}


def curve(params):
    """Loss x² + 1/(step+1), reported at steps 0..9."""
    x = params["x"]
    for step in range(10):
        value = x * x + 1.0 / (step + 1)
        report(value, step)
    return value


def run(fn=curve, pruner=None, n=40, **kw):
    trials = Trials()
    fmin(fn, SPACE, algo=kw.pop("algo", tpe.suggest), max_evals=n, trials=trials, pruner=pruner,
         rstate=np.random.default_rng(kw.pop("seed", 0)), show_progressbar=kw.pop("show_progressbar", False), **kw)
    return trials


def test_pruned_trials_end_done_with_their_last_value_and_step():
    trials = run(pruner=pruners.MedianPruner(n_startup_trials=3))
    assert len(trials.trials) == 40  # pruned trials count toward max_evals
    pruned = [t for t in trials.trials if t["result"]["status"] == STATUS_PRUNED]
    done = [t for t in trials.trials if t["result"]["status"] == STATUS_OK]
    assert pruned and done
    for t in pruned:
        assert t["state"] == JOB_STATE_DONE
        last = t["reports"][-1]
        assert t["result"]["loss"] == last["value"] and t["result"]["pruned_step"] == last["step"] < 9
    for t in done:
        assert [r["step"] for r in t["reports"]] == list(range(10))
    assert trials.best_trial["result"]["status"] == STATUS_OK  # pruned trials never win
    best_x = trials.best_trial["misc"]["vals"]["x"][0]
    assert all(t["misc"]["vals"]["x"][0] ** 2 >= best_x ** 2 for t in done)


def test_without_a_pruner_report_records_and_never_stops():
    trials = run(n=5)
    assert all(t["result"]["status"] == STATUS_OK and len(t["reports"]) == 10 for t in trials.trials)


def test_asha_and_hyperband_prune_and_save_steps():
    for pruner in (pruners.SuccessiveHalvingPruner(reduction_factor=3),
                   pruners.HyperbandPruner(max_resource=9, reduction_factor=3)):
        trials = run(pruner=pruner, n=60)
        n_steps = sum(len(t["reports"]) for t in trials.trials)
        assert any(t["result"]["status"] == STATUS_PRUNED for t in trials.trials)
        assert n_steps < 0.7 * 60 * 10, pruner


def test_early_stop_fn_and_progress_count_pruned_trials():
    seen = []

    def stop(trials, *args):
        seen.append(sum(t["result"]["status"] == STATUS_PRUNED for t in trials.trials))
        return False, args

    updates = []

    class Bar:
        def __init__(self, initial, total):
            self.n = initial

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n):
            updates.append(n)

    run(pruner=pruners.MedianPruner(n_startup_trials=2), n=20, early_stop_fn=stop, show_progressbar=Bar)
    assert max(seen) > 0
    assert sum(updates) == 20


def test_should_prune_lets_the_objective_clean_up_and_raise_itself():
    cleaned = []

    def objective(params):
        for step in range(10):
            report(params["x"] ** 2 + 1.0 / (step + 1), step, raise_pruned=False)
            if should_prune():
                cleaned.append(step)
                raise TrialPruned()
        return params["x"] ** 2 + 0.1

    trials = run(objective, pruner=pruners.MedianPruner(n_startup_trials=2), n=25)
    pruned = [t for t in trials.trials if t["result"]["status"] == STATUS_PRUNED]
    assert len(cleaned) == len(pruned) > 0
    assert sorted(t["result"]["pruned_step"] for t in pruned) == sorted(cleaned)


def test_ctrl_report_for_pass_expr_memo_ctrl_objectives():
    def objective(expr, memo, ctrl):
        x = memo["x"][0]
        for step in range(5):
            ctrl.report(abs(x) + 1.0 / (step + 1), step)
        assert ctrl.should_prune() is False
        return abs(x)

    trials = run(objective, pruner=pruners.ThresholdPruner(upper=2.0), n=15, pass_expr_memo_ctrl=True)
    for t in trials.trials:
        x = abs(t["misc"]["vals"]["x"][0])
        assert (t["result"]["status"] == STATUS_PRUNED) == (x + 1.0 > 2.0)


def test_a_trial_pruned_without_reports_and_a_nan_report():
    def objective(params):
        if params["x"] > 0:
            raise TrialPruned()
        report(float("nan"), 0)  # a diverged loss: NaN is accepted, and ThresholdPruner stops it
        return 1.0

    trials = Trials()
    with pytest.raises(AllTrialsFailed):  # every trial was pruned: no best trial to return
        fmin(objective, SPACE, algo=rand.suggest, max_evals=10, trials=trials, show_progressbar=False,
             pruner=pruners.ThresholdPruner(upper=10.0), rstate=np.random.default_rng(0))
    assert len(trials.trials) == 10
    for t in trials.trials:
        assert t["result"]["status"] == STATUS_PRUNED and t["result"]["loss"] is None
        assert t["result"]["pruned_step"] == (None if t["misc"]["vals"]["x"][0] > 0 else 0)


def test_repeated_step_keeps_the_first_value(caplog):
    def objective(params):
        report(1.0, 0)
        report(5.0, 0)
        report(2.0, 1)
        return 2.0

    trials = run(objective, n=1)
    assert trials.trials[0]["reports"] == [{"step": 0, "value": 1.0}, {"step": 1, "value": 2.0}]
    assert "reported step 0 again" in caplog.text


@pytest.mark.parametrize("value, step, match", [
    ("0.5", 0, "'value' parameter of report must be a real number"),
    (None, 0, "'value'"),
    (True, 0, "'value'"),
    (1 + 2j, 0, "'value'"),
    (0.5, -1, "'step' parameter of report must be an int in the range \\[0, inf\\)"),
    (0.5, 1.5, "'step'"),
    (0.5, 2.0, "'step'"),
    (0.5, "3", "'step'"),
])
def test_bad_report_input_fails_the_trial_with_a_clear_error(value, step, match):
    def objective(params):
        report(value, step)
        return 1.0

    with pytest.raises(InvalidParameterError, match=match):
        run(objective, n=1)
    trials = Trials()
    with pytest.raises(AllTrialsFailed):
        fmin(objective, SPACE, algo=rand.suggest, max_evals=2, trials=trials, show_progressbar=False,
             catch_eval_exceptions=True)
    assert [t["state"] for t in trials.trials] == [JOB_STATE_ERROR] * 2
    assert "InvalidParameterError" in trials.trials[0]["result"]["failure"]


def test_numpy_and_torch_like_values_are_accepted():
    class Scalar:
        def __float__(self):
            return 0.25

    def objective(params):
        report(np.float32(0.5), np.int64(0))
        report(np.array([0.4]), 1)
        report(Scalar(), 2)
        report(float("inf"), 3)
        return 0.1

    trials = run(objective, n=1)
    assert [r["value"] for r in trials.trials[0]["reports"]] == [0.5, pytest.approx(0.4), 0.25, math.inf]


def test_report_outside_a_trial_raises_a_clear_error():
    with pytest.raises(NoCurrentTrial, match="outside a trial"):
        report(0.5, 0)
    with pytest.raises(NoCurrentTrial):
        should_prune()


def test_fmin_validates_the_pruner():
    with pytest.raises(InvalidParameterError, match="'pruner' parameter of fmin must be"):
        run(n=1, pruner="median")


def test_an_interrupted_trial_reruns_with_fresh_reports(tmp_path):
    calls = []

    def objective(params):
        calls.append(1)
        report(1.0, 0)
        if len(calls) == 1:
            raise KeyboardInterrupt
        report(0.5, 1)
        return 0.5

    path = str(tmp_path / "trials.pkl")
    trials = Trials()
    with pytest.raises(KeyboardInterrupt):
        fmin(objective, SPACE, algo=rand.suggest, max_evals=1, trials=trials, show_progressbar=False,
             rstate=np.random.default_rng(0))
    trials = pickle.loads(pickle.dumps(trials))  # as resumed from trials_save_file
    fmin(objective, SPACE, algo=rand.suggest, max_evals=1, trials=trials, show_progressbar=False,
         rstate=np.random.default_rng(0), trials_save_file=path)
    assert trials.trials[0]["reports"] == [{"step": 0, "value": 1.0}, {"step": 1, "value": 0.5}]
    assert trials.reports.at_step(0).tid.tolist() == [0]


# ----------------------------------------------------------------------------- samplers
def test_history_ranks_pruned_trials_after_complete_ones():
    trials = run(pruner=pruners.MedianPruner(n_startup_trials=3))
    from hpo_mongo.domain import Domain
    h = history(Domain(curve, SPACE).space, trials)
    assert h.pruned.any() and (h.ok & h.pruned).sum() == h.pruned.sum()
    assert np.nanmax(h.loss[h.complete]) < np.nanmin(h.loss[h.pruned])
    steps = np.array([t["result"].get("pruned_step", -2) for t in trials.trials])
    order = np.argsort(h.loss[h.pruned])
    assert np.all(np.diff(steps[h.pruned][order]) <= 0)  # further first


def test_rank_pruned_rules():
    loss = np.array([0.5, 0.9, 0.3, 0.2, np.nan, 0.1, np.nan])
    pruned = np.array([0, 0, 1, 1, 1, 0, 0], bool)
    step = np.array([-2, -2, 3, 5, 5, -2, -2])
    after = rank_pruned(loss, pruned, step, "after_complete")
    assert np.argsort(after)[:6].tolist() == [5, 0, 1, 3, 4, 2] and np.isnan(after[6])
    by_value = rank_pruned(loss, pruned, step, "by_value")
    assert by_value[2] == 0.3 and by_value[4] == math.inf
    assert np.isnan(rank_pruned(loss, pruned, step, "ignore")[pruned]).all()


def test_anneal_and_rand_ignore_pruned_trials():
    for algo in (anneal.suggest, rand.suggest):
        trials = run(pruner=pruners.MedianPruner(n_startup_trials=2), n=25, algo=algo)
        assert trials.best_trial["result"]["status"] == STATUS_OK
    from hpo_mongo.domain import Domain
    h = history(Domain(curve, SPACE).space, trials)
    assert not (h.complete & h.pruned).any()


def test_any_reporter_plugs_into_evaluate_trial():
    """The seam the worker and the forked child use: their own Reporter, the same evaluate_trial."""
    from hpo_mongo.domain import Domain
    from hpo_mongo.reporting import LocalReporter, ReportLedger, Reporter, evaluate_trial

    class StopAtTwo:  # e.g. a child that asks its worker over a pipe
        def __init__(self):
            self.ledger = ReportLedger(7)

        def report(self, value, step):
            self.ledger.add(step, value)
            self.ledger.decision = step >= 2
            return self.ledger.decision

        @property
        def should_prune(self):
            return self.ledger.decision

        @property
        def reports(self):
            return self.ledger.reports

    reporter = StopAtTwo()
    assert isinstance(reporter, Reporter)
    assert isinstance(LocalReporter(Trials().reports, {"tid": 0}, pruners.NopPruner()), Reporter)
    result, attachments = evaluate_trial(Domain(curve, SPACE), {"x": [0.5]}, None, reporter)
    assert result == {"status": STATUS_PRUNED, "loss": 0.25 + 1.0 / 3, "pruned_step": 2}
    assert reporter.reports.step.tolist() == [0, 1, 2] and attachments == {}
    with pytest.raises(NoCurrentTrial):  # the reporter is current only during the evaluation
        report(1.0, 0)
