"""What the sims' below-Flask fast paths share: reading the body, and journaling the exchange.

A fast path answers one hot endpoint's common case in a small WSGI layer in front of the Flask
app and lets everything else fall through to the app untouched (see
`sim_trustly.auth_service.fast_path` and `sim_cms.funding.fast_path`). Two things must then be done
exactly as the Flask side does them: the body it read must be put back for the app, and an
exchange it answered must be journaled as the Flask journal hook would have recorded it.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable
from typing import Any

from simkit.clock import monotonic
from simkit.journal import CORRELATION_HEADER, Exchange, Journal, new_correlation_id

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# An answer given without the WSGI call: status code, headers and the whole body.
InlineAnswer = tuple[int, list[tuple[str, str]], bytes]

_CORRELATION_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_CORRELATION_ENVIRON = "HTTP_" + CORRELATION_HEADER.upper().replace("-", "_")


def read_json_body(environ: dict[str, Any], max_bytes: int) -> bytes | None:
    """The body of a declared, small JSON request, put back for the app; None otherwise."""
    media_type = environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
    length = environ.get("CONTENT_LENGTH", "")
    if media_type != "application/json" or not length.isdigit():
        return None
    size = int(length)
    if size > max_bytes:
        return None
    body: bytes = environ["wsgi.input"].read(size)
    environ["wsgi.input"] = io.BytesIO(body)
    return body


# `HTTP_X_CORRELATION_ID` -> `X-Correlation-Id`, as the journal hook records names; a plain
# dict, filled as names are met (an lru_cache call costs more than the lookup it saves).
_HEADER_NAMES: dict[str, str] = {}
_MAX_HEADER_NAMES = 1024


def _header_name(environ_key: str) -> str:
    name = _HEADER_NAMES.get(environ_key)
    if name is None:
        name = environ_key[5:].replace("_", "-").title()
        if len(_HEADER_NAMES) < _MAX_HEADER_NAMES:  # a client inventing names grows nothing
            _HEADER_NAMES[environ_key] = name
    return name


def journal_exchange(
    journal: Journal, environ: dict[str, Any], *, path: str, status: int, body: bytes,
    answer: bytes, headers: list[tuple[str, str]], started: float,
) -> str:
    """Record an exchange a fast path answered, as the Flask journal hook would; returns the
    correlation id to echo (the caller's own when it sent a valid one)."""
    offered = environ.get(_CORRELATION_ENVIRON)
    correlation_id = offered if offered and _CORRELATION_ID.fullmatch(offered) \
        else new_correlation_id()
    names = _HEADER_NAMES
    request_headers = [(names.get(key) or _header_name(key), value)
                       for key, value in environ.items() if key[:5] == "HTTP_"]
    request_headers.append(("Content-Type", environ.get("CONTENT_TYPE", "")))
    request_headers.append(("Content-Length", environ.get("CONTENT_LENGTH", "")))
    journal.record_exchange(Exchange(
        correlation_id, journal.now(), environ.get("REQUEST_METHOD", ""), path,
        environ.get("QUERY_STRING", ""), status, int((monotonic() - started) * 1000),
        request_headers, body, [*headers, (CORRELATION_HEADER, correlation_id)], answer,
    ))
    return correlation_id
