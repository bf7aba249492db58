"""The hp DSL: distributions, bounds, quantization, conditional spaces, space_eval and errors."""
import math

import numpy as np
import pytest
from scipy import stats

from hpo_mongo import hp, space_eval
from hpo_mongo.exceptions import DuplicateLabel, InvalidSpaceError, UnsupportedExpressionError
from hpo_mongo.pyll import scope
from hpo_mongo.pyll.stochastic import sample
from hpo_mongo.space import compile_space

N = 4000


def draws(node, n=N, seed=0):
    cs = compile_space(node)
    return cs.sample(np.random.default_rng(seed), n)[:, 0]


def test_uniform_follows_distribution():
    x = draws(hp.uniform("x", -2, 3))
    assert stats.kstest(x, stats.uniform(-2, 5).cdf).pvalue > 0.001
    assert x.min() >= -2 and x.max() <= 3


def test_loguniform_follows_distribution():
    x = draws(hp.loguniform("x", -3, 2))
    assert stats.kstest(np.log(x), stats.uniform(-3, 5).cdf).pvalue > 0.001
    assert x.min() >= math.exp(-3) and x.max() <= math.exp(2)


def test_normal_and_lognormal_follow_distribution():
    x = draws(hp.normal("x", 1.5, 0.5))
    assert stats.kstest(x, stats.norm(1.5, 0.5).cdf).pvalue > 0.001
    y = draws(hp.lognormal("y", 0.2, 0.7))
    assert stats.kstest(np.log(y), stats.norm(0.2, 0.7).cdf).pvalue > 0.001


@pytest.mark.parametrize("node,q", [
    (hp.quniform("x", 0, 10, 2.5), 2.5),
    (hp.qloguniform("x", 0, 4, 3), 3),
    (hp.qnormal("x", 0, 5, 0.5), 0.5),
    (hp.qlognormal("x", 1, 1, 2), 2),
])
def test_quantized_values_lie_on_grid(node, q):
    x = draws(node)
    assert np.allclose(np.round(x / q) * q, x)


def test_quniform_rounding_frequencies():
    # round(U(0, 10) / 2.5) * 2.5: the end cells are half as likely as the inner ones
    x = draws(hp.quniform("x", 0, 10, 2.5))
    values, counts = np.unique(x, return_counts=True)
    assert list(values) == [0, 2.5, 5, 7.5, 10]
    expected = np.array([0.5, 1, 1, 1, 0.5]) / 4 * N
    assert stats.chisquare(counts, expected).pvalue > 0.001


def test_randint_ranges_are_exact():
    x = draws(hp.randint("x", 5))
    assert set(np.unique(x)) == {0, 1, 2, 3, 4}
    y = draws(hp.randint("y", -2, 3))
    assert set(np.unique(y)) == {-2, -1, 0, 1, 2}
    counts = np.unique(y, return_counts=True)[1]
    assert stats.chisquare(counts).pvalue > 0.001


def test_uniformint_includes_both_ends():
    x = draws(hp.uniformint("x", 3, 6))
    assert set(np.unique(x)) == {3, 4, 5, 6}
    assert stats.chisquare(np.unique(x, return_counts=True)[1]).pvalue > 0.001
    assert isinstance(space_eval(hp.uniformint("x", 3, 6), {"x": 4.0}), int)


def test_choice_and_pchoice_frequencies():
    x = draws(hp.choice("c", ["a", "b", "c"]))
    assert stats.chisquare(np.unique(x, return_counts=True)[1]).pvalue > 0.001
    p = [0.1, 0.2, 0.7]
    y = draws(hp.pchoice("p", [(p[0], "a"), (p[1], "b"), (p[2], "c")]))
    counts = np.bincount(y.astype(int), minlength=3)
    assert stats.chisquare(counts, np.array(p) * N).pvalue > 0.001


def conditional_space():
    return {
        "model": hp.choice("model", [
            {"kind": "svm", "C": hp.loguniform("C", -3, 3),
             "kernel": hp.choice("kernel", [{"k": "rbf", "gamma": hp.uniform("gamma", 0, 1)}, {"k": "linear"}])},
            {"kind": "tree", "depth": scope.int(hp.quniform("depth", 1, 10, 1))},
        ]),
        "lr": hp.loguniform("lr", -5, 0),
    }


def test_conditional_space_inactive_parameters_are_empty():
    cs = compile_space(conditional_space())
    X = cs.sample(np.random.default_rng(1), 500)
    for row in X:
        vals = cs.row_to_vals(row)
        assert vals["lr"] and vals["model"]
        if vals["model"] == [0]:
            assert vals["C"] and vals["kernel"] and vals["depth"] == []
            assert bool(vals["gamma"]) == (vals["kernel"] == [0])
        else:
            assert vals["C"] == vals["kernel"] == vals["gamma"] == [] and vals["depth"]


def test_space_eval_round_trip():
    space = conditional_space()
    assert space_eval(space, {"model": 1, "depth": 4.0, "lr": 0.01}) == \
        {"model": {"kind": "tree", "depth": 4}, "lr": 0.01}
    out = space_eval(space, {"model": [0], "C": [2.0], "kernel": [0], "gamma": [0.5], "lr": [0.1], "depth": []})
    assert out == {"model": {"kind": "svm", "C": 2.0, "kernel": {"k": "rbf", "gamma": 0.5}}, "lr": 0.1}


def test_sample_returns_evaluated_point():
    point = sample(conditional_space(), np.random.default_rng(3))
    assert point["model"]["kind"] in ("svm", "tree")
    assert isinstance(sample(hp.randint("r", 4), np.random.RandomState(0)), int)


