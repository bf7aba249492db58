"""The TPE numeric layers alone, with scipy as the oracle: kernels, mixtures, Parzen estimators."""
import numpy as np
import pytest
from scipy import stats

from hpo_mongo import hp
from hpo_mongo.algos.tpe import mixtures as mx
from hpo_mongo.algos.tpe._truncnorm import log_gauss_mass, sample_standard
from hpo_mongo.algos.tpe.kernels import CATEGORICAL, CONTINUOUS, KERNEL_KINDS, QUANTIZED
from hpo_mongo.algos.tpe.parzen import (JointParzen, ParzenParameters, UnivariateParzen, bandwidths, min_bandwidth,
                                       param_table)
from hpo_mongo.space import compile_space


@pytest.fixture(autouse=True)
def _raise_on_numeric_warnings():
    old = np.seterr(all="raise", under="ignore")
    yield
    np.seterr(**old)


def test_log_gauss_mass_matches_scipy_including_tails():
    a = np.array([-3.0, -1.0, 0.5, 2.0, 8.0, 20.0, -25.0, -np.inf, 1.0, -0.001])
    b = np.array([3.0, 1.0, 1.5, 2.1, 9.0, 21.0, -24.0, 0.0, np.inf, 0.001])
    want = np.array([np.log(stats.norm.cdf(y) - stats.norm.cdf(x)) if x < 5 and y > -5 else
                     (stats.norm.logsf(x) + np.log1p(-np.exp(stats.norm.logsf(y) - stats.norm.logsf(x))) if x > 0
                      else stats.norm.logcdf(y) + np.log1p(-np.exp(stats.norm.logcdf(x) - stats.norm.logcdf(y))))
                     for x, y in zip(a, b, strict=True)])
    np.testing.assert_allclose(log_gauss_mass(a, b), want, rtol=1e-9)


def test_truncated_kernel_density_matches_scipy_truncnorm():
    mu = np.array([[0.2, 0.5, 0.9]])
    sg = np.array([[0.1, 0.3, 0.05]])
    lo, hi = np.array([[0.0]]), np.array([[1.0]])
    x = np.array([[0.0, 0.25, 0.5, 0.99]])
    logz = mx.log_truncation(mu, sg, lo, hi)
    got = mx.log_kernel_density(x, mu, sg, logz)[0]
    for k in range(3):
        d = stats.truncnorm((0 - mu[0, k]) / sg[0, k], (1 - mu[0, k]) / sg[0, k], loc=mu[0, k], scale=sg[0, k])
        np.testing.assert_allclose(got[:, k], d.logpdf(x[0]), rtol=1e-9)


def test_cell_mass_matches_scipy_truncnorm_cdf():
    mu, sg = np.array([[3.0, 7.5]]), np.array([[2.0, 0.5]])
    lo, hi = np.array([[-0.5]]), np.array([[9.5]])
    v = np.array([[0.0, 3.0, 8.0, 9.0]])
    a, b = np.maximum(v - 0.5, lo), np.minimum(v + 0.5, hi)
    got = mx.log_kernel_mass(a, b, mu, sg, mx.log_truncation(mu, sg, lo, hi))[0]
    for k in range(2):
        d = stats.truncnorm((lo[0, 0] - mu[0, k]) / sg[0, k], (hi[0, 0] - mu[0, k]) / sg[0, k],
                            loc=mu[0, k], scale=sg[0, k])
        np.testing.assert_allclose(got[:, k], np.log(d.cdf(b[0]) - d.cdf(a[0])), rtol=1e-8)


def test_truncnorm_sampling_follows_scipy_distribution():
    rng = np.random.default_rng(0)
    for a, b in [(-1.0, 2.0), (3.0, 6.0), (-8.0, -7.5), (-np.inf, 0.5)]:
        u = rng.random(4000)
        x = sample_standard(np.full(4000, a), np.full(4000, b), u)
        assert np.all((x >= a) & (x <= b))
        assert stats.kstest(x, stats.truncnorm(a, b).cdf).pvalue > 1e-3


