"""Pruning benchmark: hpo_mongo's pruners against Optuna's, both with their default TPE.

    python -m bench.pruning                          # synthetic + sgd + mlp, 10 seeds (mlp ≈ long)
    python -m bench.pruning --tasks synthetic --seeds 10
    python -m bench.pruning --tasks mlp --seeds 3 --budget-trials 40     # a reduced run
    python -m bench.pruning --rules --tasks synthetic,sgd                # TPE's pruned-trial rule
    python -m bench.pruning --tasks synthetic --seeds 3 --libs mongo-4w  # 4 hpo-mongo-worker processes

Tasks (no downloads): ``synthetic``, a learning-curve family with a known optimum (crossing
curves: a large learning rate converges fast to a worse loss); ``sgd``, scikit-learn's
SGDClassifier (log loss) and ``mlp``, MLPClassifier, both trained epoch by epoch with
``partial_fit`` on the bundled digits data, validation log loss reported after every epoch.
Each trial runs up to ``EPOCHS`` epochs, reporting ``step = epochs done``. A run stops when
the epochs spent (all trials, pruned ones included) reach the budget (``--budget-trials`` full
trials' worth; no-pruning runs get ``NONE_FACTOR`` times more). Measured per method over seeds:
the quality of the best complete trial so far (picked by its final validation loss; scored by
that loss, without the synthetic task's measurement noise) as a function of the epochs spent
(anytime curve, plotted to ``bench/out/``), and the epochs spent until it first reaches a
target: the median over the no-pruning runs (both libraries) of that quality at the budget.

``--libs`` chooses the runs: ``hpo_mongo`` (in-memory Trials, evaluated in fmin's process),
``optuna``, ``parallel-4w``: ``ParallelTrials(4)`` (4 local worker processes on the driver's
in-memory queue), and ``mongo-4w``: MongoTrials with 4 ``hpo-mongo-worker`` processes (forked child
per trial, the pruner deciding in the workers) on the java test server (``--mongo URL`` for another
server). Runs with workers stop when the epochs of the finished trials reach the budget; their
epochs at each trial's end count every trial's epochs done by then (each trial's epochs spread
evenly over its run time, from the server's start and end times).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import functools
import json
import math
import os
import sys
import time
import uuid
import warnings
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

EPOCHS = 27
METHODS = ("none", "median", "asha", "hyperband")
#: no-pruning runs get this many times the budget, so their epochs to the target can be measured
#: (``--none-factor``)
NONE_FACTOR = 4
OUT = os.path.join(os.path.dirname(__file__), "out")


# =========================================================================== tasks
class Task:
    """A search space (a list of ``(name, kind, *args)``) and a trainer: ``start(params, seed)``
    returns ``step() -> validation loss`` advancing one epoch; ``step.clean`` is the loss without
    measurement noise (the quality the benchmark scores; = the value for real tasks)."""

    name = ""
    space: list[tuple] = []

    def start(self, params: dict, seed: int) -> Callable[[], float]:
        raise NotImplementedError


class Synthetic(Task):
    """Learning curves ``(final + (2.3 - final) * exp(-k t)) * (1 + 0.03 noise)``.

    ``final`` (the loss after infinite training) is lowest (0.05) at lr=1e-2, alpha=1e-4,
    width=128, opt=adam; the rate ``k`` peaks (0.5 per epoch) at lr=10**-1.8 and falls on both
    sides (0.05 at lr=1e-4, 0.07 at lr=1: too large a step is unstable). So the best lr also
    trains almost fastest, curves cross where fast training meets a worse ``final`` (lr just
    above the best, or a bad alpha / width / optimiser), and a slow lr still improves at the last
    epoch. The best noise-free loss after EPOCHS epochs is :meth:`optimum`.
    """

    name = "synthetic"
    space = [("lr", "loguniform", 1e-4, 1.0), ("alpha", "loguniform", 1e-7, 1e-1),
             ("width", "quniform", 16, 256, 16), ("opt", "choice", ("sgd", "adam", "rmsprop"))]
    _opt_penalty = {"sgd": 0.6, "adam": 0.0, "rmsprop": 0.25}

    def curve(self, params: dict) -> tuple[float, float]:
        """``(final, k)`` of a configuration."""
        lr = math.log10(params["lr"])
        q = (((lr + 2) / 1.2) ** 2 + ((math.log10(params["alpha"]) + 4) / 2.5) ** 2
             + ((params["width"] - 128) / 110) ** 2 + self._opt_penalty[params["opt"]])
        return 0.05 + 0.6 * q / (1 + q), 0.05 + 0.45 * math.exp(-(lr + 1.8) ** 2)

    def optimum(self) -> float:
        """The lowest noise-free loss after EPOCHS epochs (lr scanned, the rest at its best)."""
        best = math.inf
        for lr in np.linspace(-4, 0, 4001):
            final, k = self.curve({"lr": 10 ** lr, "alpha": 1e-4, "width": 128, "opt": "adam"})
            best = min(best, final + (2.3 - final) * math.exp(-k * EPOCHS))
        return best

    def start(self, params: dict, seed: int) -> Callable[[], float]:
        final, k = self.curve(params)
        rng = np.random.default_rng([seed, int(1e6 * params["lr"]) % 2**31, int(1e9 * params["alpha"]) % 2**31])
        t = [0]

        def step() -> float:
            t[0] += 1
            step.clean = float(final + (2.3 - final) * math.exp(-k * t[0]))
            return step.clean * (1.0 + 0.03 * float(rng.standard_normal()))

        return step


class _Digits(Task):
    def data(self):
        if not hasattr(self, "_data"):
            from sklearn.datasets import load_digits
            from sklearn.model_selection import train_test_split
            from sklearn.preprocessing import StandardScaler
            X, y = load_digits(return_X_y=True)
            Xtr, Xva, ytr, yva = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
            sc = StandardScaler().fit(Xtr)
            self._data = (sc.transform(Xtr), sc.transform(Xva), ytr, yva, np.unique(y))
        return self._data

    def _loop(self, model, seed: int) -> Callable[[], float]:
        from sklearn.metrics import log_loss
        Xtr, Xva, ytr, yva, classes = self.data()
        rng = np.random.default_rng(seed)

        def step() -> float:
            order = rng.permutation(len(ytr))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.partial_fit(Xtr[order], ytr[order], classes=classes)
                p = model.predict_proba(Xva)
                ok = np.all(np.isfinite(p))
                step.clean = float(log_loss(yva, np.clip(p, 1e-7, 1.0), labels=classes)) if ok else float("nan")
            return step.clean

        return step


class SGD(_Digits):
    name = "sgd"
    space = [("alpha", "loguniform", 1e-7, 1e-1), ("eta0", "loguniform", 1e-5, 1.0),
             ("learning_rate", "choice", ("constant", "invscaling", "adaptive")),
             ("penalty", "choice", ("l2", "l1", "elasticnet"))]

    def start(self, params: dict, seed: int) -> Callable[[], float]:
        from sklearn.linear_model import SGDClassifier
        model = SGDClassifier(loss="log_loss", alpha=params["alpha"], eta0=params["eta0"],
                              learning_rate=params["learning_rate"], penalty=params["penalty"],
                              random_state=seed)
        return self._loop(model, seed)


class MLP(_Digits):
    name = "mlp"
    space = [("lr", "loguniform", 1e-5, 1e-1), ("alpha", "loguniform", 1e-7, 1e-1),
             ("width", "quniform", 8, 128, 8), ("batch", "choice", (32, 128, 512))]

    def start(self, params: dict, seed: int) -> Callable[[], float]:
        from sklearn.neural_network import MLPClassifier
        model = MLPClassifier(hidden_layer_sizes=(int(params["width"]),), learning_rate_init=params["lr"],
                              alpha=params["alpha"], batch_size=int(params["batch"]), random_state=seed)
        return self._loop(model, seed)


TASKS = {t.name: t for t in (Synthetic(), SGD(), MLP())}


# =========================================================================== the two libraries
class Ledger:
    """Epochs spent and ``(epochs at trial end, final loss, its clean value)`` per trial of one run
    (losses None for a pruned trial)."""

    def __init__(self, budget: int):
        self.budget, self.epochs, self.ends = budget, 0, []

    @property
    def spent(self) -> bool:
        return self.epochs >= self.budget


def _train(task: Task, params: dict, seed: int, ledger: Ledger, report: Callable[[float, int], None]) -> float:
    """One trial: train up to EPOCHS epochs, calling ``report`` after each (it raises to prune);
    ``seed`` is the trial's own."""
    step = task.start(params, seed)
    value = float("nan")
    try:
        for epoch in range(1, EPOCHS + 1):
            value = step()
            ledger.epochs += 1
            report(value, epoch)
    except BaseException:
        ledger.ends.append((ledger.epochs, None, None))
        raise
    ok = math.isfinite(value)
    ledger.ends.append((ledger.epochs, value if ok else None, step.clean if ok else None))
    return value if ok else float("inf")


