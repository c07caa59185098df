"""The target TOML of `scanpay certify --target FILE`: parsed and validated whole, nothing started.

Two kinds (every key, its type and default: `TARGET_KEYS` below, published as the key table
of docs/partner-contract.md by `python -m harness.contract.doc --write`; an example in
examples/partner-target.toml):

    kind = "partner"                      # default; the harness plays Trustly and the player
    name = "Acme CMS 4.2"

    [cms]                                 # a sim_trustly partner profile (same keys, same
    base_url = "http://127.0.0.1:9000"    # parser: sim_trustly.partner_profiles), plus:
    auth = { kind = "oauth2_client_credentials", client_id = "tpas", client_secret = "..." }
    egm_ids = ["EGM-001", "EGM-002"]
    limits_auth = { client_id = "casino-desk", client_secret = "..." }  # optional

    [cms.egm]                             # how the harness, as the EGM, reaches the CMS
    read = "/cws/v1/egms/{egm_id}"        # JSON with creditMeter, creditLimit, state
    acquire_qr = "/cws/v1/egms/{egm_id}/qr"   # optional: POST makes the CMS get a QR now
    qr_png = "/egm/{egm_id}/qr.png"       # the QR the EGM shows, as a PNG
    screen = "/egm/{egm_id}"              # optional: the screen page

    [control]                             # optional: the CMS's test hooks
    base_url = "http://127.0.0.1:9000"    # default: cms.base_url
    admin_token = "..."
    hooks = ["egm-state", "clock", "faults", "journal", "reset", "fundings", "qr-rotate"]

    [trustly]                             # the harness's own sim_trustly
    host = "127.0.0.1"
    port = 8710
    merchant_id = "demo-merchant"         # the credentials the partner CMS uses for QR tokens
    access_id = "demo-access-id"
    access_key = "demo-access-key"

    kind = "local"                        # sims already running (`scanpay serve`)
    trustly_url = "http://127.0.0.1:8710"
    cms_url = "http://127.0.0.1:8720"
    admin_token = "..."

Every problem is a `ConfigError` naming the file and the key, so `certify` can exit 2 with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from sim_cms.settings import DEMO_DESK_CLIENT
from sim_trustly.cms_client.partner_profiles import (
    DEFAULT_CMS_PROFILE,
    AuthConfig,
    CmsProfile,
    parse_auth,
    parse_profile,
)
from sim_trustly.settings import TrustlySettings
from simkit.settings import ConfigError, load_toml, require_type

TargetKind = Literal["embedded", "local", "partner"]
# Every hook a scenario may need; the embedded and local targets offer all of them.
HOOKS: tuple[str, ...] = ("egm-state", "clock", "faults", "journal", "reset", "fundings",
                          "qr-rotate")
HOOK_MEANINGS: dict[str, str] = {
    "egm-state": "POST {control}/_sim/egms/{id} {\"state\": ...} changes an EGM's state",
    "clock": "GET/POST {control}/_sim/clock reads and moves the CMS's clock ({\"advance\": s})",
    "faults": "POST/DELETE {control}/_sim/faults declares faults (e.g. apply_then_drop)",
    "journal": "GET {control}/_sim/journal lists the CMS's requests and responses",
    "reset": "POST {control}/_sim/reset forgets the CMS's data (the catalogue never needs it)",
    "fundings": "GET {control}/_sim/fundings lists decided fundings; with it REC-002 also "
                "checks the CMS's ledger balances (GET {control}/_sim/state)",
    "qr-rotate": "POST {control}/_sim/qr/rotate runs one QR rotation pass now",
}
# The control API calls of each hook (docs/api/partner-hooks.openapi.json documents each).
# The ledger dump (GET /_sim/state) is optional within `fundings` (a 404 is fine); GET
# /_sim/faults is the preflight's probe of `faults`.
HOOK_OPERATIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "egm-state": (("POST", "/_sim/egms/{egmId}"),),
    "clock": (("GET", "/_sim/clock"), ("POST", "/_sim/clock")),
    "faults": (("GET", "/_sim/faults"), ("POST", "/_sim/faults"), ("DELETE", "/_sim/faults")),
    "journal": (("GET", "/_sim/journal"),),
    "reset": (("POST", "/_sim/reset"),),
    "fundings": (("GET", "/_sim/fundings"), ("GET", "/_sim/state")),
    "qr-rotate": (("POST", "/_sim/qr/rotate"),),
}
DEMO_EGM_IDS: tuple[str, ...] = tuple(f"EGM-{n:03d}" for n in range(1, 11))
# The reference CMS's demo client that may change daily limits (TPAS's may not): what the
# harness changes limits with on the embedded and local targets.
DEMO_LIMITS_AUTH = AuthConfig(kind="oauth2_client_credentials",
                              client_id=DEMO_DESK_CLIENT.client_id,
                              client_secret=DEMO_DESK_CLIENT.client_secret)


@dataclass(frozen=True)
class EgmPaths:
    """Where the harness, as the EGM, reads its meter and its QR (`{egm_id}` filled in)."""

    read: str = "/cws/v1/egms/{egm_id}"
    acquire_qr: str | None = "/cws/v1/egms/{egm_id}/qr"
    qr_png: str | None = "/egm/{egm_id}/qr.png"
    screen: str | None = "/egm/{egm_id}"

    def __post_init__(self) -> None:
        if self.acquire_qr is None and self.qr_png is None:
            raise ConfigError("cms.egm needs acquire_qr or qr_png: the harness must see a QR")
        for name in ("read", "acquire_qr", "qr_png", "screen"):
            value = getattr(self, name)
            if value is not None and (not value.startswith("/") or "{egm_id}" not in value):
                raise ConfigError(f"cms.egm.{name} must start with '/' and contain {{egm_id}}")

    def of(self, template: str, egm_id: str) -> str:
        """A path with the EGM's id in it."""
        return template.replace("{egm_id}", egm_id)


