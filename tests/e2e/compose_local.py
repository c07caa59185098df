"""docker-compose.yml's services as local processes, for tests on a machine without Docker.

`interpolate` is Compose's variable substitution. `LocalCompose` turns a service of the file
into the command line and environment compose would give it, changing only what a process
outside the compose network has to: the ports, through the file's own `${..._PORT}`
variables; the service host names (`trustly`, `cms`, `postgres`), which become 127.0.0.1;
and the `postgres` service, which becomes the machine's own PostgreSQL server
(SCANPAY_TEST_DATABASE_URL's server, else 127.0.0.1:5432) with scratch databases named for
the test run in place of the `trustly` and `cms` databases docker/initdb.sql creates.
Nothing else of the environment blocks is touched, and no SCANPAY_* variable of the
test's own environment leaks into a `ComposeServer`.

`ComposeServer` runs one such service as a process group that a test can stop, kill and
start again on the same port and databases. `schema_errors` checks a compose document against
the Compose specification's JSON schema, as the check-jsonschema package ships it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from simkit.db import normalise_url
from simkit.wait import poll_until
from tests.conftest import TEST_DB_ENV
from tests.e2e.pay_stack import DEFINITE, PayStack, Server
from tests.e2e.processes import Process, free_port, wait_until_up

REPO = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
INITDB = REPO / "docker/initdb.sql"
LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
# Ports the team's shared services (and the sims' defaults) use: never a local service's.
RESERVED_PORTS = {1883, 3306, 4222, 5432, 5672, 6379, 8089, 8710, 8720}
GONE_S = 10.0  # a SIGKILLed group is gone as soon as the kernel has reaped it
READY_S = 120.0  # the first worker migrates and seeds before serving: slow on a loaded machine
_VARIABLE = re.compile(r"\$(?:\$|\{(\w+)(?:(:?-)([^}]*))?\})")
_SERVICE_HOST = re.compile(r"//([A-Za-z0-9_.-]+):")


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
        return str(default)

    return _VARIABLE.sub(substitute, value)


def local_port() -> int:
    """A free port on 127.0.0.1 that is none of the reserved ones."""
    while (port := free_port()) in RESERVED_PORTS:
        continue
    return port


def initdb_databases() -> list[str]:
    """The databases the `postgres` service creates at first start (docker/initdb.sql)."""
    return re.findall(r"CREATE DATABASE (\w+)", INITDB.read_text())


class ScratchPostgres:
    """The machine's PostgreSQL server and the databases one test run creates on it."""

    def __init__(self, label: str) -> None:
        self.explicit = os.environ.get(TEST_DB_ENV)
        self.server = self.explicit or LOCAL_POSTGRES
        self.prefix = f"scanpay_{label}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.created: list[str] = []

    def _admin(self, statement: str) -> None:
        engine = create_engine(normalise_url(self.server), isolation_level="AUTOCOMMIT",
                               connect_args={"connect_timeout": 10})
        try:
            with engine.connect() as conn:
                conn.execute(text(statement))
        finally:
            engine.dispose()

    def require(self) -> None:
        """Skip when no server answers, unless SCANPAY_TEST_DATABASE_URL named one (fail)."""
        try:
            self._admin("SELECT 1")
        except SQLAlchemyError as exc:
            if self.explicit:
                raise
            pytest.skip(f"no PostgreSQL at {LOCAL_POSTGRES} for the compose services "
                        f"({type(exc).__name__}); start one or set {TEST_DB_ENV}")

    def create(self, name: str) -> str:
        """A new empty database `<prefix>_<name>`; its URL."""
        database = f"{self.prefix}_{name}"
        self._admin(f'CREATE DATABASE "{database}"')
        self.created.append(database)
        return make_url(self.server).set(database=database).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        """Drop every database this run created (connections of dead servers included)."""
        for database in self.created:
            self._admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        self.created.clear()


@dataclass(frozen=True)
class LocalService:
    """One compose service turned into a local command line and environment."""

    name: str
    argv: list[str]
    env: dict[str, str]
    healthcheck: list[str]


