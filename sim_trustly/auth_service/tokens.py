"""QR tokens: compact JWS tokens that Trustly's auth service issues and TPAS verifies.

The issuer is the only verifier, so HS256 with a 32-byte secret is the default; ES256 is there
for deployments that want to hand out a public key. Every key has a `kid`, the keyring keeps old
keys for verification after a rotation, and verification pins the algorithm to the key named
by `kid` (never to the header's `alg`), which is what defeats `alg: none` and HS/ES confusion.

The parser is deliberately narrower than a general JWT library: exactly three canonical
base64url segments, JSON objects without duplicate members, only the header parameters and
claims we issue, integer times. A token we did not produce byte for byte is refused. Time comes
from the caller's `now`, never from the machine's clock, so a ManualClock governs expiry.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, Final, Literal

import orjson
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)
from jwt.algorithms import ECAlgorithm, HMACAlgorithm

from simkit.clock import utc
from simkit.errors import SimError

Alg = Literal["HS256", "ES256"]

QR_JWT_TYP: Final = "qr+jwt"
MAX_LEEWAY_S: Final = 30
MIN_HS256_SECRET_BYTES: Final = 32
MAX_TOKEN_CHARS: Final = 4096

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_LAST_INSTANT_S: Final = 253_402_300_799  # 9999-12-31T23:59:59Z, the end of datetime's range
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_HEADER_PARAMS: Final = frozenset({"alg", "kid", "typ"})
_REQUIRED_CLAIMS: Final = frozenset({"iss", "aud", "sub", "iat", "nbf", "exp", "jti"})
_ALLOWED_CLAIMS: Final = _REQUIRED_CLAIMS | {"loc"}

# PyJWT's algorithm objects give us vetted JWS signature formats (ES256's raw r||s) without
# its claim checks, which read the system clock.
_HS256: Final = HMACAlgorithm(HMACAlgorithm.SHA256)
_ES256: Final = ECAlgorithm(ECAlgorithm.SHA256)
# ECDSA signatures are malleable: (r, n - s) verifies too. Issuing only the low-s form and
# refusing the other keeps "one token, one string" true for ES256 as it is for HS256.
_P256_ORDER: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


class InvalidSigningKey(ValueError):
    """Raised when a signing key is configured wrongly (unknown alg, unreadable ES256 PEM)."""


class WeakSigningKey(InvalidSigningKey):
    """Raised when an HS256 secret is shorter than 32 bytes, which brute force could recover."""


class InvalidQrToken(SimError):
    """Raised when a QR token is not one we issued for this use; `reason` says which check."""

    _CODE = "QR_TOKEN_INVALID"
    _STATUS = 400

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(self._CODE, self._STATUS, message, reason=reason)
        self.reason = reason


class ExpiredQrToken(InvalidQrToken):
    """Raised when a genuine QR token is past its `exp` (plus leeway): the QR must be renewed."""

    _CODE = "QR_TOKEN_EXPIRED"
    _STATUS = 410

    def __init__(self, message: str) -> None:
        super().__init__("expired", message)


@dataclass(frozen=True)
class SigningKey:
    """One key: HS256 raw secret, or ES256 private key as PEM. Validated on construction."""

    kid: str
    alg: Alg
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.kid, str) or not self.kid:
            raise InvalidSigningKey("a signing key needs a non-empty string kid")
        if not isinstance(self.secret, bytes):
            raise InvalidSigningKey(f"signing key {self.kid!r}: the secret must be bytes")
        if self.alg == "HS256":
            self._check_hs256()
        elif self.alg == "ES256":
            _ = self._es_private  # parse now so a bad PEM fails at configuration time
        else:
            raise InvalidSigningKey(
                f"signing key {self.kid!r}: alg must be HS256 or ES256, not {self.alg!r}"
            )

    def _check_hs256(self) -> None:
        if len(self.secret) < MIN_HS256_SECRET_BYTES:
            raise WeakSigningKey(
                f"signing key {self.kid!r}: an HS256 secret needs at least "
                f"{MIN_HS256_SECRET_BYTES} bytes, got {len(self.secret)}"
            )

    @cached_property
    def _es_private(self) -> ec.EllipticCurvePrivateKey:
        # Cached so issuing does not parse the PEM on every call.
        try:
            key = load_pem_private_key(self.secret, password=None)
        except (ValueError, TypeError) as exc:
            raise InvalidSigningKey(
                f"signing key {self.kid!r}: ES256 needs an unencrypted PEM private key ({exc})"
            ) from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise InvalidSigningKey(f"signing key {self.kid!r}: ES256 needs a P-256 EC key")
        return key

    @cached_property
    def _es_public(self) -> ec.EllipticCurvePublicKey:
        return self._es_private.public_key()

    @classmethod
    def generate(cls, kid: str, alg: Alg = "HS256") -> SigningKey:
        """A fresh random key, for seeding and tests: 32 random bytes, or a new P-256 key."""
        if alg == "ES256":
            private = ec.generate_private_key(ec.SECP256R1())
            pem = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
            return cls(kid, "ES256", pem)
        return cls(kid, alg, secrets.token_bytes(MIN_HS256_SECRET_BYTES))

    def public_pem(self) -> bytes:
        """The ES256 public key as PEM, for parties that verify without the secret."""
        if self.alg != "ES256":
            raise InvalidSigningKey(f"signing key {self.kid!r}: HS256 has no public key")
        return self._es_public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)

    def sign(self, signing_input: bytes) -> bytes:
        """The JWS signature of `signing_input` under this key's own algorithm."""
        if self.alg == "HS256":
            return _HS256.sign(signing_input, self.secret)
        raw = _ES256.sign(signing_input, self._es_private)
        s = int.from_bytes(raw[32:], "big")
        return raw if _is_low_s(raw) else raw[:32] + (_P256_ORDER - s).to_bytes(32, "big")

    def verifies(self, signing_input: bytes, signature: bytes) -> bool:
        """True when `signature` is this key's signature of `signing_input` (constant time)."""
        if self.alg == "HS256":
            return _HS256.verify(signing_input, self.secret, signature)
        return _is_low_s(signature) and _ES256.verify(signing_input, self._es_public, signature)


