"""Observations → Parzen mixtures, one per parameter (univariate) or per group (joint).

Values arrive as rows of the compiled space's ``(n, P)`` matrix (external values: choice
indices for categoricals, NaN where inactive). Numeric parameters are modelled in an
*internal* space: the log of the value for log kinds, widened by half a cell for integer
kinds, bounded by the prior's support (unbounded for normal kinds):

* bounded continuous → truncated Gaussian mixture (density in internal space);
* quantized / integer → the same mixture scored by the probability mass of the value's
  quantization cell (``[v - q/2, v + q/2]``, logged for q-log kinds, clipped to the bounds);
* categorical (choice / pchoice) → weighted counts plus ``prior_weight`` pseudo-counts
  spread as the prior probabilities (``n_options * prior_weight * p``).

Each mixture has one prior component (mid-range mean, σ = range; the distribution's own μ, σ
for normal kinds) with weight ``prior_weight``, and one component per observation, weighted
by linear forgetting (the newest ``linear_forgetting`` at 1, older ones ramping down to 1/n).
Univariate bandwidths are the larger gap to the sorted neighbours, clipped to
``[prior_sigma / min(100, n + 2), prior_sigma]``. When more than ``max_components``
observations exist, neighbouring sorted components are merged by moment matching, so the
cost of scoring is bounded whatever the history size.

Joint estimators score points as one pass over the components of l(x) and g(x) side by
side (:meth:`JointParzen.log_pdf_ratio`): continuous dimensions as a quadratic form in
standardised coordinates (two matrix products), quantized ones with the normal CDF evaluated
once per distinct cell edge, categorical ones by a table look-up.

Only :meth:`sample`, :meth:`log_pdf` and :meth:`log_pdf_ratio` are public on the estimators.
"""
from __future__ import annotations

import math
import weakref
from typing import NamedTuple

import numpy as np

from . import mixtures as mx

_CONT, _QLIN, _QLOG = 0, 1, 2
_TINY = np.nextafter(0.0, 1.0)


class ParzenParameters(NamedTuple):
    prior_weight: float = 1.0
    linear_forgetting: int = 25
    max_components: int = 128
    cat_prior_per_option: bool = True
    liar_weight: float = 1.0  # a pending point weighs this many good observations in g(x)


