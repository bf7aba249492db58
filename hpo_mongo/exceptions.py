"""Every exception hpo_mongo raises, sorted by what the caller can do next.

- fix the call or the space: :class:`InvalidParameterError`, :class:`InvalidSpaceError`,
  :class:`InvalidResultError`, :class:`InvalidURLError`;
- retry later: :class:`StoreUnavailable` (the server is unreachable; only idempotent calls are retried);
- fix the URL or the database user: :class:`StoreConfigurationError` (retrying does not help);
- treat as "someone else got there first": :class:`DuplicateTrialError`, :class:`TrialNotOwned`;
- give up on the trial: :class:`ObjectiveLoadError`, :class:`PayloadSignatureError`;
- fix the environment of local workers: :class:`WorkerStartError`;
- nothing to report: :class:`AllTrialsFailed`;
- control flow inside an objective: :class:`TrialPruned` (stop this trial, it is recorded as
  pruned), :class:`NoCurrentTrial` (``report()`` called where no trial is being evaluated).
"""
from __future__ import annotations


class HpoMongoError(Exception):
    """Root of every hpo_mongo error."""


class InvalidParameterError(HpoMongoError, ValueError, TypeError):
    """A public function got an argument outside its documented range; the message names it."""


class InvalidSpaceError(HpoMongoError, ValueError):
    """A search space is malformed; the message names the offending label."""


class InvalidLabelError(InvalidSpaceError, TypeError):
    """A hyperparameter label is not a string (a TypeError too, as hyperopt's "require string label")."""


class DuplicateLabel(InvalidSpaceError):
    """Two different parameters share one label (hyperopt's name for this error)."""


#: hyperopt's base class of search-space errors
BadSearchSpace = InvalidSpaceError


class InvalidAnnotatedParameter(InvalidSpaceError):
    """``fmin(space="annotated")``: a parameter of the objective is not annotated with an hp node."""


class UnsupportedExpressionError(InvalidSpaceError):
    """A space uses a pyll construct hpo_mongo does not evaluate."""


class InvalidResultError(HpoMongoError, ValueError):
    """An objective returned something that is not a valid result."""


#: hyperopt's names for invalid results (hpo_mongo records them as failed trials instead of raising)
InvalidResultStatus = InvalidResultError
InvalidLoss = InvalidResultError


class InvalidTrial(HpoMongoError, ValueError):
    """A trial document does not follow the documented schema (``obj``: the offending object, if given)."""

    def __init__(self, msg: str, obj: object = None):
        super().__init__(msg if obj is None else f"{msg} {obj}")
        self.obj = obj


class InvalidURLError(InvalidParameterError):
    """A connection URL cannot be parsed; the message shows the accepted forms."""


class MissingExtra(HpoMongoError, ImportError):
    """An optional dependency (an ``extras_require`` entry such as ``plot`` or ``pandas``) is missing."""


class AllTrialsFailed(HpoMongoError):
    """No trial finished with status 'ok', so there is no best trial.

    ``causes`` lists why the trials failed, grouped (:class:`hpo_mongo.trials.failures.FailureCause`:
    kind, message, count, tids, hosts, traceback); the message names them with their counts."""

    def __init__(self, message: str = "no trial succeeded", causes: list | None = None):
        super().__init__(message)
        self.causes = list(causes or [])


class TrialPruned(HpoMongoError):
    """Raised inside an objective to stop its trial early; the trial ends DONE with status "pruned".

    :func:`hpo_mongo.report` raises it when the pruner says stop; an objective may raise it itself.
    """


class NoCurrentTrial(HpoMongoError, RuntimeError):
    """``report()`` / ``should_prune()`` was called outside an objective that fmin or a worker evaluates."""


class StoreError(HpoMongoError):
    """A trial store operation failed."""


class StoreUnavailable(StoreError):
    """The database could not be reached (after retries). Retrying later may succeed."""


class StoreConfigurationError(StoreError):
    """The server refuses this configuration: failed authentication, a user without the needed
    privileges, a ``mongodb+srv://`` name that does not resolve. Retrying does not help."""


class DuplicateTrialError(StoreError):
    """A trial with this tid already exists (a unique index refused the insert)."""


class TrialNotOwned(StoreError):
    """This process no longer holds the lease on the trial (it was requeued or finished elsewhere)."""


class UnknownExperiment(StoreError, KeyError):
    """No experiment with this exp_key exists in the database."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "unknown experiment"


class UnknownTrial(StoreError, KeyError):
    """No trial with this tid exists (in this experiment)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown trial"


class ObjectiveLoadError(HpoMongoError):
    """A worker could not unpickle the objective; the message carries both sides' versions."""


class PayloadSignatureError(ObjectiveLoadError):
    """A pickled payload is unsigned or its HMAC does not match the shared secret."""


class PicklingError(InvalidParameterError):
    """The driver could not pickle the objective; the message names what could not be pickled."""


class WorkerStartError(HpoMongoError, RuntimeError):
    """The worker processes of ``ParallelTrials`` keep exiting before they serve a trial (the
    message has their exit status; their stderr, shown with the driver's, says why)."""
