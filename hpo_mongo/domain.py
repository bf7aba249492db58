"""``Domain``: the objective plus its compiled space, and one evaluation of it."""
from __future__ import annotations

import copy
from typing import Any, Callable, Mapping

from .exceptions import InvalidParameterError
from .results import normalize_result
from .space import CompiledSpace, compile_space, space_eval
from .trials.documents import DOMAIN_CMD, STATUS_NEW


def trial_seed(ctrl: Any) -> int | None:
    """The seed of a trial's noise generator: its tid, so a requeued trial sees the same noise
    (None, a fresh generator, when the trial is unknown)."""
    trial = ctrl.current_trial if ctrl is not None else None
    tid = trial.get("tid") if isinstance(trial, Mapping) else None
    return tid if isinstance(tid, int) and not isinstance(tid, bool) and tid >= 0 else None


class Domain:
    """An objective ``fn`` over the search space ``expr`` (hyperopt's ``base.Domain``)."""

    #: the pruner that decides on the trials' reports where they are evaluated: a queue-backed
    #: store pickles the domain with it (:meth:`with_pruner`), so every worker applies the same one
    pruner: Any = None

    def __init__(self, fn: Callable, expr: Any, workdir: str | None = None,
                 pass_expr_memo_ctrl: bool | None = None, name: str | None = None,
                 loss_target: float | None = None):
        if not callable(fn):
            raise InvalidParameterError(f"The 'fn' parameter must be callable. Got {fn!r} instead.")
        self.fn = fn
        self.expr = expr
        self.space: CompiledSpace = compile_space(expr)
        self.workdir = workdir
        self.pass_expr_memo_ctrl = bool(pass_expr_memo_ctrl if pass_expr_memo_ctrl is not None
                                        else getattr(fn, "fmin_pass_expr_memo_ctrl", False))
        self.name = name
        self.loss_target = loss_target

    def with_pruner(self, pruner: Any) -> "Domain":
        """A shallow copy of this domain whose :attr:`pruner` is ``pruner``."""
        twin = copy.copy(self)
        twin.pruner = pruner
        return twin

    @property
    def params(self) -> dict[str, Any]:
        """``{label: node}`` as in hyperopt."""
        return {p.label: p.node for p in self.space.params}

    def config(self, vals: Mapping[str, Any], rng: Any = None) -> Any:
        """The nested object the objective receives for these ``misc.vals`` (``rng`` feeds noise nodes)."""
        return space_eval(self.expr, vals, rng=rng)

    def evaluate(self, vals: Mapping[str, Any], ctrl: Any = None) -> tuple[dict, dict[str, bytes]]:
        """Call the objective on ``vals``; return ``(result, attachments)`` by the result rules.

        Exceptions raised by the objective propagate to the caller (which records them), as does
        :class:`InvalidTrial` for ``vals`` that are not a point of the space (nothing is called).
        """
        self.space.check_vals(vals)
        if self.pass_expr_memo_ctrl:
            raw = self.fn(expr=self.expr, memo=dict(vals), ctrl=ctrl)
        else:
            raw = self.fn(self.config(vals, rng=trial_seed(ctrl)))
        return normalize_result(raw)

    #: ``misc.cmd`` of this domain's trials (hyperopt's ``Domain.cmd``)
    cmd = DOMAIN_CMD

    def new_result(self) -> dict:
        """The ``result`` of a NEW trial."""
        return {"status": STATUS_NEW}

    def loss(self, result: Mapping[str, Any], config: Any = None) -> Any:
        return result.get("loss", None)

    def loss_variance(self, result: Mapping[str, Any], config: Any = None) -> Any:
        return result.get("loss_variance", 0.0)

    def true_loss(self, result: Mapping[str, Any], config: Any = None) -> Any:
        return result.get("true_loss", self.loss(result, config))

    def status(self, result: Mapping[str, Any], config: Any = None) -> Any:
        return result["status"]

    def short_str(self) -> str:
        return f"Domain{{{getattr(self.fn, '__name__', self.fn)!s}}}"
