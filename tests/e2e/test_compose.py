"""docker-compose.yml and the Dockerfile, checked without a Docker engine.

The structure is validated as data, every command is resolved against the code it names, and
the `trustly`, `cms` and `cms-rotator` services are run as local processes with exactly the
command and environment compose would give them, bar three substitutions: free ports, SQLite
files instead of PostgreSQL, and 127.0.0.1 for the `trustly` host name.
"""

from __future__ import annotations

import importlib
import io
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner
from flask import Flask
from rich.console import Console

from harness.cli import main as scanpay_main
from harness.rotate import RotateOptions, rotation_pass, run_rotation, stop_on_signals
from sim_cms.settings import TrustlyLink, load_cms_settings
from sim_trustly.settings import load_trustly_settings
from simkit.clock import monotonic
from simkit.db import sqlite_url
from tests.conftest import CmsFactory
from tests.e2e.processes import SCANPAY, free_port, running

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
DOCKERFILE = (REPO / "Dockerfile").read_text()
SIM_SERVICES = ("trustly", "cms", "cms-rotator")
RESERVED_PORTS = {5432, 6379, 5672, 1883, 4222, 3306, 8710, 8720}
_VARIABLE = re.compile(r"\$(?:\$|\{(\w+)(?:(:?-)([^}]*))?\})")


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's `${VAR}`, `${VAR:-default}`, `${VAR-default}` and `$$`, through lists and maps.

    `:-` falls back on the default when VAR is unset or empty, `-` only when it is unset
    (so `SCANPAY_ADMIN_TOKEN=` can switch the control API off).
    """
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, operator, default = match.groups()
        if name is None:
            return "$"
        if name in env and (env[name] or operator != ":-"):
            return env[name]
        if operator is None:
            raise AssertionError(f"${{{name}}} has no default: compose up would need it set")
        return default

    return _VARIABLE.sub(substitute, value)


DEFAULTS: dict[str, Any] = interpolate(SERVICES, {})


# --- (a) structure -------------------------------------------------------------------------

def test_compose_file_uses_the_compose_spec_without_a_version_key() -> None:
    assert "version" not in COMPOSE
    assert set(SERVICES) >= {"postgres", *SIM_SERVICES, "locust-master", "locust-worker"}


def test_every_service_has_an_image_or_a_build_of_an_existing_stage() -> None:
    stages = set(re.findall(r"^FROM \S+ AS (\w+)", DOCKERFILE, flags=re.MULTILINE))
    for name, service in SERVICES.items():
        assert "image" in service or "build" in service, name
        if "build" in service:
            assert service["build"]["target"] in stages, name


def test_sims_publish_the_design_ports_by_default() -> None:
    assert DEFAULTS["trustly"]["ports"] == ["8710:8710"]
    assert DEFAULTS["cms"]["ports"] == ["8720:8720"]
    assert "0.0.0.0:8710" in DEFAULTS["trustly"]["command"]
    assert "0.0.0.0:8720" in DEFAULTS["cms"]["command"]
    assert DEFAULTS["cms"]["environment"]["SCANPAY_CMS_TRUSTLY_URL"] == "http://trustly:8710"


def test_depends_on_names_services_that_exist_and_report_health() -> None:
    for name, service in SERVICES.items():
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
            assert rule["condition"] == "service_healthy"
            assert "healthcheck" in SERVICES[dependency], dependency
    for name in SIM_SERVICES:
        assert SERVICES[name]["depends_on"], name


def test_load_generators_only_start_in_the_load_profile() -> None:
    for name, service in SERVICES.items():
        expected = ["load"] if name.startswith("locust") else None
        assert service.get("profiles") == expected, name


def test_each_sim_uses_its_own_postgres_database_created_at_init() -> None:
    created = re.findall(r"CREATE DATABASE (\w+)", (REPO / "docker/initdb.sql").read_text())
    assert sorted(created) == ["cms", "trustly"]
    postgres = SERVICES["postgres"]
    assert postgres["image"].startswith("postgres:15")
    assert postgres["environment"]["POSTGRES_HOST_AUTH_METHOD"] == "trust"
    assert any("docker/initdb.sql:/docker-entrypoint-initdb.d/" in v for v in postgres["volumes"])
    env = {name: DEFAULTS[name]["environment"] for name in SIM_SERVICES}
    assert env["trustly"]["SCANPAY_TRUSTLY_DATABASE_URL"].endswith("@postgres:5432/trustly")
    for name in ("cms", "cms-rotator"):
        assert env[name]["SCANPAY_CMS_DATABASE_URL"].endswith("@postgres:5432/cms")


def test_sim_environment_names_only_variables_the_settings_loaders_read() -> None:
    read = set()
    for module in ("sim_trustly/settings.py", "sim_cms/settings.py"):
        read |= set(re.findall(r'"(SCANPAY_\w+)"', (REPO / module).read_text()))
    for name in SIM_SERVICES:
        assert set(SERVICES[name]["environment"]) <= read, name


def test_an_empty_admin_token_switches_the_control_api_off() -> None:
    for name, load in (("trustly", load_trustly_settings), ("cms", load_cms_settings)):
        env = interpolate(SERVICES[name], {"SCANPAY_ADMIN_TOKEN": ""})["environment"]
        assert env["SCANPAY_ADMIN_TOKEN"] == ""
        assert not load(environ=env).control_enabled, name
    assert load_cms_settings(environ=DEFAULTS["cms"]["environment"]).control_enabled


def test_gunicorn_commands_name_wsgi_factories_that_exist() -> None:
    for name in ("trustly", "cms"):
        command = DEFAULTS[name]["command"]
        assert command[0] == "gunicorn" and "--preload" in command
        module, call = command[-1].split(":")
        factory = getattr(importlib.import_module(module), call.removesuffix("()"))
        assert callable(factory), command[-1]
    importlib.import_module("gunicorn.app.wsgiapp")


def _assert_scanpay_command(argv: list[str]) -> None:
    assert argv[0] == "scanpay"
    result = CliRunner().invoke(scanpay_main, [argv[1], "--help"])
    assert result.exit_code == 0, result.output
    for flag in (arg for arg in argv[2:] if arg.startswith("--")):
        assert flag in result.output, f"scanpay {argv[1]} has no {flag}"


def test_scanpay_commands_of_compose_and_dockerfile_exist() -> None:
    _assert_scanpay_command(DEFAULTS["cms-rotator"]["command"])
    cmd = re.findall(r"^CMD (\[.*\])$", DOCKERFILE, flags=re.MULTILINE)[-1]  # the app stage
    argv = yaml.safe_load(cmd)
    assert argv[:4] == ["scanpay", "serve", "--host", "0.0.0.0"]
    _assert_scanpay_command(argv)


def test_image_runs_as_a_non_root_user_from_python_slim() -> None:
    assert DOCKERFILE.count("FROM python:3.11-slim") == 1
    users = re.findall(r"^USER (\S+)$", DOCKERFILE, flags=re.MULTILINE)
    assert users and not {user.split(":")[0] for user in users} & {"root", "0"}
    assert re.search(r"^EXPOSE 8710 8720$", DOCKERFILE, flags=re.MULTILINE)
    assert re.search(r"pip install (--no-deps )?\.", DOCKERFILE)


def test_healthchecks_are_python_programs_that_compile() -> None:
    for name, service in DEFAULTS.items():
        test = service["healthcheck"]["test"] if "healthcheck" in service else None
        if test is None or test[0] != "CMD":
            continue
        assert test[1:3] == ["python", "-c"], name  # no curl in python:3.11-slim
        compile(test[3], f"{name} healthcheck", "exec")


def test_load_profile_runs_the_locustfile() -> None:
    for name in ("locust-master", "locust-worker"):
        command = DEFAULTS[name]["command"]
        assert command[:3] == ["locust", "-f", "loadtests/locustfile.py"], name
    if not (REPO / "loadtests/locustfile.py").exists():
        pytest.skip("loadtests/locustfile.py is not written yet")


# --- (b) the services as local processes ---------------------------------------------------

def _port() -> int:
    while (port := free_port()) in RESERVED_PORTS:
        continue
    return port


@dataclass(frozen=True)
class LocalService:
    """One compose service turned into a local command line and environment."""

    argv: list[str]
    env: dict[str, str]
    healthcheck: list[str]


class LocalStack:
    """The compose file interpolated with free ports and SQLite files under `root`."""

    def __init__(self, root: Path) -> None:
        self.trustly_port, self.cms_port = _port(), _port()
        self.heartbeat = root / "rotate.heartbeat"
        self.variables = {
            "SCANPAY_TRUSTLY_PORT": str(self.trustly_port),
            "SCANPAY_CMS_PORT": str(self.cms_port), "SCANPAY_PUBLIC_HOST": "127.0.0.1",
            "SCANPAY_ROTATE_HEARTBEAT": str(self.heartbeat),
        }
        self.databases = {"/trustly": sqlite_url(str(root / "trustly.db")),
                          "/cms": sqlite_url(str(root / "cms.db"))}

    @property
    def trustly_url(self) -> str:
        """Where the local `trustly` service listens."""
        return f"http://127.0.0.1:{self.trustly_port}"

    @property
    def cms_url(self) -> str:
        """Where the local `cms` service listens."""
        return f"http://127.0.0.1:{self.cms_port}"

    def service(self, name: str) -> LocalService:
        """The service's command, environment and health check, made local."""
        spec = interpolate(SERVICES[name], self.variables)
        env = {"SCANPAY_CONFIG": "", **{key: self._local(str(value))
                                        for key, value in spec["environment"].items()}}
        argv = [self._local(arg) for arg in spec["command"]]
        argv[0] = str(Path(sys.executable).with_name(argv[0]))  # this venv's console script
        return LocalService(argv=argv, env=env, healthcheck=spec["healthcheck"]["test"])

    def _local(self, value: str) -> str:
        for suffix, url in self.databases.items():
            if value.startswith("postgresql://") and value.endswith(suffix):
                return url
        return value.replace("//trustly:", "//127.0.0.1:").replace("0.0.0.0:", "127.0.0.1:")


