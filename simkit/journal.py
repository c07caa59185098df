"""A request/response journal with correlation ids, secrets redacted before they are stored.

Reports and failing scenarios show "what was said on the wire"; the journal is where that
comes from. Every request a sim serves (except its own control API under `/_sim/`) becomes
one row, stored in batches by a background writer (simkit.batch_writer) so that the request
path only captures what it saw. Secrets are removed before anything is stored
(`redact_headers`, `redact_body`), so no query, dump or report can ever show them.
"""

from __future__ import annotations

import binascii
import functools
import itertools
import json
import logging
import os
import re
from base64 import b64decode
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode

import orjson
from flask import Flask, Response, current_app, g, request
from sqlalchemy import CursorResult, Table, delete, select
from werkzeug.exceptions import RequestEntityTooLarge

from simkit.batch_writer import writer_for
from simkit.clock import Clock, format_instant, monotonic
from simkit.db import Database
from simkit.models import JournalEntry

log = logging.getLogger(__name__)

MASK = "***"
CORRELATION_HEADER = "X-Correlation-Id"
MAX_QUERY_LIMIT = 1000
_CORRELATION_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

# Header names are compared lower-cased. These carry credentials whatever they are called.
_SECRET_HEADERS = frozenset({"cookie", "set-cookie", "x-api-key"})
_SECRET_HEADER_WORDS = ("secret", "token", "key")
# Not secrets although their names contain a secret-looking word.
_PUBLIC_HEADERS = frozenset({"idempotency-key"})

# Body field names are compared lower-cased with `_` and `-` removed: accessKey, access_key
# and access-key are one name.
_SECRET_FIELDS = frozenset({
    "accesskey", "password", "passwd", "secret", "clientsecret", "accesstoken",
    "refreshtoken", "idtoken", "token", "apikey", "signingkey", "privatekey", "passphrase",
})
_SECRET_FIELD_SUFFIXES = ("secret", "password", "token", "accesskey", "apikey", "signingkey",
                          "privatekey")


# What each field name met so far is: a plain dict, as names repeat on every request (an
# lru_cache call costs more than the lookup it saves); bounded, so invented names grow nothing.
_FIELD_IS_SECRET: dict[str, bool] = {}
_MAX_FIELD_NAMES = 4096


def _is_secret_field(name: str) -> bool:
    known = _FIELD_IS_SECRET.get(name)
    if known is None:
        normal = name.lower().replace("_", "").replace("-", "")
        known = normal in _SECRET_FIELDS or normal.endswith(_SECRET_FIELD_SUFFIXES)
        if len(_FIELD_IS_SECRET) < _MAX_FIELD_NAMES:
            _FIELD_IS_SECRET[name] = known
    return known


@functools.lru_cache(maxsize=256)
def _redact_authorization(value: str) -> str:
    """Keep the scheme (and a Basic user id, which says who called); mask the secret.

    Cached: a client sends the same header on every request (the cache lives in this
    process's memory only, as the credentials it checks against do)."""
    scheme, _, credentials = value.strip().partition(" ")
    if scheme.lower() != "basic":
        return f"{scheme} {MASK}" if credentials else MASK
    try:
        decoded = b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # not base64 (non-ASCII too), or not UTF-8
        return f"{scheme} {MASK}"
    user, sep, _ = decoded.partition(":")
    return f"{scheme} {user}:{MASK}" if sep else f"{scheme} {MASK}"


def redact_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    """Headers as a plain dict with every credential masked.

    Authorization keeps its scheme, and for Basic the user id (accessId or client id), so a
    journal reader can still tell who called and how; repeated headers are joined with ", ".
    """
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    result: dict[str, str] = {}
    for name, value in pairs:
        shown = _redact_header(name, value)
        result[name] = f"{result[name]}, {shown}" if name in result else shown
    return result


def _redact_header(name: str, value: str) -> str:
    kind = _header_kind(name)
    if kind == "authorization":
        return _redact_authorization(value)
    return MASK if kind == "secret" else value


