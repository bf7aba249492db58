"""Read (and repair) experiments through the :class:`~hpo_mongo.trials.queue.JobQueue` protocol.

Every function takes a queue first (``hpo_mongo.trials.factory.connect_queue(url)`` opens the one
at a MongoDB URL; a :class:`~hpo_mongo.trials.memory_queue.MemoryJobQueue` works as well) and
reads the documents of docs/schema.md through it: trials, the experiment document (holding the
JSON description of the search space) and worker documents. Nothing is unpickled: choice indices
in ``misc.vals`` become option values through the experiment's ``space`` (:class:`SpaceInfo`).

The ``hpo-mongo`` CLI is a thin layer over these functions; they are public so that notebooks
and scripts can ask the same questions (see docs/inspecting.md).

The default experiment is the one whose ``exp_key`` is ``None``; it is displayed as
``(default)`` (:func:`exp_label`). The empty string is a different, ordinary key.

One job per module: :mod:`.clock` (server time), :mod:`.space_info` (decoding values),
:mod:`.experiments`, :mod:`.trials` (trial queries), :mod:`.rows` (flat rows and records),
:mod:`.liveness` (stale trials, workers, throughput, status; the rules are those of
:mod:`hpo_mongo.trials.leases`) and :mod:`.repairs` (requeue, cancel, delete: conditioned writes
of the queue).
"""
from __future__ import annotations

from . import liveness, rows
from .clock import server_now
from .experiments import (DEFAULT_LABEL, Experiment, count_by_state, exp_label, get_experiment,
                          list_experiments)
from .liveness import driver_info, experiment_status, live_driver, live_workers, stale_trials, throughput
from .repairs import cancel_trials, delete_experiment, requeue_trials
from .rows import RECORD_KEYS, last_step, reports_of, row_columns, to_rows, trial_record
from .space_info import SpaceInfo, compact_value, decode_vals, flat_value, option_label, option_labels
from .trials import best_trials, find_trials, get_trial, known_states

__all__ = [
    "DEFAULT_LABEL", "SpaceInfo", "Experiment", "exp_label", "server_now", "list_experiments",
    "get_experiment", "count_by_state", "best_trials", "find_trials", "get_trial", "to_rows", "reports_of", "last_step",
    "row_columns", "experiment_status", "driver_info", "live_driver", "stale_trials", "live_workers", "throughput",
    "requeue_trials", "cancel_trials", "delete_experiment", "decode_vals", "trial_record",
    "flat_value", "compact_value", "option_label", "option_labels", "known_states", "RECORD_KEYS",
]

# public constants, outside __all__
DEFAULT_LEASE_TIMEOUT = liveness.DEFAULT_LEASE_TIMEOUT
DEFAULT_WINDOW_MINUTES = liveness.DEFAULT_WINDOW_MINUTES
DRIVER_LIVE_WITHIN = liveness.DRIVER_LIVE_WITHIN
FIXED_COLUMNS = rows.FIXED_COLUMNS
TAIL_COLUMNS = rows.TAIL_COLUMNS