def _is_low_s(signature: bytes) -> bool:
    return int.from_bytes(signature[32:], "big") <= _P256_ORDER // 2


class Keyring:
    """The keys a sim signs and verifies with: one active key signs, all of them verify.

    Rotation adds a new active key and keeps the old one until its last token has expired, so
    QR codes already on screens keep working.
    """

    def __init__(self, keys: Sequence[SigningKey], active_kid: str) -> None:
        by_kid: dict[str, SigningKey] = {}
        for key in keys:
            if key.kid in by_kid:
                raise ValueError(f"keyring: kid {key.kid!r} appears twice")
            by_kid[key.kid] = key
        if active_kid not in by_kid:
            raise ValueError(f"keyring: active kid {active_kid!r} is not among the keys")
        self._keys = by_kid
        self.active = by_kid[active_kid]

    @property
    def kids(self) -> tuple[str, ...]:
        """Every kid that verifies, in configuration order."""
        return tuple(self._keys)

    def get(self, kid: str) -> SigningKey | None:
        """The key named `kid`, or None when this keyring does not hold it."""
        return self._keys.get(kid)

    def rotated(self, new_key: SigningKey) -> Keyring:
        """A keyring where `new_key` signs and every current key still verifies."""
        return Keyring([*self._keys.values(), new_key], new_key.kid)

    def without(self, kid: str) -> Keyring:
        """A keyring that no longer verifies `kid` (its tokens have all expired)."""
        return Keyring([k for k in self._keys.values() if k.kid != kid], self.active.kid)

    def __repr__(self) -> str:
        return f"Keyring(kids={self.kids!r}, active={self.active.kid!r})"


@dataclass(frozen=True)
class QrClaims:
    """What a verified QR token says: who issued it, for which merchant and EGM, and when."""

    issuer: str
    merchant_id: str
    egm_id: str
    location_id: str | None
    issued_at: datetime
    not_before: datetime
    expires_at: datetime
    jti: str
    kid: str


