"""Throughput of the distributed mode (issue 5, benchmark a).

1. trials per second: a trivial objective, 1 driver (fmin + MongoTrials, rand.suggest) and 4
   ``hpo-mongo-worker`` processes, with the default forked child per trial and with
   ``--no-subprocess``;
2. the per-trial cost of the forked child alone (executor, no database);
3. the driver's refresh time with 10 000 trials in the collection: a full load (new MongoTrials),
   an incremental refresh with nothing changed, and one after 100 trials changed.

Uses the in-memory java test server (scripts/test-server, 127.0.0.1 only) unless --mongo is given.

    python bench/throughput.py [--trials 400] [--workers 4] [--refresh-trials 10000] [--mongo URL]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


# ----------------------------------------------------------------------------- server and processes
@contextlib.contextmanager
def test_server(url: str | None = None):
    """Yield ``mongodb://127.0.0.1:PORT`` of a fresh java test server (or ``url`` as given)."""
    if url:
        yield url.rstrip("/")
        return
    proc = subprocess.Popen([str(REPO / "scripts" / "test-server"), "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        for line in proc.stdout:
            m = re.search(r"ready (mongodb://\S+)", line)
            if m:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
        else:
            raise RuntimeError("test server exited: " + (proc.stdout.read() if proc.stdout else ""))
        yield m.group(1).rstrip("/")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(Exception):
            proc.wait(10)


def child_env(**extra: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.pop("HPO_MONGO_SECRET", None)
    env.update(extra)
    return env


def start_worker(url: str, *args: str, log: Path | None = None) -> subprocess.Popen:
    out = open(log, "ab") if log else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-m", "hpo_mongo.cli.worker", "--mongo", url, *args],
                            stdout=out, stderr=subprocess.STDOUT, env=child_env(), cwd=str(REPO))


def stop(procs: list[subprocess.Popen], sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(sig)
    for p in procs:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def wait_workers(db, n: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while db.workers.count_documents({"status": {"$ne": "exited"}}) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {db.workers.count_documents({})} of {n} workers registered")
        time.sleep(0.05)


def mongo(url_db: str):
    import pymongo
    base, _, name = url_db.rpartition("/")
    client = pymongo.MongoClient(base + "/", tz_aware=True)
    return client, client[name]


# ----------------------------------------------------------------------------- 1. trials per second
def trivial(cfg):
    return (cfg["x"] - 1.0) ** 2


def throughput(server: str, n_trials: int, n_workers: int, worker_args: list[str], label: str,
               logdir: Path) -> dict:
    import numpy as np
    from hpo_mongo import fmin, hp, rand
    from hpo_mongo.trials.mongo.store import MongoTrials
    url = f"{server}/bench_tp_{uuid.uuid4().hex[:8]}"
    client, db = mongo(url)
    workers = [start_worker(url, "--poll-interval", "0.02", *worker_args, log=logdir / f"tp-{label}-{i}.log")
               for i in range(n_workers)]
    try:
        wait_workers(db, n_workers)
        trials = MongoTrials(url, exp_key="tp", poll_interval=0.02)
        t0 = time.perf_counter()
        fmin(trivial, {"x": hp.uniform("x", -5, 5)}, algo=rand.suggest, max_evals=n_trials, trials=trials,
             show_progressbar=False, rstate=np.random.default_rng(0))
        wall = time.perf_counter() - t0
        docs = list(db.jobs.find({"exp_key": "tp"}, {"state": 1, "start_time": 1, "end_time": 1, "worker": 1}))
        done = [d for d in docs if d["state"] == 2]
        per_worker = {}
        for d in done:
            per_worker[d["worker"]["pid"]] = per_worker.get(d["worker"]["pid"], 0) + 1
        busy = [(d["end_time"] - d["start_time"]).total_seconds() for d in done if d.get("end_time")]
        return {"label": label, "trials": len(done), "wall_s": wall, "trials_per_s": len(done) / wall,
                "claim_to_result_ms_median": 1000 * statistics.median(busy) if busy else float("nan"),
                "per_worker": sorted(per_worker.values())}
    finally:
        stop(workers)
        client.drop_database(url.rsplit("/", 1)[1])
        client.close()


# ----------------------------------------------------------------------------- 2. executor overhead
def executor_overhead(n: int = 200) -> dict:
    from hpo_mongo import hp
    from hpo_mongo.domain import Domain
    from hpo_mongo.worker.executor import Executor
    dom = Domain(trivial, {"x": hp.uniform("x", -5, 5)})
    out = {}
    for mode, sub in (("forked child", True), ("in-process", False)):
        ex = Executor(subprocess=sub)
        ex.run(dom, {"x": [0.5]})
        t0 = time.perf_counter()
        for i in range(n):
            ex.run(dom, {"x": [i / n]})
        out[mode] = 1000 * (time.perf_counter() - t0) / n
    return out


# ----------------------------------------------------------------------------- 3. refresh at 10k
def refresh_times(server: str, n: int) -> dict:
    import datetime as dt
    from bson import ObjectId
    from hpo_mongo.trials.documents import new_trial_doc
    from hpo_mongo.trials.mongo.store import NEW_DOC_FIELDS, MongoTrials
    url = f"{server}/bench_refresh_{uuid.uuid4().hex[:8]}"
    client, db = mongo(url)
    try:
        start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=0.1 * n + 60)
        docs = []
        for tid in range(n):  # trials finished one every 0.1 s, the last one a minute ago
            now = start + dt.timedelta(seconds=0.1 * tid)
            d = new_trial_doc(tid, {"x": [tid / n], "c": [tid % 3]}, exp_key="big")
            d.update(NEW_DOC_FIELDS)
            d.update(_id=ObjectId(), state=2, result={"status": "ok", "loss": tid / n}, owner="bench:1",
                     attempt=1, version=3, created_at=now, updated_at=now, book_time=now, heartbeat=now,
                     start_time=now, end_time=now, refresh_time=now, worker={"host": "bench", "pid": 1},
                     domain_hash="0" * 64)
            docs.append(d)
        for i in range(0, n, 1000):
            db.jobs.insert_many(docs[i:i + 1000])
        db.jobs.create_index([("exp_key", 1), ("updated_at", 1)])
        t0 = time.perf_counter()
        trials = MongoTrials(url, exp_key="big")
        full = time.perf_counter() - t0
        assert len(trials.trials) == n
        reps = []
        for _ in range(5):
            t0 = time.perf_counter()
            trials.refresh()
            reps.append(time.perf_counter() - t0)
        incr = statistics.median(reps)
        ids = [d["_id"] for d in docs[:100]]
        db.jobs.update_many({"_id": {"$in": ids}}, {"$inc": {"version": 1}, "$currentDate": {"updated_at": True}})
        t0 = time.perf_counter()
        trials.refresh()
        changed = time.perf_counter() - t0
        t0 = time.perf_counter()
        _ = trials.losses(), trials.idxs_vals
        derived = time.perf_counter() - t0
        return {"n": n, "full_s": full, "incremental_s": incr, "after_100_changes_s": changed,
                "losses_idxs_vals_s": derived}
    finally:
        client.drop_database(url.rsplit("/", 1)[1])
        client.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mongo", default=None, help="server base URL (default: start the java test server)")
    ap.add_argument("--trials", type=int, default=400)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--refresh-trials", type=int, default=10_000)
    ap.add_argument("--logdir", default=str(REPO / "bench" / "out" / "throughput"))
    args = ap.parse_args()
    logdir = Path(args.logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    import logging
    logging.basicConfig(level=logging.WARNING)
    print(f"host: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    ov = executor_overhead()
    print(f"executor per-trial cost (trivial objective, no database): forked child {ov['forked child']:.2f} ms, "
          f"in-process {ov['in-process']:.3f} ms")
    with test_server(args.mongo) as server:
        for label, wargs in (("forked child (default)", []), ("--no-subprocess", ["--no-subprocess"])):
            r = throughput(server, args.trials, args.workers, wargs, label, logdir)
            print(f"{label}: {r['trials']} trials in {r['wall_s']:.2f} s = {r['trials_per_s']:.1f} trials/s "
                  f"(1 driver + {args.workers} workers; median claim-to-result {r['claim_to_result_ms_median']:.1f} ms;"
                  f" per worker {r['per_worker']})")
        r = refresh_times(server, args.refresh_trials)
        print(f"refresh with {r['n']} trials: full load {r['full_s']:.2f} s, incremental (no change) "
              f"{1000 * r['incremental_s']:.1f} ms, after 100 changed {1000 * r['after_100_changes_s']:.1f} ms; "
              f"losses()+idxs_vals {1000 * r['losses_idxs_vals_s']:.1f} ms")


if __name__ == "__main__":
    main()
