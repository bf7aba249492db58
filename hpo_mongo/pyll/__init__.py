"""hyperopt's ``pyll`` import paths, backed by hpo_mongo's plain space tree (no graph machinery)."""
from ..space.nodes import Apply, scope
from . import base, stochastic  # noqa: F401
from .base import as_apply, Literal, rec_eval  # noqa: F401

__all__ = ["scope", "Apply", "as_apply", "Literal", "rec_eval", "base", "stochastic"]
