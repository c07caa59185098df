"""docker-compose.yml and the Dockerfile, checked without a Docker engine.

(a) The file is validated against the Compose specification's JSON schema (as shipped by
check-jsonschema), every command is resolved against the code it names, and every URL a
service is given points at a service listening on that port.

(b) The `trustly`, `cms` and `cms-rotator` services run as local processes with exactly the
command and environment compose would give them, bar free ports, 127.0.0.1 for the service
host names and scratch databases on the machine's PostgreSQL for the `postgres` service
(`tests.e2e.compose_local`). A player pays the QR an EGM screen shows, and a payment whose
CMS call failed (the `cms` service down) is finished by the `trustly` workers' recovery
sweep once the CMS is back, and a stopped service leaves none of its granian workers behind.
"""

from __future__ import annotations

import copy
import importlib
import io
import os
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from click.testing import CliRunner
from flask import Flask
from granian.cli import cli as granian_cli
from rich.console import Console

import sim_trustly.wsgi
from bench.servers import DEFAULT_SERVING, SERVINGS, App
from harness.cli.main import main as scanpay_main
from harness.cli.rotate import RotateOptions, rotation_pass, run_rotation, stop_on_signals
from sim_cms.settings import TrustlyLink, load_cms_settings
from sim_trustly.settings import load_trustly_settings
from simkit.wait import poll_until
from tests.conftest import CmsFactory
from tests.e2e.compose_local import (
    COMPOSE,
    REPO,
    SERVICES,
    ComposeServer,
    LocalCompose,
    ScratchPostgres,
    group_pids,
    initdb_databases,
    interpolate,
    listening_ports,
    local_port,
    run_healthcheck,
    schema_errors,
    wait_definite,
)
from tests.e2e.pay_stack import PayStack, code_of, unique
from tests.e2e.processes import SCANPAY, running

# Not marked `db`: the live services always run on the machine's PostgreSQL (ScratchPostgres), so
# the suite's PostgreSQL pass would only run them a second time.
pytestmark = pytest.mark.slow

DOCKERFILE = (REPO / "Dockerfile").read_text()
SIM_SERVICES = ("trustly", "cms", "cms-rotator")
DEFAULTS: dict[str, Any] = interpolate(SERVICES, {})
# TPAS keeps trying a CMS that does not answer for about 24 s (the default profile's five
# attempts with backoff) before it answers the phone 202 and parks the payment.
PAY_TIMEOUT_S = 120.0
SWEEP_DEADLINE_S = 120.0


# --- (a) structure -------------------------------------------------------------------------

def test_compose_file_is_valid_against_the_compose_specification_schema() -> None:
    assert schema_errors(COMPOSE) == []
    assert schema_errors(interpolate(COMPOSE, {})) == []  # as compose reads it, defaults in


def test_the_schema_rejects_a_misspelt_key_and_a_wrong_condition() -> None:
    broken = copy.deepcopy(COMPOSE)
    trustly = broken["services"]["trustly"]
    trustly["enviroment"] = trustly.pop("environment")
    trustly["depends_on"]["postgres"]["condition"] = "healthy"
    errors = schema_errors(broken)
    assert any("enviroment" in error for error in errors), errors
    assert any("healthy" in error for error in errors), errors


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
    for name, port in (("trustly", 8710), ("cms", 8720)):
        params = _granian_params(DEFAULTS[name]["command"])
        assert (params["host"], params["port"]) == ("0.0.0.0", port), name


def test_every_url_a_service_is_given_names_a_service_on_the_port_it_listens_on() -> None:
    seen = 0
    for name, service in DEFAULTS.items():
        values = [*service.get("environment", {}).values(), *service.get("command", [])]
        for value in values:
            parts = urlsplit(str(value))
            if parts.scheme != "http" or parts.hostname not in SERVICES:
                continue
            seen += 1
            assert parts.port in listening_ports(DEFAULTS[parts.hostname]), (name, value)
    assert seen >= 5  # cms -> trustly (x2 with the rotator), trustly -> cms, locust -> both


def test_each_sim_reads_the_other_sims_address_from_its_environment() -> None:
    trustly = load_trustly_settings(environ=DEFAULTS["trustly"]["environment"])
    assert trustly.cms.base_url == "http://cms:8720"  # where TPAS sends fundings
    assert trustly.public_base_url == "http://localhost:8710"
    cms = load_cms_settings(environ=DEFAULTS["cms"]["environment"])
    assert cms.trustly.base_url == "http://trustly:8710"  # where the CMS gets its QRs


