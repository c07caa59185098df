"""Hypothesis strategies for a partner's own property tests of a Scan and Pay integration.

A CMS vendor imports these next to the pytest plugin's fixtures (`harness.plugin.pytest_plugin`) to
throw the inputs Trustly and players can produce at their system: amounts and currencies,
EGM ids, UBAIs, malformed QR tokens, and malformed Funding and Daily Limits request bodies.

Each pair of "valid" and "invalid" strategies follows the reference CMS contract
(docs/architecture.md §15 (Funding API), docs/architecture.md §17 (Daily Limits API): the
shapes `sim_cms/openapi_schemas.py` publishes), so "valid" means "the reference CMS
accepts its shape" and every `malformed_*` value carries at least one defect that a CMS must
refuse with a 4xx: it is never a well-formed request in disguise. Values are plain Python
JSON values; floats include NaN and infinities on purpose, so send them with `json.dumps`
(which writes `NaN`), not with a client that refuses them (httpx's `json=` does).
"""

from __future__ import annotations

import base64
import json
import string
from typing import Any

from hypothesis import strategies as st

from sim_trustly.microsite.demo_bank import ubai_for
from simkit.money import MAX_MINOR, MINOR_DIGITS

__all__ = [
    "amounts", "currencies", "demo_ubais", "demo_usernames", "egm_ids", "funding_bodies",
    "invalid_amounts", "invalid_currencies", "invalid_egm_ids", "invalid_ubais",
    "json_values", "limit_bodies", "malformed_funding_bodies", "malformed_json_documents",
    "malformed_limit_bodies", "malformed_qr_tokens", "qr_token_ids", "transaction_ids",
    "ubais",
]

FUNDING_FIELDS = ("transactionId", "egmId", "amount", "currency", "ubai", "qrTokenId")
# Longer than any identifier the contract allows (128), and long enough to catch a CMS that
# copies fields into fixed-size columns; one such field stays under a 16 KiB body limit, so
# it is mostly the field, not the size of the whole body (413), that gets refused.
OVERSIZED = st.integers(min_value=129, max_value=12_000)
_ID_CHARS = string.ascii_letters + string.digits + "._:-"
_HOSTILE_TEXT = st.sampled_from([
    "", " ", "EGM 001", "../../etc/passwd", "EGM-001\n", "EGM-001\x00", "é", "💸",
    "'; DROP TABLE fundings; --", "<script>alert(1)</script>", "%00", "\ufeffEGM-001",
])


def json_values(*, max_leaves: int = 8) -> st.SearchStrategy[Any]:
    """Any JSON value (with NaN and infinities among the floats): the wrong-type filler."""
    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                        max_leaves=max_leaves)


# --- money -----------------------------------------------------------------------------------

def amounts(*, max_minor: int = MAX_MINOR) -> st.SearchStrategy[int]:
    """Valid amounts in minor units (1 .. `max_minor`), mostly casino-sized, with the bounds.

    Pass `max_minor` to stay under an EGM's credit cap or a daily limit.
    """
    small = st.integers(min_value=1, max_value=min(max_minor, 100_000))
    return st.one_of(small, st.integers(min_value=1, max_value=max_minor),
                     st.sampled_from(sorted({1, max_minor})))


def invalid_amounts() -> st.SearchStrategy[Any]:
    """Amounts a CMS must refuse: zero, negatives, above 10**12, huge, floats (even `20.0`),
    NaN and infinities, digit strings, decimals as text, booleans, null, arrays, objects."""
    return st.one_of(
        st.just(0), st.integers(max_value=-1),
        st.integers(min_value=MAX_MINOR + 1), st.just(10**30), st.just(2**63),
        st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([20.0, 1e3, 19.99]),
        st.sampled_from(["2000", "20.00", "", "1e3", "0x10", " 2000", "-5"]),
        st.text(max_size=20), st.booleans(), st.none(),
        st.lists(st.integers(), max_size=3), st.just({"amount": 2000}),
    )


def currencies() -> st.SearchStrategy[str]:
    """ISO 4217 codes the sims support (the reference casino itself takes only USD)."""
    return st.sampled_from(sorted(MINOR_DIGITS))


