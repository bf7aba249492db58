"""Pruner decisions on hand-built histories, and the in-memory ReportHistory they read."""
from __future__ import annotations

import math

import numpy as np
import pytest

from hpo_mongo import pruners
from hpo_mongo.exceptions import InvalidParameterError
from hpo_mongo.trials.documents import (JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_RUNNING, STATUS_FAIL,
                                        STATUS_OK, STATUS_PRUNED, new_trial_doc)
from hpo_mongo.trials.memory import Trials
from hpo_mongo.trials.reports import (KIND_COMPLETE, KIND_OTHER, KIND_PRUNED, KIND_RUNNING, ReportHistory,
                                      TrialReports)

NAN, INF = math.nan, math.inf
STATES = {"complete": (JOB_STATE_DONE, STATUS_OK), "pruned": (JOB_STATE_DONE, STATUS_PRUNED),
          "running": (JOB_STATE_RUNNING, "running"), "failed": (JOB_STATE_DONE, STATUS_FAIL),
          "error": (JOB_STATE_ERROR, STATUS_FAIL)}


def build(*trials: tuple[str, list]) -> tuple[Trials, dict[int, dict]]:
    """A Trials whose trial i has the kind and ``[(step, value), ...]`` reports of ``trials[i]``."""
    t = Trials()
    docs = []
    for tid, (kind, reps) in enumerate(trials):
        doc = new_trial_doc(tid, {"x": [0.0]})
        state, status = STATES[kind]
        doc["state"], doc["result"] = state, {"status": status, "loss": reps[-1][1] if reps else None}
        doc["reports"] = [{"step": s, "value": v} for s, v in reps]
        docs.append(doc)
    t._insert_trial_docs(docs)
    t.refresh()
    return t, {d["tid"]: d for d in t.trials}


def me(*reps: tuple[int, float], tid: int = 99) -> TrialReports:
    return TrialReports(tid, np.array([s for s, _ in reps], np.int64), np.array([v for _, v in reps], float))


def complete(values: dict[int, float] | list[float], n: int = 1) -> list[tuple[str, list]]:
    """``n`` complete trials reporting ``values`` ({step: v} or v at steps 0..)."""
    items = values.items() if isinstance(values, dict) else enumerate(values)
    return [("complete", list(items))] * n


# ----------------------------------------------------------------------------- ReportHistory
def test_memory_reports_answer_the_protocol_and_keep_the_first_value_of_a_step():
    t, docs = build(("complete", [(0, 1.0), (2, 0.5)]), ("running", [(1, 3.0)]), ("pruned", [(0, 2.0)]))
    rep = t.reports
    assert isinstance(rep, ReportHistory)
    r = rep.at_step(0)
    assert dict(zip(r.tid.tolist(), r.value.tolist(), strict=True)) == {0: 1.0, 2: 2.0}
    assert dict(zip(r.tid.tolist(), r.kind.tolist(), strict=True)) == {0: KIND_COMPLETE, 2: KIND_PRUNED}
    assert rep.at_step(7).tid.size == 0
    # reached(1): first report at or past step 1, in report order
    r = rep.reached(1)
    assert dict(zip(r.tid.tolist(), r.value.tolist(), strict=True)) == {0: 0.5, 1: 3.0}
    assert rep.record(docs[1], 1, 9.0) is False  # repeated step: ignored, the first value stays
    assert rep.at_step(1).value.tolist() == [3.0]
    assert rep.record(docs[1], 4, 0.25) is True  # the cached reached(1) column sees new reports
    assert sorted(rep.reached(1).value.tolist()) == [0.5, 3.0]
    assert sorted(rep.reached(3).value.tolist()) == [0.25]
    assert rep.completed_at_least(1) and not rep.completed_at_least(2)
    docs[1]["state"], docs[1]["result"] = JOB_STATE_DONE, {"status": STATUS_OK, "loss": 0.25}
    assert rep.completed_at_least(2)
    assert rep.at_step(4).kind.tolist() == [KIND_COMPLETE]


def test_a_new_attempt_starts_without_reports_and_failed_trials_are_kind_other():
    t, docs = build(("running", [(0, 1.0), (1, 0.8)]), ("failed", [(0, 5.0)]), ("error", [(0, 6.0)]))
    rep = t.reports
    assert sorted(rep.at_step(0).kind.tolist()) == [KIND_RUNNING, KIND_OTHER, KIND_OTHER]
    rep.start_attempt(docs[0])
    assert docs[0]["reports"] == []
    assert sorted(rep.at_step(0).tid.tolist()) == [1, 2]
    assert rep.reached(1).tid.size == 0


