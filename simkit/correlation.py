"""One correlation id per payment, end to end: passed on when a sim calls another system.

A sim serving a request takes its caller's `X-Correlation-Id` (or makes one up, see
`simkit.journal.current_correlation_id`); when it calls another system while serving it (TPAS
calling the CMS, the CMS asking Trustly for a QR token), the call carries the same id, so the
other system's journal files it under the same id and a report can draw the whole sequence.
"""

from __future__ import annotations

import httpx
from flask import has_request_context

from simkit.journal import CORRELATION_HEADER, current_correlation_id


def propagate_correlation_id(request: httpx.Request) -> None:
    """An httpx request hook: send the served request's correlation id with the call.

    Outside a request (a background sweep, a rotation pass) nothing is added, and the system
    called makes up its own id.
    """
    if has_request_context() and CORRELATION_HEADER not in request.headers:
        request.headers[CORRELATION_HEADER] = current_correlation_id()
