"""Search spaces: the ``hp`` DSL, its compiled flat table, sampling and evaluation."""
from . import hp
from .compile import CompiledSpace, ParamSpec, compile_space
from .evaluate import sample, space_eval
from .nodes import Apply, Choice, Expr, Param, scope

__all__ = ["hp", "CompiledSpace", "ParamSpec", "compile_space", "sample", "space_eval",
           "Apply", "Choice", "Expr", "Param", "scope"]
