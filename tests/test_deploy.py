"""deploy/: every recipe parses and agrees with the real worker (flags, env names, grace period).

Docker, Kubernetes, systemd and Slurm cannot run here, so the recipes are checked statically: YAML
with a real YAML parser, the unit file as INI, the sbatch script with ``bash -n`` (and a dry run),
the Dockerfile instruction by instruction. The worker's flags come from its own ``--help`` (the
click command, via CliRunner) and its default grace period from the command's parameters; the
environment names from the hpo_mongo source.
"""
from __future__ import annotations

import configparser
import glob
import json
import os
import pickle
import re
import runpy
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
COMPOSE = DEPLOY / "docker-compose.yml"
UNIT = DEPLOY / "systemd" / "hpo-mongo-worker@.service"
UNIT_ENV = DEPLOY / "systemd" / "hpo-mongo-worker.env.example"
K8S = DEPLOY / "kubernetes"
SBATCH = DEPLOY / "slurm" / "workers.sbatch"
README = DEPLOY / "README.md"
EXAMPLE = REPO / "examples" / "distributed.py"

URL_ENV, SECRET_ENV = "HPO_MONGO_URL", "HPO_MONGO_SECRET"
#: stop timeouts must exceed the grace period by at least this much (the release to NEW and the
#: worker's exit take a moment; at exactly the grace period SIGKILL would race the release)
MARGIN = 5


# --------------------------------------------------------------------------- the real worker

@pytest.fixture(scope="module")
def worker_cmd():
    from hpo_mongo.cli.worker import main  # the real command: a broken import must fail, not skip
    return main


@pytest.fixture(scope="module")
def worker_help(worker_cmd) -> str:
    from click.testing import CliRunner
    result = CliRunner().invoke(worker_cmd, ["--help"], prog_name="hpo-mongo-worker")
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def help_flags(worker_help) -> set[str]:
    flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", worker_help))
    assert "--grace-period" in flags and "--poll-interval" in flags, worker_help
    return flags


@pytest.fixture(scope="module")
def default_grace(worker_cmd) -> float:
    params = [p for p in worker_cmd.params if "--grace-period" in p.opts]
    assert params, "the worker has no --grace-period option"
    default = params[0].default
    default = default() if callable(default) else default
    assert default is not None and float(default) > 0
    return float(default)


def flags_in(args) -> list[str]:
    """The ``--long-flags`` in an argument list (``--flag=value`` counts as ``--flag``)."""
    return [a.split("=", 1)[0] for a in args if isinstance(a, str) and a.startswith("--")]


def flag_value(args, flag):
    args = [str(a) for a in args]
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def assert_known_flags(args, help_flags, where):
    unknown = sorted(set(flags_in(args)) - help_flags)
    assert not unknown, f"{where} passes flags that `hpo-mongo-worker --help` does not list: {unknown}"


def assert_grace(stop_seconds, args, default_grace, where):
    grace = float(flag_value(args, "--grace-period") or default_grace)
    assert stop_seconds >= default_grace + MARGIN, (
        f"{where}: stop timeout {stop_seconds}s is not above the worker's default grace period {default_grace}s")
    assert stop_seconds >= grace + MARGIN, (
        f"{where}: stop timeout {stop_seconds}s is not above the --grace-period {grace}s it passes")


def package_source() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted((REPO / "hpo_mongo").rglob("*.py")))


def env_names_read_by_code() -> set[str]:
    """``HPO_MONGO_*`` names that appear as string literals in the package (os.environ / envvar=)."""
    return set(re.findall(r"""["'](HPO_MONGO_[A-Z0-9_]+)["']""", package_source()))


# --------------------------------------------------------------------------- parsers

def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """``[(INSTRUCTION, arguments)]`` with continuation lines joined and comments dropped."""
    out, buf = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue  # comment inside a continued instruction
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        instr, _, args = buf.partition(" ")
        out.append((instr.upper(), args.strip()))
        buf = ""
    assert not buf, "Dockerfile ends inside a continued line"
    return out


def compose_duration(value) -> float:
    """Compose durations: ``45s``, ``1m30s``, ``1h``, ``500ms`` (a bare number is seconds)."""
    if isinstance(value, (int, float)):
        return float(value)
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|ns)", str(value))
    assert parts and "".join(n + u for n, u in parts) == str(value).strip(), f"bad duration {value!r}"
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
    return sum(float(n) * scale[u] for n, u in parts)


