"""User space → :class:`CompiledSpace`, the flat parameter table algorithms work on.

Each parameter gets a column; a batch of points is an ``(n, P)`` float matrix holding internal
values (choice indices for categorical kinds) and NaN where the parameter is inactive. A
parameter is active when one of its *paths* holds: a path is the list of (choice column,
branch) pairs leading from the root to it (an empty path means always active).
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from ..exceptions import DuplicateLabel, InvalidSpaceError, InvalidTrial, UnsupportedExpressionError
from .distributions import Distribution
from .nodes import Apply, Choice, Expr, Param

Path = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class ParamSpec:
    """One column of the table: the parameter, its distribution and when it is active."""

    index: int
    label: str
    dist: Distribution
    paths: tuple[Path, ...]  # active iff any path holds; () inside means unconditional
    node: Param

    @property
    def always_active(self) -> bool:
        return any(len(p) == 0 for p in self.paths)


class CompiledSpace:
    """The flat, validated view of a search space (see the module docstring)."""

    def __init__(self, space: Any):
        self.space = space
        nodes: dict[str, Param] = {}
        paths: dict[str, set[tuple[tuple[str, int], ...]]] = {}  # by label: (choice label, branch) paths
        order: list[str] = []
        self._walk(space, (), nodes, paths, order, {}, set())
        order = _topological(order, paths)
        index = {lab: i for i, lab in enumerate(order)}
        self.params: tuple[ParamSpec, ...] = tuple(
            ParamSpec(index[lab], lab, nodes[lab].dist,
                      tuple(sorted(tuple((index[c], b) for c, b in p) for p in paths[lab])),
                      nodes[lab])
            for lab in order
        )
        self.labels: tuple[str, ...] = tuple(order)
        self.index: dict[str, int] = index
        self.n_params = len(order)
        self.is_conditional = not all(p.always_active for p in self.params)

    # ----------------------------------------------------------------- building
    def _walk(self, node: Any, path: tuple[tuple[str, int], ...], nodes: dict, paths: dict,
              order: list, seen_path: dict, stack: set) -> None:
        if isinstance(node, Param):
            lab = node.label
            other = nodes.get(lab)
            if other is not None and other is not node:  # as hyperopt: even two identical definitions
                raise DuplicateLabel(f"duplicate label {lab!r}: two hyperparameter nodes use it (reuse one node "
                                     "object to share a hyperparameter)")
            key = (id(node), path)
            if key in seen_path:
                return
            seen_path[key] = True
            if other is None:
                nodes[lab] = node
                paths[lab] = set()
            paths[lab].add(path)
            if isinstance(node, Choice):
                if id(node) in stack:
                    raise InvalidSpaceError(f"hyperparameter {lab!r}: a choice cannot contain itself")
                stack.add(id(node))
                if lab not in order:
                    order.append(lab)
                for b, option in enumerate(node.options):
                    self._walk(option, path + ((lab, b),), nodes, paths, order, seen_path, stack)
                stack.discard(id(node))
            elif lab not in order:
                order.append(lab)
        elif isinstance(node, Apply):
            for a in node.args:
                self._walk(a, path, nodes, paths, order, seen_path, stack)
            for a in node.kwargs.values():
                self._walk(a, path, nodes, paths, order, seen_path, stack)
        elif isinstance(node, dict):
            for k, v in node.items():
                if isinstance(k, Expr):
                    raise UnsupportedExpressionError(f"dict keys cannot be hyperparameters (got {k!r})")
                self._walk(v, path, nodes, paths, order, seen_path, stack)
        elif isinstance(node, (list, tuple)):
            for v in node:
                self._walk(v, path, nodes, paths, order, seen_path, stack)
        elif isinstance(node, Expr):
            raise UnsupportedExpressionError(f"unsupported node {node!r}")
        elif type(node).__module__.startswith("hyperopt"):
            raise UnsupportedExpressionError(
                f"{type(node).__name__} from hyperopt found in the space: build spaces with hpo_mongo.hp")

    # ----------------------------------------------------------------- batches
    def active_mask(self, X: np.ndarray) -> np.ndarray:
        """Which entries of the ``(n, P)`` matrix are active, from its choice columns."""
        X = np.atleast_2d(X)
        n = X.shape[0]
        active = np.zeros((n, self.n_params), dtype=bool)
        for p in self.params:  # choices come first in ``params`` order along every path
            if p.always_active:
                active[:, p.index] = True
                continue
            m = np.zeros(n, dtype=bool)
            for path in p.paths:
                pm = np.ones(n, dtype=bool)
                for c, b in path:
                    pm &= active[:, c] & (X[:, c] == b)
                m |= pm
            active[:, p.index] = m
        return active

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` points from the prior: an ``(n, P)`` matrix, NaN where inactive."""
        X = np.empty((n, self.n_params))
        for p in self.params:
            X[:, p.index] = p.dist.sample(rng, n)
        X[~self.active_mask(X)] = np.nan
        return X

    def row_to_vals(self, row: Sequence[float] | np.ndarray) -> dict[str, list]:
        """One matrix row → hyperopt's ``misc.vals`` (``[value]`` or ``[]`` when inactive)."""
        return {p.label: ([] if np.isnan(row[p.index]) else [p.dist.external(row[p.index])])
                for p in self.params}

    def vals_to_row(self, vals: Mapping[str, Any]) -> np.ndarray:
        """``misc.vals`` (or a flat ``{label: value}``) → one matrix row (NaN when absent)."""
        row = np.full(self.n_params, np.nan)
        for lab, i in self.index.items():
            v = vals.get(lab, None)
            if isinstance(v, (list, tuple)):
                v = v[0] if len(v) else None
            if v is not None:
                row[i] = float(v)
        return row

    def check_point(self, point: Mapping[str, Any], what: str = "point") -> dict[str, list]:
        """Validate a user-given assignment (e.g. ``points_to_evaluate``) and return its ``vals``."""
        unknown = sorted(set(point) - set(self.index))
        if unknown:
            raise InvalidSpaceError(f"{what}: unknown label(s) {unknown}; the space has {list(self.labels)}")
        row = self.vals_to_row(point)
        active = self.active_mask(row[None, :])[0]
        for p in self.params:
            v = row[p.index]
            if active[p.index] and np.isnan(v):
                raise InvalidSpaceError(f"{what}: no value for active hyperparameter {p.label!r}")
            if active[p.index] and not p.dist.contains(np.array([v]))[0]:
                raise InvalidSpaceError(f"{what}: value {point[p.label]!r} is outside hyperparameter "
                                        f"{p.label!r}'s {p.dist.kind} range")
        row[~active] = np.nan
        return self.row_to_vals(row)

    def check_vals(self, vals: Any, what: str = "misc.vals") -> None:
        """Raise :class:`InvalidTrial` naming the label unless ``vals`` (a trial's ``{label: [v] or []}``)
        is a point of this space: known labels, one number per entry (not a bool, str, ...), within
        bounds, choice indices in range, every active label present. Workers evaluate documents
        anyone with write access can forge; this runs before the objective sees them."""
        if not isinstance(vals, Mapping):
            raise InvalidTrial(f"{what} must be a dict {{label: [value] or []}}, got {type(vals).__name__}")
        for label, v in vals.items():
            if not isinstance(v, (list, tuple)) or len(v) > 1:
                raise InvalidTrial(f"{what}[{label!r}] must be [value] or [], got {v!r:.80}")
            if v and (isinstance(v[0], (bool, np.bool_)) or not isinstance(v[0], (numbers.Real, np.number))):
                raise InvalidTrial(f"{what}[{label!r}] must hold a number, got {type(v[0]).__name__} {v[0]!r:.80}")
        try:
            self.check_point(vals, what)
        except InvalidSpaceError as e:
            raise InvalidTrial(str(e)) from None

    def to_json(self) -> list[dict[str, Any]]:
        """JSON description: labels, kinds, bounds, conditions and choice options (as JSON)."""
        out = []
        for p in self.params:
            d = p.dist.to_json()
            d["conditions"] = [[{"label": self.labels[c], "branch": b} for c, b in path] for path in p.paths]
            if isinstance(p.node, Choice):
                d["options"] = [_option_json(o) for o in p.node.options]
            out.append(d)
        return out

    def __iter__(self) -> Iterator[ParamSpec]:
        return iter(self.params)

    def __len__(self) -> int:
        return self.n_params


