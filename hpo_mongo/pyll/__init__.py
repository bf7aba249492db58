"""hyperopt's ``pyll`` import paths, backed by hpo_mongo's plain space tree (no graph machinery)."""
from ..space.nodes import Apply, Literal, scope
from . import base, stochastic  # noqa: F401
from .base import as_apply, clone, dfs, rec_eval, toposort  # noqa: F401

__all__ = ["scope", "Apply", "as_apply", "Literal", "rec_eval", "dfs", "toposort", "clone", "base",
           "stochastic"]
