"""The experiment's JSON search space: stored values (choice indices) → the values the objective saw."""
from __future__ import annotations

import json
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