@functools.lru_cache(maxsize=512)
def _header_kind(name: str) -> str:
    """How a header is shown: 'authorization', 'secret' or 'plain' (names repeat: cached)."""
    lower = name.lower()
    if lower in ("authorization", "proxy-authorization"):
        return "authorization"
    if lower in _PUBLIC_HEADERS:
        return "plain"
    if lower in _SECRET_HEADERS or any(word in lower for word in _SECRET_HEADER_WORDS):
        return "secret"
    return "plain"


def _redact_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: MASK if _is_secret_field(key if type(key) is str else str(key))
            else _redact_json(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_redact_json(item) for item in value]
    return value


def redact_form(text: str) -> str:
    """A form-encoded string (body or query string) with secret fields masked."""
    pairs = parse_qsl(text, keep_blank_values=True)
    return urlencode([(key, MASK if _is_secret_field(key) else value) for key, value in pairs])


# JSON that does not parse (truncated, malformed) as tokens: string literals (an unterminated
# one runs to the end), structural characters, and runs of anything else.
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"?|[{}\[\]:,]|[^\s{}\[\]:,"]+', re.DOTALL)
_MASKED_VALUE = f'"{MASK}"'
_STRUCTURAL = frozenset("{}[]:,")


def _redact_broken_json(text: str) -> str:
    """Keep the structure and the member names of a broken document, mask every value.

    Which value belongs to which name cannot be known once the text is cut or damaged (a
    missing quote or colon shifts every pairing after it), so only what is certainly a
    member name (a string followed by a colon) is kept. Iterative: any depth, no recursion.
    """
    pieces = [(match.group(), match.start(), match.end()) for match in _JSON_TOKEN.finditer(text)]
    parts: list[str] = []
    kept_until = 0
    for index, (piece, start, end) in enumerate(pieces):
        if piece in _STRUCTURAL:
            continue
        followed_by_colon = index + 1 < len(pieces) and pieces[index + 1][0] == ":"
        if piece.startswith('"') and followed_by_colon:
            continue  # a member name
        parts.append(text[kept_until:start])
        parts.append(_MASKED_VALUE)
        kept_until = end
    parts.append(text[kept_until:])
    return "".join(parts)


@functools.lru_cache(maxsize=64)
def _media_type(content_type: str) -> str:
    return content_type.split(";", maxsplit=1)[0].strip().lower()


@functools.lru_cache(maxsize=64)
def _is_textual(content_type: str) -> bool:
    kind = _media_type(content_type)
    return (not kind or kind.startswith("text/") or kind.endswith(("json", "xml"))
            or kind == "application/x-www-form-urlencoded")


def redact_body(body: bytes | str, content_type: str, *, limit: int | None = None) -> str:
    """A body as text with secrets masked, then cut to `limit` characters.

    Redaction comes before truncation: cutting first could split a JSON document and let a
    secret through unparsed. Binary bodies (QR images) are summarised, not stored.
    """
    if isinstance(body, bytes):
        if not _is_textual(content_type):
            return f"<{len(body)} bytes {content_type or 'binary'}>" if body else ""
        text = body.decode("utf-8", errors="replace")
    else:
        text = body
    text = _redact_text(text, _media_type(content_type))
    if limit is not None and len(text) > limit:
        return f"{text[:limit]}...[{len(text) - limit} more characters]"
    return text


def _redact_text(text: str, kind: str) -> str:
    if kind == "application/x-www-form-urlencoded":
        return redact_form(text)
    if "json" in kind or text.lstrip().startswith(("{", "[")):
        # Parsed whatever it holds: orjson parses a small document faster than a regular
        # expression could scan it for a secret-looking name, and a parsed name is one with
        # its escapes resolved.
        try:
            parsed = orjson.loads(text)
            redacted = _redact_json(parsed)
            return text if redacted == parsed else orjson.dumps(redacted).decode()
        except (orjson.JSONDecodeError, orjson.JSONEncodeError, RecursionError):
            pass  # what orjson refuses (NaN, huge integers, deep nesting) json may take
        try:
            return json.dumps(_redact_json(json.loads(text)), ensure_ascii=False)
        except (ValueError, RecursionError):  # broken, or nested deeper than Python recurses
            return _redact_broken_json(text)
    return text