@dataclass(frozen=True)
class ControlConfig:
    """The CMS's control API: where, its admin token, and which hooks it offers."""

    base_url: str
    admin_token: str = field(repr=False)
    hooks: frozenset[str]


@dataclass(frozen=True)
class MerchantCredentials:
    """The merchant the CMS asks Trustly for QR tokens as (the harness's Trustly seeds it)."""

    merchant_id: str = "demo-merchant"
    access_id: str = "demo-access-id"
    access_key: str = field(default="demo-access-key", repr=False)
    name: str = "Certification Casino"
    token_lifetime_s: int | None = None


@dataclass(frozen=True)
class TrustlyListen:
    """Where the harness's own sim_trustly listens, so the partner CMS can reach it."""

    host: str = "127.0.0.1"
    port: int = 8710
    public_url: str | None = None

    @property
    def base_url(self) -> str:
        """The base of every QR url: the public URL, else http://host:port."""
        return self.public_url or f"http://{self.host}:{self.port}"


@dataclass(frozen=True)
class TargetSpec:
    """What is under test, as configured; `harness.targets.open_target` brings it up."""

    kind: TargetKind
    name: str
    egm_ids: tuple[str, ...] = DEMO_EGM_IDS
    cms_profile: CmsProfile = DEFAULT_CMS_PROFILE
    egm_paths: EgmPaths = EgmPaths()
    control: ControlConfig | None = None
    merchant: MerchantCredentials = MerchantCredentials()
    trustly: TrustlyListen = TrustlyListen()
    trustly_url: str | None = None  # local: the running sim_trustly
    admin_token: str | None = field(default=None, repr=False)  # local: both sims' token
    source: Path | None = None
    cms_limits_auth: AuthConfig | None = None  # partner: who changes limits (None: `auth`)


@dataclass(frozen=True)
class KeyDoc:
    """One key of a target file, as the contract documents it.

    `table` is the TOML table ("" for the top level); `kinds` the target kinds that take the
    key. The parser's lists of allowed keys are built from these records, so a key cannot be
    accepted without being documented, nor documented without being accepted.
    """

    table: str
    key: str
    type: str
    default: str
    description: str
    kinds: tuple[str, ...] = ("partner",)

    @property
    def dotted(self) -> str:
        """`table.key` (just `key` at the top level)."""
        return f"{self.table}.{self.key}" if self.table else self.key


def _shown(value: object) -> str:
    """A default as the key table shows it (TOML-ish: strings quoted, None as 'none')."""
    if value is None:
        return "none"
    return f'"{value}"' if isinstance(value, str) else str(value)