# ----------------------------------------------------------------------------- median / percentile
def test_median_prunes_above_the_median_of_completed_trials_and_keeps_ties():
    t, _ = build(*complete({0: 1.0, 1: 1.0}), *complete({0: 2.0, 1: 2.0}), *complete({0: 3.0, 1: 3.0}))
    p = pruners.MedianPruner(n_startup_trials=3)
    assert p.prune(me((0, 2.5)), t.reports) is True
    assert p.prune(me((0, 2.0)), t.reports) is False  # equal to the median: goes on
    # the own best so far counts, not the latest value
    assert p.prune(me((0, 1.5), (1, 2.9)), t.reports) is False


def test_median_waits_for_startup_trials_warmup_and_interval():
    t, _ = build(*complete([1.0] * 10, n=3))
    assert pruners.MedianPruner(n_startup_trials=4).prune(me((0, 9.0)), t.reports) is False
    warm = pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)
    assert warm.prune(me((0, 9.0), (1, 9.0)), t.reports) is False
    assert warm.prune(me((0, 9.0), (1, 9.0), (2, 9.0)), t.reports) is True
    # after the warm-up (2), windows of 3 steps: 2..4, 5..7; only the first report in each is checked
    every3 = pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2, interval_steps=3)
    assert every3.prune(me((2, 9.0)), t.reports) is True
    assert every3.prune(me((2, 9.0), (3, 9.0)), t.reports) is False
    assert every3.prune(me((2, 9.0), (3, 9.0), (5, 9.0)), t.reports) is True
    assert every3.prune(me((3, 9.0), (6, 9.0)), t.reports) is True


def test_median_ignores_running_pruned_and_failed_trials_and_needs_n_min_trials():
    t, _ = build(*complete({0: 1.0, 1: 1.0}), ("running", [(0, 0.1), (1, 0.1)]),
                 ("pruned", [(0, 0.1)]), ("failed", [(0, 0.1)]))
    p = pruners.MedianPruner(n_startup_trials=1)
    assert p.prune(me((0, 1.5)), t.reports) is True  # compared with the one completed trial only
    assert p.prune(me((0, 0.9)), t.reports) is False
    strict = pruners.MedianPruner(n_startup_trials=1, n_min_trials=2)
    assert strict.prune(me((0, 1.5)), t.reports) is False


def test_median_with_nan_and_inf_and_trials_with_fewer_steps():
    t, _ = build(*complete({0: 1.0, 1: NAN}), *complete({0: 3.0, 1: 1.0}), *complete({0: 2.0}))
    p = pruners.MedianPruner(n_startup_trials=1)
    assert p.prune(me((0, NAN)), t.reports) is True            # all-NaN own values: pruned
    assert p.prune(me((0, INF)), t.reports) is True
    assert p.prune(me((0, -INF)), t.reports) is False
    # step 1: the NaN value is left out, the trial without step 1 does not count: median = 1.0
    assert p.prune(me((0, 5.0), (1, 1.1)), t.reports) is True
    assert p.prune(me((0, 5.0), (1, 1.0)), t.reports) is False
    # step 3: nobody reported it
    assert p.prune(me((0, 5.0), (3, 5.0)), t.reports) is False
    t2, _ = build(*complete({0: NAN}, n=3))
    assert p.prune(me((0, 5.0)), t2.reports) is False  # no usable value at the step


def test_steps_reported_out_of_order_are_not_checked_again():
    t, _ = build(*complete({0: 1.0, 5: 1.0, 3: 1.0}, n=2))
    p = pruners.MedianPruner(n_startup_trials=1)
    assert p.prune(me((5, 2.0)), t.reports) is True
    assert p.prune(me((5, 2.0), (3, 2.0)), t.reports) is False  # a lower step than an earlier report


def test_percentile_pruner_is_stricter_at_lower_percentiles():
    t, _ = build(*[c for v in (1.0, 2.0, 3.0, 4.0, 5.0) for c in complete({0: v})])
    assert pruners.PercentilePruner(25.0, n_startup_trials=1).prune(me((0, 2.5)), t.reports) is True
    assert pruners.PercentilePruner(75.0, n_startup_trials=1).prune(me((0, 2.5)), t.reports) is False
    assert pruners.PercentilePruner(0.0, n_startup_trials=1).prune(me((0, 1.0)), t.reports) is False


