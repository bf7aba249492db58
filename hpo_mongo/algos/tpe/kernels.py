"""Per-dimension pieces of the Parzen estimators: column constants and kernel kinds.

:class:`ParamTable` turns a compiled space into per-column arrays (internal bounds, prior,
quantization) and the transforms between external values and the *internal* coordinates in
which numeric kernels live: the log of the value for log kinds, widened by half a cell for
integer kinds, bounded by the prior's support (unbounded for normal kinds).

Each column is scored by one *kernel kind*, chosen from its distribution's flags:

* :data:`CONTINUOUS`: truncated-normal density in internal coordinates;
* :data:`QUANTIZED`: the same truncated normals scored by the probability mass of the value's
  quantization cell ``[v - q/2, v + q/2]`` (logged for q-log kinds, clipped to the bounds),
  for quantized and integer kinds;
* :data:`CATEGORICAL`: one probability per option.

A kernel kind is one class: which distributions it takes, what it needs of the query points,
and how it scores them, both for the independent estimator (one mixture per column) and for
the joint one (one product kernel per component, dimensions adding their log terms). Numeric
kinds share the truncated-normal components the estimators fit (means, bandwidths, log
truncation masses); the categorical kind scores option probabilities. :data:`KERNEL_KINDS`
lists them in the order the estimators evaluate them: adding a kind is one class here and
its entry there.
"""
from __future__ import annotations

import weakref
from typing import Any, ClassVar, NamedTuple

import numpy as np

from ...space.distributions import Distribution
from . import mixtures as mx


# ============================================================================ kernel kinds
class Components(NamedTuple):
    """Truncated-normal components ``(B, K)`` of numeric dimensions: means and bandwidths in
    internal coordinates, log truncation masses, and log weights (``(B, K)`` for independent
    mixtures; the joint estimator's weights are shared and not used here)."""

    mu: np.ndarray
    sigma: np.ndarray
    logz: np.ndarray
    logw: np.ndarray | None = None

    def rows(self, r: np.ndarray) -> "Components":
        return Components(self.mu[r], self.sigma[r], self.logz[r], None if self.logw is None else self.logw[r])


class KernelKind:
    """How one family of dimensions is scored (the subclasses below are stateless)."""

    #: True: the dimension is scored by the estimator's truncated-normal components
    numeric: ClassVar[bool] = True

    def accepts(self, dist: Distribution) -> bool:
        raise NotImplementedError

    # -------------------------------------------------- independent mixtures, one per column
    def features(self, table: "ParamTable", cols: np.ndarray, V: np.ndarray) -> Any:
        """What scoring needs of the external values ``V (len(cols), C)``."""
        raise NotImplementedError

    def log_pdf(self, f: Any, block: Any) -> np.ndarray:
        """Per-column log density (or mass) ``(len(cols), C)`` of the points under ``block``."""
        raise NotImplementedError

    def log_pdf_ratio(self, f: Any, block: Any, other: Any) -> np.ndarray:
        """``log_pdf(f, block) - log_pdf(f, other)``."""
        raise NotImplementedError

    # -------------------------------------------------- joint estimator (product kernels)
    def joint_features(self, table: "ParamTable", cols: np.ndarray, V: np.ndarray) -> Any:
        """What :meth:`add_joint_terms` needs of the external values ``V (len(cols), C)``."""
        raise NotImplementedError

    def joint_arrays(self, table: "ParamTable", cols: np.ndarray, block: Any, base: np.ndarray) -> Any:
        """Per-component scoring arrays of these dimensions; terms that do not depend on the
        query points are added to ``base`` ``(K,)`` in place."""
        raise NotImplementedError

    def add_joint_terms(self, total: np.ndarray, f: Any, arrays: Any) -> np.ndarray:
        """``total`` plus the ``(C, K)`` log kernel values of these dimensions."""
        raise NotImplementedError