def _trustly_default(name: str) -> object:
    """A sim_trustly setting's default (what the harness's Trustly uses when not told)."""
    return next(item.default for item in fields(TrustlySettings) if item.name == name)


_EGM = EgmPaths()
_MERCHANT = MerchantCredentials()
_LISTEN = TrustlyListen()
REQUIRED = "required"
TARGET_KEYS: tuple[KeyDoc, ...] = (
    KeyDoc("", "kind", "string", '"partner"', '`"partner"` (a partner\'s CMS) or `"local"` '
           "(sims already running, `scanpay serve`)", ("partner", "local")),
    KeyDoc("", "name", "string", "the file's name without .toml", "shown in the reports",
           ("partner", "local")),
    KeyDoc("", "cms", "table", REQUIRED, "the partner's CMS: a partner profile (the `[cms]` "
           "keys below) plus `egm_ids` and `[cms.egm]`"),
    KeyDoc("", "control", "table", "none (no hooks)", "the CMS's control API; leave it out "
           "when the CMS offers no hooks"),
    KeyDoc("", "trustly", "table", "all defaults", "the harness's own sim_trustly: where it "
           "listens and the merchant it seeds for the CMS"),
    KeyDoc("", "trustly_url", "string (http(s) URL)", REQUIRED,
           "local: the running sim_trustly's base URL", ("local",)),
    KeyDoc("", "cms_url", "string (http(s) URL)", REQUIRED,
           "local: the running sim_cms's base URL", ("local",)),
    KeyDoc("", "admin_token", "string", REQUIRED,
           "local: both sims' admin token (`scanpay serve --admin-token`)", ("local",)),
    KeyDoc("", "egm_ids", "list of strings",
           f"{_shown(DEMO_EGM_IDS[0])} .. {_shown(DEMO_EGM_IDS[-1])} (the demo casino)",
           "local: the EGMs the harness may fund", ("local",)),
    KeyDoc("cms", "egm_ids", "list of strings (non-empty, distinct)", REQUIRED,
           "the EGMs the harness may fund; scenarios take them in turn and judge meter "
           "deltas, so they may be in use by others"),
    KeyDoc("cms", "egm", "table", "all defaults", "how the harness, as the EGM, reaches the "
           "CMS (the `[cms.egm]` keys below)"),
    KeyDoc("cms", "limits_auth", "table (the keys of `auth`)", "`auth`",
           "the credentials the harness changes daily limits with (PUT, PATCH, DELETE); "
           "name the casino's client here when TPAS's client may not change them"),
    KeyDoc("cms.egm", "read", "string (path with {egm_id})", _shown(_EGM.read),
           "GET: the EGM as JSON with `creditMeter`, `creditLimit`, `state`, `currency`"),
    KeyDoc("cms.egm", "acquire_qr", "string (path with {egm_id})", _shown(_EGM.acquire_qr)
           + ' (none when only qr_png is given)', "POST: the CMS gets a fresh QR from Trustly "
           "now, shows it on the EGM and answers its `url` (and `qrTokenId`, `expiresAt`, "
           "`rotatesAt`); without it the QR is read from `qr_png`"),
    KeyDoc("cms.egm", "qr_png", "string (path with {egm_id})", _shown(_EGM.qr_png),
           "GET: the QR the EGM shows now, as a PNG (the rotation and QR scenarios decode it)"),
    KeyDoc("cms.egm", "screen", "string (path with {egm_id})", _shown(_EGM.screen),
           "GET: the EGM's screen page (informative: not called by the catalogue)"),
    KeyDoc("control", "base_url", "string (http(s) URL)", "cms.base_url",
           "where the control API is served"),
    KeyDoc("control", "admin_token", "string", "required when hooks are listed",
           "sent as `Authorization: Bearer <admin_token>` on every control call"),
    KeyDoc("control", "hooks", "list of strings", "[] (none)",
           "the hooks the CMS offers, among " + ", ".join(f"`{hook}`" for hook in HOOKS)),
    KeyDoc("trustly", "host", "string", _shown(_LISTEN.host),
           "the interface the harness's sim_trustly listens on"),
    KeyDoc("trustly", "port", "integer (1..65535)", _shown(_LISTEN.port),
           "its port (must be free)"),
    KeyDoc("trustly", "public_url", "string (http(s) URL)", "http://<host>:<port>",
           "the base of every QR url, when the CMS and phones reach the harness another way"),
    KeyDoc("trustly", "merchant_id", "string", _shown(_MERCHANT.merchant_id),
           "the merchantId the CMS sends with its QR token requests"),
    KeyDoc("trustly", "access_id", "string", _shown(_MERCHANT.access_id),
           "the CMS's Basic user for the QR Code API"),
    KeyDoc("trustly", "access_key", "string", _shown(_MERCHANT.access_key),
           "the CMS's Basic password for the QR Code API"),
    KeyDoc("trustly", "merchant_name", "string", _shown(_MERCHANT.name),
           "the casino name the player's page shows"),
    KeyDoc("trustly", "token_lifetime_s", "integer (60..86400)",
           f"{_trustly_default('token_lifetime_s')} (sim_trustly's default)",
           "the lifetime of the QR tokens the CMS gets (seconds)"),
)


