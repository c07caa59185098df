"""The preflight judges each declared hook by its documented shape, against a fake CMS.

The fake answers the CMS's API correctly (token, EGM read, status inquiry) so that only the
hook under test can fail; what it answers on the control API is set per test.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import httpx
import pytest

from harness.certify.preflight import PreflightError, run_preflight
from harness.clients.control import ControlApi
from harness.flow import Endpoint
from harness.target_config import EgmPaths, MerchantCredentials
from harness.targets import Target
from sim_trustly.cms_client.partner_profiles import DEFAULT_CMS_PROFILE

CMS = "http://cms.test"
TOKEN = "preflight-admin"


def _fake_cms(control: dict[str, tuple[int, Any]]) -> httpx.MockTransport:
    """The CMS's API answered well; `control` maps a /_sim path to (status, JSON or None)."""
    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path in control:
            status, body = control[path]
            return httpx.Response(status, content=b"" if body is None else
                                  json.dumps(body).encode())
        if path == "/cws/v1/oauth/token":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 300})
        if path.startswith("/cws/v1/egms/"):
            return httpx.Response(200, json={"creditMeter": 0, "state": "IDLE"})
        return httpx.Response(404, json={"code": "NOT_FOUND"})
    return httpx.MockTransport(handle)


def _target(hooks: set[str], control: dict[str, tuple[int, Any]]) -> Target:
    transport = _fake_cms(control)
    return Target(
        kind="partner", name="fake", trustly=Endpoint("http://trustly.test", transport),
        cms=Endpoint(CMS, transport), cms_profile=replace(DEFAULT_CMS_PROFILE, base_url=CMS),
        egm_paths=EgmPaths(acquire_qr=None), egm_ids=("EGM-001",), hooks=frozenset(hooks),
        merchant=MerchantCredentials(), trustly_control=ControlApi("http://trustly.test", TOKEN),
        cms_control=ControlApi(CMS, TOKEN, transport))


WELL_SHAPED = {"/_sim/clock": (200, {"now": "2026-12-06T10:00:00Z"}),
               "/_sim/journal": (200, {"entries": []}),
               "/_sim/fundings": (200, {"fundings": []}),
               "/_sim/faults": (200, {"faults": []}),
               "/_sim/egms/EGM-001": (200, {}),
               "/_sim/qr/rotate": (200, None)}  # "answers 200": no body is needed


def test_hooks_in_their_documented_shape_pass() -> None:
    hooks = {"clock", "journal", "fundings", "faults", "egm-state", "qr-rotate", "reset"}
    found = run_preflight(_target(hooks, WELL_SHAPED))
    assert "hooks answer: clock, egm-state, faults, fundings, journal, qr-rotate" in found


@pytest.mark.parametrize(("hook", "path", "answer", "expected"), [
    ("journal", "/_sim/journal", (200, {"entries": "none"}), "holding 'entries'"),
    ("clock", "/_sim/clock", (200, {"now": "soon"}), "holding 'now'"),
    ("faults", "/_sim/faults", (404, {"code": "NOT_FOUND"}), "answered HTTP 404"),
    ("egm-state", "/_sim/egms/EGM-001", (200, None), "a JSON object."),
    ("fundings", "/_sim/fundings", (403, {"code": "FORBIDDEN"}), "refused the admin token"),
], ids=["journal-not-a-list", "clock-without-an-instant", "faults-not-served",
        "egm-state-no-json", "token-refused"])
def test_a_declared_hook_out_of_shape_is_diagnosed(
        hook: str, path: str, answer: tuple[int, Any], expected: str) -> None:
    with pytest.raises(PreflightError) as raised:
        run_preflight(_target({hook}, {**WELL_SHAPED, path: answer}))
    said = str(raised.value)
    assert said.startswith("Preflight failed:") and expected in said, said
    if "admin token" not in said:
        assert f"declares the {hook} hook" in said, said
