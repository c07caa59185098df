"""Properties of QR tokens over random merchants, EGMs, lifetimes and issue instants.

On failure Hypothesis prints the falsifying example and a reproduction blob.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim_trustly.auth_service.tokens import (
    ExpiredQrToken,
    InvalidQrToken,
    Keyring,
    SigningKey,
    issue_qr_token,
    verify_qr_token,
)

ISSUER = "https://trustly.sim"
KEYRINGS = {
    "HS256": Keyring([SigningKey.generate("hs-1")], "hs-1"),
    "ES256": Keyring([SigningKey.generate("es-1", "ES256")], "es-1"),
}
TOKEN_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ "

ids = st.text(min_size=1, max_size=40)
lifetimes = st.integers(min_value=1, max_value=86_400)
instants = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)
keyrings = st.sampled_from(sorted(KEYRINGS)).map(KEYRINGS.__getitem__)
PROPERTY_SETTINGS = settings(max_examples=150, deadline=None)


def issue(keyring: Keyring, merchant: str, egm: str, at: datetime, lifetime: int) -> str:
    return issue_qr_token(keyring, issuer=ISSUER, merchant_id=merchant, egm_id=egm,
                          jti="jti-" + egm, issued_at=at, lifetime_s=lifetime)


def whole_second(at: datetime) -> datetime:
    return at.replace(microsecond=0)


@PROPERTY_SETTINGS
@given(keyring=keyrings, merchant=ids, egm=ids, at=instants, lifetime=lifetimes, data=st.data())
def test_token_verifies_for_its_own_merchant_and_egm_throughout_its_life(
    keyring: Keyring, merchant: str, egm: str, at: datetime, lifetime: int, data: st.DataObject,
) -> None:
    token = issue(keyring, merchant, egm, at, lifetime)
    elapsed = data.draw(st.integers(min_value=0, max_value=lifetime - 1), label="elapsed")
    now = whole_second(at) + timedelta(seconds=elapsed)
    claims = verify_qr_token(token, keyring, issuer=ISSUER, now=now,
                             merchant_id=merchant, egm_id=egm)
    assert (claims.merchant_id, claims.egm_id) == (merchant, egm)
    assert claims.issued_at == whole_second(at)
    assert claims.expires_at - claims.issued_at == timedelta(seconds=lifetime)


@PROPERTY_SETTINGS
@given(keyring=keyrings, merchant=ids, egm=ids, at=instants, lifetime=lifetimes, data=st.data())
def test_token_verifies_for_no_other_merchant_or_egm(
    keyring: Keyring, merchant: str, egm: str, at: datetime, lifetime: int, data: st.DataObject,
) -> None:
    token = issue(keyring, merchant, egm, at, lifetime)
    other_merchant = data.draw(ids.filter(lambda m: m != merchant), label="other merchant")
    other_egm = data.draw(ids.filter(lambda e: e != egm), label="other egm")
    for merchant_id, egm_id, reason in ((other_merchant, egm, "audience"),
                                        (merchant, other_egm, "subject"),
                                        (other_merchant, other_egm, "audience")):
        with pytest.raises(InvalidQrToken) as caught:
            verify_qr_token(token, keyring, issuer=ISSUER, now=at,
                            merchant_id=merchant_id, egm_id=egm_id)
        assert caught.value.reason == reason


@PROPERTY_SETTINGS
@given(keyring=keyrings, at=instants, lifetime=lifetimes,
       leeway=st.integers(min_value=0, max_value=30),
       late=st.integers(min_value=0, max_value=10**7))
def test_token_is_expired_from_exp_plus_leeway_on(
    keyring: Keyring, at: datetime, lifetime: int, leeway: int, late: int,
) -> None:
    token = issue(keyring, "m", "e", at, lifetime)
    now = whole_second(at) + timedelta(seconds=lifetime + leeway + late)
    with pytest.raises(ExpiredQrToken):
        verify_qr_token(token, keyring, issuer=ISSUER, now=now, leeway_s=leeway)


@PROPERTY_SETTINGS
@given(keyring=keyrings, merchant=ids, egm=ids, at=instants, lifetime=lifetimes, data=st.data())
def test_any_single_character_change_is_rejected(
    keyring: Keyring, merchant: str, egm: str, at: datetime, lifetime: int, data: st.DataObject,
) -> None:
    token = issue(keyring, merchant, egm, at, lifetime)
    position = data.draw(st.integers(min_value=0, max_value=len(token) - 1), label="position")
    replacement = data.draw(
        st.sampled_from(TOKEN_ALPHABET).filter(lambda c: c != token[position]), label="char"
    )
    tampered = token[:position] + replacement + token[position + 1:]
    with pytest.raises(InvalidQrToken):
        verify_qr_token(tampered, keyring, issuer=ISSUER, now=at)
