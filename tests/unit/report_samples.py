"""Hand-built certification runs for the report tests (unit and browser).

One scenario of each outcome, with sequences that hold what a hostile or broken target could
send back: markup, CDATA terminators, control characters, lone surrogates and non-ASCII.
"""

from __future__ import annotations

from harness.certify.results import Check, Exchange, RunResult, ScenarioResult

SCRIPT = "</script><script>alert(1)</script>"
CDATA_END = "]]>"
CONTROL = "bell\x07nul\x00esc\x1b"
NON_ASCII = "Spielbank Zürich — 東京 🎰"
EXTERNAL = "https://evil.example/x.js"


def happy_sequence(marker: str = "") -> list[Exchange]:
    """A scan-then-pay: CMS -> Trustly for the QR (nested in the EGM's call), phone, TPAS."""
    return [
        Exchange(1, "EGM", "CMS", "POST", "/cws/v1/egms/EGM-001/qr", None, None,
                 kind="request", request_excerpt='{"amount": "20.00"}'),
        Exchange(2, "CMS", "Trustly", "POST", "/auth-service/v1/qr-tokens", 201, 7,
                 note="ACTIVE", depth=1, request_excerpt='{"egmId": "EGM-001"}',
                 response_excerpt='{"status": "ACTIVE", "url": "http://127.0.0.1/scan/abc"}'),
        Exchange(3, "CMS", "EGM", "POST", "/cws/v1/egms/EGM-001/qr", 201, 12, kind="response",
                 response_excerpt='{"qr": "..."}'),
        Exchange(4, "Phone", "Trustly", "GET", f"/api/v1/scan/abc{marker}", 200, 3,
                 note="ACTIVE"),
        Exchange(5, "Phone", "Trustly", "POST", "/api/v1/scan/abc/payments", 201, 40,
                 note="CREDITED", request_excerpt='{"amount": "20.00", "currency": "USD"}',
                 response_excerpt='{"status": "CREDITED"}'),
    ]


def sample_run() -> RunResult:
    """A run with one scenario passed, failed, skipped and errored, plus a hostile one."""
    passed = ScenarioResult(
        "QR-001", "QR decode equals url", "The EGM shows a QR whose text is the token's url.",
        ("qr", "happy-path"), "passed", 0.412,
        checks=[Check("QR text equals url", True, "http://127.0.0.1/scan/abc",
                      "http://127.0.0.1/scan/abc")],
        sequence=happy_sequence())
    failed = ScenarioResult(
        "PAY-007", "Replayed QR is rejected", "A QR that funded once must not fund again.",
        ("payments",), "failed", 1.25, reason="second payment was CREDITED",
        checks=[Check("first payment credited", True, "CREDITED", "CREDITED"),
                Check("replay rejected", False, "HTTP 409 QR_ALREADY_USED", "HTTP 201 CREDITED")],
        sequence=happy_sequence())
    skipped = ScenarioResult(
        "CLK-002", "Expired QR cannot be scanned", "Expired tokens are refused.", ("clock",),
        "skipped", 0.0, reason="target offers no clock hook")
    error = ScenarioResult(
        "LIM-003", "Daily limit across gaming day", "Limits reset at the gaming-day change.",
        ("limits",), "error", 0.05, reason="ConnectError: connection refused by 127.0.0.1",
        sequence_note="the journals could not be read")
    hostile = ScenarioResult(
        f"BAD-{SCRIPT}", f"Title {SCRIPT} {CDATA_END}", f"Req {NON_ASCII} {EXTERNAL}",
        (f"tag{SCRIPT}",), "failed", 0.3, reason=f"reason {CONTROL} {SCRIPT}",
        checks=[Check(f"check {SCRIPT}", False, f"exp {CDATA_END} {NON_ASCII}",
                      f"obs {CONTROL} \udc80")],
        sequence=[Exchange(1, f"Phone{SCRIPT}", "Trustly", "GET", f"/scan/{SCRIPT}{CDATA_END}",
                           500, 2, note=f"{CONTROL}", request_excerpt=f"<img src={EXTERNAL}>",
                           response_excerpt=f"{SCRIPT}{CDATA_END}{CONTROL}{NON_ASCII}")])
    return RunResult(target=f"Casino {NON_ASCII}", target_kind="partner",
                     started_at="2025-06-01T10:15:30.123Z", duration_s=2.5,
                     scenarios=[passed, failed, skipped, error, hostile])
