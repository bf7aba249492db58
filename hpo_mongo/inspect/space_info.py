"""The experiment's JSON search space: stored values (choice indices) → the values the objective saw."""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence


@dataclass
class SpaceInfo:
    """The experiment's JSON space: labels, kinds and choice options (no user code needed)."""

    params: list[dict] = field(default_factory=list)

    @classmethod
    def from_json(cls, space: Sequence[Mapping[str, Any]] | None) -> "SpaceInfo":
        return cls([dict(p) for p in (space or []) if isinstance(p, Mapping) and "label" in p])

    @classmethod
    def from_space(cls, space: Any) -> "SpaceInfo":
        """From a user space (hp expressions), a CompiledSpace, or its JSON list."""
        if space is None:
            return cls()
        if isinstance(space, SpaceInfo):
            return space
        if isinstance(space, list) and all(isinstance(p, Mapping) and "kind" in p for p in space):
            return cls.from_json(space)
        from ..space import compile_space
        return cls.from_json(compile_space(space).to_json())

    @property
    def labels(self) -> list[str]:
        return [p["label"] for p in self.params]

    def param(self, label: str) -> dict | None:
        for p in self.params:
            if p["label"] == label:
                return p
        return None

    def kind(self, label: str) -> str | None:
        p = self.param(label)
        return p.get("kind") if p else None

    def is_categorical(self, label: str) -> bool:
        return self.kind(label) in ("choice", "pchoice")

    def is_log(self, label: str) -> bool:
        return self.kind(label) in ("loguniform", "qloguniform", "lognormal", "qlognormal")

    def options(self, label: str) -> list | None:
        p = self.param(label)
        return p.get("options") if p else None

    def decode(self, label: str, raw: Any) -> Any:
        """One stored value → the value the objective saw (choice index → option)."""
        p = self.param(label)
        if p is None or raw is None:
            return raw
        if p.get("kind") in ("choice", "pchoice"):
            options = p.get("options")
            try:
                idx = int(raw)
            except (TypeError, ValueError):
                return raw
            if options is not None and 0 <= idx < len(options):
                return options[idx]
            return raw
        if p.get("kind") in ("randint", "uniformint") and isinstance(raw, float) and raw.is_integer():
            return int(raw)
        return raw


def decode_vals(vals: Mapping[str, Any] | None, space: SpaceInfo) -> dict[str, Any]:
    """``misc.vals`` (``{label: [v] or []}``) → ``{label: value or None}`` with option values.

    Labels follow the space's order, then any label the space does not know. None means the
    parameter was inactive in this trial. A nested sub-space option comes back as JSON with the
    parameters inside it filled in (``{"name": "sgd", "momentum": 0.9}``).
    """
    vals = vals or {}
    out: dict[str, Any] = {}
    for label in list(space.labels) + [k for k in vals if k not in space.labels]:
        v = vals.get(label)
        if isinstance(v, (list, tuple)):
            v = v[0] if len(v) else None
        out[label] = space.decode(label, v) if v is not None else None
    for label, v in out.items():
        if isinstance(v, (dict, list)):
            out[label] = _resolve_refs(v, out)
    return out


def _resolve_refs(option: Any, values: Mapping[str, Any], depth: int = 0) -> Any:
    """A nested option with its ``{"$param": label}`` placeholders replaced by this trial's
    values, so it shows what the objective received (``$expr`` descriptions stay as they are)."""
    if depth > 20:
        return option
    if isinstance(option, dict):
        if set(option) == {"$param"} and option["$param"] in values:
            return _resolve_refs(values[option["$param"]], values, depth + 1)
        return {k: _resolve_refs(v, values, depth + 1) for k, v in option.items()}
    if isinstance(option, list):
        return [_resolve_refs(v, values, depth + 1) for v in option]
    return option


def flat_value(v: Any) -> Any:
    """A decoded value for one table/CSV cell: nested options (dict/list) become compact JSON."""
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, sort_keys=True, separators=(",", ":"), default=str)
    return v


#: keys whose value names a nested option (``{"type": "svm", "C": 1.0}`` is shown as ``svm(C=1)``)
NAME_KEYS = ("name", "type", "kind", "model", "algo", "algorithm", "method", "optimizer", "classifier",
             "estimator", "preprocessing")
_EXPR_CALL_RE = re.compile(r"^\s*(?:scope\.|hp\.)?([A-Za-z_][\w.]*)\s*\(")


def _name_of(option: Mapping[str, Any]) -> str | None:
    for k in NAME_KEYS:
        v = option.get(k)
        if isinstance(v, (str, int, float)) and not isinstance(v, bool):
            return str(v)
    return None


def _expr_name(expr: Any) -> str:
    """``scope.sklearn_SVC(C=...)`` → ``sklearn_SVC``; any other description → ``expr``."""
    m = _EXPR_CALL_RE.match(str(expr))
    return m.group(1).rsplit(".", 1)[-1] if m else "expr"


def _scalar_text(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    return str(v)


def compact_value(v: Any, depth: int = 0) -> str:
    """A decoded value as short text for a table cell or a label.

    A nested option becomes its name with its parameters, ``sgd(momentum=0.92)``; an option
    without a name-like key (see :data:`NAME_KEYS`) ``{momentum=0.92}``; an expression the
    space could not describe as values ``{"$expr": "scope.mul(…)"}`` its function, ``mul(…)``;
    a reference to a parameter ``{"$param": "x"}`` the label ``x``; floats keep 4 digits.
    """
    if isinstance(v, Mapping):
        if set(v) == {"$param"}:
            return str(v["$param"])
        if set(v) == {"$expr"}:
            return _expr_name(v["$expr"]) + "(…)"
        if depth > 6:
            return "…"
        name = _name_of(v)
        items = [f"{k}={compact_value(x, depth + 1)}" for k, x in v.items()
                 if name is None or k not in NAME_KEYS or str(x) != name]
        if name is None:
            return "{" + ", ".join(items) + "}"
        return f"{name}({', '.join(items)})" if items else name
    if isinstance(v, (list, tuple)):
        if depth > 6:
            return "…"
        return "[" + ", ".join(compact_value(x, depth + 1) for x in v) + "]"
    return _scalar_text(v)


def option_label(option: Any) -> str:
    """The name of one choice option for an axis tick or a legend: its name-like entry
    (``{"type": "svm", ...}`` → ``svm``), its expression's function (``sklearn_SVC``), the
    parameter it stands for, or the value itself."""
    if isinstance(option, Mapping):
        if set(option) == {"$param"}:
            return str(option["$param"])
        if set(option) == {"$expr"}:
            return _expr_name(option["$expr"])
        name = _name_of(option)
        if name is not None:
            return name
    return compact_value(option)
