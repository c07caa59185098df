"""sim_cms's settings: one frozen object, read once from TOML and `SCANPAY_*` variables.

TOML layout (all optional):

    [cms]
    casino_name = "Demo Casino"
    currency = "USD"
    time_zone = "America/Los_Angeles"
    day_start_hour = 6
    default_daily_limit = 100000     # minor units ($1,000.00)
    max_daily_limit = 1000000        # the cap no limit may exceed
    access_token_ttl_s = 300
    rotation_buffer_s = 30
    funding_grace_s = 3600           # a QR token may be funded this long after it expired
    client_lockout_threshold = 5     # failed client authentications within the window ...
    client_lockout_window_s = 60
    client_lockout_s = 60            # ... refuse the token endpoint (429) this long
    client_lockout_scope = "source"  # count per (client_id, caller address), or "client_id"

    [cms.trustly]                    # where the CMS gets its QR tokens
    base_url = "http://127.0.0.1:8710"
    merchant_id = "demo-merchant"
    access_id = "demo-access-id"
    access_key = "demo-access-key"

    [[cms.egms]]
    id = "EGM-011"
    name = "Buffalo Gold 11"
    credit_limit = 300000

    [[cms.clients]]                  # OAuth2 clients and the scopes each may be granted
    client_id = "tpas-client"
    client_secret = "tpas-secret"
    scopes = ["fundings", "limits:read"]   # the default: what TPAS needs (sim_cms.scopes)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sim_cms import scopes as cws_scopes
from simkit.money import parse_currency
from simkit.settings import ConfigError, env_flag, load_toml, require_type, section

DEFAULT_PORT = 8720


@dataclass(frozen=True)
class EgmConfig:
    """An EGM of the casino floor as configured (state IDLE, meter 0 when seeded)."""

    id: str
    name: str
    credit_limit: int = 500_000


@dataclass(frozen=True)
class ClientConfig:
    """An OAuth2 client allowed to call the CWS API, and the scopes it may be granted.

    Without `scopes` a client gets what TPAS needs (`scopes.TPAS_SCOPES`): changing limits
    or reaching the EGMs must be given explicitly.
    """

    client_id: str
    client_secret: str
    scopes: tuple[str, ...] = cws_scopes.TPAS_SCOPES

    def __post_init__(self) -> None:
        unknown = cws_scopes.unknown(self.scopes)
        if unknown:
            raise ConfigError(f"client {self.client_id!r}: unknown scope(s) {', '.join(unknown)}"
                              f" (known: {', '.join(cws_scopes.SCOPES)})")


@dataclass(frozen=True)
class TrustlyLink:
    """How the CMS reaches Trustly's QR Code API."""

    base_url: str = "http://127.0.0.1:8710"
    merchant_id: str = "demo-merchant"
    access_id: str = "demo-access-id"
    access_key: str = "demo-access-key"
    connect_timeout_s: float = 2.0
    read_timeout_s: float = 5.0


DEMO_EGMS = tuple(EgmConfig(id=f"EGM-{n:03d}", name=f"Demo Slot {n:03d}") for n in range(1, 11))
# TPAS's client. It also reaches the EGMs, because the demo's tools (`scanpay flow`, the load
# tests) play the EGM with it; it may not change limits.
DEMO_CLIENT = ClientConfig(client_id="tpas-client", client_secret="tpas-secret",  # noqa: S106
                           scopes=(*cws_scopes.TPAS_SCOPES, cws_scopes.EGMS))
# The casino's responsible-gaming desk: the one demo client that may set or lift a limit.
DEMO_DESK_CLIENT = ClientConfig(client_id="casino-desk",
                                client_secret="casino-desk-secret",  # noqa: S106
                                scopes=(cws_scopes.LIMITS_READ, cws_scopes.LIMITS_WRITE))
# Who failed client authentications are counted for: a client id from one caller address
# ("source", so a stranger guessing cannot lock TPAS out) or a client id from anywhere.
ClientLockoutScope = Literal["source", "client_id"]


