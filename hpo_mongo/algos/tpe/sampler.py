"""TPE ``suggest``: start-up, good/bad split, constant liar, EI candidates and argmax l/g.

Only this module knows trials: it reads the cached :func:`hpo_mongo.algos.base.history`
arrays and turns the winning row into a document. :func:`suggest` runs four steps, each a
function of its own:

* :func:`split`: which history rows are good, bad and pending (the one place deciding which
  trials feed the model, and how);
* :func:`build`: the estimators l(x) (good) and g(x) (bad plus liars) of one block of columns
  (:mod:`.parzen`);
* sample: ``n_EI_candidates`` draws from l(x);
* :func:`score`: the candidate maximising l(x)/g(x).

Which trials feed the model
    * DONE trials with status ``ok`` and a numeric loss are *finished*: they are split into the
      good group (the lowest losses, as many as ``gamma`` says) and the bad group. Ties keep
      tid order.
    * Failed trials (status ``fail``, no usable loss) and ERROR / CANCEL trials are left out.
    * Pending trials (NEW / RUNNING, e.g. suggested for other workers): with
      ``constant_liar=True`` (default) they join the bad group as if they had the worst observed
      loss, so the next suggestions move away from them; each pending point weighs in g(x) what
      one good trial weighs in l(x) (a plain weight of 1 among ~n bad trials would be drowned
      at large n, which is how hyperopt's suggestions collapse). In the joint model a pending
      point's kernel in g(x) is also at least ``liar_bandwidth`` (default 3) times the median
      bandwidth of the good trials' kernels in l(x): with the neighbour-gap rule alone it would
      be as narrow as the dense bad group's kernels and only keep suggestions off the exact
      pending location, so with 64 candidates consecutive suggestions would bunch around the
      mode of l(x). With ``constant_liar=False`` they are ignored.

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

import weakref
from typing import Any, NamedTuple, Sequence

import numpy as np

from ...trials.base import BaseTrials

from .. import rand
from ..base import History, docs_from_rows, history
from .kernels import ParamTable, param_table
from .options import (DEFAULT_CONSTANT_LIAR, DEFAULT_LF, DEFAULT_LIAR_BANDWIDTH, DEFAULT_MAX_COMPONENTS,
                      DEFAULT_MULTIVARIATE, DEFAULT_N_EI_CANDIDATES, DEFAULT_N_STARTUP_JOBS, DEFAULT_PRIOR_WEIGHT,
                      Gamma, TPEOptions)
from .parzen import JointParzen, ParzenParameters, UnivariateParzen

Estimator = UnivariateParzen | JointParzen


# --------------------------------------------------------------------------- split
class Split(NamedTuple):
    """Rows of a :class:`~hpo_mongo.algos.base.History` (ascending, so in tid order) by role."""

    below: np.ndarray  # the good group: the n_good lowest losses
    above: np.ndarray  # the other finished trials
    pending: np.ndarray  # pending trials fed to g(x) as liars (none without the constant liar)

    @property
    def n_finished(self) -> int:
        return int(self.below.size + self.above.size)


def split(h: History, options: TPEOptions) -> Split | None:
    """Split the history's trials into the good, bad and pending groups; None while fewer
    than ``options.n_startup_jobs`` (and at least one) trials have finished.

    This is the one place deciding which trials feed the model and in which role. Finished
    trials (``h.ok``: DONE, status ok, a loss) are ranked by loss; the ``options.n_good(n)``
    lowest are good, ties broken in tid order (the first rows of a stable sort). Failed,
    errored and cancelled trials are left out; pending (NEW / RUNNING) ones become liars when
    ``options.constant_liar``.
    """
    finished = np.flatnonzero(h.ok)
    n_ok = finished.size
    if n_ok == 0 or n_ok < options.n_startup_jobs:
        return None
    loss = h.loss[finished]
    n_below = options.n_good(n_ok)
    if n_below < n_ok:
        kth = np.partition(loss, n_below - 1)[n_below - 1]
        below = loss < kth
        need = n_below - int(np.count_nonzero(below))
        if need > 0:
            below[np.flatnonzero(loss == kth)[:need]] = True
    else:
        below = np.ones(n_ok, dtype=bool)
    pending = np.flatnonzero(h.pending) if options.constant_liar else np.empty(0, dtype=np.int64)
    return Split(finished[below], finished[~below], pending)


# --------------------------------------------------------------------------- build
class Observations(NamedTuple):
    """The model's data in internal coordinates (:meth:`ParamTable.internal_rows`), full rows."""

    below: np.ndarray
    above: np.ndarray
    pending: np.ndarray  # grows by one row per suggestion when several ids are asked at once

    @property
    def n_good(self) -> int:
        return len(self.below)


