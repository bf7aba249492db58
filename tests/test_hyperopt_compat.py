"""hyperopt 0.3.0 as its users see it: every module path and name, and one test per semantic point.

Expected values were produced by hyperopt 0.3.0 itself (scratch venv, never at test time) and are
encoded here; the comments say which hyperopt call gave them.
"""
from __future__ import annotations

import importlib
import pickle
import threading

import numpy as np
import pytest

from hpo_mongo import STATUS_FAIL, STATUS_OK, Trials, fmin, hp, rand, space_eval, tpe
from hpo_mongo.exceptions import AllTrialsFailed, DuplicateLabel, InvalidAnnotatedParameter, InvalidParameterError
from hpo_mongo.pyll import as_apply, scope, stochastic
from tests.extras import require
from tests.helpers_distributed import quadratic

QUIET = {"show_progressbar": False}

# -- every module path hyperopt 0.3.0 ships, and the names the issue lists (hyperopt → hpo_mongo)
MODULE_NAMES = {
    "": ["hp", "fmin", "FMinIter", "fmin_pass_expr_memo_ctrl", "partial", "space_eval", "Trials", "Domain", "Ctrl",
         "trials_from_docs", "SparkTrials", "STATUS_OK", "STATUS_FAIL", "JOB_STATE_DONE", "anneal", "atpe", "mix",
         "rand", "tpe", "exceptions"],
    "hp": ["uniform", "choice", "pchoice", "randint", "uniformint", "quniform", "loguniform", "qloguniform",
           "normal", "qnormal", "lognormal", "qlognormal"],
    "progress": ["no_progress_callback", "default_callback", "tqdm_progress_callback"],
    "utils": ["coarse_utcnow", "load_tokens", "json_call", "get_obj", "pmin_sampled", "fast_isin", "working_dir",
              "temp_dir", "use_obj_for_literal_in_memo"],
    "criteria": ["EI_empirical", "EI_gaussian_empirical", "EI_gaussian", "logEI_gaussian", "UCB", "PI_gaussian"],
    "rdists": ["loguniform_gen", "qloguniform_gen", "quniform_gen", "qnormal_gen", "lognorm_gen", "qlognormal_gen"],
    "pyll_utils": ["hp_uniform", "hp_choice", "validate_label", "expr_to_config", "Cond", "EQ"],
    "mix": ["suggest"],
    "algobase": ["SuggestAlgo", "ExprEvaluator"],
    "vectorize": ["VectorizeHelper"],
    "std_out_err_redirect_tqdm": ["std_out_err_redirect_tqdm", "DummyTqdmFile"],
    "graph_viz": ["dot_hyperparameters"],
    "main": ["main", "main_search"],
    "spark": ["SparkTrials"],
    "ipy": ["IPythonTrials", "LostEngineError"],
    "atpe": ["suggest"],
    "anneal": ["suggest"], "rand": ["suggest"], "tpe": ["suggest"], "early_stop": ["no_progress_loss"],
    "fmin": ["fmin", "FMinIter", "fmin_pass_expr_memo_ctrl", "partial", "space_eval", "generate_trials_to_calculate"],
    "base": ["InvalidTrial", "miscs_to_idxs_vals", "miscs_update_idxs_vals", "SONify", "spec_from_misc",
             "trials_from_docs", "Trials", "Domain", "Ctrl", "JOB_STATE_ERROR"],
    "exceptions": ["InvalidAnnotatedParameter", "BadSearchSpace", "DuplicateLabel", "AllTrialsFailed", "InvalidTrial",
                   "InvalidLoss", "InvalidResultStatus"],
    "pyll": ["scope", "as_apply", "Apply", "Literal", "rec_eval", "dfs", "clone", "stochastic", "base"],
    "pyll.base": ["dfs", "clone", "rec_eval", "as_apply", "Apply", "Literal", "scope", "toposort"],
    "pyll.stochastic": ["sample", "uniform", "normal", "loguniform", "quniform", "qloguniform", "qnormal",
                        "lognormal", "qlognormal", "randint", "categorical", "recursive_set_rng_kwarg"],
    "plotting": ["main_plot_history", "main_plot_histogram", "main_plot_vars", "main_plot_1D_attachment"],
    "mongoexp": ["MongoTrials", "MongoJobs", "MongoWorker", "main_worker_helper", "as_mongo_str", "parse_url",
                 "ReserveTimeout", "main_worker"],
}


