"""Both sims as real gunicorn servers on 127.0.0.1, wired to each other, for the Pay e2e tests.

`serve_pay_stack` starts sim_cms and then sim_trustly, each under gunicorn (2 workers,
gthread), each on its own database (SQLite file, or a PostgreSQL database from a
`DatabaseFactory` when SCANPAY_TEST_DATABASE_URL is set), with its own config file and its
own clock. They find each other by environment only, as two separate systems would:
`SCANPAY_CMS_TRUSTLY_URL` (where the CMS gets its QR codes), `SCANPAY_TRUSTLY_CMS_URL`
(where TPAS sends fundings) and `SCANPAY_TRUSTLY_PUBLIC_URL` (the host in every QR url).
sim_trustly runs with its gunicorn hooks, so every worker runs the periodic recovery sweep.

Each server runs in a session of its own (a process group), so a crash test can `kill -9`
the master and its workers together and start the server again on the same port and database.

`PayStack` is the driver: it speaks to both servers over HTTP only (the public APIs, the
control APIs with the shared admin token) and never opens their databases.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from simkit.clock import format_instant, parse_instant
from simkit.tls import tls_context
from simkit.wait import poll_until
from tests.conftest import ADMIN_TOKEN, DatabaseFactory
from tests.e2e.cms_driver import KEEP_ALIVE, TIMEOUT_S
from tests.e2e.processes import Process, free_port, wait_until_up

REPO = Path(__file__).resolve().parents[2]
TRUSTLY_APP = "sim_trustly.wsgi:create()"
CMS_APP = "sim_cms.wsgi:create()"
TRUSTLY_HOOKS = "python:sim_trustly.gunicorn_hooks"
TPAS_CLIENT = ("tpas-client", "tpas-secret")
DESK_CLIENT = ("casino-desk", "casino-desk-secret")  # the demo client that may change limits
DEMO_MERCHANT = ("demo-access-id", "demo-access-key")
DEFINITE = frozenset({"CREDITED", "REJECTED_VOIDED", "FAILED_VOIDED"})
# Trustly's clock runs this far ahead of the casino's (two systems, two clocks). A test may
# then move the CMS's clock alone (past its access-token TTL) and the QR codes Trustly
# issues still expire after the CMS's now, as the CMS requires when it displays one.
TRUSTLY_AHEAD_S = 900
POLL_S = 0.05


def poll_pause(seconds: float = POLL_S) -> None:
    """A short pause on real time between attempts, never a wait for the sims' time to pass
    (tests move their clocks); a wait for a condition polls with `simkit.wait.poll_until`."""
    threading.Event().wait(seconds)


def unique(prefix: str) -> str:
    """A reference (EGM id, username) no other test of the run uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def code_of(url: str) -> str:
    """The QR code in a scan url (`<trustly>/scan/<code>`)."""
    return url.rsplit("/", 1)[-1]