def keys_of(table: str, kind: str = "partner") -> frozenset[str]:
    """The keys a table of a `kind` target file accepts (from `TARGET_KEYS`)."""
    return frozenset(doc.key for doc in TARGET_KEYS if doc.table == table and kind in doc.kinds)


_TOP_KEYS = {kind: keys_of("", kind) for kind in ("partner", "local")}
_CMS_EXTRA_KEYS = keys_of("cms")
_EGM_KEYS = keys_of("cms.egm")
_CONTROL_KEYS = keys_of("control")
_TRUSTLY_KEYS = keys_of("trustly")


def embedded_spec() -> TargetSpec:
    """Both sims in this process (the default target)."""
    return TargetSpec(kind="embedded", name="embedded")


def local_spec(trustly_url: str, cms_url: str, admin_token: str,
               egm_ids: tuple[str, ...] = DEMO_EGM_IDS, name: str = "local") -> TargetSpec:
    """Both sims already running (e.g. `scanpay serve --admin-token T`), by base URL."""
    for where, url in (("trustly_url", trustly_url), ("cms_url", cms_url)):
        _check_url(url, where)
    if not egm_ids:
        raise ConfigError("egm_ids must name at least one EGM")
    cms_url = cms_url.rstrip("/")
    profile = CmsProfile(name="default", base_url=cms_url, auth=DEFAULT_CMS_PROFILE.auth)
    return TargetSpec(kind="local", name=name, egm_ids=egm_ids, cms_profile=profile,
                      trustly_url=trustly_url.rstrip("/"), admin_token=admin_token,
                      control=ControlConfig(cms_url, admin_token, frozenset(HOOKS)))


def load_target(path: Path | None) -> TargetSpec:
    """The target of a run: embedded without a file, else the file's local or partner target."""
    if path is None:
        return embedded_spec()
    raw = load_toml(path)
    where = str(path)
    kind = raw.get("kind", "partner")
    if kind not in _TOP_KEYS:
        raise ConfigError(f"{where}: kind must be 'partner' or 'local', not {kind!r}")
    _known(raw, _TOP_KEYS[kind], where)
    name = require_type(raw.get("name", path.stem), str, f"{where}: name")
    if kind == "local":
        return _local(raw, name, where, path)
    return _partner(raw, name, where, path)


def _known(table: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where} has unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def _check_url(url: Any, where: str) -> str:
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{where} must be an http(s) URL with a host, not {url!r}")
    return str(url).rstrip("/")


def _egm_ids(raw: Any, where: str) -> tuple[str, ...]:
    ids = require_type(raw, list, where)
    if not ids or not all(isinstance(i, str) and i for i in ids) or len(set(ids)) != len(ids):
        raise ConfigError(f"{where} must be a non-empty list of distinct EGM id strings")
    return tuple(ids)


def _local(raw: dict[str, Any], name: str, where: str, path: Path) -> TargetSpec:
    for key in ("trustly_url", "cms_url", "admin_token"):
        if key not in raw:
            raise ConfigError(f"{where}: a local target needs {key}")
    token = require_type(raw["admin_token"], str, f"{where}: admin_token")
    ids = _egm_ids(raw["egm_ids"], f"{where}: egm_ids") if "egm_ids" in raw else DEMO_EGM_IDS
    spec = local_spec(_check_url(raw["trustly_url"], f"{where}: trustly_url"),
                      _check_url(raw["cms_url"], f"{where}: cms_url"), token, ids, name)
    return replace(spec, source=path)