def test_every_hyperopt_module_path_and_name_imports():
    for path, names in MODULE_NAMES.items():
        module = importlib.import_module("hpo_mongo" + (f".{path}" if path else ""))
        missing = [n for n in names if not hasattr(module, n)]
        assert not missing, f"hpo_mongo.{path} lacks {missing}"
    from hpo_mongo.hp import uniform  # hp is a module, as in hyperopt
    assert uniform("x", 0, 1).label == "x"
    require("sklearn", "sklearn")
    assert importlib.import_module("hpo_mongo.sklearn").HyperoptSearchCV


def test_modules_that_cannot_work_say_what_to_use():
    from hpo_mongo import atpe, ipy, vectorize
    from hpo_mongo.main import main_search
    with pytest.raises(NotImplementedError, match="tpe.suggest"):
        atpe.suggest([0], None, Trials(), 0)
    with pytest.raises(NotImplementedError, match="MongoTrials"):
        ipy.IPythonTrials(object())
    with pytest.raises(NotImplementedError, match="compile_space"):
        vectorize.VectorizeHelper(None, None)
    with pytest.raises(NotImplementedError, match="fmin"):
        main_search()


# ---------------------------------------------------------------- semantics
def test_lists_become_tuples_and_dict_keys_are_sorted():
    # hyperopt: space_eval({'b': 1, 'a': hp.uniform('x', 0, 1), 'c': [1, 2]}, {'x': 0.5})
    out = space_eval({"b": 1, "a": hp.uniform("x", 0, 1), "c": [1, 2]}, {"x": 0.5})
    assert out == {"a": 0.5, "b": 1, "c": (1, 2)} and list(out) == ["a", "b", "c"]
    # hyperopt: stochastic.sample([1, {'b': 2, 'a': (3, [4])}]) == (1, {'a': (3, (4,)), 'b': 2})
    assert stochastic.sample([1, {"b": 2, "a": (3, [4])}],
                             rng=np.random.default_rng(0)) == (1, {"a": (3, (4,)), "b": 2})
    seen = []
    fmin(lambda p: seen.append(p) or 0.0, [hp.uniform("u", 0, 1), [1]], algo=rand.suggest, max_evals=1, **QUIET)
    assert isinstance(seen[0], tuple) and seen[0][1] == (1,)
    # hyperopt's test_space_eval
    space = hp.choice("a", [("case 1", 1 + hp.lognormal("c1", 0, 1)), ("case 2", hp.uniform("c2", -10, 10))])
    assert space_eval(space, {"a": 0, "c1": 1.0}) == ("case 1", 2.0)
    assert space_eval(space, {"a": 1, "c2": 3.5}) == ("case 2", 3.5)


def test_no_progress_loss_stops_after_n_trials_without_progress():
    from hpo_mongo.early_stop import no_progress_loss
    from hpo_mongo.fmin import generate_trials_to_calculate
    # hyperopt's test_early_stop_no_progress_loss (10 trials); its point -100 lies outside the space,
    # which hpo_mongo refuses (docs/compat.md): the lowest point inside it plays the same role
    trials = generate_trials_to_calculate([{"x": -5.0}])
    fmin(lambda x: x, hp.uniform("x", -5, 5), algo=rand.suggest, max_evals=500, trials=trials,
         early_stop_fn=no_progress_loss(10), **QUIET)
    assert len(trials) == 10


