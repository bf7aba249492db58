"""``hyperopt.ipy``: ``IPythonTrials`` (evaluation on ipyparallel engines) is not supported.

Constructing ``IPythonTrials`` raises a NotImplementedError naming the alternative: start
``hpo-mongo-worker`` on the engines' machines (or as the engines' command) and use MongoTrials.
Importing the module does not print hyperopt's "not as complete" warning.
"""
from __future__ import annotations

from typing import Any

__all__ = ["IPythonTrials", "LostEngineError"]


class LostEngineError(RuntimeError):
    """An IPython engine disappeared during computation (hyperopt's name)."""


class IPythonTrials:
    """Not supported; see the module docstring."""

    def __init__(self, client: Any = None, job_error_reaction: str = "raise", save_ipy_metadata: bool = True):
        raise NotImplementedError(
            "IPythonTrials (ipyparallel engines) is not supported by hpo_mongo: run hpo-mongo-worker "
            "processes where the engines run (they can be ipyparallel's engine command) and pass "
            "MongoTrials to fmin")
