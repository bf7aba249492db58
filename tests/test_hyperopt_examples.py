"""hyperopt-documentation-style programs using rand.suggest; only the import lines differ from
hyperopt usage (``hyperopt`` → ``hpo_mongo``). Objectives are synthetic stand-ins for models."""
import math

import numpy as np

# --- the only lines that differ from a hyperopt program ------------------------------------
from hpo_mongo import STATUS_OK, Trials, fmin, hp, rand, space_eval
from hpo_mongo.pyll import scope
# -------------------------------------------------------------------------------------------


def test_nested_classifier_choice_space():
    space = hp.choice("classifier_type", [
        {"type": "naive_bayes"},
        {"type": "svm",
         "C": hp.lognormal("svm_C", 0, 1),
         "kernel": hp.choice("svm_kernel", [
             {"ktype": "linear"},
             {"ktype": "RBF", "width": hp.lognormal("svm_rbf_width", 0, 1)},
         ])},
        {"type": "dtree",
         "criterion": hp.choice("dtree_criterion", ["gini", "entropy"]),
         "max_depth": hp.choice("dtree_max_depth", [None, hp.qlognormal("dtree_max_depth_int", 3, 1, 1)]),
         "min_samples_split": hp.qlognormal("dtree_min_samples_split", 2, 1, 1)},
    ])

    def objective(args):
        if args["type"] == "naive_bayes":
            return {"loss": 0.5, "status": STATUS_OK}
        if args["type"] == "svm":
            width = args["kernel"].get("width", 1.0)
            return {"loss": abs(math.log(args["C"])) * 0.1 + abs(math.log(width)) * 0.05 + 0.1, "status": STATUS_OK}
        depth = args["max_depth"] or 30
        return {"loss": 0.3 + abs(depth - 8) / 100.0, "status": STATUS_OK, "criterion": args["criterion"]}

    trials = Trials()
    best = fmin(objective, space, algo=rand.suggest, max_evals=60, trials=trials,
                rstate=np.random.default_rng(1), show_progressbar=False)
    point = space_eval(space, best)
    assert point["type"] == "svm"
    assert best["classifier_type"] == 1 and "svm_C" in best and "dtree_criterion" not in best
    for t in trials.trials:
        vals = t["misc"]["vals"]
        kind = vals["classifier_type"][0]
        assert bool(vals["svm_C"]) == (kind == 1)
        assert bool(vals["dtree_criterion"]) == (kind == 2)
        if vals["svm_kernel"]:
            assert bool(vals["svm_rbf_width"]) == (vals["svm_kernel"][0] == 1)
        else:
            assert not vals["svm_rbf_width"]


def test_scope_int_quniform_space():
    space = {
        "n_estimators": scope.int(hp.quniform("n_estimators", 10, 500, 10)),
        "max_depth": scope.int(hp.quniform("max_depth", 1, 15, 1)),
        "learning_rate": hp.loguniform("learning_rate", np.log(0.01), np.log(0.3)),
        "subsample": hp.uniform("subsample", 0.5, 1.0),
    }
    seen = []

    def objective(params):
        seen.append(params)
        assert isinstance(params["n_estimators"], int) and isinstance(params["max_depth"], int)
        return (params["max_depth"] - 6) ** 2 + abs(np.log(params["learning_rate"] / 0.1)) + \
            abs(params["n_estimators"] - 200) / 100

    trials = Trials()
    best = fmin(fn=objective, space=space, algo=rand.suggest, max_evals=50, trials=trials,
                rstate=np.random.default_rng(0), show_progressbar=False)
    assert isinstance(best["max_depth"], float) or isinstance(best["max_depth"], int)
    params = space_eval(space, best)
    assert 10 <= params["n_estimators"] <= 500 and params["n_estimators"] % 10 == 0
    assert all(1 <= p["max_depth"] <= 15 for p in seen)
    assert trials.best_trial["result"]["loss"] == min(trials.losses())


def test_conditional_neural_network_space():
    space = {
        "choice": hp.choice("num_layers", [
            {"layers": "two"},
            {"layers": "three",
             "units3": hp.uniform("units3", 64, 1024),
             "dropout3": hp.uniform("dropout3", 0.0, 0.5)},
        ]),
        "units1": hp.uniform("units1", 64, 1024),
        "units2": hp.uniform("units2", 64, 1024),
        "dropout1": hp.uniform("dropout1", 0.25, 0.75),
        "dropout2": hp.uniform("dropout2", 0.25, 0.75),
        "batch_size": hp.uniform("batch_size", 28, 128),
        "nb_epochs": 100,
        "optimizer": hp.choice("optimizer", ["adadelta", "adam", "rmsprop"]),
        "activation": "relu",
    }

    def f_nn(params):
        acc = 0.9 - abs(params["dropout1"] - 0.5) / 5 - abs(params["units1"] - 512) / 5000
        if params["choice"]["layers"] == "three":
            acc += 0.02 - params["choice"]["dropout3"] / 10
        acc += {"adadelta": 0.0, "adam": 0.03, "rmsprop": 0.01}[params["optimizer"]]
        return {"loss": -acc, "status": STATUS_OK}

    trials = Trials()
    best = fmin(f_nn, space, algo=rand.suggest, max_evals=50, trials=trials,
                rstate=np.random.default_rng(2), show_progressbar=False)
    best_params = space_eval(space, best)
    assert best_params["nb_epochs"] == 100 and best_params["activation"] == "relu"
    assert best_params["optimizer"] in ("adadelta", "adam", "rmsprop")
    for t in trials.trials:
        three = t["misc"]["vals"]["num_layers"] == [1]
        assert bool(t["misc"]["vals"]["units3"]) == three
    assert -trials.best_trial["result"]["loss"] > 0.85


def test_hyperopt_module_paths_import_after_the_swap():
    """Every import line of hyperopt code that hpo_mongo supports, with only the package renamed."""
    import hpo_mongo
    from hpo_mongo import (STATUS_FAIL, STATUS_OK, Trials, anneal, fmin, grid, hp, rand,  # noqa: F401
                           space_eval, tpe, trials_from_docs)
    from hpo_mongo.base import JOB_STATE_DONE, Domain, Trials as BaseTrials  # noqa: F401
    from hpo_mongo.early_stop import no_progress_loss  # noqa: F401
    from hpo_mongo.exceptions import AllTrialsFailed, DuplicateLabel, InvalidLoss  # noqa: F401
    from hpo_mongo.fmin import fmin as fmin2, generate_trials_to_calculate  # noqa: F401
    from hpo_mongo.mongoexp import MongoTrials  # noqa: F401
    from hpo_mongo.pyll import scope as scope2  # noqa: F401
    from hpo_mongo.pyll.base import scope as scope3  # noqa: F401
    from hpo_mongo.pyll.stochastic import sample  # noqa: F401

    assert hpo_mongo.fmin is fmin is fmin2 and callable(hpo_mongo.fmin)  # the function, not the module
    assert BaseTrials is Trials and scope2 is scope3
    assert tpe.suggest and anneal.suggest and rand.suggest and grid.suggest
    trials = generate_trials_to_calculate([{"x": 1.0}])
    fmin(lambda x: x, hp.uniform("x", 0, 2), algo=rand.suggest, max_evals=2, trials=trials,
         rstate=np.random.default_rng(0), show_progressbar=False)
    assert trials.trials[0]["misc"]["vals"]["x"] == [1.0] and len(trials) == 2
