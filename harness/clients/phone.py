"""The phone's side of Scan and Pay: the QR's url, the microsite's JSON API, the outcome.

A phone knows nothing but the url in the QR: every address here is derived from it, so a
payment is always made on the Trustly that issued the QR (whatever the harness was told).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from simkit.wait import poll_until

DEFINITE = frozenset({"CREDITED", "REJECTED_VOIDED", "FAILED_VOIDED"})
POLL_INTERVAL_S = 0.25


class NotAQrUrl(ValueError):
    """A url that does not end in `/scan/<code>`, so no phone could pay with it."""


def scan_api_url(qr_url: str) -> str:
    """The JSON twin of a QR's page: `<base>/scan/<code>` -> `<base>/api/v1/scan/<code>`."""
    parts = urlsplit(qr_url)
    base, marker, code = parts.path.rpartition("/scan/")
    if not marker or not code or "/" in code:
        raise NotAQrUrl(f"the QR url {qr_url!r} does not end in /scan/<code>")
    return f"{parts.scheme}://{parts.netloc}{base}/api/v1/scan/{code}"


def open_qr(phone: httpx.Client, qr_url: str) -> httpx.Response:
    """What the phone sees when it opens the QR, as JSON: state, EGM, casino, suggested
    amounts (`GET /api/v1/scan/<code>`); the answer as it came."""
    return phone.get(scan_api_url(qr_url))


def approve(phone: httpx.Client, qr_url: str, *, amount: int, currency: str, username: str,
            password: str) -> httpx.Response:
    """The phone's approve: pay `amount` with the scanned QR at the demo bank
    (`POST /api/v1/scan/<code>/payments`); the answer as it came (201 definite, 202 on its
    way, or a refusal)."""
    body = {"amount": amount, "currency": currency,
            "bank": {"username": username, "password": password}}
    return phone.post(f"{scan_api_url(qr_url)}/payments", json=body)


def payment_url(qr_url: str, payment_id: str) -> str:
    """`GET /api/v1/payments/<id>` on the Trustly that issued the QR."""
    api = scan_api_url(qr_url)
    return f"{api.rpartition('/scan/')[0]}/payments/{payment_id}"


def settle_payment(
    phone: httpx.Client, qr_url: str, payment: dict[str, Any], *, timeout_s: float,
    before_poll: Callable[[], None] | None = None, interval_s: float = POLL_INTERVAL_S,
) -> dict[str, Any]:
    """The payment once it has a definite outcome, or as it last stood when `timeout_s` ran
    out (a payment answered 202 is still on its way: its CMS did not answer yet).

    `before_poll` runs before each look (a journal mark, or asking Trustly to recover).
    A look that fails (not 200) keeps the last answer and tries again until the deadline.
    """
    latest = payment

    def look() -> dict[str, Any] | None:
        nonlocal latest
        if latest.get("status") in DEFINITE:
            return latest
        if before_poll is not None:
            before_poll()
        answer = phone.get(payment_url(qr_url, str(latest.get("paymentId"))))
        if answer.status_code == 200:
            latest = answer.json()
        return latest if latest.get("status") in DEFINITE else None

    poll_until(look, timeout_s=timeout_s, interval_s=interval_s)
    return latest