def _hpo_pruner(method: str):
    from hpo_mongo import pruners
    return {"none": None, "median": pruners.MedianPruner(),
            "asha": pruners.SuccessiveHalvingPruner(),
            "hyperband": pruners.HyperbandPruner(max_resource=EPOCHS)}[method]


def run_hpo(task: Task, method: str, seed: int, budget: int) -> Ledger:
    from hpo_mongo import Trials, fmin, report, tpe
    space = _hpo_space(task)
    ledger = Ledger(budget)

    def objective(params: dict) -> float:
        return _train(task, params, seed + 7919 * len(ledger.ends), ledger, lambda v, s: report(v, step=s))

    fmin(objective, space, algo=tpe.suggest, max_evals=100_000, trials=Trials(), pruner=_hpo_pruner(method),
         rstate=np.random.default_rng(seed), show_progressbar=False,
         early_stop_fn=lambda trials, *a: (ledger.spent, a))
    return ledger


def run_optuna(task: Task, method: str, seed: int, budget: int) -> Ledger:
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = {"none": optuna.pruners.NopPruner(), "median": optuna.pruners.MedianPruner(),
              "asha": optuna.pruners.SuccessiveHalvingPruner(),
              "hyperband": optuna.pruners.HyperbandPruner(max_resource=EPOCHS)}[method]
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruner)
    ledger = Ledger(budget)

    def objective(trial) -> float:
        params = {}
        for name, kind, *args in task.space:
            if kind == "choice":
                params[name] = trial.suggest_categorical(name, list(args[0]))
            elif kind == "loguniform":
                params[name] = trial.suggest_float(name, args[0], args[1], log=True)
            else:
                params[name] = trial.suggest_float(name, args[0], args[1], step=args[2])

        def rep(v: float, s: int) -> None:
            trial.report(v, s)
            if trial.should_prune():
                raise optuna.TrialPruned()

        return _train(task, params, seed + 7919 * len(ledger.ends), ledger, rep)

    def stop(study, trial) -> None:
        if ledger.spent:
            study.stop()

    study.optimize(objective, n_trials=100_000, callbacks=[stop])
    return ledger


