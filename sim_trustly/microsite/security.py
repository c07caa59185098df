"""Response headers that keep the microsite's pages (and the bank login on them) to themselves.

The Content-Security-Policy allows scripts, styles and images from this site only (the pages
load `microsite.js` and `microsite.css` and carry no inline code, so no nonce is needed),
forms that post back here only, and no framing: a page that shows a bank login must not be
wrapped in another site's frame (clickjacking). `X-Frame-Options` says the same to browsers
that predate `frame-ancestors`, and `nosniff` stops a browser from running a response as a
type other than the one declared.
"""

from __future__ import annotations

from werkzeug.wrappers import Response

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def add_security_headers(response: Response) -> Response:
    """Set `HEADERS` on a microsite response (an `after_request` hook of its blueprints)."""
    response.headers.update(HEADERS)
    return response
