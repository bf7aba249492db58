"""tpe.suggest: convergence, reproducibility, ranges, conditional spaces, pending trials, compat.

Every test runs with ``np.seterr(all='raise', under='ignore')``: the TPE numerics must not
produce overflow, invalid or divide-by-zero warnings. No timings here (see bench/).
"""
import math
import warnings
from functools import partial

import numpy as np
import pytest

from hpo_mongo import Domain, STATUS_OK, Trials, fmin, hp, rand, tpe, trials_from_docs
from hpo_mongo.trials.documents import JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_RUNNING, new_trial_doc


@pytest.fixture(autouse=True)
def _raise_on_numeric_warnings():
    old = np.seterr(all="raise", under="ignore")
    yield
    np.seterr(**old)


def _many_dists():
    return {
        "a": hp.choice("a", [0, 1, 2]), "b": hp.randint("b", 10), "bb": hp.uniformint("bb", 0, 10),
        "c": hp.uniform("c", 4, 7), "d": hp.loguniform("d", -2, 0), "e": hp.quniform("e", 0, 10, 3),
        "f": hp.qloguniform("f", 0, 3, 2), "g": hp.normal("g", 4, 7), "h": hp.lognormal("h", -2, 2),
        "i": hp.qnormal("i", 0, 10, 2), "j": hp.qlognormal("j", 0, 2, 1),
        "k": hp.pchoice("k", [(0.1, 0), (0.9, 1)]),
    }


def _conditional():
    return hp.choice("model", [
        {"C": hp.loguniform("svm_C", -7, 7), "kernel": hp.choice("kernel", ["rbf", "poly"]),
         "degree": hp.uniformint("degree", 2, 5)},
        {"trees": hp.qloguniform("trees", 2, 7, 10), "depth": hp.randint("depth", 1, 20),
         "crit": hp.choice("crit", ["gini", "entropy"])},
    ])


def _conditional_loss(c):
    if "C" in c:
        return 0.3 + (math.log(c["C"]) - 1) ** 2 / 10 + (c["kernel"] == "poly") * 0.1 * c["degree"]
    return 0.1 + (math.log(max(c["trees"], 1)) - 5) ** 2 / 10 + abs(c["depth"] - 12) / 20 + (c["crit"] == "gini") * 0.1


def _mixed():
    return {"x": [hp.uniform(f"x{i}", -5, 5) for i in range(4)],
            "lr": hp.loguniform("lr", -11, 0), "reg": hp.loguniform("reg", -13, -2),
            "units": hp.quniform("units", 16, 512, 16), "layers": hp.uniformint("layers", 1, 8),
            "act": hp.choice("act", ["relu", "tanh", "elu"]), "opt": hp.choice("opt", ["sgd", "adam"])}


def _mixed_loss(c):
    return (sum((x - 1) ** 2 for x in c["x"]) / 10 + (math.log10(c["lr"]) + 2.5) ** 2
            + ((c["units"] - 256) / 256) ** 2 + 0.1 * (c["layers"] - 3) ** 2 + (c["act"] != "elu") * 0.3)


def _run(fn, space, algo=tpe.suggest, n=100, seed=0, trials=None):
    trials = Trials() if trials is None else trials
    fmin(fn, space, algo=algo, max_evals=n, trials=trials, rstate=np.random.default_rng(seed),
         show_progressbar=False)
    return trials


# ------------------------------------------------------------------ convergence
def test_quadratic1_concentrates_near_optimum_for_most_seeds():
    # bench: median |x-3| after 100 evaluations is ~1e-3; require 8 of 10 seeds below 0.1
    hits = 0
    for seed in range(10):
        t = _run(lambda x: (x - 3) ** 2, hp.uniform("x", -5, 5), seed=seed)
        xs = np.array([d["misc"]["vals"]["x"][0] for d in t.trials])
        hits += abs(xs[np.argmin(t.losses())] - 3) < 0.1
    assert hits >= 8


def test_beats_random_search_on_a_mixed_space():
    tpe_best = [min(_run(_mixed_loss, _mixed(), seed=s, n=80).losses()) for s in range(4)]
    rand_best = [min(_run(_mixed_loss, _mixed(), algo=rand.suggest, seed=s, n=80).losses()) for s in range(4)]
    assert np.median(tpe_best) < np.median(rand_best)


