"""The one TLS context every HTTP client of ours shares.

httpx builds a new `ssl.SSLContext` for every client it opens unless it is given one, and
loading the root certificates is most of what opening a client costs (about 20 ms of CPU
here). Code that opens a client per call (the harness, per scenario and per control call;
TPAS's reconciliation, per request) paid that each time: it was half of a `scanpay
certify` run's CPU. Every client gets this context instead: certifi's roots, as httpx's
default would load, built once.
"""

from __future__ import annotations

import functools
import ssl

import certifi


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The shared client context: certificates verified against certifi's roots."""
    return ssl.create_default_context(cafile=certifi.where())
