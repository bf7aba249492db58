"""Benchmark domains: a space builder taking an ``hp`` module and an objective on the config.

``space(hp)`` works with ``hpo_mongo.hp`` and ``hyperopt.hp`` alike; ``objective(config, rng)``
returns the loss (``rng`` only feeds the noise of noisy domains). Optuna gets the same space
through :func:`bench.run.optuna_params`, which walks hpo_mongo's compiled space.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np


@dataclass(frozen=True)
class BenchDomain:
    name: str
    space: Callable[[Any], Any]
    objective: Callable[[Any, np.random.Generator], float]
    optimum: float
    noisy: bool = False


# ------------------------------------------------------------------ 1-D classics (hyperopt's)
def _quadratic1_space(hp):
    return hp.uniform("x", -5, 5)


def _q1_lognormal_space(hp):
    return hp.qlognormal("x", 0, 2, 1)


def _distractor_space(hp):
    return hp.uniform("x", -15, 15)


def _distractor(x, rng):
    return -1.0 / (1.0 + math.exp(-x)) - 2.0 * math.exp(-(x + 10) ** 2)


def _gauss_wave2_space(hp):
    return {"x": hp.uniform("x", -20, 20), "amp": hp.uniform("amp", 0, 1), "hf": hp.choice("hf", [0, 1])}


def _gauss_wave2(c, rng):
    t = rng.normal(0, 0.1) + 2 * math.exp(-(c["x"] / 5.0) ** 2)
    return -(t + math.sin(c["x"]) * c["amp"]) if c["hf"] else -t


def _many_dists_space(hp):
    return {
        "a": hp.choice("a", [0, 1, 2]),
        "b": hp.randint("b", 10),
        "bb": hp.uniformint("bb", 0, 10),
        "c": hp.uniform("c", 4, 7),
        "d": hp.loguniform("d", -2, 0),
        "e": hp.quniform("e", 0, 10, 3),
        "f": hp.qloguniform("f", 0, 3, 2),
        "g": hp.normal("g", 4, 7),
        "h": hp.lognormal("h", -2, 2),
        "i": hp.qnormal("i", 0, 10, 2),
        "j": hp.qlognormal("j", 0, 2, 1),
        "k": hp.pchoice("k", [(0.1, 0), (0.9, 1)]),
    }


def _many_dists(c, rng):
    z = sum(float(v) for v in c.values())
    return math.log(1e-12 + z * z)


# ------------------------------------------------------------------ classic test functions
def _branin_space(hp):
    return [hp.uniform("x1", -5, 10), hp.uniform("x2", 0, 15)]


def _branin(c, rng):
    x1, x2 = c
    b, cc, t = 5.1 / (4 * math.pi ** 2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1 ** 2 + cc * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


_H_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
                 [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
_H_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                        [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
_H_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def _hartmann6_space(hp):
    return [hp.uniform(f"x{i}", 0, 1) for i in range(6)]


def _hartmann6(c, rng):
    x = np.asarray(c, dtype=float)
    return float(-np.sum(_H_ALPHA * np.exp(-np.sum(_H_A * (x - _H_P) ** 2, axis=1))))


def _rosenbrock_space(hp):
    return [hp.uniform(f"x{i}", -2, 2) for i in range(4)]


def _rosenbrock(c, rng):
    x = np.asarray(c, dtype=float)
    return float(np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2))


def _ackley_space(hp):
    return [hp.uniform(f"x{i}", -32.768, 32.768) for i in range(5)]


def _ackley(c, rng):
    x = np.asarray(c, dtype=float)
    d = x.size
    return float(-20 * math.exp(-0.2 * math.sqrt(np.sum(x * x) / d))
                 - math.exp(np.sum(np.cos(2 * math.pi * x)) / d) + 20 + math.e)


# ------------------------------------------------------------------ mixed / conditional
def _conditional_space(hp):
    return hp.choice("model", [
        {"family": "svm",
         "C": hp.loguniform("svm_C", math.log(1e-3), math.log(1e3)),
         "gamma": hp.loguniform("svm_gamma", math.log(1e-5), math.log(1e1)),
         "kernel": hp.choice("svm_kernel", ["rbf", "poly", "linear"]),
         "degree": hp.uniformint("svm_degree", 2, 5)},
        {"family": "forest",
         "n_trees": hp.qloguniform("rf_trees", math.log(10), math.log(1000), 10),
         "depth": hp.uniformint("rf_depth", 1, 20),
         "criterion": hp.choice("rf_criterion", ["gini", "entropy"]),
         "max_features": hp.uniform("rf_features", 0.05, 1.0)},
    ])


def _conditional(c, rng):
    if c["family"] == "svm":
        return (0.2 + 0.25 * (math.log10(c["C"]) - 1) ** 2 + 0.25 * (math.log10(c["gamma"]) + 2) ** 2
                + {"rbf": 0.0, "poly": 0.15 + 0.05 * (c["degree"] - 3) ** 2, "linear": 0.4}[c["kernel"]])
    return (0.1 + 0.3 * (math.log10(max(c["n_trees"], 1)) - 2.5) ** 2 + 0.01 * (c["depth"] - 12) ** 2
            + (0.0 if c["criterion"] == "entropy" else 0.1) + (c["max_features"] - 0.35) ** 2)


_MIX_CENTERS = np.array([1.0, -2.0, 3.0, 0.5])


def _mixed10_space(hp):
    return {
        "x": [hp.uniform(f"x{i}", -5, 5) for i in range(4)],
        "lr": hp.loguniform("lr", math.log(1e-5), math.log(1.0)),
        "reg": hp.loguniform("reg", math.log(1e-6), math.log(1e-1)),
        "units": hp.quniform("units", 16, 512, 16),
        "layers": hp.uniformint("layers", 1, 8),
        "act": hp.choice("act", ["relu", "tanh", "elu", "sigmoid"]),
        "opt": hp.choice("opt", ["sgd", "adam", "rmsprop"]),
    }


def _mixed10(c, rng):
    x = np.asarray(c["x"], dtype=float)
    return float(np.sum((x - _MIX_CENTERS) ** 2) / 10 + (math.log10(c["lr"]) + 2.5) ** 2 / 2
                 + (math.log10(c["reg"]) + 4) ** 2 / 8 + ((c["units"] - 256) / 256) ** 2
                 + 0.1 * (c["layers"] - 3) ** 2
                 + {"relu": 0.2, "tanh": 0.5, "elu": 0.0, "sigmoid": 0.8}[c["act"]]
                 + {"sgd": 0.3, "adam": 0.0, "rmsprop": 0.1}[c["opt"]])


DOMAINS: dict[str, BenchDomain] = {d.name: d for d in [
    BenchDomain("quadratic1", _quadratic1_space, lambda x, r: (x - 3) ** 2, 0.0),
    BenchDomain("q1_lognormal", _q1_lognormal_space, lambda x, r: min(0.1 * (x - 10) ** 2, 10), 0.0),
    BenchDomain("distractor", _distractor_space, _distractor, -2.0),
    BenchDomain("gauss_wave2", _gauss_wave2_space, _gauss_wave2, -3.0, noisy=True),
    BenchDomain("many_dists", _many_dists_space, _many_dists, math.log(1e-12)),
    BenchDomain("branin", _branin_space, _branin, 0.397887),
    BenchDomain("hartmann6", _hartmann6_space, _hartmann6, -3.32237),
    BenchDomain("rosenbrock4", _rosenbrock_space, _rosenbrock, 0.0),
    BenchDomain("ackley5", _ackley_space, _ackley, 0.0),
    BenchDomain("conditional", _conditional_space, _conditional, 0.1),
    BenchDomain("mixed10", _mixed10_space, _mixed10, 0.0),
]}
