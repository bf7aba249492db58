"""``hyperopt.atpe``: Adaptive TPE is not provided; ``suggest`` says to use ``tpe.suggest``.

hyperopt's ATPE picks TPE's settings each iteration with pretrained LightGBM models shipped
with hyperopt. hpo_mongo's ``tpe.suggest`` (multivariate, pending-aware) is the supported
alternative; its settings are tuned with ``functools.partial(tpe.suggest, gamma=..., ...)``.
"""
from __future__ import annotations

from typing import Any

__all__ = ["suggest"]

MESSAGE = ("hpo_mongo does not provide atpe.suggest (Adaptive TPE, which needs hyperopt's pretrained "
           "LightGBM models): use hpo_mongo.tpe.suggest instead, e.g. fmin(..., algo=tpe.suggest)")


def suggest(new_ids: Any, domain: Any, trials: Any, seed: int, *args: Any, **kwargs: Any) -> list[dict]:
    raise NotImplementedError(MESSAGE)