def _partner(raw: dict[str, Any], name: str, where: str, path: Path) -> TargetSpec:
    if "cms" not in raw:
        raise ConfigError(f"{where}: a partner target needs a [cms] table")
    cms = dict(require_type(raw["cms"], dict, f"{where}: cms"))
    extra = {key: cms.pop(key) for key in _CMS_EXTRA_KEYS if key in cms}
    if "egm_ids" not in extra:
        raise ConfigError(f"{where}: cms.egm_ids is required (the EGMs the harness may use)")
    try:
        profile = parse_profile(cms, "default", "cms", path.parent)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    limits_auth = None
    if "limits_auth" in extra:
        try:
            limits_auth = parse_auth(extra["limits_auth"], "cms.limits_auth")
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return TargetSpec(
        kind="partner", name=name, egm_ids=_egm_ids(extra["egm_ids"], f"{where}: cms.egm_ids"),
        cms_limits_auth=limits_auth,
        cms_profile=profile, egm_paths=_egm_paths(extra.get("egm", {}), where),
        control=_control(raw.get("control"), profile.base_url, where),
        merchant=_merchant(raw.get("trustly", {}), where),
        trustly=_listen(raw.get("trustly", {}), where), source=path)


def _egm_paths(raw: Any, where: str) -> EgmPaths:
    table = require_type(raw, dict, f"{where}: cms.egm")
    _known(table, _EGM_KEYS, f"{where}: cms.egm")
    values = {k: require_type(v, str, f"{where}: cms.egm.{k}") for k, v in table.items()}
    if "qr_png" in values and "acquire_qr" not in values:
        values["acquire_qr"] = None  # a partner that names only its image is read, not asked
    try:
        return EgmPaths(**values)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _control(raw: Any, cms_url: str, where: str) -> ControlConfig | None:
    if raw is None:
        return None
    table = require_type(raw, dict, f"{where}: control")
    _known(table, _CONTROL_KEYS, f"{where}: control")
    hooks = require_type(table.get("hooks", []), list, f"{where}: control.hooks")
    unknown = sorted(set(map(str, hooks)) - set(HOOKS))
    if unknown:
        raise ConfigError(f"{where}: control.hooks has unknown hook(s) {unknown}; "
                          f"known: {list(HOOKS)}")
    if hooks and "admin_token" not in table:
        raise ConfigError(f"{where}: control.admin_token is required when hooks are offered")
    base = _check_url(table.get("base_url", cms_url), f"{where}: control.base_url")
    token = require_type(table.get("admin_token", ""), str, f"{where}: control.admin_token")
    return ControlConfig(base, token, frozenset(map(str, hooks))) if hooks else None


def _merchant(raw: Any, where: str) -> MerchantCredentials:
    table = require_type(raw, dict, f"{where}: trustly")
    _known(table, _TRUSTLY_KEYS, f"{where}: trustly")
    values: dict[str, Any] = {}
    for key, attr in (("merchant_id", "merchant_id"), ("access_id", "access_id"),
                      ("access_key", "access_key"), ("merchant_name", "name")):
        if key in table:
            values[attr] = require_type(table[key], str, f"{where}: trustly.{key}")
    if "token_lifetime_s" in table:
        lifetime = require_type(table["token_lifetime_s"], int,
                                f"{where}: trustly.token_lifetime_s")
        if not 60 <= lifetime <= 86_400:
            raise ConfigError(f"{where}: trustly.token_lifetime_s must be 60..86400")
        values["token_lifetime_s"] = lifetime
    return MerchantCredentials(**values)


def _listen(raw: dict[str, Any], where: str) -> TrustlyListen:
    host = require_type(raw.get("host", "127.0.0.1"), str, f"{where}: trustly.host")
    port = require_type(raw.get("port", 8710), int, f"{where}: trustly.port")
    if not 1 <= port <= 65_535:
        raise ConfigError(f"{where}: trustly.port must be 1..65535")
    public = raw.get("public_url")
    if public is not None:
        public = _check_url(public, f"{where}: trustly.public_url")
    return TrustlyListen(host=host, port=port, public_url=public)
