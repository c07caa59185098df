"""Both sims under production serving, wired to each other, plus what the benchmarks ask them.

`sims()` starts sim_trustly and sim_cms from their wsgi entry points (`TRUSTLY_APP`, `CMS_APP`:
the per-worker factory under granian, `create()` and the hooks under gunicorn) on the run's
serving stack,
each configured only by the environment a deployment would set: its database URL, the other
sim's URL (`SCANPAY_TRUSTLY_CMS_URL`, `SCANPAY_CMS_TRUSTLY_URL`) and, for the CMS, a TOML
file (`SCANPAY_CONFIG`) with the EGMs of the floor: as many as the load needs so no two load
clients share one, each with a credit cap no benchmark can reach.

The reconciliation reads the scratch databases directly once the load has stopped: the
benchmark owns them, and it checks the sims' own bookkeeping rather than trusting their APIs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text

from bench.common import free_port, scrubbed_env
from bench.loadgen import Client, build_request
from bench.run import RunOptions
from bench.servers import App, Ready, Server, serve

TRUSTLY_APP = App("sim_trustly.wsgi:create", hooks="sim_trustly.gunicorn_hooks",
                  worker_factory="sim_trustly.wsgi:create_in_worker")
CMS_APP = App("sim_cms.wsgi:create")
TOKEN_PATH = "/auth-service/api/oauth2/qrcode/token"
CMS_CLIENT = ("tpas-client", "tpas-secret")
CREDIT_LIMIT = 10**12  # no run reaches it
TOKEN_TTL_S = 86_400  # one access token lasts the longest run
MIN_EGMS = 10


def _basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


TRUSTLY_READY = build_request(
    "POST", TOKEN_PATH, json.dumps({"merchantId": "demo-merchant", "egmId": "EGM-001"}).encode(),
    {"Authorization": _basic("demo-access-id", "demo-access-key"),
     "Content-Type": "application/json"})
CMS_TOKEN_REQUEST = build_request(
    "POST", "/cws/v1/oauth/token", b"grant_type=client_credentials",
    {"Authorization": _basic(*CMS_CLIENT), "Content-Type": "application/x-www-form-urlencoded"})


def egm_ids(count: int) -> list[str]:
    """The floor: EGM-001 ... (at least the demo casino's ten)."""
    return [f"EGM-{n:03d}" for n in range(1, max(MIN_EGMS, count) + 1)]


def _cms_config(path: Path, egms: list[str]) -> None:
    lines = ["[cms]", f"access_token_ttl_s = {TOKEN_TTL_S}", ""]
    for egm in egms:
        lines += ["[[cms.egms]]", f'id = "{egm}"', f'name = "Bench {egm}"',
                  f"credit_limit = {CREDIT_LIMIT}", ""]
    path.write_text("\n".join(lines))


@dataclass(frozen=True)
class Sims:
    """The two running sims and their databases."""

    trustly: Server
    cms: Server
    trustly_db: str
    cms_db: str
    egms: list[str]


@contextmanager
def sims(options: RunOptions, trustly_db: str | None, cms_db: str | None,
         egm_count: int) -> Iterator[Sims]:
    """Both sims on the server cores; SQLite in a temporary directory for a database not given.
    """
    egms = egm_ids(egm_count)
    with tempfile.TemporaryDirectory(prefix="bench-sims-") as tmp:
        trustly_url = trustly_db or f"sqlite:///{Path(tmp) / 'trustly.db'}"
        cms_url = cms_db or f"sqlite:///{Path(tmp) / 'cms.db'}"
        config = Path(tmp) / "cms.toml"
        _cms_config(config, egms)
        trustly_port, cms_port = free_port(), free_port()
        trustly_env = scrubbed_env({
            "SCANPAY_TRUSTLY_DATABASE_URL": trustly_url,
            "SCANPAY_TRUSTLY_CMS_URL": f"http://127.0.0.1:{cms_port}",
            "SCANPAY_TRUSTLY_PUBLIC_URL": f"http://127.0.0.1:{trustly_port}"})
        cms_env = scrubbed_env({
            "SCANPAY_CMS_DATABASE_URL": cms_url, "SCANPAY_CONFIG": str(config),
            "SCANPAY_CMS_TRUSTLY_URL": f"http://127.0.0.1:{trustly_port}"})
        with serve("sim_trustly", TRUSTLY_APP, options.serving, trustly_env,
                   Ready(TRUSTLY_READY), options.pinning, trustly_port) as trustly, \
             serve("sim_cms", CMS_APP, options.serving, cms_env, Ready(CMS_TOKEN_REQUEST),
                   options.pinning, cms_port) as cms:
            yield Sims(trustly, cms, trustly_url, cms_url, egms)


async def _call(port: int, raw: bytes, expected: int) -> dict[str, object]:
    client = Client(port)
    try:
        status, body = await client.send(raw)
    finally:
        client.close()
    if status != expected:
        raise RuntimeError(f"expected {expected}, got {status}: {body[:500]!r}")
    answer: dict[str, object] = json.loads(body)
    return answer


def cms_access_token(cms: Server) -> str:
    """An access token of the TPAS OAuth client (client credentials), obtained once."""
    return str(asyncio.run(_call(cms.port, CMS_TOKEN_REQUEST, 200))["access_token"])


def acquire_qr(cms: Server, token: str, egm: str) -> dict[str, object]:
    """`POST /cws/v1/egms/{egm}/qr`: the CMS gets a QR from Trustly and shows it."""
    raw = build_request("POST", f"/cws/v1/egms/{egm}/qr", b"",
                        {"Authorization": f"Bearer {token}"})
    return asyncio.run(_call(cms.port, raw, 200))


def meter_total(cms: Server, token: str) -> int:
    """The sum of every EGM's credit meter, from `GET /cws/v1/egms`."""
    raw = build_request("GET", "/cws/v1/egms", b"", {"Authorization": f"Bearer {token}"})
    answer = asyncio.run(_call(cms.port, raw, 200))
    egms = answer["egms"]
    assert isinstance(egms, list)
    return sum(int(egm["creditMeter"]) for egm in egms)


def _scalar_rows(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql))]
    finally:
        engine.dispose()


def applied_fundings(cms_db: str) -> tuple[int, int]:
    """(count, amount) of the CMS's applied fundings, from its database."""
    rows = _scalar_rows(cms_db, "SELECT count(*), coalesce(sum(amount), 0) FROM funding_records "
                                "WHERE outcome = 'APPLIED'")
    return int(str(rows[0][0])), int(str(rows[0][1]))


def payments_by_status(trustly_db: str) -> dict[str, tuple[int, int]]:
    """Trustly's payments per status: (count, amount), from its database."""
    rows = _scalar_rows(trustly_db, "SELECT status, count(*), coalesce(sum(amount), 0) "
                                    "FROM payments GROUP BY status")
    return {str(s): (int(str(c)), int(str(a))) for s, c, a in rows}