def test_duplicate_labels_even_for_identical_definitions():
    with pytest.raises(DuplicateLabel):  # hyperopt's test_duplicate_label_is_error
        fmin(lambda xy: xy[0] ** 2, [hp.uniform("x", -5, 5), hp.uniform("x", -5, 5)], algo=rand.suggest,
             max_evals=2, **QUIET)
    x = hp.uniform("x", -5, 5)
    best = fmin(lambda xy: (xy[0] - xy[1]) ** 2, [x, x], algo=rand.suggest, max_evals=3, **QUIET)
    assert set(best) == {"x"}


def test_every_trial_raised_returns_none_in_memory_else_all_trials_failed():
    def boom(_):
        raise RuntimeError("no")

    trials = Trials()  # hyperopt's test_catch_eval_exceptions_True: returns None, 2 ERROR trials
    assert fmin(boom, hp.uniform("x", 0, 1), algo=rand.suggest, max_evals=2, trials=trials,
                catch_eval_exceptions=True, return_argmin=False, **QUIET) is None
    assert [t["state"] for t in trials.trials] == [3, 3] and all(t["misc"]["error"] for t in trials.trials)
    with pytest.raises(AllTrialsFailed):  # DONE trials with status fail: hyperopt's argmin raises
        fmin(lambda _: {"status": STATUS_FAIL}, hp.uniform("x", 0, 1), algo=rand.suggest, max_evals=2,
             return_argmin=False, **QUIET)
    with pytest.raises(AllTrialsFailed):
        fmin(boom, hp.uniform("x", 0, 1), algo=rand.suggest, max_evals=2, catch_eval_exceptions=True, **QUIET)


def test_refresh_tolerates_mixed_tid_types():
    # hyperopt's TestTrials.test_insert_sync: tids "a", 5, 4, 9, "id0", "id1" → 6 trials after refresh
    def doc(tid):
        return {"tid": tid, "spec": None, "result": {"status": "new"}, "misc": {"tid": tid, "cmd": None, "idxs": {},
                "vals": {}}, "state": 0, "owner": None, "book_time": None, "refresh_time": None, "exp_key": None}
    trials = Trials()
    for tid in ("a", 5):
        trials.insert_trial_doc(doc(tid))
    trials.insert_trial_docs([doc(4), doc(9)])
    trials.insert_trial_docs(trials.new_trial_docs(
        ["id0", "id1"], [{}, {}], [{"status": "new"}] * 2,
        [{"tid": t, "idxs": {}, "vals": {}, "cmd": None} for t in ("id0", "id1")]))
    assert len(trials) == 0
    trials.refresh()
    assert len(trials) == 6 and trials.tids == [4, 5, 9, "a", "id0", "id1"]
    assert trials.new_trial_ids(1) == [10]


def test_mongo_attachments_accept_str(mongo_db):
    from hpo_mongo.mongoexp import MongoJobs, MongoTrials
    trials = MongoTrials(MongoJobs(mongo_db), exp_key="att")
    trials.attachments["note"] = "héllo"  # hyperopt stores str UTF-8 encoded, reads bytes back
    trials.attachments["blob"] = b"\x00\x01"
    assert trials.attachments["note"] == "héllo".encode() and trials.attachments["blob"] == b"\x00\x01"


@pytest.mark.parametrize("kw,sentence", [
    ({"timeout": -1}, "The timeout argument should be None or a positive value. Given value: -1"),
    ({"timeout": True}, "The timeout argument should be None or a positive value. Given value: True"),
    ({"loss_threshold": "a"}, "The loss_threshold argument should be None or a numeric value. Given value: a"),
    ({"loss_threshold": True}, "The loss_threshold argument should be None or a numeric value. Given value: True"),
])
def test_argument_errors_contain_hyperopts_sentence(kw, sentence):
    with pytest.raises(InvalidParameterError) as ei:  # hyperopt's test_invalid_timeout / _loss_threshold
        fmin(lambda x: x, hp.choice("x", range(20)), max_evals=10, algo=rand.suggest, **kw, **QUIET)
    assert isinstance(ei.value, ValueError) and sentence in str(ei.value)
    assert "parameter of fmin must be" in str(ei.value)


