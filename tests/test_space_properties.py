"""Property-based: random valid nested spaces never produce out-of-range or inactive values;
random invalid parameters always raise the clear error."""
import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

from hpo_mongo import hp
from hpo_mongo.exceptions import InvalidSpaceError
from hpo_mongo.space import compile_space

finite = st.floats(-50, 50, allow_nan=False)
pos = st.floats(0.01, 10, allow_nan=False)


@st.composite
def leaf(draw, label):
    kind = draw(st.sampled_from(["uniform", "quniform", "loguniform", "qloguniform", "normal", "qnormal",
                                 "lognormal", "qlognormal", "randint", "uniformint"]))
    lo = draw(st.floats(-5, 5, allow_nan=False))
    hi = lo + draw(st.floats(0.5, 5))
    if kind == "uniform":
        return hp.uniform(label, lo, hi)
    if kind == "quniform":
        return hp.quniform(label, lo, hi, draw(pos))
    if kind == "loguniform":
        return hp.loguniform(label, lo, hi)
    if kind == "qloguniform":
        return hp.qloguniform(label, lo, hi, draw(pos))
    if kind == "normal":
        return hp.normal(label, draw(finite), draw(pos))
    if kind == "qnormal":
        return hp.qnormal(label, draw(finite), draw(pos), draw(pos))
    if kind == "lognormal":
        return hp.lognormal(label, draw(st.floats(-2, 2)), draw(st.floats(0.1, 2)))
    if kind == "qlognormal":
        return hp.qlognormal(label, draw(st.floats(-2, 2)), draw(st.floats(0.1, 2)), draw(pos))
    ilo = draw(st.integers(-10, 10))
    if kind == "randint":
        return hp.randint(label, ilo, ilo + draw(st.integers(1, 10)))
    return hp.uniformint(label, ilo, ilo + draw(st.integers(1, 10)))


@st.composite
def spaces(draw, depth=0, prefix="p"):
    n = draw(st.integers(1, 3))
    out = {}
    for i in range(n):
        label = f"{prefix}{i}"
        if depth < 2 and draw(st.booleans()):
            k = draw(st.integers(1, 3))
            opts = [draw(spaces(depth + 1, f"{label}_{b}_")) if draw(st.booleans()) else b for b in range(k)]
            if draw(st.booleans()):
                out[label] = hp.choice(label, opts)
            else:
                w = np.array(draw(st.lists(st.floats(0.1, 1), min_size=k, max_size=k)))
                out[label] = hp.pchoice(label, list(zip((w / w.sum()).tolist(), opts, strict=True)))
        else:
            out[label] = draw(leaf(label))
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spaces(), st.integers(0, 2**31 - 1))
def test_samples_are_in_range_and_active_exactly_when_their_branch_is(space, seed):
    cs = compile_space(space)
    X = cs.sample(np.random.default_rng(seed), 64)
    active = cs.active_mask(np.nan_to_num(X, nan=-1))
    assert np.array_equal(~np.isnan(X), active)
    for p in cs.params:
        col = X[:, p.index]
        col = col[~np.isnan(col)]
        assert p.dist.contains(col).all(), (p.label, p.dist, col)
    for row in X:  # every vals dict evaluates (only active labels are needed)
        vals = cs.row_to_vals(row)
        from hpo_mongo import space_eval
        space_eval(space, vals)


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(["range", "q", "sigma", "empty", "probs", "label"]), finite, st.floats(-10, 0))
def test_invalid_parameters_always_raise_clear_error(what, a, nonpos):
    label = "bad_label"
    try:
        if what == "range":
            hp.uniform(label, a, a - abs(nonpos))
        elif what == "q":
            hp.quniform(label, 0, 1, nonpos)
        elif what == "sigma":
            hp.normal(label, a, nonpos)
        elif what == "empty":
            hp.choice(label, [])
        elif what == "probs":
            hp.pchoice(label, [(0.5, 1), (0.5 + abs(nonpos) + 0.01, 2)])
        else:
            hp.uniform(a, 0, 1)
    except InvalidSpaceError as e:
        assert (label in str(e)) or "labels must be strings" in str(e)
    else:
        raise AssertionError("no error raised")