def test_logsumexp_and_component_choice():
    a = np.array([[0.0, np.log(3.0), -np.inf], [-np.inf, -np.inf, -np.inf]])
    np.testing.assert_allclose(mx.logsumexp(a, axis=1), [np.log(4.0), -np.inf])
    rng = np.random.default_rng(1)
    idx = mx.choose_components(rng, np.array([[1.0, 3.0, 0.0]]), 20000)
    assert set(np.unique(idx)) <= {0, 1}
    assert abs((idx == 1).mean() - 0.75) < 0.02


def test_unique_inverse_and_in_place_logsumexp_match_numpy():
    rng = np.random.default_rng(3)
    for v in (np.round(rng.normal(size=200) * 3), np.array([-np.inf, 2.0, -np.inf, 1.0]), np.array([5.0])):
        for got, want in zip(mx.unique_inverse(v), np.unique(v, return_inverse=True), strict=True):
            np.testing.assert_array_equal(got, want)
    a = np.log(rng.random((3, 5, 7)))
    a[0, 0] = -np.inf
    want = mx.logsumexp(a, axis=-1)
    np.testing.assert_array_equal(mx.logsumexp(a.copy(), axis=-1, overwrite=True), want)


def _space():
    return compile_space({
        "u": hp.uniform("u", -2, 3), "lu": hp.loguniform("lu", -3, 2), "n": hp.normal("n", 1, 2),
        "q": hp.quniform("q", 0, 10, 2), "ql": hp.qloguniform("ql", 0, 3, 1), "i": hp.uniformint("i", 1, 6),
        "r": hp.randint("r", 5), "c": hp.choice("c", ["a", "b", "c"]), "pc": hp.pchoice("pc", [(0.3, 0), (0.7, 1)]),
    })


def _obs(space, n, seed=0):
    t = param_table(space)
    return t, t.internal_rows(space.sample(np.random.default_rng(seed), n))


def test_univariate_continuous_densities_integrate_to_one():
    space = _space()
    t, Z = _obs(space, 40)
    cols = np.array([space.index[k] for k in ("u", "lu", "n")])
    est = UnivariateParzen(t, cols, Z[:, cols], ParzenParameters())
    # integrate over each internal coordinate (log space for loguniform)
    grids = [np.linspace(-2, 3, 20001), np.linspace(-3, 2, 20001), np.linspace(-15, 17, 40001)]
    for j, g in enumerate(grids):
        V = np.zeros((3, g.size))
        V[:] = np.nan
        V[j] = np.exp(g) if j == 1 else g
        V[[k for k in range(3) if k != j]] = 0.5
        dens = np.exp(est.log_pdf(V)[j])
        assert np.trapezoid(dens, g) == pytest.approx(1.0, abs=2e-3)


def test_univariate_discrete_masses_sum_to_one_and_samples_on_grid():
    space = _space()
    t, Z = _obs(space, 30, seed=2)
    labels = ("q", "ql", "i", "r", "c", "pc")
    cols = np.array([space.index[k] for k in labels])
    est = UnivariateParzen(t, cols, Z[:, cols], ParzenParameters())
    rng = np.random.default_rng(0)
    S = est.sample(rng, 500)
    for j, lab in enumerate(labels):
        d = space.params[cols[j]].dist
        assert d.contains(S[j]).all(), lab
    support = {"q": np.arange(0, 11, 2.0), "ql": np.arange(1, 21, 1.0), "i": np.arange(1, 7.0),
               "r": np.arange(0, 5.0), "c": np.arange(3.0), "pc": np.arange(2.0)}
    for j, lab in enumerate(labels):
        V = np.tile(S[:, :1], (1, support[lab].size))
        V[j] = support[lab]
        assert np.exp(est.log_pdf(V)[j]).sum() == pytest.approx(1.0, abs=1e-6), lab


def test_conditional_column_uses_active_rows_only():
    space = _space()
    t, Z = _obs(space, 20)
    cols = np.array([space.index["u"]])
    V = Z[:, cols].copy()
    V[::2] = np.nan  # inactive half
    a = UnivariateParzen(t, cols, V, ParzenParameters())
    b = UnivariateParzen(t, cols, V[1::2], ParzenParameters())
    x = np.linspace(-2, 3, 7)[None, :]
    np.testing.assert_allclose(a.log_pdf(x), b.log_pdf(x))