class _TruncatedNormalKind(KernelKind):
    """Numeric kinds: mixtures of truncated normals; subclasses say how a point is scored."""

    def log_kernels(self, f: Any, mu: np.ndarray, sigma: np.ndarray, logz: np.ndarray) -> np.ndarray:
        """``(B, C, K)`` log kernel values of the points ``f`` under components ``(B, K)``."""
        raise NotImplementedError

    def doubled(self, f: Any) -> Any:
        """``f`` stacked twice along the column axis (two mixtures scored in one batch)."""
        raise NotImplementedError

    def log_pdf(self, f: Any, block: Components) -> np.ndarray:
        assert block.logw is not None
        kern = self.log_kernels(f, block.mu, block.sigma, block.logz)
        return mx.mixture_log_pdf(kern, block.logw)

    def log_pdf_ratio(self, f: Any, block: Components, other: Components) -> np.ndarray:
        # both mixtures stacked into one batch: half the array passes
        assert block.logw is not None and other.logw is not None
        K = max(block.mu.shape[1], other.mu.shape[1])
        mu = np.vstack([_pad(block.mu, K, 0.0), _pad(other.mu, K, 0.0)])
        sg = np.vstack([_pad(block.sigma, K, 1.0), _pad(other.sigma, K, 1.0)])
        lz = np.vstack([_pad(block.logz, K, 0.0), _pad(other.logz, K, 0.0)])
        lw = np.vstack([_pad(block.logw, K, -np.inf), _pad(other.logw, K, -np.inf)])
        lp = mx.mixture_log_pdf(self.log_kernels(self.doubled(f), mu, sg, lz), lw)
        n = block.mu.shape[0]
        return lp[:n] - lp[n:]


class _QuadraticForm(NamedTuple):
    """Continuous dimensions of a joint estimator in standardised coordinates
    ``x' = (x - prior_mu) / prior_sigma``: ``sum_d -(x'_d - mu'_dk)^2 / (2 s'_dk^2)`` is
    ``-1/2 x'^2 @ a + x' @ b`` plus a per-component constant (kept in the base term), with
    ``a = 1/s'^2`` and ``b = mu'/s'^2`` ``(d, K)``."""

    a: np.ndarray
    b: np.ndarray

    def join(self, other: "_QuadraticForm") -> "_QuadraticForm":
        return _QuadraticForm(np.concatenate([self.a, other.a], axis=-1), np.concatenate([self.b, other.b], axis=-1))


class ContinuousKernel(_TruncatedNormalKind):
    """Truncated-normal density in internal coordinates (bounded or normal continuous kinds)."""

    def accepts(self, dist: Distribution) -> bool:
        return not dist.is_categorical and not dist.is_int and not dist.is_quantized

    def features(self, table: "ParamTable", cols: np.ndarray, V: np.ndarray) -> np.ndarray:
        return table.internal(V.T, cols).T

    def doubled(self, f: np.ndarray) -> np.ndarray:
        return np.vstack([f, f])

    def log_kernels(self, f: np.ndarray, mu: np.ndarray, sigma: np.ndarray, logz: np.ndarray) -> np.ndarray:
        return mx.log_kernel_density(f, mu, sigma, logz)

    def joint_features(self, table: "ParamTable", cols: np.ndarray, V: np.ndarray) -> np.ndarray:
        x = table.internal(V.T, cols)
        return (x - table.prior_mu[cols]) / table.prior_sigma[cols]  # (C, d)

    def joint_arrays(self, table: "ParamTable", cols: np.ndarray, block: Components,
                     base: np.ndarray) -> _QuadraticForm:
        cen = table.prior_mu[cols][:, None]
        sc = table.prior_sigma[cols][:, None]
        m = (block.mu - cen) / sc
        s = block.sigma / sc
        A = 1.0 / (s * s)
        base += (-0.5 * m * m * A - np.log(s) - block.logz).sum(axis=0)
        base -= cols.size * mx._LOG_SQRT_2PI + float(np.log(sc).sum())
        return _QuadraticForm(A, m * A)

    def add_joint_terms(self, total: np.ndarray, f: np.ndarray, arrays: _QuadraticForm) -> np.ndarray:
        return (f @ arrays.b) - 0.5 * ((f * f) @ arrays.a) + total


class _CellKernels(NamedTuple):
    """Quantized dimensions of a joint estimator: the components themselves ``(d, K)``."""

    mu: np.ndarray
    sigma: np.ndarray
    logz: np.ndarray

    def join(self, other: "_CellKernels") -> "_CellKernels":
        return _CellKernels(*(np.concatenate([a, b], axis=-1) for a, b in zip(self, other, strict=True)))


