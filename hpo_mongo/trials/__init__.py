"""Trial stores: one interface (``base``), the document schema, in-memory, queue-backed and Mongo backends.

``Trials``, ``trials_from_docs`` and ``BaseTrials`` are imported on first use, so that the schema
modules (``documents``, ``queue``, ``leases``) can be imported alone, without the stores.
"""
from typing import TYPE_CHECKING, Any

from .documents import *  # noqa: F401,F403 - the state constants live in documents

if TYPE_CHECKING:  # imported lazily by __getattr__ at run time
    from .base import BaseTrials
    from .memory import Trials, trials_from_docs

__all__ = ["BaseTrials", "Trials", "trials_from_docs"]


def __getattr__(name: str) -> Any:
    if name in ("Trials", "trials_from_docs"):
        from . import memory
        return getattr(memory, name)
    if name == "BaseTrials":
        from .base import BaseTrials
        return BaseTrials
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
