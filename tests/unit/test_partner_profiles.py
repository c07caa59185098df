"""Partner profiles: TOML parsing, defaults, overrides and the start-up errors they give."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from sim_trustly.cms_client.adapters import profile_for
from sim_trustly.cms_client.partner_profiles import (
    DEFAULT_CMS_PROFILE,
    AuthConfig,
    CmsPaths,
    CmsProfile,
    RetryPolicy,
)
from sim_trustly.settings import TrustlySettings, load_trustly_settings
from simkit.settings import ConfigError

NOT_A_CLASS = 42


class NoMethods:
    """Has a constructor but none of the CmsAdapter methods."""

    def __init__(self, profile: Any, transport: Any) -> None:
        self.profile = profile


class WrongConstructor:
    """Implements the methods but cannot be built as Class(profile, transport)."""

    def __init__(self, profile: Any, transport: Any, extra: Any) -> None: ...
    def get_limit(self, ubai: str) -> Any: ...
    def post_funding(self, call: Any) -> Any: ...
    def get_funding(self, transaction_id: str) -> Any: ...


def settings_from(tmp_path: Path, toml: str, env: dict[str, str] | None = None) -> TrustlySettings:
    config = tmp_path / "scanpay.toml"
    config.write_text(toml, encoding="utf-8")
    return load_trustly_settings(environ=env or {}, config_path=config)


def test_without_configuration_every_merchant_uses_the_reference_cms_on_port_8720() -> None:
    settings = load_trustly_settings(environ={})
    profile = profile_for(settings, "demo-merchant")
    assert profile == DEFAULT_CMS_PROFILE
    assert profile.base_url == "http://127.0.0.1:8720"
    assert profile.adapter is None
    assert (profile.auth.kind, profile.auth.client_id, profile.auth.client_secret) == (
        "oauth2_client_credentials", "tpas-client", "tpas-secret")
    assert (profile.connect_timeout_s, profile.read_timeout_s) == (2.0, 5.0)
    assert profile.paths.limit("ubai-1") == "/cws/v1/limits/ubai-1"
    assert profile.paths.status("tx-1") == "/cws/v1/fundings/tx-1"


def test_env_cms_url_replaces_the_default_profiles_base_url(tmp_path: Path) -> None:
    settings = settings_from(tmp_path, '[trustly.cms]\nread_timeout_s = 9\n',
                             env={"SCANPAY_TRUSTLY_CMS_URL": "http://127.0.0.1:9999"})
    assert settings.cms.base_url == "http://127.0.0.1:9999"
    assert settings.cms.read_timeout_s == 9.0


def test_default_profile_table_merges_over_the_built_in_profile(tmp_path: Path) -> None:
    settings = settings_from(tmp_path, """
[trustly.cms]
base_url = "https://cms.example/prefix"
connect_timeout_s = 1
retries = { max_attempts = 7, backoff_base_s = 0.1, backoff_cap_s = 1.5 }
paths = { fundings = "/v2/fundings" }
""")
    profile = settings.cms
    assert profile.base_url == "https://cms.example/prefix"
    assert profile.connect_timeout_s == 1.0 and profile.read_timeout_s == 5.0
    assert profile.auth.client_id == "tpas-client"
    assert profile.retries == RetryPolicy(max_attempts=7, backoff_base_s=0.1, backoff_cap_s=1.5)
    assert profile.paths.fundings == "/v2/fundings"
    assert profile.paths.token == "/cws/v1/oauth/token"


def test_merchant_profile_from_an_inline_table_applies_only_to_that_merchant(
    tmp_path: Path,
) -> None:
    settings = settings_from(tmp_path, """
[trustly.cms_profiles.acme]
base_url = "https://acme.example"
auth = { kind = "basic", username = "tpas", password = "pw-acme" }
""")
    acme = profile_for(settings, "acme")
    assert acme.name == "acme" and acme.base_url == "https://acme.example"
    assert (acme.auth.kind, acme.auth.username, acme.auth.password) == ("basic", "tpas", "pw-acme")
    assert profile_for(settings, "demo-merchant") is settings.cms


def test_merchant_profile_from_a_profile_file_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "partners").mkdir()
    (tmp_path / "partners" / "bravo.toml").write_text("""
