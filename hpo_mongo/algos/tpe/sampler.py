"""TPE ``suggest``: start-up, good/bad split, constant liar, EI candidates and argmax l/g.

Only this module knows trials: it reads the cached :func:`hpo_mongo.algos.base.history`
arrays, splits them, hands plain arrays to :mod:`.parzen` and turns the winning row into a
document.

Which trials feed the model
    * DONE trials with status ``ok`` and a numeric loss are *finished*: they are split into the
      good group (the ``n_below`` lowest losses) and the bad group. Ties keep tid order.
    * Failed trials (status ``fail``, no usable loss) and ERROR / CANCEL trials are left out.
    * Pending trials (NEW / RUNNING, e.g. suggested for other workers): with
      ``constant_liar=True`` (default) they join the bad group as if they had the worst observed
      loss, so the next suggestions move away from them; each pending point weighs in g(x) what
      one good trial weighs in l(x) (a plain weight of 1 among ~n bad trials would be drowned
      at large n, which is how hyperopt's suggestions collapse). In the joint model a pending
      point's kernel in g(x) is also at least ``liar_bandwidth`` (default 3) times the median
      bandwidth of the good trials' kernels in l(x): with the plain neighbour-gap rule it was as
      narrow as the dense bad group's kernels and only kept suggestions off the exact pending
      location, so with 64 candidates consecutive suggestions bunched around the mode of l(x).
      With ``constant_liar=False`` they are ignored.

Model
    ``multivariate=True`` (default, chosen by the benchmark): parameters active under the same
    condition (e.g. all unconditional ones) share one joint Parzen estimator and the EI argmax
    is taken jointly; a parameter alone under its condition is modelled univariately.
    ``multivariate=False``: every parameter independently, as hyperopt.
    * ``n_startup_jobs`` counts finished trials only; until that many exist suggestions are
      drawn from the prior (``rand.suggest``).
    * ``n_EI_candidates`` (default 64; hyperopt and Optuna draw 24) candidates are drawn from
      l(x) and the one maximising l(x)/g(x) is kept; 64 ranked best over 30 benchmark seeds
      (bench/RESULTS.md) and costs little, since l and g are scored in one vectorised pass.
"""
from __future__ import annotations

import math
import weakref
from typing import Any, Callable, Sequence

import numpy as np

from ...trials.base import BaseTrials

from .. import rand
from ..base import docs_from_rows, history
from .parzen import JointParzen, ParzenParameters, UnivariateParzen, param_table
from .parzen import default_weights as _default_weights


# --------------------------------------------------------------------------- defaults
DEFAULT_PRIOR_WEIGHT = 1.0
DEFAULT_N_STARTUP_JOBS = 10  # hyperopt: 20; the benchmark favours 10 (as Optuna)
DEFAULT_N_EI_CANDIDATES = 64  # hyperopt, Optuna: 24; chosen by the benchmark (bench/RESULTS.md)
DEFAULT_GAMMA = 0.25
DEFAULT_LF = 25
DEFAULT_MAX_COMPONENTS = 128
DEFAULT_MULTIVARIATE = True  # chosen by the benchmark (bench/RESULTS.md)
DEFAULT_CONSTANT_LIAR = True
DEFAULT_LIAR_BANDWIDTH = 3.0  # chosen by the 8-pending benchmark over 50 seeds (bench/RESULTS.md)


def default_gamma(n: int, gamma: float | None = None) -> int:
    """Size of the good group among ``n`` finished trials.

    * ``gamma=None`` (the default of :func:`suggest`): ``min(ceil(0.1 n), 25)``, chosen by the
      benchmark (bench/RESULTS.md) over hyperopt's square-root rule;
    * a number: hyperopt's rule ``min(ceil(gamma * sqrt(n)), 25)``, so
      ``partial(tpe.suggest, gamma=0.25)`` behaves as in hyperopt.

    At least one trial is good.
    """
    if gamma is None:
        k = math.ceil(0.1 * n)
    else:
        k = math.ceil(gamma * math.sqrt(n))
    return int(max(1, min(k, 25)))


def default_weights(n: int, lf: int = DEFAULT_LF) -> np.ndarray:
    """Linear-forgetting weights of ``n`` observations in age order (newest ``lf`` at 1)."""
    return _default_weights(n, lf)


def _internal_history(trials: Any, space: Any, h: Any, table: Any) -> np.ndarray:
    """``h.X`` in internal coordinates, extended row by row and kept in ``trials.algo_cache``
    (which is dropped when trials are pickled)."""
    owner = trials.algo_cache if isinstance(trials, BaseTrials) else None
    cache = owner.get("tpe") if isinstance(owner, dict) else None
    n = len(h.tid)
    if (cache is None or cache["space"] is not space or len(cache["tid"]) > n
            or not np.array_equal(cache["tid"], h.tid[:len(cache["tid"])])):
        cache = {"space": space, "tid": h.tid[:0], "Z": np.empty((0, space.n_params))}
    k = len(cache["tid"])
    if k < n:
        cache["Z"] = np.vstack([cache["Z"], table.internal_rows(h.X[k:])])
        cache["tid"] = h.tid.copy()
    if isinstance(owner, dict):
        owner["tpe"] = cache
    return cache["Z"]


_GROUPS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _groups(space, multivariate: bool) -> tuple[list[int], list[list[int]]]:
    """Columns modelled alone, and joint groups (parameters sharing one activity condition);
    cached per compiled space."""
    per = _GROUPS.get(space)
    if per is None:
        per = _GROUPS[space] = {}
    if multivariate not in per:
        per[multivariate] = _make_groups(space, multivariate)
    return per[multivariate]