# ------------------------------------------------------------------ reproducibility
@pytest.mark.parametrize("multivariate", [False, True])
def test_reproducible_by_seed(multivariate):
    algo = partial(tpe.suggest, multivariate=multivariate, n_startup_jobs=5)
    a = _run(_mixed_loss, _mixed(), algo=algo, n=25, seed=7)
    b = _run(_mixed_loss, _mixed(), algo=algo, n=25, seed=7)
    c = _run(_mixed_loss, _mixed(), algo=algo, n=25, seed=8)
    assert [d["misc"]["vals"] for d in a.trials] == [d["misc"]["vals"] for d in b.trials]
    assert [d["misc"]["vals"] for d in a.trials] != [d["misc"]["vals"] for d in c.trials]


def test_direct_call_depends_on_seed_only():
    t = _run(_mixed_loss, _mixed(), n=30)
    domain = Domain(_mixed_loss, _mixed())
    a = tpe.suggest([100], domain, t, 5)[0]["misc"]["vals"]
    b = tpe.suggest([100], domain, t, 5)[0]["misc"]["vals"]
    assert a == b


# ------------------------------------------------------------------ ranges, grids, conditions
@pytest.mark.parametrize("multivariate", [False, True])
def test_all_twelve_kinds_stay_in_range_and_on_grid(multivariate):
    def loss(c):
        z = sum(float(v) for v in c.values())
        return math.log(1e-12 + z * z)
    t = _run(loss, _many_dists(), algo=partial(tpe.suggest, multivariate=multivariate, n_startup_jobs=10), n=60)
    space = Domain(loss, _many_dists()).space
    for d in t.trials:
        for p in space.params:
            v = d["misc"]["vals"][p.label]
            assert len(v) == 1
            assert p.dist.contains(np.array([float(v[0])]))[0], (p.label, v)
            if p.dist.is_int:
                assert isinstance(v[0], int)


@pytest.mark.parametrize("multivariate", [False, True])
def test_conditional_space_stays_valid(multivariate):
    algo = partial(tpe.suggest, multivariate=multivariate, n_startup_jobs=10)
    t = _run(_conditional_loss, _conditional(), algo=algo, n=60)
    space = Domain(_conditional_loss, _conditional()).space
    branches = set()
    for d in t.trials:
        vals = d["misc"]["vals"]
        space.check_point({k: v[0] for k, v in vals.items() if v})  # raises when invalid
        active = {k for k, v in vals.items() if v}
        branches.add(vals["model"][0])
        expected = ({"model", "svm_C", "kernel", "degree"} if vals["model"][0] == 0
                    else {"model", "trees", "depth", "crit"})
        assert active == expected
    assert min(t.losses()) < 0.3


# ------------------------------------------------------------------ pending trials
def _history(space_fn, loss_fn, n, seed=0):
    domain = Domain(loss_fn, space_fn())
    rng = np.random.default_rng(seed)
    X = domain.space.sample(rng, n)
    docs = []
    for tid, row in enumerate(X):
        vals = domain.space.row_to_vals(row)
        d = new_trial_doc(tid, vals)
        d.update(state=JOB_STATE_DONE, result={"status": STATUS_OK,
                                               "loss": loss_fn(domain.config(vals))})
        docs.append(d)
    return domain, trials_from_docs(docs)


def _unit(space, rows):
    out = []
    for p in space.params:
        v = rows[:, p.index]
        d = p.dist
        if d.is_categorical:
            for k in range(d.n_options):
                out.append((v == k) / math.sqrt(2))
        else:
            lo, hi = (d.low, d.high) if d.low is not None else (d.mu - 3 * d.sigma, d.mu + 3 * d.sigma)
            out.append(((np.log(v) if d.is_log else v) - lo) / (hi - lo))
    return np.column_stack(out)


def _mean_pdist(U):
    d = np.sqrt(((U[:, None] - U[None]) ** 2).sum(-1))
    return d[np.triu_indices(len(U), 1)].mean()


def _pending_suggestions(domain, trials, n, **opts):
    rows = []
    for i in range(n):
        docs = tpe.suggest(trials.new_trial_ids(1), domain, trials, 100 + i, **opts)
        trials.insert_trial_docs(docs)
        trials.refresh()
        rows.append(domain.space.vals_to_row(docs[0]["misc"]["vals"]))
    return np.array(rows)


@pytest.mark.parametrize("multivariate", [False, True])
def test_pending_suggestions_are_spread_at_history_1000(multivariate):
    domain, trials = _history(_mixed, _mixed_loss, 1000)
    rows = _pending_suggestions(domain, trials, 8, multivariate=multivariate)
    assert len({tuple(r) for r in rows}) == 8
    rng = np.random.default_rng(1)
    ref = np.mean([_mean_pdist(_unit(domain.space, domain.space.sample(rng, 8))) for _ in range(50)])
    assert _mean_pdist(_unit(domain.space, rows)) >= 0.5 * ref