class LocalCompose:
    """The compose file interpolated with free ports, onto local databases.

    `databases` maps each compose database name (`trustly`, `cms`) to a local URL; several
    `LocalCompose` on the same `databases` are several replicas of the same services.
    """

    def __init__(self, root: Path, databases: Mapping[str, str], *,
                 trustly_port: int | None = None, cms_port: int | None = None) -> None:
        self.root, self.databases = root, dict(databases)
        self.trustly_port = trustly_port or local_port()
        self.cms_port = cms_port or local_port()
        self.heartbeat = root / f"rotate-{self.cms_port}.heartbeat"
        self.variables = {
            "SCANPAY_TRUSTLY_PORT": str(self.trustly_port),
            "SCANPAY_CMS_PORT": str(self.cms_port), "SCANPAY_PUBLIC_HOST": "127.0.0.1",
            "SCANPAY_ROTATE_HEARTBEAT": str(self.heartbeat),
        }

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
        env = {key: self._local(str(value)) for key, value in spec["environment"].items()}
        argv = [self._local(arg) for arg in spec["command"]]
        argv[0] = str(Path(sys.executable).with_name(argv[0]))  # this venv's console script
        return LocalService(name=name, argv=argv, env=env,
                            healthcheck=spec["healthcheck"]["test"])

    def server(self, name: str) -> ComposeServer:
        """The `trustly` or `cms` service as a server that can be started and stopped."""
        port = self.trustly_port if name == "trustly" else self.cms_port
        return ComposeServer(self.service(name), port, self.root)

    def _local(self, value: str) -> str:
        if value.startswith("postgresql://"):
            url = make_url(value)
            assert url.host == "postgres", value
            assert url.database in self.databases, f"{value}: no local database for it"
            return self.databases[url.database]
        value = _SERVICE_HOST.sub(
            lambda m: "//127.0.0.1:" if m.group(1) in SERVICES else m.group(0), value)
        return "127.0.0.1" if value == "0.0.0.0" else value  # granian's --host


def service_environ(service: LocalService) -> dict[str, str]:
    """The service's environment over this machine's, minus the test's own SCANPAY_* ones."""
    base = {key: value for key, value in os.environ.items() if not key.startswith("SCANPAY_")}
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**base, "PYTHONPATH": path, **service.env}


class ComposeServer(Server):
    """A compose service's own command as a process group (stop, kill, start again).

    granian's workers are processes of the server's group: `stop` and `kill` signal the
    group, so none outlives the server (`leftover_pids` says which would).
    """

    def __init__(self, service: LocalService, port: int, workdir: Path) -> None:
        super().__init__(f"{service.name}-{port}", service.argv[-1], service.env, port, workdir)
        self.service = service

    def _args(self) -> list[str]:
        return list(self.service.argv)

    def start(self) -> None:
        """Start the service (again) and wait, bounded, until it answers."""
        self.starts += 1
        out = self.workdir / f"{self.name}-{self.starts}.out"
        err = self.workdir / f"{self.name}-{self.starts}.err"
        with out.open("w") as out_file, err.open("w") as err_file:
            popen = subprocess.Popen(self._args(), stdout=out_file, stderr=err_file, text=True,
                                     env=service_environ(self.service), cwd=REPO,
                                     start_new_session=True)
        self.process = Process(popen, out, err)
        try:
            wait_until_up(f"{self.base}/openapi.json", self.process, deadline_s=READY_S)
        except BaseException:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL the whole group at once and check, bounded, that no process of it is left."""
        pgid = self.process.popen.pid if self.process is not None else None
        super().kill()
        if pgid is None:
            return
        if poll_until(lambda: not group_pids(pgid) or None, timeout_s=GONE_S,
                      interval_s=0.05) is None:
            raise AssertionError(f"{self.name}: processes {group_pids(pgid)} outlived the server")


def group_pids(pgid: int) -> list[int]:
    """The processes of process group `pgid` alive now (zombies excluded), from /proc."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended while being read
        if fields[0] != "Z" and int(fields[2]) == pgid:
            pids.append(int(stat.parent.name))
    return sorted(pids)


def run_healthcheck(service: LocalService) -> int:
    """Run the service's compose health check here; its exit status (0 = healthy)."""
    assert service.healthcheck[:3] == ["CMD", "python", "-c"], service.healthcheck
    argv = [sys.executable, *service.healthcheck[2:]]
    return subprocess.run(argv, capture_output=True, timeout=60, check=False).returncode


def compose_schema() -> dict[str, Any]:
    """The Compose specification's JSON schema, from the check-jsonschema package."""
    vendor = files("check_jsonschema.builtin_schemas.vendor")
    schema: dict[str, Any] = json.loads((vendor / "compose-spec.json").read_text())
    return schema


def schema_errors(document: Any) -> list[str]:
    """What the Compose specification's schema finds wrong with `document`."""
    validator = jsonschema.Draft202012Validator(compose_schema())
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
            for error in validator.iter_errors(document)]


def listening_ports(service: dict[str, Any]) -> set[int]:
    """The ports a service listens on inside the compose network (`--port`, or container side)."""
    command = [str(arg) for arg in service.get("command", [])]
    ports = {int(command[n + 1]) for n, arg in enumerate(command[:-1]) if arg == "--port"}
    return ports | {int(str(mapping).rsplit(":", 1)[-1]) for mapping in service.get("ports", [])}


def wait_definite(stack: PayStack, payment_id: str, deadline_s: float) -> dict[str, Any]:
    """The payment once definite, polling only (no recovery pass is asked for)."""
    def definite() -> dict[str, Any] | None:
        payment = stack.payment(payment_id)
        return payment if payment["status"] in DEFINITE else None

    found = poll_until(definite, timeout_s=deadline_s, interval_s=0.25)
    if found is None:
        raise AssertionError(f"payment {payment_id} still open after {deadline_s}s: "
                             f"{stack.payment_record(payment_id)}\n{stack.logs()}")
    return found
