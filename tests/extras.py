"""Optional extras in tests: import the package or skip — or fail under CI.

``require("pandas", "pandas")`` returns the module when the ``pandas`` extra is installed; otherwise
the test is skipped with the ``pip install`` line that would enable it. With
``HPO_MONGO_REQUIRE_EXTRAS=1`` (set by ``.ci/run``) a missing extra fails the test instead, so a broken
install cannot go green, just as ``HPO_MONGO_REQUIRE_SERVER=1`` does for the test server.
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

ENV_REQUIRE_EXTRAS = "HPO_MONGO_REQUIRE_EXTRAS"


#: the extras ``pip install -e '.[test]'`` brings (setup.cfg); ``HPO_MONGO_REQUIRE_EXTRAS=1`` requires these.
#: The integrations tested in venvs of their own (``spark``, hyperopt-sklearn) are required by naming
#: them: ``HPO_MONGO_REQUIRE_EXTRAS=spark``.
TEST_EXTRAS = frozenset({"plot", "pandas", "sklearn"})


def extras_required(extra: str) -> bool:
    """Whether a missing ``extra`` fails the test (``HPO_MONGO_REQUIRE_EXTRAS``: 1, or a comma list)."""
    value = os.environ.get(ENV_REQUIRE_EXTRAS, "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return extra in TEST_EXTRAS
    return extra in {v.strip() for v in value.split(",") if v.strip()}


def require(module: str, extra: str) -> ModuleType:
    """``module`` imported, or skip the calling test (module) saying which extra provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        message = f"{module} is not installed ({e}): pip install -e '.[{extra}]'"
        if extras_required(extra):
            pytest.fail(f"{ENV_REQUIRE_EXTRAS}=1 but {message}", pytrace=False)
        pytest.skip(message, allow_module_level=True)
        raise AssertionError("unreachable") from None