def test_stochastic_nodes_are_noise_drawn_from_the_trials_rng():
    # hyperopt: sample(scope.normal(0, 1), rng=default_rng(0)) = 0.1257302210933933;
    # sample(scope.one_of(10, 20, 30), rng=default_rng(1)) = 20; sample(scope.uniform(2, 3), rng=default_rng(5))
    assert stochastic.sample(scope.normal(0, 1), rng=np.random.default_rng(0)) == pytest.approx(0.1257302210933933)
    assert stochastic.sample(scope.one_of(10, 20, 30), rng=np.random.default_rng(1)) == 20
    assert stochastic.sample(scope.uniform(2, 3), rng=np.random.default_rng(5)) == pytest.approx(2.80500292374538)
    # the plain functions draw as hyperopt's: uniform 0.6369616873214543, randint(5) 4, categorical 1
    assert stochastic.uniform(0, 1, rng=np.random.default_rng(0)) == pytest.approx(0.6369616873214543)
    assert stochastic.randint(5, rng=np.random.default_rng(0)) == 4
    assert stochastic.categorical([0.2, 0.8], rng=np.random.default_rng(0)) == 1
    # hyperopt's gauss_wave2 test domain: noise with its own rng, inside a choice
    var = 0.1
    x = hp.uniform("x", -20, 20)
    t = scope.normal(0, var, rng=np.random.default_rng(123)) + 2 * scope.exp(-((x / 5) ** 2))
    space = {"loss": -hp.choice("hf", [t, t + scope.sin(x) * hp.uniform("amp", 0, 1)]), "loss_variance": var,
             "status": STATUS_OK}
    trials = Trials()
    fmin(lambda d: d, space, algo=rand.suggest, max_evals=5, trials=trials, rstate=np.random.default_rng(0), **QUIET)
    assert len(trials) == 5 and all(t["result"]["status"] == STATUS_OK for t in trials.trials)
    # without rng=: each trial's noise comes from its tid, the same on every evaluation of it
    noisy = {"n": scope.normal(0, 1), "x": hp.uniform("y", 0, 1)}
    seen = []
    fmin(lambda d: seen.append(d["n"]) or d["x"], noisy, algo=rand.suggest, max_evals=3, **QUIET)
    assert seen == [pytest.approx(np.random.default_rng(tid).normal(0, 1)) for tid in range(3)]


def test_annotated_space():
    def objective(x: hp.uniform("x", -10, 10), y: hp.uniform("y", -10, 10)) -> float:  # hyperopt's test
        return (x * y) ** 2

    trials = Trials()
    fmin(objective, space="annotated", algo=tpe.suggest, max_evals=10, trials=trials, **QUIET)
    assert len(trials) == 10 and set(trials.trials[0]["misc"]["vals"]) == {"x", "y"}

    def bad(x: hp.uniform("x", -10, 10), y: float):
        return x

    with pytest.raises(InvalidAnnotatedParameter, match='When using `space="annotated"`, please annotate'):
        fmin(bad, space="annotated", algo=tpe.suggest, max_evals=10, **QUIET)