def _topological(order: list[str], paths: dict[str, set]) -> list[str]:
    """Reorder labels so that every choice precedes the parameters conditioned on it."""
    deps = {lab: {c for path in paths[lab] for c, _ in path} for lab in order}
    out: list[str] = []
    placed: set[str] = set()
    while len(out) < len(order):
        progress = False
        for lab in order:
            if lab not in placed and deps[lab] <= placed:
                out.append(lab)
                placed.add(lab)
                progress = True
        if not progress:
            stuck = [lab for lab in order if lab not in placed]
            raise InvalidSpaceError(f"hyperparameters {stuck} are conditioned on each other in a cycle")
    return out


def _option_json(option: Any) -> Any:
    """A choice option as JSON: the value itself when it is plain data, else a description."""
    if option is None or isinstance(option, (bool, int, float, str)):
        return option
    if isinstance(option, np.generic):
        return option.item()
    if isinstance(option, (list, tuple)):
        return [_option_json(o) for o in option]
    if isinstance(option, dict):
        return {str(k): _option_json(v) for k, v in option.items()}
    if isinstance(option, Param):
        return {"$param": option.label}
    if isinstance(option, Apply):
        return {"$expr": repr(option)}
    return {"$repr": repr(option)}


def compile_space(space: Any) -> CompiledSpace:
    """Validate and flatten a user space (passes a CompiledSpace through unchanged)."""
    return space if isinstance(space, CompiledSpace) else CompiledSpace(space)