def run_healthcheck(service: LocalService) -> int:
    """Run the service's compose health check here; its exit status (0 = healthy)."""
    argv = [sys.executable, *service.healthcheck[2:]]
    return subprocess.run(argv, capture_output=True, timeout=30, check=False).returncode


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The `trustly` and `cms` services running under gunicorn, as compose would run them."""
    local = LocalStack(tmp_path_factory.mktemp("compose"))
    trustly, cms = local.service("trustly"), local.service("cms")
    with running(trustly.argv, f"{local.trustly_url}/openapi.json", env=trustly.env, cwd=REPO), \
            running(cms.argv, f"{local.cms_url}/openapi.json", env=cms.env, cwd=REPO):
        yield local


def test_trustly_service_issues_a_token_with_the_demo_credentials(stack: LocalStack) -> None:
    assert run_healthcheck(stack.service("trustly")) == 0
    response = httpx.post(
        f"{stack.trustly_url}/auth-service/api/oauth2/qrcode/token",
        auth=("demo-access-id", "demo-access-key"),
        json={"merchantId": "demo-merchant", "egmId": "EGM-001"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["url"].startswith(f"{stack.trustly_url}/scan/")


def test_cms_service_shows_a_qr_issued_by_the_trustly_service(stack: LocalStack) -> None:
    assert run_healthcheck(stack.service("cms")) == 0
    status = httpx.get(f"{stack.cms_url}/egm/EGM-001/status.json")
    assert status.status_code == 200, status.text
    assert status.json()["url"].startswith(f"{stack.trustly_url}/scan/")


def _egms_without_qr(stack: LocalStack, admin_token: str) -> list[str]:
    dump = httpx.get(f"{stack.cms_url}/_sim/state",
                     headers={"Authorization": f"Bearer {admin_token}"}).json()
    return [egm["id"] for egm in dump["egms"] if egm["qr"]["url"] is None]


def test_rotator_service_gives_every_egm_a_qr_and_stops_on_ctrl_c(stack: LocalStack) -> None:
    rotator = stack.service("cms-rotator")
    token = rotator.env["SCANPAY_ADMIN_TOKEN"]
    # The rotator has no port of its own: "ready" is the CMS it rotates for.
    with running(rotator.argv, f"{stack.cms_url}/openapi.json", env=rotator.env,
                 cwd=REPO) as process:
        end = monotonic() + 30
        while (_egms_without_qr(stack, token) or not stack.heartbeat.exists()) \
                and monotonic() < end and process.poll() is None:
            threading.Event().wait(0.1)  # poll interval of a deadline-bound wait
        assert process.poll() is None, process.communicate()
        assert _egms_without_qr(stack, token) == []
        assert run_healthcheck(rotator) == 0
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=15)
    assert process.returncode == 0, err
    assert "acquired EGM-010" in out and "stopped after" in out
    assert "Traceback" not in err


# --- the rotator's loop in-process ---------------------------------------------------------

def _ctx(app: Flask) -> Any:
    return app.extensions["sim_cms"]


def test_a_rotation_pass_prints_one_line_per_acquisition(make_cms: CmsFactory) -> None:
    app = make_cms(with_trustly=True)
    out = io.StringIO()
    rotation_pass(_ctx(app), Console(file=out, soft_wrap=True))
    lines = out.getvalue().splitlines()
    assert len(lines) == 10 and all("acquired EGM-0" in line for line in lines)


def test_a_rotation_pass_prints_trustly_failures_without_raising(make_cms: CmsFactory) -> None:
    app = make_cms(trustly=TrustlyLink(base_url=f"http://127.0.0.1:{_port()}",
                                             connect_timeout_s=0.5))
    out = io.StringIO()
    rotation_pass(_ctx(app), Console(file=out, soft_wrap=True))
    assert "failed   EGM-001" in out.getvalue() and "cannot reach Trustly" in out.getvalue()


def test_sigterm_ends_the_rotation_loop_after_the_current_pass(
        make_cms: CmsFactory, tmp_path: Path) -> None:
    app = make_cms(with_trustly=True)
    stop, gave_up = threading.Event(), threading.Event()
    options = RotateOptions(interval_s=30.0, heartbeat=tmp_path / "beat")

    def give_up() -> None:  # bounds the test should the signal never arrive
        gave_up.set()
        stop.set()

    timers = [threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)),
              threading.Timer(20.0, give_up)]
    with stop_on_signals(stop):
        for timer in timers:
            timer.start()
        try:
            passes = run_rotation(app, Console(file=io.StringIO()), stop, options)
        finally:
            for timer in timers:
                timer.cancel()
    assert not gave_up.is_set() and passes == 1
    assert options.heartbeat is not None and options.heartbeat.exists()


def test_rotate_refuses_a_non_positive_interval_with_a_clear_message() -> None:
    result = subprocess.run([SCANPAY, "rotate", "--interval", "0"], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert "--interval" in result.stderr and "Traceback" not in result.stderr