def test_as_apply_is_a_live_view_that_round_trips():
    # hyperopt: as_apply({'z': 1, 'a': [1, 2]}): name 'dict', named_args keys ['a', 'z'], eval {'a': (1, 2), 'z': 1}
    a = as_apply({"z": 1, "a": [1, 2]})
    assert a.name == "dict" and [k for k, _ in a.named_args] == ["a", "z"] and a.eval() == {"a": (1, 2), "z": 1}
    assert a.named_args[0][1].name == "pos_args" and a.named_args[0][1].eval() == (1, 2) and a.pos_args == []
    # hyperopt-sklearn's pattern: read named_args, append to it, fit again
    space = as_apply({"clf": hp.choice("c", [{"k": "svm", "C": hp.loguniform("C", -2, 2)}, {"k": "nb"}]), "pre": []})
    assert dict(space.named_args)["pre"].eval() == ()
    space.named_args.append(["ex", as_apply([])])
    seen = []
    best = fmin(lambda d: seen.append(d) or (0.0 if d["clf"]["k"] == "nb" else 1.0), space, algo=rand.suggest,
                max_evals=6, rstate=np.random.default_rng(0), **QUIET)
    assert all(set(d) == {"clf", "pre", "ex"} and d["ex"] == () for d in seen)
    assert space_eval(space, best)["clf"] == {"k": "nb"}
    space.named_args[0][1] = as_apply({"k": "fixed"})  # replacing a value changes the space too
    assert space_eval(space, {})["clf"] == {"k": "fixed"}


# ---------------------------------------------------------------- names with values from hyperopt
def test_rdists_match_hyperopt():
    from hpo_mongo import rdists as r
    x = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 7.0, 7.5, 10.0, 20.0])
    inf = np.inf
    lu = r.loguniform_gen(0, 2)  # every expected value below is hyperopt 0.3.0's
    assert lu.pdf(np.array([1.0, 2.0, 7.0])) == pytest.approx([0.5, 0.25, 0.071428571429])
    assert lu.cdf(np.array([1.0, 2.0, 7.0])) == pytest.approx([0.0, 0.34657359028, 0.972955074528])
    assert lu.logpdf(3.0) == pytest.approx(-1.791759469228)
    ln = r.lognorm_gen(0.5, 1.2)
    assert ln.pdf(np.array([0.5, 1, 3.0])) == pytest.approx([0.405587545912, 0.304810305345, 0.097852421902])
    assert ln.cdf(2.0) == pytest.approx(0.563935965812)
    qu = r.quniform_gen(0.3, 9.2, 1.5)
    assert qu.pmf(x) == pytest.approx([0.050561797753, 0, 0, 0.168539325843, 0, 0.168539325843, 0,
                                       0.168539325843, 0, 0])
    assert list(qu.xs) == [0.0, 1.5, 3.0, 4.5, 6.0, 7.5, 9.0] and qu.ps[-1] == pytest.approx(0.106741573034)
    assert r.quniform_gen(0, 10, 2).logpmf(x) == pytest.approx(
        [-2.302585092994, -inf, -inf, -inf, -1.609437912434, -inf, -inf, -inf, -2.302585092994, -inf])
    qlu = r.qloguniform_gen(0, 3, 2)
    assert list(qlu.xs) == list(range(0, 22, 2)) and qlu.ps[:4] == pytest.approx(
        [0.0, 0.366204096223, 0.170275207922, 0.112157412207])
    assert r.qloguniform_gen(-1, 2.5, 0.5).pmf(x) == pytest.approx(
        [0.0, 0.203519407871, 0.145950178219, 0.096134924749, 0.071804122366, 0.047729738475, 0.020416846852,
         0.019054678428, 0.014288691593, 0.0])
    assert r.qnormal_gen(4, 7, 2).pmf(x) == pytest.approx(
        [0.096592308871, 0, 0, 0, 0.109083932286, 0, 0, 0, 0.078870008096, 0.008483066165])
    assert r.qnormal_gen(0, 1, 0.5).logpmf(x) == pytest.approx(
        [-1.622459064037, -1.744877856956, -2.112150050473, -2.724322629802, -3.581472402524, -6.031146278366,
         -25.659182607728, -29.221680511409, -50.744147993578, -198.935933774464])
    assert r.qlognormal_gen(0, 2, 1).pmf(x) == pytest.approx(
        [0.364455844737, 0, 0.215872116739, 0, 0.09624803449, 0.05789162839, 0.017803134125, 0, 0.010297853833,
         0.003249855999])
    assert r.qlognormal_gen(1, 0.5, 0.5).pmf(2.0) == pytest.approx(0.163441871289)
    np.random.seed(3)  # rvs draw from numpy's global generator, as hyperopt's
    assert list(r.quniform_gen(0, 10, 2).rvs(size=5)) == [6, 8, 2, 6, 8]
    assert list(r.qnormal_gen(0, 3, 1).rvs(size=3)) == [-1, 0, 6]
    assert list(r.qlognormal_gen(0, 1, 0.5).rvs(size=3)) == [0.5, 2.5, 0.5]


