"""Throughput of the distributed mode: hpo_mongo against Optuna and the server's own ceiling.

One command runs every section; the systems are interleaved (round robin, the order rotated
each round) and repeated, and ratios are taken within a round, so load drift on a shared
machine hits every system alike. Sections (``--sections``):

* ``throughput`` — trials/s of a fixed number of trials (time-boxed), TPE, 1 driver + N workers
  (``--workers 1,2,4``), trivial and 10 ms objectives (``--objectives``), for the systems of
  ``--systems``: hpo_mongo with its defaults (forked child per trial, and ``--no-subprocess``),
  hpo_mongo tuned (0.02 s polls on both sides), Optuna (JournalFileBackend, SQLite, PostgreSQL:
  N processes running ``study.optimize`` on one study) and the raw server ceiling (N pymongo
  clients doing hpo_mongo's insert + claim + result round trips); with Mongo commands per trial
  (pymongo command listener in the driver and in the workers);
* ``growth`` — trials/s and the driver's refresh times with 1 000 / 10 000 / 50 000 / 100 000 finished
  trials already in the experiment, next to the raw ceiling measured at the same size;
* ``idle`` — commands/s of an idle worker and an idle driver, and 200 idle workers (threads
  running the real worker loop) with the server's CPU;
* ``profile`` — where the time goes in the driver and the workers (timing hooks, bench/probes.py);
* ``executor`` — the cost of the forked child alone (wall and CPU per trial, no database);
* ``refresh`` — the driver's refresh times alone at ``--refresh-trials`` (also part of growth).

Uses the in-memory java test server (scripts/test-server, memory backend, 127.0.0.1) unless
--mongo is given; PostgreSQL is started in a temporary directory if its binaries are installed.
Tables are printed and saved as bench/out/throughput-<stamp>.md, raw numbers beside them as
throughput-<stamp>.json (see bench/README.md).

    python -m bench.throughput                 # the full run (about 40 minutes on 2 cores)
    python -m bench.throughput --quick         # a few minutes
    python -m bench.throughput --sections throughput --systems hpo-tuned,optuna-journal --workers 4
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHIM = REPO / "bench" / "shim"

from bench import probes  # noqa: E402

SYSTEMS = {
    "hpo-default": {"kind": "hpo", "driver_poll": None, "worker_args": [],
                    "about": "MongoTrials(url), hpo-mongo-worker --mongo URL --exp-key K (forked child per trial)"},
    "hpo-default-nosub": {"kind": "hpo", "driver_poll": None, "worker_args": ["--no-subprocess"],
                          "about": "defaults + --no-subprocess"},
    "hpo-tuned": {"kind": "hpo", "driver_poll": 0.02, "worker_args": ["--poll-interval", "0.02"],
                  "about": "poll_interval=0.02, --poll-interval 0.02 (forked child per trial)"},
    "hpo-tuned-nosub": {"kind": "hpo", "driver_poll": 0.02,
                        "worker_args": ["--poll-interval", "0.02", "--no-subprocess"],
                        "about": "tuned + --no-subprocess"},
    "optuna-journal": {"kind": "optuna", "storage": "journal",
                       "about": "Optuna JournalStorage(JournalFileBackend), TPESampler()"},
    "optuna-sqlite": {"kind": "optuna", "storage": "sqlite", "about": "Optuna RDBStorage sqlite:///, TPESampler()"},
    "optuna-postgres": {"kind": "optuna", "storage": "postgres",
                        "about": "Optuna RDBStorage postgresql (throwaway local cluster), TPESampler()"},
    "ceiling": {"kind": "ceiling", "about": "N pymongo clients: upsert NEW + claim + owner-conditioned result"},
}
REFERENCE = "optuna-journal"
OBJECTIVE_NAMES = {"trivial": "trivial objective", "sleep10": "10 ms objective"}


# ----------------------------------------------------------------------------- objectives (picklable by reference)
def trivial(cfg: dict) -> float:
    return (cfg["x"] - 1.0) ** 2 + (cfg["y"] + 0.5) ** 2


def sleep10(cfg: dict) -> float:
    time.sleep(0.01)
    return trivial(cfg)


OBJECTIVES = {"trivial": trivial, "sleep10": sleep10}


def space() -> dict:
    from hpo_mongo import hp
    return {"x": hp.uniform("x", -5, 5), "y": hp.uniform("y", -5, 5)}


def optuna_objective(name: str) -> Callable:
    fn = OBJECTIVES[name]

    def objective(trial: Any) -> float:
        return fn({"x": trial.suggest_float("x", -5, 5), "y": trial.suggest_float("y", -5, 5)})
    return objective


# ----------------------------------------------------------------------------- server and processes
@contextlib.contextmanager
def test_server(url: str | None = None):
    """Yield ``(mongodb://127.0.0.1:PORT, java pid)`` of a fresh java test server (or ``(url, None)``)."""
    if url:
        yield url.rstrip("/"), None
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
        yield m.group(1).rstrip("/"), proc.pid  # scripts/test-server execs java: this is the JVM's pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(Exception):
            proc.wait(10)


def child_env(probe: str | None = None, role: str = "", timing: bool = False, **extra: str) -> dict:
    """The environment of a bench subprocess: the repo and the probe shim on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SHIM), str(REPO), env.get("PYTHONPATH")) if p)
    for k in ("HPO_MONGO_SECRET", probes.ENV_PROBE, probes.ENV_TIMING, probes.ENV_ROLE):
        env.pop(k, None)
    if probe:
        env[probes.ENV_PROBE] = probe
        env[probes.ENV_ROLE] = role
        if timing:
            env[probes.ENV_TIMING] = "1"
    env.update(extra)
    return env


def worker_exe() -> list[str]:
    exe = Path(sys.executable).with_name("hpo-mongo-worker")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "hpo_mongo.cli.worker"]


def start_worker(url: str, *args: str, log: Path | None = None, env: dict | None = None) -> subprocess.Popen:
    """An ``hpo-mongo-worker --mongo URL *args`` process (its output appended to ``log``; ``env``
    default :func:`child_env`)."""
    with open(log, "ab") if log else contextlib.nullcontext(subprocess.DEVNULL) as out:
        return subprocess.Popen([*worker_exe(), "--mongo", url, *args], stdout=out, stderr=subprocess.STDOUT,
                                env=child_env() if env is None else env, cwd=str(REPO))


def bench_cmd(sub: str, cfg: dict) -> list[str]:
    return [sys.executable, "-m", "bench.throughput", sub, json.dumps(cfg)]


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


def signal_all(procs: Iterable[subprocess.Popen], sig: int = signal.SIGUSR1) -> None:
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(sig)


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


def read_lines(proc: subprocess.Popen, want: str, timeout: float) -> str:
    """The first stdout line of ``proc`` starting with ``want`` (RuntimeError on exit or timeout)."""
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        if line.startswith(want):
            return line[len(want):].strip()
        if time.monotonic() > deadline:
            break
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)
    raise RuntimeError(f"{' '.join(map(str, proc.args[:4]))} ended without printing {want!r} (exit {proc.poll()}; "
                       "its log is under bench/out/throughput/<stamp>/)")


def window_deltas(prefix: str, tags: tuple[str, ...] = ("start", "end", "signal")) -> list[dict]:
    """Per process: the difference between its first two snapshots tagged ``tags`` (start and end of the
    run: the driver's own, the workers' taken on SIGUSR1)."""
    by_pid: dict[int, list[dict]] = {}
    for s in probes.read(prefix):
        by_pid.setdefault(s["pid"], []).append(s)
    out = []
    for snaps in by_pid.values():
        marks = [s for s in snaps if s["tag"] in tags]
        if len(marks) >= 2:
            out.append(probes.delta(marks[0], marks[1]))
    return out


def proc_cpu(pid: int | None) -> float | None:
    """CPU seconds (user + system) used so far by process ``pid`` (None if unknown)."""
    if not pid:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except Exception:  # noqa: BLE001
        la = os.getloadavg()
        return f"load average: {la[0]:.2f}, {la[1]:.2f}, {la[2]:.2f}"


# ----------------------------------------------------------------------------- history documents
def history_docs(n: int, exp_key: str, start_tid: int = 0, seed: int = 0) -> Iterable[list[dict]]:
    """Batches of ``n`` finished trials shaped as hpo_mongo writes them (one every 0.1 s, the last a
    minute ago), on :func:`space`'s parameters."""
    import numpy as np
    from bson import ObjectId
    from hpo_mongo.trials.documents import new_trial_doc
    from hpo_mongo.trials.documents import QUEUE_FIELDS as NEW_DOC_FIELDS
    rng = np.random.default_rng(seed)
    xy = rng.uniform(-5, 5, size=(n, 2))
    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=0.1 * n + 60)
    batch = []
    for i in range(n):
        tid = start_tid + i
        now = start + dt.timedelta(seconds=0.1 * i)
        x, y = float(xy[i, 0]), float(xy[i, 1])
        d = new_trial_doc(tid, {"x": [x], "y": [y]}, exp_key=exp_key)
        d.update(NEW_DOC_FIELDS)
        d.update(_id=ObjectId(), state=2, result={"status": "ok", "loss": trivial({"x": x, "y": y})},
                 owner=f"bench:{1000 + i % 4}", attempt=1, version=3, created_at=now, updated_at=now,
                 book_time=now, heartbeat=now, start_time=now, end_time=now, refresh_time=now,
                 worker={"host": "bench", "pid": 1000 + i % 4}, domain_hash="0" * 64, lease_timeout=30.0)
        batch.append(d)
        if len(batch) == 1000:
            yield batch
            batch = []
    if batch:
        yield batch


