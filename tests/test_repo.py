"""The project's promises about itself: the README's two commands are what CI runs, and the
``test`` extra installs every extra the default test run needs."""
from __future__ import annotations

import configparser
import importlib.util
import pathlib
import re
import subprocess
import sys
import textwrap

from tests.extras import TEST_EXTRAS

REPO = pathlib.Path(__file__).resolve().parents[1]


def _readme_command():
    spec = importlib.util.spec_from_file_location("readme_command", REPO / ".ci" / "readme_command.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.command


def test_readme_has_the_two_commands_and_ci_runs_the_test_one():
    command = _readme_command()
    assert command("quickstart") == "pip install -e . && python examples/quickstart.py"
    tests = command("tests")
    assert tests.startswith("pip install -e '.[test]'") and "python -m pytest" in tests
    assert "scripts/install-test-server" in tests
    ci = (REPO / ".ci" / "run").read_text()
    assert "readme_command.py tests" in ci and 'bash -c "$readme_test_command"' in ci
    assert "HPO_MONGO_REQUIRE_SERVER=1" in ci and "HPO_MONGO_REQUIRE_EXTRAS=1" in ci
    assert "python3 -m venv" in ci  # a fresh venv, as a newcomer's


def _requirements(cfg, extra):
    return {re.split(r"[<>=!~\[ ]", line.strip())[0].lower()
            for line in cfg["options.extras_require"][extra].splitlines() if line.strip()}


def test_test_extra_installs_every_extra_the_default_run_requires():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    test = _requirements(cfg, "test")
    for extra in TEST_EXTRAS:
        assert _requirements(cfg, extra) <= test, extra


def test_processes_that_only_evaluate_trials_do_not_load_scipy_or_pymongo():
    """ParallelTrials' workers and the CLI worker start without TPE's scipy or MongoTrials' pymongo
    (a faster start and a smaller process to fork for each trial); the names still resolve."""
    code = textwrap.dedent("""
        import sys
        import hpo_mongo.worker.local, hpo_mongo.cli.worker
        heavy = sorted(m for m in ("scipy", "pymongo", "hpo_mongo.tpe", "hpo_mongo.mongoexp") if m in sys.modules)
        assert not heavy, heavy
        import hpo_mongo
        from hpo_mongo import MongoTrials, tpe
        assert hpo_mongo.tpe is tpe and callable(tpe.suggest) and MongoTrials.__name__ == "MongoTrials"
        assert "tpe" in dir(hpo_mongo)
        try:
            hpo_mongo.no_such_name
        except AttributeError as e:
            assert "no_such_name" in str(e)
        else:
            raise AssertionError("no AttributeError")
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
