"""Benchmark driver: quality, suggestion time, parallel spread and 8-pending quality.

    python -m bench.run                 # full run (≈ 20-30 min on 2 cores), tables to stdout
    python -m bench.run --quick         # 3 seeds, fewer domains and sizes (a couple of minutes)
    python -m bench.run --sections timing,spread

Tables are printed as Markdown and written to ``bench/out/results-<date>.md`` (raw numbers
in ``bench/out/raw-<date>.json``). hyperopt and Optuna rows appear when they are installed
(``pip install -e .[bench]``). Seeds 0..9 drive both the optimizer and the domain's noise.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import functools
import json
import math
import multiprocessing as mp
import os
import platform
import sys
import time
import warnings
from typing import Any, Callable

import numpy as np

from bench.domains import DOMAINS, BenchDomain

CHECKPOINTS = (50, 100, 200)
HPO_OPTIMIZERS = ("tpe", "tpe-uni", "anneal", "rand")
EXT_OPTIMIZERS = ("hyperopt-tpe", "optuna-tpe")


def _have(mod: str) -> bool:
    try:
        __import__(mod)
        return True
    except ImportError:
        return False


def optimizers() -> list[str]:
    out = list(HPO_OPTIMIZERS)
    if _have("hyperopt"):
        out.append("hyperopt-tpe")
    if _have("optuna"):
        out.append("optuna-tpe")
    return out


# =========================================================================== hpo_mongo
def _hpo_algo(name: str) -> Callable:
    """``tpe``, ``tpe-uni``, ``anneal``, ``rand``, or a TPE variant for experiments written
    ``tpe:key=value;key=value`` (e.g. ``tpe:n_EI_candidates=48``; values parsed as Python
    literals), which is passed as keyword options to ``tpe.suggest``."""
    from hpo_mongo import anneal, rand, tpe
    if name.startswith("tpe:"):
        import ast
        opts = {}
        for kv in name[4:].split(";"):
            k, v = kv.split("=", 1)
            opts[k.strip()] = ast.literal_eval(v.strip())
        return functools.partial(tpe.suggest, **opts)
    return {"tpe": tpe.suggest, "tpe-uni": functools.partial(tpe.suggest, multivariate=False),
            "anneal": anneal.suggest, "rand": rand.suggest}[name]


def _hpo_loop(dom: BenchDomain, algo: Callable, seed: int, n_evals: int, n_pending: int) -> list[float]:
    """Suggest → evaluate with ``n_pending`` trials always outstanding (0 = sequential)."""
    from hpo_mongo import Domain, Trials, hp, space_eval
    from hpo_mongo.trials.documents import JOB_STATE_DONE
    space = dom.space(hp)
    noise = np.random.default_rng(seed + 10_000)
    domain = Domain(lambda c: 0.0, space)
    trials = Trials()
    rs = np.random.default_rng(seed)
    queue: list[int] = []
    losses: list[float] = []
    by_tid: dict[int, dict] = {}
    while len(losses) < n_evals:
        if len(by_tid) < n_evals:
            ids = trials.new_trial_ids(1)
            docs = algo(ids, domain, trials, int(rs.integers(2**31 - 1)))
            trials.insert_trial_docs(docs)
            trials.refresh()
            for d in trials._dynamic_trials[-len(docs):]:
                by_tid[d["tid"]] = d
                queue.append(d["tid"])
        if len(queue) > n_pending or len(by_tid) >= n_evals:
            doc = by_tid[queue.pop(0)]
            vals = {k: v[0] for k, v in doc["misc"]["vals"].items() if v}
            loss = float(dom.objective(space_eval(space, vals), noise))
            doc.update(state=JOB_STATE_DONE, result={"status": "ok", "loss": loss})
            trials.refresh()
            losses.append(loss)
    return losses


# =========================================================================== hyperopt
def _hyperopt_loop(dom: BenchDomain, seed: int, n_evals: int, n_pending: int) -> list[float]:
    import hyperopt
    from hyperopt import hp, tpe
    space = dom.space(hp)
    noise = np.random.default_rng(seed + 10_000)
    domain = hyperopt.Domain(lambda c: 0.0, space)
    trials = hyperopt.Trials()
    rs = np.random.default_rng(seed)
    queue: list[dict] = []
    losses: list[float] = []
    n_made = 0
    while len(losses) < n_evals:
        if n_made < n_evals:
            ids = trials.new_trial_ids(1)
            docs = tpe.suggest(ids, domain, trials, int(rs.integers(2**31 - 1)))
            trials.insert_trial_docs(docs)
            trials.refresh()
            queue.append(trials._dynamic_trials[-1])
            n_made += 1
        if len(queue) > n_pending or n_made >= n_evals:
            doc = queue.pop(0)
            vals = {k: v[0] for k, v in doc["misc"]["vals"].items() if v}
            loss = float(dom.objective(hyperopt.space_eval(space, vals), noise))
            doc["state"] = hyperopt.JOB_STATE_DONE
            doc["result"] = {"status": "ok", "loss": loss}
            trials.refresh()
            losses.append(loss)
    return losses


# =========================================================================== optuna
def optuna_params(trial: Any, cs: Any) -> dict[str, float]:
    """Ask an Optuna trial for the active parameters of a compiled hpo_mongo space.

    Quantized kinds are suggested continuous and rounded (``q``); normal kinds become uniform
    over ``mu ± 4 sigma`` (Optuna has no normal prior). Returns ``{label: internal value}``.
    """
    X = np.full(cs.n_params, np.nan)
    vals: dict[str, float] = {}
    for p in cs.params:
        if not (p.always_active or any(all(X[c] == b for c, b in path) for path in p.paths)):
            continue
        d, k, lab = p.dist, p.dist.kind, p.label
        if d.is_categorical:
            v = trial.suggest_categorical(lab, list(range(d.n_options)))
        elif k == "randint":
            v = trial.suggest_int(lab, int(d.low), int(d.high) - 1)
        elif k == "uniformint":
            v = trial.suggest_int(lab, int(d.low), int(d.high))
        elif k in ("uniform", "quniform"):
            v = trial.suggest_float(lab, d.low, d.high)
        elif k in ("loguniform", "qloguniform"):
            v = trial.suggest_float(lab, math.exp(d.low), math.exp(d.high), log=True)
        elif k in ("normal", "qnormal"):
            v = trial.suggest_float(lab, d.mu - 4 * d.sigma, d.mu + 4 * d.sigma)
        else:
            v = trial.suggest_float(lab, math.exp(d.mu - 4 * d.sigma), math.exp(d.mu + 4 * d.sigma), log=True)
        if d.is_quantized and k != "uniformint":
            v = float(d.quantize(v))
        X[p.index] = v
        vals[lab] = v
    return vals


def _optuna_loop(dom: BenchDomain, seed: int, n_evals: int, n_pending: int) -> list[float]:
    import optuna
    from hpo_mongo import hp, space_eval
    from hpo_mongo.space import compile_space
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = dom.space(hp)
    cs = compile_space(space)
    noise = np.random.default_rng(seed + 10_000)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    queue: list[tuple[Any, dict]] = []
    losses: list[float] = []
    n_made = 0
    while len(losses) < n_evals:
        if n_made < n_evals:
            t = study.ask()
            queue.append((t, optuna_params(t, cs)))
            n_made += 1
        if len(queue) > n_pending or n_made >= n_evals:
            t, vals = queue.pop(0)
            loss = float(dom.objective(space_eval(space, vals), noise))
            study.tell(t, loss)
            losses.append(loss)
    return losses


def run_one(task: tuple[str, str, int, int, int]) -> tuple[tuple, list[float], float]:
    dom_name, opt, seed, n_evals, n_pending = task
    dom = DOMAINS[dom_name]
    warnings.filterwarnings("ignore")
    t0 = time.perf_counter()
    if opt == "hyperopt-tpe":
        losses = _hyperopt_loop(dom, seed, n_evals, n_pending)
    elif opt == "optuna-tpe":
        losses = _optuna_loop(dom, seed, n_evals, n_pending)
    else:
        losses = _hpo_loop(dom, _hpo_algo(opt), seed, n_evals, n_pending)
    return task, losses, time.perf_counter() - t0


# =========================================================================== quality
def quality(domains, opts, seeds, n_evals, jobs, n_pending=0) -> dict:
    tasks = [(d, o, s, n_evals, n_pending) for d in domains for o in opts for s in seeds]
    out: dict = {}
    with mp.get_context("fork").Pool(jobs) as pool:
        for i, ((d, o, s, _, _), losses, _secs) in enumerate(pool.imap_unordered(run_one, tasks)):
            if (i + 1) % 20 == 0 or i + 1 == len(tasks):
                print(f"  [{i + 1}/{len(tasks)} runs]", file=sys.stderr, flush=True)
            best = np.minimum.accumulate(losses)
            out.setdefault(d, {}).setdefault(o, {})[s] = {
                str(c): float(best[c - 1]) for c in CHECKPOINTS if c <= len(best)}
    return out


def quality_tables(res: dict, opts: list[str], checkpoints) -> str:
    lines = []
    ranks: dict[int, dict[str, list[float]]] = {}
    for c in checkpoints:
        lines.append(f"\n#### best loss after {c} evaluations: median [IQR] over seeds\n")
        lines.append("| domain | " + " | ".join(opts) + " |")
        lines.append("|---" * (len(opts) + 1) + "|")
        for d, by in res.items():
            cells, meds = [], []
            for o in opts:
                v = np.array([by[o][s][str(c)] for s in sorted(by.get(o, {})) if str(c) in by[o][s]])
                if v.size == 0:
                    cells.append("–")
                    meds.append(np.inf)
                    continue
                q1, md, q3 = np.percentile(v, [25, 50, 75])
                cells.append(f"{md:.4g} [{q1:.3g}, {q3:.3g}]")
                meds.append(md)
            r = _rank(np.array(meds))
            for o, rr in zip(opts, r, strict=True):
                ranks.setdefault(c, {}).setdefault(o, []).append(rr)
            lines.append(f"| {d} | " + " | ".join(cells) + " |")
    lines.append("\n#### average rank of the median best loss (1 = best; ties share)\n")
    lines.append("| evaluations | " + " | ".join(opts) + " |")
    lines.append("|---" * (len(opts) + 1) + "|")
    for c in checkpoints:
        if c in ranks:
            lines.append(f"| {c} | " + " | ".join(f"{np.mean(ranks[c][o]):.2f}" for o in opts) + " |")
    return "\n".join(lines)


def _rank(v: np.ndarray) -> np.ndarray:
    order = np.argsort(v, kind="stable")
    r = np.empty(len(v))
    r[order] = np.arange(1, len(v) + 1)
    for x in np.unique(v):  # average ties
        m = v == x
        r[m] = r[m].mean()
    return r


def target_check(res: dict, c: int = 100) -> str:
    """The issue's quality targets for hpo tpe (and tpe-uni) at ``c`` evaluations."""
    lines = []
    for me in ("tpe", "tpe-uni"):
        vs_opt = vs_hyp = n = 0
        miss_opt, miss_hyp = [], []
        for d, by in res.items():
            if me not in by:
                continue
            n += 1
            mine = np.median([by[me][s][str(c)] for s in by[me]])
            if "optuna-tpe" in by:
                v = np.array([by["optuna-tpe"][s][str(c)] for s in by["optuna-tpe"]])
                q1, md, q3 = np.percentile(v, [25, 50, 75])
                if mine <= md or mine <= q3:
                    vs_opt += 1
                else:
                    miss_opt.append(d)
            if "hyperopt-tpe" in by:
                md = np.median([by["hyperopt-tpe"][s][str(c)] for s in by["hyperopt-tpe"]])
                if mine <= md:
                    vs_hyp += 1
                else:
                    miss_hyp.append(d)
        lines.append(f"- {me}: ≤ Optuna median or inside its IQR on {vs_opt}/{n} domains "
                     f"(misses: {', '.join(miss_opt) or 'none'}); ≤ hyperopt median on {vs_hyp}/{n} "
                     f"(misses: {', '.join(miss_hyp) or 'none'})")
    return "\n".join(lines)