# ----------------------------------------------------------------------------- successive halving
def test_asha_keeps_the_top_fraction_at_a_rung_without_waiting():
    sha = pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2)
    t, _ = build()
    assert sha.prune(me((1, 5.0), tid=0), t.reports) is False  # alone at the rung: goes on
    t, _ = build(("running", [(1, 1.0)]))
    assert sha.prune(me((1, 2.0), tid=1), t.reports) is True   # 2 at the rung, keep 1: the best
    assert sha.prune(me((1, 1.0), tid=1), t.reports) is False  # tie with the best: goes on
    t, _ = build(("complete", [(1, 1.0)]), ("pruned", [(1, 3.0)]), ("failed", [(1, 4.0)]))
    assert sha.prune(me((1, 2.0), tid=3), t.reports) is False  # 4 at the rung, keep 2
    assert sha.prune(me((1, 3.5), tid=3), t.reports) is True


def test_asha_decides_only_when_a_rung_is_reached_and_uses_the_first_report_past_it():
    sha = pruners.SuccessiveHalvingPruner(min_resource=2, reduction_factor=3)  # rungs 2, 6, 18
    t, _ = build(("complete", [(1, 9.0), (3, 1.0), (7, 0.5)]), ("complete", [(2, 1.0), (6, 0.4)]))
    assert sha.prune(me((0, 5.0), (1, 5.0)), t.reports) is False  # below the first rung
    assert sha.prune(me((0, 5.0), (1, 5.0), (2, 5.0)), t.reports) is True
    assert sha.prune(me((2, 0.5), (3, 5.0)), t.reports) is False  # no new rung at step 3
    # a report jumping over rungs 2 and 6 is judged at both (rung 6: 0.45 vs 0.5 and 0.4)
    assert sha.prune(me((0, 9.0), (7, 0.45)), t.reports) is True
    assert sha.prune(me((0, 9.0), (7, 0.3)), t.reports) is False
    # trials with fewer steps than a rung are not at it: alone at rung 18
    assert sha.prune(me((2, 0.1), (6, 0.1), (18, 9.0)), t.reports) is False


def test_asha_nan_and_min_early_stopping_rate():
    sha = pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2, min_early_stopping_rate=2)
    t, _ = build(("running", [(4, NAN)]), ("running", [(4, 1.0)]))
    assert sha.prune(me((3, 9.0)), t.reports) is False          # first rung at 1 * 2**2 = 4
    assert sha.prune(me((4, 2.0)), t.reports) is True           # 3 at the rung, keep 1
    t, _ = build(("running", [(4, NAN)]))
    assert sha.prune(me((4, 2.0)), t.reports) is False          # the NaN trial ranks worst
    assert sha.prune(me((4, NAN)), t.reports) is True           # an own NaN is pruned
    t, _ = build(("running", [(4, 1.0)]), ("running", [(4, 1.0)]), ("running", [(4, 1.0)]))
    assert sha.prune(me((4, 1.0)), t.reports) is False          # ties go on


# ----------------------------------------------------------------------------- hyperband
def test_hyperband_brackets_are_deterministic_and_follow_the_budgets():
    hb = pruners.HyperbandPruner(min_resource=1, max_resource=27, reduction_factor=3)
    assert hb.n_brackets == 4
    tids = np.arange(20000)
    b = hb.bracket_of(tids)
    assert np.array_equal(b, pruners.HyperbandPruner(1, 27, 3).bracket_of(tids))
    share = np.bincount(b, minlength=4) / len(tids)
    budgets = np.array([27, 12, 6, 4]) / 49  # ceil(4 * 3**s / (s + 1)), s = 3..0
    assert np.allclose(share, budgets, atol=0.015)
    assert pruners.HyperbandPruner(1, 1, 3).n_brackets == 1


def test_hyperband_compares_only_within_a_bracket():
    hb = pruners.HyperbandPruner(min_resource=1, max_resource=9, reduction_factor=3)
    b = hb.bracket_of(np.arange(200))
    t0 = int(np.flatnonzero(b == 0)[0])
    same = [int(x) for x in np.flatnonzero(b == 0)[1:3]]
    other = [int(x) for x in np.flatnonzero(b != 0)[:5]]
    reps = [("running", [])] * 200
    reps = list(reps)
    for tid in other:
        reps[tid] = ("running", [(1, 0.1), (3, 0.1), (9, 0.1)])
    t, _ = build(*reps)
    assert hb.prune(me((1, 5.0), tid=t0), t.reports) is False  # better trials, but in other brackets
    for tid in same:
        reps[tid] = ("running", [(1, 0.1)])
    t, _ = build(*reps)
    assert hb.prune(me((1, 5.0), tid=t0), t.reports) is True


