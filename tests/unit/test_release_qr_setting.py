"""`tpas_release_qr_on_bank_refusal`: on unless a deployment turns it off, from TOML or the
environment, and a value that is neither on nor off stops the start rather than guessing."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim_trustly.settings import RELEASE_QR_ENV, load_trustly_settings
from simkit.settings import ConfigError


def release(environ: dict[str, str], config: Path | None = None) -> bool:
    settings = load_trustly_settings(environ=environ, config_path=config,
                                     database_url="sqlite://")
    return settings.tpas_release_qr_on_bank_refusal


def test_on_by_default() -> None:
    assert release({}) is True


@pytest.mark.parametrize(("value", "expected"), [
    ("false", False), ("0", False), ("OFF", False), ("no", False),
    ("true", True), ("1", True), ("On", True), ("yes", True),
])
def test_the_environment_turns_it_on_or_off(value: str, expected: bool) -> None:
    assert release({RELEASE_QR_ENV: value}) is expected


def test_toml_turns_it_off_and_the_environment_wins(tmp_path: Path) -> None:
    config = tmp_path / "scanpay.toml"
    config.write_text("[trustly]\ntpas_release_qr_on_bank_refusal = false\n")
    assert release({}, config) is False
    assert release({RELEASE_QR_ENV: "true"}, config) is True


@pytest.mark.parametrize("bad", ["maybe", "flase"])
def test_a_value_that_is_not_a_switch_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match=RELEASE_QR_ENV):
        release({RELEASE_QR_ENV: bad})


def test_a_toml_value_that_is_not_a_boolean_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "scanpay.toml"
    config.write_text('[trustly]\ntpas_release_qr_on_bank_refusal = "no"\n')
    with pytest.raises(ConfigError, match="tpas_release_qr_on_bank_refusal"):
        release({}, config)