def test_startup_counts_finished_trials_only():
    domain = Domain(_mixed_loss, _mixed())
    X = domain.space.sample(np.random.default_rng(0), 25)
    docs = []
    for tid, row in enumerate(X):
        d = new_trial_doc(tid, domain.space.row_to_vals(row))
        d["state"] = JOB_STATE_RUNNING
        docs.append(d)
    trials = trials_from_docs(docs)
    got = tpe.suggest([25], domain, trials, 3)
    assert got[0]["misc"]["vals"] == rand.suggest([25], domain, trials, 3)[0]["misc"]["vals"]


def test_constant_liar_false_ignores_pending_and_failed_trials_are_left_out():
    domain, trials = _history(_mixed, _mixed_loss, 40)
    base = tpe.suggest([40], domain, trials, 11, constant_liar=False)[0]["misc"]["vals"]
    extra = []
    for k, row in enumerate(domain.space.sample(np.random.default_rng(9), 6)):
        d = new_trial_doc(40 + k, domain.space.row_to_vals(row))
        if k % 3 == 0:
            d["state"] = JOB_STATE_RUNNING
        elif k % 3 == 1:
            d.update(state=JOB_STATE_DONE, result={"status": "fail"})
        else:
            d.update(state=JOB_STATE_ERROR, result={"status": "fail"})
        extra.append(d)
    trials2 = trials_from_docs([dict(d) for d in trials.trials] + extra)
    assert tpe.suggest([50], domain, trials2, 11, constant_liar=False)[0]["misc"]["vals"] == base
    # with the liar, the RUNNING trials do change the model



@pytest.mark.parametrize("multivariate", [False, True])
def test_liar_moves_the_next_suggestion_off_a_pending_point(multivariate):
    domain, trials = _history(_mixed, _mixed_loss, 60)
    first = tpe.suggest([60], domain, trials, 11, multivariate=multivariate)[0]
    first["state"] = JOB_STATE_RUNNING
    with_pending = trials_from_docs([dict(d) for d in trials.trials] + [first])
    again = tpe.suggest([61], domain, with_pending, 11, multivariate=multivariate)[0]["misc"]["vals"]
    assert again != first["misc"]["vals"]  # same seed, same candidates: the liar changed the winner
    ignored = tpe.suggest([61], domain, with_pending, 11, multivariate=multivariate, constant_liar=False)
    assert ignored[0]["misc"]["vals"] == first["misc"]["vals"]


def test_several_ids_in_one_call():
    domain, trials = _history(_mixed, _mixed_loss, 50)
    docs = tpe.suggest([50, 51, 52], domain, trials, 0)
    assert [d["tid"] for d in docs] == [50, 51, 52]
    assert len({str(d["misc"]["vals"]) for d in docs}) == 3


def test_gamma_may_be_a_function():
    domain, trials = _history(_mixed, _mixed_loss, 50)
    docs = tpe.suggest([50], domain, trials, 0, gamma=lambda n: 3)
    assert len(docs) == 1


# ------------------------------------------------------------------ hyperopt-style usage
def test_hyperopt_documentation_example():
    # from hyperopt's README, with only the import line changed
    from hpo_mongo import fmin, tpe, hp  # noqa: F811
    best = fmin(fn=lambda x: x ** 2, space=hp.uniform("x", -10, 10), algo=tpe.suggest, max_evals=100,
                rstate=np.random.default_rng(0), show_progressbar=False)
    assert abs(best["x"]) < 0.5


def test_hyperopt_partial_form():
    from hpo_mongo import fmin, tpe, hp, Trials, STATUS_OK  # noqa: F811

    def objective(x):
        return {"loss": (x - 1) ** 2, "status": STATUS_OK}

    algo = partial(tpe.suggest, n_startup_jobs=10, n_EI_candidates=50, gamma=0.2, prior_weight=0.5)
    trials = Trials()
    best = fmin(objective, hp.uniform("x", -5, 5), algo=algo, max_evals=50, trials=trials,
                rstate=np.random.default_rng(1), show_progressbar=False)
    assert abs(best["x"] - 1) < 0.5
    assert len(trials.trials) == 50
    # hyperopt's module-level defaults are there
    assert tpe._default_n_startup_jobs == 10 and tpe._default_n_EI_candidates == 64
    assert tpe._default_gamma == 0.25 and tpe._default_prior_weight == 1.0


def test_hyperopt_choice_example():
    from hpo_mongo import fmin, tpe, hp  # noqa: F811
    space = hp.choice("a", [("case 1", 1 + hp.lognormal("c1", 0, 1)), ("case 2", hp.uniform("c2", -10, 10))])

    def objective(args):
        case, val = args
        return val if case == "case 1" else val ** 2

    best = fmin(objective, space, algo=tpe.suggest, max_evals=100, rstate=np.random.default_rng(0),
                show_progressbar=False)
    assert best["a"] == 1 and abs(best["c2"]) < 1.0