# =========================================================================== timing
def _random_history(dom: BenchDomain, n: int, seed: int):
    """``n`` prior points of ``dom`` (hpo_mongo rows + vals) with their losses."""
    from hpo_mongo import hp, space_eval
    from hpo_mongo.space import compile_space
    space = dom.space(hp)
    cs = compile_space(space)
    rng = np.random.default_rng(seed)
    X = cs.sample(rng, n)
    vals = [cs.row_to_vals(r) for r in X]
    losses = [float(dom.objective(space_eval(space, {k: v[0] for k, v in vl.items() if v}), rng)) for vl in vals]
    return space, cs, X, vals, losses


def _hpo_trials(vals, losses):
    from hpo_mongo import Trials
    from hpo_mongo.trials.documents import JOB_STATE_DONE, new_trial_doc
    trials = Trials()
    docs = []
    for tid, (v, loss) in enumerate(zip(vals, losses, strict=True)):
        d = new_trial_doc(tid, v)
        d.update(state=JOB_STATE_DONE, result={"status": "ok", "loss": loss})
        docs.append(d)
    trials.new_trial_ids(len(docs))
    trials._insert_trial_docs(docs)
    trials.refresh()
    return trials


def _hyperopt_trials(vals, losses):
    import hyperopt
    trials = hyperopt.Trials()
    tids = trials.new_trial_ids(len(vals))
    miscs = [{"tid": t, "cmd": ("domain_attachment", "FMinIter_Domain"), "workdir": None,
              "idxs": {k: ([t] if v else []) for k, v in vl.items()}, "vals": vl}
             for t, vl in zip(tids, vals, strict=True)]
    results = [{"status": "ok", "loss": loss} for loss in losses]
    docs = trials.new_trial_docs(tids, [None] * len(tids), results, miscs)
    for d in docs:
        d["state"] = hyperopt.JOB_STATE_DONE
    trials.insert_trial_docs(docs)
    trials.refresh()
    return trials


