"""Request parsing both sims share: HTTP Basic credentials and bounded JSON bodies.

Every malformed input ends in a SimError (a 4xx), never in an exception that becomes a 500.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from flask import Request

from simkit.errors import BadRequest, SimError

MAX_AUTH_HEADER = 2048


# Unicode category Cc is exactly these: C0 controls, DEL and C1 controls.
_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f-\x9f]")


def parse_basic_auth(header: str | None) -> tuple[str, str] | None:
    """`(user, password)` from an `Authorization: Basic ...` header, or None if unusable."""
    if not header or len(header) > MAX_AUTH_HEADER:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        return None
    encoded = encoded.strip()
    try:
        raw = base64.b64decode(encoded, validate=True)
        decoded = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    if base64.b64encode(raw).decode("ascii") != encoded:  # refuse non-canonical padding
        return None
    user, colon, password = decoded.partition(":")
    # Control characters (C0, DEL, C1) have no place in credentials and can forge log lines.
    if not colon or not user or _CONTROL_CHARACTER.search(decoded):
        return None
    return user, password


def parse_bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer ...` header, or None."""
    if not header or len(header) > MAX_AUTH_HEADER:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def read_json_body(request: Request, max_bytes: int) -> Any:
    """The request's JSON body: 415 unless JSON, 413 if over `max_bytes`, 400 if malformed."""
    if request.mimetype != "application/json":
        raise SimError(
            "UNSUPPORTED_MEDIA_TYPE", 415, "Content-Type must be application/json"
        )
    if request.content_length is not None and request.content_length > max_bytes:
        raise SimError("PAYLOAD_TOO_LARGE", 413, f"the body must be at most {max_bytes} bytes")
    raw = request.get_data(cache=True)
    if len(raw) > max_bytes:
        raise SimError("PAYLOAD_TOO_LARGE", 413, f"the body must be at most {max_bytes} bytes")
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadRequest("the body is not valid JSON", code="INVALID_REQUEST") from exc
