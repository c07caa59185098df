"""`POST /cws/v1/fundings` served below Flask: every payment of the casino ends here.

TPAS posts one funding per payment, and a load test posts them as fast as the CMS answers, so
Flask's request machinery (context, routing, hooks, response object) costs a measurable share
of a funding that the database has made cheap. The common case is therefore answered by a
small WSGI layer in front of the app, as sim_trustly answers its QR Code API:

- a JSON body of a declared size, a Bearer token the CMS issued, that has not expired and was
  granted the `fundings` scope, and no fault rule for the path: the funding is decided here
  by `decide.post_transaction`, the same call the Flask view makes, and its outcome (applied,
  replayed or rejected) answered with the view's status, body, media type and replay header;
- anything else falls through to the Flask view untouched (`funding/api.py`), which stays the
  one place that renders authentication errors, malformed bodies, faults and failures. A
  failure while deciding here falls through as well: `post_transaction` is idempotent, so the
  view decides again, and answers a funding that did commit as the replay it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

import orjson

from sim_cms.access_tokens import check_token
from sim_cms.context import CmsContext
from sim_cms.funding import decide
from sim_cms.funding.api import REPLAY_HEADER
from sim_cms.funding.requests import parse_funding_request
from sim_cms.scopes import FUNDINGS
from simkit.clock import monotonic
from simkit.fast_path import WsgiApp, journal_exchange, read_json_body
from simkit.faults import FaultPlan
from simkit.http import parse_bearer
from simkit.journal import CORRELATION_HEADER, Journal

FUNDINGS_PATH = "/cws/v1/fundings"


def _status_line(status: int) -> str:
    return f"{status} {HTTPStatus(status).phrase}"


class FundingFastPath:
    """WSGI middleware deciding well-authenticated fundings; everything else goes to Flask."""

    def __init__(self, app: WsgiApp, ctx: CmsContext, *, journal: Journal | None = None,
                 faults: FaultPlan | None = None) -> None:
        self._app = app
        self._ctx = ctx
        self._journal = journal
        self._faults = faults

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != FUNDINGS_PATH or environ.get("REQUEST_METHOD") != "POST":
            return self._app(environ, start_response)
        started = monotonic()
        body = read_json_body(environ, self._ctx.settings.max_body_bytes)
        decided = None if body is None else self._decide(environ, body)
        if decided is None:
            return self._app(environ, start_response)
        status, answer, headers = decided
        if self._journal is not None:
            headers.append((CORRELATION_HEADER, journal_exchange(
                self._journal, environ, path=FUNDINGS_PATH, status=status, body=body or b"",
                answer=answer, headers=headers, started=started)))
        start_response(_status_line(status), headers)
        return [answer]

    def _decide(self, environ: dict[str, Any],
                body: bytes) -> tuple[int, bytes, list[tuple[str, str]]] | None:
        """(status, body, headers) of a funding decided here, or None to let Flask answer."""
        token = parse_bearer(environ.get("HTTP_AUTHORIZATION"))
        if token is None:
            return None
        if self._faults is not None and self._faults.may_fire("POST", FUNDINGS_PATH):
            return None
        ctx = self._ctx
        try:
            if FUNDINGS not in check_token(ctx.db, token, ctx.clock.now(), ctx.tokens).scopes:
                return None  # the view refuses it (403 INSUFFICIENT_SCOPE)
            funding = parse_funding_request(orjson.loads(body))
            outcome = decide.post_transaction(ctx.db, funding, ctx.settings, ctx.clock.now())
        except Exception:
            return None
        answer = outcome.body.encode()
        headers = [("Content-Type", outcome.media_type), ("Content-Length", str(len(answer)))]
        if outcome.replayed:
            headers.append((REPLAY_HEADER, "true"))
        return outcome.http_status, answer, headers