@dataclass(frozen=True)
class CmsSettings:
    """Everything sim_cms needs to start; see the module docstring for the TOML names."""

    database_url: str
    casino_name: str = "Demo Casino"
    location_id: str | None = None
    currency: str = "USD"
    time_zone: str = "America/Los_Angeles"
    day_start_hour: int = 6
    default_daily_limit: int = 100_000
    max_daily_limit: int = 1_000_000
    access_token_ttl_s: int = 300
    rotation_buffer_s: int = 30
    egms: tuple[EgmConfig, ...] = DEMO_EGMS
    clients: tuple[ClientConfig, ...] = (DEMO_CLIENT, DEMO_DESK_CLIENT)
    trustly: TrustlyLink = TrustlyLink()
    admin_token: str | None = None
    controllable_clock: bool = False
    journal: bool | None = None
    max_body_bytes: int = 16 * 1024
    qr_retry_max_s: int = 60
    funding_grace_s: int = 3600
    client_lockout_threshold: int = 5
    client_lockout_window_s: int = 60
    client_lockout_s: int = 60
    client_lockout_scope: ClientLockoutScope = "source"

    def __post_init__(self) -> None:
        parse_currency(self.currency)
        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(f"time_zone {self.time_zone!r} is not a known IANA zone") from exc
        if not 0 <= self.day_start_hour <= 23:
            raise ConfigError("day_start_hour must be between 0 and 23")
        if self.default_daily_limit > self.max_daily_limit:
            raise ConfigError(
                f"default_daily_limit ({self.default_daily_limit}) is above the cap "
                f"max_daily_limit ({self.max_daily_limit})"
            )
        if self.funding_grace_s < 0:
            raise ConfigError("funding_grace_s must be zero or more seconds")
        if self.default_daily_limit < 0 or self.access_token_ttl_s < 1:
            raise ConfigError("limits and TTLs must be positive")
        if min(self.client_lockout_threshold, self.client_lockout_window_s,
               self.client_lockout_s) < 1:
            raise ConfigError("client_lockout_threshold, client_lockout_window_s and "
                              "client_lockout_s must be >= 1")
        if self.client_lockout_scope not in get_args(ClientLockoutScope):
            raise ConfigError("client_lockout_scope must be one of "
                              f"{', '.join(get_args(ClientLockoutScope))}")
        if self.admin_token is not None and len(self.admin_token) < 8:
            raise ConfigError("the admin token must be at least 8 characters")

    @property
    def zone(self) -> ZoneInfo:
        """The casino's time zone."""
        return ZoneInfo(self.time_zone)

    @property
    def control_enabled(self) -> bool:
        """The /_sim control API is served only when an admin token is configured."""
        return self.admin_token is not None

    @property
    def journal_enabled(self) -> bool:
        """Journal requests when asked to, and by default whenever the control API is on."""
        return self.control_enabled if self.journal is None else self.journal


def _egm(raw: Any, where: str) -> EgmConfig:
    item = require_type(raw, dict, where)
    egm_id = require_type(item.get("id"), str, f"{where}.id")
    return EgmConfig(
        id=egm_id, name=require_type(item.get("name", egm_id), str, f"{where}.name"),
        credit_limit=require_type(item.get("credit_limit", 500_000), int, f"{where}.credit_limit"),
    )


def _client(raw: Any, where: str) -> ClientConfig:
    item = require_type(raw, dict, where)
    client = ClientConfig(
        client_id=require_type(item.get("client_id"), str, f"{where}.client_id"),
        client_secret=require_type(item.get("client_secret"), str, f"{where}.client_secret"),
    )
    if "scopes" not in item:
        return client
    names = require_type(item["scopes"], list, f"{where}.scopes")
    return replace(client, scopes=tuple(
        require_type(name, str, f"{where}.scopes[{i}]") for i, name in enumerate(names)))


_SCALARS = (
    "casino_name", "location_id", "currency", "time_zone", "day_start_hour",
    "default_daily_limit", "max_daily_limit", "access_token_ttl_s", "rotation_buffer_s",
    "max_body_bytes", "journal", "qr_retry_max_s", "funding_grace_s",
    "client_lockout_threshold", "client_lockout_window_s", "client_lockout_s",
    "client_lockout_scope",
)


def load_cms_settings(
    environ: Mapping[str, str] | None = None,
    config_path: str | Path | None = None,
    **overrides: Any,
) -> CmsSettings:
    """Build settings from the config file (`SCANPAY_CONFIG`), environment and overrides."""
    env = os.environ if environ is None else environ
    path = config_path or env.get("SCANPAY_CONFIG") or None
    raw = section(load_toml(path), "cms")
    values: dict[str, Any] = {key: raw[key] for key in _SCALARS if key in raw}
    if "egms" in raw:
        values["egms"] = tuple(_egm(e, f"cms.egms[{i}]") for i, e in enumerate(raw["egms"]))
    if "clients" in raw:
        values["clients"] = tuple(
            _client(c, f"cms.clients[{i}]") for i, c in enumerate(raw["clients"])
        )
    if "trustly" in raw:
        link = require_type(raw["trustly"], dict, "cms.trustly")
        values["trustly"] = TrustlyLink(**link)
    values["database_url"] = env.get("SCANPAY_CMS_DATABASE_URL") or raw.get(
        "database_url", "sqlite:///data/cms.db"
    )
    if env.get("SCANPAY_ADMIN_TOKEN"):
        values["admin_token"] = env["SCANPAY_ADMIN_TOKEN"]
    values["controllable_clock"] = env_flag(env, "SCANPAY_CONTROLLABLE_CLOCK")
    if env.get("SCANPAY_CMS_TRUSTLY_URL"):  # where this CMS finds Trustly's QR Code API
        link = values.get("trustly", TrustlyLink())
        values["trustly"] = replace(link, base_url=env["SCANPAY_CMS_TRUSTLY_URL"])
    values.update(overrides)
    return CmsSettings(**values)
