"""hyperopt-sklearn's README quickstarts, run unchanged except for data loading and assertions.

Each must end with at least one successful trial and a fitted best model (hyperopt-sklearn's
tests swallow AllTrialsFailed, so "no exception" proves nothing). Also checks what hyperopt-sklearn
builds on hyperopt's pyll API: a second ``fit()``, ``refit=False``, ``warm_start=True`` and a
custom ``space=`` dict (hyperopt-sklearn appends ``ex_preprocs`` to ``space.named_args``).
The README's SGD example uses ``loss="log"``, which scikit-learn >= 1.3 renamed ``"log_loss"``.

hyperopt-sklearn calls fmin without ``rstate``; each fmin call here gets a seed from the example
name and the call number, so runs are reproducible. Its ``any_classifier`` space includes
gradient boosting with ``loss="exponential"``, which scikit-learn refuses on 3-class data and
hyperopt-sklearn re-raises (fmin with catch_eval_exceptions=False): with 100 evaluations the
README's Iris example crashes on real hyperopt 0.3.0 on 5 seeds out of 5, so it runs here on
the two Iris classes 0 and 1. Any example that still hits that upstream bug is retried with the
next seed (at most 5 times), and says so.
"""
from __future__ import annotations

import functools
import sys
import time
import zlib

import numpy as np
from sklearn.datasets import load_digits, load_iris
from sklearn.utils.validation import check_is_fitted

import hyperopt
from hyperopt import hp, tpe
from hpsklearn import (HyperoptEstimator, any_classifier, any_preprocessing, extra_tree_classifier,
                       sgd_classifier, standard_scaler, svc)


_seed = {"name": "", "calls": 0}
_real_fmin = hyperopt.fmin


@functools.wraps(_real_fmin)
def _seeded_fmin(fn, space, *args, **kwargs):
    if kwargs.get("rstate") is None and len(args) < 6:
        _seed["calls"] += 1
        kwargs["rstate"] = np.random.default_rng(zlib.crc32(f"{_seed['name']}#{_seed['calls']}".encode()))
    return _real_fmin(fn, space, *args, **kwargs)


hyperopt.fmin = _seeded_fmin
KNOWN_SPACE_BUG = "only suitable for a binary classification"


def run(name, make, fit):
    """Build and fit an example; retry with the next seed only on hyperopt-sklearn's known space bug."""
    for attempt in range(5):
        _seed.update(name=f"{name}/{attempt}", calls=0)
        estim = make()
        try:
            fit(estim)
            return estim
        except ValueError as e:
            if KNOWN_SPACE_BUG not in str(e):
                raise
            print(f"  {name}: attempt {attempt + 1} hit hyperopt-sklearn's known space bug ({e}); next seed")
    raise SystemExit(f"{name}: hyperopt-sklearn's space bug on 5 seeds in a row")


def split(data):
    X, y = data.data, data.target
    test_size = int(0.2 * len(y))
    np.random.seed(13)
    indices = np.random.permutation(len(X))
    return X[indices[:-test_size]], y[indices[:-test_size]], X[indices[-test_size:]], y[indices[-test_size:]]


def n_ok(estim) -> int:
    return sum(1 for t in estim.trials.trials if t["state"] == 2 and t["result"].get("status") == "ok")


def check(name, estim, X_test, y_test, *, fitted=True) -> None:
    ok = n_ok(estim)
    learner = estim.best_model()["learner"]
    assert ok >= 1, f"{name}: no successful trial ({len(estim.trials.trials)} trials)"
    if fitted:
        check_is_fitted(learner)
    score = f"test score {estim.score(X_test, y_test):.3f}" if fitted else "not refit"
    print(f"  {name}: {ok}/{len(estim.trials.trials)} successful trials, best model "
          f"{type(learner).__name__}, {score}")


def main() -> int:
    X_train, y_train, X_test, y_test = split(load_iris())
    t0 = time.time()

    def fit(estim):
        estim.fit(X_train, y_train)

    # -- Usage: svc with its default space (and the default preprocessing search)
    estim = run("svc", lambda: HyperoptEstimator(classifier=svc("mySVC")), fit)
    check("svc", estim, X_test, y_test)
    estim.fit(X_train, y_train)  # a second fit() re-reads space.named_args
    check("svc, second fit()", estim, X_test, y_test)

    # -- Usage: sgd_classifier with a constant penalty and custom loss/alpha spaces
    def sgd():
        sgd_penalty = "l2"
        sgd_loss = hp.pchoice("loss", [(0.50, "hinge"), (0.25, "log_loss"), (0.25, "huber")])
        sgd_alpha = hp.loguniform("alpha", low=np.log(1e-5), high=np.log(1))
        return HyperoptEstimator(classifier=sgd_classifier("my_sgd", penalty=sgd_penalty, loss=sgd_loss,
                                                           alpha=sgd_alpha))
    estim = run("sgd_classifier", sgd, fit)
    check("sgd_classifier", estim, X_test, y_test)

    # -- Complete example (Iris, classes 0 and 1): any_classifier + any_preprocessing, TPE, 100 evaluations
    two = (y_train < 2, y_test < 2)
    estim = run("iris", lambda: HyperoptEstimator(classifier=any_classifier("my_clf"),
                                                  preprocessing=any_preprocessing("my_pre"),
                                                  algo=tpe.suggest, max_evals=100, trial_timeout=120),
                lambda e: e.fit(X_train[two[0]], y_train[two[0]]))
    check("any_classifier/any_preprocessing (iris 0/1, tpe, 100 evals)", estim, X_test[two[1]], y_test[two[1]])
    print("   ", estim.best_model())

    # -- MNIST-style example (digits): extra_tree_classifier, no preprocessing, 10 evaluations
    dX_train, dy_train, dX_test, dy_test = split(load_digits())
    estim = run("digits", lambda: HyperoptEstimator(classifier=extra_tree_classifier("my_clf"), preprocessing=[],
                                                    algo=tpe.suggest, max_evals=10, trial_timeout=300),
                lambda e: e.fit(dX_train, dy_train))
    check("extra_tree_classifier (digits)", estim, dX_test, dy_test)

    # -- refit=False keeps the unfitted best learner; warm_start adds trials to the same Trials
    estim = run("refit", lambda: HyperoptEstimator(classifier=svc("rf_svc"), preprocessing=[], max_evals=5,
                                                   refit=False), fit)
    check("refit=False", estim, X_test, y_test, fitted=False)
    estim = run("warm_start", lambda: HyperoptEstimator(classifier=svc("ws_svc"), preprocessing=[],
                                                        max_evals=5), fit)
    first = estim.trials
    estim.fit(X_train, y_train, warm_start=True)
    assert estim.trials is first and len(first.trials) == 10, len(estim.trials.trials)
    check("warm_start=True (5 + 5 trials)", estim, X_test, y_test)

    # -- a custom space= dict; hyperopt-sklearn appends ex_preprocs to space.named_args
    def with_space():
        space = {"classifier": svc("sp_svc"), "regressor": None, "preprocessing": [standard_scaler("sp_pre")]}
        return HyperoptEstimator(space=space, max_evals=5)
    estim = run("space", with_space, fit)
    assert "ex_preprocs" in dict(estim.space.named_args)
    check("space= dict", estim, X_test, y_test)
    estim.fit(X_train, y_train)
    check("space= dict, second fit()", estim, X_test, y_test)
    print(f"  quickstarts took {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
