"""Trials as CSV / JSON / JSON Lines files and pandas DataFrames.

CSV and DataFrames have one flat row per trial: columns ``tid, state, status, loss``, one column
per parameter holding its value (the choice option, not its index; empty when the parameter was
inactive), then ``attempt, owner, book_time, start_time, end_time, duration, error`` and
``result.<key>`` for scalar result entries (see :func:`hpo_mongo.inspect.to_rows`). JSON and JSON
Lines hold one trial record per trial, the shape ``hpo-mongo list --json`` prints (parameters
under ``params``, see :func:`hpo_mongo.inspect.trial_record`).

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
from .trials.base import BaseTrials

FORMATS = ("csv", "json", "jsonl")
_EXT = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def format_from_path(path: str | os.PathLike | None) -> str | None:
    """``csv`` / ``json`` / ``jsonl`` from a file name's extension (None when unknown)."""
    if path is None or str(path) == "-":
        return None
    return _EXT.get(os.path.splitext(str(path))[1].lower())


def choose_format(path: str | os.PathLike, fmt: str | None = None, *, default: str | None = None) -> str:
    """The export format: ``fmt`` when given, else the one the extension of ``path`` names; a
    path without an extension (or ``-``) gets ``default``. An unknown extension, or no extension
    and no default, raises :class:`InvalidParameterError` (nothing is written)."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise InvalidParameterError(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}")
        return fmt
    found = format_from_path(path)
    if found is not None:
        return found
    ext = "" if str(path) == "-" else os.path.splitext(str(path))[1]
    if not ext and default is not None:
        return default
    what = f"extension {ext!r}" if ext else "no extension"
    raise InvalidParameterError(
        f"cannot tell the format of {str(path)!r} ({what}): choose csv, json or jsonl (--format / format=) "
        f"or name the file .csv, .json or .jsonl")


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


def write_json(records: Sequence[Mapping[str, Any]], fp: Any) -> int:
    """A JSON array of trial records."""
    fp.write(dumps(list(records)) + "\n")
    return len(records)


def write_jsonl(records: Iterable[Mapping[str, Any]], fp: Any) -> int:
    """One compact JSON trial record per line."""
    n = 0
    for r in records:
        fp.write(dumps(r, indent=None) + "\n")
        n += 1
    return n


def _write(path: str | os.PathLike, write: Any) -> int:
    """``write(fp)`` into ``path`` (``-`` = standard output); an OSError names the file."""
    if str(path) == "-":
        import click
        buf = io.StringIO()
        n = write(buf)
        click.echo(buf.getvalue(), nl=False)
        return n
    try:
        with open(path, "w", newline="", encoding="utf-8") as fp:
            return write(fp)
    except OSError as e:  # e.g. a full disk: raised by write or close, without the file name
        if e.filename is None:
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise


def write_trials(docs: Sequence[Mapping[str, Any]], space: hi.SpaceInfo | None, path: str | os.PathLike,
                 fmt: str) -> int:
    """Write trial documents to ``path`` (``-`` = standard output) as ``fmt`` (``csv``: flat rows,
    ``json``/``jsonl``: trial records); returns the number of trials."""
    fmt = choose_format(path, fmt)
    space = space or hi.SpaceInfo()
    if fmt == "csv":
        columns, rows = hi.to_rows(docs, space, result_columns=True)
        return _write(path, lambda fp: write_csv(rows, columns, fp))
    records = [hi.trial_record(d, space) for d in docs]
    return _write(path, lambda fp: (write_json if fmt == "json" else write_jsonl)(records, fp))


# ----------------------------------------------------------------------------- Trials objects
def space_of(trials: Any, space: Any = None) -> hi.SpaceInfo:
    """The space that decodes ``trials``' values: ``space`` (an hp space or its JSON) when given,
    else what the store describes (:meth:`BaseTrials.space_description`), else none (values as
    stored: choice indices)."""
    if space is not None:
        return hi.SpaceInfo.from_space(space)
    if isinstance(trials, BaseTrials):
        return hi.SpaceInfo.from_json(trials.space_description())
    return hi.SpaceInfo()


def trial_rows(trials: Any, space: Any = None) -> tuple[list[str], list[dict]]:
    """``(columns, rows)`` for a Trials / MongoTrials / list of trial documents."""
    docs = list(getattr(trials, "trials", trials))
    return hi.to_rows(docs, space_of(trials, space), result_columns=True)


def export_trials(trials: Any, path: str | os.PathLike, *, format: str | None = None,
                  space: Any = None) -> int:
    """Write every trial to ``path`` (CSV rows, or JSON / JSON Lines trial records); the format
    comes from ``format`` or the extension (``.csv``, ``.json``, ``.jsonl``). Returns the number
    of trials written.

    Example: ``export_trials(trials, "trials.csv", space=space)``.
    """
    fmt = choose_format(path, format)
    return write_trials(list(getattr(trials, "trials", trials)), space_of(trials, space), path, fmt)


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

