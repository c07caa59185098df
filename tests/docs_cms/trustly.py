"""Getting QR tokens from Trustly's QR Code API and showing them on EGMs.

`POST /auth-service/api/oauth2/qrcode/token` with Basic accessId:accessKey and
`{"merchantId", "egmId"}`; the answer's `url` is what the EGM shows, unchanged, and its last
path segment is the `qrTokenId` fundings name. Every QR an EGM ever showed is kept, so a QR
rotated away stays fundable until it is used or expires.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import qrcode
from qrcode.constants import ERROR_CORRECT_M

from tests.docs_cms.clock import OffsetClock, iso, parse_instant
from tests.docs_cms.store import Store

ROTATION_BUFFER = timedelta(seconds=30)
QR_PATH = "/auth-service/api/oauth2/qrcode/token"


class TrustlyUnavailable(Exception):
    """Trustly gave no usable QR token."""

    def __init__(self, status: int | None, reason: str) -> None:
        super().__init__(f"Trustly answered {status}: {reason}")
        self.status, self.reason = status, reason


@dataclass(frozen=True)
class Merchant:
    """The casino's QR Code API credentials."""

    base_url: str
    merchant_id: str
    access_id: str
    access_key: str


class QrDesk:
    """Acquires, rotates and shows the EGMs' QRs."""

    def __init__(self, store: Store, clock: OffsetClock, merchant: Merchant,
                 replace_used: bool = True) -> None:
        self.store, self.clock, self.merchant = store, clock, merchant
        self.replace_used = replace_used
        self._http = httpx.Client(timeout=httpx.Timeout(5.0, connect=2.0),
                                  auth=(merchant.access_id, merchant.access_key))

    def acquire(self, egm_id: str, correlation_id: str | None = None) -> dict[str, Any]:
        """Ask Trustly for a new QR token for `egm_id` now, show it, and return it."""
        headers = {"X-Correlation-Id": correlation_id} if correlation_id else {}
        try:
            answer = self._http.post(self.merchant.base_url.rstrip("/") + QR_PATH,
                                     json={"merchantId": self.merchant.merchant_id,
                                           "egmId": egm_id}, headers=headers)
        except httpx.TimeoutException as exc:
            raise TrustlyUnavailable(None, "timeout") from exc
        except httpx.TransportError as exc:
            raise TrustlyUnavailable(None, "connection") from exc
        if answer.status_code != 200:
            raise TrustlyUnavailable(answer.status_code, "rejected")
        try:
            body = answer.json()
            url = body["url"]
            expires_at = parse_instant(body["expiresAt"])
        except (ValueError, KeyError, TypeError) as exc:
            raise TrustlyUnavailable(200, "malformed") from exc
        code = url.rstrip("/").rpartition("/")[2]
        rotates_at = expires_at - ROTATION_BUFFER
        with self.store.write() as db:
            db.execute("INSERT OR REPLACE INTO qrs VALUES (?, ?, ?, ?, ?, ?, NULL)",
                       (code, egm_id, url, iso(expires_at), iso(rotates_at),
                        iso(self.clock.now())))
            db.execute("UPDATE egms SET current_qr = ? WHERE id = ?", (code, egm_id))
        return {"egmId": egm_id, "url": url, "qrTokenId": code,
                "expiresAt": iso(expires_at), "rotatesAt": iso(rotates_at)}

    def _stale(self, row: Any, now: datetime) -> bool:
        """Whether the shown QR must be replaced: none, paid with, or its rotation time came."""
        if row is None:
            return True
        if row["funded_by"] is not None and self.replace_used:
            return True
        return now >= parse_instant(row["rotates_at"])

    def shown(self, egm_id: str) -> dict[str, Any]:
        """The QR the EGM shows now, replacing it first when it is stale."""
        with self.store.read() as db:
            row = db.execute("SELECT q.* FROM egms e JOIN qrs q ON q.code = e.current_qr "
                             "WHERE e.id = ?", (egm_id,)).fetchone()
        if self._stale(row, self.clock.now()):
            return self.acquire(egm_id)
        return {"egmId": egm_id, "url": row["url"], "qrTokenId": row["code"],
                "expiresAt": row["expires_at"], "rotatesAt": row["rotates_at"]}

    def rotate_all(self) -> dict[str, Any]:
        """One rotation pass: every EGM whose QR is stale gets a new one."""
        with self.store.read() as db:
            rows = db.execute("SELECT e.id, q.* FROM egms e LEFT JOIN qrs q "
                              "ON q.code = e.current_qr ORDER BY e.id").fetchall()
        now, acquired, failed = self.clock.now(), [], {}
        for row in rows:
            if self._stale(row if row["code"] else None, now):
                try:
                    self.acquire(row["id"])
                    acquired.append(row["id"])
                except TrustlyUnavailable as exc:
                    failed[row["id"]] = str(exc)
        return {"acquired": acquired, "failed": failed}


def png(text: str) -> bytes:
    """`text` as a QR code image: level M, the standard 4-module quiet zone."""
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=4, box_size=8)
    code.add_data(text)
    code.make(fit=True)
    out = io.BytesIO()
    code.make_image().save(out)
    return out.getvalue()