base_url = "http://127.0.0.1:8799"
adapter = "tests.e2e.partner_adapter:PartnerAdapter"
[auth]
kind = "api_key"
header = "X-Partner-Key"
key = "k-123"
[paths]
fundings = "/api/credits"
funding_status = "/api/credits/{transactionId}"
limits = "/api/players/{ubai}/allowance"
""", encoding="utf-8")
    settings = settings_from(
        tmp_path, '[trustly.cms_profiles.bravo]\nprofile_file = "partners/bravo.toml"\n')
    bravo = profile_for(settings, "bravo")
    assert bravo.adapter == "tests.e2e.partner_adapter:PartnerAdapter"
    assert (bravo.auth.header, bravo.auth.key) == ("X-Partner-Key", "k-123")
    assert bravo.paths.status("r/1") == "/api/credits/r%2F1"


def test_merchant_profile_does_not_inherit_the_default_credentials(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"trustly\.cms_profiles\.acme is missing auth"):
        settings_from(tmp_path, '[trustly.cms_profiles.acme]\nbase_url = "https://a.example"\n')


@pytest.mark.parametrize(("auth", "message"), [
    ('{ kind = "kerberos" }', "unknown auth kind 'kerberos'"),
    ('{ kind = "oauth2_client_credentials", client_id = "x" }', "needs client_secret"),
    ('{ client_id = "x", client_secret = "" }', "needs client_secret"),
    ('{ kind = "basic", password = "p" }', "needs username"),
    ('{ kind = "api_key" }', "needs key"),
    ('{ kind = "api_key", key = "k", secret = "s" }', r"unknown key\(s\) \['secret'\]"),
])
def test_bad_auth_stops_start_up_naming_the_table(tmp_path: Path, auth: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"trustly\.cms_profiles\.m\.auth.*" + message):
        settings_from(tmp_path,
                      f'[trustly.cms_profiles.m]\nbase_url = "http://x"\nauth = {auth}\n')


@pytest.mark.parametrize(("adapter", "message"), [
    ("no_colon", "must look like 'package.module:ClassName'"),
    ("no_such_package.cms:Adapter", "module 'no_such_package.cms' cannot be imported"),
    ("tests.unit.test_partner_profiles:Missing", "has no attribute 'Missing'"),
    ("tests.unit.test_partner_profiles:NOT_A_CLASS", "is not a class"),
    ("tests.unit.test_partner_profiles:NoMethods",
     r"lacks the CmsAdapter method\(s\) \['get_limit', 'post_funding', 'get_funding'\]"),
    ("tests.unit.test_partner_profiles:WrongConstructor",
     r"must be constructible as Class\(profile, transport\)"),
])
def test_unusable_adapter_stops_start_up(tmp_path: Path, adapter: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"trustly\.cms\b.*" + message):
        settings_from(tmp_path, f'[trustly.cms]\nadapter = "{adapter}"\n')


@pytest.mark.parametrize(("toml", "message"), [
    ('base_url = "ftp://cms"', "must be an http"),
    ("read_timeout_s = 0", "read_timeout_s must be more than 0"),
    ('connect_timeout_s = "2"', "connect_timeout_s must be a number"),
    ("retries = { max_attempts = 0 }", "max_attempts must be between 1 and 100"),
    ("retries = { backoff_base_s = 5, backoff_cap_s = 1 }", "backoff_base_s <= backoff_cap_s"),
    ('paths = { limits = "/limits" }', r"paths.limits must contain \{ubai\}"),
    ('paths = { fundings = "fundings" }', "paths.fundings must start with '/'"),
    ('base_uri = "http://typo"', r"unknown key\(s\) \['base_uri'\]"),
])
def test_bad_profile_values_stop_start_up(tmp_path: Path, toml: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings_from(tmp_path, f"[trustly.cms]\n{toml}\n")


def test_profile_file_must_stand_alone_and_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="profile_file must stand alone"):
        settings_from(tmp_path, '[trustly.cms_profiles.m]\nprofile_file = "x.toml"\n'
                                'base_url = "http://x"\n')
    with pytest.raises(ConfigError, match="config file not found"):
        settings_from(tmp_path, '[trustly.cms_profiles.m]\nprofile_file = "nope.toml"\n')


def test_bad_env_cms_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"SCANPAY_TRUSTLY_CMS_URL.*must be an http"):
        load_trustly_settings(environ={"SCANPAY_TRUSTLY_CMS_URL": "127.0.0.1:8720"})


def test_secrets_never_appear_in_a_profiles_repr() -> None:
    profiles = [
        DEFAULT_CMS_PROFILE,
        dataclasses.replace(DEFAULT_CMS_PROFILE,
                            auth=AuthConfig(kind="basic", username="u", password="hunter2-pw")),
        dataclasses.replace(DEFAULT_CMS_PROFILE,
                            auth=AuthConfig(kind="api_key", key="api-key-value")),
    ]
    shown = " ".join(repr(profile) for profile in profiles)
    for secret in ("tpas-secret", "hunter2-pw", "api-key-value"):
        assert secret not in shown


def test_retry_backoff_doubles_up_to_its_cap() -> None:
    policy = RetryPolicy(max_attempts=6, backoff_base_s=0.5, backoff_cap_s=3.0)
    assert [policy.delay_s(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_profiles_built_in_code_are_validated_too() -> None:
    with pytest.raises(ConfigError, match=r"paths\.funding_status must contain"):
        CmsPaths(funding_status="/status")
    with pytest.raises(ConfigError, match="is not a class"):
        CmsProfile(name="x", base_url="http://x", auth=DEFAULT_CMS_PROFILE.auth,
                   adapter="tests.unit.test_partner_profiles:NOT_A_CLASS")
