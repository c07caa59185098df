"""The EGM registry: machines, their states, credit meters and caps.

A service module (no Flask): `egm_registry` (for the CWS blueprint `egms_api` and the control
API `admin_api`), `control_state` and `qr_display` call these functions inside the caller's
database session. The credit meter itself is only ever changed by a funding
(`funding.decide` decides, `ledger` writes); this module changes states, caps and names.
Caps are `MinorUnits` from the parsed body to the row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sim_cms import audit
from sim_cms.models import Egm
from sim_cms.seed import add_egm
from sim_cms.settings import EgmConfig
from simkit.errors import BadRequest, NotFound
from simkit.money import MinorUnits

STATES = ("IDLE", "IN_GAME", "DOOR_OPEN", "TILT", "OFFLINE")
DEFAULT_CREDIT_LIMIT = MinorUnits(EgmConfig(id="-", name="-").credit_limit)
MAX_CREDIT_LIMIT = 2**53  # stays exact in every JSON parser a partner may use
EGM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")  # what Trustly accepts as egmId


class EgmNotFound(NotFound):
    """Raised when an EGM id names no machine of this casino."""

    def __init__(self, egm_id: str) -> None:
        super().__init__(f"EGM {egm_id!r} does not exist", code="EGM_NOT_FOUND", egmId=egm_id)


@dataclass(frozen=True)
class EgmChange:
    """A validated control-API change of one EGM: a new state and/or a new credit cap."""

    state: str | None = None
    credit_limit: MinorUnits | None = None


@dataclass(frozen=True)
class EgmDefinition:
    """A validated control-API definition of an EGM (create, or rename and re-cap)."""

    name: str
    credit_limit: MinorUnits


def lock_egm(session: Session, egm_id: str) -> Egm | None:
    """The EGM row locked for the rest of the transaction, or None.

    PostgreSQL takes a row lock (`FOR UPDATE`) so racing fundings serialise on the meter;
    on SQLite the clause is dropped and `Database.write()`'s BEGIN IMMEDIATE does the job.
    """
    if not EGM_ID.fullmatch(egm_id):
        return None
    return session.get(Egm, egm_id, with_for_update=True)


def get_egm(session: Session, egm_id: str) -> Egm:
    """The EGM, or `EgmNotFound` (404 EGM_NOT_FOUND) for views that must answer one.

    An id without the EGM id form names no machine and never reaches the query: taken from a
    URL it may hold a NUL byte, which PostgreSQL refuses with an error instead of a miss.
    """
    egm = session.get(Egm, egm_id) if EGM_ID.fullmatch(egm_id) else None
    if egm is None:
        raise EgmNotFound(egm_id)
    return egm


def list_egms(session: Session) -> list[Egm]:
    """Every EGM, ordered by id so lists and dumps are stable."""
    return list(session.scalars(select(Egm).order_by(Egm.id)))


def egm_json(egm: Egm) -> dict[str, Any]:
    """The wire shape of `GET /cws/v1/egms/{id}`."""
    return {"id": egm.id, "name": egm.name, "state": egm.state,
            "creditMeter": egm.credit_meter, "creditLimit": egm.credit_limit,
            "currency": egm.currency}


def _credit_limit(value: Any) -> MinorUnits:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_CREDIT_LIMIT:
        raise BadRequest("creditLimit must be a non-negative integer of minor units",
                         code="INVALID_CREDIT_LIMIT", field="creditLimit")
    return MinorUnits(value)


def _object(body: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadRequest(f"unknown field(s) {unknown}; allowed: {sorted(allowed)}")
    return body


def parse_change(body: Any) -> EgmChange:
    """Validate `{"state"?, "creditLimit"?}`; bad input is a 400 before anything changes."""
    fields = _object(body, {"state", "creditLimit"})
    if not fields:
        raise BadRequest("give at least one of state, creditLimit")
    state = fields.get("state")
    if "state" in fields and state not in STATES:
        raise BadRequest(f"state must be one of {list(STATES)}", code="INVALID_STATE",
                         field="state")
    limit = _credit_limit(fields["creditLimit"]) if "creditLimit" in fields else None
    return EgmChange(state=state, credit_limit=limit)


def parse_definition(egm_id: str, body: Any) -> EgmDefinition:
    """Validate an EGM id and `{"name"?, "creditLimit"?}` for create-or-replace."""
    if not EGM_ID.fullmatch(egm_id):
        raise BadRequest("an EGM id is 1-64 letters, digits or ._:- characters",
                         code="INVALID_EGM_ID", field="id")
    fields = _object(body, {"name", "creditLimit"})
    name = fields.get("name", egm_id)
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 200:
        raise BadRequest("name must be a non-empty string of at most 200 characters",
                         field="name")
    return EgmDefinition(name.strip(), _credit_limit(fields.get("creditLimit",
                                                                 DEFAULT_CREDIT_LIMIT)))


def change_egm(session: Session, egm_id: str, change: EgmChange, now: datetime) -> Egm:
    """Apply a validated change under the EGM's row lock, and audit it."""
    egm = lock_egm(session, egm_id)
    if egm is None:
        raise EgmNotFound(egm_id)
    before = {"state": egm.state, "creditLimit": egm.credit_limit}
    if change.state is not None:
        egm.state = change.state
    if change.credit_limit is not None:
        egm.credit_limit = change.credit_limit
    egm.updated_at = now
    after = {"state": egm.state, "creditLimit": egm.credit_limit}
    audit.append(session, chain=audit.egm_chain(egm_id), kind="EGM_CHANGED", subject=egm_id,
                 payload={"before": before, "after": after}, now=now)
    return egm


def define_egm(
    session: Session, egm_id: str, definition: EgmDefinition, currency: str, now: datetime,
) -> tuple[Egm, bool]:
    """Create the EGM (IDLE, meter 0, with its meter account) or rename and re-cap it.

    Returns the EGM and whether it was created; its state and meter are never touched here.
    """
    egm = lock_egm(session, egm_id)
    created = egm is None
    if egm is None:
        add_egm(session, EgmConfig(egm_id, definition.name, definition.credit_limit),
                currency, now)
        session.flush()
        egm = get_egm(session, egm_id)
    else:
        egm.name, egm.credit_limit, egm.updated_at = definition.name, definition.credit_limit, now
    payload = {"name": egm.name, "creditLimit": egm.credit_limit, "created": created}
    audit.append(session, chain=audit.egm_chain(egm_id), kind="EGM_DEFINED", subject=egm_id,
                 payload=payload, now=now)
    return egm, created

