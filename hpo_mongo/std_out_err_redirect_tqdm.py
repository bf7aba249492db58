"""``hyperopt.std_out_err_redirect_tqdm``: route ``print`` output through tqdm while a bar is shown."""
from __future__ import annotations

import contextlib
import sys
from typing import Any, Iterator

from tqdm import tqdm

__all__ = ["DummyTqdmFile", "std_out_err_redirect_tqdm"]


class DummyTqdmFile:
    """A file-like object writing through ``tqdm.write`` to ``file`` (so the bar is not broken)."""

    def __init__(self, file: Any):
        self.file = file

    def write(self, text: str) -> None:
        if text.rstrip():  # print() writes the newline separately
            tqdm.write(text, file=self.file)

    def flush(self) -> Any:
        return getattr(self.file, "flush", lambda: None)()

    def close(self) -> Any:
        return getattr(self.file, "close", lambda: None)()

    def isatty(self) -> bool:
        return getattr(self.file, "isatty", lambda: False)()


@contextlib.contextmanager
def std_out_err_redirect_tqdm() -> Iterator[Any]:
    """Redirect sys.stdout/stderr through tqdm; yields the original stdout (for the bar itself)."""
    original = sys.stdout, sys.stderr
    try:
        sys.stdout, sys.stderr = DummyTqdmFile(original[0]), DummyTqdmFile(original[1])
        yield original[0]
    finally:
        sys.stdout, sys.stderr = original