class ParamTable:
    """Per-column constants of a compiled space, as arrays (built once per space)."""

    def __init__(self, space) -> None:
        P = space.n_params
        self.n_params = P
        self.is_cat = np.zeros(P, dtype=bool)
        self.is_int = np.zeros(P, dtype=bool)
        self.is_log = np.zeros(P, dtype=bool)
        self.qkind = np.zeros(P, dtype=np.int64)
        self.q = np.ones(P)
        self.low = np.full(P, -np.inf)   # internal bounds
        self.high = np.full(P, np.inf)
        self.ext_low = np.full(P, -np.inf)  # external clip range after quantizing
        self.ext_high = np.full(P, np.inf)
        self.floor = np.full(P, 1e-300)  # log kinds: smallest value before the log
        self.prior_mu = np.zeros(P)
        self.prior_sigma = np.ones(P)
        self.n_options = np.zeros(P, dtype=np.int64)
        self.span = np.ones(P)  # width used to normalise distances (bench / tests)
        probs = []
        for p in space.params:
            j, d = p.index, p.dist
            if d.is_categorical:
                self.is_cat[j] = True
                self.n_options[j] = d.n_options
                probs.append(np.asarray(d.probs, dtype=float))
                continue
            probs.append(None)
            k = d.kind
            self.is_log[j] = d.is_log
            if k in ("randint", "uniformint"):
                self.is_int[j] = True
                self.qkind[j] = _QLIN
                top = d.high - 1 if k == "randint" else d.high
                self.low[j], self.high[j] = d.low - 0.5, top + 0.5
                self.ext_low[j], self.ext_high[j] = d.low, top
            elif d.is_quantized:
                self.q[j] = d.q
                self.qkind[j] = _QLOG if d.is_log else _QLIN
            if k in ("uniform", "quniform", "loguniform", "qloguniform"):
                self.low[j], self.high[j] = d.low, d.high
                if d.is_quantized:
                    lo, hi = (math.exp(d.low), math.exp(d.high)) if d.is_log else (d.low, d.high)
                    self.ext_low[j] = min(lo, round(lo / d.q) * d.q)
                    self.ext_high[j] = max(hi, round(hi / d.q) * d.q)
            if d.is_log and d.is_quantized:
                self.floor[j] = d.q / 4.0
            if np.isfinite(self.low[j]):
                self.prior_mu[j] = 0.5 * (self.low[j] + self.high[j])
                self.prior_sigma[j] = self.high[j] - self.low[j]
            else:
                self.prior_mu[j], self.prior_sigma[j] = d.mu, d.sigma
            self.span[j] = self.prior_sigma[j] if np.isfinite(self.low[j]) else 4.0 * d.sigma
        M = int(self.n_options.max()) if self.is_cat.any() else 1
        self.max_options = M
        self.cat_prior = np.zeros((P, M))
        for j, pr in enumerate(probs):
            if pr is not None:
                self.cat_prior[j, :len(pr)] = pr

    # -------------------------------------------------------------- value transforms
    def internal(self, V: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """External numeric values ``(n, len(cols))`` → internal coordinates (NaN kept)."""
        Z = np.array(V, dtype=float)
        lg = self.is_log[cols]
        if lg.any():
            with np.errstate(invalid="ignore"):
                Z[:, lg] = np.log(np.fmax(Z[:, lg], self.floor[cols][lg]))
        with np.errstate(invalid="ignore"):
            return np.clip(Z, self.low[cols], self.high[cols])

    def internal_rows(self, X: np.ndarray) -> np.ndarray:
        """Full ``(n, P)`` rows → same shape with numeric columns internal (categoricals kept)."""
        Z = np.array(X, dtype=float)
        lg = np.flatnonzero(self.is_log)
        if lg.size:
            with np.errstate(invalid="ignore"):
                Z[:, lg] = np.log(np.fmax(Z[:, lg], self.floor[lg]))
        num = np.flatnonzero(~self.is_cat & np.isfinite(self.low))
        if num.size:
            with np.errstate(invalid="ignore"):
                Z[:, num] = np.clip(Z[:, num], self.low[num], self.high[num])
        return Z

    def external(self, Z: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Internal samples ``(len(cols), n)`` → external values on the parameter's grid."""
        X = np.array(Z, dtype=float)
        lg = self.is_log[cols]
        if lg.any():
            X[lg] = np.exp(X[lg])
        qz = self.qkind[cols] != _CONT
        if qz.any():
            q = self.q[cols][qz][:, None]
            X[qz] = np.clip(np.round(X[qz] / q) * q, self.ext_low[cols][qz][:, None],
                            self.ext_high[cols][qz][:, None])
        return X

    def cells(self, V: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Internal bounds ``[a, b]`` of the quantization cells of external values ``(B, C)``."""
        half = 0.5 * self.q[cols][:, None]
        lo, hi = V - half, V + half
        lg = self.is_log[cols]
        if lg.any():
            pos = lo[lg] > 0
            a = np.full(lo[lg].shape, -np.inf)
            a[pos] = np.log(lo[lg][pos])
            lo[lg] = a
            hi[lg] = np.log(hi[lg])
        L, H = self.low[cols][:, None], self.high[cols][:, None]
        a = np.clip(lo, L, H)
        b = np.clip(hi, L, H)
        # a degenerate cell (value on the bound's edge): give it a sliver so log mass is finite
        b = np.where(b > a, b, np.nextafter(a, np.inf))
        return a, b


_TABLES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def param_table(space) -> ParamTable:
    """The (cached) :class:`ParamTable` of a compiled space."""
    t = _TABLES.get(space)
    if t is None:
        t = _TABLES[space] = ParamTable(space)
    return t


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


# ============================================================================ univariate
class UnivariateParzen:
    """Independent mixtures for the columns ``cols``, fitted together as stacked arrays.

    ``V`` holds the observations ``(n, len(cols))`` in age order (NaN = inactive): internal
    coordinates for numeric columns (:meth:`ParamTable.internal_rows`), option indices for
    categorical ones.
    """

    def __init__(self, table: ParamTable, cols: np.ndarray, V: np.ndarray,
                 params: ParzenParameters, liars: np.ndarray | None = None,
                 n_good: int = 1) -> None:
        self._t = table
        self._cols = cols = np.asarray(cols, dtype=np.int64)
        cat = table.is_cat[cols]
        self._num = np.flatnonzero(~cat)
        self._cat = np.flatnonzero(cat)
        self._params = params
        active = ~np.isnan(V)
        if active.all():  # the common case: one weight vector for every column
            W = np.broadcast_to(default_weights(len(V), params.linear_forgetting)[:, None], V.shape)
        else:
            W = forgetting_weights(active, params.linear_forgetting)
        # liars (pending points): each weighs what one good observation weighs in l(x)
        liars = np.empty((0, cols.size)) if liars is None else liars
        lw = np.where(np.isnan(liars), 0.0, params.liar_weight * W.sum(axis=0) / max(n_good, 1)) if len(liars) else None
        if self._num.size:
            nc = cols[self._num]
            self._fit_numeric(nc, V[:, self._num], W[:, self._num])
            if lw is not None:
                Zl = liars[:, self._num].T
                wl = lw[:, self._num].T
                sl = np.broadcast_to((table.prior_sigma[nc] / min(100.0, n_good + 2.0))[:, None], Zl.shape)
                self._mu = np.concatenate([self._mu, np.where(wl > 0, Zl, 0.0)], axis=1)
                self._sigma = np.concatenate([self._sigma, sl], axis=1)
                self._w = np.concatenate([self._w, wl], axis=1)
                self._logw = mx.log_weights(self._w)
                self._logz = mx.log_truncation(self._mu, self._sigma, self._L, self._H)
            qk = table.qkind[nc]
            self._cont = np.flatnonzero(qk == _CONT)
            self._quant = np.flatnonzero(qk != _CONT)
        if self._cat.size:
            Vc, Wc = V[:, self._cat], W[:, self._cat]
            if lw is not None:
                Vc = np.vstack([Vc, liars[:, self._cat]])
                Wc = np.vstack([Wc, lw[:, self._cat]])
            self._fit_categorical(cols[self._cat], Vc, Wc)

    # -------------------------------------------------------------- fitting
    def _fit_numeric(self, nc: np.ndarray, Z: np.ndarray, W: np.ndarray) -> None:
        t, prm = self._t, self._params
        B = nc.size
        K = int(prm.max_components)
        pmu, psig = t.prior_mu[nc], t.prior_sigma[nc]
        cnt = np.count_nonzero(W, axis=0)
        minsig = psig / np.minimum(100.0, cnt + 2.0)
        # grid of K cells over the support (mu ± 3 sigma for unbounded priors)
        lo = np.where(np.isfinite(t.low[nc]), t.low[nc], pmu - 3.0 * psig)
        width = np.where(np.isfinite(t.low[nc]), t.high[nc] - t.low[nc], 6.0 * psig)
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
        # bandwidth: the larger gap to the neighbouring occupied cells (hyperopt's rule on the
        # merged points), one-sided at the ends, clipped to [minsig, prior sigma]
        k = np.arange(K)
        prev = np.maximum.accumulate(np.where(full, k, -1), axis=1)
        nxt = np.minimum.accumulate(np.where(full, k, K)[:, ::-1], axis=1)[:, ::-1]
        prev = np.concatenate([np.full((B, 1), -1), prev[:, :-1]], axis=1)
        nxt = np.concatenate([nxt[:, 1:], np.full((B, 1), K)], axis=1)
        rows = np.arange(B)[:, None]
        gl = np.where(prev >= 0, m - m[rows, np.maximum(prev, 0)], np.nan)
        gr = np.where(nxt < K, m[rows, np.minimum(nxt, K - 1)] - m, np.nan)
        gap = np.fmax(gl, gr)
        gap = np.where(np.isnan(gap), np.abs(m - pmu[:, None]), gap)
        sig = np.minimum(np.maximum(gap, minsig[:, None]), psig[:, None])
        sig = np.sqrt(sig * sig + within)
        # keep only occupied cells (compacted to the left, padding with weight 0)
        kmax = int(full.sum(axis=1).max())
        sel = np.argsort(~full, axis=1, kind="stable")[:, :kmax]
        fs = np.take_along_axis(full, sel, axis=1)
        self._mu = np.concatenate([np.where(fs, np.take_along_axis(m, sel, axis=1), 0.0), pmu[:, None]], axis=1)
        self._sigma = np.concatenate([np.where(fs, np.take_along_axis(sig, sel, axis=1), 1.0), psig[:, None]], axis=1)
        self._w = np.concatenate([np.take_along_axis(s0, sel, axis=1), np.full((B, 1), float(prm.prior_weight))], axis=1)
        self._logw = mx.log_weights(self._w)
        self._L, self._H = t.low[nc][:, None], t.high[nc][:, None]
        self._logz = mx.log_truncation(self._mu, self._sigma, self._L, self._H)

    def _fit_categorical(self, cc: np.ndarray, V: np.ndarray, W: np.ndarray) -> None:
        t = self._t
        B, M = cc.size, t.max_options
        act = W > 0
        idx = (np.arange(B)[None, :] * M + np.where(act, V, 0).astype(np.int64))[act]
        counts = np.bincount(idx, weights=W[act], minlength=B * M).astype(float).reshape(B, M)
        counts += self._params.prior_weight * (t.n_options[cc][:, None] if self._params.cat_prior_per_option else 1.0) * t.cat_prior[cc]
        self._probs = counts / counts.sum(axis=1, keepdims=True)

    # -------------------------------------------------------------- public
    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` draws per column → ``(len(cols), n)`` external values."""
        out = np.empty((self._cols.size, n))
        if self._num.size:
            k = mx.choose_components(rng, self._w, n)
            mu = np.take_along_axis(self._mu, k, axis=1)
            sg = np.take_along_axis(self._sigma, k, axis=1)
            z = mx.sample_truncnorm(rng, mu, sg, self._L, self._H)
            out[self._num] = self._t.external(z, self._cols[self._num])
        if self._cat.size:
            out[self._cat] = mx.choose_components(rng, self._probs, n)
        return out

    def log_pdf(self, V: np.ndarray) -> np.ndarray:
        """Per-column log density (mass for discrete kinds) of ``V (len(cols), C)``."""
        out = np.empty(V.shape)
        if self._num.size:
            nc = self._cols[self._num]
            Vn = V[self._num]
            if self._cont.size:
                r = self._cont
                z = self._t.internal(Vn[r].T, nc[r]).T
                kern = mx.log_kernel_density(z, self._mu[r], self._sigma[r], self._logz[r])
                out[self._num[r]] = mx.mixture_log_pdf(kern, self._logw[r])
            if self._quant.size:
                r = self._quant
                a, b = self._t.cells(Vn[r], nc[r])
                kern = mx.log_kernel_mass(a, b, self._mu[r], self._sigma[r], self._logz[r])
                out[self._num[r]] = mx.mixture_log_pdf(kern, self._logw[r])
        if self._cat.size:
            iv = V[self._cat].astype(np.int64)
            with np.errstate(divide="ignore"):
                out[self._cat] = np.log(np.take_along_axis(self._probs, iv, axis=1))
        return out


    def log_pdf_ratio(self, other: "UnivariateParzen", V: np.ndarray) -> np.ndarray:
        """``self.log_pdf(V) - other.log_pdf(V)`` for an estimator over the same columns,
        with both mixtures stacked into one batch (half the array passes)."""
        out = np.empty(V.shape)
        if self._num.size:
            nc = self._cols[self._num]
            Vn = V[self._num]
            for r, cont in ((self._cont, True), (self._quant, False)):
                if not r.size:
                    continue
                K = max(self._mu.shape[1], other._mu.shape[1])
                mu = np.vstack([_pad(self._mu[r], K, 0.0), _pad(other._mu[r], K, 0.0)])
                sg = np.vstack([_pad(self._sigma[r], K, 1.0), _pad(other._sigma[r], K, 1.0)])
                lz = np.vstack([_pad(self._logz[r], K, 0.0), _pad(other._logz[r], K, 0.0)])
                lw = np.vstack([_pad(self._logw[r], K, -np.inf), _pad(other._logw[r], K, -np.inf)])
                if cont:
                    z = self._t.internal(Vn[r].T, nc[r]).T
                    kern = mx.log_kernel_density(np.vstack([z, z]), mu, sg, lz)
                else:
                    a, b = self._t.cells(Vn[r], nc[r])
                    kern = mx.log_kernel_mass(np.vstack([a, a]), np.vstack([b, b]), mu, sg, lz)
                lp = mx.mixture_log_pdf(kern, lw)
                out[self._num[r]] = lp[:r.size] - lp[r.size:]
        if self._cat.size:
            iv = V[self._cat].astype(np.int64)
            out[self._cat] = (np.log(np.take_along_axis(self._probs, iv, axis=1))
                              - np.log(np.take_along_axis(other._probs, iv, axis=1)))
        return out


def _pad(a: np.ndarray, K: int, fill: float) -> np.ndarray:
    if a.shape[1] == K:
        return a
    return np.concatenate([a, np.full((a.shape[0], K - a.shape[1]), fill)], axis=1)

# ============================================================================ joint
class JointParzen:
    """One product-kernel mixture over the columns ``cols`` (all active on the same rows).

    ``V`` is as for :class:`UnivariateParzen` (internal coordinates, option indices).

    Components: one per observation plus the prior component. Numeric dimensions use the
    univariate bandwidth rule per dimension (larger gap to the sorted neighbours along that
    dimension, clipped to ``[prior_sigma / min(100, n + 2), prior_sigma]``); categorical
    kernels put ``1 + w·p·m`` on the observed option and ``w·p·m`` elsewhere
    (``w = prior_weight / (n + 1)``, ``m`` options, ``p`` the prior). Above ``max_components``
    observations a weighted subsample (always keeping the rows flagged in ``keep``) stands for
    the rest with their total weight.
    """

    def __init__(self, table: ParamTable, cols: np.ndarray, V: np.ndarray,
                 params: ParzenParameters, rng: np.random.Generator,
                 keep: np.ndarray | None = None, n_good: int = 1,
                 keep_sigma: np.ndarray | None = None) -> None:
        t = self._t = table
        self._cols = cols = np.asarray(cols, dtype=np.int64)
        c = _col_constants(t, cols)
        if np.isnan(V).any():
            rows = ~np.isnan(V).any(axis=1)
            V = V[rows]
            keep = None if keep is None else np.asarray(keep)[rows]
        n = len(V)
        w = default_weights(n, params.linear_forgetting)
        if keep is not None and keep.any():  # liars weigh what one good observation weighs in l(x)
            keep = np.asarray(keep)
            w[keep] = params.liar_weight * w[~keep].sum() / max(n_good, 1)
        else:
            keep = None
        K = params.max_components
        if n > K:
            kp = np.zeros(n, dtype=bool) if keep is None else keep
            w, V, kp = _subsample(rng, w, V, kp, K)
            keep = kp if keep is not None else None
        self._num, self._cat = c["num"], c["cat"]
        self._w = np.append(w, float(params.prior_weight))
        self._logw = np.log(self._w / self._w.sum())
        if self._num.size:
            psig = c["psig"]
            Z = V[:, self._num].T  # (dn, k), internal coordinates
            self._mu = np.hstack([Z, c["pmu"][:, None]])
            sg = _gap_sigmas(Z, psig, c["low"], c["high"])
            if keep is not None and keep_sigma is not None:
                # liars: at least the bandwidth a good observation has in l(x), so a pending
                # point pushes the next suggestions away from its neighbourhood, not only off
                # its exact location
                sg[:, keep] = np.maximum(sg[:, keep], np.asarray(keep_sigma)[:, None])
            self._sigma = np.hstack([sg, psig[:, None]])
            self._L, self._H = c["L"], c["H"]
            with np.errstate(invalid="ignore"):
                a = (self._L - self._mu) / self._sigma
                b = (self._H - self._mu) / self._sigma
            if (a <= 0).all() and (b >= 0).all():
                # every kernel centred in the support (the usual case): keep the CDF at the
                # bounds for inverse-CDF sampling; the mass inside is at least 1/2, so the plain
                # difference is exact
                self._pa = mx.ndtr(a)
                self._dp = mx.ndtr(b) - self._pa
                self._logz = np.log(self._dp)
            else:
                self._logz = mx.log_truncation(self._mu, self._sigma, self._L, self._H)
            self._cont, self._quant = c["cont"], c["quant"]
        if self._cat.size:
            obs = V[:, self._cat].T.astype(np.int64)  # (dc, k)
            dc, k = obs.shape
            pw = float(params.prior_weight) / (k + 1)
            P = np.empty((dc, k + 1, t.max_options))
            P[:, :-1, :] = (pw * c["nopt_prior"])[:, None, :]
            P[np.arange(dc)[:, None], np.arange(k)[None, :], obs] += 1.0
            P[:, :-1, :] /= (1.0 + pw * c["nopt_prior"].sum(axis=1))[:, None, None]
            P[:, -1, :] = c["prior"]
            self._probs = P

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` joint draws → ``(len(cols), n)`` external values."""
        cum = np.cumsum(self._w)
        k = np.minimum(np.searchsorted(cum, rng.random(n) * cum[-1], side="right"), cum.size - 1)
        out = np.empty((self._cols.size, n))
        if self._num.size:
            if hasattr(self, "_pa"):
                p = self._pa[:, k] + rng.random((self._num.size, n)) * self._dp[:, k]
                np.clip(p, _TINY, 1.0 - 1e-16, out=p)
                z = self._mu[:, k] + self._sigma[:, k] * mx.ndtri(p)
                z = np.clip(z, self._L, self._H)
            else:
                z = mx.sample_truncnorm(rng, self._mu[:, k], self._sigma[:, k], self._L, self._H)
            out[self._num] = self._t.external(z, self._cols[self._num])
        if self._cat.size:
            p = self._probs[:, k, :]  # (dc, n, M)
            cum = np.cumsum(p, axis=2)
            u = rng.random(p.shape[:2])
            out[self._cat] = np.minimum((u[:, :, None] >= cum).sum(axis=2), p.shape[2] - 1)
        return out

    def _prepare_scoring(self) -> None:
        """Per-component constants of :meth:`log_pdf`, built on first use.

        Continuous dimensions are scored as a quadratic form in standardised coordinates
        (``x' = (x - prior_mu) / prior_sigma``): ``sum_d -(x'_d - mu'_dk)^2 / (2 s'_dk^2)`` is
        ``-1/2 x'^2 @ A + x' @ B + c_k`` with ``A = 1/s'^2`` and ``B = mu'/s'^2``, i.e. two small
        matrix products instead of a ``(d, C, K)`` kernel tensor.
        """
        t = self._t
        base = self._logw.copy()
        if self._num.size:
            nc = self._cols[self._num]
            if self._cont.size:
                r = self._cont
                cen = t.prior_mu[nc[r]][:, None]
                sc = t.prior_sigma[nc[r]][:, None]
                m = (self._mu[r] - cen) / sc
                s = self._sigma[r] / sc
                A = 1.0 / (s * s)
                self._qa = A
                self._qb = m * A
                self._cen, self._sc = cen[:, 0], sc[:, 0]
                base += (-0.5 * m * m * A - np.log(s) - self._logz[r]).sum(axis=0)
                base -= r.size * mx._LOG_SQRT_2PI + float(np.log(sc).sum())
            if self._quant.size:
                r = self._quant
                self._qmu, self._qsig, self._qlz = self._mu[r], self._sigma[r], self._logz[r]
        if self._cat.size:
            with np.errstate(divide="ignore"):
                self._logp = np.log(self._probs)  # (dc, K, M)
        self._base = base

    def _features(self, V: np.ndarray) -> tuple:
        """What :meth:`_log_pdf_features` needs of the points ``V`` (shared by estimators over
        the same columns)."""
        x = cells = iv = None
        if self._num.size:
            nc = self._cols[self._num]
            Vn = V[self._num]
            if self._cont.size:
                r = self._cont
                x = self._t.internal(Vn[r].T, nc[r])
                x = (x - self._t.prior_mu[nc[r]]) / self._t.prior_sigma[nc[r]]  # (C, dcont)
            if self._quant.size:
                # per quantized dimension: the distinct values' cells and each point's index
                cells = []
                for j in self._quant:
                    u, inv = np.unique(Vn[j], return_inverse=True)
                    a, b = self._t.cells(u[None, :], nc[j:j + 1])
                    cells.append((a[0], b[0], inv))
        if self._cat.size:
            iv = V[self._cat].astype(np.int64)
        return x, cells, iv

    def _log_terms(self, f: tuple, parts: tuple) -> np.ndarray:
        """``(C, K)`` log weight + log kernel product of every component at the points ``f``;
        ``parts`` are the scoring arrays (possibly of several estimators side by side)."""
        x, cells, iv = f
        qa, qb, base, qmu, qsig, qlz, logp = parts
        tot = base
        if x is not None:
            tot = (x @ qb) - 0.5 * ((x * x) @ qa) + base
        if cells is not None:
            tot = tot + mx.sum_log_cell_mass(cells, qmu, qsig, qlz)
        if iv is not None:
            # (dc, C, K): log p of each point's option under each component
            g = logp[np.arange(iv.shape[0])[:, None], :, iv]
            tot = tot + g.sum(axis=0)
        return np.broadcast_to(tot, (f_len(f), base.size))

    def _parts(self) -> tuple:
        if not hasattr(self, "_base"):
            self._prepare_scoring()
        g = lambda name: getattr(self, name, None)  # noqa: E731
        return (g("_qa"), g("_qb"), self._base, g("_qmu"), g("_qsig"), g("_qlz"), g("_logp"))

    def _log_pdf_features(self, f: tuple) -> np.ndarray:
        return mx.logsumexp(self._log_terms(f, self._parts()), axis=1)

    def log_pdf(self, V: np.ndarray) -> np.ndarray:
        """Joint log density of the points ``V (len(cols), C)`` → ``(C,)``."""
        return self._log_pdf_features(self._features(V))

    def log_pdf_ratio(self, other: "JointParzen", V: np.ndarray) -> np.ndarray:
        """``self.log_pdf(V) - other.log_pdf(V)`` for an estimator over the same columns,
        both mixtures' components scored side by side in one pass."""
        f = self._features(V)
        p1, p2 = self._parts(), other._parts()
        K1 = p1[2].size
        both = tuple(None if a is None else np.concatenate([a, b], axis=-2 if i == 6 else -1)
                     for i, (a, b) in enumerate(zip(p1, p2)))
        with np.errstate(under="ignore", divide="ignore"):
            tot = self._log_terms(f, both)
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


def f_len(f: tuple) -> int:
    x, cells, iv = f
    if x is not None:
        return x.shape[0]
    if cells is not None:
        return cells[0][2].size
    return iv.shape[1]


def _col_constants(t: ParamTable, cols: np.ndarray) -> dict:
    """Per-group constants of :class:`JointParzen` (cached on the table per column set)."""
    key = cols.tobytes()
    cache = t.__dict__.setdefault("_joint_consts", {})
    c = cache.get(key)
    if c is None:
        cat = t.is_cat[cols]
        num = np.flatnonzero(~cat)
        nc, cc = cols[num], cols[np.flatnonzero(cat)]
        qk = t.qkind[nc]
        c = cache[key] = {
            "num": num, "cat": np.flatnonzero(cat), "psig": t.prior_sigma[nc],
            "pmu": t.prior_mu[nc], "low": t.low[nc], "high": t.high[nc],
            "L": t.low[nc][:, None], "H": t.high[nc][:, None],
            "cont": np.flatnonzero(qk == _CONT), "quant": np.flatnonzero(qk != _CONT),
            "prior": t.cat_prior[cc], "nopt_prior": t.n_options[cc][:, None] * t.cat_prior[cc]}
    return c


def _gap_sigmas(Z: np.ndarray, psig: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Per-dimension neighbour-gap bandwidths of the points ``Z (d, k)`` (one-sided at the ends;
    a lone point uses its larger distance to the bounds)."""
    d, k = Z.shape
    if k == 0:
        return np.empty((d, 0))
    order = np.argsort(Z, axis=1)
    rows = np.arange(d)[:, None]
    S = Z[rows, order]
    if k == 1:
        sg = np.fmax(S - low[:, None], high[:, None] - S)
        sg = np.where(np.isfinite(sg), sg, psig[:, None])
    else:
        sg = np.empty((d, k))
        g = S[:, 1:] - S[:, :-1]
        sg[:, 0] = g[:, 0]
        sg[:, -1] = g[:, -1]
        np.maximum(g[:, 1:], g[:, :-1], out=sg[:, 1:-1])
    np.clip(sg, (psig / min(100.0, k + 2.0))[:, None], psig[:, None], out=sg)
    out = np.empty_like(sg)
    out[rows, order] = sg
    return out


def _subsample(rng, w, V, keep, K):
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