def _optuna_study(cs, vals, losses, seed):
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = _optuna_distributions(cs)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    trials = []
    for vl, loss in zip(vals, losses, strict=True):
        params = {k: v[0] for k, v in vl.items() if v}
        params = {k: (int(v) if isinstance(dists[k], (optuna.distributions.CategoricalDistribution,
                                                       optuna.distributions.IntDistribution)) else v)
                  for k, v in params.items()}
        params = {k: _clip_to(dists[k], v) for k, v in params.items()}
        trials.append(optuna.trial.create_trial(params=params, distributions={k: dists[k] for k in params}, value=loss))
    study.add_trials(trials)
    return study


def _clip_to(dist, v):
    import optuna
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return v
    return type(v)(min(max(v, dist.low), dist.high))


def _optuna_distributions(cs):
    import optuna.distributions as od
    out = {}
    for p in cs.params:
        d, k = p.dist, p.dist.kind
        if d.is_categorical:
            out[p.label] = od.CategoricalDistribution(list(range(d.n_options)))
        elif k == "randint":
            out[p.label] = od.IntDistribution(int(d.low), int(d.high) - 1)
        elif k == "uniformint":
            out[p.label] = od.IntDistribution(int(d.low), int(d.high))
        elif k in ("uniform", "quniform"):
            out[p.label] = od.FloatDistribution(d.low, d.high)
        elif k in ("loguniform", "qloguniform"):
            out[p.label] = od.FloatDistribution(math.exp(d.low), math.exp(d.high), log=True)
        elif k in ("normal", "qnormal"):
            out[p.label] = od.FloatDistribution(d.mu - 4 * d.sigma, d.mu + 4 * d.sigma)
        else:
            out[p.label] = od.FloatDistribution(math.exp(d.mu - 4 * d.sigma), math.exp(d.mu + 4 * d.sigma), log=True)
    return out


