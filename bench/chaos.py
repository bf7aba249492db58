"""Chaos soak: kill -9 workers and the driver, freeze workers past their lease, restart the server —
while an experiment runs — then check that every trial was recorded once and correctly.

A driver (fmin + MongoTrials, rand.suggest, a ~10 ms objective) and ``--workers`` workers run
``--trials`` trials while the soak, all at once:

- kills (-9) a random worker every ``--kill-every`` s on average and starts a replacement;
- kills (-9) the driver once, at 40 % of the trials, and starts the same script again;
- freezes a random worker (SIGSTOP) ``--freezes`` times, every ``--freeze-every`` s on average, for
  1.5-2.5 lease lengths — long enough for its trial to be requeued and evaluated elsewhere — then
  resumes it (SIGCONT): it must write nothing for that trial, attachments included;
- stops the server cleanly (SIGTERM) and starts it again on the same port ``--server-restarts``
  times, evenly spread over the run. The server is the java test server with its persistent H2
  backend (tests/server_process.py), so a clean restart loses nothing. (kill -9 of the server is
  for the driver's detection tests only: H2 then loses its last writes.)

The objective records each evaluation (tid, pid, attempt, a random tag) in a log file and returns
the tag both in its result and as the trial attachment ``tag``. At the end the soak reports:

- completed: DONE trials (must be exactly --trials);
- lost: trials without a result (left NEW/RUNNING, or ERROR "lost N times") — must be 0;
- evaluated twice: trials whose objective ran more than once (a worker killed or frozen after the
  objective ran but before its result was written: at-least-once evaluation) — allowed;
- wrong attachments: DONE trials whose ``tag`` attachment (read with ``trial_attachments``) is
  missing or is not the one of the evaluation whose result was recorded — must be 0;
- hangs: 1 if the last driver did not finish within ``--deadline`` s (it is then killed) — must be 0;
- duplicate tids (must be 0), domains in GridFS (must be 1), requeued, errors, wall time.

``--mongo URL`` uses your server instead (then without the server-restart phase).

    python bench/chaos.py [--trials 2000] [--workers 8] [--kill-every 3] [--freezes 10]
                          [--server-restarts 2] [--seed 0]
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
from throughput import REPO, child_env, mongo, start_worker, stop  # noqa: E402

sys.path.insert(0, str(REPO))
from tests.server_process import ServerProcess  # noqa: E402

EXP_KEY = "chaos"

DRIVER = textwrap.dedent("""
    import os, sys, time, uuid
    import numpy as np
    from hpo_mongo import fmin, hp, rand
    from hpo_mongo.trials.mongo.store import MongoTrials

    EVAL_LOG = sys.argv[4]

    def objective(expr, memo, ctrl):
        x = memo["x"][0]
        trial = ctrl.current_trial
        tag = f"{os.getpid()}:{trial.get('attempt')}:{uuid.uuid4().hex[:12]}"
        time.sleep(0.01)
        fd = os.open(EVAL_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{trial['tid']} {tag} {x!r}\\n".encode())
        finally:
            os.close(fd)
        return {"loss": (x - 1.0) ** 2, "status": "ok", "tag": tag, "attachments": {"tag": tag.encode()}}

    url, exp_key, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    trials = MongoTrials(url, exp_key=exp_key, poll_interval=0.05)
    fmin(objective, {"x": hp.uniform("x", -5, 5)}, algo=rand.suggest, max_evals=n, trials=trials,
         show_progressbar=False, rstate=np.random.default_rng(int(time.time() * 1000) % 2**31),
         pass_expr_memo_ctrl=True)
    print("DRIVER DONE", flush=True)
""")


def _log(t0: float, msg: str) -> None:
    print(f"[{time.monotonic() - t0:6.1f}s] {msg}", flush=True)


def _signal(p: subprocess.Popen, sig: int) -> None:
    if p.poll() is None:
        try:
            p.send_signal(sig)
        except ProcessLookupError:
            pass


def check(db, url: str, n_trials: int, evals: Path) -> dict:
    """The soak's figures from the database and the evaluation log (see the module docstring)."""
    from hpo_mongo.trials.mongo.store import MongoTrials
    docs = list(db.jobs.find({"exp_key": EXP_KEY}))
    states = collections.Counter(d["state"] for d in docs)
    tids = [d["tid"] for d in docs]
    lost_errors = [d for d in docs if d["state"] == 3 and "lost" in ((d.get("error") or {}).get("message") or "")]
    runs = collections.Counter()
    if evals.exists():
        for line in evals.read_text().splitlines():
            if line.strip():
                runs[int(line.split()[0])] += 1
    view = MongoTrials(url, exp_key=EXP_KEY, refresh=False)
    wrong = 0
    for d in docs:
        if d["state"] != 2:
            continue
        try:
            stored = view.trial_attachments(d)["tag"].decode()
        except KeyError:
            stored = None
        wrong += stored != d["result"].get("tag")
    return {
        "trials": n_trials, "completed": states.get(2, 0),
        "lost": states.get(0, 0) + states.get(1, 0) + len(lost_errors),
        "evaluated_twice": sum(1 for c in runs.values() if c > 1), "wrong_attachments": wrong,
        "duplicate_tids": len(tids) - len(set(tids)), "evaluations": sum(runs.values()),
        "requeued": sum(d.get("requeues") or 0 for d in docs), "errors": states.get(3, 0),
        "cancelled": states.get(4, 0),
        "domains": db["fs.files"].count_documents({"filename": {"$regex": "^domain/"}}),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mongo", default=None, help="server base URL (default: start the java test server, H2)")
    ap.add_argument("--trials", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--kill-every", type=float, default=3.0, help="mean seconds between worker kills (0: none)")
    ap.add_argument("--freezes", type=int, default=10, help="workers frozen (SIGSTOP) past their lease")
    ap.add_argument("--freeze-every", type=float, default=4.0, help="mean seconds between freezes")
    ap.add_argument("--server-restarts", type=int, default=2, help="clean server restarts on the same port")
    ap.add_argument("--heartbeat", type=float, default=0.5)
    ap.add_argument("--stale", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--deadline", type=float, default=1800, help="seconds the driver has to finish")
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
    restarts_at = [] if args.mongo else [(i + 1) / (args.server_restarts + 1) for i in range(args.server_restarts)]
    print(f"host: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; {args.trials} trials, "
          f"{args.workers} workers, heartbeat {args.heartbeat} s, stale {args.stale} s, "
          f"{args.freezes} freezes, {len(restarts_at)} server restarts")

    server = None
    if args.mongo:
        base = args.mongo.rstrip("/")
    else:
        h2 = logdir / "chaos.mv"
        h2.unlink(missing_ok=True)
        server = ServerProcess(h2_file=h2, log_dir=logdir / "server").start()
        base = server.url
    url = f"{base}/bench_chaos_{uuid.uuid4().hex[:8]}"
    client, db = mongo(url)
    n_logs = 0

    def new_worker() -> subprocess.Popen:
        nonlocal n_logs
        n_logs += 1
        return start_worker(url, *wargs, log=logdir / f"worker-{n_logs}.log")

    def new_driver(i: int) -> subprocess.Popen:
        out = open(logdir / f"driver-{i}.log", "wb")
        return subprocess.Popen([sys.executable, str(script), url, EXP_KEY, str(args.trials), str(evals)],
                                stdout=out, stderr=subprocess.STDOUT, env=child_env(), cwd=str(logdir))

    t0 = time.monotonic()
    driver = new_driver(1)
    workers = [new_worker() for _ in range(args.workers)]
    frozen: dict[int, float] = {}  # index in workers -> monotonic time to resume it
    kills = freezes = restarts = 0
    driver_restarted = False
    hang = False
    done = 0
    now = time.monotonic()
    next_kill = now + rnd.uniform(0.5, 1.5) * args.kill_every if args.kill_every > 0 else float("inf")
    next_freeze = now + rnd.uniform(0.5, 1.5) * args.freeze_every if args.freezes > 0 else float("inf")
    try:
        while driver.poll() is None or not driver_restarted:
            now = time.monotonic()
            if now - t0 > args.deadline:
                hang = True
                _log(t0, f"HANG: the driver did not finish within {args.deadline:g} s ({done} DONE); killing it")
                break
            try:
                done = db.jobs.count_documents({"exp_key": EXP_KEY, "state": 2})
            except Exception as e:  # noqa: BLE001 - the server may be restarting
                _log(t0, f"(count failed: {type(e).__name__})")
            if not driver_restarted and (done >= 0.4 * args.trials or driver.poll() is not None):
                if driver.poll() is None:
                    driver.kill()
                    driver.wait()
                _log(t0, f"driver killed (-9) at {done} DONE; restarting it")
                driver = new_driver(2)
                driver_restarted = True
            if server is not None and restarts < len(restarts_at) and done >= restarts_at[restarts] * args.trials:
                _log(t0, f"server: SIGTERM at {done} DONE, restarting it on port {server.port}")
                t1 = time.monotonic()
                server.restart()
                restarts += 1
                _log(t0, f"server back after {time.monotonic() - t1:.1f} s")
            for i, until in list(frozen.items()):
                if now >= until:
                    _signal(workers[i], signal.SIGCONT)
                    del frozen[i]
            if now >= next_freeze and freezes < args.freezes:
                candidates = [i for i in range(len(workers)) if i not in frozen]
                if candidates:
                    i = rnd.choice(candidates)
                    _signal(workers[i], signal.SIGSTOP)
                    frozen[i] = now + rnd.uniform(1.5, 2.5) * args.stale
                    freezes += 1
                next_freeze = now + rnd.uniform(0.5, 1.5) * args.freeze_every
            if now >= next_kill:
                candidates = [i for i in range(len(workers)) if i not in frozen]
                if candidates:
                    i = rnd.choice(candidates)
                    workers[i].kill()
                    workers[i].wait()
                    kills += 1
                    workers[i] = new_worker()
                next_kill = now + rnd.uniform(0.5, 1.5) * args.kill_every
            time.sleep(0.1)
        wall = time.monotonic() - t0
        driver_rc = driver.poll()
    finally:
        for i in frozen:
            _signal(workers[i], signal.SIGCONT)
        stop(workers)
        if driver.poll() is None:
            driver.kill()
            driver.wait()

    result = check(db, url, args.trials, evals)
    result.update({"hangs": int(hang), "worker_kills": kills, "freezes": freezes, "server_restarts": restarts,
                   "driver_restarts": int(driver_restarted), "driver_exit": driver_rc, "wall_s": round(wall, 1)})
    client.drop_database(url.rsplit("/", 1)[1])
    client.close()
    if server is not None:
        server.close()
    print("| " + " | ".join(result) + " |")
    print("|" + "---|" * len(result))
    print("| " + " | ".join(str(v) for v in result.values()) + " |")
    ok = (result["completed"] == args.trials and result["lost"] == 0 and result["wrong_attachments"] == 0
          and result["hangs"] == 0 and result["duplicate_tids"] == 0 and result["domains"] == 1 and driver_rc == 0)
    print("OK" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