def prefill(db, n: int, exp_key: str) -> float:
    """Insert ``n`` finished trials of ``exp_key`` (tids 0..n-1), the driver's indexes and the tid
    counter after them; return the seconds it took."""
    from hpo_mongo.trials.mongo.queue import COUNTERS, TID_COUNTER, MongoJobQueue
    t0 = time.perf_counter()
    MongoJobQueue(db).prepare()
    for batch in history_docs(n, exp_key):
        db.jobs.insert_many(batch, ordered=False)
    db[COUNTERS].update_one({"_id": TID_COUNTER}, {"$set": {"seq": n - 1}}, upsert=True)
    return time.perf_counter() - t0


# ----------------------------------------------------------------------------- subprocess entry points
def _driver_main(cfg: dict) -> None:
    """A driver: ``MongoTrials(url, exp_key=K[, poll_interval])`` + ``fmin(tpe.suggest)``."""
    import numpy as np
    from hpo_mongo import fmin, tpe
    from hpo_mongo.trials.documents import JOB_FINISHED_STATES
    from hpo_mongo.trials.mongo.store import MongoTrials
    kw = {} if cfg.get("poll") is None else {"poll_interval": cfg["poll"]}
    t0 = time.perf_counter()
    trials = MongoTrials(cfg["url"], exp_key=cfg["exp_key"], **kw)
    load = time.perf_counter() - t0
    done_before = sum(1 for t in trials.trials if t["state"] in JOB_FINISHED_STATES)
    probes.snapshot("start")
    print("START", flush=True)
    t0 = time.perf_counter()
    fmin(OBJECTIVES[cfg["objective"]], space(), algo=tpe.suggest, max_evals=done_before + cfg["trials"],
         trials=trials, timeout=cfg["time_box"], show_progressbar=False,
         rstate=np.random.default_rng(cfg.get("seed", 0)))
    wall = time.perf_counter() - t0
    probes.snapshot("end")
    print("RESULT " + json.dumps({"wall_s": wall, "load_s": load}), flush=True)


def _wait_go() -> float:
    print("READY", flush=True)
    sys.stdin.readline()
    return time.monotonic()


def optuna_storage(spec: dict) -> Any:
    import optuna
    if spec["kind"] == "journal":
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend
        return JournalStorage(JournalFileBackend(spec["path"]))
    return optuna.storages.RDBStorage(spec["url"], engine_kwargs=spec.get("engine_kwargs") or {})


def _optuna_main(cfg: dict) -> None:
    """One Optuna worker process: ``study.optimize`` on the shared study, its share of the trials."""
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=cfg["study"], storage=optuna_storage(cfg["storage"]),
                              sampler=optuna.samplers.TPESampler())
    objective = optuna_objective(cfg["objective"])
    done = [0]

    def count(study: Any, trial: Any) -> None:
        done[0] += trial.state == optuna.trial.TrialState.COMPLETE

    _wait_go()
    study.optimize(objective, n_trials=cfg["trials"], timeout=cfg["time_box"], callbacks=[count])
    print("RESULT " + json.dumps({"end": time.monotonic(), "done": done[0]}), flush=True)


def _ceiling_main(cfg: dict) -> None:
    """One raw client: upsert a NEW trial, claim the oldest NEW one, write its result; repeat.

    The documents and queries are hpo_mongo's own (``new_trial_doc`` + ``NEW_DOC_FIELDS``, the
    driver's upsert, ``jobs.claim`` and ``jobs.finish``), without the driver or the worker around them.
    """
    from bson import ObjectId
    from hpo_mongo.trials.documents import JOB_STATE_DONE, new_trial_doc, sonify
    from hpo_mongo.trials.documents import QUEUE_FIELDS as NEW_DOC_FIELDS
    from hpo_mongo.trials.mongo import jobs as _jobs
    from hpo_mongo.worker.loop import owner_id
    client, db = mongo(cfg["url"])
    coll = db.jobs
    owner = owner_id()
    worker = {"host": socket.gethostname(), "pid": os.getpid()}
    rnd = random.Random(cfg["tid0"])
    fn = OBJECTIVES[cfg["objective"]]
    coll.find_one({"_id": 0})  # connect before the start
    go = _wait_go()
    done = 0
    for k in range(cfg["trials"]):
        if time.monotonic() - go > cfg["time_box"]:
            break
        tid = cfg["tid0"] + k
        body = {**NEW_DOC_FIELDS, **new_trial_doc(tid, {"x": [rnd.uniform(-5, 5)], "y": [rnd.uniform(-5, 5)]},
                                                  exp_key=cfg["exp_key"]), "domain_hash": "0" * 64}
        coll.update_one({"_id": ObjectId()}, {"$setOnInsert": sonify(body),
                                              "$currentDate": {"created_at": True, "updated_at": True}},
                        upsert=True)
        doc = _jobs.claim(coll, owner, exp_key=cfg["exp_key"], worker=worker, lease_timeout=30.0, max_attempts=3)
        if doc is None:
            continue
        loss = fn({"x": doc["misc"]["vals"]["x"][0], "y": doc["misc"]["vals"]["y"][0]})
        done += _jobs.finish(coll, doc, JOB_STATE_DONE, {"status": "ok", "loss": loss})
    print("RESULT " + json.dumps({"end": time.monotonic(), "done": done}), flush=True)
    client.close()


def _fleet_main(cfg: dict) -> None:
    """``cfg["n"]`` idle workers in threads of this process, each the real worker loop with its own client."""
    import logging
    from hpo_mongo.trials.mongo.queue import MongoJobQueue
    from hpo_mongo.worker.loop import Worker, WorkerConfig
    logging.basicConfig(level=logging.ERROR)
    kw = {} if cfg.get("poll") is None else {"poll_interval": cfg["poll"]}
    host = socket.gethostname()
    workers = [Worker(MongoJobQueue.connect(cfg["url"]), WorkerConfig(exp_key=cfg["exp_key"], **kw),
                      owner=f"{host}:{os.getpid()}.{i}") for i in range(cfg["n"])]
    threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stopping.set())
    for t in threads:
        t.start()
    print("READY", flush=True)
    while not stopping.is_set():
        time.sleep(0.2)
    for w in workers:
        w.stop()
    for t in threads:
        t.join(10)