def timing(sizes, repeats: int = 15, domain: str = "mixed10") -> dict:
    """ms per suggestion (best of ``repeats``) on a history of ``n`` finished random trials.

    The libraries are timed in turn within each repeat (round robin; two calls each, the
    second timed), so a load spike on a shared machine hits all of them alike instead of one
    library's whole series."""
    from hpo_mongo import Domain, tpe
    dom = DOMAINS[domain]
    out: dict = {}
    for n in sizes:
        space, cs, X, vals, losses = _random_history(dom, n, 0)
        calls: dict[str, Callable[[int], Any]] = {}
        for name, algo in (("hpo_mongo tpe", tpe.suggest),
                           ("hpo_mongo tpe-uni", functools.partial(tpe.suggest, multivariate=False))):
            trials = _hpo_trials(vals, losses)
            domain_ = Domain(lambda c: 0.0, space)
            calls[name] = functools.partial(lambda a, d, t, r, n=n: a([n], d, t, r), algo, domain_, trials)
        if _have("hyperopt"):
            import hyperopt
            htrials = _hyperopt_trials(vals, losses)
            hdom = hyperopt.Domain(lambda c: 0.0, dom.space(hyperopt.hp))
            calls["hyperopt tpe"] = lambda r, t=htrials, d=hdom, n=n: hyperopt.tpe.suggest([n], d, t, r)
        if _have("optuna"):
            study = _optuna_study(cs, vals, losses, 0)
            calls["optuna tpe"] = lambda r, st=study, cs=cs: optuna_params(st.ask(), cs)
        ts: dict[str, list[float]] = {k: [] for k in calls}
        for r in range(repeats):
            for name, f in calls.items():
                for w in range(2):  # the second of two calls in a row: warm caches, as in a loop
                    t0 = time.perf_counter()
                    f(2 * r + w)
                    ts[name].append(time.perf_counter() - t0)
        row = {}
        for name in calls:
            row[name] = 1e3 * min(ts[name][1::2])
            if name.startswith("hpo_mongo"):
                row[name + " (first call)"] = 1e3 * ts[name][0]
        if "optuna tpe" in row:
            row["optuna ÷ tpe"] = row["optuna tpe"] / row["hpo_mongo tpe"]
        out[n] = row
    return out


