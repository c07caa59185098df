"""Partner profiles: how TPAS reaches one merchant's CMS, validated once at start-up.

A profile says where the CMS is, how TPAS authenticates to it, how long TPAS waits for it,
how often TPAS retries a funding whose outcome it does not know, which paths the API uses,
and, for a CMS whose API differs from the reference one, which adapter class speaks it.

TOML (inside the sim_trustly config; see docs/partner-adapters.md for the full reference):

    [trustly.cms]                          # the default profile, merged over the built-in one
    base_url = "http://127.0.0.1:8720"

    [trustly.cms_profiles.acme-casino]     # one merchant's own profile, complete on its own
    base_url = "https://cms.acme.example"
    auth = { kind = "api_key", header = "X-Api-Key", key = "..." }

    [trustly.cms_profiles.other-casino]
    profile_file = "partners/other.toml"   # the same keys at the top level of that file

A merchant's profile never inherits the default profile's URL or credentials, so a secret
meant for one CMS is never sent to another.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from simkit.settings import ConfigError, load_toml, require_type

AuthKind = Literal["oauth2_client_credentials", "basic", "api_key"]
AUTH_KINDS: tuple[str, ...] = ("oauth2_client_credentials", "basic", "api_key")
ADAPTER_METHODS = ("get_limit", "post_funding", "get_funding")
CMS_URL_ENV = "SCANPAY_TRUSTLY_CMS_URL"
# What each auth kind needs, by TOML key.
_AUTH_NEEDS: dict[str, tuple[str, ...]] = {
    "oauth2_client_credentials": ("client_id", "client_secret"),
    "basic": ("username", "password"),
    "api_key": ("header", "key"),
}
_PROFILE_KEYS = frozenset({"base_url", "auth", "connect_timeout_s", "read_timeout_s",
                           "retries", "paths", "adapter"})
_AUTH_KEYS = frozenset({"kind", "client_id", "client_secret", "username", "password",
                        "header", "key"})
_RETRY_KEYS = frozenset({"max_attempts", "backoff_base_s", "backoff_cap_s"})
_PATH_KEYS = frozenset({"token", "limits", "fundings", "funding_status"})


@dataclass(frozen=True)
class AuthConfig:
    """How TPAS authenticates to a CMS; secrets are left out of `repr` so logs never show them."""

    kind: AuthKind
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    username: str = ""
    password: str = field(default="", repr=False)
    header: str = "X-API-Key"
    key: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if self.kind not in AUTH_KINDS:
            raise ConfigError(f"unknown auth kind {self.kind!r}; use one of {list(AUTH_KINDS)}")
        missing = [name for name in _AUTH_NEEDS[self.kind] if not getattr(self, name)]
        if missing:
            raise ConfigError(f"auth kind {self.kind} needs {' and '.join(missing)} "
                              f"(missing or empty)")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently TPAS repeats a funding whose outcome it does not know."""

    max_attempts: int = 5
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 8.0

    def __post_init__(self) -> None:
        if not 1 <= self.max_attempts <= 100:
            raise ConfigError("retries.max_attempts must be between 1 and 100")
        if not 0 <= self.backoff_base_s <= self.backoff_cap_s <= 3600:
            raise ConfigError("retries need 0 <= backoff_base_s <= backoff_cap_s <= 3600")

    def delay_s(self, attempt: int) -> float:
        """Exponential backoff before attempt `attempt + 1` (attempt counts from 1), capped."""
        return float(min(self.backoff_cap_s, self.backoff_base_s * 2 ** max(0, attempt - 1)))