def test_criteria_match_hyperopt():
    from hpo_mongo import criteria
    # hyperopt 0.3.0: logEI_gaussian(0, 1, 40), logEI_gaussian([0, 1], [1, 4], [2, -1]), EI_gaussian(.5, 2, .1)
    assert criteria.logEI_gaussian(0.0, 1.0, 40.0) == pytest.approx(-808.2985683564656)
    assert criteria.logEI_gaussian(np.array([0.0, 1.0]), np.array([1.0, 4.0]), np.array([2.0, -1.0])) == \
        pytest.approx([-4.768783523917116, 0.7731733994092523])
    assert criteria.EI_gaussian(0.5, 2.0, 0.1) == pytest.approx(0.7866079113945272)
    assert criteria.UCB(1.0, 4.0, 2.0) == 5.0 and criteria.PI_gaussian(0.0, 1.0, 0.0) == pytest.approx(0.5)


def test_mix_picks_the_algorithm_hyperopt_picks():
    from hpo_mongo import Domain, mix
    picked = []

    def algo(name):
        return lambda new_ids, domain, trials, seed: picked.append(name) or rand.suggest(new_ids, domain, trials, seed)

    # hyperopt: default_rng(3).multinomial(1, [.5, .5]).argmax() == 1
    docs = mix.suggest([0], Domain(lambda x: x, hp.uniform("x", 0, 1)), Trials(), 3,
                       p_suggest=[(0.5, algo("a")), (0.5, algo("b"))])
    assert picked == ["b"] and len(docs) == 1
    with pytest.raises(InvalidParameterError, match="sum to 1"):
        mix.suggest([0], None, Trials(), 3, p_suggest=[(0.5, rand.suggest)])


def test_fmin_iter_partial_and_pass_expr_memo_ctrl():
    from hpo_mongo import Domain, FMinIter, fmin_pass_expr_memo_ctrl, partial
    from hpo_mongo.pyll import rec_eval

    @fmin_pass_expr_memo_ctrl
    def objective(expr, memo, ctrl, offset=0.0):
        return rec_eval(expr, memo=memo)["x"] + offset

    fn = partial(objective, offset=1.0)
    assert fn.fmin_pass_expr_memo_ctrl
    trials = Trials()
    it = FMinIter(rand.suggest, Domain(fn, {"x": hp.uniform("x", 0, 1)}), trials, np.random.default_rng(0),
                  max_evals=5)
    it.run(2)
    assert len(trials) == 2
    assert next(iter(it)) is trials and len(trials) == 3
    it.exhaust()
    assert len(trials) == 5 and all(1.0 <= loss <= 2.0 for loss in trials.losses())


def test_base_helpers_follow_hyperopts_formats():
    from hpo_mongo.base import SONify, miscs_to_idxs_vals, miscs_update_idxs_vals, spec_from_misc
    # with bson, as hyperopt: tuples stay tuples, numpy values become Python values
    assert SONify({"a": (np.int64(1), np.float32(2.5)), "b": np.array([[1, 2]])}) == {"a": (1, 2.5), "b": [[1, 2]]}
    with pytest.raises(TypeError):
        SONify(object())
    miscs = [{"tid": 0}, {"tid": 1}]
    miscs_update_idxs_vals(miscs, {"x": [0, 1], "y": [1]}, {"x": [0.5, 0.7], "y": [3]})
    assert miscs[0] == {"tid": 0, "idxs": {"x": [0], "y": []}, "vals": {"x": [0.5], "y": []}}
    assert miscs_to_idxs_vals(miscs) == ({"x": [0, 1], "y": [1]}, {"x": [0.5, 0.7], "y": [3]})
    assert spec_from_misc(miscs[0]) == {"x": 0.5}


