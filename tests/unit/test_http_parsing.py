"""Shared request parsing: Basic and Bearer credentials, and bounded JSON bodies.

Every malformed input must come back as None (credentials) or a 4xx SimError (bodies), never
as an exception that would become a 500.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest
from flask import Flask, request
from hypothesis import given, settings
from hypothesis import strategies as st

from simkit.errors import SimError
from simkit.http import MAX_AUTH_HEADER, parse_basic_auth, parse_bearer, read_json_body

MAX_BYTES = 200_000
PROPERTY_SETTINGS = settings(max_examples=300, deadline=None)


def basic(raw: bytes, scheme: str = "Basic") -> str:
    """A Basic header carrying `raw` in canonical base64."""
    return f"{scheme} {base64.b64encode(raw).decode()}"


# --- parse_basic_auth -------------------------------------------------------------------------


def test_basic_header_gives_user_and_password() -> None:
    assert parse_basic_auth(basic(b"demo-access-id:demo-access-key")) == (
        "demo-access-id", "demo-access-key")


@pytest.mark.parametrize("scheme", ["basic", "BASIC", "bAsIc"])
def test_basic_scheme_is_case_insensitive(scheme: str) -> None:
    assert parse_basic_auth(basic(b"user:pass", scheme)) == ("user", "pass")


def test_password_may_contain_colons() -> None:
    assert parse_basic_auth(basic(b"user:pa:ss:")) == ("user", "pa:ss:")


def test_password_may_be_empty() -> None:
    assert parse_basic_auth(basic(b"user:")) == ("user", "")


def test_utf8_credentials_are_decoded() -> None:
    assert parse_basic_auth(basic("kåre:lösen".encode())) == ("kåre", "lösen")


def test_surrounding_spaces_are_ignored() -> None:
    assert parse_basic_auth("  Basic   " + base64.b64encode(b"u:p").decode() + "  ") == ("u", "p")


@pytest.mark.parametrize(
    "header",
    [
        None, "", "Basic", "Basic ", "Basic    ",
        basic(b"no-colon"), basic(b":password-only"), basic(b""),
        "Bearer " + base64.b64encode(b"user:pass").decode(),
        "Digest " + base64.b64encode(b"user:pass").decode(),
        "Basic\t" + base64.b64encode(b"user:pass").decode(),
        "Basicdpass",
    ],
    ids=repr,
)
def test_unusable_basic_headers_give_none(header: str | None) -> None:
    assert parse_basic_auth(header) is None


@pytest.mark.parametrize(
    "encoded",
    [
        "dXNlcjpwYXNz=",  # padding where none belongs
        "dXNlcjpwYXM",  # missing padding
        "dXNlcjpwYXM=dXNl",  # padding in the middle
        "dXNlcjpwYXN=",  # non-zero unused bits (decodes like dXNlcjpwYXM=)
        "dXNl cjpwYXNz",  # space inside
        "dXNl\ncjpwYXNz",  # newline inside
        "dXNlcjpw-_Nz",  # URL-safe alphabet
        "dXNlcjpwYXNz!",  # not base64 at all
        "dXNlcjpwYXNzé=",  # non-ASCII
    ],
)
def test_non_canonical_or_invalid_base64_gives_none(encoded: str) -> None:
    assert parse_basic_auth("Basic " + encoded) is None


def test_the_canonical_form_of_the_same_credentials_is_accepted() -> None:
    assert parse_basic_auth("Basic dXNlcjpwYXM=") == ("user", "pas")


def test_credentials_that_are_not_utf8_give_none() -> None:
    assert parse_basic_auth(basic(b"\xff\xfe:secret")) is None


@pytest.mark.parametrize("char", ["\x00", "\n", "\r", "\t", "\x1b", "\x7f", "\x85", "\x9f"],
                         ids=repr)
def test_control_characters_in_credentials_give_none(char: str) -> None:
    assert parse_basic_auth(basic(f"us{char}er:pass".encode())) is None
    assert parse_basic_auth(basic(f"user:pa{char}ss".encode())) is None


def test_long_header_within_the_limit_is_accepted() -> None:
    header = basic(b"u:" + b"p" * 1528)
    assert len(header) <= MAX_AUTH_HEADER
    assert parse_basic_auth(header) == ("u", "p" * 1528)


def test_over_long_header_gives_none() -> None:
    header = basic(b"u:" + b"p" * 1531)
    assert len(header) > MAX_AUTH_HEADER
    assert parse_basic_auth(header) is None


# --- parse_bearer -----------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_bearer_header_gives_the_token(scheme: str) -> None:
    assert parse_bearer(f"{scheme} abc.def-ghi") == "abc.def-ghi"


def test_bearer_surrounding_spaces_are_ignored() -> None:
    assert parse_bearer("  Bearer   abc  ") == "abc"


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "Bearer a b", "Basic abc", "Token abc", "Bearerabc",
     "Bearer " + "a" * MAX_AUTH_HEADER],
    ids=repr,
)
def test_unusable_bearer_headers_give_none(header: str | None) -> None:
    assert parse_bearer(header) is None


@PROPERTY_SETTINGS
@given(st.one_of(st.none(), st.text(max_size=300),
                 st.text(max_size=200).map(lambda s: "Basic " + s),
                 st.binary(max_size=120).map(basic),
                 st.text(max_size=200).map(lambda s: "Bearer " + s)))
def test_arbitrary_headers_never_raise(header: str | None) -> None:
    credentials = parse_basic_auth(header)
    assert credentials is None or (
        isinstance(credentials, tuple) and len(credentials) == 2 and credentials[0])
    token = parse_bearer(header)
    assert token is None or (isinstance(token, str) and token)


@PROPERTY_SETTINGS
@given(st.text(min_size=1).filter(lambda s: ":" not in s), st.text())
def test_printable_credentials_round_trip(user: str, password: str) -> None:
    text = f"{user}:{password}"
    header = basic(text.encode())
    parsed = parse_basic_auth(header)
    if len(header) > MAX_AUTH_HEADER or any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in text):
        assert parsed is None
    else:
        assert parsed == (user, password)


# --- read_json_body ---------------------------------------------------------------------------


@pytest.fixture
def app() -> Flask:
    """A bare Flask app to build request contexts on."""
    return Flask(__name__)


def read(app: Flask, body: bytes = b"{}", content_type: str | None = "application/json",
         **extra: Any) -> Any:
    """read_json_body on a POST carrying `body`."""
    headers = {"Content-Type": content_type} if content_type is not None else {}
    with app.test_request_context("/", method="POST", data=body, headers=headers, **extra):
        return read_json_body(request, MAX_BYTES)


def refusal(app: Flask, body: bytes = b"{}", content_type: str | None = "application/json",
            **extra: Any) -> tuple[int, str]:
    """(status, code) of the SimError read_json_body raises for this request."""
    with pytest.raises(SimError) as caught:
        read(app, body, content_type, **extra)
    return caught.value.http_status, caught.value.code


def test_json_object_body_is_returned(app: Flask) -> None:
    assert read(app, b'{"amount": 2000, "currency": "USD"}') == {
        "amount": 2000, "currency": "USD"}


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=utf-8", "Application/JSON", "application/json;charset=UTF-8"],
)
def test_json_media_type_is_recognised_with_parameters_and_any_case(
    app: Flask, content_type: str
) -> None:
    assert read(app, b"[1, 2]", content_type) == [1, 2]


@pytest.mark.parametrize(
    "content_type",
    [None, "", "text/plain", "application/x-www-form-urlencoded", "text/json",
     "application/problem+json", "application/jsonx", "multipart/form-data; boundary=x"],
    ids=repr,
)
def test_other_media_types_are_refused_with_415(app: Flask, content_type: str | None) -> None:
    assert refusal(app, b"{}", content_type) == (415, "UNSUPPORTED_MEDIA_TYPE")


def test_body_over_the_limit_by_content_length_is_refused_with_413(app: Flask) -> None:
    assert refusal(app, b"[" + b"1," * MAX_BYTES + b"1]") == (413, "PAYLOAD_TOO_LARGE")


def test_body_exactly_at_the_limit_is_read(app: Flask) -> None:
    body = b'"' + b"x" * (MAX_BYTES - 2) + b'"'
    assert read(app, body) == "x" * (MAX_BYTES - 2)


def test_body_over_the_limit_without_content_length_is_refused_with_413(app: Flask) -> None:
    # A chunked request announces no length: only the bytes actually read can be measured.
    body = b"[" + b"1," * MAX_BYTES + b"1]"
    with app.test_request_context(
        "/", method="POST", input_stream=io.BytesIO(body),
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    ):
        assert request.content_length is None
        with pytest.raises(SimError) as caught:
            read_json_body(request, MAX_BYTES)
    assert (caught.value.http_status, caught.value.code) == (413, "PAYLOAD_TOO_LARGE")


@pytest.mark.parametrize(
    "body",
    [
        b"", b"{", b"{'a': 1}", b'{"a": 1,}', b"undefined", b"{} {}",
        b"NaN", b"[Infinity]", b'{"amount": -Infinity}',
        b'{"a": "\xff"}', b"\xef\xbb\xbf{}", "{}".encode("utf-16"),
        b"[" * 100_000, b"{\"a\":" * 40_000, b"1" * 5_000,
    ],
    ids=lambda body: repr(body[:24]),
)
def test_malformed_json_is_refused_with_400(app: Flask, body: bytes) -> None:
    assert refusal(app, body) == (400, "INVALID_REQUEST")


def test_deeply_nested_but_valid_json_is_refused_not_crashed(app: Flask) -> None:
    depth = 50_000
    assert refusal(app, b"[" * depth + b"]" * depth) == (400, "INVALID_REQUEST")