def invalid_currencies() -> st.SearchStrategy[Any]:
    """Currencies of the wrong shape: lower case, wrong length, digits, non-strings."""
    return st.one_of(
        st.sampled_from(["usd", "US", "USDX", "", "U$D", "840", " USD", "USD\n"]),
        st.text(max_size=6).filter(lambda text: not (len(text) == 3 and text.isupper()
                                                     and text.isascii() and text.isalpha())),
        st.integers(), st.none(), st.booleans(), st.lists(st.just("USD"), max_size=2),
    )


# --- identifiers -----------------------------------------------------------------------------

def egm_ids() -> st.SearchStrategy[str]:
    """EGM ids as Trustly accepts them: 1-64 of letters, digits and `._:-`, starting with a
    letter or digit (most will name no EGM of the casino: expect 404 EGM_NOT_FOUND)."""
    return st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}", fullmatch=True)


def invalid_egm_ids() -> st.SearchStrategy[Any]:
    """EGM ids no CMS should accept: empty, 65+ characters, a leading `.`/`-`, spaces,
    slashes, control and non-ASCII characters, injection text, non-strings."""
    return st.one_of(
        _HOSTILE_TEXT, st.text(alphabet=_ID_CHARS, min_size=65, max_size=300),
        st.from_regex(r"[._:-][A-Za-z0-9]{0,10}", fullmatch=True),
        st.integers(), st.none(), st.lists(st.text(max_size=3), max_size=2),
    )


def demo_usernames() -> st.SearchStrategy[str]:
    """Demo-bank usernames that approve (no keyphrase, not `Sleep`)."""
    return st.from_regex(r"player-[a-z0-9]{4,20}", fullmatch=True)


def demo_ubais() -> st.SearchStrategy[str]:
    """UBAIs exactly as the sim's demo bank derives them from a username (`ubai-` + 32 hex):
    what a CMS tested against scanpay-sim will see from TPAS."""
    return demo_usernames().map(ubai_for)


def ubais() -> st.SearchStrategy[str]:
    """Any UBAI of the contract's shape (1-128 of letters, digits and `._:-`), since a real
    Trustly's identifiers need not look like the demo bank's."""
    return st.one_of(demo_ubais(), st.text(alphabet=_ID_CHARS, min_size=1, max_size=128))


def invalid_ubais() -> st.SearchStrategy[Any]:
    """UBAIs the Daily Limits and Funding APIs must refuse: empty, 129+ characters,
    characters outside `[A-Za-z0-9._:-]`, non-strings."""
    return st.one_of(
        _HOSTILE_TEXT.filter(lambda text: not text or any(c not in _ID_CHARS for c in text)),
        st.text(alphabet=_ID_CHARS, min_size=129, max_size=2000),
        st.integers(), st.none(), st.booleans(),
    )


def transaction_ids() -> st.SearchStrategy[str]:
    """Funding idempotency keys of the contract's shape: 1-128 of letters, digits, `._:~-`."""
    return st.text(alphabet=_ID_CHARS + "~", min_size=1, max_size=128)


def qr_token_ids() -> st.SearchStrategy[str]:
    """qrTokenIds of the contract's shape (1-128 visible ASCII), as they end a QR's url."""
    return st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E),
                   min_size=1, max_size=128)


# --- QR tokens -------------------------------------------------------------------------------

def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _segment(value: dict[str, Any]) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode())


def _claims() -> st.SearchStrategy[dict[str, Any]]:
    when = st.integers(min_value=0, max_value=2**40)
    return st.fixed_dictionaries({
        "iss": st.text(max_size=30), "aud": st.just("demo-merchant") | st.text(max_size=20),
        "sub": st.just("EGM-001") | st.text(max_size=20), "iat": when, "nbf": when,
        "exp": when, "jti": st.text(max_size=30)})


def _jwt_shaped_garbage() -> st.SearchStrategy[str]:
    segments = st.binary(min_size=0, max_size=200).map(_b64)
    return st.lists(segments, min_size=3, max_size=3).map(".".join)