def test_pyll_base_walks_and_copies_the_tree():
    from hpo_mongo.pyll import Literal, clone, dfs
    from hpo_mongo.pyll.stochastic import recursive_set_rng_kwarg
    x = hp.uniform("x", 0, 1)
    space = {"a": x * 2, "b": [x, scope.normal(0, 1)], "c": Literal([1, 2])}
    nodes = dfs(space)
    assert nodes.index(x) < nodes.index(space["a"]) and len(nodes) == 4
    copy = clone(space)
    assert copy["a"] is not space["a"] and space_eval(copy, {"x": 0.25}, rng=0)["a"] == 0.5
    assert space_eval(space, {"x": 0.25}, rng=0)["c"] == [1, 2]  # a Literal is kept as is (a list)
    recursive_set_rng_kwarg(copy, np.random.default_rng(0))
    assert space_eval(copy, {"x": 0.1})["b"][1] == pytest.approx(0.1257302210933933)


def test_mongoexp_adapters_have_hyperopts_signatures(mongo_url, mongo_db):
    from hpo_mongo import mongoexp
    assert mongoexp.as_mongo_str("localhost:1234/db") == "mongo://localhost:1234/db"
    assert mongoexp.as_mongo_str("mongo://h/db") == "mongo://h/db"
    assert mongoexp.parse_url("mongo://u:pw@host:27017/exp/jobs?authSource=admin") == \
        ("mongo", "u", "pw", "host", 27017, "exp", "jobs", "admin")
    mj = mongoexp.MongoJobs.new_from_connection_str(mongo_url, gfs_coll="fs", config_name="spec")
    assert mj.jobs is mj.coll and len(mj) == 0
    trials = mongoexp.MongoTrials(mj, exp_key="mw")
    done: dict = {}
    driver = threading.Thread(target=lambda: done.setdefault("best", fmin(
        quadratic, {"x": hp.uniform("x", -2, 2)}, algo=rand.suggest, max_evals=1, trials=trials, **QUIET)))
    driver.start()
    mongoexp.MongoWorker(mj=mj, poll_interval=0.05, exp_key="mw").run_one(reserve_timeout=20)
    driver.join(20)
    assert "x" in done["best"] and [t["state"] for t in trials.trials] == [2]
    with pytest.raises(mongoexp.ReserveTimeout):
        mongoexp.MongoWorker(mj=mj, poll_interval=0.05, exp_key="mw").run_one(reserve_timeout=0.3)


def test_expr_to_config_and_graph_viz_describe_conditions():
    from hpo_mongo.graph_viz import dot_hyperparameters
    from hpo_mongo.pyll_utils import EQ, expr_to_config
    space = hp.choice("m", [{"a": hp.uniform("a", 0, 1)}, {"k": hp.choice("k", [1, {"g": hp.uniform("g", 0, 1)}])}])
    hps: dict = {}
    expr_to_config(space, (), hps)
    assert hps["m"]["conditions"] == {()} and hps["a"]["conditions"] == {(EQ("m", 0),)}
    assert hps["g"]["conditions"] == {(EQ("m", 1), EQ("k", 1))} and hps["g"]["label"] == "g"
    dot = dot_hyperparameters(space)
    assert dot.startswith("digraph {") and '"m=1 & k=1" -> "g";' in dot and '"m" -> "m=0";' in dot


