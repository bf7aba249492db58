"""``hyperopt.fmin`` compatibility: ``from hpo_mongo.fmin import fmin, space_eval,
generate_trials_to_calculate`` works as with hyperopt. The driver lives in :mod:`hpo_mongo.driver`.

As in hyperopt, the package attribute ``hpo_mongo.fmin`` is the *function* (``hpo_mongo/__init__``
binds it after importing this module); this module is reached through ``sys.modules``.
"""
from .driver import (FMinIter, fmin, fmin_pass_expr_memo_ctrl, generate_trials_to_calculate,  # noqa: F401
                     partial)
from .space import space_eval  # noqa: F401

__all__ = ["fmin", "space_eval", "generate_trials_to_calculate", "FMinIter", "fmin_pass_expr_memo_ctrl", "partial"]
