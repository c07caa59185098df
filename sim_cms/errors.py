"""sim_cms's error dialect: RFC 9457 problem details with a stable `code` member."""

from __future__ import annotations

import json
from http import HTTPStatus

from flask import Response

from simkit.errors import SimError

PROBLEM_TYPE_BASE = "https://scanpay-sim.dev/problems/"
BEARER_CHALLENGE = 'Bearer realm="cws"'


def problem_body(error: SimError) -> dict[str, object]:
    """The problem document for `error` (also stored verbatim for funding rejections)."""
    try:
        title = HTTPStatus(error.http_status).phrase
    except ValueError:
        title = "Error"
    body: dict[str, object] = {
        "type": PROBLEM_TYPE_BASE + error.code.lower().replace("_", "-"),
        "title": title,
        "status": error.http_status,
        "detail": error.message,
        "code": error.code,
    }
    body.update({k: v for k, v in error.extra.items() if k not in body})
    return body


def render_problem(error: SimError) -> Response:
    """Render `error` as `application/problem+json` (status and headers set by the handler)."""
    return Response(json.dumps(problem_body(error)), mimetype="application/problem+json")
