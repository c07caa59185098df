"""The QR-screen defects: `ignores-rotation` and `no-replacement-after-use`.

`sim_cms.qr_display` decides which EGMs need a new QR in one query clause (`_due_clause`:
no QR yet, past `rotates_at`, or spent: its token already paid a funding). The defects swap
that clause for one without a part of the rule:

- `ignores-rotation`: `rotates_at` becomes the QR's expiry, so every path that rotates (the
  screen's lazy check, `POST /_sim/qr/rotate`, `scanpay rotate`) leaves the QR on screen until
  it can no longer be paid, while the QR answers still announce the `rotatesAt` the CMS then
  ignores. A spent QR is still replaced.
- `no-replacement-after-use`: a spent QR is not due until its rotation; the screen, which
  never offers a spent token, shows no QR until then (the next player is told to scan a code
  that is not there).

A forced acquisition (`POST /cws/v1/egms/{id}/qr`) still works: that is neither.

The clause is built with no app at hand, so the swap is module-wide: a server process makes
it for its life (`tests.broken_cms.wsgi`); in-process tests use `swapped_due_clause()`, which
puts the product's clause back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import or_

from sim_cms import qr_display
from sim_cms.models import QrDisplay, QrFunding, QrState
from tests.broken_cms.defects import Defect

SCREEN_DEFECTS = frozenset({Defect.IGNORES_ROTATION, Defect.NO_REPLACEMENT_AFTER_USE})
Clause = Callable[[datetime], Any]


def due_clause(defects: frozenset[Defect]) -> Clause:
    """`qr_display._due_clause` without the parts of the rule `defects` take out."""
    def clause(now: datetime) -> Any:
        due_at = QrDisplay.expires_at if Defect.IGNORES_ROTATION in defects \
            else QrDisplay.rotates_at
        parts = [QrDisplay.qr_token_id.is_(None), due_at <= now]
        if Defect.NO_REPLACEMENT_AFTER_USE not in defects:
            parts.append(QrFunding.qr_token_id.is_not(None))  # spent: replaced at once
        not_waiting = or_(QrState.next_acquire_at.is_(None), QrState.next_acquire_at <= now)
        return or_(*parts) & not_waiting

    return clause


def swap_due_clause(defects: frozenset[Defect]) -> None:
    """Swap the clause for the rest of this process's life (a server's `create()`)."""
    if defects & SCREEN_DEFECTS:
        setattr(qr_display, "_due_clause", due_clause(defects))  # noqa: B010 - a module swap


@contextmanager
def swapped_due_clause(defects: frozenset[Defect]) -> Iterator[None]:
    """Swap the clause for the block only, then restore the product's."""
    product = qr_display._due_clause
    swap_due_clause(defects)
    try:
        yield
    finally:
        qr_display._due_clause = product


@contextmanager
def ignoring_rotation() -> Iterator[None]:
    """`ignores-rotation` for the block."""
    with swapped_due_clause(frozenset({Defect.IGNORES_ROTATION})):
        yield
