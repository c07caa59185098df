"""The HTTP library as the rest of the harness sees it: its types, and how a client is opened.

Only `harness.clients` speaks HTTP (tests/unit/test_harness_layout.py holds every other module
of the harness to that): the other packages name a response, a client handed to a phone, a
transport or the library's errors through this module, and open a client with `open_client`,
but every exchange with a system goes through one client per service (`cms`, `phone`,
`trustly`, `control`). `LateWSGITransport` is how the embedded sims reach each other and are
reached in-process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from httpx import BaseTransport as Transport
from httpx import (
    Client,
    ConnectError,
    HTTPError,
    HTTPStatusError,
    Request,
    Response,
    Timeout,
    TimeoutException,
)

from simkit.tls import tls_context

__all__ = ["Client", "ConnectError", "HTTPError", "HTTPStatusError", "LateWSGITransport",
           "Request", "Response", "Timeout", "TimeoutException", "Transport", "get_once",
           "open_client"]


def open_client(base_url: str | None = None, *, transport: Transport | None = None,
                timeout: float | Timeout = 30.0, headers: Mapping[str, str] | None = None,
                on_request: Callable[[Request], None] | None = None) -> Client:
    """A client to one system (the caller closes it): by base URL, or absolute urls without
    one (a phone); `on_request` sees each request before it is sent (journal marks)."""
    kwargs: dict[str, Any] = {"base_url": base_url} if base_url is not None else {}
    hooks = {"request": [on_request]} if on_request is not None else {}
    return Client(transport=transport, timeout=timeout, headers=dict(headers or {}),
                  event_hooks=hooks, verify=tls_context(), **kwargs)


def get_once(url: str, timeout_s: float) -> Response:
    """One GET outside any session (a reachability check): the answer, or the HTTPError."""
    return httpx.get(url, timeout=timeout_s, verify=tls_context())


class LateWSGITransport(Transport):
    """An httpx transport to a WSGI app that is bound after the transport is handed out.

    The two sims need each other at build time (TPAS calls the CMS, the CMS asks Trustly for
    QR codes), so one of them gets its transport before the other app exists. Until `bind`,
    a request fails as a refused connection would (`httpx.ConnectError`), which is what a
    sim that is not up yet looks like over a network, and what every client already handles.
    """

    def __init__(self, app: Any = None, *, raise_app_exceptions: bool = True) -> None:
        self._raise = raise_app_exceptions
        self._lock = threading.Lock()
        self._inner: httpx.WSGITransport | None = None
        if app is not None:
            self.bind(app)

    @property
    def bound(self) -> bool:
        """Whether requests reach an app yet."""
        return self._inner is not None

    def bind(self, app: Any) -> None:
        """Route every later request to `app` (a WSGI callable); binding twice is a bug."""
        with self._lock:
            if self._inner is not None:
                raise RuntimeError("this transport is already bound to an app")
            self._inner = httpx.WSGITransport(app=app, raise_app_exceptions=self._raise)

    def handle_request(self, request: Request) -> Response:
        """Serve `request` through the bound app (a ConnectError before `bind`)."""
        inner = self._inner
        if inner is None:
            raise ConnectError("the in-process app is not bound yet", request=request)
        return inner.handle_request(request)

    def close(self) -> None:
        """Close the inner transport, if bound (WSGI transports hold no connections)."""
        if self._inner is not None:
            self._inner.close()