def test_scope_arithmetic_and_define():
    @scope.define
    def square_plus(a, b=1):
        return a * a + b

    space = {
        "lin": hp.uniform("x", 0, 1) * 10 + 1,
        "pow": 2 ** hp.quniform("e", 1, 4, 1),
        "int": scope.int(hp.quniform("n", 1, 9, 1)),
        "f": scope.float(hp.randint("r", 3)),
        "def": scope.square_plus(hp.uniform("y", 0, 2), b=3),
        "neg": -hp.normal("z", 0, 1),
    }
    out = space_eval(space, {"x": 0.5, "e": 3.0, "n": 4.0, "r": 2, "y": 2.0, "z": 1.5})
    assert out == {"lin": 6.0, "pow": 8.0, "int": 4, "f": 2.0, "def": 7.0, "neg": -1.5}
    assert isinstance(out["int"], int) and isinstance(out["f"], float)


def test_reused_node_is_one_parameter():
    x = hp.uniform("x", 0, 1)
    cs = compile_space({"a": x, "b": x * 2, "c": hp.choice("c", [x, 3])})
    assert cs.labels == ("c", "x") or set(cs.labels) == {"c", "x"}
    assert cs.params[cs.index["x"]].always_active


@pytest.mark.parametrize("make,needle", [
    (lambda: [hp.uniform("x", 0, 1), hp.uniform("x", 0, 2)], "duplicate label 'x'"),
    (lambda: hp.uniform("x", 1, 1), "'x': low must be less than high"),
    (lambda: hp.uniform("x", 2, 1), "'x': low must be less than high"),
    (lambda: hp.loguniform("lr", 0, -1), "'lr': low must be less than high"),
    (lambda: hp.quniform("q", 0, 10, 0), "'q': q must be positive"),
    (lambda: hp.qloguniform("q", 0, 10, -1), "'q': q must be positive"),
    (lambda: hp.normal("n", 0, 0), "'n': sigma must be positive"),
    (lambda: hp.lognormal("n", 0, -1), "'n': sigma must be positive"),
    (lambda: hp.choice("c", []), "'c': choice needs at least one option"),
    (lambda: hp.pchoice("p", [(0.5, 1), (0.4, 2)]), "'p': pchoice probabilities must sum to 1"),
    (lambda: hp.uniform(3, 0, 1), "labels must be strings, got 3"),
    (lambda: hp.choice(None, [1]), "labels must be strings"),
    (lambda: hp.randint("r", 0), "'r': low must be less than high"),
    (lambda: hp.uniform("x", 0, float("inf")), "'x': high must be finite"),
    (lambda: hp.uniform("x", 0, "1"), "'x': high must be a number"),
])
def test_invalid_spaces_raise_clear_errors(make, needle):
    with pytest.raises(InvalidSpaceError) as ei:
        compile_space(make())
    assert needle in str(ei.value)


def test_duplicate_label_is_hyperopts_exception_name():
    with pytest.raises(DuplicateLabel):
        compile_space({"a": hp.uniform("x", 0, 1), "b": hp.choice("x", [1, 2])})


def test_unsupported_scope_name_is_clear():
    with pytest.raises(UnsupportedExpressionError, match="scope.no_such_fn is not defined"):
        scope.no_such_fn(hp.uniform("x", 0, 1))


def test_truth_value_of_parameter_is_refused():
    with pytest.raises(UnsupportedExpressionError, match="no truth value"):
        if hp.uniform("x", 0, 1):
            pass


def test_space_json_describes_choices_as_values():
    js = compile_space(conditional_space()).to_json()
    by = {d["label"]: d for d in js}
    assert by["kernel"]["options"][1] == {"k": "linear"}
    assert by["gamma"]["conditions"] == [[{"label": "model", "branch": 0}, {"label": "kernel", "branch": 0}]]
    assert by["lr"]["kind"] == "loguniform" and by["lr"]["low"] == -5


def test_check_vals_refuses_what_the_space_cannot_produce():
    from hpo_mongo.exceptions import InvalidTrial
    space = compile_space({"x": hp.uniform("x", 0, 1), "n": hp.randint("n", 5),
                           "c": hp.choice("c", [0, {"y": hp.quniform("y", 0, 10, 2)}])})
    good = {"x": [0.5], "n": [4], "c": [1], "y": [6.0]}
    space.check_vals(good)
    space.check_vals({"x": [0.5], "n": [0], "c": [0], "y": []})  # the inactive branch may be empty
    space.check_vals({"x": [0.5], "n": [0], "c": [0], "y": [2.0]})  # ... or hold a value (ignored)
    bad = [({**good, "x": [1.5]}, "'x'"), ({**good, "x": ["0.5"]}, "'x'.*str"), ({**good, "x": [True]}, "bool"),
           ({**good, "n": [5]}, "'n'"), ({**good, "n": [2.5]}, "'n'"), ({**good, "c": [2]}, "'c'"),
           ({**good, "y": [5.0]}, "'y'"), ({**good, "y": []}, "no value for active hyperparameter 'y'"),
           ({**good, "z": [1]}, "unknown label.*'z'"), ({**good, "x": 0.5}, r"\['x'\] must be \[value\]"),
           ({**good, "x": [0.1, 0.2]}, "'x'"), ("x=1", "must be a dict"), ({**good, "x": [float("nan")]}, "'x'")]
    for vals, match in bad:
        with pytest.raises(InvalidTrial, match=match):
            space.check_vals(vals)
