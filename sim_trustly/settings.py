"""sim_trustly's settings: one frozen object, read once from TOML and `SCANPAY_*` variables.

TOML layout (all optional):

    [trustly]
    public_base_url = "http://127.0.0.1:8710"
    issuer = "scanpay-sim-trustly"
    token_lifetime_s = 300
    expires_at_format = "iso"        # or "epoch_ms"
    lockout_threshold = 5            # failed authentications within lockout_window_s ...
    lockout_window_s = 60
    lockout_s = 60                   # ... lock the caller out this long
    lockout_scope = "source"         # or "access_id"; env SCANPAY_TRUSTLY_LOCKOUT_SCOPE
    tpas_recovery_interval_s = 5     # how often the recovery sweep looks for open payments
    tpas_recovery_concurrency = 4    # its threads per process; one CMS per thread at a time
    tpas_release_qr_on_bank_refusal = true  # a refused payment hands its QR back; env
                                     # SCANPAY_TRUSTLY_RELEASE_QR_ON_BANK_REFUSAL=false keeps it

    [[trustly.merchants]]
    merchant_id = "demo-merchant"
    access_id = "demo-access-id"
    access_key = "demo-access-key"
    token_lifetime_s = 120           # per-merchant override

    [[trustly.signing_keys]]         # none: a random HS256 key is made and kept in the database
    kid = "2026-11"
    secret = "at least 32 bytes of secret ......"
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from sim_trustly.cms_client.partner_profiles import (
    DEFAULT_CMS_PROFILE,
    CmsProfile,
    cms_profile_values,
)
from simkit.settings import ConfigError, env_flag, load_toml, require_type, section

# Who a lockout stops: an accessId from one source address, or an accessId from anywhere.
LockoutScope = Literal["source", "access_id"]

ExpiresAtFormat = Literal["iso", "epoch_ms"]
DEFAULT_PORT = 8710
TPAS_KEYS = (
    "tpas_lease_s", "tpas_stale_after_s", "tpas_give_up_after_s", "tpas_recovery_interval_s",
    "tpas_recovery_concurrency", "tpas_currency", "tpas_release_qr_on_bank_refusal",
)
RELEASE_QR_ENV = "SCANPAY_TRUSTLY_RELEASE_QR_ON_BANK_REFUSAL"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
MAX_LEEWAY_S = 30
MAX_RECOVERY_THREADS = 64


@dataclass(frozen=True)
class MerchantConfig:
    """A merchant and the one credential it is seeded with."""

    merchant_id: str
    access_id: str
    access_key: str
    name: str = ""
    token_lifetime_s: int | None = None
    expires_at_format: ExpiresAtFormat | None = None


@dataclass(frozen=True)
class SigningKeyConfig:
    """A signing key named in configuration (HS256 secret or ES256 PEM file)."""

    kid: str
    alg: Literal["HS256", "ES256"]
    secret: bytes


DEMO_MERCHANT = MerchantConfig(
    merchant_id="demo-merchant",
    access_id="demo-access-id",
    access_key="demo-access-key",  # published: docs/architecture.md §20 (Fixed points)
    name="Demo Casino",
)


@dataclass(frozen=True)
class TrustlySettings:
    """Everything sim_trustly needs to start; see the module docstring for the TOML names."""

    database_url: str
    public_base_url: str = f"http://127.0.0.1:{DEFAULT_PORT}"
    issuer: str = "scanpay-sim-trustly"
    token_lifetime_s: int = 300
    expires_at_format: ExpiresAtFormat = "iso"
    leeway_s: int = 30
    merchants: tuple[MerchantConfig, ...] = (DEMO_MERCHANT,)
    signing_keys: tuple[SigningKeyConfig, ...] = ()
    signing_alg: Literal["HS256", "ES256"] = "HS256"
    admin_token: str | None = None
    controllable_clock: bool = False
    journal: bool | None = None
    max_body_bytes: int = 16 * 1024
    lockout_threshold: int = 5
    lockout_window_s: int = 60
    lockout_s: int = 60
    # Who a lockout stops: the accessId from the failing source address ("source"), or the
    # accessId from everywhere ("access_id"). See docs/fidelity.md.
    lockout_scope: LockoutScope = "source"
    # TPAS tuning (funding attempts and backoff are per CMS: the partner profile's retries):
    # how long a worker holds a payment, when a CREATED one is stale, when to give up, sweep.
    tpas_lease_s: int = 60
    tpas_stale_after_s: int = 120
    tpas_give_up_after_s: int = 900
    tpas_recovery_interval_s: float = 5.0
    # Threads per process that carry open payments on in the background, one CMS per thread
    # at a time (`sim_trustly.tpas.recovery`): a dead CMS holds one, the others keep going.
    tpas_recovery_concurrency: int = 4
    tpas_currency: str = "USD"
    # When the bank refuses a payment (nothing reached the CMS), hand its QR code's claim
    # back so the code the EGM still shows can be paid again; False keeps the code used, as
    # a claim always did before. See docs/fidelity.md, "A QR code after a bank refusal".
    tpas_release_qr_on_bank_refusal: bool = True
    extra: Mapping[str, Any] = field(default_factory=dict)
    cms: CmsProfile = DEFAULT_CMS_PROFILE  # the CMS of every merchant without its own profile
    cms_profiles: Mapping[str, CmsProfile] = field(default_factory=dict)  # by merchant id

    def __post_init__(self) -> None:
        if not 1 <= self.token_lifetime_s <= 86_400:
            raise ConfigError("token_lifetime_s must be between 1 and 86400 seconds")
        if not 0 <= self.leeway_s <= MAX_LEEWAY_S:
            raise ConfigError(f"leeway_s must be between 0 and {MAX_LEEWAY_S} seconds")
        if self.admin_token is not None and len(self.admin_token) < 8:
            raise ConfigError("the admin token must be at least 8 characters")
        if self.lockout_scope not in get_args(LockoutScope):
            raise ConfigError(f"lockout_scope must be one of {', '.join(get_args(LockoutScope))}")
        if min(self.lockout_threshold, self.lockout_window_s, self.lockout_s) < 1:
            raise ConfigError("lockout_threshold, lockout_window_s, lockout_s must be >= 1")
        if min(self.tpas_lease_s, self.tpas_stale_after_s, self.tpas_give_up_after_s) < 1:
            raise ConfigError("tpas_lease_s, tpas_stale_after_s, tpas_give_up_after_s must be >= 1")
        if not isinstance(self.tpas_release_qr_on_bank_refusal, bool):
            raise ConfigError("tpas_release_qr_on_bank_refusal must be true or false")
        if not 1 <= self.tpas_recovery_concurrency <= MAX_RECOVERY_THREADS:
            raise ConfigError(f"tpas_recovery_concurrency must be between 1 and "
                              f"{MAX_RECOVERY_THREADS}")

    @property
    def control_enabled(self) -> bool:
        """The /_sim control API is served only when an admin token is configured."""
        return self.admin_token is not None

    @property
    def journal_enabled(self) -> bool:
        """Journal requests when asked to, and by default whenever the control API is on."""
        return self.control_enabled if self.journal is None else self.journal


def _merchant(raw: Any, where: str) -> MerchantConfig:
    item = require_type(raw, dict, where)
    try:
        return MerchantConfig(
            merchant_id=require_type(item["merchant_id"], str, f"{where}.merchant_id"),
            access_id=require_type(item["access_id"], str, f"{where}.access_id"),
            access_key=require_type(item["access_key"], str, f"{where}.access_key"),
            name=require_type(item.get("name", item["merchant_id"]), str, f"{where}.name"),
            token_lifetime_s=item.get("token_lifetime_s"),
            expires_at_format=item.get("expires_at_format"),
        )
    except KeyError as exc:
        raise ConfigError(f"{where} is missing {exc.args[0]}") from exc


def _signing_key(raw: Any, where: str, base: Path) -> SigningKeyConfig:
    item = require_type(raw, dict, where)
    kid = require_type(item.get("kid"), str, f"{where}.kid")
    alg = item.get("alg", "HS256")
    if alg == "HS256":
        secret = require_type(item.get("secret"), str, f"{where}.secret").encode()
    elif alg == "ES256":
        pem_name = require_type(item.get("private_key_file"), str, f"{where}.private_key_file")
        secret = (base / pem_name).read_bytes()
    else:
        raise ConfigError(f"{where}.alg must be HS256 or ES256")
    return SigningKeyConfig(kid=kid, alg=alg, secret=secret)


def _switch(raw: str, name: str) -> bool:
    """An on/off variable; anything else is refused rather than read as off."""
    folded = raw.strip().lower()
    if folded not in _TRUE + _FALSE:
        raise ConfigError(f"{name} must be one of {', '.join(_TRUE + _FALSE)}, not {raw!r}")
    return folded in _TRUE


def load_trustly_settings(
    environ: Mapping[str, str] | None = None,
    config_path: str | Path | None = None,
    **overrides: Any,
) -> TrustlySettings:
    """Build settings from the config file (`SCANPAY_CONFIG`), environment and overrides."""
    env = os.environ if environ is None else environ
    path = config_path or env.get("SCANPAY_CONFIG") or None
    raw = section(load_toml(path), "trustly")
    base = Path(path).parent if path else Path.cwd()
    values: dict[str, Any] = {
        key: raw[key] for key in (
            "public_base_url", "issuer", "token_lifetime_s", "expires_at_format", "leeway_s",
            "max_body_bytes", "lockout_threshold", "lockout_window_s", "lockout_s",
            "lockout_scope", "journal",
            *TPAS_KEYS,
        ) if key in raw
    }
    if "merchants" in raw:
        values["merchants"] = tuple(
            _merchant(m, f"trustly.merchants[{i}]") for i, m in enumerate(raw["merchants"])
        )
    if "signing_keys" in raw:
        values["signing_keys"] = tuple(
            _signing_key(k, f"trustly.signing_keys[{i}]", base)
            for i, k in enumerate(raw["signing_keys"])
        )
    values["database_url"] = env.get("SCANPAY_TRUSTLY_DATABASE_URL") or raw.get(
        "database_url", "sqlite:///data/trustly.db"
    )
    if env.get("SCANPAY_ADMIN_TOKEN"):
        values["admin_token"] = env["SCANPAY_ADMIN_TOKEN"]
    values["controllable_clock"] = env_flag(env, "SCANPAY_CONTROLLABLE_CLOCK")
    if env.get("SCANPAY_TRUSTLY_LOCKOUT_SCOPE"):
        values["lockout_scope"] = env["SCANPAY_TRUSTLY_LOCKOUT_SCOPE"]
    if env.get(RELEASE_QR_ENV):
        values["tpas_release_qr_on_bank_refusal"] = _switch(env[RELEASE_QR_ENV], RELEASE_QR_ENV)
    if env.get("SCANPAY_TRUSTLY_PUBLIC_URL"):
        values["public_base_url"] = env["SCANPAY_TRUSTLY_PUBLIC_URL"]
    values.update(cms_profile_values(raw, env, base))  # [trustly.cms*], SCANPAY_TRUSTLY_CMS_URL
    values.update(overrides)
    return TrustlySettings(**values)
