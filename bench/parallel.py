"""Parallel trials on one machine: ParallelTrials against Optuna's ``n_jobs`` and joblib.

    python -m bench.parallel                     # full run (speed-up, overhead, quality; ≈ 30 min on 2 cores)
    python -m bench.parallel --quick             # a short validation run (≈ 3 min)
    python -m bench.parallel --sections speedup,overhead --trials 64

Sections (each prints a Markdown table; everything is saved under bench/out/):

* **speedup** — wall time of ``--trials`` evaluations of a CPU-bound objective of about 0.2 s
  (a pure-Python loop calibrated on one core at start; under contention it takes longer, as real
  work does), for n_jobs = 1, 2 and the core count, with random search. Speed-up = the sequential
  in-process time of the same evaluations (``Trials``) / the wall time, workers' start included.
  Methods: ParallelTrials (default: spawned workers, a forked child per trial), ParallelTrials
  ``subprocess=False``, ParallelTrials ``start_method="fork"``, Optuna ``study.optimize(n_jobs=N)``
  (threads, ``RandomSampler``) and ``joblib.Parallel(n_jobs=N)`` over the same points (processes,
  no optimizer in the loop: the floor of the dispatching cost). joblib's worker pool is shut down
  before each run, so it starts cold like the others.
* **overhead** — the same methods on a trivial objective: wall time / trials in ms (the cost of
  the machinery per trial), and for ParallelTrials the steady-state cost from the trials' own
  times (first claim to last end, / trials), which leaves out starting the workers.
* **quality** — TPE with ParallelTrials(n_jobs=4, subprocess=False) against sequential in-memory
  runs (bench/run.py's loop) on the pending-trial domains: best loss at 100 evaluations, and the
  quality loss (mean log10 regret ratio, bench/run.py's metric), with bench/run.py's simulated
  "always 8 pending" beside it. Each evaluation sleeps ``--quality-delay`` seconds so that the
  four workers really overlap (with a trivial objective they hardly would).
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
import warnings
import zlib
from typing import Any, Callable

import numpy as np

from bench.domains import DOMAINS

QUALITY_DOMAINS = ("branin", "hartmann6", "rosenbrock4", "conditional", "mixed10")
METHODS = ("parallel", "parallel-inproc", "parallel-fork", "optuna-threads", "joblib")
LABELS = {"sequential": "Trials (in-process, sequential)", "parallel": "ParallelTrials",
          "parallel-inproc": "ParallelTrials subprocess=False", "parallel-fork": "ParallelTrials start_method=fork",
          "optuna-threads": "Optuna study.optimize(n_jobs) (threads)", "joblib": "joblib.Parallel (loky)"}


# =========================================================================== the objectives
def calibrate(seconds: float = 0.2) -> int:
    """Loop iterations that take ``seconds`` of one core here (best of 3)."""
    n = 200_000
    best = math.inf
    for _ in range(3):
        t0 = time.perf_counter()
        spin(n)
        best = min(best, time.perf_counter() - t0)
    return max(1, int(n * seconds / best))


def spin(n: int) -> float:
    """CPU-bound pure-Python work (holds the GIL, as most objectives' Python code does)."""
    acc = 0.0
    for i in range(n):
        acc += i * 1e-9
    return acc


def make_objective(n_iter: int) -> Callable[[dict], float]:
    def objective(cfg: dict) -> float:
        if n_iter:
            spin(n_iter)
        return (cfg["x"] - 1.0) ** 2
    return objective


# =========================================================================== one run of each method
def _space():
    from hpo_mongo import hp
    return {"x": hp.uniform("x", -5, 5)}


def run_hpo(method: str, n_jobs: int, n_trials: int, n_iter: int, seed: int) -> dict:
    """fmin with random search on the store of ``method``; wall time and the trials' own times."""
    from hpo_mongo import ParallelTrials, Trials, fmin, rand
    if method == "sequential":
        trials: Any = Trials()
    else:
        trials = ParallelTrials(n_jobs, subprocess=method != "parallel-inproc",
                                start_method="fork" if method == "parallel-fork" else None)
    t0 = time.perf_counter()
    fmin(make_objective(n_iter), _space(), algo=rand.suggest, max_evals=n_trials, trials=trials,
         show_progressbar=False, rstate=np.random.default_rng(seed))
    wall = time.perf_counter() - t0
    out = {"wall": wall}
    starts = [t["book_time"] for t in trials.trials if t.get("book_time")]
    ends = [t.get("end_time") or t.get("refresh_time") for t in trials.trials]
    ends = [e for e in ends if e is not None]
    if starts and ends and method != "sequential":
        out["steady"] = (max(ends) - min(starts)).total_seconds()
    return out


def run_optuna(n_jobs: int, n_trials: int, n_iter: int, seed: int) -> dict:
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    work = make_objective(n_iter)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    t0 = time.perf_counter()
    study.optimize(lambda trial: work({"x": trial.suggest_float("x", -5, 5)}), n_trials=n_trials, n_jobs=n_jobs)
    return {"wall": time.perf_counter() - t0}


def run_joblib(n_jobs: int, n_trials: int, n_iter: int, seed: int) -> dict:
    from joblib import Parallel, delayed
    from joblib.externals.loky import get_reusable_executor
    get_reusable_executor().shutdown(wait=True)  # start cold, as the others do
    xs = np.random.default_rng(seed).uniform(-5, 5, n_trials)
    work = make_objective(n_iter)
    t0 = time.perf_counter()
    Parallel(n_jobs=n_jobs)(delayed(work)({"x": float(x)}) for x in xs)
    return {"wall": time.perf_counter() - t0}


def run(method: str, n_jobs: int, n_trials: int, n_iter: int, seed: int) -> dict:
    if method == "optuna-threads":
        return run_optuna(n_jobs, n_trials, n_iter, seed)
    if method == "joblib":
        return run_joblib(n_jobs, n_trials, n_iter, seed)
    return run_hpo(method, n_jobs, n_trials, n_iter, seed)


def available(method: str) -> bool:
    mod = {"optuna-threads": "optuna", "joblib": "joblib"}.get(method)
    if mod is None:
        return True
    try:
        __import__(mod)
        return True
    except ImportError:
        return False


# =========================================================================== sections
def speedup(jobs: list[int], n_trials: int, n_iter: int, repeats: int, methods: list[str]) -> dict:
    """{method: {n_jobs: [wall, ...]}} and the sequential reference."""
    res: dict = {"sequential": [run("sequential", 1, n_trials, n_iter, r) for r in range(repeats)]}
    for m in methods:
        for n in jobs:
            res.setdefault(m, {})[n] = [run(m, n, n_trials, n_iter, r) for r in range(repeats)]
            print(f"  speedup {m} n_jobs={n}: {np.median([x['wall'] for x in res[m][n]]):.2f} s", file=sys.stderr,
                  flush=True)
    return res


def speedup_table(res: dict, jobs: list[int], methods: list[str]) -> str:
    """Wall time and speed-up (start included); for ParallelTrials also the steady-state speed-up
    (sequential time / first claim to last end)."""
    seq = float(np.median([x["wall"] for x in res["sequential"]]))
    lines = ["| method | " + " | ".join(f"n_jobs={n}: wall s (speed-up; steady)" for n in jobs) + " |",
             "|---" * (len(jobs) + 1) + "|",
             f"| {LABELS['sequential']} | {seq:.2f} s (1.00×) | " + " | ".join("" for _ in jobs[1:]) + " |"]
    for m in methods:
        cells = []
        for n in jobs:
            w = float(np.median([x["wall"] for x in res[m][n]]))
            steady = [x["steady"] for x in res[m][n] if "steady" in x]
            cell = f"{w:.2f} s ({seq / w:.2f}×"
            if steady:
                cell += f"; steady {seq / float(np.median(steady)):.2f}×"
            cells.append(cell + f" = {seq / w / n:.2f} per job)")
        lines.append(f"| {LABELS[m]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def overhead(jobs: list[int], n_trials: int, repeats: int, methods: list[str]) -> dict:
    res: dict = {"sequential": {1: [run("sequential", 1, n_trials, 0, r) for r in range(repeats)]}}
    for m in methods:
        for n in jobs:
            res.setdefault(m, {})[n] = [run(m, n, n_trials, 0, r) for r in range(repeats)]
            print(f"  overhead {m} n_jobs={n}: {np.median([x['wall'] for x in res[m][n]]):.2f} s", file=sys.stderr,
                  flush=True)
    return res


def overhead_table(res: dict, jobs: list[int], methods: list[str], n_trials: int) -> str:
    lines = ["| method | " + " | ".join(f"n_jobs={n}: ms/trial (steady)" for n in jobs) + " |",
             "|---" * (len(jobs) + 1) + "|"]
    seq = float(np.median([x["wall"] for x in res["sequential"][1]]))
    lines.append(f"| {LABELS['sequential']} | {1000 * seq / n_trials:.2f} | " + " | ".join("" for _ in jobs[1:]) + " |")
    for m in methods:
        cells = []
        for n in jobs:
            runs = res[m][n]
            wall = float(np.median([x["wall"] for x in runs]))
            steady = [x["steady"] for x in runs if "steady" in x]
            cells.append(f"{1000 * wall / n_trials:.2f}" + (f" ({1000 * float(np.median(steady)) / n_trials:.2f})"
                                                            if steady else ""))
        lines.append(f"| {LABELS[m]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _parallel_quality_run(dom_name: str, seed: int, n_evals: int, n_jobs: int, delay: float) -> list[float]:
    from hpo_mongo import ParallelTrials, fmin, hp, tpe
    dom = DOMAINS[dom_name]
    space = dom.space(hp)

    def objective(params: dict) -> float:
        time.sleep(delay)
        noise = np.random.default_rng(zlib.crc32(repr(params).encode()))  # noise per point
        return float(dom.objective(params, noise))
    trials = ParallelTrials(n_jobs, subprocess=False)
    fmin(objective, space, algo=tpe.suggest, max_evals=n_evals, trials=trials, show_progressbar=False,
         rstate=np.random.default_rng(seed))
    return [float(t["result"]["loss"]) for t in trials.trials if t["result"].get("loss") is not None]


def quality(domains: list[str], seeds: list[int], n_jobs: int, delay: float, bench_jobs: int) -> dict:
    from bench import run as brun
    seq = brun.quality(domains, ["tpe"], seeds, 100, bench_jobs)
    sim = brun.quality(domains, ["tpe"], seeds, 100, bench_jobs, n_pending=2 * n_jobs)
    par: dict = {}
    for d in domains:
        for s in seeds:
            losses = _parallel_quality_run(d, s, 100, n_jobs, delay)
            best = np.minimum.accumulate(losses)
            par.setdefault(d, {}).setdefault("tpe", {})[s] = {"100": float(best[-1])}
            print(f"  quality {d} seed {s}: {best[-1]:.4g}", file=sys.stderr, flush=True)
    return {"sequential": seq, "simulated": sim, "parallel": par}


def quality_table(res: dict, n_jobs: int) -> str:
    from bench import run as brun
    real = brun.pending_tables(res["sequential"], res["parallel"], ["tpe"],
                               label=f"ParallelTrials(n_jobs={n_jobs})")
    sim = brun.pending_tables(res["sequential"], res["simulated"], ["tpe"], label=f"{2 * n_jobs} pending (simulated)")
    return f"{real}\n\nbench/run.py's simulation of the same pending count:\n\n{sim}"


# =========================================================================== main
def main(argv: list[str] | None = None) -> int:
    from hpo_mongo.worker.pool import available_cores
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a short validation run")
    ap.add_argument("--sections", default="speedup,overhead,quality")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--trials", type=int, default=None, help="evaluations per speed-up run (default 64; quick 16)")
    ap.add_argument("--overhead-trials", type=int, default=None, help="default 400; quick 100")
    ap.add_argument("--repeats", type=int, default=None, help="runs per cell, median reported (default 3; quick 1)")
    ap.add_argument("--seeds", type=int, default=None, help="quality seeds (default 10; quick 2)")
    ap.add_argument("--quality-domains", default=None, help=f"default {','.join(QUALITY_DOMAINS)}")
    ap.add_argument("--quality-jobs", type=int, default=4)
    ap.add_argument("--quality-delay", type=float, default=0.05)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "out"))
    a = ap.parse_args(argv)
    logging.getLogger("hpo_mongo").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    cores = available_cores()
    jobs = sorted({1, 2, cores})
    sections = a.sections.split(",")
    methods = [m for m in a.methods.split(",") if available(m)]
    n_trials = a.trials or (16 if a.quick else 64)
    n_over = a.overhead_trials or (100 if a.quick else 400)
    repeats = a.repeats or (1 if a.quick else 3)
    seeds = list(range(a.seeds or (2 if a.quick else 10)))
    qdoms = a.quality_domains.split(",") if a.quality_domains else (
        ["branin", "mixed10"] if a.quick else list(QUALITY_DOMAINS))
    from bench.run import run_header, write_outputs
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    head = run_header("bench.parallel", argv, f"{cores} cores available; load average at start {load:.1f}",
                      packages=("numpy", "optuna", "joblib"))
    report, raw = [head], {}
    print(head, flush=True)

    def emit(title: str, body: str) -> None:
        block = f"\n### {title}\n\n{body}\n"
        report.append(block)
        print(block, flush=True)

    if "speedup" in sections:
        n_iter = calibrate(0.2)
        t0 = time.perf_counter()
        res = speedup(jobs, n_trials, n_iter, repeats, methods)
        raw["speedup"] = res
        emit(f"Speed-up: {n_trials} evaluations of a 0.2 s CPU-bound objective, random search, median of "
             f"{repeats} ({time.perf_counter() - t0:.0f} s)", speedup_table(res, jobs, methods))
    if "overhead" in sections:
        t0 = time.perf_counter()
        res = overhead(jobs, n_over, repeats, methods)
        raw["overhead"] = res
        emit(f"Per-trial overhead: {n_over} evaluations of a trivial objective, random search, median of {repeats}; "
             f"ms per trial of wall time, workers' start included (steady state from the trials' times) "
             f"({time.perf_counter() - t0:.0f} s)", overhead_table(res, jobs, [m for m in methods], n_over))
    if "quality" in sections:
        t0 = time.perf_counter()
        res = quality(qdoms, seeds, a.quality_jobs, a.quality_delay, cores)
        raw["quality"] = res
        emit(f"TPE with ParallelTrials(n_jobs={a.quality_jobs}) vs sequential: best loss at 100 evaluations, "
             f"median over {len(seeds)} seeds, {a.quality_delay:g} s per evaluation ({time.perf_counter() - t0:.0f} s)",
             quality_table(res, a.quality_jobs))
    write_outputs(a.out, "parallel-", report, raw, a.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