class _CorrelationIds:
    """Fresh correlation ids, 32 hex characters: a random prefix per process and a counter.

    Unique without a system call per request (a `uuid4` costs one); a forked worker draws
    its own prefix, so two processes never share ids.
    """

    def __init__(self) -> None:
        self._reseed()
        os.register_at_fork(after_in_child=self._reseed)

    def _reseed(self) -> None:
        self._prefix = os.urandom(10).hex()
        self._counter = itertools.count()

    def new(self) -> str:
        return f"{self._prefix}{next(self._counter) & 0xFFFFFFFFFFFF:012x}"


_correlation_ids = _CorrelationIds()
new_correlation_id = _correlation_ids.new


def current_correlation_id() -> str:
    """The correlation id of the request being served (taken from it, or made up for it).

    Sims pass it on when they call another system, so one id follows a payment end to end.
    """
    existing = g.get("correlation_id")
    if isinstance(existing, str):
        return existing
    offered = request.headers.get(CORRELATION_HEADER, "")
    chosen = offered if _CORRELATION_ID.fullmatch(offered) else new_correlation_id()
    g.correlation_id = chosen
    return chosen


@dataclass(slots=True)
class Exchange:
    """One request and its response as captured on the request path, not yet redacted.

    Never changed once made (not `frozen`: a frozen dataclass costs three times as much to
    make, and one is made for every journaled request).
    """

    correlation_id: str
    at: datetime
    method: str
    path: str
    query: str
    status: int
    latency_ms: int
    request_headers: Mapping[str, str] | Iterable[tuple[str, str]]
    request_body: bytes | str
    response_headers: Mapping[str, str] | Iterable[tuple[str, str]]
    response_body: bytes | str
    fault: str | None = None


_NOT_REDACTABLE = "<not stored: could not be redacted>"
# What a queued exchange holds in memory besides its bodies (its header lists, strings and
# objects): measured with tracemalloc at about 5.2 KiB for a QR Code API exchange. The
# writer's memory budget (batch_writer.MAX_PENDING_BYTES) is only as good as this.
_CAPTURED_BYTES = 5 * 1024
_JOURNAL_TABLE: Table = JournalEntry.__table__  # type: ignore[assignment]


