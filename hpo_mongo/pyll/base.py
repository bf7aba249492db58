"""``hyperopt.pyll.base`` names over hpo_mongo's plain space tree (no graph interpreter).

- :func:`as_apply` turns containers into tree nodes the way pyll does (a dict becomes a ``dict``
  node whose ``named_args`` are live, a list or tuple a ``pos_args`` node, a constant a
  :class:`Literal`), so ``as_apply(space).named_args.append([k, v])`` changes the space fmin uses;
- :func:`rec_eval` evaluates a space with a memo keyed by label (or by node);
- :func:`dfs`, :func:`toposort` and :func:`clone` walk / copy the tree.

``Apply`` is the tree's function node; ``isinstance(hp.uniform(...), Apply)`` is False here
(hp nodes are :class:`Expr`; hyperopt's are Apply). ``Apply(fn, args, kwargs, name)`` takes a
function, not a pyll symbol name.
"""
from __future__ import annotations

from typing import Any, Iterable

from ..space.evaluate import evaluate
from ..space.nodes import Apply, Choice, Expr, Literal, Param, Stochastic, _pos_args, scope

__all__ = ["scope", "Apply", "Expr", "Literal", "as_apply", "rec_eval", "dfs", "toposort", "clone",
           "MissingArgument"]


class MissingArgument:
    """pyll's marker for an unbound argument (kept for imports)."""


def as_apply(obj: Any) -> Any:
    """A tree node for ``obj``: nodes unchanged; dict → ``dict`` node (keys sorted), list/tuple →
    ``pos_args`` node (evaluates to a tuple), anything else → :class:`Literal`."""
    if isinstance(obj, Expr):
        return obj
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return Apply(dict, (), {k: as_apply(obj[k]) for k in sorted(obj)}, "dict")
        return Apply(dict, (tuple((k, as_apply(v)) for k, v in obj.items()),), {}, "dict")
    if isinstance(obj, (list, tuple)):
        return Apply(_pos_args, tuple(as_apply(v) for v in obj), {}, "pos_args")
    return Literal(obj)


def rec_eval(expr: Any, deepcopy_inputs: bool = False, memo: dict | None = None, **_ignored: Any) -> Any:
    """Evaluate ``expr`` (pyll's ``rec_eval``). ``memo`` maps labels (or hp nodes) to values, as
    the ``memo`` an objective gets with ``pass_expr_memo_ctrl``; other nodes given in ``memo``
    take the value given."""
    labels: dict[str, Any] = {}
    known: dict[int, Any] = {}
    for key, value in (memo or {}).items():
        if isinstance(key, str):
            labels[key] = value
        elif isinstance(key, Param):
            labels[key.label] = value
        elif isinstance(key, Expr):
            known[id(key)] = value
    return evaluate(expr, labels, known=known)


def _children(node: Any) -> Iterable[Any]:
    if isinstance(node, Choice):
        return node.options
    if isinstance(node, Apply):
        return node.inputs()
    if isinstance(node, dict):
        return node.values()
    if isinstance(node, (list, tuple)):
        return node
    return ()


def dfs(expr: Any) -> list[Expr]:
    """Every node of ``expr`` once, children before parents (containers are walked through)."""
    out: list[Expr] = []
    seen: set[int] = set()

    def walk(node: Any) -> None:
        if isinstance(node, Expr):
            if id(node) in seen:
                return
            seen.add(id(node))
        for child in _children(node):
            walk(child)
        if isinstance(node, Expr):
            out.append(node)

    walk(expr)
    return out


toposort = dfs


def clone(expr: Any, memo: dict | None = None) -> Any:
    """A structural copy of ``expr``: new nodes (one per original node), the same constants."""
    memo = {} if memo is None else memo

    def cp(node: Any) -> Any:
        if isinstance(node, Expr):
            if id(node) not in memo:
                memo[id(node)] = copy_node(node)
            return memo[id(node)]
        if isinstance(node, dict):
            return {k: cp(v) for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return type(node)(cp(v) for v in node) if type(node) in (list, tuple) else node
        return node

    def copy_node(node: Expr) -> Expr:
        if isinstance(node, Literal):
            return Literal(node.obj)
        if isinstance(node, Choice):
            return Choice(node.dist, [cp(o) for o in node.options])
        if isinstance(node, Param):
            return Param(node.dist)
        if isinstance(node, Apply):
            return type(node)(node.fn, tuple(cp(a) for a in node.args),
                              {k: cp(v) for k, v in node.kwargs.items()}, node.name)
        return node

    return cp(expr)


def stochastic_nodes(expr: Any) -> list[Stochastic]:
    """The noise nodes of ``expr`` (what ``recursive_set_rng_kwarg`` sets ``rng`` on)."""
    return [n for n in dfs(expr) if isinstance(n, Stochastic)]