def _hpo_space(task: Task) -> dict:
    from hpo_mongo import hp
    space = {}
    for name, kind, *args in task.space:
        if kind == "choice":
            space[name] = hp.choice(name, list(args[0]))
        elif kind == "loguniform":  # hyperopt's bounds are in log space
            space[name] = hp.loguniform(name, math.log(args[0]), math.log(args[1]))
        else:
            space[name] = hp.quniform(name, *args)
    return space


# =========================================================================== hpo_mongo with worker processes
N_WORKERS = 4


def worker_trial(task_name: str, seed: int, params: dict) -> dict:
    """A trial on a worker (pickled by reference: the workers import this module): the task by
    name, the trial's seed from its point; returns the final loss and its clean value."""
    from hpo_mongo import report
    ledger = Ledger(math.inf)
    trial_seed = seed + zlib.crc32(repr(sorted(params.items())).encode())
    value = _train(TASKS[task_name], params, trial_seed, ledger, lambda v, s: report(v, step=s))
    clean = ledger.ends[-1][2]
    return {"loss": value, "status": "ok", "clean": clean}


def _epochs_finished(trials) -> int:
    """Epochs of the driver's finished trials (a pruned trial's ``pruned_step``, EPOCHS otherwise)."""
    n = 0
    for t in trials.trials:
        res = t.get("result") or {}
        if res.get("status") == "pruned":
            n += int(res.get("pruned_step") or 0)
        elif res.get("status") == "ok":
            n += EPOCHS
    return n


