"""Observations → Parzen mixtures, one per parameter (univariate) or per group (joint).

Values arrive as rows of the compiled space's ``(n, P)`` matrix in internal coordinates
(:meth:`ParamTable.internal_rows <.kernels.ParamTable.internal_rows>`: logged for log kinds,
clipped to the bounds; option indices for categoricals; NaN where inactive). How each
dimension is scored (density, quantization-cell mass, option probability) is its kernel kind
(:mod:`.kernels`).

Each numeric mixture has one prior component (mid-range mean, σ = range; the distribution's
own μ, σ for normal kinds) with weight ``prior_weight``, and components for the observations,
weighted by linear forgetting (the newest ``linear_forgetting`` at 1, older ones ramping down
to 1/n). Categorical columns hold weighted option counts plus ``prior_weight`` pseudo-counts
spread as the prior probabilities (``n_options * prior_weight * p``, or ``prior_weight * p``).

:class:`UnivariateParzen` bins each column's active observations into ``max_components``
equal cells over the support (μ ± 3σ for normal kinds), whatever their number: every
occupied cell becomes one component by moment matching (summed weight, weighted mean, the
within-cell variance added to the bandwidth), so the cost of scoring is bounded whatever the
history size. :class:`JointParzen` keeps one product kernel per observation; above
``max_components`` observations a weighted subsample stands for the rest. Both take their
bandwidths from :func:`bandwidths` (the larger gap to the sorted neighbours, clipped by
:func:`min_bandwidth`), and pending points (liars) get theirs from the same two functions.

Joint estimators score points as one pass over the components of l(x) and g(x) side by
side (:meth:`JointParzen.log_pdf_ratio`): continuous dimensions as a quadratic form in
standardised coordinates (two matrix products), quantized ones with the normal CDF evaluated
once per distinct cell edge, categorical ones by a table look-up.

Public on the estimators: :meth:`sample`, :meth:`log_pdf`, :meth:`log_pdf_ratio` and
read-only views of the fitted mixture (``columns``, ``components``, ``option_probs``,
:meth:`JointParzen.median_bandwidth`).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import mixtures as mx
from .kernels import ColumnGroup, Components, KindGroup, ParamTable, param_table

__all__ = ["ParzenParameters", "ParamTable", "param_table", "min_bandwidth", "bandwidths", "default_weights",
           "forgetting_weights", "UnivariateParzen", "JointParzen"]

_TINY = np.nextafter(0.0, 1.0)


class ParzenParameters(NamedTuple):
    prior_weight: float = 1.0
    linear_forgetting: int = 25
    max_components: int = 128
    cat_prior_per_option: bool = True
    liar_weight: float = 1.0  # a pending point weighs this many good observations in g(x)


# ============================================================================ bandwidths
def min_bandwidth(prior_sigma: np.ndarray, n: np.ndarray | int) -> np.ndarray:
    """The narrowest bandwidth a kernel gets among ``n`` observations (hyperopt's "magic
    clip"): ``prior_sigma / min(100, n + 2)``, so a few observations cannot collapse the
    mixture onto points while thousands may resolve a hundredth of the prior's width."""
    return prior_sigma / np.minimum(100.0, n + 2.0)


def bandwidths(S: np.ndarray, prior_sigma: np.ndarray, n: np.ndarray | int, lone: np.ndarray | None,
               count: np.ndarray | None = None) -> np.ndarray:
    """Neighbour-gap bandwidths of kernel centres ``S (B, k)``, sorted along each row.

    Each centre gets the larger gap to its neighbours (one-sided at the ends, ``lone (B, 1)``
    for a row's only centre), clipped to ``[min_bandwidth(prior_sigma, n), prior_sigma]``.
    ``count (B,)``: only the first ``count[b]`` centres of row ``b`` are real (the rest is
    padding, its bandwidths are undefined); None: every centre is. ``lone`` may be None when
    no row has a single centre.
    """
    B, k = S.shape
    if k < 2:
        fill = lone if k else 0.0
        assert fill is not None  # a row's only centre: its bandwidth comes from lone
        gap = np.array(np.broadcast_to(fill, (B, k)), dtype=float)
    else:
        d = S[:, 1:] - S[:, :-1]
        gap = np.empty((B, k))
        gap[:, 0] = d[:, 0]
        gap[:, -1] = d[:, -1]
        np.maximum(d[:, 1:], d[:, :-1], out=gap[:, 1:-1])
        if count is not None and (count < k).any():
            # a row's last real centre has only its left neighbour, a lone centre none
            rows = np.flatnonzero((count >= 2) & (count < k))
            gap[rows, count[rows] - 1] = d[rows, count[rows] - 2]
            rows = np.flatnonzero(count == 1)
            if rows.size:
                assert lone is not None
                gap[rows, 0] = lone[rows, 0]
    np.maximum(gap, min_bandwidth(prior_sigma, n)[:, None], out=gap)
    return np.minimum(gap, prior_sigma[:, None], out=gap)


# ============================================================================ weights
def default_weights(n: int, lf: int) -> np.ndarray:
    """Linear-forgetting weights of ``n`` observations in age order (newest ``lf`` at 1)."""
    if n <= lf:
        return np.ones(n)
    return np.concatenate([np.linspace(1.0 / n, 1.0, n - lf), np.ones(lf)])


def forgetting_weights(active: np.ndarray, lf: int) -> np.ndarray:
    """Linear forgetting per column: rows are in age order (oldest first), ``active (n, B)``.

    Among each column's ``m`` active rows the newest ``lf`` weigh 1 and the older ``m - lf``
    ramp linearly from ``1/m`` to 1 (hyperopt's rule); inactive entries weigh 0.
    """
    cnt = active.sum(axis=0)
    pos = np.cumsum(active, axis=0) - 1
    old = cnt - lf
    m = np.maximum(cnt, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ramp = 1.0 / m + pos * (1.0 - 1.0 / m) / np.maximum(old - 1, 1)
    w = np.where(pos < old, ramp, 1.0)
    return np.where(active, w, 0.0)


# ============================================================================ estimators
class _Estimator:
    """What both estimators hold: the modelled columns, the numeric components, the
    categorical tables, and read-only views of them."""

    _t: ParamTable
    _g: ColumnGroup
    _comps: Components | None
    _probs: np.ndarray | None

    @property
    def columns(self) -> ColumnGroup:
        """The modelled columns and their constants."""
        return self._g

    @property
    def components(self) -> Components | None:
        """The numeric columns' components ``(B, K)``, the prior component last (univariate:
        padding components have weight 0)."""
        return self._comps

    @property
    def option_probs(self) -> np.ndarray | None:
        """The categorical columns' option probabilities: ``(B, max_options)`` univariate,
        ``(B, K, max_options)`` per component joint."""
        return self._probs

    def _block(self, kg: KindGroup) -> Components | np.ndarray:
        """The fitted arrays one kernel kind scores: its rows of the numeric components or of
        the categorical tables."""
        if kg.kind.numeric:
            assert self._comps is not None
            return self._comps.rows(kg.rows)
        assert self._probs is not None
        return self._probs[kg.rows]


# ============================================================================ univariate
class UnivariateParzen(_Estimator):
    """Independent mixtures for the columns ``cols``, fitted together as stacked arrays.

    ``V`` holds the observations ``(n, len(cols))`` in age order (NaN = inactive). ``liars``
    (pending points, same layout) join as extra components: each weighs ``liar_weight`` times
    what one of the ``n_good`` good observations weighs in l(x), with the narrowest bandwidth
    of ``n_good`` observations.
    """

    def __init__(self, table: ParamTable, cols: np.ndarray, V: np.ndarray,
                 params: ParzenParameters, liars: np.ndarray | None = None,
                 n_good: int = 1) -> None:
        self._t = table
        g = self._g = table.group(np.asarray(cols, dtype=np.int64))
        self._params = params
        self._w: np.ndarray | None = None  # numeric components' weights (B, K) ...
        self._comps: Components | None = None  # ... and the components, with log weights
        self._probs: np.ndarray | None = None  # categorical columns' option probabilities (B, M)
        active = ~np.isnan(V)
        if active.all():  # the common case: one weight vector for every column
            W = np.broadcast_to(default_weights(len(V), params.linear_forgetting)[:, None], V.shape)
        else:
            W = forgetting_weights(active, params.linear_forgetting)
        if liars is not None and not len(liars):
            liars = None
        lw = None
        if liars is not None:
            lw = np.where(np.isnan(liars), 0.0, params.liar_weight * W.sum(axis=0) / max(n_good, 1))
        if g.num.size:
            mu, sigma, w = self._fit_numeric(V[:, g.num], W[:, g.num])
            if liars is not None and lw is not None:
                Zl = liars[:, g.num].T
                wl = lw[:, g.num].T
                sl = np.broadcast_to(min_bandwidth(g.prior_sigma, n_good)[:, None], Zl.shape)
                mu = np.concatenate([mu, np.where(wl > 0, Zl, 0.0)], axis=1)
                sigma = np.concatenate([sigma, sl], axis=1)
                w = np.concatenate([w, wl], axis=1)
            self._w = w
            self._comps = Components(mu, sigma, mx.log_truncation(mu, sigma, g.L, g.H), mx.log_weights(w))
        if g.cat.size:
            Vc, Wc = V[:, g.cat], W[:, g.cat]
            if liars is not None and lw is not None:
                Vc = np.vstack([Vc, liars[:, g.cat]])
                Wc = np.vstack([Wc, lw[:, g.cat]])
            self._probs = self._fit_categorical(Vc, Wc)

    # -------------------------------------------------------------- fitting
    def _fit_numeric(self, Z: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Means, bandwidths and weights ``(B, K)`` of the binned observations plus the prior
        component (last); padding components carry weight 0."""
        g, prm = self._g, self._params
        B = Z.shape[1]
        K = int(prm.max_components)
        pmu, psig = g.prior_mu, g.prior_sigma
        # grid of K cells over the support (mu ± 3 sigma for unbounded priors)
        lo = np.where(np.isfinite(g.low), g.low, pmu - 3.0 * psig)
        width = np.where(np.isfinite(g.low), g.high - g.low, 6.0 * psig)
        act = W > 0
        z = Z[act]
        w = W[act]
        col = np.nonzero(act)[1]
        cell = ((z - lo[col]) * (K / width)[col]).astype(np.int64)
        ids = col * K + np.minimum(np.maximum(cell, 0), K - 1)
        s0 = np.bincount(ids, weights=w, minlength=B * K).reshape(B, K)
        s1 = np.bincount(ids, weights=w * z, minlength=B * K).reshape(B, K)
        s2 = np.bincount(ids, weights=w * z * z, minlength=B * K).reshape(B, K)
        full = s0 > 0
        den = np.where(full, s0, 1.0)
        m = s1 / den
        within = np.maximum(s2 / den - m * m, 0.0)
        # occupied cells compacted to the left in cell order (so sorted), then padding
        n_full = full.sum(axis=1)
        sel = np.argsort(~full, axis=1, kind="stable")[:, :int(n_full.max())]
        fs = np.take_along_axis(full, sel, axis=1)
        S = np.take_along_axis(m, sel, axis=1)
        # bandwidth of the merged points, a lone one at its distance to the prior mean; the
        # clip counts observations, not cells
        sig = bandwidths(S, psig, np.count_nonzero(W, axis=0), np.abs(S[:, :1] - pmu[:, None]), count=n_full)
        sig = np.sqrt(sig * sig + np.take_along_axis(within, sel, axis=1))
        mu = np.concatenate([np.where(fs, S, 0.0), pmu[:, None]], axis=1)
        sigma = np.concatenate([np.where(fs, sig, 1.0), psig[:, None]], axis=1)
        weight = np.concatenate([np.take_along_axis(s0, sel, axis=1), np.full((B, 1), float(prm.prior_weight))], axis=1)
        return mu, sigma, weight

    def _fit_categorical(self, V: np.ndarray, W: np.ndarray) -> np.ndarray:
        t, g, prm = self._t, self._g, self._params
        B, M = g.cat.size, t.max_options
        act = W > 0
        idx = (np.arange(B)[None, :] * M + np.where(act, V, 0).astype(np.int64))[act]
        counts: np.ndarray = np.bincount(idx, weights=W[act], minlength=B * M).astype(float).reshape(B, M)
        n_options = t.n_options[g.cols[g.cat]]
        counts += prm.prior_weight * (n_options[:, None] if prm.cat_prior_per_option else 1.0) * g.cat_prior
        return counts / counts.sum(axis=1, keepdims=True)

    # -------------------------------------------------------------- public
    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` draws per column → ``(len(cols), n)`` external values."""
        g = self._g
        out = np.empty((g.cols.size, n))
        if self._comps is not None and self._w is not None:
            k = mx.choose_components(rng, self._w, n)
            mu = np.take_along_axis(self._comps.mu, k, axis=1)
            sg = np.take_along_axis(self._comps.sigma, k, axis=1)
            z = mx.sample_truncnorm(rng, mu, sg, g.L, g.H)
            out[g.num] = self._t.external(z, g.cols[g.num])
        if self._probs is not None:
            out[g.cat] = mx.choose_components(rng, self._probs, n)
        return out

    def log_pdf(self, V: np.ndarray) -> np.ndarray:
        """Per-column log density (mass for discrete kinds) of ``V (len(cols), C)``."""
        out = np.empty(V.shape)
        for kg in self._g.kinds:
            f = kg.kind.features(self._t, kg.cols, V[kg.where])
            out[kg.where] = kg.kind.log_pdf(f, self._block(kg))
        return out

    def log_pdf_ratio(self, other: "UnivariateParzen", V: np.ndarray) -> np.ndarray:
        """``self.log_pdf(V) - other.log_pdf(V)`` for an estimator over the same columns,
        with both mixtures stacked into one batch (half the array passes)."""
        out = np.empty(V.shape)
        for kg in self._g.kinds:
            f = kg.kind.features(self._t, kg.cols, V[kg.where])
            out[kg.where] = kg.kind.log_pdf_ratio(f, self._block(kg), other._block(kg))
        return out


# ============================================================================ joint
class _JointScoring(NamedTuple):
    """What :meth:`JointParzen.log_pdf` needs of the components: per component the log weight
    plus every term that does not depend on the point (``base (K,)``), and one scoring-array
    tuple per kernel kind of the columns (``arrays``, in the order of ``ColumnGroup.kinds``)."""

    base: np.ndarray
    arrays: tuple

    def join(self, other: "_JointScoring") -> "_JointScoring":
        """Both estimators' components side by side (self's first)."""
        return _JointScoring(np.concatenate([self.base, other.base]),
                             tuple(a.join(b) for a, b in zip(self.arrays, other.arrays, strict=True)))


class JointParzen(_Estimator):
    """One product-kernel mixture over the columns ``cols`` (all active on the same rows).

    ``V`` is as for :class:`UnivariateParzen`; rows with a NaN are left out. ``liars``
    (pending points) are appended as components of their own: each weighs ``liar_weight``
    times what one of the ``n_good`` good observations weighs in l(x), and has at least the
    bandwidth ``liar_sigma`` per numeric dimension.

    Components: one per observation plus the prior component. Numeric dimensions use
    :func:`bandwidths` along each dimension, a lone observation at its larger distance to the
    bounds; categorical kernels put ``1 + w·p·m`` on the observed option and ``w·p·m``
    elsewhere (``w = prior_weight / (n + 1)``, ``m`` options, ``p`` the prior). Above
    ``max_components`` observations a weighted subsample (always keeping the liars) stands for
    the rest with their total weight.
    """

    def __init__(self, table: ParamTable, cols: np.ndarray, V: np.ndarray,
                 params: ParzenParameters, rng: np.random.Generator,
                 liars: np.ndarray | None = None, n_good: int = 1,
                 liar_sigma: np.ndarray | None = None) -> None:
        t = self._t = table
        g = self._g = table.group(np.asarray(cols, dtype=np.int64))
        keep = None
        if liars is not None and len(liars):
            keep = np.zeros(len(V) + len(liars), dtype=bool)
            keep[len(V):] = True
            V = np.vstack([V, liars])
        if np.isnan(V).any():
            rows = ~np.isnan(V).any(axis=1)
            V = V[rows]
            keep = None if keep is None else keep[rows]
        n = len(V)
        w = default_weights(n, params.linear_forgetting)
        if keep is not None and keep.any():
            w[keep] = params.liar_weight * w[~keep].sum() / max(n_good, 1)
        else:
            keep = None
        K = params.max_components
        if n > K:
            kp = np.zeros(n, dtype=bool) if keep is None else keep
            w, V, kp = _subsample(rng, w, V, kp, K)
            keep = kp if keep is not None else None
        self._w = np.append(w, float(params.prior_weight))
        self._logw = np.log(self._w / self._w.sum())
        self._comps: Components | None = None  # numeric dimensions (d, K), prior last
        self._cdf_low: np.ndarray | None = None  # CDF at the lower bounds, and the mass inside,
        self._cdf_mass: np.ndarray | None = None  # when every kernel is centred in the support
        self._probs: np.ndarray | None = None  # categorical dimensions (d, K, max_options)
        if g.num.size:
            Z = V[:, g.num].T  # (dn, k), internal coordinates
            mu = np.hstack([Z, g.prior_mu[:, None]])
            sg = _gap_sigmas(Z, g)
            if keep is not None and liar_sigma is not None:
                # liars: at least the bandwidth a good observation has in l(x), so a pending
                # point pushes the next suggestions away from its neighbourhood, not only off
                # its exact location
                sg[:, keep] = np.maximum(sg[:, keep], np.asarray(liar_sigma)[:, None])
            sigma = np.hstack([sg, g.prior_sigma[:, None]])
            with np.errstate(invalid="ignore"):
                a = (g.L - mu) / sigma
                b = (g.H - mu) / sigma
            if (a <= 0).all() and (b >= 0).all():
                # every kernel centred in the support (the usual case): keep the CDF at the
                # bounds for inverse-CDF sampling; the mass inside is at least 1/2, so the plain
                # difference is exact
                self._cdf_low = mx.ndtr(a)
                self._cdf_mass = mx.ndtr(b) - self._cdf_low
                logz = np.log(self._cdf_mass)
            else:
                logz = mx.log_truncation(mu, sigma, g.L, g.H)
            self._comps = Components(mu, sigma, logz)
        if g.cat.size:
            obs = V[:, g.cat].T.astype(np.int64)  # (dc, k)
            dc, k = obs.shape
            pw = float(params.prior_weight) / (k + 1)
            P = np.empty((dc, k + 1, t.max_options))
            P[:, :-1, :] = (pw * g.nopt_prior)[:, None, :]
            P[np.arange(dc)[:, None], np.arange(k)[None, :], obs] += 1.0
            P[:, :-1, :] /= (1.0 + pw * g.nopt_prior.sum(axis=1))[:, None, None]
            P[:, -1, :] = g.cat_prior
            self._probs = P
        self._scoring = self._make_scoring()

    # -------------------------------------------------------------- views
    @property
    def weights(self) -> np.ndarray:
        """The components' weights ``(K,)`` (prior last)."""
        return self._w

    def median_bandwidth(self) -> np.ndarray | None:
        """Per numeric dimension, the median bandwidth of the observations' kernels (the prior
        component left out); None without numeric dimensions or observations."""
        if self._comps is None or self._comps.sigma.shape[1] <= 1:
            return None
        return np.median(self._comps.sigma[:, :-1], axis=1)

    # -------------------------------------------------------------- public
    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` joint draws → ``(len(cols), n)`` external values."""
        g = self._g
        cum = np.cumsum(self._w)
        k = np.minimum(np.searchsorted(cum, rng.random(n) * cum[-1], side="right"), cum.size - 1)
        out = np.empty((g.cols.size, n))
        if self._comps is not None:
            mu, sigma = self._comps.mu[:, k], self._comps.sigma[:, k]
            if self._cdf_low is not None and self._cdf_mass is not None:
                p = self._cdf_low[:, k] + rng.random((g.num.size, n)) * self._cdf_mass[:, k]
                np.clip(p, _TINY, 1.0 - 1e-16, out=p)
                z = np.clip(mu + sigma * mx.ndtri(p), g.L, g.H)
            else:
                z = mx.sample_truncnorm(rng, mu, sigma, g.L, g.H)
            out[g.num] = self._t.external(z, g.cols[g.num])
        if self._probs is not None:
            p = self._probs[:, k, :]  # (dc, n, M)
            cum = np.cumsum(p, axis=2)
            u = rng.random(p.shape[:2])
            out[g.cat] = np.minimum((u[:, :, None] >= cum).sum(axis=2), p.shape[2] - 1)
        return out

    def _make_scoring(self) -> _JointScoring:
        base = self._logw.copy()
        arrays = []
        for kg in self._g.kinds:
            arrays.append(kg.kind.joint_arrays(self._t, kg.cols, self._block(kg), base))
        return _JointScoring(base, tuple(arrays))

    def _features(self, V: np.ndarray) -> list:
        """What each kernel kind needs of the points ``V`` (shared by estimators over the same
        columns)."""
        return [kg.kind.joint_features(self._t, kg.cols, V[kg.where]) for kg in self._g.kinds]

    def _log_terms(self, f: list, scoring: _JointScoring, n_points: int) -> np.ndarray:
        """``(C, K)`` log weight + log kernel product of every component of ``scoring`` (possibly
        of several estimators side by side) at the points ``f``."""
        tot = scoring.base
        for kg, fk, arrays in zip(self._g.kinds, f, scoring.arrays, strict=True):
            tot = kg.kind.add_joint_terms(tot, fk, arrays)
        return np.broadcast_to(tot, (n_points, scoring.base.size))

    def log_pdf(self, V: np.ndarray) -> np.ndarray:
        """Joint log density of the points ``V (len(cols), C)`` → ``(C,)``."""
        return mx.logsumexp(self._log_terms(self._features(V), self._scoring, V.shape[1]), axis=1)

    def log_pdf_ratio(self, other: "JointParzen", V: np.ndarray) -> np.ndarray:
        """``self.log_pdf(V) - other.log_pdf(V)`` for an estimator over the same columns,
        both mixtures' components scored side by side in one pass."""
        f = self._features(V)
        K1 = self._scoring.base.size
        with np.errstate(under="ignore", divide="ignore"):
            tot = self._log_terms(f, self._scoring.join(other._scoring), V.shape[1])
            # every row holds the finite prior component of each mixture: plain log-sum-exp
            # (terms more than e^-80 below a row's largest are clamped there: no effect on the
            # sum, and no slow denormal arithmetic in exp)
            t1, t2 = tot[:, :K1], tot[:, K1:]
            m1 = t1.max(axis=1, keepdims=True)
            m2 = t2.max(axis=1, keepdims=True)
            d1 = np.maximum(t1 - m1, -80.0)
            d2 = np.maximum(t2 - m2, -80.0)
            l1 = np.log(np.exp(d1, out=d1).sum(axis=1)) + m1[:, 0]
            l2 = np.log(np.exp(d2, out=d2).sum(axis=1)) + m2[:, 0]
        return l1 - l2


def _gap_sigmas(Z: np.ndarray, g: ColumnGroup) -> np.ndarray:
    """:func:`bandwidths` of the points ``Z (d, k)`` along each dimension, in their order; a
    lone point uses its larger distance to the bounds (the prior's σ when unbounded)."""
    order = np.argsort(Z, axis=1)
    rows = np.arange(Z.shape[0])[:, None]
    S = Z[rows, order]
    lone = None
    if Z.shape[1] == 1:
        lone = np.fmax(S - g.low[:, None], g.high[:, None] - S)
        lone = np.where(np.isfinite(lone), lone, g.prior_sigma[:, None])
    sg = bandwidths(S, g.prior_sigma, Z.shape[1], lone)
    out = np.empty_like(sg)
    out[rows, order] = sg
    return out


def _subsample(rng: np.random.Generator, w: np.ndarray, V: np.ndarray, keep: np.ndarray,
               K: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep the rows flagged in ``keep`` and a weight-proportional sample of the others."""
    kept = np.flatnonzero(keep)
    rest = np.flatnonzero(~keep)
    m = max(K - kept.size, 0)
    if m == 0 or rest.size <= m:
        return w, V, keep
    wr = w[rest]
    # weighted sampling without replacement (Efraimidis-Spirakis, as exponential clocks E/w:
    # the m smallest)
    keys = rng.standard_exponential(rest.size) / wr
    pick = rest[np.argpartition(keys, m - 1)[:m]]
    idx = np.sort(np.concatenate([pick, kept]))
    nw = w.copy()
    nw[pick] = wr.sum() / m
    return nw[idx], V[idx], keep[idx]