def test_trustly_builds_the_app_in_every_worker_which_starts_the_recovery_sweep(
        monkeypatch: pytest.MonkeyPatch) -> None:
    params = _granian_params(DEFAULTS["trustly"]["command"])
    assert params["factory"] and params["app"] == "sim_trustly.wsgi:create_rsgi_in_worker"
    app, swept = Flask("built-in-worker"), list[Flask]()
    app.config["MAX_CONTENT_LENGTH"] = 16 * 1024
    monkeypatch.setattr(sim_trustly.wsgi, "checked_settings", lambda: None)
    monkeypatch.setattr(sim_trustly.wsgi, "create_app", lambda settings: app)
    monkeypatch.setattr(sim_trustly.wsgi, "start_recovery_worker", swept.append)
    assert sim_trustly.wsgi.create_rsgi_in_worker().app is app
    assert swept == [app]  # the factory granian calls in each worker starts the sweep


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
    assert sorted(initdb_databases()) == ["cms", "trustly"]
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
    for module in ("sim_trustly/settings.py", "sim_trustly/cms_client/partner_profiles.py",
                   "sim_cms/settings.py", "simkit/rsgi_front.py"):
        read |= set(re.findall(r'"(SCANPAY_\w+)"', (REPO / module).read_text()))
    for name in SIM_SERVICES:
        assert set(SERVICES[name]["environment"]) <= read, name
    needed = {"trustly": {"SCANPAY_TRUSTLY_DATABASE_URL", "SCANPAY_TRUSTLY_PUBLIC_URL",
                          "SCANPAY_TRUSTLY_CMS_URL"},
              "cms": {"SCANPAY_CMS_DATABASE_URL", "SCANPAY_CMS_TRUSTLY_URL"}}
    for name, variables in needed.items():
        assert variables <= set(SERVICES[name]["environment"]), name


def test_an_empty_admin_token_switches_the_control_api_off() -> None:
    for name, load in (("trustly", load_trustly_settings), ("cms", load_cms_settings)):
        env = interpolate(SERVICES[name], {"SCANPAY_ADMIN_TOKEN": ""})["environment"]
        assert env["SCANPAY_ADMIN_TOKEN"] == ""
        assert not load(environ=env).control_enabled, name
    assert load_cms_settings(environ=DEFAULTS["cms"]["environment"]).control_enabled


def _granian_params(command: list[str]) -> dict[str, Any]:
    """granian's own command line parser's reading of `command` (unknown flags fail)."""
    assert command[0] == "granian", command
    return granian_cli.make_context("granian", list(command[1:])).params


def test_granian_commands_name_rsgi_factories_that_exist() -> None:
    for name in ("trustly", "cms"):
        params = _granian_params(DEFAULTS[name]["command"])
        assert params["interface"].value == "rsgi" and params["factory"], name
        assert params["workers"] == 2, name
        assert DEFAULTS[name]["environment"]["SCANPAY_THREADS"] == "8", name
        module, call = params["app"].split(":")
        factory = getattr(importlib.import_module(module), call)
        assert callable(factory), params["app"]


def test_the_benchmarks_default_serving_is_the_one_compose_deploys() -> None:
    serving = SERVINGS[DEFAULT_SERVING]
    argv = serving.argv(App("sim_cms.wsgi:create"), 8720)
    assert argv[1:3] == ["-m", serving.requires]
    bench, compose = _granian_params(["granian", *argv[3:]]), _granian_params(
        DEFAULTS["cms"]["command"])
    for key in ("interface", "factory", "workers", "app"):
        assert bench[key] == compose[key], key


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
    assert (REPO / "loadtests/locustfile.py").is_file()


# --- (b) the services as local processes ---------------------------------------------------

@dataclass
class Running:
    """The local `trustly` and `cms` services and a driver speaking to both over HTTP."""

    local: LocalCompose
    trustly: ComposeServer
    cms: ComposeServer
    stack: PayStack


@pytest.fixture(scope="module")
def postgres() -> Iterator[ScratchPostgres]:
    """The machine's PostgreSQL in place of the `postgres` service; scratch databases."""
    server = ScratchPostgres("compose")
    server.require()
    try:
        yield server
    finally:
        server.drop_all()


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory,
             postgres: ScratchPostgres) -> Iterator[Running]:
    """`trustly`, then `cms` (compose's order), under granian as compose runs them."""
    databases = {name: postgres.create(name) for name in initdb_databases()}
    local = LocalCompose(tmp_path_factory.mktemp("compose"), databases)
    trustly, cms = local.server("trustly"), local.server("cms")
    stack: PayStack | None = None
    try:
        trustly.start()
        cms.start()
        stack = PayStack(cms, trustly, controllable=False,
                         admin_token=trustly.service.env["SCANPAY_ADMIN_TOKEN"])
        yield Running(local, trustly, cms, stack)
    finally:
        if stack is not None:
            stack.close()
        trustly.interrupt()
        cms.interrupt()
        trustly.stop()
        cms.stop()