def test_many_observations_are_merged_into_bounded_components():
    space = _space()
    t, Z = _obs(space, 3000)
    cols = np.array([space.index["u"]])
    est = UnivariateParzen(t, cols, Z[:, cols], ParzenParameters(max_components=64))
    g = np.linspace(-2, 3, 20001)
    dens = np.exp(est.log_pdf(g[None, :])[0])
    assert np.trapezoid(dens, g) == pytest.approx(1.0, abs=2e-3)
    # close to the uniform it was sampled from
    assert np.abs(dens[2000:-2000] - 0.2).max() < 0.08


def test_joint_estimator_integrates_to_one_and_samples_in_range():
    space = compile_space({"x": hp.uniform("x", 0, 1), "y": hp.uniform("y", -1, 1), "c": hp.choice("c", [0, 1])})
    t = param_table(space)
    Z = t.internal_rows(space.sample(np.random.default_rng(3), 25))
    cols = np.arange(3)
    est = JointParzen(t, cols, Z, ParzenParameters(), np.random.default_rng(0))
    S = est.sample(np.random.default_rng(1), 300)
    assert (S[0] >= 0).all() and (S[0] <= 1).all() and (S[1] >= -1).all() and (S[1] <= 1).all()
    assert set(np.unique(S[2])) <= {0.0, 1.0}
    gx, gy = np.linspace(0, 1, 201), np.linspace(-1, 1, 401)
    X, Y = np.meshgrid(gx, gy, indexing="ij")
    total = 0.0
    for c in (0, 1):
        V = np.vstack([X.ravel(), Y.ravel(), np.full(X.size, c)])
        dens = np.exp(est.log_pdf(V)).reshape(X.shape)
        total += np.trapezoid(np.trapezoid(dens, gy, axis=1), gx)
    assert total == pytest.approx(1.0, abs=5e-3)


def test_stacked_log_ratio_equals_difference_of_log_pdfs():
    space = _space()
    t, Z = _obs(space, 60, seed=4)
    cols = np.arange(space.n_params)
    lo = UnivariateParzen(t, cols, Z[:8], ParzenParameters())
    hi = UnivariateParzen(t, cols, Z[8:], ParzenParameters(), liars=Z[:2], n_good=8)
    V = lo.sample(np.random.default_rng(0), 24)
    np.testing.assert_allclose(lo.log_pdf_ratio(hi, V), lo.log_pdf(V) - hi.log_pdf(V), rtol=1e-10, atol=1e-10)


def _joint_reference_log_pdf(est, V):
    """The joint mixture density written out kernel by kernel with scipy (the oracle for the
    quadratic-form / shared-edge scoring of :class:`JointParzen`)."""
    t, g = est._t, est.columns
    comps, probs, w = est.components, est.option_probs, est.weights
    out = np.empty(V.shape[1])
    for i in range(V.shape[1]):
        terms = []
        for k in range(w.size):
            lp = np.log(w[k] / w.sum())
            for jn, j in enumerate(g.num):
                col = g.cols[j]
                mu, sg = comps.mu[jn, k], comps.sigma[jn, k]
                lo, hi = t.low[col], t.high[col]
                tn = stats.truncnorm((lo - mu) / sg, (hi - mu) / sg, loc=mu, scale=sg)
                if not t.on_grid[col]:
                    lp += tn.logpdf(t.internal(V[j:j + 1, i:i + 1].T, np.array([col]))[0, 0])
                else:
                    a, b = t.cells(V[j:j + 1, i:i + 1], np.array([col]))
                    lp += np.log(max(tn.cdf(b[0, 0]) - tn.cdf(a[0, 0]), 1e-300))  # floored as documented
            for jc, j in enumerate(g.cat):
                lp += np.log(probs[jc, k, int(V[j, i])])
            terms.append(lp)
        out[i] = np.logaddexp.reduce(terms)
    return out


