"""The `ignores-rotation` defect: a QR is replaced only once it has expired, never before.

`sim_cms.qr_display` decides which EGMs need a new QR in one query clause (`_due_clause`:
no QR yet, or past `rotates_at`). The defect swaps `rotates_at` for `expires_at` there, so
every path that rotates (the screen's lazy check, `POST /_sim/qr/rotate`, `scanpay rotate`)
leaves the QR on screen until it can no longer be paid, while the QR answers still announce
the `rotatesAt` the CMS then ignores. A forced acquisition (`POST /cws/v1/egms/{id}/qr`) still
works: that is not rotation.

The clause is built with no app at hand, so the swap is module-wide: a server process makes
it for its life (`tests.broken_cms.wsgi`); in-process tests use `ignoring_rotation()`, which
puts the product's clause back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import or_

from sim_cms import qr_display
from sim_cms.models import QrDisplay, QrState


def due_only_at_expiry(now: datetime) -> Any:
    """`qr_display._due_clause` with the QR's expiry in place of its `rotates_at`."""
    no_qr_or_expired = or_(QrDisplay.qr_token_id.is_(None), QrDisplay.expires_at <= now)
    not_waiting = or_(QrState.next_acquire_at.is_(None), QrState.next_acquire_at <= now)
    return no_qr_or_expired & not_waiting


def ignore_rotation() -> None:
    """Swap the clause for the rest of this process's life (a server's `create()`)."""
    qr_display._due_clause = due_only_at_expiry


@contextmanager
def ignoring_rotation() -> Iterator[None]:
    """Swap the clause for the block only, then restore the product's."""
    product = qr_display._due_clause
    ignore_rotation()
    try:
        yield
    finally:
        qr_display._due_clause = product