def test_suggest_algo_subclass_proposes_active_values_only():
    from hpo_mongo import Domain
    from hpo_mongo.algobase import SuggestAlgo

    class Lowest(SuggestAlgo):  # always the lowest value (choices: the first option)
        def on_node_hyperparameter(self, memo, node, label):
            return 0 if node.dist.is_categorical else node.dist.low

    domain = Domain(lambda d: 0.0, hp.choice("m", [{"a": hp.uniform("a", 2, 3)}, {"b": hp.uniform("b", 5, 6)}]))
    (doc,) = Lowest(domain, Trials(), seed=0)(7)
    assert doc["tid"] == 7 and doc["misc"]["vals"] == {"m": [0], "a": [2.0], "b": []}


def test_main_plot_1d_attachment_draws_one_line_per_trial():
    require("matplotlib", "plot")
    import matplotlib
    matplotlib.use("Agg")
    from hpo_mongo.plotting import main_plot_1D_attachment

    def objective(x):
        return {"loss": x, "status": STATUS_OK, "attachments": {"curve": pickle.dumps(np.arange(5) * x)}}

    trials = Trials()
    fmin(objective, hp.uniform("x", 0, 1), algo=rand.suggest, max_evals=3, trials=trials, **QUIET)
    fig = main_plot_1D_attachment(trials, "curve", do_show=False)
    assert len(fig.axes[0].lines) == 3 and fig.axes[0].get_title() == "curve"


def test_hyperopt_search_cv_fits_and_warm_starts():
    require("sklearn", "sklearn")
    from sklearn.datasets import load_iris
    from sklearn.svm import SVC
    from hpo_mongo.sklearn import HyperoptSearchCV
    X, y = load_iris(return_X_y=True)
    search = HyperoptSearchCV(SVC(), {"C": hp.loguniform("C", -3, 3), "kernel": hp.choice("k", ["rbf", "linear"])},
                              max_evals=4, random_state=0, cv=3)
    search.fit(X, y)
    assert len(search.trials_) == 4 and set(search.best_params_) == {"C", "kernel"} and search.best_score_ > 0.8
    search.set_params(warm_start=True, max_evals=6)
    search.fit(X, y)
    assert len(search.trials_) == 6  # max_evals is the total, as hyperopt's


def test_main_worker_helper_runs_a_worker_from_hyperopts_options(mongo_url):
    import optparse
    from hpo_mongo import mongoexp
    trials = mongoexp.MongoTrials(mongo_url, exp_key="helper")
    done: dict = {}
    driver = threading.Thread(target=lambda: done.setdefault("best", fmin(
        quadratic, {"x": hp.uniform("x", -2, 2)}, algo=rand.suggest, max_evals=1, trials=trials, **QUIET)))
    driver.start()
    options = optparse.Values({"mongo": mongo_url, "exp_key": "helper", "poll_interval": 0.05,
                               "reserve_timeout": 20.0, "max_jobs": 1, "max_consecutive_failures": 4,
                               "last_job_timeout": None, "workdir": None, "use_subprocesses": False,
                               "max_jobs_in_db": None})
    assert mongoexp.main_worker_helper(options, []) == 0
    driver.join(20)
    assert "x" in done["best"]


def test_utils_dotted_names_and_temp_dir(tmp_path):
    import os
    from hpo_mongo import utils
    assert utils.load_tokens("os.path.join".split(".")) is os.path.join
    assert utils.json_call("builtins.dict", kwargs={"a": 1}) == {"a": 1}
    now = utils.coarse_utcnow()
    assert now.tzinfo is None and now.microsecond % 1000 == 0
    target = tmp_path / "a" / "b"
    with utils.temp_dir(str(target), erase_after=True):
        assert target.is_dir() and (tmp_path / "a.inuse").exists()
    assert not (tmp_path / "a").exists() and not (tmp_path / "a.inuse").exists()
    assert list(utils.fast_isin(np.array([1, 2, 3]), np.array([2]))) == [False, True, False]
