"""The reference sim_cms serves exactly the partner contract (docs/api/partner-hooks.openapi.json).

Every documented operation is called with the documented credentials, its documented example
query and body, and the answer is validated against the document; without credentials each
answers the documented 401. Then a whole `scanpay certify` run against both sims served over
HTTP records every request that reaches the CMS: each one is a documented hook, EGM call or
CMS API operation (docs/api/cms.openapi.json), so the harness calls nothing the contract
leaves out.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask

from harness.cli.serve import ServeOptions, build_sims
from harness.clients.cms import decode_qr_png
from harness.contract.doc import CMS_OPENAPI_PATH, OPENAPI_PATH
from harness.contract.openapi import operations, template_pattern
from simkit.clock import ManualClock, format_instant, parse_instant
from tests.conftest import (
    ADMIN_TOKEN,
    CMS_TEST_CLIENT,
    START,
    DatabaseFactory,
    LateWSGITransport,
    basic,
    cms_test_clients,
)
from tests.e2e.processes import SCANPAY, free_port
from tests.openapi_check import OpenApiContract

DOCUMENT: dict[str, Any] = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
EGM_ID = "EGM-001"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def cms_app(databases: DatabaseFactory, clock: ManualClock) -> Iterator[Flask]:
    """sim_cms with its control API and journal on, wired in-process to a sim_trustly."""
    from sim_cms.app import create_app as create_cms
    from sim_cms.settings import CmsSettings
    from sim_trustly.app import create_app as create_trustly
    from sim_trustly.settings import TrustlySettings

    to_cms = LateWSGITransport()
    trustly = create_trustly(TrustlySettings(database_url=databases.new("trustly"),
                                             admin_token=ADMIN_TOKEN),
                             clock=clock, cms_transport=to_cms)
    cms = create_cms(CmsSettings(database_url=databases.new("cms"), admin_token=ADMIN_TOKEN,
                                 journal=True, clients=cms_test_clients()),
                     clock=clock, trustly_transport=httpx.WSGITransport(app=trustly))
    to_cms.app = cms
    yield cms
    for app, key in ((trustly, "sim_trustly"), (cms, "sim_cms")):
        app.extensions[key].close()


class Caller:
    """Calls documented operations as the document says: its auth, examples and paths."""

    def __init__(self, app: Flask) -> None:
        self.http = httpx.Client(transport=httpx.WSGITransport(app=app),
                                 base_url="http://cms.test")
        self.contract = OpenApiContract(DOCUMENT)
        schemes = DOCUMENT["components"]["securitySchemes"]
        token_url = schemes["cmsOAuth"]["flows"]["clientCredentials"]["tokenUrl"]
        grant = self.http.post(token_url, data={"grant_type": "client_credentials"},
                               headers={"Authorization": basic(*CMS_TEST_CLIENT)})
        assert grant.status_code == 200, grant.text
        self.bearer = {"Authorization": f"Bearer {grant.json()['access_token']}"}

    def credentials(self, operation: dict[str, Any]) -> dict[str, str]:
        """The headers the operation's security requirement asks for."""
        schemes = {name for requirement in operation.get("security", []) for name in requirement}
        if not schemes:
            return {}
        if schemes == {"adminBearer"}:
            return ADMIN
        assert "cmsOAuth" in schemes, schemes  # the reference CMS uses OAuth2
        return self.bearer

    def call(self, method: str, template: str, *, authed: bool = True) -> httpx.Response:
        """One documented operation with its examples; the answer is checked."""
        item = DOCUMENT["paths"][template]
        operation = item[method.lower()]
        parameters = [*item.get("parameters", []), *operation.get("parameters", [])]
        path = template
        query: dict[str, Any] = {}
        for parameter in parameters:
            if parameter["in"] == "path":
                path = path.replace("{" + parameter["name"] + "}", str(parameter["example"]))
            elif "example" in parameter:
                query[parameter["name"]] = parameter["example"]
        kwargs: dict[str, Any] = {"params": query}
        body = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if body is not None:
            kwargs["json"] = body["example"]
        headers = self.credentials(operation) if authed else {}
        response = self.http.request(method, path, headers=headers, **kwargs)
        self.contract.check(method, path, response.status_code, response.headers,
                            _body(response))
        return response


def _body(response: httpx.Response) -> Any:
    if "json" not in response.headers.get("content-type", ""):
        return response.content.decode("latin-1")  # a string, as the schema says
    return response.json()


def _fund(caller: Caller, qr: dict[str, Any]) -> None:
    """One applied funding (so the fundings list and the journal have something to show)."""
    body = {"transactionId": f"contract-{qr['qrTokenId'][:12]}", "egmId": EGM_ID,
            "amount": 500, "currency": "USD", "ubai": "ubai-contract",
            "qrTokenId": qr["qrTokenId"]}
    answer = caller.http.post("/cws/v1/fundings", json=body, headers=caller.bearer)
    assert answer.status_code == 201, answer.text


