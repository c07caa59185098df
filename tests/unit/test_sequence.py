"""The message sequence rebuilt from two journals: who called whom, nesting, order, filtering."""

from __future__ import annotations

import json
from typing import Any

from harness.sequence.messages import Entry, Marks, build_sequence, caller_of, note_of

RUN = "flow-run"
AT = "2026-11-25T21:00:00.{ms:03d}Z"


def journal_entry(entry_id: int, method: str, path: str, *, ms: int, latency: int,
                  status: int = 200, agent: str = "", correlation: str = RUN,
                  request: Any = None, response: Any = None) -> dict[str, Any]:
    """A `GET /_sim/journal` item answered at `ms` after latency `latency`."""
    return {
        "id": entry_id, "at": AT.format(ms=ms), "latencyMs": latency, "method": method,
        "path": path, "status": status, "correlationId": correlation,
        "requestHeaders": {"User-Agent": agent} if agent else {},
        "requestBody": json.dumps(request) if request is not None else "",
        "responseBody": json.dumps(response) if response is not None else "",
    }


def pay_journals(*, frozen: bool = False) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One flow's journals: QR acquisition (CMS -> Trustly nested) and a payment (TPAS -> CMS).

    With `frozen`, every entry carries the same instant and latency 0, as under a frozen
    manual clock: nesting must then come from the harness's marks.
    """
    def t(ms: int) -> int:
        return 0 if frozen else ms

    def lat(ms: int) -> int:
        return 0 if frozen else ms

    trustly = [
        journal_entry(11, "POST", "/auth-service/api/oauth2/qrcode/token", ms=t(15),
                      latency=lat(10), agent="python-httpx", correlation="cms-own"),
        journal_entry(12, "GET", "/api/v1/scan/abc", ms=t(40), latency=lat(2),
                      agent="scanpay-flow/0.1 (phone)", response={"state": "ACTIVE"}),
        journal_entry(13, "POST", "/api/v1/scan/abc/payments", ms=t(90), latency=lat(40),
                      status=201, agent="scanpay-flow/0.1 (phone)",
                      response={"status": "CREDITED"}),
    ]
    cms = [
        journal_entry(21, "POST", "/cws/v1/egms/EGM-001/qr", ms=t(20), latency=lat(18),
                      agent="scanpay-flow/0.1 (egm)"),
        journal_entry(22, "POST", "/cws/v1/oauth/token", ms=t(60), latency=lat(2),
                      agent="scanpay-sim-tpas/0.1"),
        journal_entry(23, "POST", "/cws/v1/fundings", ms=t(80), latency=lat(10), status=201,
                      agent="scanpay-sim-tpas/0.1", request={"egmId": "EGM-001"},
                      response={"status": "APPLIED"}),
    ]
    return trustly, cms


MARKS = [Marks(trustly=10, cms=20), Marks(trustly=11, cms=21), Marks(trustly=12, cms=21),
         Marks(trustly=13, cms=23)]


def lines(messages: list[Any]) -> list[tuple[int, str, str, str, int | None, int]]:
    return [(m.number, m.sender, m.receiver, m.entry.path, m.status, m.depth)
            for m in messages]


def test_a_flow_reads_as_design_section_1() -> None:
    trustly, cms = pay_journals()
    messages = build_sequence(trustly, cms, correlation_id=RUN, boundaries=MARKS)
    assert lines(messages) == [
        (1, "EGM", "CMS", "/cws/v1/egms/EGM-001/qr", None, 0),
        (2, "CMS", "Trustly", "/auth-service/api/oauth2/qrcode/token", 200, 1),
        (3, "CMS", "EGM", "/cws/v1/egms/EGM-001/qr", 200, 0),
        (4, "Phone", "Trustly", "/api/v1/scan/abc", 200, 0),
        (5, "Phone", "Trustly", "/api/v1/scan/abc/payments", None, 0),
        (6, "TPAS", "CMS", "/cws/v1/oauth/token", 200, 1),
        (7, "TPAS", "CMS", "/cws/v1/fundings", 201, 1),
        (8, "Trustly", "Phone", "/api/v1/scan/abc/payments", 201, 0),
    ]
    assert messages[6].note == "APPLIED" and messages[7].note == "CREDITED"
    assert messages[7].text() == "8. Trustly -> Phone  201 CREDITED  40 ms"


def test_marks_nest_calls_when_the_clock_is_frozen() -> None:
    trustly, cms = pay_journals(frozen=True)
    messages = build_sequence(trustly, cms, correlation_id=RUN, boundaries=MARKS)
    assert [(m.sender, m.receiver, m.depth) for m in messages] == [
        ("EGM", "CMS", 0), ("CMS", "Trustly", 1), ("CMS", "EGM", 0),
        ("Phone", "Trustly", 0),
        ("Phone", "Trustly", 0), ("TPAS", "CMS", 1), ("TPAS", "CMS", 1), ("Trustly", "Phone", 0),
    ]


def test_other_traffic_is_left_out() -> None:
    trustly, cms = pay_journals()
    cms.append(journal_entry(24, "GET", "/cws/v1/egms/EGM-002", ms=85, latency=1,
                             correlation="someone-else"))
    trustly.append(journal_entry(14, "GET", "/api/v1/scan/zzz", ms=86, latency=1,
                                 correlation="another-phone"))
    messages = build_sequence(trustly, cms, correlation_id=RUN, boundaries=MARKS)
    assert len(messages) == 8
    assert all("zzz" not in m.entry.path and "EGM-002" not in m.entry.path for m in messages)


def test_entries_before_the_first_mark_are_not_the_runs() -> None:
    trustly, cms = pay_journals()
    cms.insert(0, journal_entry(19, "GET", "/cws/v1/egms/EGM-001", ms=1, latency=1))
    messages = build_sequence(trustly, cms, correlation_id=RUN, boundaries=MARKS)
    assert messages[0].entry.id == 21


def test_without_marks_time_orders_one_window() -> None:
    trustly, cms = pay_journals()
    messages = build_sequence(trustly, cms, correlation_id=RUN)
    assert [m.entry.id for m in messages][:3] == [21, 11, 21]


def test_callers_are_inferred_from_agent_then_path() -> None:
    def entry(source: str, path: str, agent: str = "") -> Entry:
        raw = journal_entry(1, "GET", path, ms=0, latency=0, agent=agent)
        return Entry.from_json(source, raw)  # type: ignore[arg-type]

    assert caller_of(entry("trustly", "/auth-service/api/oauth2/qrcode/token")) == "CMS"
    assert caller_of(entry("trustly", "/scan/abc")) == "Phone"
    assert caller_of(entry("cms", "/cws/v1/fundings")) == "TPAS"
    assert caller_of(entry("cms", "/egm/EGM-001")) == "EGM"
    assert caller_of(entry("cms", "/cws/v1/fundings", "scanpay-flow/0.1 (egm)")) == "EGM"
    assert caller_of(entry("cms", "/other")) == "Client"


def test_notes_come_from_status_state_or_error_code() -> None:
    def note(status: int, body: Any) -> str:
        raw = journal_entry(1, "GET", "/x", ms=0, latency=0, status=status, response=body)
        return note_of(Entry.from_json("cms", raw))

    assert note(201, {"status": "APPLIED"}) == "APPLIED"
    assert note(409, {"code": "EGM_IN_GAME"}) == "EGM_IN_GAME"
    assert note(401, {"errors": [{"reason": "invalid_client"}]}) == "invalid_client"
    assert note(200, {"code": "ignored-on-success"}) == ""
    assert note(500, "not an object") == ""