def systemd_timespan(value: str) -> float:
    """systemd time spans: ``45``, ``45s``, ``1min 30s``, ``2m``, ``1h``."""
    value = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1, "sec": 1, "second": 1, "seconds": 1, "m": 60, "min": 60,
             "minute": 60, "minutes": 60, "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]+)", value)
    assert parts and all(u in scale for _, u in parts), f"bad time span {value!r}"
    return sum(float(n) * scale[u] for n, u in parts)


def read_unit(path: Path) -> tuple[configparser.ConfigParser, dict[str, list[str]]]:
    """The unit as INI (configparser), plus every value of repeated keys (Environment=...)."""
    ini = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",),
                                    comment_prefixes=("#", ";"), inline_comment_prefixes=None)
    ini.optionxform = str  # keys are case-sensitive
    ini.read_string(path.read_text(encoding="utf-8"), source=str(path))
    multi: dict[str, list[str]] = {}
    section = None
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        multi.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return ini, multi


def env_file_keys(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), f"bad line in {path.name}: {line!r}"
            out[key] = value
    return out


def k8s_docs(name: str) -> list[dict]:
    with open(K8S / name, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    assert docs, name
    for d in docs:
        assert {"apiVersion", "kind", "metadata"} <= set(d), (name, d)
    return docs


# --------------------------------------------------------------------------- all files

def test_all_recipe_files_exist():
    for path in (DOCKERFILE, COMPOSE, UNIT, UNIT_ENV, K8S / "worker-deployment.yaml",
                 K8S / "secret.example.yaml", K8S / "mongodb-statefulset.yaml", SBATCH, README, EXAMPLE):
        assert path.is_file(), path


def test_env_names_are_the_ones_the_code_reads():
    names = env_names_read_by_code()
    assert URL_ENV in names, f"no {URL_ENV!r} literal in hpo_mongo/ (the URL env name changed?)"
    assert SECRET_ENV in names, f"no {SECRET_ENV!r} literal in hpo_mongo/ (the secret env name changed?)"


def test_worker_env_uses_only_names_the_code_reads():
    """Every HPO_MONGO_* variable handed to a worker is one the package reads (no typos)."""
    names = env_names_read_by_code()
    compose = yaml.safe_load(COMPOSE.read_text())
    handed = set(compose["services"]["worker"]["environment"]) | set(env_file_keys(UNIT_ENV))
    deployment = next(d for d in k8s_docs("worker-deployment.yaml") if d["kind"] == "Deployment")
    for c in deployment["spec"]["template"]["spec"]["containers"]:
        handed |= {e["name"] for e in c.get("env", [])}
    handed = {n for n in handed if n.startswith("HPO_MONGO_")}
    assert {URL_ENV, SECRET_ENV} <= handed
    assert handed <= names, f"env names the code never reads: {sorted(handed - names)}"


# --------------------------------------------------------------------------- Dockerfile

def test_dockerfile_image_and_entrypoint():
    instrs = dockerfile_instructions(DOCKERFILE.read_text(encoding="utf-8"))
    kinds = [k for k, _ in instrs]
    assert set(kinds) <= {"FROM", "ENV", "WORKDIR", "COPY", "RUN", "USER", "ENTRYPOINT", "CMD", "STOPSIGNAL",
                          "LABEL", "ARG", "EXPOSE", "HEALTHCHECK", "VOLUME"}, kinds
    base = [a for k, a in instrs if k == "FROM"]
    assert len(base) == 1 and re.fullmatch(r"python:3\.\d+-slim(-\w+)?", base[0].split()[0]), base
    runs = " && ".join(a for k, a in instrs if k == "RUN")
    assert re.search(r"""pip install (--\S+ )*(\.|(["']?)\.\[[\w,]*\]\3)(\s|$)""", runs), \
        "the package is not installed with `pip install .`"
    assert re.search(r"""pip install (--\S+ )*(["']?)\.\[([\w,]*,)?plot(,[\w,]*)?\]\2""", runs), \
        "the image ships `hpo-mongo plot`: it needs the plot extra"
    # non-root: the last USER is neither root nor uid 0, and it comes after the installation
    users = [(i, a) for i, (k, a) in enumerate(instrs) if k == "USER"]
    assert users, "the image runs as root"
    last_user_at, user = users[-1]
    assert user.split(":")[0] not in ("root", "0"), user
    assert last_user_at > max(i for i, (k, _) in enumerate(instrs) if k == "RUN")
    # exec-form entrypoint: the worker is PID 1 and gets SIGTERM itself
    entry = [a for k, a in instrs if k == "ENTRYPOINT"]
    assert entry and json.loads(entry[-1]) == ["hpo-mongo-worker"], entry
    cmd = [a for k, a in instrs if k == "CMD"]
    if cmd:
        assert json.loads(cmd[-1]) == [] or "--mongo" not in json.loads(cmd[-1])
    assert ("STOPSIGNAL", "SIGTERM") in instrs or "STOPSIGNAL" not in kinds
    # the URL and the secret come from the run-time environment, never from the image
    for k, a in instrs:
        if k in ("ENV", "ARG"):
            assert URL_ENV not in a and SECRET_ENV not in a, (k, a)


def test_dockerfile_console_script_is_declared():
    setup_cfg = (REPO / "setup.cfg").read_text(encoding="utf-8")
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    declared = (re.search(r"^\s*hpo-mongo-worker\s*=\s*hpo_mongo\.cli\.worker:main\s*$", setup_cfg, re.M)
                or "bin/hpo-mongo-worker" in setup_cfg or "hpo-mongo-worker" in pyproject)
    assert declared, "`pip install .` would not install a hpo-mongo-worker command"


def test_dockerfile_copies_files_that_exist():
    instrs = dockerfile_instructions(DOCKERFILE.read_text(encoding="utf-8"))
    copies = [a for k, a in instrs if k in ("COPY", "ADD")]
    assert copies
    for args in copies:
        if args.startswith("["):
            parts = json.loads(args)
        else:
            parts = [p for p in shlex.split(args) if not p.startswith("--")]
        sources = parts[:-1]
        assert sources, args
        for src in sources:
            assert not src.startswith(("/", "..")), f"COPY source outside the build context: {src}"
            assert glob.glob(str(REPO / src)), f"the Dockerfile copies {src!r}, which is not in the repository"
    # the build needs setup.cfg / pyproject.toml and the package itself in the image
    copied = " ".join(copies)
    for needed in ("setup.cfg", "pyproject.toml", "hpo_mongo"):
        assert needed in copied, needed
    # files setup.cfg needs at install time (long description, scripts) must be copied too
    setup_cfg = (REPO / "setup.cfg").read_text(encoding="utf-8")
    needed_files = re.findall(r"long_description\s*=\s*file:\s*(\S+)", setup_cfg)
    scripts = re.search(r"^scripts\s*=\s*\n((?:[ \t]+\S.*\n?)+)", setup_cfg, re.M)
    if scripts:
        needed_files += scripts.group(1).split()
    for path in needed_files:
        assert any(path == src or path.startswith(src.rstrip("/") + "/") for src in copied.split()), (
            f"setup.cfg needs {path}, which the Dockerfile does not copy")


# --------------------------------------------------------------------------- docker compose

@pytest.fixture(scope="module")
def compose() -> dict:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and {"mongo", "driver", "worker"} <= set(data["services"])
    return data


def test_compose_mongo(compose):
    mongo = compose["services"]["mongo"]
    assert mongo["image"] == "mongo:7"
    named = [v.split(":")[0] for v in mongo["volumes"] if isinstance(v, str)]
    assert any(n in (compose.get("volumes") or {}) for n in named), "MongoDB data is not on a named volume"
    assert any(v.endswith(":/data/db") for v in mongo["volumes"])
    hc = mongo["healthcheck"]
    assert hc["test"][0] in ("CMD", "CMD-SHELL") and "ping" in " ".join(hc["test"])


def test_compose_build_points_at_the_dockerfile(compose):
    for name in ("driver", "worker"):
        svc = compose["services"][name]
        build = svc["build"]
        context = (COMPOSE.parent / build["context"]).resolve()
        assert context == REPO, f"{name}: build context {context} is not the repository root"
        assert (context / build["dockerfile"]).resolve() == DOCKERFILE.resolve()
        assert svc["image"] == compose["services"]["worker"]["image"]


def test_compose_worker(compose, help_flags, default_grace):
    worker = compose["services"]["worker"]
    assert worker["depends_on"]["mongo"]["condition"] == "service_healthy"
    # scalable: no fixed name, no published host port
    assert "container_name" not in worker and "ports" not in worker
    assert "entrypoint" not in worker, "workers must run the image's hpo-mongo-worker entrypoint"
    args = worker.get("command", [])
    assert isinstance(args, list), "use the list form for command"
    assert_known_flags(args, help_flags, "docker-compose worker")
    assert "--mongo" not in flags_in(args)
    env = worker["environment"]
    assert URL_ENV in env and SECRET_ENV in env
    assert str(worker["restart"]).startswith("on-failure")
    assert worker.get("stop_signal", "SIGTERM") == "SIGTERM"
    assert_grace(compose_duration(worker["stop_grace_period"]), args, default_grace, "docker-compose worker")


def test_compose_driver_runs_the_example(compose):
    driver = compose["services"]["driver"]
    assert driver["depends_on"]["mongo"]["condition"] == "service_healthy"
    entry = driver["entrypoint"]
    assert entry[0].startswith("python")
    script = entry[1]
    instrs = dockerfile_instructions(DOCKERFILE.read_text(encoding="utf-8"))
    copied_to = {shlex.split(a)[-1]: shlex.split(a)[:-1] for k, a in instrs if k == "COPY"}
    assert script in copied_to, f"the driver runs {script}, which the image does not contain"
    assert all((REPO / src).is_file() for src in copied_to[script])
    assert URL_ENV in driver["environment"] and SECRET_ENV in driver["environment"]
    # the driver and the workers sign/check with the same secret and talk to the same server
    assert driver["environment"][URL_ENV] == compose["services"]["worker"]["environment"][URL_ENV]
    assert driver["environment"][SECRET_ENV] == compose["services"]["worker"]["environment"][SECRET_ENV]
    assert "mongo:27017" in driver["environment"][URL_ENV]


def test_compose_config_with_docker_if_available():
    docker = shutil.which("docker")
    if not docker or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("docker compose is not installed")
    r = subprocess.run([docker, "compose", "-f", str(COMPOSE), "config", "--quiet"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


# --------------------------------------------------------------------------- systemd

def test_systemd_unit(help_flags, default_grace):
    ini, multi = read_unit(UNIT)
    assert {"Unit", "Service", "Install"} <= set(ini.sections())
    svc = ini["Service"]
    exec_start = shlex.split(svc["ExecStart"])
    assert Path(exec_start[0]).name == "hpo-mongo-worker"
    assert_known_flags(exec_start[1:], help_flags, "systemd ExecStart")
    assert "--mongo" not in flags_in(exec_start)
    assert svc["Restart"] in ("on-failure", "always")
    assert svc["KillSignal"] == "SIGTERM"
    # only the worker gets SIGTERM, not its trial's child process
    assert svc["KillMode"] == "mixed"
    assert "2" in svc.get("RestartPreventExitStatus", "").split(), "exit 2 (usage error) should not restart"
    assert_grace(systemd_timespan(svc["TimeoutStopSec"]), exec_start, default_grace, "systemd TimeoutStopSec")
    # a template unit: one instance per GPU
    assert "CUDA_VISIBLE_DEVICES=%i" in multi["Service.Environment"]
    assert svc["EnvironmentFile"].lstrip("-")
    assert ini["Install"]["WantedBy"]


def test_systemd_env_example():
    keys = env_file_keys(UNIT_ENV)
    assert URL_ENV in keys and keys[URL_ENV].startswith(("mongodb://", "mongodb+srv://"))
    assert SECRET_ENV in keys
    # every $VAR the unit expands is defined in the example environment file
    _, multi = read_unit(UNIT)
    used = set(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", " ".join(multi["Service.ExecStart"])))
    assert used <= set(keys), used - set(keys)


def test_systemd_analyze_verify_if_available(tmp_path):
    tool = shutil.which("systemd-analyze")
    if not tool:
        pytest.skip("systemd-analyze is not installed")
    unit = tmp_path / "hpo-mongo-worker@0.service"
    unit.write_text(UNIT.read_text())
    r = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=30)
    problems = [line for line in (r.stdout + r.stderr).splitlines()
                if line.strip() and "hpo-mongo-worker@0.service" in line
                and "is not executable" not in line and "No such file" not in line]
    assert not problems, problems


# --------------------------------------------------------------------------- kubernetes

@pytest.fixture(scope="module")
def secret() -> dict:
    docs = k8s_docs("secret.example.yaml")
    assert len(docs) == 1 and docs[0]["kind"] == "Secret"
    return docs[0]


def test_k8s_worker_deployment(help_flags, default_grace, secret):
    docs = k8s_docs("worker-deployment.yaml")
    dep = next(d for d in docs if d["kind"] == "Deployment")
    assert dep["apiVersion"] == "apps/v1"
    assert isinstance(dep["spec"]["replicas"], int) and dep["spec"]["replicas"] >= 1
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    pod = dep["spec"]["template"]["spec"]
    assert pod.get("restartPolicy", "Always") == "Always"
    (c,) = pod["containers"]
    assert "hpo-mongo-worker" in c["image"]
    args = c.get("args", [])
    assert "command" not in c or Path(c["command"][0]).name == "hpo-mongo-worker"
    assert_known_flags(args, help_flags, "kubernetes worker args")
    assert "--mongo" not in flags_in(args)
    assert_grace(pod["terminationGracePeriodSeconds"], args, default_grace, "kubernetes terminationGracePeriodSeconds")
    # URL and payload secret from the Secret, under keys the example Secret defines
    env = {e["name"]: e for e in c["env"]}
    secret_keys = set(secret.get("stringData") or {}) | set(secret.get("data") or {})
    for name in (URL_ENV, SECRET_ENV):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret_keys, ref
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c["resources"][kind]), kind
    probe = c["livenessProbe"]
    assert "exec" in probe and probe["exec"]["command"], probe
    assert probe.get("failureThreshold", 3) * probe.get("periodSeconds", 10) >= 30
    # runs as the image's unprivileged user
    uid = re.search(r"--uid (\d+)", DOCKERFILE.read_text()).group(1)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert str(pod["securityContext"]["runAsUser"]) == uid
    for m in c.get("volumeMounts", []):
        assert m["name"] in {v["name"] for v in pod["volumes"]}
    if "--workdir" in args:
        assert flag_value(args, "--workdir") in {m["mountPath"] for m in c["volumeMounts"]}


def test_k8s_mongodb_statefulset(secret):
    docs = k8s_docs("mongodb-statefulset.yaml")
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    svc = next(d for d in docs if d["kind"] == "Service")
    assert sts["spec"]["replicas"] == 1 and sts["spec"]["serviceName"] == svc["metadata"]["name"]
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["selector"].items() <= sts["spec"]["template"]["metadata"]["labels"].items()
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    assert c["image"] == "mongo:7"
    (pvc,) = sts["spec"]["volumeClaimTemplates"]
    assert pvc["spec"]["resources"]["requests"]["storage"]
    assert any(m["name"] == pvc["metadata"]["name"] and m["mountPath"] == "/data/db" for m in c["volumeMounts"])
    # the example Secret's URL points at this service
    url = (secret.get("stringData") or {})["url"]
    assert url.startswith("mongodb://") and svc["metadata"]["name"] in url


# --------------------------------------------------------------------------- slurm

def sbatch_directives() -> dict[str, str]:
    out = {}
    for line in SBATCH.read_text(encoding="utf-8").splitlines():
        m = re.match(r"#SBATCH\s+(--[a-z-]+)(?:[= ](\S+))?", line)
        if m:
            out[m.group(1)] = m.group(2) or ""
    return out


def test_sbatch_parses():
    assert SBATCH.read_text().startswith("#!/bin/bash")
    r = subprocess.run(["bash", "-n", str(SBATCH)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


def test_sbatch_directives(default_grace):
    d = sbatch_directives()
    assert re.fullmatch(r"\d+-\d+(%\d+)?", d["--array"])
    for stream in ("--output", "--error"):
        assert "%A" in d[stream] and "%a" in d[stream], f"{stream} is not per task: {d[stream]}"
    assert d["--time"]
    # SIGTERM to the batch shell (which exec's the worker) early enough for the grace period
    m = re.fullmatch(r"B:TERM@(\d+)", d["--signal"])
    assert m, d["--signal"]
    assert int(m.group(1)) >= default_grace + MARGIN
    text = SBATCH.read_text()
    assert re.search(r'^exec "\$worker"', text, re.M), "the worker must replace the batch shell (exec)"


def run_sbatch(tmp_path, env_extra, fake_squeue=None):
    out = tmp_path / "argv.txt"
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "HPO_ENV_FILE": str(tmp_path / "none.env"),
           "TMPDIR": str(tmp_path), "HPO_DRY_RUN": str(out), "SLURM_JOB_ID": "4242",
           "SLURM_ARRAY_JOB_ID": "4242", "SLURM_ARRAY_TASK_ID": "7", **env_extra}
    if fake_squeue is not None:
        bindir = tmp_path / "bin"
        bindir.mkdir(exist_ok=True)
        (bindir / "squeue").write_text(f"#!/bin/sh\necho '{fake_squeue}'\n")
        (bindir / "squeue").chmod(0o755)
        env["PATH"] = f"{bindir}:{env['PATH']}"
    r = subprocess.run(["bash", str(SBATCH)], env=env, capture_output=True, text=True, timeout=30)
    argv = out.read_text().splitlines() if out.exists() else None
    return r, argv


def test_sbatch_dry_run_flags_and_last_job_timeout(tmp_path, help_flags, default_grace):
    end = int(time.time()) + 3600
    r, argv = run_sbatch(tmp_path, {URL_ENV: "mongodb://db:27017/hpo", "SLURM_JOB_END_TIME": str(end),
                                    "HPO_TRIAL_RESERVE": "600", "HPO_EXP_KEY": "exp1",
                                    "HPO_MONGO_SECRET_FILE": "/run/secret",
                                    "HPO_WORKER_ARGS": "--max-jobs 10"})
    assert r.returncode == 0, r.stderr
    assert argv[0] == "hpo-mongo-worker"
    args = argv[1:]
    assert_known_flags(args, help_flags, "workers.sbatch")
    assert "--mongo" not in args
    assert 2990 <= float(flag_value(args, "--last-job-timeout")) <= 3000
    assert float(flag_value(args, "--poll-interval")) > 0
    assert flag_value(args, "--exp-key") == "exp1"
    assert flag_value(args, "--secret-file") == "/run/secret"
    assert flag_value(args, "--max-jobs") == "10"
    assert "4242_7" in flag_value(args, "--workdir")
    signal_at = int(sbatch_directives()["--signal"].split("@")[1])
    assert signal_at >= float(flag_value(args, "--grace-period") or default_grace) + MARGIN


@pytest.mark.parametrize("left,expected", [("1-02:03:04", 93784), ("02:03:04", 7384), ("03:04", 184),
                                           ("45", 2700), ("UNLIMITED", None)])
def test_sbatch_time_left_from_squeue(tmp_path, left, expected):
    r, argv = run_sbatch(tmp_path, {URL_ENV: "mongodb://db:27017/hpo", "HPO_TRIAL_RESERVE": "0"},
                         fake_squeue=left)
    assert r.returncode == 0, r.stderr
    value = flag_value(argv[1:], "--last-job-timeout")
    if expected is None:
        assert value is None
    else:
        assert int(value) == max(expected, 60)


def test_sbatch_without_url_is_a_usage_error(tmp_path):
    r, argv = run_sbatch(tmp_path, {})
    assert r.returncode == 2 and argv is None
    assert URL_ENV in r.stderr


# --------------------------------------------------------------------------- README and example

def test_readme_covers_the_essentials():
    text = README.read_text(encoding="utf-8")
    for needle in ("hpo-mongo status", "--scale worker=", "kubectl scale", "sbatch", "systemctl",
                   URL_ENV, SECRET_ENV, "--grace-period"):
        assert needle in text, needle


def test_readme_worker_flags_exist(help_flags):
    """Flags the README attributes to the worker are real (``hpo-mongo-worker --x`` or a lone ``--x``)."""
    text = README.read_text(encoding="utf-8")
    mentioned = set(re.findall(r"hpo-mongo-worker(?: [^`\n]*?)?(--[a-z][a-z0-9-]*)", text))
    mentioned |= set(re.findall(r"`(--[a-z][a-z0-9-]*)(?:[ =][^`]*)?`", text))
    not_worker = {"--scale", "--array", "--time", "--gres", "--signal", "--batch", "--replicas", "--no-recreate",
                  "--build", "--no-deps", "--rm", "--entrypoint", "--from-literal"}
    unknown = sorted(mentioned - not_worker - help_flags)
    assert not unknown, f"README mentions worker flags that do not exist: {unknown}"


def test_example_driver_objective_ships_by_value():
    cloudpickle = pytest.importorskip("cloudpickle")
    ns = runpy.run_path(str(EXAMPLE), run_name="hpo_example_not_main")
    fn = ns["noisy_branin"]
    clone = pickle.loads(cloudpickle.dumps(fn))
    result = clone({"x": 3.14159265, "y": 2.275, "noise": 0.0})
    assert result["status"] == "ok" and abs(result["loss"] - 0.397887) < 1e-4
    assert URL_ENV in EXAMPLE.read_text()


def test_example_driver_without_url_exits_2(monkeypatch, capsys):
    monkeypatch.delenv(URL_ENV, raising=False)
    ns = runpy.run_path(str(EXAMPLE), run_name="hpo_example_not_main")
    assert ns["main"]() == 2
    assert URL_ENV in capsys.readouterr().err
