"""hpo_mongo: distributed hyperparameter optimization over MongoDB, a drop-in for hyperopt.

``from hpo_mongo import fmin, tpe, rand, hp, Trials, MongoTrials, STATUS_OK, space_eval`` runs
hyperopt user code unchanged.
"""
from typing import TYPE_CHECKING, Any

from ._version import __version__
from . import anneal, atpe, base, early_stop, exceptions, grid, hp, mix, progress, rand  # noqa: F401 - hyperopt's module paths
from .domain import Domain
from . import fmin as _fmin_module  # noqa: F401 - registers hpo_mongo.fmin (hyperopt's module path)
from .driver import Ctrl, FMinIter, fmin, fmin_pass_expr_memo_ctrl, generate_trials_to_calculate, partial
from .exceptions import (AllTrialsFailed, DuplicateLabel, HpoMongoError, InvalidParameterError,
                         InvalidResultError, InvalidSpaceError, NoCurrentTrial, TrialPruned)
from . import pruners
from .reporting import report, should_prune
from .pyll.base import scope
from .space import space_eval
from .trials.parallel import ParallelTrials
from .spark import SparkTrials
from .trials.documents import (JOB_STATE_CANCEL, JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_NEW,
                               JOB_STATE_RUNNING, JOB_STATES, STATUS_FAIL, STATUS_NEW, STATUS_OK,
                               STATUS_PRUNED, STATUS_RUNNING, STATUS_STRINGS, STATUS_SUSPENDED)
from .trials.memory import Trials, trials_from_docs

if TYPE_CHECKING:
    from . import mongoexp, tpe  # noqa: F401 - imported on first use (__getattr__)
    from .mongoexp import MongoTrials

#: names imported on first use (PEP 562): TPE needs scipy and MongoTrials pymongo, which processes
#: that only evaluate trials (ParallelTrials' workers, forked trial children) never load
_LAZY = {"tpe": ("hpo_mongo.tpe", None), "mongoexp": ("hpo_mongo.mongoexp", None),
         "MongoTrials": ("hpo_mongo.mongoexp", "MongoTrials")}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'hpo_mongo' has no attribute {name!r}")
    import importlib
    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "__version__", "fmin", "hp", "space_eval", "Trials", "trials_from_docs", "Domain", "Ctrl",
    "generate_trials_to_calculate", "rand", "grid", "early_stop", "scope", "FMinIter",
    "fmin_pass_expr_memo_ctrl", "partial", "SparkTrials", "ParallelTrials", "atpe", "mix", "exceptions", "progress",
    "STATUS_OK", "STATUS_FAIL", "STATUS_NEW", "STATUS_RUNNING", "STATUS_SUSPENDED", "STATUS_STRINGS",
    "JOB_STATE_NEW", "JOB_STATE_RUNNING", "JOB_STATE_DONE", "JOB_STATE_ERROR", "JOB_STATE_CANCEL",
    "JOB_STATES", "AllTrialsFailed", "DuplicateLabel", "HpoMongoError", "InvalidParameterError",
    "InvalidResultError", "InvalidSpaceError",
    "report", "should_prune", "pruners", "TrialPruned", "NoCurrentTrial", "STATUS_PRUNED",
    "tpe", "anneal", "MongoTrials",
]
