"""The wheel and the sdist: built with ``python -m build``, checked with ``twine check``, holding
what they must (py.typed, README; not the test server's jars), and a wheel installed in a fresh
venv runs the quickstart, ``hpo-mongo-worker --help`` and one real trial on the test server.

Slow (a build and a venv with numpy and scipy): ``python -m pytest -m slow``.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(cmd, *, cwd, timeout=600, env=None):
    env = dict(os.environ if env is None else env)
    env.pop("PYTHONPATH", None)  # the installed package, never the checkout
    env.pop("HPO_MONGO_URL", None)
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert r.returncode == 0, f"{cmd}: exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    # build and twine come with the test extra, like pytest itself: missing, the tests fail
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", out, REPO], cwd=out)
    wheels, sdists = sorted(out.glob("*.whl")), sorted(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, list(out.iterdir())
    return wheels[0], sdists[0]


def test_twine_check(dist):
    r = _run([sys.executable, "-m", "twine", "check", "--strict", *dist], cwd=dist[0].parent)
    assert r.stdout.count("PASSED") == 2, r.stdout


def test_wheel_and_sdist_contents(dist):
    wheel, sdist = dist
    names = zipfile.ZipFile(wheel).namelist()
    assert "hpo_mongo/py.typed" in names and "hpo_mongo/cli/main.py" in names
    assert not [n for n in names if n.startswith(("tests/", "bench/"))]
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "hpo-mongo = hpo_mongo.cli.main:cli" in text
    # the worker is a script (bin/hpo-mongo-worker) so that it handles SIGTERM from its first line
    assert any(n.endswith(".data/scripts/hpo-mongo-worker") for n in names), names
    with tarfile.open(sdist) as tar:
        members = [m.split("/", 1)[1] for m in tar.getnames() if "/" in m]
    for needed in ("README.md", "setup.cfg", "pyproject.toml", "hpo_mongo/py.typed", "tests/conftest.py",
                   "tests/mongo_server.py", "tests/server/Launcher.java", "scripts/install-test-server",
                   "examples/quickstart.py", "docs/schema.md"):
        assert needed in members, needed
    assert not [m for m in members if m.startswith("tests/server/lib") or m.endswith((".jar", ".pyc"))]


def test_wheel_in_a_fresh_venv_runs_the_quickstart_and_a_worker(dist, tmp_path, mongo_url, mongo_db):
    wheel, _ = dist
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], cwd=tmp_path)
    py, bindir = venv / "bin" / "python", venv / "bin"
    _run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel], cwd=tmp_path)
    where = _run([py, "-c", "import hpo_mongo; print(hpo_mongo.__file__)"], cwd=tmp_path).stdout.strip()
    assert where.startswith(str(venv)), where  # the installed copy, not the checkout
    quick = _run([py, REPO / "examples" / "quickstart.py"], cwd=tmp_path, timeout=300).stdout
    assert "best loss:" in quick and "best parameters:" in quick
    help_text = _run([bindir / "hpo-mongo-worker", "--help"], cwd=tmp_path).stdout
    assert "--mongo" in help_text and "Exit codes" in help_text

    # one real trial: a driver and a worker, both from the venv
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent("""
        import sys
        import numpy as np
        from hpo_mongo import MongoTrials, fmin, hp
        trials = MongoTrials(sys.argv[1], exp_key="wheel", poll_interval=0.05)
        best = fmin(lambda p: (p["x"] - 1) ** 2, {"x": hp.uniform("x", -2, 2)}, max_evals=1, trials=trials,
                    rstate=np.random.default_rng(0), show_progressbar=False)
        print("done", trials.trials[0]["state"], trials.trials[0]["owner"])
    """))
    worker = subprocess.Popen([bindir / "hpo-mongo-worker", "--mongo", mongo_url, "--max-jobs", "1",
                               "--reserve-timeout", "60", "--poll-interval", "0.05"], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HPO_MONGO_URL")})
    try:
        out = _run([py, driver, mongo_url], cwd=tmp_path, timeout=120).stdout
        log, _ = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, log[-3000:]
    assert out.split()[:2] == ["done", "2"], out
    doc = mongo_db.jobs.find_one({"exp_key": "wheel"})
    assert doc["state"] == 2 and doc["owner"] == out.split()[2] and doc["result"]["status"] == "ok"
    assert "trial 0" in log and "claimed" in log