def ledger_from_docs(docs: list[dict], budget: int) -> Ledger:
    """The :class:`Ledger` of a run from its trial documents: trials in end order, the epochs at
    each end = every trial's reports, each trial's spread evenly between its start and end."""
    done = sorted((d for d in docs if d.get("state") == 2 and d.get("end_time") and d.get("start_time")),
                  key=lambda d: d["end_time"])
    led = Ledger(budget)
    if not done:
        return led
    t0 = min(d["start_time"] for d in done)
    start = np.array([(d["start_time"] - t0).total_seconds() for d in done])
    end = np.array([(d["end_time"] - t0).total_seconds() for d in done])
    epochs = np.array([len(d.get("reports") or ()) for d in done], float)
    frac = np.clip((end[:, None] - start[None, :]) / np.maximum(end - start, 1e-9)[None, :], 0.0, 1.0)
    at_end = (frac * epochs[None, :]).sum(axis=1)  # row j: epochs of every trial done by trial j's end
    for d, e in zip(done, at_end, strict=True):
        res = d["result"]
        ok = res.get("status") == "ok" and isinstance(res.get("loss"), float) and math.isfinite(res["loss"])
        led.ends.append((int(round(e)), res["loss"] if ok else None, res.get("clean") if ok else None))
    led.epochs = int(epochs.sum())
    return led


class MongoWorkers:
    """``run(task, method, seed, budget)`` with MongoTrials and N_WORKERS ``hpo-mongo-worker``
    processes, on the java test server (started once) or ``--mongo URL``."""

    def __init__(self, url: str | None = None, logdir: str = OUT):
        self._stack = contextlib.ExitStack()
        self._url, self.server, self.logdir = url, None, Path(logdir)

    def __enter__(self) -> "MongoWorkers":
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def run(self, task: Task, method: str, seed: int, budget: int) -> Ledger:
        from bench.throughput import mongo, start_worker, stop, test_server, wait_workers
        from hpo_mongo import fmin, tpe
        from hpo_mongo.trials.mongo.store import MongoTrials
        if self.server is None:
            self.server, _ = self._stack.enter_context(test_server(self._url))
        url = f"{self.server}/bench_prune_{uuid.uuid4().hex[:8]}"
        client, db = mongo(url)
        self.logdir.mkdir(parents=True, exist_ok=True)
        # hpo-mongo-worker with its defaults; bench/ is importable there (the objective lives in it)
        workers = [start_worker(url, "--exp-key", "pruning", log=self.logdir / f"pruning-worker-{i}.log")
                   for i in range(N_WORKERS)]
        try:
            wait_workers(db, N_WORKERS)
            trials = MongoTrials(url, exp_key="pruning")
            from bench import pruning as by_name  # under its import name (not __main__): pickled by reference
            fmin(functools.partial(by_name.worker_trial, task.name, seed), _hpo_space(task), algo=tpe.suggest,
                 max_evals=100_000, trials=trials, pruner=_hpo_pruner(method), rstate=np.random.default_rng(seed),
                 show_progressbar=False, max_queue_len=N_WORKERS,
                 early_stop_fn=lambda t, *a: (_epochs_finished(t) >= budget, a))
            deadline = time.monotonic() + 600
            while db.jobs.count_documents({"exp_key": "pruning", "state": 1}) and time.monotonic() < deadline:
                time.sleep(0.1)  # the trials still running when fmin stopped
            return ledger_from_docs(list(db.jobs.find({"exp_key": "pruning"})), budget)
        finally:
            stop(workers)
            client.drop_database(url.rsplit("/", 1)[1])
            client.close()