def _make_groups(space, multivariate: bool) -> tuple[list[int], list[list[int]]]:
    if not multivariate:
        return [p.index for p in space.params], []
    by_cond: dict = {}
    for p in space.params:
        key = () if p.always_active else p.paths
        by_cond.setdefault(key, []).append(p.index)
    alone, joint = [], []
    for cols in by_cond.values():
        (joint.append(cols) if len(cols) > 1 else alone.extend(cols))
    return sorted(alone), joint


def suggest(new_ids: Sequence[int], domain: Any, trials: Any, seed: int,
            prior_weight: float = DEFAULT_PRIOR_WEIGHT,
            n_startup_jobs: int = DEFAULT_N_STARTUP_JOBS,
            n_EI_candidates: int = DEFAULT_N_EI_CANDIDATES,
            gamma: float | Callable[[int], int] | None = None,
            verbose: bool = True,
            *, linear_forgetting: int = DEFAULT_LF,
            constant_liar: bool = DEFAULT_CONSTANT_LIAR,
            multivariate: bool = DEFAULT_MULTIVARIATE,
            max_components: int = DEFAULT_MAX_COMPONENTS,
            cat_prior_per_option: bool = True,
            liar_weight: float = 1.0,
            liar_bandwidth: float = DEFAULT_LIAR_BANDWIDTH) -> list[dict]:
    """Tree-structured Parzen Estimator suggestions, one document per id in ``new_ids``.

    Same positional options as ``hyperopt.tpe.suggest``. ``gamma``: ``None`` (default) uses
    ``min(ceil(0.1 n), 25)`` good trials; a number uses hyperopt's ``ceil(gamma·sqrt(n))``
    (capped at 25); a function ``n_finished -> n_good`` is called as is.
    ``linear_forgetting``: observations older than the newest this many are down-weighted.
    ``constant_liar``: pending trials join the bad group (see the module docstring);
    ``liar_weight``: how many good trials' weight each pending point carries in g(x);
    ``liar_bandwidth``: joint model only, a pending point's kernel in g(x) is at least this
    times the median bandwidth of the good trials' kernels in l(x) (0: plain gap rule).
    ``multivariate``: one joint Parzen estimator per group of parameters active together.
    ``max_components``: cap on the mixture size (merged grid cells) whatever the history.
    ``cat_prior_per_option``: hyperopt's ``prior_weight`` pseudo-count per option (True) or
    one ``prior_weight`` spread over the options like Optuna (False). Several ids in one call are suggested one after the other, each
    treating the previous ones as pending.
    """
    space = domain.space
    h = history(space, trials)
    ok = h.ok
    n_ok = int(ok.sum())
    if n_ok == 0 or n_ok < n_startup_jobs:
        return rand.suggest(new_ids, domain, trials, seed)
    rng = np.random.default_rng(seed)
    table = param_table(space)
    params = ParzenParameters(float(prior_weight), int(linear_forgetting), int(max_components),
                              bool(cat_prior_per_option), float(liar_weight))

    Z = _internal_history(trials, space, h, table)
    X_ok, loss = (Z, h.loss) if n_ok == len(ok) else (Z[ok], h.loss[ok])
    n_below = gamma(n_ok) if callable(gamma) else default_gamma(n_ok, gamma)
    n_below = int(min(max(n_below, 1), n_ok))
    # the n_below lowest losses, ties in tid order (= a stable argsort's first n_below)
    if n_below < n_ok:
        kth = np.partition(loss, n_below - 1)[n_below - 1]
        below = loss < kth
        need = n_below - int(np.count_nonzero(below))
        if need > 0:
            below[np.flatnonzero(loss == kth)[:need]] = True
    else:
        below = np.ones(n_ok, dtype=bool)
    X_below = X_ok[below]
    X_above = X_ok[~below]
    if constant_liar:
        pending = Z[h.pending]
    else:
        pending = np.empty((0, space.n_params))

    alone, joint = _groups(space, multivariate)
    all_active = not space.is_conditional
    alone = np.asarray(alone, dtype=np.int64)
    rows = np.empty((len(new_ids), space.n_params))
    for i in range(len(new_ids)):
        X_bad = np.vstack([X_above, pending]) if len(pending) else X_above
        liar = np.zeros(len(X_bad), dtype=bool)
        liar[len(X_above):] = True
        row = np.full(space.n_params, np.nan)
        if alone.size:
            lo = UnivariateParzen(table, alone, X_below[:, alone], params)
            hi = UnivariateParzen(table, alone, X_above[:, alone], params,
                                  liars=pending[:, alone], n_good=n_below)
            cand = lo.sample(rng, n_EI_candidates)
            score = lo.log_pdf_ratio(hi, cand)
            row[alone] = cand[np.arange(alone.size), np.argmax(score, axis=1)]
        for cols in joint:
            c = np.asarray(cols, dtype=np.int64)
            lo = JointParzen(table, c, X_below[:, c], params, rng)
            ks = None
            if len(pending) and lo._num.size and lo._sigma.shape[1] > 1:
                ks = liar_bandwidth * np.median(lo._sigma[:, :-1], axis=1)
            hi = JointParzen(table, c, X_bad[:, c], params, rng, keep=liar, n_good=n_below,
                             keep_sigma=ks)
            cand = lo.sample(rng, n_EI_candidates)
            score = lo.log_pdf_ratio(hi, cand)
            row[c] = cand[:, int(np.argmax(score))]
        if not all_active:
            row[~space.active_mask(row[None, :])[0]] = np.nan
        rows[i] = row
        if constant_liar and i + 1 < len(new_ids):
            pending = np.vstack([pending, table.internal_rows(row[None, :])])
    return docs_from_rows(new_ids, space, rows, trials)
