"""Compare per-test trial counts of hyperopt-sklearn's suite on hpo_mongo with real hyperopt's.

A regression is a test that real hyperopt passes and hpo_mongo fails, or one where real hyperopt
had at least one successful trial and hpo_mongo none, unless every unsuccessful trial of it hit
hyperopt-sklearn's own ``trial_timeout`` (``"TimeOut"``: the machine was too slow, which says nothing
about compatibility; reported, not counted). Prints the table; exits 1 on a regression.
Usage: python compare.py RESULTS.json BASELINE.json
"""
from __future__ import annotations

import json
import sys

#: the failure hyperopt-sklearn records when a trial exceeds its trial_timeout
TIMEOUT = "TimeOut"


def main(results_path: str, baseline_path: str) -> int:
    with open(results_path) as f:
        ours = json.load(f)
    with open(baseline_path) as f:
        base = json.load(f)
    regressions, rows = [], []
    for test in sorted(set(base) | set(ours)):
        b, o = base.get(test), ours.get(test)
        if o is None:
            regressions.append(f"{test}: not run on hpo_mongo")
            continue
        if b is None:
            rows.append((test, "-", f"{o['ok']}/{o['trials']}", o["outcome"], "new test"))
            continue
        note = ""
        if b["outcome"] == "passed" and o["outcome"] == "failed":
            note = "REGRESSION: fails on hpo_mongo: " + o.get("error", "")
        elif b["ok"] > 0 and o["ok"] == 0:
            timed_out = o.get("failures") and all(f == TIMEOUT for f in o["failures"])
            note = ("no successful trial: every trial hit trial_timeout (machine too slow; not counted)"
                    if timed_out else "REGRESSION: no successful trial on hpo_mongo " + str(o.get("failures", [])[:2]))
        elif b["outcome"] == "failed":
            note = "fails on real hyperopt too: " + b.get("error", "")[:80]
        if note.startswith("REGRESSION"):
            regressions.append(f"{test}: {note}")
        rows.append((test, f"{b['ok']}/{b['trials']}", f"{o['ok']}/{o['trials']}", o["outcome"], note))
    width = max(len(r[0]) for r in rows) if rows else 10
    print(f"{'test':<{width}}  hyperopt ok/trials  hpo_mongo ok/trials  outcome  note")
    for test, b, o, outcome, note in rows:
        print(f"{test:<{width}}  {b:>18}  {o:>19}  {outcome:<7}  {note}")
    b_ok = sum(v["ok"] for v in base.values())
    o_ok = sum(v["ok"] for k, v in ours.items() if k in base)
    b_pass = sum(v["outcome"] == "passed" for v in base.values())
    o_pass = sum(v["outcome"] == "passed" for k, v in ours.items() if k in base)
    print(f"\n{len(base)} tests; passed: hyperopt {b_pass}, hpo_mongo {o_pass}; "
          f"successful trials: hyperopt {b_ok}, hpo_mongo {o_ok}")
    if regressions:
        print(f"\n{len(regressions)} regression(s):")
        for r in regressions:
            print("  " + r)
        return 1
    print("no regression against real hyperopt")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