def issue_qr_token(
    keyring: Keyring, *, issuer: str, merchant_id: str, egm_id: str, jti: str,
    issued_at: datetime, lifetime_s: int, location_id: str | None = None,
) -> str:
    """Sign a QR token with the active key; `exp - iat == lifetime_s` to the second.

    `issued_at` is truncated to whole seconds (JWT times are integers) before the lifetime is
    added, so the token never outlives `issued_at + lifetime_s`.
    """
    for name, value in (("issuer", issuer), ("merchant_id", merchant_id),
                        ("egm_id", egm_id), ("jti", jti)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"issue_qr_token: {name} must be a non-empty string")
    if isinstance(lifetime_s, bool) or not isinstance(lifetime_s, int) or lifetime_s < 1:
        raise ValueError("issue_qr_token: lifetime_s must be a positive integer")
    iat = _epoch_seconds(issued_at)
    claims: dict[str, Any] = {
        "iss": issuer, "aud": merchant_id, "sub": egm_id,
        "iat": iat, "nbf": iat, "exp": iat + lifetime_s, "jti": jti,
    }
    if location_id is not None:
        claims["loc"] = location_id
    key = keyring.active
    header = {"alg": key.alg, "kid": key.kid, "typ": QR_JWT_TYP}
    signing_input = _b64_json(header) + b"." + _b64_json(claims)
    return (signing_input + b"." + _b64(key.sign(signing_input))).decode("ascii")


def verify_qr_token(
    token: str, keyring: Keyring, *, issuer: str, now: datetime,
    merchant_id: str | None = None, egm_id: str | None = None, leeway_s: int = 30,
) -> QrClaims:
    """Check a QR token completely and return its claims, or raise InvalidQrToken.

    The order matters: nothing in the payload is read before the signature has been checked
    with the key the `kid` names, under that key's algorithm.
    """
    if isinstance(leeway_s, bool) or not isinstance(leeway_s, int):
        raise ValueError("verify_qr_token: leeway_s must be an integer")
    if not 0 <= leeway_s <= MAX_LEEWAY_S:
        raise ValueError(f"verify_qr_token: leeway_s must be within 0..{MAX_LEEWAY_S}")
    header_b64, payload_b64, signature = _split(token)
    key = _key_for(_parse_object(_decode_segment(header_b64), "header"), keyring)
    if not key.verifies(header_b64 + b"." + payload_b64, signature):
        raise InvalidQrToken("signature", "QR token signature does not verify")
    claims = _parse_object(_decode_segment(payload_b64), "payload")
    _check_claim_types(claims)
    _check_parties(claims, issuer=issuer, merchant_id=merchant_id, egm_id=egm_id)
    _check_times(claims, now=now, leeway_s=leeway_s)
    return QrClaims(
        issuer=claims["iss"], merchant_id=claims["aud"], egm_id=claims["sub"],
        location_id=claims.get("loc"), issued_at=_instant(claims["iat"]),
        not_before=_instant(claims["nbf"]), expires_at=_instant(claims["exp"]),
        jti=claims["jti"], kid=key.kid,
    )