SUBCOMMANDS = {"_driver": _driver_main, "_optuna": _optuna_main, "_ceiling": _ceiling_main, "_fleet": _fleet_main}


# ----------------------------------------------------------------------------- PostgreSQL (throwaway cluster)
class Postgres:
    """A PostgreSQL cluster in a temporary directory on a free port (``url`` None + ``note`` if unavailable)."""

    def __init__(self) -> None:
        self.url_base: str | None = None
        self.note = ""
        self.tmp: str | None = None
        self._as: list[str] = []
        self.bin: Path | None = None

    @staticmethod
    def _find_bin() -> Path | None:
        initdb = shutil.which("initdb")
        if initdb:
            return Path(os.path.realpath(initdb)).parent
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        return found[-1].parent if found else None

    def __enter__(self) -> "Postgres":
        self.bin = self._find_bin()
        if self.bin is None:
            self.note = "PostgreSQL not installed (no initdb on PATH or in /usr/lib/postgresql): skipped"
            return self
        try:
            import psycopg2  # noqa: F401
        except ImportError:
            self.note = "psycopg2 not installed (pip install psycopg2-binary): PostgreSQL skipped"
            return self
        self.tmp = tempfile.mkdtemp(prefix="bench-pg-")
        if os.geteuid() == 0:  # initdb refuses to run as root
            import pwd
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                self.note = "running as root and there is no 'postgres' user to run initdb: PostgreSQL skipped"
                return self
            os.chown(self.tmp, pw.pw_uid, pw.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        data = os.path.join(self.tmp, "data")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            subprocess.run([*self._as, str(self.bin / "initdb"), "-D", data, "-U", "postgres", "-A", "trust",
                            "-E", "UTF8", "--no-sync"], check=True, capture_output=True, text=True, timeout=120)
            subprocess.run([*self._as, str(self.bin / "pg_ctl"), "-D", data, "-l", os.path.join(self.tmp, "log"),
                            "-w", "-t", "60", "-o", f"-p {port} -k {self.tmp} -c listen_addresses=127.0.0.1",
                            "start"], check=True, capture_output=True, text=True, timeout=120)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
            err = getattr(e, "stderr", "") or str(e)
            self.note = f"PostgreSQL could not be started ({err.strip().splitlines()[-1:]}): skipped"
            return self
        self.url_base = f"postgresql+psycopg2://postgres@127.0.0.1:{port}/"
        out = subprocess.run([str(self.bin / "postgres"), "--version"], capture_output=True, text=True)
        self.note = f"{out.stdout.strip()}, throwaway cluster (initdb defaults), 127.0.0.1:{port}"
        return self

    def fresh_db(self, name: str) -> str:
        """Drop and create database ``name``; its SQLAlchemy URL."""
        import psycopg2
        conn = psycopg2.connect(self.url_base.replace("postgresql+psycopg2", "postgresql") + "postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        return self.url_base + name

    def __exit__(self, *exc: Any) -> None:
        if self.url_base:
            subprocess.run([*self._as, str(self.bin / "pg_ctl"), "-D", os.path.join(self.tmp, "data"), "-m", "fast",
                            "-w", "stop"], capture_output=True, timeout=60)
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


# ----------------------------------------------------------------------------- one run of one system
class Bench:
    """Shared state of a bench invocation: the server, PostgreSQL, temporary and log directories."""

    def __init__(self, server: str, server_pid: int | None, tmp: Path, logdir: Path, pg: Postgres):
        self.server, self.server_pid, self.tmp, self.logdir, self.pg = server, server_pid, tmp, logdir, pg
        self.seq = 0

    def run_id(self, label: str) -> str:
        self.seq += 1
        return f"{self.seq:04d}-{re.sub(r'[^A-Za-z0-9]+', '-', label)}"

    def fresh_url(self) -> str:
        return f"{self.server}/bench_tp_{uuid.uuid4().hex[:8]}"

    def drop(self, url: str) -> None:
        client, _ = mongo(url)
        client.drop_database(url.rsplit("/", 1)[1])
        client.close()

    # ------------------------------------------------------------------ hpo_mongo
    def run_hpo(self, system: str, n_workers: int, objective: str, n_trials: int, time_box: float, *,
                url: str | None = None, exp_key: str = "tp", timing: bool = False) -> dict:
        """One driver + ``n_workers`` ``hpo-mongo-worker`` processes; probes in all of them."""
        spec = SYSTEMS[system]
        rid = self.run_id(f"{system}-{n_workers}-{objective}")
        own_db = url is None
        url = url or self.fresh_url()
        client, db = mongo(url)
        tid_floor = (db.counters.find_one({"_id": "tid"}) or {}).get("seq", -1) + 1
        prefix = str(self.tmp / f"probe-{rid}")
        workers = [start_worker(url, "--exp-key", exp_key, *spec["worker_args"],
                                log=self.logdir / f"{rid}-worker-{i}.log", env=child_env(prefix, f"worker-{i}", timing))
                   for i in range(n_workers)]
        driver = None
        try:
            wait_workers(db, n_workers)
            cfg = {"url": url, "exp_key": exp_key, "poll": spec["driver_poll"], "objective": objective,
                   "trials": n_trials, "time_box": time_box}
            with open(self.logdir / f"{rid}-driver.log", "ab") as dlog:
                driver = subprocess.Popen(bench_cmd("_driver", cfg), stdout=subprocess.PIPE, stderr=dlog,
                                          text=True, cwd=str(REPO), env=child_env(prefix, "driver", timing))
                read_lines(driver, "START", 600)
                signal_all(workers)
                res = json.loads(read_lines(driver, "RESULT ", time_box + 600))
                signal_all(workers)
                driver.wait(60)
            stop(workers)
            flt = {"exp_key": exp_key, "tid": {"$gte": tid_floor, "$lt": 10 ** 7}}
            docs = list(db.jobs.find({**flt, "state": 2}, {"start_time": 1, "end_time": 1, "worker": 1}))
            per_worker: dict[Any, int] = {}
            for d in docs:
                per_worker[d["worker"]["pid"]] = per_worker.get(d["worker"]["pid"], 0) + 1
            busy = [(d["end_time"] - d["start_time"]).total_seconds() for d in docs if d.get("end_time")]
            deltas = window_deltas(prefix)
            drv = [d for d in deltas if d["role"] == "driver"]
            wrk = [d for d in deltas if d["role"].startswith("worker")]
            return {"system": system, "kind": "hpo", "n_workers": n_workers, "objective": objective,
                    "trials": len(docs), "wall_s": res["wall_s"], "rate": len(docs) / res["wall_s"],
                    "driver_load_s": res["load_s"],
                    "claim_to_result_ms": 1000 * statistics.median(busy) if busy else None,
                    "per_worker": sorted(per_worker.values()),
                    "driver": drv[0] if drv else None, "workers": wrk}
        finally:
            if driver is not None and driver.poll() is None:
                stop([driver])
            stop(workers)
            if own_db:
                client.drop_database(url.rsplit("/", 1)[1])
            else:  # growth: keep the history, drop what this run added
                db.jobs.delete_many({"exp_key": exp_key, "tid": {"$gte": tid_floor}})
                db.workers.delete_many({})
            client.close()

    # ------------------------------------------------------------------ processes released together
    def _released(self, cmds: list[tuple[list[str], dict]], label: str, time_box: float) -> tuple[float, int]:
        """Start the processes, wait until each printed READY, release them at once; (wall, done)."""
        rid = self.run_id(label)
        procs = []
        try:
            for i, (cmd, env) in enumerate(cmds):
                log = open(self.logdir / f"{rid}-{i}.log", "ab")
                procs.append(subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                              text=True, cwd=str(REPO), env=env))
                log.close()
            for p in procs:
                read_lines(p, "READY", 300)
            go = time.monotonic()
            for p in procs:
                p.stdin.write("GO\n")
                p.stdin.flush()
            results = [json.loads(read_lines(p, "RESULT ", time_box + 300)) for p in procs]
            for p in procs:
                p.wait(60)
            return max(r["end"] for r in results) - go, sum(r["done"] for r in results)
        finally:
            stop(procs)

    def run_optuna(self, system: str, n_workers: int, objective: str, n_trials: int, time_box: float) -> dict:
        import optuna
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        kind = SYSTEMS[system]["storage"]
        name = f"s{uuid.uuid4().hex[:8]}"
        if kind == "journal":
            spec = {"kind": "journal", "path": str(self.tmp / f"{name}.journal")}
        elif kind == "sqlite":
            spec = {"kind": "rdb", "url": f"sqlite:///{self.tmp / (name + '.db')}",
                    "engine_kwargs": {"connect_args": {"timeout": 60}}}
        else:
            if not self.pg.url_base:
                return {"system": system, "skipped": self.pg.note}
            spec = {"kind": "rdb", "url": self.pg.fresh_db(name)}
        storage = optuna_storage(spec)
        optuna.create_study(study_name=name, storage=storage, direction="minimize")
        del storage
        share = math.ceil(n_trials / n_workers)
        cfg = {"study": name, "storage": spec, "objective": objective, "trials": share, "time_box": time_box}
        cmds = [(bench_cmd("_optuna", cfg), child_env()) for _ in range(n_workers)]
        try:
            wall, done = self._released(cmds, f"{system}-{n_workers}-{objective}", time_box)
        finally:
            for suffix in (".journal", ".db"):
                with contextlib.suppress(OSError):
                    (self.tmp / f"{name}{suffix}").unlink()
        return {"system": system, "kind": "optuna", "n_workers": n_workers, "objective": objective,
                "trials": done, "wall_s": wall, "rate": done / wall}

    def run_ceiling(self, n_clients: int, objective: str, n_trials: int, time_box: float, *,
                    url: str | None = None, exp_key: str = "tp") -> dict:
        from hpo_mongo.trials.mongo.queue import MongoJobQueue
        own_db = url is None
        url = url or self.fresh_url()
        client, db = mongo(url)
        MongoJobQueue(db).prepare()
        share = math.ceil(n_trials / n_clients)
        base = 10 ** 7 + self.seq * 10 ** 5
        cmds = [(bench_cmd("_ceiling", {"url": url, "exp_key": exp_key, "objective": objective, "trials": share,
                                        "time_box": time_box, "tid0": base + i * 10 ** 4}), child_env())
                for i in range(n_clients)]
        try:
            wall, done = self._released(cmds, f"ceiling-{n_clients}-{objective}", time_box)
        finally:
            if own_db:
                client.drop_database(url.rsplit("/", 1)[1])
            else:
                db.jobs.delete_many({"exp_key": exp_key, "tid": {"$gte": 10 ** 7}})
            client.close()
        return {"system": "ceiling", "kind": "ceiling", "n_workers": n_clients, "objective": objective,
                "trials": done, "wall_s": wall, "rate": done / wall}

    def run(self, system: str, n: int, objective: str, n_trials: int, time_box: float, **kw: Any) -> dict:
        """One run; a run that fails is recorded with its error (and the bench goes on)."""
        kind = SYSTEMS[system]["kind"]
        try:
            if kind == "hpo":
                return self.run_hpo(system, n, objective, n_trials, time_box, **kw)
            if kind == "ceiling":
                return self.run_ceiling(n, objective, n_trials, time_box, **kw)
            return self.run_optuna(system, n, objective, n_trials, time_box)
        except Exception as e:  # noqa: BLE001 - reported in the tables
            return {"system": system, "kind": kind, "n_workers": n, "objective": objective,
                    "error": f"{type(e).__name__}: {e}"[:300]}


# ----------------------------------------------------------------------------- sections
def rotated(items: list, k: int) -> list:
    k %= max(1, len(items))
    return items[k:] + items[:k]


def section_throughput(b: Bench, a: argparse.Namespace, log: Callable[[str], None]) -> list[dict]:
    runs = []
    for rnd in range(a.rounds):
        for objective in a.objectives:
            for n in a.workers:
                for system in rotated(a.systems, rnd + n):
                    r = b.run(system, n, objective, a.trials, a.time_box)
                    r["round"] = rnd
                    runs.append(r)
                    if r.get("skipped") or r.get("error"):
                        log(f"  round {rnd} {objective} N={n} {system}: {r.get('skipped') or r.get('error')}")
                    else:
                        log(f"  round {rnd} {objective} N={n} {system}: {r['trials']} trials in "
                            f"{r['wall_s']:.2f} s = {r['rate']:.1f}/s")
    return runs


def refresh_times(url: str, exp_key: str, n: int) -> dict:
    """The driver's refresh with ``n`` trials in the experiment: a full load (new MongoTrials), an
    incremental refresh with nothing changed, one after 100 trials changed, and losses()+idxs_vals."""
    from hpo_mongo.trials.mongo.store import MongoTrials
    client, db = mongo(url)
    try:
        t0 = time.perf_counter()
        trials = MongoTrials(url, exp_key=exp_key)
        full = time.perf_counter() - t0
        assert len(trials.trials) >= n, (len(trials.trials), n)
        reps = []
        for _ in range(5):
            t0 = time.perf_counter()
            trials.refresh()
            reps.append(time.perf_counter() - t0)
        ids = [d["_id"] for d in db.jobs.find({"exp_key": exp_key}, {"_id": 1}).sort("tid", 1).limit(100)]
        db.jobs.update_many({"_id": {"$in": ids}}, {"$inc": {"version": 1}, "$currentDate": {"updated_at": True}})
        t0 = time.perf_counter()
        trials.refresh()
        changed = time.perf_counter() - t0
        t0 = time.perf_counter()
        _ = trials.losses(), trials.idxs_vals
        derived = time.perf_counter() - t0
        trials.handle.client.close()
        return {"n": n, "full_s": full, "incremental_s": statistics.median(reps), "after_100_changes_s": changed,
                "losses_idxs_vals_s": derived}
    finally:
        client.close()


def section_refresh(b: Bench, a: argparse.Namespace, log: Callable[[str], None]) -> dict:
    url = b.fresh_url()
    client, db = mongo(url)
    try:
        fill = prefill(db, a.refresh_trials, "big")
        r = refresh_times(url, "big", a.refresh_trials)
        r["prefill_s"] = fill
        log(f"  refresh with {r['n']} trials: full {r['full_s']:.2f} s, incremental {1000 * r['incremental_s']:.1f} ms")
        return r
    finally:
        client.drop_database(url.rsplit("/", 1)[1])
        client.close()


def section_growth(b: Bench, a: argparse.Namespace, log: Callable[[str], None]) -> list[dict]:
    out = []
    for size in a.growth_sizes:
        url = b.fresh_url()
        client, db = mongo(url)
        try:
            fill = prefill(db, size, "grow")
            try:
                ref = refresh_times(url, "grow", size)
                log(f"  history {size}: prefill {fill:.1f} s; refresh full {ref['full_s']:.2f} s, "
                    f"incremental {1000 * ref['incremental_s']:.1f} ms")
            except Exception as e:  # noqa: BLE001 - reported in the table
                ref = {"n": size, "error": f"{type(e).__name__}: {e}"[:300]}
                log(f"  history {size}: prefill {fill:.1f} s; refresh failed: {ref['error']}")
            runs = []
            for rnd in range(a.growth_rounds):
                for system in rotated(a.growth_systems, rnd):
                    r = b.run(system, a.growth_workers, "trivial", a.growth_trials, a.growth_time_box,
                              url=url, exp_key="grow")
                    r["round"] = rnd
                    runs.append(r)
                    log(f"  history {size} {system} N={a.growth_workers}: " + (
                        r["error"] if r.get("error") else
                        f"{r['trials']} trials in {r['wall_s']:.2f} s = {r['rate']:.1f}/s"))
            out.append({"size": size, "prefill_s": fill, "refresh": ref, "runs": runs})
        finally:
            client.drop_database(url.rsplit("/", 1)[1])
            client.close()
    return out


def section_profile(b: Bench, a: argparse.Namespace, log: Callable[[str], None]) -> list[dict]:
    runs = []
    for system in a.profile_systems:
        r = b.run_hpo(system, a.profile_workers, "trivial", a.trials, a.time_box, timing=True)
        r["round"] = 0
        runs.append(r)
        log(f"  profile {system} N={a.profile_workers}: {r['trials']} trials in {r['wall_s']:.2f} s = "
            f"{r['rate']:.1f}/s")
    return runs


def _window(procs: list[subprocess.Popen], seconds: float, server_pid: int | None) -> dict:
    time.sleep(3.0)  # past the start-up
    cpu0, t0 = proc_cpu(server_pid), time.monotonic()
    signal_all(procs)
    time.sleep(seconds)
    signal_all(procs)
    cpu1, t1 = proc_cpu(server_pid), time.monotonic()
    time.sleep(0.3)
    return {"server_cpu_s": None if cpu0 is None else cpu1 - cpu0, "seconds": t1 - t0}


def _rates(deltas: list[dict]) -> dict:
    cmds: dict[str, float] = {}
    hb = cpu = secs = 0.0
    for d in deltas:
        for k, v in d["counts"].items():
            cmds[k] = cmds.get(k, 0) + v / d["seconds"]
        hb += d["heartbeats"] / d["seconds"]
        cpu += d["cpu"] / d["seconds"]
        secs = max(secs, d["seconds"])
    return {"commands_per_s": cmds, "total_per_s": sum(cmds.values()), "monitor_heartbeats_per_s": hb,
            "client_cpu": cpu, "seconds": secs, "processes": len(deltas)}


def section_idle(b: Bench, a: argparse.Namespace, log: Callable[[str], None]) -> dict:
    url = b.fresh_url()
    client, db = mongo(url)
    out: dict[str, Any] = {"history": a.idle_history, "cases": []}
    try:
        if a.idle_history:
            prefill(db, a.idle_history, "idle")
        else:
            from hpo_mongo.trials.mongo.queue import MongoJobQueue
            MongoJobQueue(db).prepare()
        base = proc_cpu(b.server_pid)
        time.sleep(a.idle_window)
        out["server_cpu_baseline"] = None if base is None else (proc_cpu(b.server_pid) - base) / a.idle_window
        cases = [("idle worker, defaults", "worker", []), ("idle worker, --poll-interval 0.02", "worker",
                                                           ["--poll-interval", "0.02"]),
                 ("idle driver, defaults", "driver", None), ("idle driver, poll_interval=0.02", "driver", 0.02)]
        for label, role, arg in cases:
            rid = b.run_id(label)
            prefix = str(b.tmp / f"probe-{rid}")
            exp_key = f"idle-{rid}"
            with open(b.logdir / f"{rid}.log", "ab") as lg:
                if role == "worker":
                    p = start_worker(url, "--exp-key", exp_key, *arg, log=b.logdir / f"{rid}.log",
                                     env=child_env(prefix, "worker"))
                    wait_workers(db, 1)
                else:  # fmin with no worker: it queues its first trials, then waits
                    cfg = {"url": url, "exp_key": exp_key, "poll": arg, "objective": "trivial", "trials": 10,
                           "time_box": a.idle_window + 60}
                    p = subprocess.Popen(bench_cmd("_driver", cfg), stdout=subprocess.PIPE, stderr=lg, text=True,
                                         cwd=str(REPO), env=child_env(prefix, "driver"))
                    read_lines(p, "START", 120)
                w = _window([p], a.idle_window, b.server_pid)
                stop([p])
            db.workers.delete_many({})
            r = _rates(window_deltas(prefix, ("signal",)))
            r.update(label=label, role=role, server_cpu=None if w["server_cpu_s"] is None
                     else w["server_cpu_s"] / w["seconds"])
            out["cases"].append(r)
            log(f"  {label}: {r['total_per_s']:.2f} commands/s (+{r['monitor_heartbeats_per_s']:.2f} monitor "
                f"heartbeats/s)")
        # the fleet: real worker loops in threads, a.fleet_size of them over a.fleet_procs processes
        for label, poll in (("defaults", None),):
            rid = b.run_id(f"fleet-{label}")
            prefix = str(b.tmp / f"probe-{rid}")
            per = math.ceil(a.fleet_size / a.fleet_procs)
            procs = []
            with open(b.logdir / f"{rid}.log", "ab") as lg:
                for i in range(a.fleet_procs):
                    n = min(per, a.fleet_size - i * per)
                    if n <= 0:
                        break
                    cfg = {"url": url, "exp_key": "idle-fleet", "n": n, "poll": poll}
                    procs.append(subprocess.Popen(bench_cmd("_fleet", cfg), stdout=subprocess.PIPE, stderr=lg,
                                                  text=True, cwd=str(REPO), env=child_env(prefix, f"fleet-{i}")))
                for p in procs:
                    read_lines(p, "READY", 300)
                wait_workers(db, a.fleet_size, timeout=300)
                w = _window(procs, a.idle_window, b.server_pid)
                stop(procs, timeout=60)
            db.workers.delete_many({})
            r = _rates(window_deltas(prefix, ("signal",)))
            r.update(label=f"{a.fleet_size} idle workers ({label}; threads in {len(procs)} processes)",
                     role="fleet", n=a.fleet_size, server_cpu=None if w["server_cpu_s"] is None
                     else w["server_cpu_s"] / w["seconds"])
            out["fleet"] = r
            log(f"  fleet of {a.fleet_size}: {r['total_per_s']:.1f} commands/s, server CPU "
                f"{r['server_cpu'] if r['server_cpu'] is not None else float('nan'):.2f} cores")
        return out
    finally:
        client.drop_database(url.rsplit("/", 1)[1])
        client.close()


def section_executor(b: Bench, a: argparse.Namespace, log: Callable[[str], None]) -> dict:
    from hpo_mongo.domain import Domain
    from hpo_mongo.worker.executor import Executor
    dom = Domain(trivial, space())
    n = a.executor_trials
    out = {}
    modes = (("forked child", True, False), ("forked ahead (default)", True, True), ("in-process", False, False))
    for mode, sub, prefork in modes:
        ex = Executor(subprocess=sub, prefork=prefork)
        ex.run(dom, {"x": [0.5], "y": [0.5]})
        on_clock = 0.0
        c0, t0 = os.times(), time.perf_counter()
        for i in range(n):
            ex.prepare()  # what the worker does before each claim (no-op without prefork)
            t1 = time.perf_counter()
            ex.run(dom, {"x": [i / n], "y": [0.5]})
            on_clock += time.perf_counter() - t1
        ex.close()
        c1, wall = os.times(), time.perf_counter() - t0
        cpu = (c1.user + c1.system + c1.children_user + c1.children_system
               - c0.user - c0.system - c0.children_user - c0.children_system)
        out[mode] = {"wall_ms": 1000 * wall / n, "cpu_ms": 1000 * cpu / n, "trial_ms": 1000 * on_clock / n}
    log("  executor: " + "; ".join(f"{m} {v['trial_ms']:.2f} ms on the trial's clock, {v['wall_ms']:.2f} ms wall, "
                                   f"{v['cpu_ms']:.2f} ms CPU" for m, v in out.items()))
    return out


# ----------------------------------------------------------------------------- tables
def _fmt(x: float | None, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}f}" if abs(x) < 10 ** 4 else f"{x:.0f}"