def run_parallel(task: Task, method: str, seed: int, budget: int) -> Ledger:
    """``ParallelTrials(4)``: the worker loop on the driver's in-memory queue, a forked child per
    trial, the pruner deciding in the workers; stops when the finished trials' epochs reach the budget."""
    from hpo_mongo import ParallelTrials, fmin, tpe
    from bench import pruning as by_name  # under its import name (not __main__): pickled by reference
    trials = ParallelTrials(N_WORKERS)
    fmin(functools.partial(by_name.worker_trial, task.name, seed), _hpo_space(task), algo=tpe.suggest,
         max_evals=100_000, trials=trials, pruner=_hpo_pruner(method), rstate=np.random.default_rng(seed),
         show_progressbar=False, early_stop_fn=lambda t, *a: (_epochs_finished(t) >= budget, a))
    return ledger_from_docs(trials.queue.find(trials.exp_key, full=True), budget)


LIBS = {"hpo_mongo": run_hpo, "optuna": run_optuna, "parallel-4w": run_parallel}
#: the line style of each library in the plots
LIB_STYLE = {"hpo_mongo": "-", "optuna": "--", "mongo-4w": ":", "parallel-4w": (0, (3, 1, 1, 1))}


# =========================================================================== measures
def best_so_far(ledger: Ledger) -> tuple[np.ndarray, np.ndarray]:
    """``(epochs at each trial end, clean loss of the best complete trial so far)``: the trial a
    user would pick (lowest final validation loss), scored by its clean loss (inf: none yet)."""
    ends = np.array([e for e, _, _ in ledger.ends], float)
    final = np.array([np.inf if v is None else v for _, v, _ in ledger.ends], float)
    clean = np.array([np.inf if c is None else c for _, _, c in ledger.ends], float)
    if not len(final):
        return ends, final
    pick = np.maximum.accumulate(np.where(final == np.minimum.accumulate(final), np.arange(len(final)), 0))
    return ends, np.where(np.isfinite(np.minimum.accumulate(final)), clean[pick], np.inf)


def anytime(ledger: Ledger, budgets: np.ndarray) -> np.ndarray:
    """The quality of the best trial that completed within each budget (inf: none yet)."""
    ends, best = best_so_far(ledger)
    idx = np.searchsorted(ends, budgets, side="right") - 1
    return np.where(idx >= 0, best[np.maximum(idx, 0)] if len(best) else np.inf, np.inf)


def epochs_to(ledger: Ledger, target: float) -> float:
    """Epochs spent when the picked trial's quality first reached ``target`` (inf: never)."""
    ends, best = best_so_far(ledger)
    hit = np.flatnonzero(best <= target)
    return float(ends[hit[0]]) if hit.size else math.inf


def _q(x: np.ndarray) -> tuple[float, float, float]:
    return tuple(float(np.percentile(x, p)) for p in (25, 50, 75))


def run_task(task: Task, seeds: int, budget_trials: int, libs: list[str], methods: list[str], log,
             none_factor: int = NONE_FACTOR, *, runners: dict | None = None) -> dict:
    """Every (library, method) run over the seeds; ``runners`` maps a library name to its run
    function (default :data:`LIBS`)."""
    runners = LIBS if runners is None else runners
    budget = budget_trials * EPOCHS
    grid = np.unique(np.linspace(budget / 20, budget, 40).astype(int))
    curves: dict[str, np.ndarray] = {}
    ledgers: dict[str, list[Ledger]] = {}
    for lib in libs:
        for method in methods:
            key = f"{lib} {method}"
            t0 = time.time()
            run_budget = budget * (none_factor if method == "none" else 1)
            ledgers[key] = [runners[lib](task, method, seed, run_budget) for seed in range(seeds)]
            curves[key] = np.array([anytime(led, grid) for led in ledgers[key]])
            n_trials = np.median([len(led.ends) for led in ledgers[key]])
            log(f"  {task.name:9s} {key:20s} {time.time() - t0:7.1f} s  median {n_trials:.0f} trials")
    return {"grid": grid, "curves": curves, "ledgers": ledgers, "budget": budget, "none_factor": none_factor}


