"""Quickstart: a real (small) optimization with in-memory Trials — no database needed.

    python examples/quickstart.py

Tunes a noisy, conditional "model" over a mixed space with TPE (the default algorithm),
then prints the best parameters. Swap ``Trials()`` for ``MongoTrials(url)`` and start
``hpo-mongo-worker`` processes to run the same code distributed.
"""
import math

import numpy as np

from hpo_mongo import STATUS_OK, Trials, fmin, hp, space_eval

space = {
    "model": hp.choice("model", [
        {"kind": "gbm",
         "learning_rate": hp.loguniform("learning_rate", math.log(1e-3), math.log(0.5)),
         "max_depth": hp.uniformint("max_depth", 2, 12)},
        {"kind": "svm",
         "C": hp.loguniform("C", math.log(1e-2), math.log(1e3))},
    ]),
    "subsample": hp.uniform("subsample", 0.5, 1.0),
    "features": hp.choice("features", ["raw", "scaled", "pca"]),
}


def validation_loss(params: dict) -> dict:
    """A stand-in for training a model: smooth in every parameter, best at gbm/lr≈0.05/depth 6."""
    m = params["model"]
    if m["kind"] == "gbm":
        loss = (math.log10(m["learning_rate"]) + 1.3) ** 2 + 0.02 * (m["max_depth"] - 6) ** 2
    else:
        loss = 0.3 + 0.05 * (math.log10(m["C"]) - 1) ** 2
    loss += 0.5 * (params["subsample"] - 0.8) ** 2
    loss += {"raw": 0.1, "scaled": 0.0, "pca": 0.05}[params["features"]]
    return {"loss": loss, "status": STATUS_OK}


if __name__ == "__main__":
    trials = Trials()
    best = fmin(validation_loss, space, max_evals=100, trials=trials, rstate=np.random.default_rng(0))
    print("best loss:", round(trials.best_trial["result"]["loss"], 4))
    print("best parameters:", space_eval(space, best))