class Journal:
    """Stores and queries journal entries in a sim's `sim_journal` table.

    Entries are stored by a background writer (simkit.batch_writer), off the request path;
    every read here first waits for what this process has queued.
    """

    def __init__(self, db: Database, clock: Clock, *, max_body: int = 4096) -> None:
        self._db = db
        self._clock = clock
        self.max_body = max_body
        self._writer = writer_for(db)

    def record(
        self, *, correlation_id: str, method: str, path: str, query: str, status: int,
        latency_ms: int, request_headers: Mapping[str, str] | Iterable[tuple[str, str]],
        request_body: bytes | str, response_headers: Mapping[str, str] | Iterable[tuple[str, str]],
        response_body: bytes | str, fault: str | None = None,
    ) -> None:
        """Queue one exchange for storage; it is redacted before it is stored.

        Redaction happens in the writer rather than in the caller so that no caller can
        forget it, and off the request path so that a journaled sim stays cheap to call.
        """
        self.record_exchange(Exchange(
            correlation_id=correlation_id, at=self._clock.now(), method=method, path=path,
            query=query, status=status, latency_ms=latency_ms,
            request_headers=request_headers, request_body=request_body,
            response_headers=response_headers, response_body=response_body, fault=fault,
        ))

    def now(self) -> datetime:
        """The instant an exchange recorded now is stamped with (the sim's clock)."""
        return self._clock.now()

    def record_exchange(self, exchange: Exchange) -> None:
        """`record` for a caller that made the Exchange itself (a fast path: one call fewer
        on every request it answers); `at` must come from `now()`."""
        self._writer.submit(
            _JOURNAL_TABLE, partial(self._row, exchange),
            size=_CAPTURED_BYTES + len(exchange.request_body) + len(exchange.response_body))

    def flush(self) -> None:
        """Wait until every exchange this process recorded so far is stored."""
        if not self._writer.flush():
            log.warning("journal: entries still queued after waiting; a query may miss them")

    def _row(self, exchange: Exchange) -> dict[str, Any]:
        """The stored row of one captured exchange, every secret masked.

        An exchange whose headers or bodies cannot be redacted (a case nobody foresaw) is still
        stored, with what could not be redacted left out: never dropped, never in clear.
        """
        try:
            return self._redacted_row(exchange)
        except Exception:
            log.exception("journal: %s %s could not be redacted; stored without headers and "
                          "bodies", exchange.method[:16], exchange.path[:512])
            return {
                "correlation_id": exchange.correlation_id[:128], "at": exchange.at,
                "method": exchange.method[:16], "path": exchange.path[:512], "query": "",
                "status": exchange.status, "latency_ms": exchange.latency_ms,
                "request_headers": "{}", "request_body": _NOT_REDACTABLE,
                "response_headers": "{}", "response_body": _NOT_REDACTABLE,
                "fault": exchange.fault,
            }

    def _redacted_row(self, exchange: Exchange) -> dict[str, Any]:
        req_headers, req_type = _stored_headers(exchange.request_headers)
        resp_headers, resp_type = _stored_headers(exchange.response_headers)
        return {
            "correlation_id": exchange.correlation_id[:128], "at": exchange.at,
            "method": exchange.method[:16], "path": exchange.path[:512],
            "query": redact_form(exchange.query) if exchange.query else "",
            "status": exchange.status, "latency_ms": exchange.latency_ms,
            "request_headers": req_headers,
            "request_body": _stored_body(exchange.request_body, req_type, self.max_body),
            "response_headers": resp_headers,
            # Not remembered: a response rarely repeats (tokens, ids, instants).
            "response_body": redact_body(exchange.response_body, resp_type, limit=self.max_body),
            "fault": exchange.fault,
        }


    def query(
        self, *, path: str | None = None, correlation_id: str | None = None,
        since_id: int | None = None, limit: int = 200,
    ) -> list[dict[str, Any]]:
        """Entries in id order, filtered by path prefix and/or correlation id.

        With `since_id`, the first `limit` entries after it (for paging forward or polling);
        without, the latest `limit` entries.
        """
        self.flush()
        limit = max(1, min(limit, MAX_QUERY_LIMIT))
        statement = select(JournalEntry)
        if path:
            statement = statement.where(JournalEntry.path.startswith(path, autoescape=True))
        if correlation_id:
            statement = statement.where(JournalEntry.correlation_id == correlation_id)
        if since_id is not None:
            statement = statement.where(JournalEntry.id > since_id).order_by(JournalEntry.id)
        else:
            statement = statement.order_by(JournalEntry.id.desc())
        with self._db.read() as session:
            entries = [entry_to_json(row) for row in session.scalars(statement.limit(limit))]
        return sorted(entries, key=lambda entry: int(entry["id"]))

    def clear(self) -> int:
        """Delete every entry; returns how many there were."""
        self.flush()
        with self._db.write() as session:
            result = cast(CursorResult[Any], session.execute(delete(JournalEntry)))
            return result.rowcount


HeaderPairs = Mapping[str, str] | Iterable[tuple[str, str]]


def _stored_headers(headers: HeaderPairs) -> tuple[str, str]:
    """Headers as stored (redacted JSON) and their Content-Type.

    A client sends the same headers on every request (its credential, host, agent): those
    are redacted once per process and remembered, keyed by what was sent. A response's
    headers repeat too, but for the correlation id echoed last: that one is appended to the
    remembered rest.
    """
    # a list (what the hooks capture) is told apart without an ABC check, which costs more
    pairs = tuple(headers if type(headers) is list or not isinstance(headers, Mapping)
                  else headers.items())
    if len(pairs) <= _CACHED_HEADER_PAIRS:
        try:
            if pairs and pairs[-1][0] == CORRELATION_HEADER:
                return _with_correlation_id(pairs[:-1], pairs[-1][1])
            return _stored_headers_cached(pairs)[:2]
        except TypeError:  # a value that cannot be hashed: redact it the long way
            pass
    return _stored_headers_of(pairs)[:2]


_CACHED_HEADER_PAIRS = 24
_CACHED_BODY_BYTES = 1024


