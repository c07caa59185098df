"""One error type with stable codes, and one handler per app that renders it.

Services raise `SimError` (or a subclass that names the situation); they know nothing of HTTP
beyond the status the error maps to. Each sim renders errors in its own dialect through a
single `render` function handed to `install_error_handler`. Codes are UPPER_SNAKE and are never
renamed: partners' tests match on them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, Response
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class SimError(Exception):
    """A decided, client-visible failure: stable `code`, HTTP status, message and extras."""

    def __init__(
        self, code: str, http_status: int, message: str, *,
        headers: dict[str, str] | None = None, **extra: Any,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = http_status
        self.message = message
        self.headers = dict(headers or {})
        self.extra = extra

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.http_status}, {self.message!r})"


class BadRequest(SimError):
    """Raised when a request body or parameter is missing, malformed or of the wrong type."""

    def __init__(self, message: str, *, code: str = "INVALID_REQUEST", **extra: Any) -> None:
        super().__init__(code, 400, message, **extra)


class NotFound(SimError):
    """Raised when the addressed resource does not exist."""

    def __init__(self, message: str, *, code: str = "NOT_FOUND", **extra: Any) -> None:
        super().__init__(code, 404, message, **extra)


class Unauthorized(SimError):
    """Raised when credentials are missing or wrong; always carries `WWW-Authenticate`."""

    def __init__(
        self, message: str, *, challenge: str, code: str = "UNAUTHORIZED", **extra: Any
    ) -> None:
        super().__init__(code, 401, message, headers={"WWW-Authenticate": challenge}, **extra)


class Forbidden(SimError):
    """Raised when the caller is known but may not do this."""

    def __init__(self, message: str, *, code: str = "FORBIDDEN", **extra: Any) -> None:
        super().__init__(code, 403, message, **extra)


# Werkzeug's own refusals (routing, size limit, method) mapped onto stable codes.
_HTTP_CODES: dict[int, str] = {
    400: "INVALID_REQUEST",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "TOO_MANY_REQUESTS",
}


def from_http_exception(exc: HTTPException) -> SimError:
    """Translate a werkzeug HTTPException (404 route, 405, 413...) into a SimError."""
    status = exc.code or 500
    code = _HTTP_CODES.get(status, "INTERNAL_ERROR" if status >= 500 else "INVALID_REQUEST")
    headers: dict[str, str] = {}
    if status == 405 and exc.get_headers():
        headers = {k: v for k, v in exc.get_headers() if k.lower() == "allow"}
    return SimError(code, status, exc.description or exc.name, headers=headers)


def install_error_handler(app: Flask, render: Callable[[SimError], Response]) -> None:
    """Make `render` the one place `app` turns errors into responses.

    Unexpected exceptions propagate when the app is configured to propagate them (tests run
    in-process this way so a bug shows its traceback), otherwise they become a 500.
    """

    def _respond(error: SimError) -> Response:
        response = render(error)
        response.status_code = error.http_status
        for name, value in error.headers.items():
            response.headers[name] = value
        return response

    @app.errorhandler(SimError)
    def _sim_error(error: SimError) -> Response:
        return _respond(error)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        return _respond(from_http_exception(error))

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        if app.testing or app.config.get("PROPAGATE_EXCEPTIONS"):
            raise error
        log.exception("unhandled error")
        return _respond(SimError("INTERNAL_ERROR", 500, "internal error"))
