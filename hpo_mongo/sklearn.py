"""``hyperopt.sklearn.HyperoptSearchCV``: a scikit-learn search over an hp space (needs the ``sklearn`` extra).

Like ``GridSearchCV``, but each candidate comes from ``fmin`` over ``space`` (a dict of
estimator parameter → hp node, or ``"annotated"``); the loss is ``-mean_test_score``. After
``fit``: ``best_params_``, ``best_estimator_``, ``cv_results_`` and ``trials_``. With
``warm_start=True`` a later ``fit`` continues the same trials up to ``max_evals`` in total.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .exceptions import MissingExtra

try:
    from sklearn.base import is_classifier
    from sklearn.model_selection._search import BaseSearchCV
    from sklearn.utils.multiclass import check_classification_targets, unique_labels
    from sklearn.utils.validation import check_array
except ImportError as e:  # pragma: no cover - exercised without the extra
    raise MissingExtra(f"scikit-learn is not installed ({e}): pip install 'hpo_mongo[sklearn]' "
                       "to use hpo_mongo.sklearn") from None

from .driver import fmin
from .trials.documents import STATUS_OK
from .trials.memory import Trials

__all__ = ["HyperoptSearchCV"]


class HyperoptSearchCV(BaseSearchCV):
    """Hyper-parameter search with fmin (see the module docstring; hyperopt's parameters)."""

    _required_parameters = ["estimator", "space", "max_evals"]

    def __init__(self, estimator: Any, space: Any, max_evals: int, trials: Any = None, algo: Any = None,
                 warm_start: bool = False, scoring: Any = None, n_jobs: int | None = None, refit: bool = True,
                 cv: Any = None, verbose: int = 0, pre_dispatch: Any = "2*n_jobs", random_state: Any = None,
                 error_score: Any = np.nan, return_train_score: bool = False):
        super().__init__(estimator=estimator, scoring=scoring, n_jobs=n_jobs, refit=refit, cv=cv,
                         verbose=verbose, pre_dispatch=pre_dispatch, error_score=error_score,
                         return_train_score=return_train_score)
        self.space = space
        self.max_evals = max_evals
        self.trials = trials
        self.algo = algo
        self.warm_start = warm_start
        self.random_state = random_state

    def _check_input_parameters(self, X: Any, y: Any = None, **_split_params: Any) -> None:
        if self.scoring is not None and not (isinstance(self.scoring, str) or callable(self.scoring)):
            raise ValueError("scoring parameter must be a string, a callable or None. "
                             "Multimetric scoring is not supported.")
        check_array(X, accept_sparse=True)
        if y is not None and is_classifier(self.estimator):
            check_classification_targets(y)
            if len(unique_labels(y)) < 2:
                raise ValueError("Classifier can't train when only one class is present.")
        if not isinstance(self.refit, bool):
            raise ValueError(f"refit is expected to be a boolean. Got {type(self.refit)} instead.")

    def fit(self, X: Any, y: Any = None, groups: Any = None, **fit_params: Any) -> "HyperoptSearchCV":
        """Run the search (``max_evals`` candidates), then refit the best one on all the data."""
        self._check_input_parameters(X, y)
        super().fit(X, y=y, groups=groups, **fit_params)
        return self

    def _rstate(self) -> np.random.Generator | None:
        if isinstance(self.random_state, (int, np.integer)) and not isinstance(self.random_state, bool):
            return np.random.default_rng(int(self.random_state))
        if isinstance(self.random_state, np.random.Generator) or self.random_state is None:
            return self.random_state
        raise ValueError("Please supply a `numpy.random.Generator` or integer for `random_state`.")

    def _run_search(self, evaluate_candidates: Any) -> None:
        def objective(params: dict) -> dict:
            results = evaluate_candidates([params])
            return {"loss": -results["mean_test_score"][-1], "params": params, "status": STATUS_OK}

        if not self.warm_start or not hasattr(self, "trials_"):
            self.trials_ = self.trials if (self.warm_start and self.trials is not None) else Trials()
        fmin(objective, space=self.space, algo=self.algo, max_evals=self.max_evals, rstate=self._rstate(),
             trials=self.trials_)
