"""Golden suggestions of ``tpe.suggest``: fixed seeds and histories must give the recorded vals.

Guards refactors of the TPE package: any change of the numbers (order of random draws,
bandwidths, scoring, the good/bad split) shows up here. The cases cover every bench domain
(conditional spaces and all twelve hp kinds included), the joint and univariate models, pending
trials with and without the constant liar, failed / errored trials, ties in the losses,
merged components and subsampling, several ids per call and a sequential loop with pending
trials (the incremental history caches).

The fixture is ``tests/tpe_golden.json``. Regenerate it only for a deliberate change of the
algorithm's output: ``python -m tests.test_tpe_golden --write``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.domains import DOMAINS
from hpo_mongo import Domain, Trials, hp, tpe, trials_from_docs
from hpo_mongo.trials.documents import (JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_NEW, JOB_STATE_RUNNING,
                                        new_trial_doc)

FIXTURE = Path(__file__).with_name("tpe_golden.json")


def _domain(name: str) -> tuple[Domain, Any]:
    bd = DOMAINS[name]
    return Domain(lambda c: 0.0, bd.space(hp)), bd


def _history(name: str, n: int, seed: int, *, n_pending: int = 0, failed: bool = False,
             ties: bool = False) -> tuple[Domain, Trials]:
    """``n`` random finished trials of a bench domain (every 7th failed and every 11th errored
    when ``failed``; losses rounded to one decimal when ``ties``), then ``n_pending`` RUNNING /
    NEW ones."""
    domain, bd = _domain(name)
    rng = np.random.default_rng(seed)
    noise = np.random.default_rng(seed + 1)
    docs = []
    for tid, row in enumerate(domain.space.sample(rng, n + n_pending)):
        vals = domain.space.row_to_vals(row)
        d = new_trial_doc(tid, vals)
        if tid >= n:
            d["state"] = JOB_STATE_RUNNING if tid % 2 else JOB_STATE_NEW
        elif failed and tid % 7 == 3:
            d.update(state=JOB_STATE_DONE, result={"status": "fail"})
        elif failed and tid % 11 == 5:
            d.update(state=JOB_STATE_ERROR, result={"status": "fail"})
        else:
            loss = float(bd.objective(domain.config({k: v[0] for k, v in vals.items() if v}), noise))
            loss = round(loss, 1) if ties else loss
            d.update(state=JOB_STATE_DONE, result={"status": "ok", "loss": loss})
        docs.append(d)
    return domain, trials_from_docs(docs)


def _vals(docs: list[dict]) -> list[dict]:
    return [d["misc"]["vals"] for d in docs]


def _loop(name: str, n_evals: int, n_pending: int, seed: int, **opts: Any) -> list[dict]:
    """Suggest one at a time with ``n_pending`` trials outstanding (finish the oldest)."""
    domain, bd = _domain(name)
    trials = Trials()
    noise = np.random.default_rng(seed + 1)
    queue: list[dict] = []
    made: list[dict] = []
    while len(made) < n_evals or queue:
        if len(made) < n_evals:
            docs = tpe.suggest(trials.new_trial_ids(1), domain, trials, 1000 * seed + len(made), **opts)
            trials.insert_trial_docs(docs)
            trials.refresh()
            doc = trials.trials[-1]
            queue.append(doc)
            made.append(doc)
        if len(queue) > n_pending or len(made) >= n_evals:
            doc = queue.pop(0)
            vals = {k: v[0] for k, v in doc["misc"]["vals"].items() if v}
            doc.update(state=JOB_STATE_DONE,
                       result={"status": "ok", "loss": float(bd.objective(domain.config(vals), noise))})
            trials.refresh()
    return _vals(made)


def _cases() -> dict[str, Any]:
    """Every recorded case: name → suggested vals (computed by the current code)."""
    out: dict[str, Any] = {}
    for name in DOMAINS:
        for mv in (True, False):
            for pend, failed in ((0, False), (3, True)):
                domain, trials = _history(name, 40, seed=len(name), n_pending=pend, failed=failed)
                key = f"{name}/mv={mv}/pending={pend}/failed={failed}"
                out[key] = _vals(tpe.suggest([1000, 1001], domain, trials, 5, multivariate=mv))
    variants: dict[str, dict] = {
        "no_liar": {"constant_liar": False},
        "hyperopt_gamma": {"gamma": 0.25, "n_EI_candidates": 24},
        "gamma_fn": {"gamma": lambda n: 3},
        "small_components": {"max_components": 8},
        "optuna_cat_prior": {"cat_prior_per_option": False, "prior_weight": 0.5},
        "liar_plain_gap": {"liar_bandwidth": 0.0, "liar_weight": 2.0},
        "short_forgetting": {"linear_forgetting": 5},
        "startup": {"n_startup_jobs": 100},
    }
    for vname, opts in variants.items():
        for name in ("many_dists", "conditional", "mixed10", "q1_lognormal"):
            for mv in (True, False):
                domain, trials = _history(name, 60, seed=3, n_pending=2, failed=True)
                out[f"{vname}/{name}/mv={mv}"] = _vals(
                    tpe.suggest([1000, 1001, 1002], domain, trials, 17, multivariate=mv, **opts))
    for name in ("mixed10", "conditional", "branin", "gauss_wave2"):
        for mv in (True, False):
            # above max_components (merging, subsampling) and the 100-trial bandwidth floor
            for seed in (4, 5):
                domain, trials = _history(name, 300, seed=seed, n_pending=2 * (seed - 4), failed=True)
                out[f"large/{name}/mv={mv}/{seed}"] = _vals(
                    tpe.suggest(list(range(1000, 1004)), domain, trials, 23, multivariate=mv))
    for name in ("mixed10", "conditional", "many_dists", "hartmann6"):
        for mv in (True, False):
            # ties in the losses inside the good group
            domain, trials = _history(name, 50, seed=6, ties=True)
            out[f"ties/{name}/mv={mv}"] = _vals(tpe.suggest([1000], domain, trials, 29, multivariate=mv,
                                                             gamma=lambda n: 12))
    for name in ("mixed10", "conditional", "many_dists"):
        for mv in (True, False):
            out[f"loop/{name}/mv={mv}"] = _loop(name, 30, 3, seed=2, multivariate=mv, n_startup_jobs=5)
    return out


@pytest.fixture(autouse=True)
def _raise_on_numeric_warnings():
    old = np.seterr(all="raise", under="ignore")
    yield
    np.seterr(**old)


def test_suggestions_match_the_recorded_ones():
    expected = json.loads(FIXTURE.read_text())
    got = json.loads(json.dumps(_cases()))
    assert sorted(got) == sorted(expected)
    differ = [k for k in expected if got[k] != expected[k]]
    assert not differ, f"{len(differ)} of {len(expected)} cases differ, e.g. {differ[:5]}"


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.test_tpe_golden --write")
    old = np.seterr(all="raise", under="ignore")
    FIXTURE.write_text(json.dumps(_cases(), sort_keys=True, separators=(",", ":")) + "\n")
    print(f"wrote {FIXTURE}")