class QuantizedKernel(_TruncatedNormalKind):
    """Truncated normals scored by the mass of each value's quantization cell (quantized and
    integer kinds)."""

    def accepts(self, dist: Distribution) -> bool:
        return not dist.is_categorical and (dist.is_int or dist.is_quantized)

    def features(self, table: "ParamTable", cols: np.ndarray, V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return table.cells(V, cols)

    def doubled(self, f: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        a, b = f
        return np.vstack([a, a]), np.vstack([b, b])

    def log_kernels(self, f: tuple[np.ndarray, np.ndarray], mu: np.ndarray, sigma: np.ndarray,
                    logz: np.ndarray) -> np.ndarray:
        return mx.log_kernel_mass(f[0], f[1], mu, sigma, logz)

    def joint_features(self, table: "ParamTable", cols: np.ndarray, V: np.ndarray) -> list:
        # per dimension: the distinct values' cells and each point's index among them
        cells = []
        for j in range(cols.size):
            u, inv = mx.unique_inverse(V[j])
            a, b = table.cells(u[None, :], cols[j:j + 1])
            cells.append((a[0], b[0], inv))
        return cells

    def joint_arrays(self, table: "ParamTable", cols: np.ndarray, block: Components,
                     base: np.ndarray) -> _CellKernels:
        return _CellKernels(block.mu, block.sigma, block.logz)

    def add_joint_terms(self, total: np.ndarray, f: list, arrays: _CellKernels) -> np.ndarray:
        return total + mx.sum_log_cell_mass(f, arrays.mu, arrays.sigma, arrays.logz)


class _OptionLogProbs(NamedTuple):
    """Categorical dimensions of a joint estimator: ``log p`` of each option under each
    component ``(d, K, M)``."""

    logp: np.ndarray

    def join(self, other: "_OptionLogProbs") -> "_OptionLogProbs":
        return _OptionLogProbs(np.concatenate([self.logp, other.logp], axis=-2))


class CategoricalKernel(KernelKind):
    """Option probabilities: ``(len(cols), M)`` for independent columns, ``(d, K, M)`` per
    component for the joint estimator."""

    numeric = False

    def accepts(self, dist: Distribution) -> bool:
        return dist.is_categorical

    def features(self, table: "ParamTable", cols: np.ndarray, V: np.ndarray) -> np.ndarray:
        return V.astype(np.int64)

    def log_pdf(self, f: np.ndarray, block: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(np.take_along_axis(block, f, axis=1))

    def log_pdf_ratio(self, f: np.ndarray, block: np.ndarray, other: np.ndarray) -> np.ndarray:
        return np.log(np.take_along_axis(block, f, axis=1)) - np.log(np.take_along_axis(other, f, axis=1))

    joint_features = features

    def joint_arrays(self, table: "ParamTable", cols: np.ndarray, block: np.ndarray,
                     base: np.ndarray) -> _OptionLogProbs:
        with np.errstate(divide="ignore"):
            return _OptionLogProbs(np.log(block))

    def add_joint_terms(self, total: np.ndarray, f: np.ndarray, arrays: _OptionLogProbs) -> np.ndarray:
        g = arrays.logp[np.arange(f.shape[0])[:, None], :, f]  # (d, C, K)
        return total + g.sum(axis=0)


CONTINUOUS = ContinuousKernel()
QUANTIZED = QuantizedKernel()
CATEGORICAL = CategoricalKernel()
#: every kernel kind, in evaluation order (numeric kinds first: they share the sampled components)
KERNEL_KINDS: tuple[KernelKind, ...] = (CONTINUOUS, QUANTIZED, CATEGORICAL)


def _pad(a: np.ndarray, K: int, fill: float) -> np.ndarray:
    if a.shape[1] == K:
        return a
    return np.concatenate([a, np.full((a.shape[0], K - a.shape[1]), fill)], axis=1)


# ============================================================================ column table
class KindGroup(NamedTuple):
    """The columns of one kernel kind within a :class:`ColumnGroup`."""

    kind: KernelKind
    rows: np.ndarray  # rows of the estimator's numeric components or categorical tables
    where: np.ndarray  # positions among the group's columns
    cols: np.ndarray  # space columns


class ColumnGroup(NamedTuple):
    """Constants of a set of columns an estimator models (cached per column set)."""

    cols: np.ndarray
    num: np.ndarray  # positions of numeric columns (rows of the numeric components)
    cat: np.ndarray  # positions of categorical columns
    kinds: tuple[KindGroup, ...]  # the kinds present, in KERNEL_KINDS order
    prior_mu: np.ndarray  # numeric columns' prior component
    prior_sigma: np.ndarray
    low: np.ndarray  # numeric columns' internal bounds, and as column vectors
    high: np.ndarray
    L: np.ndarray
    H: np.ndarray
    cat_prior: np.ndarray  # categorical columns' prior probabilities (padded to max_options)
    nopt_prior: np.ndarray  # n_options * prior probability


class ParamTable:
    """Per-column constants of a compiled space, as arrays (built once per space)."""

    def __init__(self, space: Any) -> None:
        P = space.n_params
        self.n_params = P
        self.kernel = np.zeros(P, dtype=np.int64)  # index into KERNEL_KINDS
        self.is_cat = np.zeros(P, dtype=bool)
        self.is_int = np.zeros(P, dtype=bool)
        self.is_log = np.zeros(P, dtype=bool)
        self.on_grid = np.zeros(P, dtype=bool)  # values rounded to multiples of q (quantized, integer)
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
        self._groups: dict[bytes, ColumnGroup] = {}
        probs: list[np.ndarray | None] = []
        for p in space.params:
            j, d = p.index, p.dist
            self.kernel[j] = next(i for i, k in enumerate(KERNEL_KINDS) if k.accepts(d))
            if d.is_categorical:
                self.is_cat[j] = True
                self.n_options[j] = d.n_options
                probs.append(np.asarray(d.probs, dtype=float))
                continue
            probs.append(None)
            self.is_log[j] = d.is_log
            if d.is_int:
                self.is_int[j] = True
                self.on_grid[j] = True
                lo, top = d.value_bounds
                self.low[j], self.high[j] = lo - 0.5, top + 0.5
                self.ext_low[j], self.ext_high[j] = lo, top
            elif d.is_quantized:
                self.q[j] = d.q
                self.on_grid[j] = True
            if d.is_bounded and not d.is_int:
                self.low[j], self.high[j] = d.low, d.high
                if d.is_quantized:
                    lo, hi = d.value_bounds
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

    def group(self, cols: np.ndarray) -> ColumnGroup:
        """The :class:`ColumnGroup` of the columns ``cols`` (cached)."""
        key = cols.tobytes()
        g = self._groups.get(key)
        if g is None:
            g = self._groups[key] = self._make_group(cols)
        return g

    def _make_group(self, cols: np.ndarray) -> ColumnGroup:
        cat = self.is_cat[cols]
        num = np.flatnonzero(~cat)
        catpos = np.flatnonzero(cat)
        nc, cc = cols[num], cols[catpos]
        kinds = []
        for i, kind in enumerate(KERNEL_KINDS):
            pos, block = (num, nc) if kind.numeric else (catpos, cc)
            rows = np.flatnonzero(self.kernel[block] == i)
            if rows.size:
                kinds.append(KindGroup(kind, rows, pos[rows], block[rows]))
        return ColumnGroup(
            cols=cols, num=num, cat=catpos, kinds=tuple(kinds),
            prior_mu=self.prior_mu[nc], prior_sigma=self.prior_sigma[nc], low=self.low[nc], high=self.high[nc],
            L=self.low[nc][:, None], H=self.high[nc][:, None],
            cat_prior=self.cat_prior[cc], nopt_prior=self.n_options[cc][:, None] * self.cat_prior[cc])

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
        qz = self.on_grid[cols]
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


_TABLES: "weakref.WeakKeyDictionary[Any, ParamTable]" = weakref.WeakKeyDictionary()


def param_table(space: Any) -> ParamTable:
    """The (cached) :class:`ParamTable` of a compiled space."""
    t = _TABLES.get(space)
    if t is None:
        t = _TABLES[space] = ParamTable(space)
    return t