def test_trustly_service_issues_a_token_with_the_demo_credentials(services: Running) -> None:
    assert run_healthcheck(services.local.service("trustly")) == 0
    response = httpx.post(
        f"{services.local.trustly_url}/auth-service/api/oauth2/qrcode/token",
        auth=("demo-access-id", "demo-access-key"),
        json={"merchantId": "demo-merchant", "egmId": "EGM-001"}, timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json()["url"].startswith(f"{services.local.trustly_url}/scan/")


def test_cms_service_shows_a_qr_issued_by_the_trustly_service(services: Running) -> None:
    assert run_healthcheck(services.local.service("cms")) == 0
    status = httpx.get(f"{services.local.cms_url}/egm/EGM-001/status.json", timeout=30)
    assert status.status_code == 200, status.text
    assert status.json()["url"].startswith(f"{services.local.trustly_url}/scan/")


def test_a_player_pays_the_qr_an_egm_shows_and_the_meter_rises(services: Running) -> None:
    stack, local, egm = services.stack, services.local, "EGM-003"
    screen = httpx.get(f"{local.cms_url}/egm/{egm}/status.json", timeout=30).json()
    assert screen["url"].startswith(f"{local.trustly_url}/scan/"), screen
    code = code_of(screen["url"])
    scan = httpx.get(f"{local.trustly_url}/api/v1/scan/{code}", timeout=30)
    assert scan.status_code == 200 and scan.json()["egmId"] == egm, scan.text

    response = stack.pay_response(code, 2500, username=unique("player"))

    assert response.status_code == 201, f"{response.text}\n{stack.logs()}"
    payment = response.json()
    assert (payment["status"], payment["egmId"], payment["amount"]) == ("CREDITED", egm, 2500)
    after = httpx.get(f"{local.cms_url}/egm/{egm}/status.json", timeout=30).json()
    assert after["creditMeter"] == screen["creditMeter"] + 2500 == stack.meter(egm)
    assert [f["outcome"] for f in stack.fundings_of(payment["transactionId"])] == ["APPLIED"]
    stack.assert_reconciled()


def test_a_payment_whose_cms_call_failed_is_finished_by_the_workers_recovery_sweep(
        services: Running) -> None:
    stack, egm, amount = services.stack, "EGM-004", 1500
    code = stack.acquire_qr(egm)
    meter = stack.meter(egm)
    assert services.cms.process is not None
    group = services.cms.process.popen.pid
    assert len(group_pids(group)) >= 3  # granian's main process and its two workers
    services.cms.stop()  # the CMS is down while the phone pays
    assert group_pids(group) == []  # no worker outlives the stop
    body = {"amount": amount, "currency": "USD",
            "bank": {"username": unique("player"), "password": "pw"}}
    with httpx.Client(base_url=services.trustly.base, timeout=PAY_TIMEOUT_S) as phone:
        response = phone.post(f"/api/v1/scan/{code}/payments", json=body)
    assert response.status_code == 202, f"{response.text}\n{stack.logs()}"
    parked = response.json()
    assert parked["status"] == "FUNDING", parked

    services.cms.start()  # back on the same port and database; nobody asks for a recovery
    payment = wait_definite(stack, parked["paymentId"], SWEEP_DEADLINE_S)

    assert payment["status"] == "CREDITED", stack.payment_record(parked["paymentId"])
    kinds = [e["kind"] for e in stack.payment_record(parked["paymentId"])["events"]]
    assert "PARKED" in kinds and kinds[-1] == "CREDITED", kinds
    assert stack.meter(egm) == meter + amount
    assert [f["outcome"] for f in stack.fundings_of(payment["transactionId"])] == ["APPLIED"]
    stack.assert_reconciled()


def _egms_without_qr(url: str, admin_token: str) -> list[str]:
    dump = httpx.get(f"{url}/_sim/state", headers={"Authorization": f"Bearer {admin_token}"},
                     timeout=30).json()
    return [egm["id"] for egm in dump["egms"] if egm["qr"]["url"] is None]


def test_rotator_service_gives_every_egm_a_qr_and_stops_on_ctrl_c(services: Running) -> None:
    local = services.local
    rotator = local.service("cms-rotator")
    token = rotator.env["SCANPAY_ADMIN_TOKEN"]
    # The rotator has no port of its own: "ready" is the CMS it rotates for.
    with running(rotator.argv, f"{local.cms_url}/openapi.json", env=rotator.env,
                 cwd=REPO) as process:
        def rotated_or_ended() -> bool | None:
            """Every EGM shows a QR and the heartbeat is written, or the rotator ended."""
            if process.poll() is not None:
                return True
            return (not _egms_without_qr(local.cms_url, token)
                    and local.heartbeat.exists()) or None

        poll_until(rotated_or_ended, timeout_s=60, interval_s=0.1)
        assert process.poll() is None, process.communicate()
        assert _egms_without_qr(local.cms_url, token) == []
        assert run_healthcheck(rotator) == 0
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
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
    app = make_cms(trustly=TrustlyLink(base_url=f"http://127.0.0.1:{local_port()}",
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
