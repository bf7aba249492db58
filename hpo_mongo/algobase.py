"""``hyperopt.algobase``: base classes for writing a suggest algorithm, over the plain space tree.

Subclass :class:`SuggestAlgo` and implement ``on_node_hyperparameter(memo, node, label)``: it
returns the value of one active hyperparameter (choices: the option index) given ``memo``, the
values chosen so far by label; ``node`` is the hp node (``node.dist`` has ``kind``, ``low``,
``high``, ``q``, ``mu``, ``sigma``...; hyperopt passes a pyll distribution node instead).
``SuggestAlgo(domain, trials, seed)(new_id)`` returns the one new trial document.
:class:`ExprEvaluator` evaluates a space: ``ExprEvaluator(expr)(memo)``.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .algos.base import docs_from_rows
from .pyll.base import rec_eval

__all__ = ["ExprEvaluator", "SuggestAlgo"]


class ExprEvaluator:
    """Evaluates ``expr`` with a memo of hyperparameter values (by label or node)."""

    def __init__(self, expr: Any, deepcopy_inputs: bool = False, max_program_len: int | None = None,
                 memo_gc: bool = True):
        self.expr = expr

    def __call__(self, memo: Mapping | None = None) -> Any:
        return rec_eval(self.expr, memo=dict(memo or {}))


class SuggestAlgo:
    """One suggestion at a time: active hyperparameters in dependency order (choices first)."""

    def __init__(self, domain: Any, trials: Any, seed: int):
        self.domain, self.trials = domain, trials
        self._seed = int(seed)
        self.rng = np.random.default_rng(self._seed)

    def on_node_hyperparameter(self, memo: dict, node: Any, label: str) -> Any:
        raise NotImplementedError("SuggestAlgo subclasses implement on_node_hyperparameter(memo, node, label)")

    def __call__(self, new_id: int) -> list[dict]:
        self.rng = np.random.default_rng(self._seed + int(new_id))
        space = self.domain.space
        row = np.full(space.n_params, np.nan)
        memo: dict[str, Any] = {}
        for p in space.params:  # a choice precedes the parameters its branches activate
            if not any(all(row[c] == b for c, b in path) for path in p.paths):
                continue
            memo[p.label] = value = self.on_node_hyperparameter(memo, p.node, p.label)
            row[p.index] = float(value)
        return docs_from_rows([new_id], space, row[None, :], self.trials)