class Block(NamedTuple):
    """Columns modelled together: one joint estimator, or independent ones per column."""

    cols: np.ndarray
    joint: bool


def build(table: ParamTable, block: Block, obs: Observations, options: TPEOptions,
          params: ParzenParameters, rng: np.random.Generator) -> tuple[Estimator, Estimator]:
    """l(x) from the good rows and g(x) from the bad rows plus the liars, over ``block``.

    Each liar weighs in g(x) what one good trial weighs in l(x) (times ``liar_weight``); in a
    joint estimator its kernels are at least ``liar_bandwidth`` times the median bandwidth
    of l(x)'s observation kernels.
    """
    c = block.cols
    pending = obs.pending[:, c]
    if not block.joint:
        lo = UnivariateParzen(table, c, obs.below[:, c], params)
        hi = UnivariateParzen(table, c, obs.above[:, c], params, liars=pending, n_good=obs.n_good)
        return lo, hi
    jlo = JointParzen(table, c, obs.below[:, c], params, rng)
    liar_sigma = None
    if len(pending):
        median = jlo.median_bandwidth()
        if median is not None:
            liar_sigma = options.liar_bandwidth * median
    jhi = JointParzen(table, c, obs.above[:, c], params, rng, liars=pending, n_good=obs.n_good,
                      liar_sigma=liar_sigma)
    return jlo, jhi


# --------------------------------------------------------------------------- score
def score(lo: Estimator, hi: Estimator, candidates: np.ndarray) -> np.ndarray:
    """The candidate values ``(len(cols),)`` maximising ``log l(x) - log g(x)``: per column for
    independent estimators, one candidate for a joint one."""
    ratio = lo.log_pdf_ratio(hi, candidates)  # type: ignore[arg-type]
    if ratio.ndim == 1:
        return candidates[:, int(np.argmax(ratio))]
    return candidates[np.arange(candidates.shape[0]), np.argmax(ratio, axis=1)]


# --------------------------------------------------------------------------- history helpers
def _internal_history(trials: Any, space: Any, h: History, table: ParamTable) -> np.ndarray:
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


_BLOCKS: "weakref.WeakKeyDictionary[Any, dict[bool, list[Block]]]" = weakref.WeakKeyDictionary()


def _blocks(space: Any, multivariate: bool) -> list[Block]:
    """The model's blocks, cached per compiled space: parameters active under the same
    condition form a joint block when ``multivariate`` and there are several; the others
    are modelled independently, together in one (first) block."""
    per = _BLOCKS.get(space)
    if per is None:
        per = _BLOCKS[space] = {}
    if multivariate not in per:
        per[multivariate] = _make_blocks(space, multivariate)
    return per[multivariate]


def _make_blocks(space: Any, multivariate: bool) -> list[Block]:
    if not multivariate:
        return [Block(np.asarray([p.index for p in space.params], dtype=np.int64), False)]
    by_cond: dict = {}
    for p in space.params:
        key = () if p.always_active else p.paths
        by_cond.setdefault(key, []).append(p.index)
    alone: list[int] = []
    joint: list[list[int]] = []
    for cols in by_cond.values():
        (joint.append(cols) if len(cols) > 1 else alone.extend(cols))
    blocks = [Block(np.asarray(sorted(alone), dtype=np.int64), False)] if alone else []
    return blocks + [Block(np.asarray(cols, dtype=np.int64), True) for cols in joint]


