"""The one renderer of the ``hpo-mongo`` CLI: aligned text tables and stable JSON.

Stable JSON means: keys in a fixed order chosen by the command (never the order documents
happen to come back in), datetimes as ISO 8601 UTC strings ending in ``Z`` (millisecond
precision, as BSON stores them), ObjectIds as their hex string, non-finite floats as ``null``,
two-space indentation and UTF-8 output.

Tables fit the output width (:func:`output_width`: ``$COLUMNS``, else the terminal's width, no
limit when the output is not a terminal): long text cells are shortened with "…", and columns
that still do not fit are left out from the right and named on a last line. ``wide=True``
(the commands' ``--wide``) prints every column and whole cells.
"""
from __future__ import annotations

import datetime as _dt
import math
import os
import shutil
import sys
from typing import Any, Iterable, Mapping, Sequence

import click

from .._json import dumps
from ..inspect import compact_value

#: table cells longer than this are shortened with "…" unless --wide (JSON and exports never are)
MAX_CELL = 48
#: a text column is never shortened below this many characters (numbers are never shortened)
MIN_CELL = 6
_GAP = 2


def output_width() -> int | None:
    """Characters per line: ``$COLUMNS``, else the terminal's width; None when the standard
    output is not a terminal (piped output is not cut)."""
    env = os.environ.get("COLUMNS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        tty = sys.stdout.isatty()
    except (AttributeError, ValueError):
        tty = False
    return shutil.get_terminal_size().columns if tty else None


def ellipsize(text: str, width: int | None) -> str:
    """``text`` cut to ``width`` characters, the last one "…" when something was cut."""
    if width is None or len(text) <= width:
        return text
    return text[: max(0, width - 1)] + "…" if width > 0 else ""


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


def cell(v: Any, limit: int | None = MAX_CELL) -> str:
    """One table cell: blank for None, compact numbers, UTC times without the date noise, nested
    options as ``sgd(momentum=0.92)`` (:func:`hpo_mongo.inspect.compact_value`), at most ``limit``
    characters."""
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
    text = compact_value(v) if isinstance(v, (dict, list, tuple)) else str(v)
    return ellipsize(" ".join(text.split()), limit)


def _is_numeric(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _fit(natural: list[int], fixed: list[bool], width: int) -> tuple[list[int], int]:
    """Column widths that fit ``width`` and how many columns (from the left) are kept.

    Text columns are narrowed together, the widest first (never below :data:`MIN_CELL`);
    fixed columns (numbers, the first column) keep their width. Columns are dropped from the right only when
    even the narrowest text columns do not fit."""
    for keep in range(len(natural), 0, -1):
        nat, fix = natural[:keep], fixed[:keep]
        room = width - _GAP * (keep - 1)
        floor = [w if f else min(w, MIN_CELL) for w, f in zip(nat, fix, strict=True)]
        if sum(floor) > room:
            continue
        if sum(nat) <= room:
            return nat, keep
        cap = max(nat)  # the largest cap on text columns that fits
        lo, hi = 0, cap
        while lo < hi:
            mid = (lo + hi + 1) // 2
            used = sum(w if f else max(fl, min(w, mid)) for w, f, fl in zip(nat, fix, floor, strict=True))
            lo, hi = (mid, hi) if used <= room else (lo, mid - 1)
        return [w if f else max(fl, min(w, lo)) for w, f, fl in zip(nat, fix, floor, strict=True)], keep
    return natural[:1], 1


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str],
          headers: Mapping[str, str] | None = None, *, width: int | None = None, wide: bool = False) -> str:
    """An aligned text table: header, a dashed rule, one line per row; numbers right-aligned.

    Without ``wide``, cells hold at most :data:`MAX_CELL` characters and the table fits ``width``
    (None: no limit), see the module docstring."""
    headers = dict(headers or {})
    head = [headers.get(c, c) for c in columns]
    limit = None if wide else MAX_CELL
    cells = [[cell(r.get(c), limit) for c in columns] for r in rows]
    numeric = [all(_is_numeric(r.get(c)) or r.get(c) is None for r in rows) and any(_is_numeric(r.get(c)) for r in rows)
               for c in columns]
    widths = [max([len(h)] + [len(line[i]) for line in cells]) for i, h in enumerate(head)]
    keep = len(columns)
    if not wide and width is not None and columns:
        fixed = [num or i == 0 for i, num in enumerate(numeric)]  # the first column names the row
        widths, keep = _fit(widths, fixed, width)

    def fmt(values: Sequence[str]) -> str:
        parts = [ellipsize(v, w).rjust(w) if num else ellipsize(v, w).ljust(w)
                 for v, w, num in zip(values[:keep], widths, numeric, strict=False)]  # numeric: every column
        return ellipsize("  ".join(parts).rstrip(), width if not wide else None)

    out = [fmt(head), ellipsize("  ".join("-" * w for w in widths), width if not wide else None)]
    out.extend(fmt(line) for line in cells)
    if keep < len(columns):
        hidden = head[keep:]
        out.append(ellipsize(f"… {len(hidden)} more column{'s' if len(hidden) != 1 else ''} (--wide): "
                             + ", ".join(hidden), width))
    return "\n".join(out)


def echo_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str],
               headers: Mapping[str, str] | None = None, empty: str | None = None, *, wide: bool = False) -> None:
    """Print :func:`table` fitted to :func:`output_width` (``wide``: whole), or ``empty`` when no rows."""
    if not rows and empty is not None:
        click.echo(empty)
        return
    click.echo(table(rows, columns, headers, width=None if wide else output_width(), wide=wide))


def echo_lines(text: str, *, wide: bool = False) -> None:
    """Print ``text`` with each line cut to :func:`output_width` (``wide``: as is)."""
    width = None if wide else output_width()
    click.echo("\n".join(ellipsize(line, width) for line in text.splitlines()))


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
