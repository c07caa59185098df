"""`scanpay flow` as a user runs it: embedded sims, and the sims of a running `scanpay serve`.

The printed sequence must read as the diagram of docs/architecture.md §2 (The flow: Scan then
Pay): the EGM wants a QR, the CMS gets it from Trustly, the phone opens it and pays, TPAS calls
the CMS (OAuth2, daily limit, funding), the phone hears "credited", and the meter has gone up.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.processes import SCANPAY, free_port, running

# docs/architecture.md §2 (The flow: Scan then Pay), top to bottom: (from, to, path pattern)
# of the calls a scan-then-pay makes.
FLOW_SEQUENCE = [
    ("EGM", "CMS", r"^/cws/v1/egms/EGM-00\d/qr$"),
    ("CMS", "Trustly", r"^/auth-service/api/oauth2/qrcode/token$"),
    ("Phone", "Trustly", r"^/api/v1/scan/[\w-]+$"),
    ("Phone", "Trustly", r"^/api/v1/scan/[\w-]+/payments$"),
    ("TPAS", "CMS", r"^/cws/v1/oauth/token$"),
    ("TPAS", "CMS", r"^/cws/v1/limits/ubai-[0-9a-f]+$"),
    ("TPAS", "CMS", r"^/cws/v1/fundings$"),
]


def calls_in_order(sequence: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """The sequence's calls (request lines and one-line calls; not the response lines)."""
    return [(m["from"], m["to"], m["path"]) for m in sequence if m["kind"] != "response"]


def assert_matches_design(sequence: list[dict[str, Any]]) -> None:
    calls = calls_in_order(sequence)
    position = 0
    for sender, receiver, pattern in FLOW_SEQUENCE:
        while position < len(calls) and not (
                calls[position][:2] == (sender, receiver)
                and re.match(pattern, calls[position][2].split("?")[0])):
            position += 1
        assert position < len(calls), f"{sender} -> {receiver} {pattern} missing in {calls}"
        position += 1
    nested = {(m["from"], m["to"]) for m in sequence if m["depth"] == 1}
    assert nested == {("CMS", "Trustly"), ("TPAS", "CMS")}
    answer = [m for m in sequence if m["kind"] == "response" and m["to"] == "Phone"]
    assert answer and answer[-1]["status"] == 201 and answer[-1]["note"] == "CREDITED"


def run_flow(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SCANPAY, "flow", *args], capture_output=True, text=True, timeout=120,
                          check=False)


def test_flow_on_embedded_sims_prints_the_design_sequence_and_the_meter() -> None:
    result = run_flow("--amount", "2500", "--egm", "EGM-003")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert re.search(r"^ ?\d+\. EGM -> CMS +POST /cws/v1/egms/EGM-003/qr$", out, re.M)
    assert re.search(r"CMS -> Trustly +POST /auth-service/api/oauth2/qrcode/token +200", out)
    assert re.search(r"TPAS -> CMS +POST /cws/v1/fundings +201 APPLIED", out)
    assert re.search(r"Trustly -> Phone +201 CREDITED", out)
    assert "EGM-003 meter: $25.00 (was $0.00)" in out
    assert "demo-password" not in out and "tpas-secret" not in out


def test_flow_json_on_embedded_sims_follows_design_section_1() -> None:
    result = run_flow("--json", "--amount", "700")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["credited"] is True
    assert report["meter"] == {"before": 0, "after": 700, "currency": "USD"}
    assert_matches_design(report["sequence"])
    assert [m["n"] for m in report["sequence"]] == list(range(1, len(report["sequence"]) + 1))


def test_a_keyphrase_that_fails_the_payment_exits_1_and_moves_nothing() -> None:
    result = run_flow("--json", "--password", "NotEnoughFunds")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["credited"] is False
    assert report["meter"]["after"] == report["meter"]["before"] == 0
    assert not any(m["path"] == "/cws/v1/fundings" for m in report["sequence"])


@pytest.mark.slow
def test_flow_against_running_sims_reads_their_journals(tmp_path: Path) -> None:
    trustly_port, cms_port = free_port(), free_port()
    trustly, cms = f"http://127.0.0.1:{trustly_port}", f"http://127.0.0.1:{cms_port}"
    serve = [SCANPAY, "serve", "--trustly-port", str(trustly_port), "--cms-port", str(cms_port),
             "--data-dir", str(tmp_path), "--admin-token", "flow-test-admin"]
    with running(serve, f"{cms}/openapi.json"):
        result = run_flow("--trustly-url", trustly, "--cms-url", cms, "--admin-token",
                          "flow-test-admin", "--json", "--egm", "EGM-002", "--amount", "1500")
        assert result.returncode == 0, result.stdout + result.stderr
        report = json.loads(result.stdout)
        assert report["meter"]["after"] - report["meter"]["before"] == 1500
        assert_matches_design(report["sequence"])
        again = run_flow("--trustly-url", trustly, "--cms-url", cms, "--egm", "EGM-002",
                         "--amount", "1500")
        assert again.returncode == 0
        assert "needs the sims' admin token" in again.stdout
        assert "EGM-002 meter: $30.00 (was $15.00)" in again.stdout


def test_flow_says_so_when_the_sims_cannot_be_reached() -> None:
    port = free_port()
    result = run_flow("--trustly-url", f"http://127.0.0.1:{port}", "--cms-url",
                      f"http://127.0.0.1:{port}")
    assert result.returncode == 2
    assert f"cannot reach http://127.0.0.1:{port}" in result.stdout


def test_flow_wants_both_urls_or_neither() -> None:
    result = run_flow("--cms-url", "http://127.0.0.1:9")
    assert result.returncode == 2
    assert "give both --trustly-url and --cms-url" in result.stderr
