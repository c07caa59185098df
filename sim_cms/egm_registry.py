"""The EGM registry as the views use it: each function owns its transaction and answers
plain, JSON-ready values.

The rules live in `egms` (validation, the row lock, the audit record), on a session the
caller opens; this module opens that session, so that no view does (the CWS EGM endpoints in
`egms_api` and the control API in `admin_api` call it alike).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sim_cms.egms import (
    EgmChange,
    EgmDefinition,
    change_egm,
    define_egm,
    egm_json,
    get_egm,
    list_egms,
)
from sim_cms.models import Egm
from simkit.db import Database


def list_all(db: Database) -> list[dict[str, Any]]:
    """Every EGM's wire shape, ordered by id."""
    with db.read() as session:
        return [egm_json(egm) for egm in list_egms(session)]


def read_egm(db: Database, egm_id: str) -> Egm:
    """The EGM as a detached row, or `EgmNotFound` (404 EGM_NOT_FOUND)."""
    with db.read() as session:
        return get_egm(session, egm_id)


def read_one(db: Database, egm_id: str) -> dict[str, Any]:
    """One EGM's wire shape, or `EgmNotFound` (404 EGM_NOT_FOUND)."""
    with db.read() as session:
        return egm_json(get_egm(session, egm_id))


def define(
    db: Database, egm_id: str, definition: EgmDefinition, currency: str, now: datetime,
) -> tuple[dict[str, Any], bool]:
    """Create or redefine an EGM (audited in the same transaction); its wire shape and
    whether it was created."""
    with db.write() as session:
        egm, created = define_egm(session, egm_id, definition, currency, now)
        return egm_json(egm), created


def change(db: Database, egm_id: str, egm_change: EgmChange, now: datetime) -> dict[str, Any]:
    """Apply a validated state or meter change under the EGM's row lock (audited in the same
    transaction); the EGM's wire shape after it."""
    with db.write() as session:
        return egm_json(change_egm(session, egm_id, egm_change, now))
