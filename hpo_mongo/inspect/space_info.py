"""The experiment's JSON search space: stored values (choice indices) → the values the objective saw."""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ..space.distributions import KindFlags, kind_flags


@dataclass
class SpaceInfo:
    """The experiment's JSON space: labels, kinds and choice options (no user code needed)."""

    params: list[dict] = field(default_factory=list)
    _flags: dict[str, KindFlags | None] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for p in self.params:
            self._flags.setdefault(p["label"], kind_flags(p))

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

    def flags(self, label: str) -> KindFlags | None:
        """The parameter's kind flags (None for an unknown label or kind)."""
        return self._flags.get(label)

    def is_categorical(self, label: str) -> bool:
        f = self.flags(label)
        return bool(f and f.categorical)

    def is_log(self, label: str) -> bool:
        f = self.flags(label)
        return bool(f and f.log)

    def is_integer(self, label: str) -> bool:
        """Whether the parameter only takes integers (randint, uniformint, a q-kind with integer q)."""
        f = self.flags(label)
        if f is None or f.categorical:
            return False
        q = (self.param(label) or {}).get("q")
        return f.integer or (f.quantized and not f.log and isinstance(q, (int, float)) and q >= 1
                             and float(q).is_integer())

    def value_bounds(self, label: str) -> tuple[float, float] | None:
        """The smallest and largest value a bounded parameter takes (None when unbounded or unknown)."""
        p = self.param(label) or {}
        low, high = p.get("value_low"), p.get("value_high")
        if isinstance(low, (int, float)) and isinstance(high, (int, float)):
            return float(low), float(high)
        return None

    def conditions(self, label: str) -> list[list[tuple[str, int]]]:
        """When the parameter is active: a list of paths, each a list of ``(choice label, branch)``
        from the outermost choice in; ``[[]]`` for a parameter that is always active."""
        p = self.param(label) or {}
        return [[(c["label"], int(c["branch"])) for c in path] for path in p.get("conditions") or [[]]]

    def options(self, label: str) -> list | None:
        p = self.param(label)
        return p.get("options") if p else None

    def decode(self, label: str, raw: Any) -> Any:
        """One stored value → the value the objective saw (choice index → option)."""
        p = self.param(label)
        if p is None or raw is None:
            return raw
        f = self.flags(label)
        if f is not None and f.categorical:
            options = p.get("options")
            try:
                idx = int(raw)
            except (TypeError, ValueError):
                return raw
            if options is not None and 0 <= idx < len(options):
                return options[idx]
            return raw
        if f is not None and f.integer and isinstance(raw, float) and raw.is_integer():
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


def _name_key(option: Mapping[str, Any]) -> str | None:
    """The key naming a nested option: the first of :data:`NAME_KEYS` it has, else its only
    string-valued entry (``{"ktype": "rbf", "gamma": 0.1}`` is named by ``ktype``)."""
    for k in NAME_KEYS:
        v = option.get(k)
        if isinstance(v, (str, int, float)) and not isinstance(v, bool):
            return k
    strings = [k for k, v in option.items() if isinstance(v, str) and not str(k).startswith("$")]
    return strings[0] if len(strings) == 1 else None


def _name_of(option: Mapping[str, Any]) -> str | None:
    k = _name_key(option)
    return None if k is None else str(option[k])


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
    without a name (see :func:`_name_key`) ``{momentum=0.92}``; an expression the
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
        key = _name_key(v)
        name = None if key is None else str(v[key])
        items = [f"{k}={compact_value(x, depth + 1)}" for k, x in v.items() if k != key]
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


def option_labels(options: Sequence[Any]) -> list[str]:
    """Distinct labels for the options of one choice (axis ticks, legends): :func:`option_label`
    of each, except that nameless dict options are told apart by an entry whose scalar values
    differ between them (``[{"k": "linear"}, {"k": "rbf", "g": ...}]`` → ``linear``, ``rbf``);
    labels that still collide get ``#index``."""
    labels = [option_label(o) for o in options]
    dicts = [o for o in options if isinstance(o, Mapping) and _name_key(o) is None and not set(o) & {"$param", "$expr"}]
    if len(dicts) > 1:
        common = [k for k in dicts[0] if all(k in d for d in dicts)]
        for k in common:
            vals = [d[k] for d in dicts]
            if all(isinstance(x, (str, int, float)) and not isinstance(x, bool) for x in vals) \
                    and len({str(x) for x in vals}) == len(vals):
                labels = [(o[k] if isinstance(o[k], str) else f"{k}={_scalar_text(o[k])}")
                          if any(o is d for d in dicts) else lab for o, lab in zip(options, labels, strict=True)]
                break
    seen: dict[str, int] = {}
    for lab in labels:
        seen[lab] = seen.get(lab, 0) + 1
    return [f"{lab} #{i}" if seen[lab] > 1 else lab for i, lab in enumerate(labels)]