class Server:
    """One gunicorn server in a process group of its own: start, stop, or kill -9 it whole."""

    def __init__(self, name: str, app_spec: str, env: dict[str, str], port: int, workdir: Path,
                 *, config: str | None = None, threads: int = 8) -> None:
        self.name, self.app_spec, self.env, self.port = name, app_spec, env, port
        self.workdir, self.config, self.threads = workdir, config, threads
        self.process: Process | None = None
        self.starts = 0

    @property
    def base(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def _args(self) -> list[str]:
        args = [
            sys.executable, "-m", "gunicorn", self.app_spec, "--bind", f"127.0.0.1:{self.port}",
            "--workers", "2", "--worker-class", "gthread", "--threads", str(self.threads),
            "--preload", "--chdir", str(REPO), "--log-level", "warning",
            "--graceful-timeout", "1",
        ]
        return args + (["-c", self.config] if self.config else [])

    def start(self) -> None:
        """Start the server (again, after a stop or a kill) and wait until it answers."""
        self.starts += 1
        out = self.workdir / f"{self.name}-{self.starts}.out"
        err = self.workdir / f"{self.name}-{self.starts}.err"
        env = {**os.environ, **self.env,
               "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        with out.open("w") as out_file, err.open("w") as err_file:
            popen = subprocess.Popen(self._args(), stdout=out_file, stderr=err_file, text=True,
                                     env=env, cwd=REPO, start_new_session=True)
        self.process = Process(popen, out, err)
        try:
            wait_until_up(f"{self.base}/openapi.json", self.process)
        except BaseException:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL the master and every worker at once, as a machine crash would, and reap."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.popen.pid, signal.SIGKILL)
        self.process.popen.wait(timeout=30)
        self.process = None

    def interrupt(self) -> None:
        """Ask for gunicorn's quick shutdown (SIGINT) without waiting for it."""
        if self.process is not None and self.process.popen.poll() is None:
            self.process.popen.send_signal(signal.SIGINT)

    def stop(self) -> None:
        """Shut down (SIGINT), wait for it, then kill whatever of the group is left."""
        if self.process is None:
            return
        self.interrupt()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.popen.wait(timeout=15)
        self.kill()

    def log_tail(self, chars: int = 4000) -> str:
        """The end of this server's stderr over all its runs (tracebacks), for failures."""
        logs = sorted(self.workdir.glob(f"{self.name}-*.err"))
        return "".join(path.read_text(errors="replace") for path in logs)[-chars:]


def _ok(response: httpx.Response, *statuses: int) -> Any:
    assert response.status_code in statuses, (response.request.method, str(response.url),
                                              response.status_code, response.text)
    return response.json()


@dataclass
class PayStack:
    """Both running sims and the calls the Pay tests make to them (HTTP only).

    One keep-alive client per sim for the driver's own calls (not for several threads at
    once; concurrent phones use `phone_client`).
    """

    cms: Server
    trustly: Server
    controllable: bool
    admin_token: str = ADMIN_TOKEN
    _cms_http: httpx.Client = field(init=False)
    _trustly_http: httpx.Client = field(init=False)
    _tokens: dict[tuple[str, str], str] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self._cms_http = self._client(self.cms.base)
        self._trustly_http = self._client(self.trustly.base)

    @staticmethod
    def _client(base: str) -> httpx.Client:
        return httpx.Client(base_url=base, timeout=TIMEOUT_S, limits=KEEP_ALIVE,
                            verify=tls_context())

    def phone_client(self) -> httpx.Client:
        """A client of its own for a phone (one connection, usable from one thread)."""
        return self._client(self.trustly.base)

    def close(self) -> None:
        """Close the driver's connections."""
        self._cms_http.close()
        self._trustly_http.close()

    def tracebacks(self, most: int = 3) -> str:
        """The last `most` Python tracebacks either server logged, over all its runs (a busy
        log's tail may no longer hold them), for assertion messages."""
        found: list[str] = []
        for server in (self.cms, self.trustly):
            for path in sorted(server.workdir.glob(f"{server.name}-*.err")):
                text = path.read_text(errors="replace")
                found += [f"--- {path.name} ---\nTraceback{part[:3000]}"
                          for part in text.split("Traceback")[1:]]
        return "\n".join(found[-most:]) or "(no traceback in either server's log)"

    def logs(self) -> str:
        """Both servers' recent stderr, for assertion messages."""
        return f"--- cms ---\n{self.cms.log_tail()}\n--- trustly ---\n{self.trustly.log_tail()}"

    # --- the control APIs ---------------------------------------------------------------

    @property
    def _admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def cms_admin(self, method: str, path: str, *statuses: int, **kwargs: Any) -> Any:
        """A call to sim_cms's control API; asserts the status (200 unless told)."""
        response = self._cms_http.request(method, path, headers=self._admin, **kwargs)
        return _ok(response, *(statuses or (200,)))

    def trustly_admin(self, method: str, path: str, *statuses: int, **kwargs: Any) -> Any:
        """A call to sim_trustly's control API; asserts the status (200 unless told)."""
        response = self._trustly_http.request(method, path, headers=self._admin, **kwargs)
        return _ok(response, *(statuses or (200,)))

    def clock(self, sim: str) -> Any:
        """A sim's now ('cms' or 'trustly')."""
        call = self.cms_admin if sim == "cms" else self.trustly_admin
        return parse_instant(call("GET", "/_sim/clock")["now"])

    def advance(self, seconds: float, *, cms: bool = True, trustly: bool = True) -> None:
        """Move the clocks of the sims named (each is its own system with its own clock)."""
        if cms:
            self.cms_admin("POST", "/_sim/clock", json={"advance": seconds})
        if trustly:
            self.trustly_admin("POST", "/_sim/clock", json={"advance": seconds})

    def fault(self, **rule: Any) -> None:
        """Declare a fault rule on the CMS (`POST /_sim/faults`)."""
        self.cms_admin("POST", "/_sim/faults", 201, json=rule)

    def clear_faults(self) -> None:
        """Let the CMS answer normally again."""
        self.cms_admin("DELETE", "/_sim/faults")

    def add_egm(self, prefix: str = "E2E", credit_limit: int = 1_000_000) -> str:
        """A new EGM on the casino floor (IDLE, meter 0); returns its id."""
        egm_id = unique(prefix)
        self.cms_admin("PUT", f"/_sim/egms/{egm_id}", 201,
                       json={"name": f"Pay e2e {egm_id}", "creditLimit": credit_limit})
        return egm_id

    def change_egm(self, egm_id: str, **change: Any) -> None:
        """Change an EGM's state or credit limit through the CMS's control API."""
        self.cms_admin("POST", f"/_sim/egms/{egm_id}", json=change)

    def fundings(self) -> list[dict[str, Any]]:
        """Every funding the CMS decided (`GET /_sim/fundings`)."""
        found: list[dict[str, Any]] = self.cms_admin("GET", "/_sim/fundings")["fundings"]
        return found

    def fundings_of(self, transaction_id: str) -> list[dict[str, Any]]:
        """The CMS's decided fundings under one transactionId (at most one, by design)."""
        return [f for f in self.fundings() if f["transactionId"] == transaction_id]

    def ledger(self) -> dict[str, Any]:
        """The CMS ledger's summary: transactions, entries, appliedTotal, balanced."""
        summary: dict[str, Any] = self.cms_admin("GET", "/_sim/state")["ledger"]
        return summary

    def reconciliation(self) -> dict[str, Any]:
        """sim_trustly's reconciliation of its payments against the CMS's fundings."""
        report: dict[str, Any] = self.trustly_admin("GET", "/_sim/reconciliation")
        return report

    def payment_record(self, payment_id: str) -> dict[str, Any]:
        """TPAS's record of a payment, with `ubai` and its `events`."""
        record: dict[str, Any] = self.trustly_admin("GET", f"/_sim/payments/{payment_id}")
        return record

    def payments(self, status: str | None = None) -> list[dict[str, Any]]:
        """Every payment TPAS knows, optionally of one status."""
        params = {"status": status} if status else {}
        found: list[dict[str, Any]] = self.trustly_admin(
            "GET", "/_sim/payments", params=params)["payments"]
        return found

    def cms_journal_mark(self) -> int:
        """The id of the CMS's latest journal entry (0 when empty), to read only what follows."""
        entries = self.cms_admin("GET", "/_sim/journal", params={"limit": 1})["entries"]
        return int(entries[-1]["id"]) if entries else 0

    def cms_journal_since(self, mark: int, path: str | None = None) -> list[dict[str, Any]]:
        """CMS journal entries after `mark`, oldest first (optionally under a path prefix)."""
        params: dict[str, Any] = {"since": mark, "limit": 1000, **({"path": path} if path else {})}
        entries: list[dict[str, Any]] = self.cms_admin("GET", "/_sim/journal",
                                                       params=params)["entries"]
        return entries

    # --- the CWS API, as TPAS and the casino's back office use it --------------------------

    def _cws(self, method: str, path: str, *statuses: int,
             client: tuple[str, str] = TPAS_CLIENT, **kwargs: Any) -> Any:
        """A CWS call with `client`'s token (default: TPAS's; fetched again when the CMS
        says expired)."""
        for _ in range(2):
            if client not in self._tokens:
                token = self._cms_http.post("/cws/v1/oauth/token", auth=client,
                                            data={"grant_type": "client_credentials"})
                self._tokens[client] = str(_ok(token, 200)["access_token"])
            response = self._cms_http.request(
                method, path, headers={"Authorization": f"Bearer {self._tokens[client]}"},
                **kwargs)
            if response.status_code != 401:
                break
            del self._tokens[client]
        return _ok(response, *(statuses or (200,)))

    def acquire_qr(self, egm_id: str) -> str:
        """Make the CMS acquire a QR from Trustly and show it on the EGM; the scan code."""
        shown = self._cws("POST", f"/cws/v1/egms/{egm_id}/qr")
        assert shown["url"].startswith(f"{self.trustly.base}/scan/"), shown
        return code_of(shown["url"])

    def issue_qr(self, egm_id: str) -> str:
        """A QR code straight from Trustly's QR Code API, never shown on any EGM."""
        response = self._trustly_http.post(
            "/auth-service/api/oauth2/qrcode/token", auth=DEMO_MERCHANT,
            json={"merchantId": "demo-merchant", "egmId": egm_id})
        return code_of(_ok(response, 200)["url"])

    def meter(self, egm_id: str) -> int:
        """The EGM's credit meter as the CWS API reports it."""
        return int(self._cws("GET", f"/cws/v1/egms/{egm_id}")["creditMeter"])

    def limit(self, ubai: str) -> dict[str, Any]:
        """The UBAI's daily-limit view (`usedToday`, `remainingToday`...)."""
        view: dict[str, Any] = self._cws("GET", f"/cws/v1/limits/{ubai}")
        return view

    def set_limit(self, ubai: str, daily_limit: int) -> None:
        """PUT the UBAI's daily limit, as the casino's desk (TPAS's client may not)."""
        self._cws("PUT", f"/cws/v1/limits/{ubai}", 200, 201, client=DESK_CLIENT,
                  json={"dailyLimit": daily_limit})

    # --- the phone ------------------------------------------------------------------------

    def pay_response(self, code: str, amount: int = 2000, *, username: str | None = None,
                     password: str = "pw", client: httpx.Client | None = None
                     ) -> httpx.Response:
        """What the phone's approve button sends; the answer as it came."""
        body = {"amount": amount, "currency": "USD",
                "bank": {"username": username or unique("player"), "password": password}}
        return (client or self._trustly_http).post(f"/api/v1/scan/{code}/payments", json=body)

    def pay(self, code: str, amount: int = 2000, **kwargs: Any) -> dict[str, Any]:
        """Pay and return the payment once it is definite (a 202 is settled by `settle`)."""
        payment: dict[str, Any] = _ok(self.pay_response(code, amount, **kwargs), 201, 202)
        return payment if payment["status"] in DEFINITE else self.settle(payment["paymentId"])

    def payment(self, payment_id: str) -> dict[str, Any]:
        """The payment as the phone reads it again (`GET /api/v1/payments/<id>`)."""
        found: dict[str, Any] = _ok(self._trustly_http.get(f"/api/v1/payments/{payment_id}"),
                                    200)
        return found

    def settle(self, payment_id: str, deadline_s: float = 30.0) -> dict[str, Any]:
        """Wait, bounded, for a payment TPAS left open (the CMS did not answer in time).

        TPAS parks such a payment until a lease runs out on *its* clock; a frozen one is
        moved on a minute per round, and a recovery pass is asked for, as the periodic sweep
        would run it once that minute had passed.
        """
        def definite() -> dict[str, Any] | None:
            payment = self.payment(payment_id)
            if payment["status"] in DEFINITE:
                return payment
            if self.controllable:
                self.advance(60, cms=False)
            self.trustly_admin("POST", "/_sim/payments/recover", json={})
            return None

        found = poll_until(definite, timeout_s=deadline_s, interval_s=POLL_S)
        if found is None:
            raise AssertionError(f"payment {payment_id} still open after {deadline_s}s: "
                                 f"{self.payment_record(payment_id)}")
        return found

    # --- checks ---------------------------------------------------------------------------

    def assert_reconciled(self) -> dict[str, Any]:
        """TPAS and the CMS agree on every transactionId, and the ledger balances."""
        report = self.reconciliation()
        assert report["reconciled"] and report["differences"] == [] \
            and report["errors"] == [], report
        ledger = self.ledger()
        assert ledger["balanced"] is True, ledger
        assert report["cmsTotal"] == ledger["appliedTotal"] == report["trustlyTotal"], \
            (report, ledger)
        return report


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


@contextmanager
def serve_pay_stack(
    workdir: Path, databases: DatabaseFactory, *, trustly_toml: str = "", cms_toml: str = "",
    controllable: bool = True, threads: int = 8,
) -> Iterator[PayStack]:
    """Start sim_cms, then sim_trustly, wired to each other; stop both at the end.

    `trustly_toml` / `cms_toml` are extra config (the `[trustly]` / `[cms]` tables).
    With `controllable`, both run on controllable clocks (frozen until moved), Trustly's
    set TRUSTLY_AHEAD_S ahead of the casino's.
    """
    cms_port, trustly_port = free_port(), free_port()
    cms_base, trustly_base = f"http://127.0.0.1:{cms_port}", f"http://127.0.0.1:{trustly_port}"
    common = {"SCANPAY_ADMIN_TOKEN": ADMIN_TOKEN,
              "SCANPAY_CONTROLLABLE_CLOCK": "1" if controllable else "0"}
    cms = Server("cms", CMS_APP, {
        **common, "SCANPAY_CMS_DATABASE_URL": databases.new("cms"),
        "SCANPAY_CONFIG": _write(workdir / "cms.toml", cms_toml),
        "SCANPAY_CMS_TRUSTLY_URL": trustly_base,
    }, cms_port, workdir, threads=threads)
    trustly = Server("trustly", TRUSTLY_APP, {
        **common, "SCANPAY_TRUSTLY_DATABASE_URL": databases.new("trustly"),
        "SCANPAY_CONFIG": _write(workdir / "trustly.toml", trustly_toml),
        "SCANPAY_TRUSTLY_CMS_URL": cms_base, "SCANPAY_TRUSTLY_PUBLIC_URL": trustly_base,
    }, trustly_port, workdir, config=TRUSTLY_HOOKS, threads=threads)
    stack: PayStack | None = None
    try:
        cms.start()
        trustly.start()
        stack = PayStack(cms, trustly, controllable)
        if controllable:
            ahead = stack.clock("cms") + timedelta(seconds=TRUSTLY_AHEAD_S)
            stack.trustly_admin("POST", "/_sim/clock", json={"set": format_instant(ahead)})
        yield stack
    finally:
        if stack is not None:
            stack.close()
        trustly.interrupt()  # both shut down at once: each takes a second or two
        cms.interrupt()
        trustly.stop()
        cms.stop()