def _split(token: object) -> tuple[bytes, bytes, bytes]:
    """Three canonical base64url segments: header, payload (both still encoded), signature."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or not token.isascii():
        raise InvalidQrToken("malformed", "QR token is not a compact JWS string")
    parts = token.split(".")
    if len(parts) != 3:  # header, payload, signature
        raise InvalidQrToken("malformed", "QR token must have exactly three segments")
    signature = _decode_segment(parts[2].encode("ascii"))
    return parts[0].encode("ascii"), parts[1].encode("ascii"), signature


def _decode_segment(segment: bytes) -> bytes:
    """Decode base64url, refusing padding, stray characters and non-canonical trailing bits.

    Without the canonical check, the last character of a segment can change only unused bits
    and decode to the same bytes: a different token string that still verifies.
    """
    if not _SEGMENT.fullmatch(segment.decode("ascii")):
        raise InvalidQrToken("malformed", "QR token segment is not unpadded base64url")
    try:
        raw = base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidQrToken("malformed", "QR token segment is not valid base64url") from exc
    if _b64(raw) != segment:
        raise InvalidQrToken("malformed", "QR token segment is not canonical base64url")
    return raw


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate member")
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def _parse_object(raw: bytes, what: str) -> dict[str, Any]:
    """Strict JSON object: UTF-8, no duplicate members, no NaN/Infinity."""
    try:
        value = json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=_reject_duplicates,
            parse_constant=_reject_constant,
        )
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeError included
        raise InvalidQrToken("malformed", f"QR token {what} is not strict JSON") from exc
    if not isinstance(value, dict):
        raise InvalidQrToken("malformed", f"QR token {what} is not a JSON object")
    return value


def _key_for(header: dict[str, Any], keyring: Keyring) -> SigningKey:
    """The key the header names, provided the header asks for exactly that key's algorithm."""
    if set(header) != _HEADER_PARAMS or header["typ"] != QR_JWT_TYP:
        raise InvalidQrToken("malformed", "QR token header must be exactly alg, kid, typ=qr+jwt")
    kid = header["kid"]
    if not isinstance(kid, str):
        raise InvalidQrToken("malformed", "QR token kid must be a string")
    key = keyring.get(kid)
    if key is None:
        raise InvalidQrToken("unknown_kid", "QR token was signed with an unknown key")
    if header["alg"] != key.alg:  # the key decides the algorithm, never the header
        raise InvalidQrToken("algorithm", "QR token algorithm does not match its key")
    return key


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_claim_types(claims: dict[str, Any]) -> None:
    """Every claim present, nothing unexpected, strings non-empty, times integers in range."""
    names = set(claims)
    if not _REQUIRED_CLAIMS <= names <= _ALLOWED_CLAIMS:
        raise InvalidQrToken("claims", "QR token claims are missing or unexpected")
    for name in ("iss", "aud", "sub", "jti", "loc"):
        if name in claims and (not isinstance(claims[name], str) or not claims[name]):
            raise InvalidQrToken("claims", f"QR token claim {name} must be a non-empty string")
    for name in ("iat", "nbf", "exp"):
        if not _is_int(claims[name]) or not 0 <= claims[name] <= _LAST_INSTANT_S:
            raise InvalidQrToken("claims", f"QR token claim {name} must be epoch seconds")
    if not claims["iat"] <= claims["nbf"] < claims["exp"]:
        raise InvalidQrToken("claims", "QR token times must satisfy iat <= nbf < exp")


def _check_parties(
    claims: dict[str, Any], *, issuer: str, merchant_id: str | None, egm_id: str | None
) -> None:
    """The token was issued by us, for this merchant and this EGM when they are given."""
    if claims["iss"] != issuer:
        raise InvalidQrToken("issuer", "QR token was not issued by this service")
    if merchant_id is not None and claims["aud"] != merchant_id:
        raise InvalidQrToken("audience", "QR token belongs to another merchant")
    if egm_id is not None and claims["sub"] != egm_id:
        raise InvalidQrToken("subject", "QR token belongs to another EGM")


def _check_times(claims: dict[str, Any], *, now: datetime, leeway_s: int) -> None:
    """Expired from `exp + leeway` on; not valid yet before `nbf - leeway` or `iat - leeway`."""
    now_s = (utc(now) - _EPOCH) / timedelta(seconds=1)
    if now_s >= claims["exp"] + leeway_s:
        raise ExpiredQrToken("QR token has expired")
    if now_s < claims["nbf"] - leeway_s or now_s < claims["iat"] - leeway_s:
        raise InvalidQrToken("not_yet_valid", "QR token is not valid yet")


def _epoch_seconds(instant: datetime) -> int:
    """Whole seconds since the epoch, exactly (no float rounding); naive means UTC."""
    return (utc(instant) - _EPOCH) // timedelta(seconds=1)


def _instant(seconds: int) -> datetime:
    return _EPOCH + timedelta(seconds=seconds)


def _b64(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def _b64_json(value: dict[str, Any]) -> bytes:
    return _b64(orjson.dumps(value))  # compact, members in the order given
