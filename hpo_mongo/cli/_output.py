"""The one renderer of the ``hpo-mongo`` CLI: aligned text tables and stable JSON.

Stable JSON means: keys in a fixed order chosen by the command (never the order documents
happen to come back in), datetimes as ISO 8601 UTC strings ending in ``Z`` (millisecond
precision, as BSON stores them), ObjectIds as their hex string, non-finite floats as ``null``,
two-space indentation and UTF-8 output.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
from typing import Any, Iterable, Mapping, Sequence

import click

from .._json import dumps, jsonable

#: table cells longer than this are shortened with "…" (JSON and exports are never shortened)
MAX_CELL = 48


def echo_json(obj: Any) -> None:
    click.echo(dumps(obj))


def fmt_number(v: float) -> str:
    if not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if v != 0 and (abs(v) < 1e-4 or abs(v) >= 1e7):
        return f"{v:.4e}"
    return f"{v:.6g}"


def fmt_age(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h01m``, ``3d04h``."""
    if seconds is None:
        return ""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def cell(v: Any) -> str:
    """One table cell: blank for None, compact numbers, UTC times without the date noise."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return fmt_number(v)
    if isinstance(v, _dt.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(_dt.timezone.utc)
        return v.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(_compact(jsonable(v)), sort_keys=True, separators=(",", ":"))
    text = str(v).replace("\n", " ")
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def _compact(v: Any) -> Any:
    """Floats inside JSON cells rounded to 6 significant digits (tables only)."""
    if isinstance(v, float):
        return float(f"{v:.6g}")
    if isinstance(v, dict):
        return {k: _compact(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_compact(x) for x in v]
    return v


def _is_numeric(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str],
          headers: Mapping[str, str] | None = None) -> str:
    """An aligned text table: header, a dashed rule, one line per row; numbers right-aligned."""
    headers = dict(headers or {})
    head = [headers.get(c, c) for c in columns]
    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    numeric = [all(_is_numeric(r.get(c)) or r.get(c) is None for r in rows) and any(_is_numeric(r.get(c)) for r in rows)
               for c in columns]
    widths = [max([len(h)] + [len(line[i]) for line in cells]) for i, h in enumerate(head)]

    def fmt(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return "  ".join(parts).rstrip()

    out = [fmt(head), "  ".join("-" * w for w in widths)]
    out.extend(fmt(line) for line in cells)
    return "\n".join(out)


def echo_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str],
               headers: Mapping[str, str] | None = None, empty: str | None = None) -> None:
    if not rows and empty is not None:
        click.echo(empty)
        return
    click.echo(table(rows, columns, headers))


def key_values(pairs: Iterable[tuple[str, Any]], indent: int = 0, width: int | None = None) -> str:
    """``key   value`` lines with the values aligned (keys padded to ``width`` or the longest)."""
    pairs = [(k, v) for k, v in pairs]
    if not pairs:
        return ""
    w = max([len(k) for k, _ in pairs] + [width or 0])
    pad = " " * indent
    return "\n".join(f"{pad}{k.ljust(w)}  {v if isinstance(v, str) else cell(v)}".rstrip() for k, v in pairs)


def emit(data: Any, as_json: bool, text: Any) -> None:
    """The single output switch: ``data`` as JSON with ``--json``, else ``text()`` (a callable
    printing the human form, or a string)."""
    if as_json:
        echo_json(data)
    elif callable(text):
        text()
    else:
        click.echo(text)
