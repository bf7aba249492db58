"""``hyperopt.base`` compatibility: the names user code imports from it.

``from hpo_mongo.base import Trials, Domain, STATUS_OK, JOB_STATE_DONE`` works as with hyperopt;
the implementations live in :mod:`hpo_mongo.trials` and :mod:`hpo_mongo.domain`. The misc
helpers (``miscs_to_idxs_vals``, ``miscs_update_idxs_vals``, ``spec_from_misc``) and ``SONify``
follow hyperopt's formats: ``misc.idxs``/``misc.vals`` hold ``[tid]``/``[value]`` or ``[]``.
"""
from __future__ import annotations

import datetime
from typing import Any, Iterable, Mapping

import numpy as np
from bson import ObjectId

from .domain import Domain
from .driver import Ctrl, validate_loss_threshold, validate_timeout
from .exceptions import AllTrialsFailed, DuplicateLabel, InvalidLoss, InvalidResultStatus, InvalidTrial  # noqa: F401
from .trials.documents import (JOB_STATE_CANCEL, JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_NEW,
                               JOB_STATE_RUNNING, JOB_STATES, JOB_VALID_STATES, STATUS_FAIL,
                               STATUS_NEW, STATUS_OK, STATUS_RUNNING, STATUS_STRINGS,
                               STATUS_SUSPENDED, TRIAL_KEYS, TRIAL_MISC_KEYS)
from .trials.memory import Trials, trials_from_docs
from .space import space_eval

__all__ = [
    "Domain", "Ctrl", "Trials", "trials_from_docs", "space_eval", "SONify", "miscs_to_idxs_vals",
    "miscs_update_idxs_vals", "spec_from_misc", "validate_timeout", "validate_loss_threshold",
    "InvalidTrial", "AllTrialsFailed", "DuplicateLabel", "InvalidLoss", "InvalidResultStatus",
    "JOB_STATE_NEW", "JOB_STATE_RUNNING", "JOB_STATE_DONE", "JOB_STATE_ERROR", "JOB_STATE_CANCEL",
    "JOB_STATES", "JOB_VALID_STATES", "STATUS_NEW", "STATUS_RUNNING", "STATUS_SUSPENDED", "STATUS_OK",
    "STATUS_FAIL", "STATUS_STRINGS", "TRIAL_KEYS", "TRIAL_MISC_KEYS",
]


def SONify(arg: Any, memo: dict | None = None) -> Any:  # noqa: N802 - hyperopt's name
    """``arg`` with numpy values made BSON-encodable, as hyperopt: numpy scalars → int/float/bool,
    arrays → (nested) lists, 0-d arrays → scalars; lists stay lists and tuples tuples; anything
    else that BSON cannot hold raises ``TypeError("SONify", arg)``."""
    if isinstance(arg, (ObjectId, datetime.datetime, str, bytes, bool, int, float, type(None))):
        return arg
    if isinstance(arg, np.bool_):
        return bool(arg)
    if isinstance(arg, np.floating):
        return float(arg)
    if isinstance(arg, np.integer):
        return int(arg)
    if isinstance(arg, (list, tuple)):
        return type(arg)(SONify(a) for a in arg)
    if isinstance(arg, dict):
        return {SONify(k): SONify(v) for k, v in arg.items()}
    if isinstance(arg, np.ndarray):
        return SONify(arg.item()) if arg.ndim == 0 else [SONify(a) for a in arg]
    raise TypeError("SONify", arg)


def miscs_update_idxs_vals(miscs: list[dict], idxs: Mapping[str, list], vals: Mapping[str, list],
                           assert_all_vals_used: bool = True, idxs_map: Mapping | None = None) -> list[dict]:
    """Write the ``idxs``/``vals`` format ({label: [tids]}, {label: [values]}) into each misc's
    ``idxs``/``vals`` (``[tid]``/``[value]`` where the label has a value for that tid, else ``[]``)."""
    if set(idxs) != set(vals):
        raise ValueError(f"idxs and vals have different labels: {sorted(idxs)} vs {sorted(vals)}")
    idxs_map = idxs_map or {}
    by_tid = {m["tid"]: m for m in miscs}
    for m in miscs:
        m["idxs"] = {k: [] for k in idxs}
        m["vals"] = {k: [] for k in idxs}
    for key in idxs:
        if len(idxs[key]) != len(vals[key]):
            raise ValueError(f"label {key!r}: {len(idxs[key])} tids but {len(vals[key])} values")
        for tid, val in zip(idxs[key], vals[key], strict=True):
            tid = idxs_map.get(tid, tid)
            if tid in by_tid or assert_all_vals_used:
                by_tid[tid]["idxs"][key] = [tid]
                by_tid[tid]["vals"][key] = [val]
    return miscs


def miscs_to_idxs_vals(miscs: Iterable[dict], keys: Iterable[str] | None = None) -> tuple[dict, dict]:
    """The ``(idxs, vals)`` format of a list of miscs: {label: [tids]}, {label: [values]}."""
    miscs = list(miscs)
    if keys is None:
        if not miscs:
            raise ValueError("cannot infer keys from empty miscs")
        keys = list(miscs[0]["idxs"])
    idxs: dict[str, list] = {k: [] for k in keys}
    vals: dict[str, list] = {k: [] for k in keys}
    for misc in miscs:
        for key in idxs:
            t_idxs, t_vals = misc["idxs"][key], misc["vals"][key]
            if len(t_idxs) != len(t_vals) or t_idxs not in ([], [misc["tid"]]):
                raise ValueError(f"trial {misc['tid']}: malformed misc for label {key!r}")
            idxs[key].extend(t_idxs)
            vals[key].extend(t_vals)
    return idxs, vals


def spec_from_misc(misc: Mapping[str, Any]) -> dict[str, Any]:
    """``{label: value}`` of one trial's misc (inactive labels left out)."""
    spec = {}
    for key, v in misc["vals"].items():
        if len(v) > 1:
            raise NotImplementedError("multiple values", (key, v))
        if v:
            spec[key] = v[0]
    return spec