def test_fmin_default_algo_is_tpe():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        best = fmin(lambda x: (x - 3) ** 2, hp.uniform("x", -5, 5), max_evals=60,
                    rstate=np.random.default_rng(0), show_progressbar=False)
    assert abs(best["x"] - 3) < 0.3


def test_tpe_module_is_the_algos_package():
    import hpo_mongo.algos.tpe as inner
    assert tpe.suggest is inner.suggest
    assert tpe.default_gamma(100, 0.25) == math.ceil(0.25 * 10)
    assert tpe.default_gamma(100) == 10
    assert tpe.default_gamma(10 ** 6) == 25
    w = tpe.default_weights(30)
    assert w[-25:].tolist() == [1.0] * 25 and w[0] == pytest.approx(1 / 30)


def test_conditional_choice_never_active_in_the_good_group():
    """A categorical parameter with no active observation (np.bincount gives ints) fits as floats."""
    space = {"u": hp.uniform("u", 0, 1),
             "m": hp.choice("m", [{"k": 0}, {"k": 1, "c": hp.choice("c", ["x", "y"])}])}
    best = fmin(lambda d: d["u"] + d["m"]["k"], space, algo=tpe.suggest, max_evals=30,
                rstate=np.random.default_rng(0), show_progressbar=False)
    assert best["m"] == 0


# ------------------------------------------------------------------ options and steps
@pytest.mark.parametrize("name, bad", [
    ("prior_weight", -1.0), ("n_startup_jobs", -1), ("n_startup_jobs", 2.5), ("n_EI_candidates", 0),
    ("gamma", 0.0), ("gamma", "sqrt"), ("linear_forgetting", -1), ("constant_liar", 1),
    ("multivariate", "yes"), ("max_components", 0), ("cat_prior_per_option", None),
    ("liar_weight", float("nan")), ("liar_bandwidth", -0.5),
])
def test_every_option_is_checked_and_named(name, bad):
    from hpo_mongo.exceptions import InvalidParameterError
    domain, trials = _history(_mixed, _mixed_loss, 20)
    with pytest.raises(InvalidParameterError,
                       match=f"The '{name}' parameter of tpe.suggest must be .* Got {bad!r} instead"):
        tpe.suggest([20], domain, trials, 0, **{name: bad})


def test_options_table_covers_every_option():
    import dataclasses
    import inspect
    fields = {f.name for f in dataclasses.fields(tpe.TPEOptions)}
    params = set(inspect.signature(tpe.suggest).parameters) - {"new_ids", "domain", "trials", "seed", "verbose"}
    assert fields == params
    assert tpe.TPEOptions().n_good(100) == 10 and tpe.TPEOptions(gamma=0.25).n_good(100) == 3
    assert tpe.TPEOptions(gamma=lambda n: 500).n_good(40) == 40  # clamped to the finished trials


def test_split_ranks_finished_trials_with_ties_in_tid_order():
    from hpo_mongo.algos.base import History
    from hpo_mongo.algos.tpe.sampler import split
    from hpo_mongo.trials.documents import JOB_STATE_NEW
    S = {"done": JOB_STATE_DONE, "err": JOB_STATE_ERROR, "run": JOB_STATE_RUNNING, "new": JOB_STATE_NEW}
    rows = [("done", 3.0), ("done", 1.0), ("err", np.nan), ("done", 2.0), ("run", np.nan), ("done", 1.0),
            ("done", np.nan), ("done", 1.0), ("new", np.nan), ("done", 5.0)]
    h = History(X=np.zeros((len(rows), 1)), loss=np.array([r[1] for r in rows]),
                state=np.array([S[r[0]] for r in rows]), tid=np.arange(len(rows)), pruned=np.zeros(len(rows), bool))
    s = split(h, tpe.TPEOptions(gamma=lambda n: 2, n_startup_jobs=6))
    assert s is not None
    assert s.below.tolist() == [1, 5]  # three trials tie at 1.0: the first two in tid order are good
    assert s.above.tolist() == [0, 3, 7, 9]  # failed (no loss) and errored trials are left out
    assert s.pending.tolist() == [4, 8] and s.n_finished == 6
    assert split(h, tpe.TPEOptions(constant_liar=False, n_startup_jobs=0)).pending.size == 0
    assert split(h, tpe.TPEOptions(n_startup_jobs=7)) is None  # start-up: six finished trials only