TARGET_FRACTIONS = (0.25, 0.5, 1.0)


def report_task(task: Task, res: dict, out: list[str]) -> None:
    grid, curves, ledgers, budget = res["grid"], res["curves"], res["ledgers"], res["budget"]
    n_seeds = len(next(iter(ledgers.values())))
    out.append(f"\n### {task.name}: quality of the best trial vs epochs spent (median [IQR] over {n_seeds} seeds; "
               f"budget {budget} epochs = {budget // EPOCHS} full trials)\n")
    marks = [int(round(budget * f)) for f in (0.1, 0.25, 0.5, 1.0)]
    cols = [min(int(np.searchsorted(grid, m, side="left")), len(grid) - 1) for m in marks]
    out.append("| method | " + " | ".join(f"{grid[c]} epochs" for c in cols) + " | trials (median) |")
    out.append("|---|" + "---|" * (len(cols) + 1))
    for key, cur in curves.items():
        cells = []
        for c in cols:
            lo, med, hi = _q(cur[:, c])
            cells.append(f"{med:.4f} [{lo:.4f}, {hi:.4f}]")
        n_trials = np.median([len(led.ends) for led in ledgers[key]])
        out.append(f"| {key} | " + " | ".join(cells) + f" | {n_trials:.0f} |")
    if isinstance(task, Synthetic):
        out.append(f"\nKnown optimum after {EPOCHS} epochs: {task.optimum():.4f}.")
    none_keys = [k for k in curves if k.endswith(" none")]
    if not none_keys:
        return
    targets = []
    for f in TARGET_FRACTIONS:
        c = min(int(np.searchsorted(grid, int(round(budget * f)), side="left")), len(grid) - 1)
        targets.append(float(np.median(np.concatenate([curves[k][:, c] for k in none_keys]))))
    out.append(f"\nEpochs until the best trial reaches a target: median over seeds (inf: not within the run; "
               f"no-pruning runs go on to {res['none_factor'] * budget} epochs), in brackets the seeds that reached "
               f"it and the saving against the same library without pruning. Targets: the no-pruning median "
               f"(both libraries) at " + ", ".join(f"{f:g}" for f in TARGET_FRACTIONS) + " of the budget.\n")
    out.append("| method | " + " | ".join(f"target {t:.4f}" for t in targets) + " |")
    out.append("|---|" + "---|" * len(targets))
    for key in curves:
        lib = key.split()[0]
        cells = []
        for t in targets:
            e = np.array([epochs_to(led, t) for led in ledgers[key]])
            med = float(np.median(e))
            base = float(np.median([epochs_to(led, t) for led in ledgers.get(f"{lib} none", [])] or [math.nan]))
            ratio = ""
            if math.isfinite(med) and not key.endswith(" none") and f"{lib} none" in ledgers:
                # no-pruning never got there: the ratio is a lower bound
                ratio = (f", {base / med:.1f}x" if math.isfinite(base)
                         else f", >{res['none_factor'] * budget / med:.1f}x")
            cells.append(f"{med:.0f} ({int(np.isfinite(e).sum())}/{len(e)}{ratio})")
        out.append(f"| {key} | " + " | ".join(cells) + " |")


