"""Chaos soak (issue 5, benchmark b): kill -9 workers and the driver while an experiment runs.

A driver (fmin + MongoTrials, rand.suggest, a ~10 ms objective) and 8 workers run 2 000 trials
while a loop kill -9s a random worker every few seconds and starts a replacement, and kills -9
and restarts the driver once (at ~40 % of the trials). At the end:

- completed: DONE trials (must be exactly --trials);
- lost: trials without a result (left NEW/RUNNING, or ERROR "lost N times") — must be 0;
- evaluated twice: trials whose objective ran more than once (a worker killed after the objective
  ran but before its result was written: the lease rules requeue it, another worker runs it again);
- requeued: times a trial went back to NEW by the lease rules (sum of ``requeues``);
- duplicate tids (must be 0), domains in GridFS (must be 1), wall time.

Uses the java test server (scripts/test-server, 127.0.0.1 only) unless --mongo is given.

    python bench/chaos.py [--trials 2000] [--workers 8] [--kill-every 3] [--seed 0]
"""
from __future__ import annotations

import argparse
import collections
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from throughput import REPO, child_env, mongo, start_worker, stop, test_server  # noqa: E402

DRIVER = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    from hpo_mongo import fmin, hp, rand
    from hpo_mongo.trials.mongo.store import MongoTrials

    EVAL_LOG = sys.argv[4]

    def objective(cfg):
        time.sleep(0.01)
        fd = os.open(EVAL_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (repr(cfg["x"]) + "\\n").encode())
        finally:
            os.close(fd)
        return (cfg["x"] - 1.0) ** 2

    url, exp_key, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    trials = MongoTrials(url, exp_key=exp_key, poll_interval=0.05)
    fmin(objective, {"x": hp.uniform("x", -5, 5)}, algo=rand.suggest, max_evals=n, trials=trials,
         show_progressbar=False, rstate=np.random.default_rng(int(time.time() * 1000) % 2**31))
    print("DRIVER DONE", flush=True)
""")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mongo", default=None, help="server base URL (default: start the java test server)")
    ap.add_argument("--trials", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--kill-every", type=float, default=3.0, help="mean seconds between worker kills")
    ap.add_argument("--heartbeat", type=float, default=0.5)
    ap.add_argument("--stale", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--logdir", default=str(REPO / "bench" / "out" / "chaos"))
    args = ap.parse_args()
    rnd = random.Random(args.seed)
    logdir = Path(args.logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    evals = logdir / "evals.txt"
    evals.unlink(missing_ok=True)
    script = logdir / "chaos_driver.py"
    script.write_text(DRIVER)
    wargs = ["--poll-interval", "0.05", "--heartbeat-interval", str(args.heartbeat),
             "--stale-timeout", str(args.stale), "--log-level", "WARNING"]
    print(f"host: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; {args.trials} trials, "
          f"{args.workers} workers, heartbeat {args.heartbeat} s, stale {args.stale} s")

    with test_server(args.mongo) as server:
        url = f"{server}/bench_chaos_{uuid.uuid4().hex[:8]}"
        client, db = mongo(url)
        n_worker_logs = 0

        def new_worker():
            nonlocal n_worker_logs
            n_worker_logs += 1
            return start_worker(url, *wargs, log=logdir / f"worker-{n_worker_logs}.log")

        def new_driver(i):
            out = open(logdir / f"driver-{i}.log", "wb")
            return subprocess.Popen([sys.executable, str(script), url, "chaos", str(args.trials), str(evals)],
                                    stdout=out, stderr=subprocess.STDOUT, env=child_env(), cwd=str(logdir))

        t0 = time.monotonic()
        driver = new_driver(1)
        workers = [new_worker() for _ in range(args.workers)]
        kills = 0
        driver_restarted = False
        next_kill = time.monotonic() + rnd.uniform(0.5, 1.5) * args.kill_every
        try:
            while driver.poll() is None or not driver_restarted:
                if time.monotonic() - t0 > args.timeout:
                    raise SystemExit(f"timeout after {args.timeout}s")
                done = db.jobs.count_documents({"exp_key": "chaos", "state": 2})
                if not driver_restarted and (done >= 0.4 * args.trials or driver.poll() is not None):
                    if driver.poll() is None:
                        driver.kill()
                        driver.wait()
                    print(f"[{time.monotonic() - t0:6.1f}s] driver killed (-9) at {done} DONE; restarting it")
                    driver = new_driver(2)
                    driver_restarted = True
                if time.monotonic() >= next_kill:
                    i = rnd.randrange(len(workers))
                    victim = workers[i]
                    victim.kill()
                    victim.wait()
                    kills += 1
                    workers[i] = new_worker()
                    next_kill = time.monotonic() + rnd.uniform(0.5, 1.5) * args.kill_every
                time.sleep(0.1)
            wall = time.monotonic() - t0
            driver_rc = driver.returncode
        finally:
            stop(workers)
            if driver.poll() is None:
                driver.kill()

        docs = list(db.jobs.find({"exp_key": "chaos"}, {"tid": 1, "state": 1, "requeues": 1, "error": 1,
                                                       "misc.vals": 1, "attempt": 1}))
        states = collections.Counter(d["state"] for d in docs)
        tids = [d["tid"] for d in docs]
        lost_errors = [d for d in docs if d["state"] == 3 and "lost" in ((d.get("error") or {}).get("message") or "")]
        lost = states.get(0, 0) + states.get(1, 0) + len(lost_errors)
        xs = collections.Counter(evals.read_text().split()) if evals.exists() else collections.Counter()
        twice = sum(1 for c in xs.values() if c > 1)
        domains = db["fs.files"].count_documents({"filename": {"$regex": "^domain/"}})
        result = {
            "trials": args.trials, "completed": states.get(2, 0), "errors": states.get(3, 0),
            "cancelled": states.get(4, 0), "lost": lost, "evaluated_twice": twice,
            "evaluations": sum(xs.values()), "requeued": sum(d.get("requeues") or 0 for d in docs),
            "max_attempt": max((d.get("attempt") or 0) for d in docs) if docs else 0,
            "duplicate_tids": len(tids) - len(set(tids)), "domains": domains,
            "worker_kills": kills, "driver_restarts": 1 if driver_restarted else 0,
            "driver_exit": driver_rc, "wall_s": round(wall, 1),
        }
        client.drop_database(url.rsplit("/", 1)[1])
        client.close()
    print("| " + " | ".join(result) + " |")
    print("|" + "---|" * len(result))
    print("| " + " | ".join(str(v) for v in result.values()) + " |")
    ok = (result["completed"] == args.trials and result["lost"] == 0 and result["duplicate_tids"] == 0
          and result["domains"] == 1 and driver_rc == 0)
    print("OK" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