def timing_table(res: dict) -> str:
    """A markdown table: one row per history size, one column per measured quantity."""
    cols = list(next(iter(res.values())).keys())
    lines = ["| history n | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for n, row in res.items():
        lines.append(f"| {n} | " + " | ".join(f"{row[c]:.2f}" for c in cols) + " |")
    return "\n".join(lines)


# =========================================================================== spread
def _unit_coords(cs, X: np.ndarray) -> np.ndarray:
    """Points → coordinates where every numeric parameter spans [0, 1] (log kinds in log space);
    categoricals become one-hot / sqrt(2) so two different options are at distance 1."""
    from hpo_mongo.algos.tpe.parzen import param_table
    t = param_table(cs)
    num = np.flatnonzero(~t.is_cat)
    Z = t.internal(X[:, num], num)
    lo = np.where(np.isfinite(t.low[num]), t.low[num], t.prior_mu[num] - 2 * t.span[num] / 4 * 2)
    U = (Z - lo) / t.span[num]
    parts = [np.nan_to_num(U, nan=-1.0)]
    for j in np.flatnonzero(t.is_cat):
        oh = np.zeros((len(X), t.n_options[j] + 1))
        v = np.where(np.isnan(X[:, j]), t.n_options[j], X[:, j]).astype(int)
        oh[np.arange(len(X)), v] = 1 / math.sqrt(2)
        parts.append(oh)
    return np.hstack(parts)


def _mean_pdist(U: np.ndarray) -> float:
    d = np.sqrt(((U[:, None, :] - U[None, :, :]) ** 2).sum(-1))
    iu = np.triu_indices(len(U), 1)
    return float(d[iu].mean())


def spread(sizes=(100, 1000), n_sugg: int = 16, seeds=(0, 1, 2), domain: str = "mixed10") -> dict:
    """Mean pairwise distance of ``n_sugg`` suggestions made with the earlier ones pending,
    relative to that of ``n_sugg`` prior samples (averaged over 200 random sets)."""
    from hpo_mongo import Domain
    from hpo_mongo.space import compile_space
    dom = DOMAINS[domain]
    cs0 = compile_space(dom.space(__import__("hpo_mongo").hp))
    rng = np.random.default_rng(123)
    ref = np.mean([_mean_pdist(_unit_coords(cs0, cs0.sample(rng, n_sugg))) for _ in range(200)])
    out: dict = {}
    for n in sizes:
        row: dict[str, list[float]] = {}
        for seed in seeds:
            space, cs, X, vals, losses = _random_history(dom, n, seed)
            for name in ("tpe", "tpe-uni"):
                algo = _hpo_algo(name)
                trials = _hpo_trials(vals, losses)
                domain_ = Domain(lambda c: 0.0, space)
                rows = []
                for i in range(n_sugg):
                    docs = algo([n + i], domain_, trials, 1000 * seed + i)
                    trials.insert_trial_docs(docs)
                    trials.refresh()
                    rows.append(cs.vals_to_row(docs[0]["misc"]["vals"]))
                row.setdefault("hpo_mongo " + name, []).append(_mean_pdist(_unit_coords(cs, np.array(rows))) / ref)
            if _have("hyperopt"):
                import hyperopt
                trials = _hyperopt_trials(vals, losses)
                hdom = hyperopt.Domain(lambda c: 0.0, dom.space(hyperopt.hp))
                rows = []
                for i in range(n_sugg):
                    docs = hyperopt.tpe.suggest([n + i], hdom, trials, 1000 * seed + i)
                    trials.insert_trial_docs(docs)
                    trials.refresh()
                    rows.append(cs.vals_to_row(docs[0]["misc"]["vals"]))
                row.setdefault("hyperopt tpe", []).append(_mean_pdist(_unit_coords(cs, np.array(rows))) / ref)
            if _have("optuna"):
                study = _optuna_study(cs, vals, losses, seed)
                rows = []
                for _ in range(n_sugg):
                    t = study.ask()
                    rows.append(cs.vals_to_row(optuna_params(t, cs)))
                row.setdefault("optuna tpe", []).append(_mean_pdist(_unit_coords(cs, np.array(rows))) / ref)
        out[n] = {k: float(np.mean(v)) for k, v in row.items()}
    return out


def spread_table(res: dict) -> str:
    return timing_table(res)  # same shape: one row per history size, one column per optimizer


# =========================================================================== pending
def pending_tables(seq: dict, par: dict, opts: list[str], c: int = 100, label: str = "8 pending") -> str:
    """Median best loss at ``c`` evaluations, sequential vs ``label`` (8 pending), and the quality
    loss (mean over domains of log10 of the regret ratio pending / sequential; 0 = no loss)."""
    lines = ["| domain | " + " | ".join(f"{o} seq → {label}" for o in opts) + " |",
             "|---" * (len(opts) + 1) + "|"]
    loss: dict[str, list[float]] = {o: [] for o in opts}
    for d, by in par.items():
        opt_val = DOMAINS[d].optimum
        cells = []
        for o in opts:
            s = np.median([seq[d][o][k][str(c)] for k in seq[d][o]])
            p = np.median([by[o][k][str(c)] for k in by[o]])
            cells.append(f"{s:.4g} → {p:.4g}")
            loss[o].append(math.log10(max(p - opt_val, 1e-12) / max(s - opt_val, 1e-12)))
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    lines.append("| **quality loss** (mean log10 regret ratio) | "
                 + " | ".join(f"{np.mean(loss[o]):+.3f}" for o in opts) + " |")
    return "\n".join(lines)


# =========================================================================== main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 seeds, 5 domains, 100 evaluations")
    ap.add_argument("--sections", default="quality,timing,spread,pending")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--domains", default=None, help="comma-separated subset")
    ap.add_argument("--optimizers", default=None, help="comma-separated subset")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "out"))
    a = ap.parse_args(argv)
    sections = a.sections.split(",")
    seeds = list(range(a.seeds if a.seeds else (3 if a.quick else 10)))
    doms = a.domains.split(",") if a.domains else (
        ["quadratic1", "branin", "hartmann6", "conditional", "mixed10"] if a.quick else list(DOMAINS))
    opts = a.optimizers.split(",") if a.optimizers else optimizers()
    n_evals = 100 if a.quick else 200
    head = run_header("bench.run", argv, f"seeds {seeds[0]}..{seeds[-1]}; jobs {a.jobs}")
    report = [head]
    raw: dict = {}
    print(head, flush=True)

    def emit(title: str, body: str) -> None:
        block = f"\n### {title}\n{body}\n"
        report.append(block)
        print(block, flush=True)

    seq = None
    if "quality" in sections:
        t0 = time.perf_counter()
        seq = quality(doms, opts, seeds, n_evals, a.jobs)
        raw["quality"] = seq
        cps = [c for c in CHECKPOINTS if c <= n_evals]
        emit(f"Quality ({len(seeds)} seeds, {n_evals} evaluations, {time.perf_counter() - t0:.0f} s)",
             quality_tables(seq, opts, cps) + "\n\n#### targets at 100 evaluations\n" + target_check(seq))
    if "timing" in sections:
        sizes = (100, 1000) if a.quick else (100, 500, 1000, 2000)
        res = timing(sizes)
        raw["timing"] = res
        emit("ms per suggestion vs history size (mixed10, best of 15, libraries timed round robin)", timing_table(res))
    if "spread" in sections:
        res = spread(seeds=(0,) if a.quick else (0, 1, 2))
        raw["spread"] = res
        emit("Spread of 16 suggestions with the earlier ones pending (relative to 16 random points)",
             spread_table(res))
    if "pending" in sections:
        popts = [o for o in ("tpe", "tpe-uni", "hyperopt-tpe", "optuna-tpe") if o in opts]
        pdoms = [d for d in ("branin", "hartmann6", "rosenbrock4", "conditional", "mixed10") if d in doms]
        t0 = time.perf_counter()
        par = quality(pdoms, popts, seeds, 100, a.jobs, n_pending=8)
        raw["pending"] = par
        if seq is None:
            seq = quality(pdoms, popts, seeds, 100, a.jobs)
        emit(f"Best loss at 100 evaluations: sequential vs always 8 pending ({time.perf_counter() - t0:.0f} s)",
             pending_tables(seq, par, popts))
    write_outputs(a.out, "", report, raw, a.quick)
    return 0


def run_header(module: str, argv: list[str] | None, details: str,
               packages: tuple[str, ...] = ("numpy", "hyperopt", "optuna")) -> str:
    """A report's first lines: the command, the machine and the versions of ``packages``, the date."""
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    versions = "".join(f", {m} {__import__(m).__version__}" for m in packages if _have(m))
    return (f"command: `python -m {module} {' '.join(argv if argv is not None else sys.argv[1:])}`  \n"
            f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}{versions}  \ndate: {stamp}; {details}\n")


def write_outputs(out: str, prefix: str, report: list[str], raw: dict, quick: bool) -> None:
    """Save a run's Markdown (``<prefix>results-<stamp>.md``) and raw numbers (``<prefix>raw-<stamp>.json``)."""
    os.makedirs(out, exist_ok=True)
    tag = _dt.datetime.now().strftime("%Y%m%d-%H%M%S") + ("-quick" if quick else "")
    with open(os.path.join(out, f"{prefix}results-{tag}.md"), "w") as f:
        f.write("\n".join(report))
    with open(os.path.join(out, f"{prefix}raw-{tag}.json"), "w") as f:
        json.dump(raw, f, indent=1, default=str)


if __name__ == "__main__":
    sys.exit(main())
