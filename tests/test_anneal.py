"""anneal.suggest: hyperopt-compatible options, ranges, conditional spaces, progress."""
import math
from functools import partial

import numpy as np
import pytest

from hpo_mongo import Domain, Trials, anneal, fmin, hp, rand


@pytest.fixture(autouse=True)
def _raise_on_numeric_warnings():
    old = np.seterr(all="raise", under="ignore")
    yield
    np.seterr(**old)


def _run(fn, space, algo=anneal.suggest, n=100, seed=0):
    t = Trials()
    fmin(fn, space, algo=algo, max_evals=n, trials=t, rstate=np.random.default_rng(seed), show_progressbar=False)
    return t


def test_quadratic_improves_on_random():
    a = [min(_run(lambda x: (x - 3) ** 2, hp.uniform("x", -5, 5), seed=s).losses()) for s in range(5)]
    r = [min(_run(lambda x: (x - 3) ** 2, hp.uniform("x", -5, 5), algo=rand.suggest, seed=s).losses())
         for s in range(5)]
    assert np.median(a) < np.median(r)
    assert np.median(a) < 0.01


def test_all_kinds_in_range_and_reproducible():
    space = {"a": hp.choice("a", [0, 1, 2]), "b": hp.randint("b", 10), "bb": hp.uniformint("bb", 0, 10),
             "c": hp.uniform("c", 4, 7), "d": hp.loguniform("d", -2, 0), "e": hp.quniform("e", 0, 10, 3),
             "f": hp.qloguniform("f", 0, 3, 2), "g": hp.normal("g", 4, 7), "h": hp.lognormal("h", -2, 2),
             "i": hp.qnormal("i", 0, 10, 2), "j": hp.qlognormal("j", 0, 2, 1),
             "k": hp.pchoice("k", [(0.1, 0), (0.9, 1)])}

    def loss(c):
        return math.log(1e-12 + sum(float(v) for v in c.values()) ** 2)

    t1 = _run(loss, space, n=50, seed=3)
    t2 = _run(loss, space, n=50, seed=3)
    assert [d["misc"]["vals"] for d in t1.trials] == [d["misc"]["vals"] for d in t2.trials]
    cs = Domain(loss, space).space
    for d in t1.trials:
        for p in cs.params:
            assert p.dist.contains(np.array([float(d["misc"]["vals"][p.label][0])]))[0]


def test_conditional_space_valid_and_partial_options():
    space = hp.choice("m", [{"x": hp.uniform("x", -5, 5)}, {"y": hp.loguniform("y", -3, 3), "z": hp.randint("z", 4)}])

    def loss(c):
        return (c["x"] - 1) ** 2 if "x" in c else 1 + (c["y"] - 2) ** 2 + c["z"]

    algo = partial(anneal.suggest, avg_best_idx=3.0, shrink_coef=0.2)
    t = _run(loss, space, algo=algo, n=60)
    cs = Domain(loss, space).space
    for d in t.trials:
        cs.check_point({k: v[0] for k, v in d["misc"]["vals"].items() if v})
    assert min(t.losses()) < 1.1  # near the optimum of the branch it settled in
    assert anneal.DEFAULT_AVG_BEST_IDX == 2.0 and anneal.DEFAULT_SHRINK_COEF == 0.1