def plot_task(task: Task, res: dict, stamp: str) -> str | None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    floor = task.optimum() if isinstance(task, Synthetic) else 0.0
    colors = {m: f"C{i}" for i, m in enumerate(METHODS)}
    for key, cur in res["curves"].items():
        c = np.where(np.isfinite(cur), cur - floor, np.nan)
        lo, med, hi = (np.nanpercentile(c, p, axis=0) for p in (25, 50, 75))
        lib, method = key.split()
        style = LIB_STYLE.get(lib, "-.")
        ax.plot(res["grid"], med, linestyle=style, color=colors.get(method), label=key)
        ax.fill_between(res["grid"], lo, hi, color=colors.get(method), alpha=0.08)
    ax.set_xlabel("epochs spent (all trials)")
    ax.set_ylabel("regret of the best trial (loss - optimum)" if floor else "validation loss of the best trial")
    ax.set_title(f"{task.name}: anytime quality (median over seeds, IQR shaded)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, f"pruning-{task.name}-{stamp}.png")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_rules(tasks: list[Task], seeds: int, budget_trials: int, log) -> list[str]:
    """TPE's rule for pruned trials (hpo_mongo.algos.base.PRUNED_RULE) under each pruner: the
    quality of the best trial at 1/4, 1/2 and all of the budget."""
    from hpo_mongo.algos import base
    fractions = (0.25, 0.5, 1.0)
    out = ["\n### TPE's pruned-trial rule (hpo_mongo.algos.base.PRUNED_RULE): quality of the best trial at "
           + ", ".join(f"{f:g}" for f in fractions) + f" of the budget (median over {seeds} seeds)\n",
           "| task | pruner | " + " | ".join(base.PRUNED_RULES) + " |", "|---|---|" + "---|" * len(base.PRUNED_RULES)]
    saved = base.PRUNED_RULE
    try:
        for task in tasks:
            budget = budget_trials * EPOCHS
            marks = np.array([int(budget * f) for f in fractions])
            for method in METHODS[1:]:
                cells = []
                for rule in base.PRUNED_RULES:
                    base.PRUNED_RULE = rule
                    t0 = time.time()
                    q = np.array([anytime(run_hpo(task, method, s, budget), marks) for s in range(seeds)])
                    med = np.median(q, axis=0)
                    cells.append(" / ".join(f"{m:.4f}" for m in med))
                    log(f"  rules {task.name} {method} {rule}: {cells[-1]} ({time.time() - t0:.0f} s)")
                out.append(f"| {task.name} | {method} | " + " | ".join(cells) + " |")
    finally:
        base.PRUNED_RULE = saved
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="synthetic,sgd,mlp")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--budget-trials", type=int, default=100, help="epoch budget in full trials (x EPOCHS)")
    ap.add_argument("--libs", default="hpo_mongo,optuna",
                    help="hpo_mongo, optuna, parallel-4w, mongo-4w (comma-separated)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--none-factor", type=int, default=NONE_FACTOR, help="budget multiplier of no-pruning runs")
    ap.add_argument("--rules", action="store_true", help="compare TPE's pruned-trial rules instead")
    ap.add_argument("--mongo", default=None, help="server base URL for mongo-4w (default: the java test server)")
    args = ap.parse_args(argv)
    tasks = [TASKS[t] for t in args.tasks.split(",")]
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    t_start = time.time()

    def log(msg: str) -> None:
        print(msg, flush=True)

    shown = sys.argv[1:] if argv is None else argv
    out = [f"## Pruning benchmark ({_dt.date.today()}, `python -m bench.pruning {' '.join(shown)}`, "
           f"load {os.getloadavg()[0]:.2f})"]
    if args.rules:
        out += run_rules(tasks, args.seeds, args.budget_trials, log)
    else:
        raw = {}
        with MongoWorkers(args.mongo) as workers:
            libs = {**LIBS, "mongo-4w": workers.run}
            for task in tasks:
                res = run_task(task, args.seeds, args.budget_trials, args.libs.split(","), args.methods.split(","),
                               log, args.none_factor, runners=libs)
                report_task(task, res, out)
                path = plot_task(task, res, stamp)
                if path:
                    out.append(f"\nPlot: `{os.path.relpath(path, os.path.dirname(OUT))}`")
                raw[task.name] = {k: [led.ends for led in v] for k, v in res["ledgers"].items()}
        os.makedirs(OUT, exist_ok=True)
        with open(os.path.join(OUT, f"pruning-raw-{stamp}.json"), "w") as f:
            json.dump(raw, f)
    out.append(f"\n({time.time() - t_start:.0f} s, load {os.getloadavg()[0]:.2f} at the end)")
    text = "\n".join(out)
    print(text)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, f"pruning-{stamp}.md"), "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
