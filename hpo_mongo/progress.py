"""Progress reporting for fmin (hyperopt's ``progress`` module).

A progress callback is a context manager factory ``callback(initial=, total=)`` yielding an
object with ``update(n)``; fmin sets its ``postfix`` (``set_postfix_str`` when it has one) to
``"best loss: <x>"``. ``fmin(show_progressbar=callback)`` uses a custom one.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Any, Iterator

from tqdm import tqdm

from .std_out_err_redirect_tqdm import std_out_err_redirect_tqdm

__all__ = ["tqdm_progress_callback", "no_progress_callback", "default_callback"]


@contextlib.contextmanager
def tqdm_progress_callback(initial: int, total: int) -> Iterator[Any]:
    """A tqdm bar of finished trials (no total shown when ``max_evals`` is unbounded); prints of
    the objective go through tqdm meanwhile."""
    with std_out_err_redirect_tqdm() as stdout:
        with tqdm(total=None if total == sys.maxsize else total, initial=initial, file=stdout,
                  dynamic_ncols=True, unit="trial") as bar:
            bar.set_postfix_str("best loss: ?")
            yield bar


class _NoProgress:
    postfix = ""

    def update(self, n: int) -> None:
        pass


@contextlib.contextmanager
def no_progress_callback(initial: int, total: int) -> Iterator[Any]:
    """Report nothing."""
    yield _NoProgress()


default_callback = tqdm_progress_callback