def _with_correlation_id(rest: tuple[tuple[str, str], ...], value: str) -> tuple[str, str]:
    stored, content_type, names = _stored_headers_cached(rest)
    if (CORRELATION_HEADER in names or not isinstance(value, str)
            or _header_kind(CORRELATION_HEADER) != "plain"):  # joined or masked: the long way
        return _stored_headers_of((*rest, (CORRELATION_HEADER, value)))[:2]
    echoed = f'"{CORRELATION_HEADER}":{orjson.dumps(value).decode()}}}'
    return (f"{stored[:-1]},{echoed}" if names else f"{{{echoed}"), content_type


@functools.lru_cache(maxsize=512)
def _stored_headers_cached(pairs: tuple[tuple[str, str], ...]) -> tuple[str, str, frozenset[str]]:
    return _stored_headers_of(pairs)


def _stored_headers_of(pairs: Iterable[tuple[str, str]]) -> tuple[str, str, frozenset[str]]:
    redacted = redact_headers(pairs)
    content_type = next((v for k, v in redacted.items() if k.lower() == "content-type"), "")
    return orjson.dumps(redacted).decode(), content_type, frozenset(redacted)


def _stored_body(body: bytes | str, content_type: str, limit: int) -> str:
    """A request body as stored; small ones, which repeat (a client's request), redacted once.
    """
    if len(body) <= _CACHED_BODY_BYTES:
        return _stored_small_body(body, content_type, limit)
    return redact_body(body, content_type, limit=limit)


@functools.lru_cache(maxsize=512)
def _stored_small_body(body: bytes | str, content_type: str, limit: int) -> str:
    return redact_body(body, content_type, limit=limit)


def entry_to_json(row: JournalEntry) -> dict[str, Any]:
    """One stored entry as the control API shows it (camelCase, ISO instants)."""
    return {
        "id": row.id, "correlationId": row.correlation_id, "at": format_instant(row.at),
        "method": row.method, "path": row.path, "query": row.query, "status": row.status,
        "latencyMs": row.latency_ms, "requestHeaders": json.loads(row.request_headers),
        "requestBody": row.request_body, "responseHeaders": json.loads(row.response_headers),
        "responseBody": row.response_body, "fault": row.fault,
    }


def _is_control_path(path: str) -> bool:
    return path == "/_sim" or path.startswith("/_sim/")


def install_journal(app: Flask, journal: Journal) -> None:
    """Journal every request `app` serves outside `/_sim/`, and echo its correlation id.

    The hooks go first in `app`'s before-request list and last to run after the request, so
    the journal sees every request, including ones another hook (faults, auth) answers early,
    and sees the response exactly as it leaves.
    """

    def start() -> None:
        g.journal_started = monotonic()
        current_correlation_id()

    def finish(response: Response) -> Response:
        response.headers[CORRELATION_HEADER] = current_correlation_id()
        if not _is_control_path(request.path):
            _record_safely(journal, response)
        return response

    app.before_request_funcs.setdefault(None, []).insert(0, start)
    app.after_request_funcs.setdefault(None, []).insert(0, finish)


def _record_safely(journal: Journal, response: Response) -> None:
    """Record the exchange; a journal failure is logged and never reaches the client."""
    try:
        started = g.get("journal_started")
        latency = int((monotonic() - started) * 1000) if isinstance(started, float) else 0
        fault = g.get("fault")
        journal.record(
            correlation_id=current_correlation_id(), method=request.method, path=request.path,
            query=request.query_string.decode("latin-1"), status=response.status_code,
            latency_ms=latency, request_headers=list(request.headers.items()),
            request_body=_request_body(), response_headers=list(response.headers.items()),
            response_body=_response_body(response), fault=fault if isinstance(fault, str) else None,
        )
    except Exception:
        log.exception("journal write failed for %s %s", request.method, request.path)


def _request_body() -> bytes | str:
    # A body over the app's size limit was refused unread; reading it now would raise again.
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if limit is not None and (request.content_length or 0) > limit:
        return f"<{request.content_length} bytes, over the size limit, not read>"
    try:
        return request.get_data(cache=True)
    except RequestEntityTooLarge:
        return "<over the size limit, not read>"


def _response_body(response: Response) -> bytes | str:
    # A streamed body can be read only once, and the client needs it more than the journal.
    if response.is_streamed:
        return "<streamed>"
    return response.get_data()

