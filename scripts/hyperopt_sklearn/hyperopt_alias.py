"""Make ``import hyperopt`` / ``import hyperopt.X`` load ``hpo_mongo`` / ``hpo_mongo.X``.

Installed (with a one-line ``.pth`` file) only in the scratch venv of scripts/test-hyperopt-sklearn,
so that a library written for hyperopt runs unchanged on hpo_mongo. ``hyperopt.X`` is the very
module object ``hpo_mongo.X``: patching one patches the other.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys

SOURCE, TARGET = "hyperopt", "hpo_mongo"


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec):
        return importlib.import_module(self.target)

    def exec_module(self, module) -> None:  # the target module is already executed
        pass


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname != SOURCE and not fullname.startswith(SOURCE + "."):
            return None
        real = TARGET + fullname[len(SOURCE):]
        try:
            spec = importlib.util.find_spec(real)
        except ModuleNotFoundError:
            return None
        if spec is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(real),
                                              is_package=spec.submodule_search_locations is not None)


def install() -> None:
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())


install()
