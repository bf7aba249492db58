"""JSON-safe values shared by the CLI and the exporters: ISO times, plain types, stable dumps."""
from __future__ import annotations

import datetime as _dt
import json
import math
from typing import Any, Mapping


def iso(t: _dt.datetime) -> str:
    """ISO 8601 UTC with milliseconds and a trailing Z."""
    if t.tzinfo is not None:
        t = t.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    return t.isoformat(timespec="milliseconds") + "Z"


def jsonable(obj: Any) -> Any:
    """Plain JSON types, recursively (see the module docstring)."""
    if obj is None or isinstance(obj, (bool, str, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, _dt.datetime):
        return iso(obj)
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, bytes):
        return f"<{len(obj)} bytes>"
    item = getattr(obj, "item", None)  # numpy scalars
    if callable(item):
        try:
            return jsonable(item())
        except (TypeError, ValueError):
            pass
    return str(obj)  # ObjectId, Decimal128, ...


def dumps(obj: Any, *, indent: int | None = 2) -> str:
    return json.dumps(jsonable(obj), indent=indent, ensure_ascii=False, allow_nan=False)