@dataclass(frozen=True)
class CmsPaths:
    """The CMS's paths, relative to the base URL; `{ubai}` and `{transactionId}` are filled in."""

    token: str = "/cws/v1/oauth/token"  # noqa: S105 - a path, not a secret
    limits: str = "/cws/v1/limits/{ubai}"
    fundings: str = "/cws/v1/fundings"
    funding_status: str = "/cws/v1/fundings/{transactionId}"

    def __post_init__(self) -> None:
        for name in ("token", "limits", "fundings", "funding_status"):
            if not getattr(self, name).startswith("/"):
                raise ConfigError(f"paths.{name} must start with '/'")
        if "{ubai}" not in self.limits:
            raise ConfigError("paths.limits must contain {ubai}")
        if "{transactionId}" not in self.funding_status:
            raise ConfigError("paths.funding_status must contain {transactionId}")

    def limit(self, ubai: str) -> str:
        """The limits path of one UBAI (percent-encoded, so no value can change the path)."""
        return self.limits.replace("{ubai}", quote(ubai, safe=""))

    def status(self, transaction_id: str) -> str:
        """The status-inquiry path of one transactionId (percent-encoded)."""
        return self.funding_status.replace("{transactionId}", quote(transaction_id, safe=""))


@dataclass(frozen=True)
class CmsProfile:
    """Everything TPAS needs to talk to one CMS; hashable, so adapters can be cached by it."""

    name: str
    base_url: str
    auth: AuthConfig
    connect_timeout_s: float = 2.0
    read_timeout_s: float = 5.0
    retries: RetryPolicy = RetryPolicy()
    paths: CmsPaths = CmsPaths()
    adapter: str | None = None  # "module:Class"; None means the reference API adapter

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"base_url {self.base_url!r} must be an http(s) URL with a host")
        for name in ("connect_timeout_s", "read_timeout_s"):
            if not 0 < getattr(self, name) <= 600:
                raise ConfigError(f"{name} must be more than 0 and at most 600 seconds")
        if self.adapter is not None:
            load_adapter_class(self.adapter)  # fail at start-up, not at the first payment


DEFAULT_CMS_PROFILE = CmsProfile(
    name="default", base_url="http://127.0.0.1:8720",
    auth=AuthConfig(kind="oauth2_client_credentials", client_id="tpas-client",
                    client_secret="tpas-secret"),  # noqa: S106 - the published demo client
)