# --------------------------------------------------------------------------- suggest
def suggest(new_ids: Sequence[int], domain: Any, trials: Any, seed: int,
            prior_weight: float = DEFAULT_PRIOR_WEIGHT,
            n_startup_jobs: int = DEFAULT_N_STARTUP_JOBS,
            n_EI_candidates: int = DEFAULT_N_EI_CANDIDATES,
            gamma: Gamma = None,
            verbose: bool = True,
            *, linear_forgetting: int = DEFAULT_LF,
            constant_liar: bool = DEFAULT_CONSTANT_LIAR,
            multivariate: bool = DEFAULT_MULTIVARIATE,
            max_components: int = DEFAULT_MAX_COMPONENTS,
            cat_prior_per_option: bool = True,
            liar_weight: float = 1.0,
            liar_bandwidth: float = DEFAULT_LIAR_BANDWIDTH) -> list[dict]:
    """Tree-structured Parzen Estimator suggestions, one document per id in ``new_ids``.

    Same positional options as ``hyperopt.tpe.suggest`` (``verbose`` is accepted and unused).
    ``gamma``: ``None`` (default) uses ``min(ceil(0.1 n), 25)`` good trials; a number uses
    hyperopt's ``ceil(gamma·sqrt(n))`` (capped at 25); a function ``n_finished -> n_good`` is
    called as is. ``linear_forgetting``: observations older than the newest this many are
    down-weighted. ``constant_liar``: pending trials join the bad group (see the module
    docstring); ``liar_weight``: how many good trials' weight each pending point carries in
    g(x); ``liar_bandwidth``: joint model only, a pending point's kernel in g(x) is at least
    this times the median bandwidth of the good trials' kernels in l(x) (0: plain gap rule).
    ``multivariate``: one joint Parzen estimator per group of parameters active together.
    ``max_components``: cap on the mixture size (grid cells, joint subsample) whatever the
    history. ``cat_prior_per_option``: hyperopt's ``prior_weight`` pseudo-count per option
    (True) or one ``prior_weight`` spread over the options like Optuna (False). Every option
    is checked (:class:`TPEOptions`); a bad one raises ``InvalidParameterError`` naming it.
    Several ids in one call are suggested one after the other, each treating the previous
    ones as pending.
    """
    options = _options(prior_weight, n_startup_jobs, n_EI_candidates, gamma, linear_forgetting, constant_liar,
                       multivariate, max_components, cat_prior_per_option, liar_weight, liar_bandwidth)
    space = domain.space
    h = history(space, trials)
    groups = split(h, options)
    if groups is None:
        return rand.suggest(new_ids, domain, trials, seed)
    rng = np.random.default_rng(seed)
    table = param_table(space)
    params = options.parzen
    Z = _internal_history(trials, space, h, table)
    obs = Observations(Z[groups.below], Z[groups.above], Z[groups.pending])
    blocks = _blocks(space, options.multivariate)
    all_active = not space.is_conditional
    rows = np.empty((len(new_ids), space.n_params))
    for i in range(len(new_ids)):
        row = np.full(space.n_params, np.nan)
        for block in blocks:
            lo, hi = build(table, block, obs, options, params, rng)
            candidates = lo.sample(rng, options.n_EI_candidates)
            row[block.cols] = score(lo, hi, candidates)
        if not all_active:
            row[~space.active_mask(row[None, :])[0]] = np.nan
        rows[i] = row
        if options.constant_liar and i + 1 < len(new_ids):
            obs = obs._replace(pending=np.vstack([obs.pending, table.internal_rows(row[None, :])]))
    return docs_from_rows(new_ids, space, rows, trials)


_OPTIONS: dict[tuple, TPEOptions] = {}


def _options(*values: Any) -> TPEOptions:
    """The :class:`TPEOptions` of these values, checked once per distinct combination (the
    same few combinations come with every call of an optimisation run)."""
    try:
        key = values + tuple(map(type, values))
        hash(key)
    except TypeError:  # an unhashable value: checked (and refused) without caching
        return TPEOptions(*values)
    opts = _OPTIONS.get(key)
    if opts is None:
        opts = TPEOptions(*values)
        if len(_OPTIONS) >= 64:
            _OPTIONS.clear()
        _OPTIONS[key] = opts
    return opts