def test_joint_scoring_matches_kernel_by_kernel_reference_and_ratio():
    space = _space()
    t, Z = _obs(space, 60, seed=5)
    cols = np.arange(space.n_params)
    rng = np.random.default_rng(0)
    lo = JointParzen(t, cols, Z[:8], ParzenParameters(), rng)
    # three liars; above max_components, so the others are subsampled
    hi = JointParzen(t, cols, Z[8:57], ParzenParameters(max_components=10), rng, liars=Z[57:], n_good=8)
    V = lo.sample(np.random.default_rng(1), 10)
    V[:, :4] = hi.sample(np.random.default_rng(2), 4)  # some points where g is high
    np.testing.assert_allclose(lo.log_pdf(V), _joint_reference_log_pdf(lo, V), rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(hi.log_pdf(V), _joint_reference_log_pdf(hi, V), rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(lo.log_pdf_ratio(hi, V), lo.log_pdf(V) - hi.log_pdf(V), rtol=1e-9, atol=1e-9)


def test_joint_liar_kernels_get_at_least_the_given_bandwidth():
    space = _space()
    t, Z = _obs(space, 60, seed=6)
    cols = np.arange(space.n_params)
    n_num = int((~t.is_cat[cols]).sum())
    est = JointParzen(t, cols, Z[:58], ParzenParameters(), np.random.default_rng(0), liars=Z[58:], n_good=6,
                      liar_sigma=np.full(n_num, 0.5))
    plain = JointParzen(t, cols, Z[:58], ParzenParameters(), np.random.default_rng(0), liars=Z[58:], n_good=6)
    assert n_num == plain.components.sigma.shape[0]
    assert (est.components.sigma[:, -3:-1] >= 0.5).all()  # the two liars (the prior component is last)
    np.testing.assert_array_equal(est.components.sigma[:, :-3], plain.components.sigma[:, :-3])
    np.testing.assert_allclose(est.weights, plain.weights)
    np.testing.assert_allclose(plain.median_bandwidth(), np.median(plain.components.sigma[:, :-1], axis=1))


def test_bandwidths_take_the_larger_neighbour_gap_clipped_by_the_magic_clip():
    psig = np.array([10.0, 10.0])
    np.testing.assert_allclose(min_bandwidth(psig, 3), [2.0, 2.0])
    np.testing.assert_allclose(min_bandwidth(psig, 1000), [0.1, 0.1])  # at most 1/100 of the prior's width
    S = np.array([[0.0, 3.0, 3.5, 9.0], [1.0, 1.2, 20.0, 0.0]])
    lone = np.full((2, 1), 4.0)
    # one-sided at the ends, the larger gap inside; row 2 has two real centres (then padding)
    sg = bandwidths(S, psig, np.array([1000, 1000]), lone, count=np.array([4, 2]))
    np.testing.assert_allclose(sg[0], [3.0, 3.0, 5.5, 5.5])
    np.testing.assert_allclose(sg[1, :2], [0.2, 0.2])
    np.testing.assert_allclose(bandwidths(S, psig, 3, lone)[0], [3.0, 3.0, 5.5, 5.5])  # floor 2
    np.testing.assert_allclose(bandwidths(S[:, :1], psig, 1000, lone), [[4.0], [4.0]])  # a lone centre
    np.testing.assert_allclose(bandwidths(S, psig, 0, lone)[0], [5.0, 5.0, 5.5, 5.5])  # floor psig / 2
    wide = bandwidths(np.array([[0.0, 50.0], [0.0, 0.1]]), psig, 1000, lone)
    np.testing.assert_allclose(wide, [[10.0, 10.0], [0.1, 0.1]])  # at most the prior's sigma


def test_every_column_gets_one_kernel_kind():
    space = _space()
    t = param_table(space)
    kind = {p.label: KERNEL_KINDS[t.kernel[p.index]] for p in space.params}
    assert {k for k, v in kind.items() if v is CONTINUOUS} == {"u", "lu", "n"}
    assert {k for k, v in kind.items() if v is QUANTIZED} == {"q", "ql", "i", "r"}
    assert {k for k, v in kind.items() if v is CATEGORICAL} == {"c", "pc"}
    g = t.group(np.arange(space.n_params))
    assert sorted(np.concatenate([kg.where for kg in g.kinds]).tolist()) == list(range(space.n_params))
