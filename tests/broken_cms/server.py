"""Run the broken CMS as a real server on 127.0.0.1, and describe it as a `certify` partner target.

`serve_broken_cms` starts `tests.broken_cms.wsgi:create()` under gunicorn (preloaded, 2+
workers, so a race between fundings is a race between processes) on a fresh database, its
controllable clock on and its control API open, and points it at the port where the
harness's own sim_trustly will listen: in a partner run the harness plays Trustly, so the
CMS must already know where to fetch its QR tokens before the harness starts it.

`write_partner_target` writes the TOML `scanpay certify --target` reads for such a CMS, with
every hook the control API offers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sim_cms.settings import DEMO_CLIENT, DEMO_DESK_CLIENT, DEMO_EGMS
from tests.broken_cms.defects import ENV_VAR, Defect
from tests.broken_cms.wsgi import APP_SPEC
from tests.e2e.processes import free_port, gunicorn

ADMIN_TOKEN = "broken-cms-admin-token"  # a test server's control token
HOOKS = ("egm-state", "clock", "faults", "journal", "reset", "fundings", "qr-rotate")
EGM_IDS = tuple(egm.id for egm in DEMO_EGMS)


@dataclass(frozen=True)
class BrokenCms:
    """A running broken CMS: where it listens, what is planted, where its Trustly must be."""

    base_url: str
    defects: frozenset[Defect]
    trustly_port: int
    log: Path

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's error log (tracebacks of any 5xx), for failure messages."""
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


@contextmanager
def serve_broken_cms(defects: frozenset[Defect], database_url: str, workdir: Path, *,
                     workers: int = 2, threads: int = 8) -> Iterator[BrokenCms]:
    """Serve the broken CMS with `defects` for the block (none: sim_cms as shipped)."""
    trustly_port = free_port()
    log = workdir / "broken-cms.log"
    env = {
        ENV_VAR: ",".join(sorted(defects)), "SCANPAY_CMS_DATABASE_URL": database_url,
        "SCANPAY_ADMIN_TOKEN": ADMIN_TOKEN, "SCANPAY_CONTROLLABLE_CLOCK": "1",
        "SCANPAY_CMS_TRUSTLY_URL": f"http://127.0.0.1:{trustly_port}",
        "SCANPAY_CONFIG": "",
        # Output to a file: nobody reads a pipe while the run lasts, and a full one blocks.
        "GUNICORN_CMD_ARGS": f"--capture-output --error-logfile {log}",
    }
    with gunicorn(APP_SPEC, env, workers=workers, threads=threads) as base:
        yield BrokenCms(base, defects, trustly_port, log)


def write_partner_target(cms: BrokenCms, path: Path, name: str = "broken-cms") -> Path:
    """The partner TOML for `cms`: its API, the demo TPAS client, every hook, its Trustly."""
    def quoted(value: str) -> str:
        return json.dumps(value)  # a TOML basic string is a JSON string for these values

    lines = [
        f"name = {quoted(name)}",
        "[cms]",
        f"base_url = {quoted(cms.base_url)}",
        'auth = { kind = "oauth2_client_credentials", '
        f"client_id = {quoted(DEMO_CLIENT.client_id)}, "
        f"client_secret = {quoted(DEMO_CLIENT.client_secret)} }}",
        f"egm_ids = [{', '.join(quoted(egm) for egm in EGM_IDS)}]",
        f"limits_auth = {{ client_id = {quoted(DEMO_DESK_CLIENT.client_id)}, "
        f"client_secret = {quoted(DEMO_DESK_CLIENT.client_secret)} }}",
        "[cms.egm]",
        'read = "/cws/v1/egms/{egm_id}"',
        'acquire_qr = "/cws/v1/egms/{egm_id}/qr"',
        'qr_png = "/egm/{egm_id}/qr.png"',
        'screen = "/egm/{egm_id}"',
        "[control]",
        f"base_url = {quoted(cms.base_url)}",
        f"admin_token = {quoted(ADMIN_TOKEN)}",
        f"hooks = [{', '.join(quoted(hook) for hook in HOOKS)}]",
        "[trustly]",
        'host = "127.0.0.1"',
        f"port = {cms.trustly_port}",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path
