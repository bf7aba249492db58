"""Trials as flat rows: CSV / JSON / JSON Lines files and pandas DataFrames.

One row per trial; columns ``tid, state, status, loss``, one column per parameter holding its
value (the choice option, not its index; empty when the parameter was inactive), then
``attempt, owner, book_time, start_time, end_time, duration, error`` and ``result.<key>`` for
scalar result entries (see :func:`hpo_mongo.inspect.to_rows`).

Works for in-memory ``Trials``, ``MongoTrials`` (whose experiment document supplies the space)
and plain lists of trial documents. Pass ``space`` (the hp space, or its JSON description) to
turn choice indices into option values when the store does not know it.
"""
from __future__ import annotations

import csv
import datetime as _dt
import io
import os
from typing import Any, Iterable, Mapping, Sequence

from . import inspect as hi
from ._json import dumps, iso
from .exceptions import InvalidParameterError

FORMATS = ("csv", "json", "jsonl")
_EXT = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def format_from_path(path: str | os.PathLike | None) -> str | None:
    """``csv`` / ``json`` / ``jsonl`` from a file name's extension (None when unknown)."""
    if path is None or str(path) == "-":
        return None
    return _EXT.get(os.path.splitext(str(path))[1].lower())


def _csv_cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)  # round-trips exactly
    if isinstance(v, _dt.datetime):
        return iso(v)
    return hi.flat_value(v)


def write_csv(rows: Iterable[Mapping[str, Any]], columns: Sequence[str], fp: Any) -> int:
    """CSV with a header line; None is an empty cell, floats keep full precision, times ISO 8601."""
    w = csv.writer(fp, lineterminator="\n")
    w.writerow(columns)
    n = 0
    for r in rows:
        w.writerow([_csv_cell(r.get(c)) for c in columns])
        n += 1
    return n


def write_json(rows: Iterable[Mapping[str, Any]], columns: Sequence[str], fp: Any) -> int:
    """A JSON array of objects with the keys in ``columns`` order."""
    rows = [{c: r.get(c) for c in columns} for r in rows]
    fp.write(dumps(rows) + "\n")
    return len(rows)


def write_jsonl(rows: Iterable[Mapping[str, Any]], columns: Sequence[str], fp: Any) -> int:
    """One compact JSON object per line."""
    n = 0
    for r in rows:
        fp.write(dumps({c: r.get(c) for c in columns}, indent=None) + "\n")
        n += 1
    return n


_WRITERS = {"csv": write_csv, "json": write_json, "jsonl": write_jsonl}


def write_rows(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], path: str | os.PathLike,
               fmt: str) -> int:
    """Write rows to ``path`` (``-`` = standard output) in ``fmt``; returns the number of rows."""
    if fmt not in _WRITERS:
        raise InvalidParameterError(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    if str(path) == "-":
        import click
        buf = io.StringIO()
        n = _WRITERS[fmt](rows, columns, buf)
        click.echo(buf.getvalue(), nl=False)
        return n
    with open(path, "w", newline="", encoding="utf-8") as fp:
        return _WRITERS[fmt](rows, columns, fp)


# ----------------------------------------------------------------------------- Trials objects
def _space_of(trials: Any, space: Any) -> hi.SpaceInfo:
    if space is not None:
        return hi.SpaceInfo.from_space(space)
    if getattr(trials, "space_json", None):  # a store that remembers its space's JSON description
        return hi.SpaceInfo.from_json(trials.space_json)
    handle = getattr(trials, "handle", None)  # MongoTrials: the experiment document has the space
    if handle is not None and hasattr(handle, "experiment"):
        try:
            doc = handle.experiment(getattr(trials, "exp_key", None))
        except Exception:  # noqa: BLE001 - fall back to raw values
            doc = None
        if doc:
            return hi.SpaceInfo.from_json(doc.get("space"))
    return hi.SpaceInfo()


def trial_rows(trials: Any, space: Any = None) -> tuple[list[str], list[dict]]:
    """``(columns, rows)`` for a Trials / MongoTrials / list of trial documents."""
    docs = list(getattr(trials, "trials", trials))
    return hi.to_rows(docs, _space_of(trials, space), result_columns=True)


def export_trials(trials: Any, path: str | os.PathLike, *, format: str | None = None,
                  space: Any = None) -> int:
    """Write one row per trial to ``path``; the format comes from ``format`` or the extension
    (``.csv``, ``.json``, ``.jsonl``). Returns the number of trials written.

    Example: ``export_trials(trials, "trials.csv", space=space)``.
    """
    fmt = format or format_from_path(path)
    if fmt is None:
        raise InvalidParameterError(
            f"cannot tell the format of {str(path)!r}: pass format='csv', 'json' or 'jsonl' "
            "or use one of the extensions .csv, .json, .jsonl")
    columns, rows = trial_rows(trials, space)
    return write_rows(rows, columns, path, fmt)


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        from .exceptions import MissingExtra
        raise MissingExtra("pandas is not installed: pip install 'hpo_mongo[pandas]' "
                           "to use to_dataframe()") from None
    return pandas


def to_dataframe(trials: Any, space: Any = None) -> Any:
    """A pandas DataFrame, one row per trial (the export columns; times as UTC timestamps,
    inactive parameters as NaN/None). Needs the ``pandas`` extra."""
    pd = _pandas()
    columns, rows = trial_rows(trials, space)
    rows = [{k: hi.flat_value(v) for k, v in r.items()}
            for r in rows]  # nested options as JSON strings: hashable, groupable
    df = pd.DataFrame.from_records(rows, columns=columns)
    for c in ("book_time", "start_time", "end_time"):
        if c in df:
            df[c] = pd.to_datetime(df[c], utc=True)
    return df