def load_adapter_class(spec: str) -> type:
    """Import the adapter class named `module:Class`, or raise a ConfigError that says why not.

    The class must be a class, implement the CmsAdapter methods, and take
    `(profile, transport)` in its constructor.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"adapter {spec!r} must look like 'package.module:ClassName'")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:  # any failure to import is a configuration error here
        raise ConfigError(f"adapter {spec!r}: module {module_name!r} cannot be imported "
                          f"({type(exc).__name__}: {exc})") from exc
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ConfigError(f"adapter {spec!r}: {module_name} has no attribute {attr!r}")
        target = getattr(target, part)
    return _checked_adapter_class(spec, target)


def _checked_adapter_class(spec: str, target: Any) -> type:
    if not inspect.isclass(target):
        raise ConfigError(f"adapter {spec!r} is not a class ({type(target).__name__})")
    missing = [m for m in ADAPTER_METHODS if not callable(getattr(target, m, None))]
    if missing:
        raise ConfigError(f"adapter {spec!r} lacks the CmsAdapter method(s) {missing}")
    try:
        inspect.signature(target).bind(None, None)
    except TypeError as exc:
        raise ConfigError(f"adapter {spec!r} must be constructible as "
                          f"Class(profile, transport): {exc}") from exc
    except ValueError:  # no signature to inspect (a C type): let construction tell
        pass
    return target


def _table(raw: Any, allowed: frozenset[str], where: str) -> dict[str, Any]:
    table: dict[str, Any] = require_type(raw, dict, where)
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where} has unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    return table


def _seconds(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where} must be a number of seconds")
    return float(value)


def _auth(raw: Any, where: str) -> AuthConfig:
    table = _table(raw, _AUTH_KEYS, where)
    values = {key: require_type(value, str, f"{where}.{key}") for key, value in table.items()}
    values.setdefault("kind", "oauth2_client_credentials")
    try:
        return AuthConfig(**values)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def parse_auth(raw: Any, where: str) -> AuthConfig:
    """An `auth` table on its own (the harness's target file names a second one)."""
    return _auth(raw, where)


def _retries(raw: Any, where: str) -> RetryPolicy:
    table = _table(raw, _RETRY_KEYS, where)
    values: dict[str, Any] = {}
    if "max_attempts" in table:
        values["max_attempts"] = require_type(table["max_attempts"], int, f"{where}.max_attempts")
    for key in ("backoff_base_s", "backoff_cap_s"):
        if key in table:
            values[key] = _seconds(table[key], f"{where}.{key}")
    try:
        return RetryPolicy(**values)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _paths(raw: Any, where: str, start: CmsPaths) -> CmsPaths:
    table = _table(raw, _PATH_KEYS, where)
    values = {key: require_type(value, str, f"{where}.{key}") for key, value in table.items()}
    try:
        return replace(start, **values)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _profile_table(raw: Any, where: str, base: Path) -> dict[str, Any]:
    """The profile's keys: the inline table itself, or the TOML file it points to."""
    table = require_type(raw, dict, where)
    if "profile_file" not in table:
        return _table(table, _PROFILE_KEYS, where)
    if set(table) != {"profile_file"}:
        raise ConfigError(f"{where}: profile_file must stand alone (put the rest in the file)")
    name = require_type(table["profile_file"], str, f"{where}.profile_file")
    path = base / name
    return _table(load_toml(path), _PROFILE_KEYS, f"{where} (from {path})")


def parse_profile(
    raw: Any, name: str, where: str, base: Path, *, start: CmsProfile | None = None,
) -> CmsProfile:
    """Parse one profile table (merged over `start` when given) and validate it whole.

    Without `start` the table must name `base_url` and `auth` itself. Every problem is a
    ConfigError that names the TOML table it came from.
    """
    table = _profile_table(raw, where, base)
    if start is None:
        for key in ("base_url", "auth"):
            if key not in table:
                raise ConfigError(f"{where} is missing {key}")
    values: dict[str, Any] = {}
    if "base_url" in table:
        values["base_url"] = require_type(table["base_url"], str, f"{where}.base_url")
    if "auth" in table:
        values["auth"] = _auth(table["auth"], f"{where}.auth")
    for key in ("connect_timeout_s", "read_timeout_s"):
        if key in table:
            values[key] = _seconds(table[key], f"{where}.{key}")
    if "retries" in table:
        values["retries"] = _retries(table["retries"], f"{where}.retries")
    paths = start.paths if start else CmsPaths()
    values["paths"] = _paths(table.get("paths", {}), f"{where}.paths", paths)
    if "adapter" in table:
        values["adapter"] = require_type(table["adapter"], str, f"{where}.adapter")
    try:
        return replace(start, name=name, **values) if start else CmsProfile(name=name, **values)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def cms_profile_values(
    raw: Mapping[str, Any], env: Mapping[str, str], base: Path,
) -> dict[str, Any]:
    """The `cms` and `cms_profiles` settings from the `[trustly]` table and the environment.

    `SCANPAY_TRUSTLY_CMS_URL` replaces the default profile's base URL (the serve command
    points TPAS at the CMS it started this way).
    """
    default = DEFAULT_CMS_PROFILE
    if "cms" in raw:
        default = parse_profile(raw["cms"], "default", "trustly.cms", base, start=default)
    if env.get(CMS_URL_ENV):
        try:
            default = replace(default, base_url=env[CMS_URL_ENV])
        except ConfigError as exc:
            raise ConfigError(f"{CMS_URL_ENV}: {exc}") from None
    values: dict[str, Any] = {"cms": default}
    if "cms_profiles" in raw:
        tables = require_type(raw["cms_profiles"], dict, "trustly.cms_profiles")
        values["cms_profiles"] = {
            merchant: parse_profile(table, merchant, f"trustly.cms_profiles.{merchant}", base)
            for merchant, table in tables.items()
        }
    return values
