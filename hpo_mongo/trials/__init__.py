"""Trial stores: one interface (``base``), the document schema, in-memory and Mongo backends."""
from .base import BaseTrials
from .documents import *  # noqa: F401,F403 - the state constants live in documents
from .memory import Trials, trials_from_docs

__all__ = ["BaseTrials", "Trials", "trials_from_docs"]
