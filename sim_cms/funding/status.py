"""The status inquiry (`GET /cws/v1/fundings/<transactionId>`) as a service: what was decided
under a transactionId, read in a transaction of its own."""

from __future__ import annotations

from typing import Any

from sim_cms import ledger
from sim_cms.funding.requests import status_document
from simkit.db import Database
from simkit.errors import NotFound


def funding_status(db: Database, transaction_id: str) -> dict[str, Any]:
    """The stored outcome's status document, or 404 FUNDING_NOT_FOUND when nothing was
    decided under `transaction_id` (so the same request is safe to retry)."""
    with db.read() as session:
        record = ledger.get_funding(session, transaction_id)
        if record is None:
            raise NotFound(f"no funding was decided under {transaction_id}; it is safe to retry",
                           code="FUNDING_NOT_FOUND", transactionId=transaction_id)
        return status_document(record)