def _med(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def _span(xs: list[float], digits: int = 1) -> str:
    if not xs:
        return "–"
    if len(xs) == 1:
        return _fmt(xs[0], digits)
    return f"{_fmt(statistics.median(xs), digits)} ({_fmt(min(xs), digits)}–{_fmt(max(xs), digits)})"


def _ratio(runs: list[dict], system: str, ref: str, n: int, objective: str) -> list[float]:
    """Per round: rate(system) / rate(ref), same N and objective."""
    by = {(r["system"], r["round"]): r["rate"] for r in runs
          if r.get("rate") and r["n_workers"] == n and r["objective"] == objective}
    return [by[(system, k)] / by[(ref, k)] for (s, k) in by if s == system and (ref, k) in by]


def _summed(deltas: list[dict], field: str) -> dict[str, float]:
    """``field`` (a mapping name -> number) summed over several processes' probe deltas."""
    out: dict[str, float] = {}
    for d in deltas:
        for k, v in d[field].items():
            out[k] = out.get(k, 0) + v
    return out


def _per_trial(d: dict | None, trials: int) -> float | None:
    return None if not d or not trials else sum(d["counts"].values()) / trials


def table_throughput(runs: list[dict], a: argparse.Namespace) -> list[str]:
    lines = []
    systems = [s for s in a.systems if any(r["system"] == s and r.get("rate") for r in runs)]
    skipped = {r["system"]: r["skipped"] for r in runs if r.get("skipped")}
    skipped.update({f"{r['system']} N={r['n_workers']} {r['objective']} round {r.get('round')}": "failed: " + r["error"]
                    for r in runs if r.get("error")})
    for objective in a.objectives:
        lines += [f"### Trials/s, {OBJECTIVE_NAMES[objective]}, TPE, 1 driver + N workers "
                  f"(median (min–max) over {a.rounds} round(s); {a.trials} trials per run, time box {a.time_box:g} s)",
                  "", "| system | " + " | ".join(f"N = {n}" for n in a.workers) + " |",
                  "|---|" + "---|" * len(a.workers)]
        for s in systems:
            cells = [_span([r["rate"] for r in runs if r["system"] == s and r["n_workers"] == n
                            and r["objective"] == objective and r.get("rate")]) for n in a.workers]
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
        lines.append("")
        refs = [x for x in (REFERENCE, "ceiling") if x in systems]
        if refs:
            lines += [f"Ratios within a round (median over rounds), {OBJECTIVE_NAMES[objective]}:", "",
                      "| system | " + " | ".join(f"÷ {ref} N = {n}" for ref in refs for n in a.workers) + " |",
                      "|---|" + "---|" * (len(refs) * len(a.workers))]
            for s in systems:
                if s in refs and len(refs) == 1:
                    continue
                cells = [_fmt(_med(_ratio(runs, s, ref, n, objective)), 2) for ref in refs for n in a.workers]
                lines.append(f"| {s} | " + " | ".join(cells) + " |")
            lines.append("")
    for s, why in skipped.items():
        lines.append(f"{s}: {why}")
    if skipped:
        lines.append("")
    # hpo_mongo run details
    hpo = [r for r in runs if r.get("kind") == "hpo" and not r.get("error")]
    if hpo:
        lines += ["### hpo_mongo runs: Mongo commands per trial (driver / workers), claim-to-result, balance", "",
                  "| system | objective | N | trials/s | driver cmds/trial | workers cmds/trial | "
                  "claim→result ms (median) | trials per worker (last round) |",
                  "|---|---|---|---|---|---|---|---|"]
        for s in systems:
            for objective in a.objectives:
                for n in a.workers:
                    rs = [r for r in hpo if r["system"] == s and r["n_workers"] == n and r["objective"] == objective]
                    if not rs:
                        continue
                    dcmd = [x for x in (_per_trial(r["driver"], r["trials"]) for r in rs) if x is not None]
                    wcmd = [sum(sum(w["counts"].values()) for w in r["workers"]) / r["trials"] for r in rs
                            if r["trials"]]
                    c2r = [r["claim_to_result_ms"] for r in rs if r["claim_to_result_ms"] is not None]
                    lines.append(f"| {s} | {objective} | {n} | {_span([r['rate'] for r in rs])} | "
                                 f"{_span(dcmd, 2)} | {_span(wcmd, 2)} | {_span(c2r)} | {rs[-1]['per_worker']} |")
        lines.append("")
        lines += commands_breakdown(hpo, a)
    return lines


def commands_breakdown(hpo: list[dict], a: argparse.Namespace) -> list[str]:
    """Commands per trial by command and collection, for the largest N and the first objective."""
    n, objective = max(a.workers), a.objectives[0]
    systems = [s for s in a.systems if any(r["system"] == s for r in hpo)]
    cols: dict[str, dict[str, dict[str, float]]] = {}
    for s in systems:
        rs = [r for r in hpo if r["system"] == s and r["n_workers"] == n and r["objective"] == objective
              and r["trials"]]
        if not rs:
            continue
        acc: dict[str, dict[str, list[float]]] = {"driver": {}, "workers": {}}
        for r in rs:
            for side, ds in (("driver", [r["driver"]] if r["driver"] else []), ("workers", r["workers"])):
                for k, v in _summed(ds, "counts").items():
                    acc[side].setdefault(k, []).append(v / r["trials"])
        cols[s] = {side: {k: sum(v) / len(rs) for k, v in m.items()} for side, m in acc.items()}
    if not cols:
        return []
    lines = [f"### Mongo commands per trial by command (N = {n}, {OBJECTIVE_NAMES[objective]}, mean over rounds; "
             "pymongo CommandListener; the monitor's heartbeats are not commands and not counted)", "",
             "| side | command collection | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for side in ("driver", "workers"):
        keys = sorted({k for c in cols.values() for k in c[side]},
                      key=lambda k: -max(c[side].get(k, 0) for c in cols.values()))
        for k in keys:
            lines.append(f"| {side} | {k} | " + " | ".join(_fmt(c[side].get(k), 2) for c in cols.values()) + " |")
        lines.append(f"| {side} | **total** | " + " | ".join(_fmt(sum(c[side].values()), 2)
                                                           for c in cols.values()) + " |")
    return lines + [""]


def table_growth(growth: list[dict], a: argparse.Namespace) -> list[str]:
    lines = [f"### Growth: trials/s with a history of finished trials in the experiment (N = {a.growth_workers}, "
             f"trivial objective, {a.growth_trials} trials per run, time box {a.growth_time_box:g} s; "
             "the test server has no real indexes: every query scans)", "",
             "| history | " + " | ".join(f"{s} trials/s" for s in a.growth_systems)
             + " | " + " | ".join(f"{s} ÷ ceiling" for s in a.growth_systems if s != "ceiling")
             + " | " + " | ".join(f"{s} ms/trial" for s in a.growth_systems) + " |",
             "|---|" + "---|" * (2 * len(a.growth_systems) + len([s for s in a.growth_systems if s != "ceiling"]))]
    errors: dict[tuple[int, str], str] = {}
    for g in growth:
        rates = {s: [r["rate"] for r in g["runs"] if r["system"] == s and r.get("rate")] for s in a.growth_systems}
        ratios = []
        for s in a.growth_systems:
            if s == "ceiling":
                continue
            per_round = [r["rate"] / c["rate"] for r in g["runs"] if r["system"] == s and r.get("rate")
                         for c in g["runs"] if c["system"] == "ceiling" and c["round"] == r["round"]
                         and c.get("rate")]
            ratios.append(_fmt(_med(per_round), 3))
        ms = [_fmt(1000 / _med(rates[s]), 1) if rates[s] else "–" for s in a.growth_systems]
        errors.update({(g["size"], r["system"]): r["error"] for r in g["runs"] if r.get("error")})
        lines.append(f"| {g['size']:,} | " + " | ".join(_span(rates[s]) for s in a.growth_systems) + " | "
                     + " | ".join(ratios) + " | " + " | ".join(ms) + " |")
    lines += [""] + [f"history {size:,}, {system}: failed: {err}" for (size, system), err in errors.items()]
    lines += ["", "Driver refresh at each history size (one MongoTrials; `full` = a new MongoTrials loading "
              "everything):", "", "| history | prefill s | full load s | incremental, nothing changed ms | "
              "after 100 changed ms | losses()+idxs_vals ms |", "|---|---|---|---|---|---|"]
    for g in growth:
        r = g["refresh"]
        if r.get("error"):
            lines.append(f"| {g['size']:,} | {g['prefill_s']:.1f} | failed: {r['error']} | | | |")
            continue
        lines.append(f"| {g['size']:,} | {g['prefill_s']:.1f} | {r['full_s']:.2f} | {1000 * r['incremental_s']:.1f} | "
                     f"{1000 * r['after_100_changes_s']:.1f} | {1000 * r['losses_idxs_vals_s']:.1f} |")
    return lines + [""]


def table_idle(idle: dict, a: argparse.Namespace) -> list[str]:
    lines = [f"### Idle cost (commands/s over a {a.idle_window:g} s window; {idle['history']} finished trials in "
             "the collection)", "",
             "| process | commands/s | monitor heartbeats/s | by command (/s) | client CPU (cores) |",
             "|---|---|---|---|---|"]
    for c in idle["cases"] + ([idle["fleet"]] if idle.get("fleet") else []):
        by = ", ".join(f"{k} {v:.2f}" for k, v in sorted(c["commands_per_s"].items(), key=lambda kv: -kv[1]))
        lines.append(f"| {c['label']} | {c['total_per_s']:.2f} | {c['monitor_heartbeats_per_s']:.2f} | {by} | "
                     f"{c['client_cpu']:.3f} |")
    lines.append("")
    w = next((c for c in idle["cases"] if c["label"] == "idle worker, defaults"), None)
    f = idle.get("fleet")
    if w:
        est = 200 * (w["total_per_s"] + w["monitor_heartbeats_per_s"])
        lines.append(f"Estimate for 200 idle workers with the defaults: 200 × {w['total_per_s']:.2f} commands/s "
                     f"+ 200 × {w['monitor_heartbeats_per_s']:.2f} monitor heartbeats/s ≈ {est:.0f} requests/s "
                     f"at the server.")
    if f:
        base = idle.get("server_cpu_baseline")
        cpu = f.get("server_cpu")
        extra = "" if cpu is None else (f" Server (JVM) CPU during the window: {cpu:.2f} cores"
                                        + ("" if base is None else f" (idle baseline {base:.3f})") + ".")
        lines.append(f"Measured with {f['n']} idle workers (the real worker loop, each with its own MongoClient, as "
                     f"threads in {f['processes']} processes): {f['total_per_s']:.0f} commands/s + "
                     f"{f['monitor_heartbeats_per_s']:.0f} monitor heartbeats/s.{extra}")
    return lines + [""]


def table_profile(runs: list[dict], a: argparse.Namespace) -> list[str]:
    lines = []
    for r in runs:
        lines += [f"### Profile: {r['system']}, N = {r['n_workers']}, trivial objective: {r['trials']} trials in "
                  f"{r['wall_s']:.2f} s = {r['rate']:.1f}/s (timing hooks, exclusive wall time, main thread)", ""]
        for side, ds in (("driver", [r["driver"]] if r["driver"] else []), ("workers (summed)", r["workers"])):
            if not ds:
                continue
            wall = sum(d["seconds"] for d in ds)
            tim, calls = _summed(ds, "timing"), _summed(ds, "calls")
            other = wall - sum(tim.values())
            lines += [f"{side}: wall {wall:.2f} s, CPU {sum(d['cpu'] for d in ds):.2f} s, "
                      f"{sum(sum(d['counts'].values()) for d in ds) / max(1, r['trials']):.2f} commands/trial", "",
                      "| section | % of wall | ms per trial | calls | ms per call |", "|---|---|---|---|---|"]
            for k, v in sorted(tim.items(), key=lambda kv: -kv[1]):
                lines.append(f"| {k} | {100 * v / wall:.1f} | {1000 * v / max(1, r['trials']):.2f} | "
                             f"{calls.get(k, 0)} | {1000 * v / max(1, calls.get(k, 1)):.2f} |")
            lines.append(f"| (outside the hooked steps) | {100 * other / wall:.1f} | "
                         f"{1000 * other / max(1, r['trials']):.2f} | | |")
            rtt, cnt = _summed(ds, "rtt"), _summed(ds, "counts")
            lines += ["", f"{side}, client-side round trips (all threads):", "",
                      "| command collection | count | per trial | mean ms | total s |", "|---|---|---|---|---|"]
            for k, v in sorted(rtt.items(), key=lambda kv: -kv[1]):
                lines.append(f"| {k} | {cnt.get(k, 0)} | {cnt.get(k, 0) / max(1, r['trials']):.2f} | "
                             f"{1000 * v / max(1, cnt.get(k, 1)):.2f} | {v:.2f} |")
            lines.append("")
    return lines


# ----------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mongo", default=None, help="server base URL (default: start the java test server)")
    ap.add_argument("--quick", action="store_true", help="a few minutes: 1 round, N = 4, trivial objective, "
                                                         "history up to 10 000, short idle windows")
    ap.add_argument("--sections", default="throughput,growth,idle,profile,executor",
                    help="comma list of throughput, growth, idle, profile, executor, refresh")
    ap.add_argument("--systems", default=",".join(SYSTEMS), help="comma list of " + ", ".join(SYSTEMS))
    ap.add_argument("--workers", default="1,2,4", help="worker counts N (comma list)")
    ap.add_argument("--objectives", default="trivial,sleep10", help="trivial, sleep10 (comma list)")
    ap.add_argument("--rounds", type=int, default=3, help="round-robin repetitions of the throughput section")
    ap.add_argument("--trials", type=int, default=400, help="trials per run")
    ap.add_argument("--time-box", type=float, default=20.0, help="seconds at most per run (then trials/s so far)")
    ap.add_argument("--growth-sizes", default="1000,10000,50000,100000")
    ap.add_argument("--growth-systems", default="ceiling,hpo-tuned,hpo-default")
    ap.add_argument("--growth-workers", type=int, default=4)
    ap.add_argument("--growth-trials", type=int, default=200)
    ap.add_argument("--growth-time-box", type=float, default=20.0)
    ap.add_argument("--growth-rounds", type=int, default=1)
    ap.add_argument("--idle-window", type=float, default=20.0, help="seconds measured per idle case")
    ap.add_argument("--idle-history", type=int, default=1000, help="finished trials in the idle section's collection")
    ap.add_argument("--fleet-size", type=int, default=200, help="idle workers of the fleet measurement")
    ap.add_argument("--fleet-procs", type=int, default=4, help="processes the fleet's threads are spread over")
    ap.add_argument("--profile-systems", default="hpo-tuned,hpo-tuned-nosub,hpo-default")
    ap.add_argument("--profile-workers", type=int, default=4)
    ap.add_argument("--executor-trials", type=int, default=200)
    ap.add_argument("--refresh-trials", type=int, default=10_000)
    ap.add_argument("--out", default=str(REPO / "bench" / "out"), help="directory for the tables and raw JSON")
    a = ap.parse_args(argv)
    given = {x.lstrip("-").split("=")[0].replace("-", "_") for x in (argv if argv is not None else sys.argv[1:])
             if x.startswith("--")}
    if a.quick:
        quick = {"rounds": 1, "workers": "4", "objectives": "trivial", "trials": 150, "time_box": 10.0,
                 "growth_sizes": "1000,10000", "growth_trials": 100, "growth_time_box": 10.0,
                 "growth_systems": "ceiling,hpo-tuned", "idle_window": 6.0, "fleet_size": 20, "fleet_procs": 2,
                 "profile_systems": "hpo-tuned", "executor_trials": 50}
        for k, v in quick.items():
            if k not in given:
                setattr(a, k, v)
    a.sections = [s.strip() for s in a.sections.split(",") if s.strip()]
    a.systems = [s.strip() for s in a.systems.split(",") if s.strip()]
    a.growth_systems = [s.strip() for s in a.growth_systems.split(",") if s.strip()]
    a.profile_systems = [s.strip() for s in a.profile_systems.split(",") if s.strip()]
    a.workers = [int(x) for x in str(a.workers).split(",")]
    a.objectives = [s.strip() for s in a.objectives.split(",") if s.strip()]
    a.growth_sizes = [int(x) for x in str(a.growth_sizes).split(",")]
    known = {"throughput", "growth", "idle", "profile", "executor", "refresh"}
    for what, vals, ok in (("section", a.sections, known), ("system", a.systems, SYSTEMS),
                           ("growth system", a.growth_systems, SYSTEMS), ("objective", a.objectives, OBJECTIVES),
                           ("profile system", a.profile_systems,
                            {k for k, v in SYSTEMS.items() if v["kind"] == "hpo"}),
                           ("growth system",
                            [s for s in a.growth_systems if SYSTEMS.get(s, {}).get("kind") == "optuna"], ())):
        bad = [v for v in vals if v not in ok]
        if bad:
            ap.error(f"unknown {what}(s) {bad}; choose from {sorted(ok)}")
    return a


def machine() -> str:
    import numpy
    import pymongo
    vers = [f"Python {sys.version.split()[0]}", f"numpy {numpy.__version__}", f"pymongo {pymongo.version}"]
    for mod in ("optuna", "sqlalchemy", "psycopg2"):
        with contextlib.suppress(ImportError):
            m = __import__(mod)
            vers.append(f"{mod} {m.__version__.split()[0]}")
    return f"{os.uname().machine}, nproc {os.cpu_count()}, " + ", ".join(vers)


def server_note(url: str | None) -> str:
    if url:
        return f"server: {url} (given with --mongo)"
    jars = sorted((REPO / "tests" / "server" / "lib").glob("mongo-java-server-[0-9]*.jar"))
    ver = jars[-1].stem.rsplit("-", 1)[-1] if jars else "?"
    return (f"server: mongo-java-server {ver}, memory backend (scripts/test-server; unique indexes enforced, "
            f"other indexes ignored: every query scans), 127.0.0.1")


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    import logging
    logging.basicConfig(level=logging.WARNING)
    out_dir = Path(a.out)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    logdir = out_dir / "throughput" / stamp
    logdir.mkdir(parents=True, exist_ok=True)
    command = "python -m bench.throughput " + " ".join(argv if argv is not None else sys.argv[1:])
    started = dt.datetime.now().astimezone()
    up0 = uptime()
    raw: dict[str, Any] = {"command": command, "date": started.isoformat(timespec="seconds"), "uptime_start": up0,
                           "machine": machine(), "args": {k: v for k, v in vars(a).items()}}

    def log(msg: str) -> None:
        print(msg, flush=True)

    log(f"{command}\n{started:%Y-%m-%d %H:%M %Z}; uptime at start: {up0}\n{raw['machine']}")
    t_start = time.monotonic()
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-tp-")))
        server, pid = stack.enter_context(test_server(a.mongo))
        want_pg = "throughput" in a.sections and "optuna-postgres" in a.systems
        pg = stack.enter_context(Postgres()) if want_pg else Postgres()
        raw["server"] = server_note(a.mongo)
        raw["postgres"] = pg.note if want_pg else "not selected"
        log(raw["server"] + ("\npostgres: " + raw["postgres"] if want_pg else ""))
        b = Bench(server, pid, tmp, logdir, pg)
        sections = {"executor": section_executor, "throughput": section_throughput, "growth": section_growth,
                    "idle": section_idle, "profile": section_profile, "refresh": section_refresh}
        for name in ("executor", "throughput", "profile", "idle", "growth", "refresh"):
            if name in a.sections:
                log(f"== {name}")
                t0 = time.monotonic()
                try:
                    raw[name] = sections[name](b, a, log)
                except Exception:  # noqa: BLE001 - keep what the other sections measured
                    import traceback
                    raw.setdefault("errors", {})[name] = traceback.format_exc()
                    log(f"section {name} failed:\n{raw['errors'][name]}")
                raw[f"{name}_seconds"] = time.monotonic() - t0
                save(raw, a, out_dir, stamp, t_start, final=False)
    md = save(raw, a, out_dir, stamp, t_start, final=True)
    print("\n".join(md))
    print(f"\nsaved {out_dir / f'throughput-{stamp}.md'} and .json (logs in {logdir})")


def save(raw: dict, a: argparse.Namespace, out_dir: Path, stamp: str, t_start: float, *, final: bool) -> list[str]:
    """Write the tables and the raw JSON of what was measured so far (after each section)."""
    raw["uptime_end"] = uptime() if final else f"(run in progress) {uptime()}"
    raw["seconds"] = time.monotonic() - t_start
    md = report(raw, a)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"throughput-{stamp}.md").write_text("\n".join(md) + "\n")
    (out_dir / f"throughput-{stamp}.json").write_text(json.dumps(raw, indent=1, default=str) + "\n")
    return md


def report(raw: dict, a: argparse.Namespace) -> list[str]:
    lines = ["## Throughput tables", "", f"command: `{raw['command']}`  ",
             f"date: {raw['date']} ({raw['seconds'] / 60:.0f} min)  ",
             f"`uptime` at start: {raw['uptime_start']}  ", f"`uptime` at end: {raw['uptime_end']}  ",
             f"machine: {raw['machine']}  ", f"{raw['server']}  "]
    if raw.get("postgres") and raw["postgres"] != "not selected":
        lines.append(f"postgres: {raw['postgres']}  ")
    lines += ["", "Systems:", ""] + [f"* `{s}`: {SYSTEMS[s]['about']}" for s in a.systems] + [""]
    if "executor" in raw:
        e = raw["executor"]
        lines += ["### Executor alone (trivial objective, no database)", "",
                  "| mode | ms per trial on its clock (`run`) | wall ms per trial (with `prepare`) "
                  "| CPU ms per trial (worker + child) |", "|---|---|---|---|"]
        lines += [f"| {m} | {v.get('trial_ms', v['wall_ms']):.3f} | {v['wall_ms']:.3f} | {v['cpu_ms']:.3f} |"
                  for m, v in e.items()] + [""]
    if "throughput" in raw:
        lines += table_throughput(raw["throughput"], a)
    if "growth" in raw:
        lines += table_growth(raw["growth"], a)
    if "idle" in raw:
        lines += table_idle(raw["idle"], a)
    if "profile" in raw:
        lines += table_profile(raw["profile"], a)
    for name, tb in (raw.get("errors") or {}).items():
        lines += [f"### Section {name} failed", "", "```", tb.strip().splitlines()[-1], "```", ""]
    if "refresh" in raw:
        r = raw["refresh"]
        lines += [f"### Refresh with {r['n']:,} trials", "",
                  f"full load {r['full_s']:.2f} s, incremental (nothing changed) {1000 * r['incremental_s']:.1f} ms, "
                  f"after 100 changed {1000 * r['after_100_changes_s']:.1f} ms, losses()+idxs_vals "
                  f"{1000 * r['losses_idxs_vals_s']:.1f} ms", ""]
    return lines


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in SUBCOMMANDS:
        SUBCOMMANDS[sys.argv[1]](json.loads(sys.argv[2]))
    else:
        main()
