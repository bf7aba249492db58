"""``hyperopt.utils``: the helpers hyperopt code imports from it.

Dotted-name loading (``load_tokens``, ``json_lookup``, ``json_call``, ``get_obj``), numerics
(``pmin_sampled``, ``fast_isin``, ``get_most_recent_inds``), time (``coarse_utcnow``: naive UTC
to the millisecond, as hyperopt) and directories (``working_dir``, ``temp_dir``,
``path_split_all``, ``get_closest_dir``).
"""
from __future__ import annotations

import contextlib
import datetime
import importlib
import os
import shutil
import uuid
from typing import Any, Iterator, Sequence

import cloudpickle
import numpy as np

from .space.nodes import Literal
from .pyll.base import dfs
from .worker.executor import working_dir as _working_dir

__all__ = ["import_tokens", "load_tokens", "json_lookup", "json_call", "get_obj", "pmin_sampled",
           "fast_isin", "get_most_recent_inds", "use_obj_for_literal_in_memo", "coarse_utcnow",
           "working_dir", "path_split_all", "get_closest_dir", "temp_dir"]


def _get_random_id() -> str:
    return uuid.uuid4().hex[-12:]


def import_tokens(tokens: Sequence[str]) -> tuple[Any, list[str]]:
    """Import the longest importable prefix of ``tokens``: ``(module, remaining tokens)``."""
    module, i = None, 0
    for i in range(len(tokens)):
        try:
            module = importlib.import_module(".".join(tokens[: i + 1]))
        except ImportError:
            return module, list(tokens[i:])
    return module, list(tokens[i + 1:])


def load_tokens(tokens: Sequence[str]) -> Any:
    """The object at the dotted path ``tokens`` (modules imported, then attributes followed)."""
    symbol, rest = import_tokens(tokens)
    for attr in rest:
        symbol = getattr(symbol, attr)
    return symbol


def json_lookup(json: str) -> Any:
    return load_tokens(json.split("."))


def json_call(json: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
    """Call the object at dotted path ``json`` with ``args``/``kwargs``."""
    if isinstance(json, (str, bytes)):
        return json_lookup(json.decode() if isinstance(json, bytes) else json)(*args, **(kwargs or {}))
    if isinstance(json, (dict, tuple, list)):
        raise NotImplementedError(f"{type(json).__name__} calling convention undefined", json)
    raise TypeError(json)


def get_obj(f: str, argfile: str | None = None, argstr: bytes | None = None, args: tuple = (),
            kwargs: dict | None = None) -> Any:
    """``json_call(f)`` with extra ``args``/``kwargs`` read from a pickled ``{"args", "kwargs"}``."""
    kwargs = dict(kwargs or {})
    if argfile is not None:
        with open(argfile, "rb") as fh:
            argstr = fh.read()
    argd = cloudpickle.loads(argstr) if argstr is not None else {}
    kwargs.update(argd.get("kwargs", {}))
    return json_call(f, args=tuple(args) + tuple(argd.get("args", ())), kwargs=kwargs)


def pmin_sampled(mean: Any, var: Any, n_samples: int = 1000, rng: np.random.Generator | None = None) -> np.ndarray:
    """Probability that each Gaussian ``N(mean[i], var[i])`` is the smallest, by sampling."""
    rng = np.random.default_rng(232342) if rng is None else rng
    mean = np.asarray(mean)
    samples = rng.standard_normal((n_samples, len(mean))) * np.sqrt(var) + mean
    wins = (samples == samples.min(axis=1, keepdims=True)).sum(axis=0)
    return wins.astype("float64") / wins.sum()


def fast_isin(X: Any, Y: Any) -> np.ndarray:  # noqa: N803
    """``Z[i] = X[i] in Y`` as a boolean array."""
    return np.isin(np.asarray(X), np.asarray(Y)) if len(Y) else np.zeros(len(X), bool)


def get_most_recent_inds(obj: Sequence[dict]) -> np.ndarray:
    """Indices of the newest ``version`` of each ``_id`` in ``obj``."""
    ids = [str(x["_id"]) for x in obj]
    versions = np.array([int(x["version"]) for x in obj])
    order = np.lexsort((versions, np.asarray(ids)))
    sorted_ids = np.asarray(ids, dtype=object)[order]
    last = np.append(np.nonzero(sorted_ids[1:] != sorted_ids[:-1])[0], len(order) - 1)
    return order[last]


def use_obj_for_literal_in_memo(expr: Any, obj: Any, lit: Any, memo: dict) -> dict:
    """``memo[node] = obj`` for every :class:`Literal` node of ``expr`` holding ``lit``."""
    for node in dfs(expr):
        if isinstance(node, Literal):
            try:
                if node.obj == lit:
                    memo[node] = obj
            except (TypeError, ValueError):  # e.g. arrays have no single truth value
                continue
    return memo


def coarse_utcnow() -> datetime.datetime:
    """Naive UTC now, truncated to milliseconds (what MongoDB stores)."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def working_dir(dir: str) -> Any:  # noqa: A002 - hyperopt's name
    """Context manager: run the block in ``dir``."""
    return _working_dir(dir)


def path_split_all(path: str) -> Iterator[str]:
    """The components of ``path``, first to last."""
    parts = []
    while True:
        path, name = os.path.split(path)
        if not name:
            break
        parts.append(name)
    return reversed(parts)


def get_closest_dir(workdir: str) -> tuple[str, str]:
    """The deepest existing directory on ``workdir``'s path, and the first missing component."""
    closest, missing = (os.sep if os.path.isabs(workdir) else ""), ""
    for part in path_split_all(workdir):
        missing = part
        if not os.path.isdir(os.path.join(closest, part)):
            break
        closest = os.path.join(closest, part)
    if closest == workdir:
        raise ValueError(f"{workdir!r} already exists")
    return closest, missing


@contextlib.contextmanager
def temp_dir(dir: str, erase_after: bool = False, with_sentinel: bool = True) -> Iterator[None]:  # noqa: A002
    """Create ``dir`` if missing; with ``erase_after``, remove what this call created afterwards
    (a ``<first new dir>.inuse`` sentinel marks it meanwhile)."""
    created, sentinel = False, None
    if not os.path.exists(dir):
        if os.pardir in dir:
            raise RuntimeError("workdir contains os.pardir ('..')")
        if erase_after and with_sentinel:
            closest, name = get_closest_dir(dir)
            sentinel = os.path.join(closest, name + ".inuse")
            open(sentinel, "w").close()
        os.makedirs(dir)
        created = True
    elif not os.path.isdir(dir):
        raise NotADirectoryError(dir)
    try:
        yield
    finally:
        if erase_after and created:
            shutil.rmtree(dir)
            if sentinel is not None:
                os.makedirs(dir, exist_ok=True)
                os.removedirs(dir)
                os.remove(sentinel)
