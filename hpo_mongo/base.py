"""``hyperopt.base`` compatibility: the names user code imports from it.

``from hpo_mongo.base import Trials, Domain, STATUS_OK, JOB_STATE_DONE`` works as with hyperopt;
the implementations live in :mod:`hpo_mongo.trials` and :mod:`hpo_mongo.domain`.
"""
from .domain import Domain
from .driver import Ctrl
from .trials.documents import (JOB_STATE_CANCEL, JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_NEW,
                               JOB_STATE_RUNNING, JOB_STATES, JOB_VALID_STATES, STATUS_FAIL,
                               STATUS_NEW, STATUS_OK, STATUS_RUNNING, STATUS_STRINGS,
                               STATUS_SUSPENDED, TRIAL_KEYS, TRIAL_MISC_KEYS)
from .trials.memory import Trials, trials_from_docs
from .space import space_eval

__all__ = [
    "Domain", "Ctrl", "Trials", "trials_from_docs", "space_eval",
    "JOB_STATE_NEW", "JOB_STATE_RUNNING", "JOB_STATE_DONE", "JOB_STATE_ERROR", "JOB_STATE_CANCEL",
    "JOB_STATES", "JOB_VALID_STATES", "STATUS_NEW", "STATUS_RUNNING", "STATUS_SUSPENDED", "STATUS_OK",
    "STATUS_FAIL", "STATUS_STRINGS", "TRIAL_KEYS", "TRIAL_MISC_KEYS",
]
