"""The exported strategies keep their promises, checked against the reference parsers:
"malformed" values are always refused (4xx), "valid" ones always parse, and no malformed
QR token, not even a bit flip of a real one, verifies."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings

from harness.plugin import strategies
from sim_cms.funding.requests import parse_funding_request
from sim_cms.limits import UBAI_PATTERN, parse_limit_change
from sim_cms.settings import CmsSettings
from sim_trustly.auth_service.tokens import Keyring, SigningKey, issue_qr_token, verify_qr_token
from simkit.errors import SimError

CMS = CmsSettings(database_url="sqlite://")
KEYRING = Keyring([SigningKey.generate("k1")], "k1")
NOW = datetime(2026, 11, 25, 21, 0, tzinfo=UTC)
REAL_TOKEN = issue_qr_token(KEYRING, issuer="https://trustly.sim", merchant_id="demo-merchant",
                            egm_id="EGM-001", jti="jti-1", issued_at=NOW, lifetime_s=300)
CHECK = settings(max_examples=150, deadline=None)


@CHECK
@given(body=strategies.malformed_funding_bodies(egm_id="EGM-001"))
def test_malformed_funding_bodies_are_refused_or_decided_as_invalid_amounts(body: Any) -> None:
    json.dumps(body)  # a JSON value, NaN included
    try:
        request = parse_funding_request(body)
    except SimError as exc:
        assert 400 <= exc.http_status < 500
        return
    assert request.amount <= 0  # well-formed but unpayable: the CMS decides 422 INVALID_AMOUNT


@CHECK
@given(body=strategies.malformed_limit_bodies())
def test_malformed_limit_bodies_are_always_refused(body: Any) -> None:
    try:
        parse_limit_change(body, CMS)
    except SimError as exc:
        assert 400 <= exc.http_status < 500
        return
    raise AssertionError(f"accepted {body!r}")


@CHECK
@given(funding=strategies.funding_bodies(), limit=strategies.limit_bodies(),
       ubai=strategies.ubais(), demo_ubai=strategies.demo_ubais())
def test_valid_values_parse(funding: dict[str, Any], limit: dict[str, Any], ubai: str,
                            demo_ubai: str) -> None:
    parse_funding_request(funding)
    parse_limit_change(limit, CMS)
    assert UBAI_PATTERN.fullmatch(ubai) and UBAI_PATTERN.fullmatch(demo_ubai)


@CHECK
@given(amount=strategies.invalid_amounts())
def test_invalid_amounts_never_make_a_payable_funding(amount: Any) -> None:
    body = {"transactionId": "t-1", "egmId": "EGM-001", "amount": amount, "currency": "USD",
            "ubai": "ubai-1", "qrTokenId": "q-1"}
    try:
        request = parse_funding_request(body)
    except SimError as exc:
        assert exc.http_status == 400
        return
    assert request.amount <= 0


@settings(max_examples=300, deadline=None)
@given(token=strategies.malformed_qr_tokens(REAL_TOKEN))
def test_no_malformed_qr_token_verifies(token: str) -> None:
    assert token != REAL_TOKEN
    try:
        verify_qr_token(token, KEYRING, issuer="https://trustly.sim", now=NOW,
                        merchant_id="demo-merchant", egm_id="EGM-001")
    except SimError:
        return
    raise AssertionError(f"verified {token!r}")


@CHECK
@given(raw=strategies.malformed_json_documents())
def test_malformed_json_documents_do_not_parse_strictly(raw: bytes) -> None:
    def no_constants(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    try:  # RFC 8259: UTF-8 without a BOM, no NaN or Infinity
        json.loads(raw.decode("utf-8"), parse_constant=no_constants)
    except (ValueError, RecursionError):
        return
    raise AssertionError(raw[:80])
