"""pytest plugin: per test, how many trials fmin ran and how many succeeded (DONE, status ok).

Used by scripts/test-hyperopt-sklearn with real hyperopt and with hpo_mongo alike: it wraps
``hyperopt.fmin`` to remember the Trials objects each test used, gives every fmin call that
passes no ``rstate`` a seed derived from the test and the call number (so both runs are
reproducible; ``$COUNT_TRIALS_SALT`` changes the seeds), and writes
``{nodeid: {outcome, trials, ok, failures}}`` as JSON to $COUNT_TRIALS_OUT (``failures``: why the
first unsuccessful trials failed, e.g. hyperopt-sklearn's ``"TimeOut"``).
"""
from __future__ import annotations

import functools
import json
import os
import zlib

import numpy as np
import pytest

_results: dict = {}
_current: dict = {"nodeid": None, "trials": [], "calls": 0}


def _count(trials_list) -> tuple[int, int, list[str]]:
    seen, total, ok, failures = set(), 0, 0, []
    for trials in trials_list:
        if id(trials) in seen:
            continue
        seen.add(id(trials))
        for t in getattr(trials, "_dynamic_trials", None) or trials.trials:
            total += 1
            result = t.get("result") or {}
            if t.get("state") == 2 and result.get("status") == "ok":
                ok += 1
            else:
                failures.append(str(result.get("failure") or (t.get("misc") or {}).get("error") or result)[:200])
    return total, ok, failures


def pytest_configure(config):
    import hyperopt

    real_fmin = hyperopt.fmin

    @functools.wraps(real_fmin)
    def fmin(fn, space, *args, **kwargs):
        trials = kwargs.get("trials")
        if trials is not None:
            _current["trials"].append(trials)
        if kwargs.get("rstate") is None and len(args) < 6:
            _current["calls"] += 1
            salt = os.environ.get("COUNT_TRIALS_SALT", "")
            seed = zlib.crc32(f"{salt}{_current['nodeid']}#{_current['calls']}".encode())
            kwargs["rstate"] = np.random.default_rng(seed)
        return real_fmin(fn, space, *args, **kwargs)

    hyperopt.fmin = fmin


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _current.update(nodeid=item.nodeid, trials=[], calls=0)
    yield
    total, ok, failures = _count(_current["trials"])
    _results.setdefault(item.nodeid, {}).update(trials=total, ok=ok, failures=failures[:5])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    entry = _results.setdefault(item.nodeid, {"outcome": "passed"})
    if report.failed:
        entry["outcome"] = "failed"
        entry["error"] = str(report.longrepr).strip().splitlines()[-1][:300] if report.longrepr else ""
    elif report.skipped and entry.get("outcome") != "failed":
        entry["outcome"] = "skipped"


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("COUNT_TRIALS_OUT")
    if path:
        with open(path, "w") as f:
            json.dump(_results, f, indent=1, sort_keys=True)