def test_sim_cms_answers_every_documented_operation_as_documented(cms_app: Flask) -> None:
    caller = Caller(cms_app)
    documented = operations(DOCUMENT)
    qr = caller.call("POST", "/cws/v1/egms/{egmId}/qr").json()  # an EGM showing a QR
    _fund(caller, qr)
    answers: dict[tuple[str, str], httpx.Response] = {}
    # reset last: it forgets the funding and the journal the other answers should show
    for method, template in sorted(documented, key=lambda key: key == ("POST", "/_sim/reset")):
        answers[(method, template)] = answer = caller.call(method, template)
        assert answer.is_success, (method, template, answer.status_code, answer.text[:300])
    assert {(m, t) for m, t, _ in caller.contract.seen} == set(documented)
    # The answers mean what the contract says, beyond their shape.
    assert answers[("GET", "/_sim/fundings")].json()["fundings"], "the funding is listed"
    assert answers[("GET", "/_sim/journal")].json()["entries"], "the journal has entries"
    example = DOCUMENT["paths"]["/_sim/clock"]["post"]["requestBody"]["content"][
        "application/json"]["example"]
    moved = parse_instant(answers[("POST", "/_sim/clock")].json()["now"])
    assert (moved - START).total_seconds() >= example["advance"], "moved forward by advance"
    assert answers[("POST", "/_sim/faults")].status_code == 201
    shown = decode_qr_png(answers[("GET", "/egm/{egmId}/qr.png")].content)
    acquired = answers[("POST", "/cws/v1/egms/{egmId}/qr")].json()["url"]
    assert shown == [acquired], "the image holds the QR the EGM was last told to show"


def test_without_credentials_every_protected_operation_answers_the_documented_401(
    cms_app: Flask,
) -> None:
    caller = Caller(cms_app)
    protected = [key for key, operation in operations(DOCUMENT).items()
                 if operation.get("security")]
    assert protected
    for method, template in protected:
        answer = caller.call(method, template, authed=False)
        assert answer.status_code == 401, (method, template, answer.status_code)


def test_sim_cms_routes_every_documented_path(cms_app: Flask) -> None:
    """Served: each documented (method, path) has a route (not a catch-all 404)."""
    adapter = cms_app.url_map.bind("cms.test")
    for method, template in operations(DOCUMENT):
        concrete = template.replace("{egmId}", EGM_ID)
        endpoint, _ = adapter.match(concrete, method=method)
        assert endpoint, (method, template)


# --- a whole certify run: every request reaching the CMS is documented ------------------------

class Recorder:
    """WSGI middleware noting (method, path) of every request the CMS receives."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        with self._lock:
            self.seen.add((environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")))
        return self.app(environ, start_response)


def _documented_anywhere(method: str, path: str) -> bool:
    cms_api = json.loads(CMS_OPENAPI_PATH.read_text(encoding="utf-8"))
    for document in (DOCUMENT, cms_api):
        for documented_method, template in operations(document):
            if documented_method == method and template_pattern(template).match(path):
                return True
    return False


@pytest.mark.slow
def test_a_certify_run_calls_nothing_on_the_cms_the_contract_leaves_out(tmp_path: Path) -> None:
    from werkzeug.serving import make_server

    trustly_port, cms_port = free_port(), free_port()
    options = ServeOptions(trustly_port=trustly_port, cms_port=cms_port,
                           data_dir=tmp_path / "data", controllable_clock=True,
                           admin_token=ADMIN_TOKEN)
    trustly, cms = build_sims(options)  # as `scanpay serve` builds them
    recorder = Recorder(cms.wsgi_app)
    cms.wsgi_app = recorder  # type: ignore[method-assign]
    servers = [make_server("127.0.0.1", port, app, threaded=True)
               for port, app in ((trustly_port, trustly), (cms_port, cms))]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        done = subprocess.run(
            [SCANPAY, "certify", "--trustly-url", f"http://127.0.0.1:{trustly_port}",
             "--cms-url", f"http://127.0.0.1:{cms_port}", "--admin-token", ADMIN_TOKEN,
             "--report-dir", str(tmp_path / "reports")],
            capture_output=True, text=True, timeout=300, check=False)
    finally:
        for server in servers:
            server.shutdown()
        for app, key in ((trustly, "sim_trustly"), (cms, "sim_cms")):
            app.extensions[key].close()
    assert (tmp_path / "reports" / "report.json").exists(), done.stdout[-3000:] + done.stderr
    called = {(method, path) for method, path in recorder.seen if path != "/openapi.json"}
    assert any(path.startswith("/_sim/") for _, path in called), called
    undocumented = sorted((m, p) for m, p in called if not _documented_anywhere(m, p))
    assert undocumented == [], "the harness calls these on the CMS; document them"


def test_the_hooks_mean_what_the_contract_says(cms_app: Flask) -> None:
    """The semantics partners build to: the journal's limit/since, the fundings list's since
    on the CMS's own clock, the clock moving forward by exactly what is asked."""
    caller = Caller(cms_app)
    http = caller.http
    _fund(caller, caller.call("POST", "/cws/v1/egms/{egmId}/qr").json())
    caller.http.get("/cws/v1/egms/EGM-002", headers=caller.bearer)

    newest = http.get("/_sim/journal", params={"limit": 1}, headers=ADMIN).json()["entries"]
    everything = http.get("/_sim/journal", params={"limit": 1000}, headers=ADMIN).json()
    ids = [entry["id"] for entry in everything["entries"]]
    assert len(ids) >= 3 and ids == sorted(ids)
    assert [entry["id"] for entry in newest] == [ids[-1]], "limit alone: the latest entries"
    after = http.get("/_sim/journal", params={"since": ids[0], "limit": 1},
                     headers=ADMIN).json()["entries"]
    assert [entry["id"] for entry in after] == [ids[1]], "since: the first entries after it"

    before = parse_instant(http.get("/_sim/clock", headers=ADMIN).json()["now"])
    moved = http.post("/_sim/clock", json={"advance": 90}, headers=ADMIN).json()
    now = parse_instant(moved["now"])
    assert (now - before).total_seconds() >= 90

    def decided_since(instant: str) -> list[dict[str, Any]]:
        answer = http.get("/_sim/fundings", params={"since": instant}, headers=ADMIN)
        found: list[dict[str, Any]] = answer.json()["fundings"]
        return found

    assert len(decided_since(format_instant(before))) == 1, "decided at the CMS's earlier now"
    assert decided_since(moved["now"]) == [], "nothing decided since the CMS's clock moved"
