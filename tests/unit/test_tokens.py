"""QR tokens: what verifies, and every way a token that is not exactly ours is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from sim_trustly.auth_service.tokens import (
    ExpiredQrToken,
    InvalidQrToken,
    InvalidSigningKey,
    Keyring,
    QrClaims,
    SigningKey,
    WeakSigningKey,
    issue_qr_token,
    verify_qr_token,
)

ISSUER = "https://trustly.sim"
MERCHANT = "demo-merchant"
EGM = "EGM-001"
JTI = "q7Rk2vJx0pLm9sT4uW8yZa"
T0 = datetime(2026, 11, 25, 21, 5, tzinfo=UTC)
LIFETIME = 300
HS_KEY = SigningKey("hs-1", "HS256", b"s" * 32)
ES_KEY = SigningKey.generate("es-1", "ES256")
KEYRING = Keyring([HS_KEY, ES_KEY], "hs-1")
ES_KEYRING = Keyring([HS_KEY, ES_KEY], "es-1")

Signer = Callable[[bytes], bytes]


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hs_signer(secret: bytes) -> Signer:
    return lambda data: hmac.new(secret, data, hashlib.sha256).digest()


P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def es_signer(private: ec.EllipticCurvePrivateKey) -> Signer:
    """ES256 in JWS form (raw r || s), with s in its low half as the issuer writes it."""
    def sign(data: bytes) -> bytes:
        r, s = decode_dss_signature(private.sign(data, ec.ECDSA(hashes.SHA256())))
        s = min(s, P256_ORDER - s)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    return sign


def es_private(key: SigningKey) -> ec.EllipticCurvePrivateKey:
    loaded = serialization.load_pem_private_key(key.secret, password=None)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    return loaded


def good_header(key: SigningKey = HS_KEY) -> dict[str, Any]:
    return {"alg": key.alg, "kid": key.kid, "typ": "qr+jwt"}


def good_claims(at: datetime = T0, lifetime: int = LIFETIME) -> dict[str, Any]:
    iat = int(at.timestamp())
    return {"iss": ISSUER, "aud": MERCHANT, "sub": EGM, "iat": iat, "nbf": iat,
            "exp": iat + lifetime, "jti": JTI}


def forge(header: dict[str, Any] | bytes, claims: dict[str, Any] | bytes,
          sign: Signer | None = None) -> str:
    """A token built by hand, so tests can sign exactly what they want with any key."""
    def seg(part: dict[str, Any] | bytes) -> str:
        return b64(part if isinstance(part, bytes) else json.dumps(part).encode())

    signing_input = f"{seg(header)}.{seg(claims)}"
    signer = sign or hs_signer(HS_KEY.secret)
    return f"{signing_input}.{b64(signer(signing_input.encode()))}"


def issue(keyring: Keyring = KEYRING, **overrides: Any) -> str:
    args: dict[str, Any] = {"issuer": ISSUER, "merchant_id": MERCHANT, "egm_id": EGM,
                            "jti": JTI, "issued_at": T0, "lifetime_s": LIFETIME}
    return issue_qr_token(keyring, **(args | overrides))


def verify(token: str, keyring: Keyring = KEYRING, **overrides: Any) -> QrClaims:
    args: dict[str, Any] = {"issuer": ISSUER, "now": T0, "merchant_id": MERCHANT, "egm_id": EGM}
    return verify_qr_token(token, keyring, **(args | overrides))


def reason_of(token: str, keyring: Keyring = KEYRING, **overrides: Any) -> str:
    with pytest.raises(InvalidQrToken) as caught:
        verify(token, keyring, **overrides)
    return caught.value.reason


# --- issuing and verifying -------------------------------------------------------------


@pytest.mark.parametrize("keyring", [KEYRING, ES_KEYRING], ids=["HS256", "ES256"])
def test_issued_token_verifies_and_returns_its_claims(keyring: Keyring) -> None:
    token = issue(keyring, location_id="floor-2")
    claims = verify(token, keyring)
    assert claims == QrClaims(
        issuer=ISSUER, merchant_id=MERCHANT, egm_id=EGM, location_id="floor-2",
        issued_at=T0, not_before=T0, expires_at=T0 + timedelta(seconds=LIFETIME),
        jti=JTI, kid=keyring.active.kid,
    )


@pytest.mark.parametrize("keyring", [KEYRING, ES_KEYRING], ids=["HS256", "ES256"])
def test_header_names_the_key_its_algorithm_and_the_qr_type(keyring: Keyring) -> None:
    header = json.loads(unb64(issue(keyring).split(".")[0]))
    assert header == {"alg": keyring.active.alg, "kid": keyring.active.kid, "typ": "qr+jwt"}


def test_token_without_location_has_no_loc_claim() -> None:
    payload = json.loads(unb64(issue().split(".")[1]))
    assert "loc" not in payload
    assert verify(issue()).location_id is None


def test_lifetime_is_exactly_exp_minus_iat_in_integer_seconds() -> None:
    payload = json.loads(unb64(issue(issued_at=T0 + timedelta(microseconds=999_999)).split(".")[1]))
    assert payload["exp"] - payload["iat"] == LIFETIME
    assert payload["iat"] == int(T0.timestamp())
    assert all(type(payload[name]) is int for name in ("iat", "nbf", "exp"))


@pytest.mark.parametrize("bad", [{"lifetime_s": 0}, {"lifetime_s": -5}, {"lifetime_s": True},
                                 {"merchant_id": ""}, {"egm_id": ""}, {"jti": ""}])
def test_issuing_refuses_nonsense_arguments(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        issue(**bad)


# --- time --------------------------------------------------------------------------------


def test_token_verifies_one_second_before_it_expires() -> None:
    assert verify(issue(), now=T0 + timedelta(seconds=LIFETIME - 1)).jti == JTI


def test_token_verifies_within_leeway_after_expiry() -> None:
    assert verify(issue(), now=T0 + timedelta(seconds=LIFETIME + 29)).jti == JTI


def test_token_is_expired_after_expiry_plus_leeway() -> None:
    with pytest.raises(ExpiredQrToken) as caught:
        verify(issue(), now=T0 + timedelta(seconds=LIFETIME + 30 + 1))
    assert (caught.value.code, caught.value.http_status) == ("QR_TOKEN_EXPIRED", 410)
    assert caught.value.reason == "expired"
    assert isinstance(caught.value, InvalidQrToken)


def test_without_leeway_token_is_expired_at_its_exp() -> None:
    with pytest.raises(ExpiredQrToken):
        verify(issue(), now=T0 + timedelta(seconds=LIFETIME), leeway_s=0)


def test_naive_now_is_taken_as_utc() -> None:
    naive_late = (T0 + timedelta(seconds=LIFETIME + 31)).replace(tzinfo=None)
    with pytest.raises(ExpiredQrToken):
        verify(issue(), now=naive_late)


@pytest.mark.parametrize("leeway", [31, 3600, -1])
def test_leeway_outside_zero_to_thirty_seconds_is_refused(leeway: int) -> None:
    with pytest.raises(ValueError):
        verify(issue(), leeway_s=leeway)


def test_not_before_beyond_leeway_is_rejected() -> None:
    claims = good_claims() | {"nbf": int(T0.timestamp()) + 31}
    assert reason_of(forge(good_header(), claims)) == "not_yet_valid"


def test_not_before_within_leeway_is_accepted() -> None:
    claims = good_claims() | {"nbf": int(T0.timestamp()) + 30}
    assert verify(forge(good_header(), claims)).jti == JTI


def test_token_issued_in_the_future_is_rejected() -> None:
    assert reason_of(issue(issued_at=T0 + timedelta(seconds=60))) == "not_yet_valid"


@pytest.mark.parametrize("times", [{"nbf": 1_800_000_000, "exp": 1_700_000_000},
                                   {"iat": 1_800_000_000}])
def test_inconsistent_times_are_rejected(times: dict[str, int]) -> None:
    assert reason_of(forge(good_header(), good_claims() | times)) == "claims"


# --- tampering ---------------------------------------------------------------------------


def replacements(char: str) -> set[str]:
    return {".", "=", "+", "/", "_", "-", "A", "0", " ", chr(ord(char) + 1),
            chr(max(ord(char) - 1, 1))} - {char}


@pytest.mark.parametrize("keyring", [KEYRING, ES_KEYRING], ids=["HS256", "ES256"])
def test_every_single_character_change_is_rejected(keyring: Keyring) -> None:
    token = issue(keyring, location_id="floor-2")
    for i, char in enumerate(token):
        for other in replacements(char):
            with pytest.raises(InvalidQrToken):
                verify(token[:i] + other + token[i + 1:], keyring)


@pytest.mark.parametrize("keyring", [KEYRING, ES_KEYRING], ids=["HS256", "ES256"])
def test_every_single_character_deletion_or_insertion_is_rejected(keyring: Keyring) -> None:
    token = issue(keyring)
    for i in range(len(token)):
        with pytest.raises(InvalidQrToken):
            verify(token[:i] + token[i + 1:], keyring)
    for i in range(len(token) + 1):
        with pytest.raises(InvalidQrToken):
            verify(token[:i] + "A" + token[i:], keyring)


def test_signature_changed_only_in_unused_base64_bits_is_rejected() -> None:
    token = issue()
    last = token[-1]
    # A 32-byte HMAC is 43 base64url characters whose last one carries 2 unused bits:
    # find another character that decodes to the very same signature bytes.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twins = [c for c in alphabet
             if c != last and unb64(token.split(".")[2][:-1] + c) == unb64(token.split(".")[2])]
    assert twins
    for twin in twins:
        assert reason_of(token[:-1] + twin) == "malformed"


def test_es256_signature_in_its_malleable_high_s_form_is_rejected() -> None:
    order = P256_ORDER
    signing_input, signature = issue(ES_KEYRING).rsplit(".", 1)
    raw = unb64(signature)
    s = int.from_bytes(raw[32:], "big")
    assert s <= order // 2  # issued in the low-s form
    twin = raw[:32] + (order - s).to_bytes(32, "big")
    es_public = ES_KEY.public_pem()
    loaded = serialization.load_pem_public_key(es_public)
    assert isinstance(loaded, ec.EllipticCurvePublicKey)
    r = int.from_bytes(raw[:32], "big")
    loaded.verify(encode_dss_signature(r, order - s), signing_input.encode(),
                  ec.ECDSA(hashes.SHA256()))  # the twin is a mathematically valid signature
    assert reason_of(f"{signing_input}.{b64(twin)}", ES_KEYRING) == "signature"


@pytest.mark.parametrize("mangle", [
    lambda t: "", lambda t: t + ".", lambda t: t + ".x", lambda t: t.rsplit(".", 1)[0],
    lambda t: t.replace(".", "..", 1), lambda t: t + "=", lambda t: t + "\n", lambda t: " " + t,
    lambda t: t.split(".")[0] + "=." + t.split(".", 1)[1], lambda t: t + "A" * 5000,
    lambda t: t[:-1] + "é",
], ids=["empty", "trailing dot", "four segments", "two segments", "empty segment",
        "padding", "newline", "leading space", "padded header", "too long", "non-ascii"])
def test_structurally_broken_tokens_are_malformed(mangle: Callable[[str], str]) -> None:
    assert reason_of(mangle(issue())) == "malformed"


@pytest.mark.parametrize("token", [None, b"abc.def.ghi", 42])
def test_non_string_token_is_malformed(token: Any) -> None:
    assert reason_of(token) == "malformed"


@pytest.mark.parametrize("header", [
    b"not json", b"[1, 2]", b'"alg"', b"\xff\xfe",
    b'{"alg":"HS256","kid":"hs-1","kid":"es-1","typ":"qr+jwt"}',
], ids=["not json", "array", "string", "not utf8", "duplicate member"])
def test_header_that_is_not_a_strict_json_object_is_malformed(header: bytes) -> None:
    assert reason_of(forge(header, good_claims())) == "malformed"


@pytest.mark.parametrize("payload", [
    b"not json", b"[]", b'{"exp": NaN}',
    json.dumps(good_claims()).replace('"aud"', '"aud":"other","aud"').encode(),
], ids=["not json", "array", "NaN", "duplicate aud"])
def test_payload_that_is_not_a_strict_json_object_is_malformed(payload: bytes) -> None:
    assert reason_of(forge(good_header(), payload)) == "malformed"


# --- keys and algorithms -----------------------------------------------------------------


def test_alg_none_is_rejected_with_or_without_a_signature() -> None:
    header = good_header() | {"alg": "none"}
    unsigned = forge(header, good_claims(), sign=lambda _: b"")
    assert reason_of(unsigned) == "malformed"
    assert reason_of(forge(header, good_claims(), sign=lambda _: b"x")) == "algorithm"


def test_hmac_signed_with_the_es_public_key_is_rejected() -> None:
    header = good_header(ES_KEY) | {"alg": "HS256"}
    attack = forge(header, good_claims(), sign=hs_signer(ES_KEY.public_pem()))
    assert reason_of(attack, ES_KEYRING) == "algorithm"


def test_es256_header_on_an_hs256_kid_is_rejected() -> None:
    header = good_header(HS_KEY) | {"alg": "ES256"}
    attack = forge(header, good_claims(), sign=es_signer(es_private(ES_KEY)))
    assert reason_of(attack) == "algorithm"


def test_correctly_forged_es256_token_verifies_proving_the_forger_is_sound() -> None:
    token = forge(good_header(ES_KEY), good_claims(), sign=es_signer(es_private(ES_KEY)))
    assert verify(token).kid == "es-1"


@pytest.mark.parametrize("header", [
    {"alg": "HS256", "typ": "qr+jwt"},
    {"alg": "HS256", "kid": 1, "typ": "qr+jwt"},
    {"alg": "HS256", "kid": "hs-1"},
    {"alg": "HS256", "kid": "hs-1", "typ": "JWT"},
    {"alg": "HS256", "kid": "hs-1", "typ": "qr+jwt", "jku": "https://evil.example/keys"},
], ids=["missing kid", "numeric kid", "missing typ", "wrong typ", "extra parameter"])
def test_header_other_than_alg_kid_and_qr_type_is_rejected(header: dict[str, Any]) -> None:
    assert reason_of(forge(header, good_claims())) == "malformed"


def test_unknown_kid_is_rejected() -> None:
    assert reason_of(forge(good_header() | {"kid": "hs-9"}, good_claims())) == "unknown_kid"


def test_token_from_a_different_key_with_the_same_kid_fails_signature() -> None:
    other = Keyring([SigningKey("hs-1", "HS256", b"t" * 32)], "hs-1")
    assert reason_of(issue(other)) == "signature"


def test_token_signed_by_a_removed_key_is_rejected() -> None:
    token = issue(KEYRING)
    retired = KEYRING.rotated(SigningKey.generate("hs-2")).without("hs-1")
    assert reason_of(token, retired) == "unknown_kid"


def test_active_key_cannot_be_removed() -> None:
    with pytest.raises(ValueError, match="active"):
        KEYRING.without("hs-1")


def test_rotated_keyring_signs_with_new_kid_and_still_verifies_old_tokens() -> None:
    old_token = issue(KEYRING)
    new_key = SigningKey.generate("hs-2")
    rotated = KEYRING.rotated(new_key)
    new_token = issue(rotated)
    assert json.loads(unb64(new_token.split(".")[0]))["kid"] == "hs-2"
    assert verify(old_token, rotated).kid == "hs-1"
    assert verify(new_token, rotated).kid == "hs-2"
    assert reason_of(new_token, KEYRING) == "unknown_kid"


# --- claims ------------------------------------------------------------------------------


@pytest.mark.parametrize("claim", ["iss", "aud", "sub", "iat", "nbf", "exp", "jti"])
def test_each_missing_claim_is_rejected(claim: str) -> None:
    claims = good_claims()
    del claims[claim]
    assert reason_of(forge(good_header(), claims)) == "claims"


@pytest.mark.parametrize("change", [
    {"exp": "1795000000"}, {"exp": 1795000000.0}, {"iat": True}, {"exp": -1},
    {"exp": 10**20}, {"aud": [MERCHANT]}, {"sub": 1}, {"iss": None}, {"jti": ""},
    {"loc": 5}, {"amount": 100},
], ids=lambda change: "-".join(f"{k}={v!r}" for k, v in change.items()))
def test_wrong_typed_or_unexpected_claims_are_rejected(change: dict[str, Any]) -> None:
    assert reason_of(forge(good_header(), good_claims() | change)) == "claims"


def test_token_for_another_merchant_is_rejected() -> None:
    assert reason_of(issue(), merchant_id="other-merchant") == "audience"


def test_token_for_another_egm_is_rejected() -> None:
    assert reason_of(issue(), egm_id="EGM-002") == "subject"


def test_token_from_another_issuer_is_rejected() -> None:
    assert reason_of(issue(issuer="https://elsewhere")) == "issuer"


def test_merchant_and_egm_are_only_checked_when_given() -> None:
    claims = verify(issue(), merchant_id=None, egm_id=None)
    assert (claims.merchant_id, claims.egm_id) == (MERCHANT, EGM)


def test_invalid_token_error_carries_stable_code_status_and_reason() -> None:
    with pytest.raises(InvalidQrToken) as caught:
        verify(issue(), merchant_id="other")
    error = caught.value
    assert (error.code, error.http_status, error.extra) == (
        "QR_TOKEN_INVALID", 400, {"reason": "audience"})


# --- key configuration -------------------------------------------------------------------


def test_short_hs256_secret_is_refused_naming_the_kid_and_minimum() -> None:
    with pytest.raises(WeakSigningKey, match=r"'weak'.*32 bytes"):
        SigningKey("weak", "HS256", b"x" * 31)
    assert issubclass(WeakSigningKey, ValueError)


@pytest.mark.parametrize("secret", [b"not a pem", b"-----BEGIN PRIVATE KEY-----\nAAAA\n"])
def test_unreadable_es256_pem_is_refused(secret: bytes) -> None:
    with pytest.raises(InvalidSigningKey, match="'bad'"):
        SigningKey("bad", "ES256", secret)


def test_es256_key_on_another_curve_is_refused() -> None:
    pem = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    with pytest.raises(InvalidSigningKey, match="P-256"):
        SigningKey("p384", "ES256", pem)


def test_unknown_algorithm_is_refused() -> None:
    with pytest.raises(InvalidSigningKey, match="HS256 or ES256"):
        SigningKey("k", "RS256", b"x" * 32)  # type: ignore[arg-type]


def test_generated_keys_are_random_and_never_shown_in_repr() -> None:
    first, second = SigningKey.generate("a"), SigningKey.generate("a")
    assert first.secret != second.secret and len(first.secret) == 32
    assert first.secret.hex() not in repr(first) and repr(first.secret) not in repr(first)


def test_keyring_needs_its_active_key_and_unique_kids() -> None:
    with pytest.raises(ValueError, match="active"):
        Keyring([HS_KEY], "es-1")
    with pytest.raises(ValueError, match="twice"):
        Keyring([HS_KEY, SigningKey("hs-1", "HS256", b"t" * 32)], "hs-1")


def test_keyring_lists_and_finds_its_keys() -> None:
    assert KEYRING.kids == ("hs-1", "es-1")
    assert KEYRING.active is HS_KEY
    assert KEYRING.get("es-1") is ES_KEY
    assert KEYRING.get("nope") is None
