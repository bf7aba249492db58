"""Kind flags: ``Distribution`` is the one place naming kinds; tools read the flags of its JSON."""
import math

import numpy as np
import pytest

from bench.domains import DOMAINS
from hpo_mongo import hp
from hpo_mongo.inspect import SpaceInfo
from hpo_mongo.space import compile_space
from hpo_mongo.space.distributions import KINDS, KindFlags, kind_flags


def _all_kinds():
    return compile_space(DOMAINS["many_dists"].space(hp))  # all twelve kinds, labels "a" to "k"


def test_every_kind_has_flags_in_its_json():
    space = _all_kinds()
    assert sorted(p.dist.kind for p in space.params) == sorted(KINDS)
    for p in space.params:
        d, js = p.dist, p.dist.to_json()
        assert kind_flags(js) == d.flags
        assert (js["categorical"], js["integer"], js["log"], js["quantized"], js["bounded"], js["ordered"]) == (
            d.is_categorical, d.is_int, d.is_log, d.is_quantized, d.is_bounded, d.is_ordered)
    by = {p.label: p.dist for p in space.params}
    assert [lab for lab, d in by.items() if not d.is_ordered] == ["a", "b", "k"]  # hyperopt: randint is unordered


def test_value_bounds_are_the_values_the_prior_can_produce():
    rng = np.random.default_rng(0)
    for p in _all_kinds().params:
        lo, hi = p.dist.value_bounds
        x = p.dist.sample(rng, 2000)
        if p.dist.is_quantized and p.dist.is_bounded and not p.dist.is_int:
            x = np.clip(x, lo, hi)  # rounding may step past the bounds
        assert (x >= lo).all() and (x <= hi).all(), p.label
    assert compile_space(hp.randint("r", 3, 7)).params[0].dist.value_bounds == (3, 6)
    assert compile_space(hp.loguniform("l", 0, 1)).params[0].dist.value_bounds == (1.0, math.e)


def test_space_info_reads_flags_and_descriptions_written_without_them():
    js = _all_kinds().to_json()
    legacy = [{k: v for k, v in p.items() if k not in KindFlags._fields} for p in js]
    for space in (SpaceInfo.from_json(js), SpaceInfo.from_json(legacy)):
        assert [lab for lab in space.labels if space.is_categorical(lab)] == ["a", "k"]
        assert [lab for lab in space.labels if space.is_log(lab)] == ["d", "f", "h", "j"]
        assert space.decode("b", 3.0) == 3 and isinstance(space.decode("b", 3.0), int)
        assert space.decode("c", 3.0) == 3.0 and isinstance(space.decode("c", 3.0), float)
        assert space.decode("a", 2) == 2  # option value
    unknown = SpaceInfo.from_json([{"label": "z", "kind": "mystery"}])
    assert unknown.flags("z") is None and not unknown.is_categorical("z") and unknown.decode("z", 1.0) == 1.0


@pytest.mark.parametrize("label", ["c", "g"])
def test_param_repr_shows_the_arguments_only(label):
    p = next(p for p in _all_kinds().params if p.label == label)
    r = repr(p.node)
    assert r.startswith(f"hp.{p.dist.kind}('{label}', ") and "categorical" not in r and "bounded" not in r