@st.composite
def _forged(draw: st.DrawFn, algs: tuple[str, ...]) -> str:
    header = {"alg": draw(st.sampled_from(algs)), "typ": "qr+jwt",
              "kid": draw(st.text(max_size=12))}
    signature = "" if header["alg"].lower() == "none" else _b64(draw(st.binary(max_size=64)))
    return f"{_segment(header)}.{_segment(draw(_claims()))}.{signature}"


@st.composite
def _bit_flipped(draw: st.DrawFn, token: str) -> str:
    parts = token.split(".")
    index = draw(st.integers(min_value=0, max_value=len(parts) - 1))
    raw = bytearray(_unb64(parts[index])) or bytearray(b"\x00")
    position = draw(st.integers(min_value=0, max_value=len(raw) * 8 - 1))
    raw[position // 8] ^= 1 << (position % 8)
    parts[index] = _b64(bytes(raw))
    return ".".join(parts)


@st.composite
def _truncated(draw: st.DrawFn, token: str) -> str:
    return token[:draw(st.integers(min_value=0, max_value=len(token) - 1))]


def _looks_like_jwt(token: str) -> bool:
    """Three base64url segments: what the bit flips and truncations need to work on."""
    parts = token.split(".")
    try:
        for part in parts:
            _unb64(part)
    except ValueError:  # binascii.Error is a ValueError
        return False
    return len(parts) == 3 and all(parts[:2])


def malformed_qr_tokens(real_token: str | None = None) -> st.SearchStrategy[str]:
    """QR tokens that must never be honoured: JWT-shaped random segments, `alg: none` (and
    `None`, `NONE`) with an empty signature, tokens signed with a random key (HS256, ES256,
    HS512), truncations, extra or missing segments, whitespace and oversized ones.

    With `real_token` (one Trustly just issued) it also yields single-bit flips of any of
    its segments and every truncation of it: each differs from the real token, so a
    verifier that accepts one is checking less than the whole token.
    """
    base = real_token if real_token and _looks_like_jwt(real_token) else None
    options = [
        _jwt_shaped_garbage(), _forged(("none", "None", "NONE", "")),
        _forged(("HS256", "ES256", "HS512", "RS256")),
        st.text(alphabet=string.ascii_letters + string.digits + "-_.", max_size=300),
        st.sampled_from(["", ".", "..", "...", "a.b", "a.b.c.d", " ", "null"]),
        st.integers(min_value=4097, max_value=20_000).map(lambda n: "e" * n),
        _forged(("HS256",)).flatmap(_truncated),
    ]
    if base is not None:
        options += [_bit_flipped(base), _truncated(base), st.just(f" {base}"),
                    st.just(f"{base}."), st.just(base.replace(".", "..", 1))]
    return st.one_of(options)


# --- request bodies --------------------------------------------------------------------------

def funding_bodies(egm_id: str | None = None, currency: str = "USD",
                   *, max_amount: int = 100_000) -> st.SearchStrategy[dict[str, Any]]:
    """Well-formed `POST /cws/v1/fundings` bodies (a fresh transactionId each), for `egm_id`
    or for random EGM ids. Their qrTokenId was never displayed, so a correct CMS decides
    them with a 4xx rejection (QR_TOKEN_MISMATCH or EGM_NOT_FOUND) and credits nothing."""
    return st.fixed_dictionaries({
        "transactionId": transaction_ids(), "egmId": st.just(egm_id) if egm_id else egm_ids(),
        "amount": amounts(max_minor=max_amount), "currency": st.just(currency),
        "ubai": ubais(), "qrTokenId": qr_token_ids()})


def _wrong_value(field: str) -> st.SearchStrategy[Any]:
    """A value that breaks `field`: wrong type, wrong shape or too long."""
    if field == "amount":
        return invalid_amounts()
    if field == "currency":
        return invalid_currencies()
    long_text = OVERSIZED.map(lambda n: "x" * n)
    wrong_type = st.one_of(st.integers(), st.floats(), st.booleans(),
                           st.lists(st.text(max_size=4), max_size=3), st.just({"id": "EGM-001"}))
    if field == "egmId":
        return st.one_of(invalid_egm_ids(), long_text, wrong_type)
    if field == "ubai":
        return st.one_of(invalid_ubais(), long_text, wrong_type)
    bad_text = st.sampled_from(["", "has space", "tab\there", "é", "💸", "\x00"])
    return st.one_of(bad_text, long_text, wrong_type)


@st.composite
def _defective_body(draw: st.DrawFn, valid: st.SearchStrategy[dict[str, Any]],
                    fields: tuple[str, ...], extras: bool) -> dict[str, Any]:
    body = dict(draw(valid))
    broken = draw(st.lists(st.sampled_from(fields), min_size=1, max_size=len(fields),
                           unique=True))
    for field in broken:
        if draw(st.booleans()):
            body.pop(field, None)
        else:
            body[field] = draw(_wrong_value(field))
    if extras:
        body.update(draw(st.dictionaries(st.text(max_size=20).filter(
            lambda key: key not in fields), json_values(max_leaves=3), max_size=3)))
    return body


def _not_an_object() -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=40),
                     st.lists(json_values(max_leaves=4), max_size=4))


