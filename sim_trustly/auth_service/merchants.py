"""Merchants and their credentials: seeded from settings, added through the control API."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import delete
from sqlalchemy.orm import Session

from sim_trustly.auth_service.credentials import add_credential
from sim_trustly.models import (
    AuthLockout,
    Credential,
    Merchant,
    Payment,
    PaymentEvent,
    QrTokenRow,
)
from sim_trustly.settings import MerchantConfig
from simkit.db import Database
from simkit.errors import BadRequest
from simkit.settings import ConfigError


def upsert_merchant(session: Session, config: MerchantConfig, now: datetime) -> None:
    """Create or update a merchant and (re)store its credential."""
    session.merge(Merchant(
        id=config.merchant_id, name=config.name or config.merchant_id,
        token_lifetime_s=config.token_lifetime_s, expires_at_format=config.expires_at_format,
        created_at=now,
    ))
    session.flush()
    add_credential(session, config.merchant_id, config.access_id, config.access_key, now)


def add_merchant(db: Database, config: MerchantConfig, now: datetime) -> None:
    """The control API's entry: create or replace one merchant and its credential, in a
    transaction of its own."""
    with db.write() as session:
        upsert_merchant(session, config, now)


def seed_merchants(session: Session, merchants: Iterable[MerchantConfig], now: datetime) -> None:
    """Store the configured merchants (idempotent: start-up runs it every time)."""
    for config in merchants:
        upsert_merchant(session, config, now)


def reset_state(session: Session, merchants: Iterable[MerchantConfig], now: datetime) -> None:
    """Forget every token, lockout and merchant, then seed the configured merchants again."""
    for table in (PaymentEvent, Payment, QrTokenRow, AuthLockout, Credential, Merchant):
        session.execute(delete(table))
    seed_merchants(session, merchants, now)


def merchant_from_json(body: Any) -> MerchantConfig:
    """Validate a control-API merchant (`merchantId`, `accessId`, `accessKey`, options)."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    fields = {"merchantId": "merchant_id", "accessId": "access_id", "accessKey": "access_key"}
    values: dict[str, Any] = {}
    for wire, name in fields.items():
        if not isinstance(body.get(wire), str) or not body[wire]:
            raise BadRequest(f"{wire} must be a non-empty string", field=wire)
        values[name] = body[wire]
    lifetime = body.get("tokenLifetimeS")
    if lifetime is not None and (isinstance(lifetime, bool) or not isinstance(lifetime, int)
                                 or not 1 <= lifetime <= 86_400):
        raise BadRequest("tokenLifetimeS must be an integer from 1 to 86400")
    fmt = body.get("expiresAtFormat")
    if fmt not in (None, "iso", "epoch_ms"):
        raise BadRequest("expiresAtFormat must be iso or epoch_ms")
    try:
        return MerchantConfig(
            name=str(body.get("name") or values["merchant_id"]),
            token_lifetime_s=lifetime, expires_at_format=fmt, **values,
        )
    except ConfigError as exc:
        raise BadRequest(str(exc)) from exc