# ----------------------------------------------------------------------------- threshold / patient / nop
def test_threshold_pruner():
    t, _ = build()
    p = pruners.ThresholdPruner(lower=0.0, upper=1.0, n_warmup_steps=1)
    assert p.prune(me((0, 5.0)), t.reports) is False  # warm-up
    assert p.prune(me((0, 0.5), (1, 5.0)), t.reports) is True
    assert p.prune(me((0, 0.5), (1, -1.0)), t.reports) is True
    assert p.prune(me((0, 0.5), (1, 1.0)), t.reports) is False
    assert p.prune(me((0, 0.5), (1, NAN)), t.reports) is True
    assert pruners.ThresholdPruner(upper=1.0).prune(me((0, INF)), t.reports) is True
    assert pruners.NopPruner().prune(me((0, NAN)), t.reports) is False


def test_patient_pruner_waits_for_a_plateau_then_asks_the_wrapped_pruner():
    t, _ = build()
    patient = pruners.PatientPruner(None, patience=2)
    assert patient.prune(me((0, 1.0), (1, 1.1), (2, 1.2)), t.reports) is False  # not enough reports
    assert patient.prune(me((0, 1.0), (1, 1.1), (2, 1.2), (3, 1.0)), t.reports) is True  # plateau
    assert patient.prune(me((0, 1.0), (1, 1.1), (2, 1.2), (3, 0.9)), t.reports) is False
    assert pruners.PatientPruner(None, 2, min_delta=0.2).prune(
        me((0, 1.0), (1, 1.1), (2, 1.2), (3, 0.9)), t.reports) is True
    # in step order, whatever the report order; NaN counts as worst
    assert patient.prune(me((3, 0.5), (0, 1.0), (1, NAN), (2, NAN)), t.reports) is False
    wrapped = pruners.PatientPruner(pruners.ThresholdPruner(upper=2.0), patience=1)
    assert wrapped.prune(me((0, 1.0), (1, 1.5), (2, 1.6)), t.reports) is False  # stalled, but below 2
    assert wrapped.prune(me((0, 1.0), (1, 2.5), (2, 2.6)), t.reports) is True


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize("make, name", [
    (lambda: pruners.MedianPruner(n_startup_trials=-1), "n_startup_trials"),
    (lambda: pruners.MedianPruner(n_warmup_steps=1.5), "n_warmup_steps"),
    (lambda: pruners.MedianPruner(interval_steps=0), "interval_steps"),
    (lambda: pruners.MedianPruner(n_min_trials=0), "n_min_trials"),
    (lambda: pruners.PercentilePruner(101.0), "percentile"),
    (lambda: pruners.PercentilePruner(float("nan")), "percentile"),
    (lambda: pruners.SuccessiveHalvingPruner(min_resource=0), "min_resource"),
    (lambda: pruners.SuccessiveHalvingPruner(min_resource="auto"), "min_resource"),
    (lambda: pruners.SuccessiveHalvingPruner(reduction_factor=1), "reduction_factor"),
    (lambda: pruners.SuccessiveHalvingPruner(min_early_stopping_rate=-1), "min_early_stopping_rate"),
    (lambda: pruners.HyperbandPruner(), "max_resource"),
    (lambda: pruners.HyperbandPruner(min_resource=10, max_resource=5), "max_resource"),
    (lambda: pruners.HyperbandPruner(max_resource=9, reduction_factor=True), "reduction_factor"),
    (lambda: pruners.ThresholdPruner(), "lower"),
    (lambda: pruners.ThresholdPruner(lower=2.0, upper=1.0), "lower"),
    (lambda: pruners.ThresholdPruner(upper="1"), "upper"),
    (lambda: pruners.PatientPruner("median", patience=1), "wrapped_pruner"),
    (lambda: pruners.PatientPruner(None, patience=-1), "patience"),
    (lambda: pruners.PatientPruner(None, patience=1, min_delta=-0.1), "min_delta"),
])
def test_bad_parameters_are_refused_naming_them(make, name):
    with pytest.raises(InvalidParameterError, match=f"'{name}'"):
        make()


def test_pruners_are_comparable_picklable_values():
    import pickle
    p = pruners.PatientPruner(pruners.HyperbandPruner(max_resource=27), patience=3)
    q = pickle.loads(pickle.dumps(p))
    assert q == p and repr(q) == repr(p)
    assert "max_resource=27" in repr(p)
    assert pruners.MedianPruner() != pruners.MedianPruner(n_startup_trials=1)