def malformed_funding_bodies(egm_id: str | None = None,
                             currency: str = "USD") -> st.SearchStrategy[Any]:
    """Funding bodies with at least one defect: fields missing or wrongly typed (floats,
    strings, booleans, arrays for `amount`), identifiers of the wrong shape or oversized,
    amounts out of range, sometimes extra members too (which alone are no defect: the
    reference CMS ignores unknown members), or a JSON value that is not an object."""
    valid = funding_bodies(egm_id, currency)
    return st.one_of(_defective_body(valid, FUNDING_FIELDS, extras=False),
                     _defective_body(valid, FUNDING_FIELDS, extras=True), _not_an_object())


def limit_bodies(*, max_limit: int = 100_000, currency: str = "USD",
                 ) -> st.SearchStrategy[dict[str, Any]]:
    """Well-formed `PUT|PATCH /cws/v1/limits/{ubai}` bodies: `dailyLimit` 0 (self-exclusion)
    to `max_limit`, with or without the casino's currency."""
    limit = st.integers(min_value=0, max_value=max_limit)
    return st.fixed_dictionaries({"dailyLimit": limit},
                                 optional={"currency": st.just(currency)})


@st.composite
def _limit_defect(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = dict(draw(limit_bodies()))
    kind = draw(st.sampled_from(["missing", "limit", "currency", "extra"]))
    if kind == "missing":
        body.pop("dailyLimit")
    elif kind == "limit":
        body["dailyLimit"] = draw(invalid_amounts().filter(lambda value: value != 0))
    elif kind == "currency":
        body["currency"] = draw(invalid_currencies())
    else:  # the limits API takes no other members: an unknown one is a mistake to report
        body.update(draw(st.dictionaries(
            st.text(min_size=1, max_size=20).filter(lambda k: k not in ("dailyLimit",
                                                                        "currency")),
            json_values(max_leaves=3), min_size=1, max_size=3)))
    return body


def malformed_limit_bodies() -> st.SearchStrategy[Any]:
    """Daily Limits bodies with at least one defect: `dailyLimit` missing, negative, huge,
    a float or a string; a currency of the wrong shape; unknown members; not an object."""
    return st.one_of(_limit_defect(), _not_an_object())


def malformed_json_documents() -> st.SearchStrategy[bytes]:
    """Request bodies that are not valid JSON (send as `content=` with a JSON content type):
    truncated documents, trailing commas, single quotes, NaN literals, byte-order marks,
    invalid UTF-8, empty bodies, and 10,000 unclosed brackets (which a recursive parser
    may die on before it notices they never close)."""
    return st.one_of(
        st.sampled_from([b"", b"{", b'{"amount": 2000,}', b"{'amount': 2000}", b"[1, 2",
                         b'{"amount": NaN}', b'{"amount": Infinity}', b"\xef\xbb\xbf{}",
                         b'{"egmId": "\xff\xfe"}', b"null garbage", b"[" * 10_000]),
        st.binary(max_size=200).filter(_not_json),
    )


def _not_json(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return True
    return False
