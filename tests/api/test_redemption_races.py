"""A second phone that read a QR code as payable a moment before the first phone claimed it.

Both phones passed the scan check; only one claim can match. The other phone is told why
its claim matched nothing (used, or expired in the meantime), is not charged, and the EGM
is credited once. The moment between the check and the claim is planted by handing the
second phone the code as it read it before the first claim.
"""

from __future__ import annotations

import pytest

from sim_trustly.tpas import payments, redemption
from sim_trustly.tpas.redemption import QrCodeExpired, QrCodeUsed
from tests.api.tpas_support import Casino, CasinoFactory, make_casino, unique_user

pytestmark = pytest.mark.db
__all__ = ["make_casino"]  # the fixture, used by name


@pytest.fixture
def casino(make_casino: CasinoFactory) -> Casino:
    return make_casino()


def read_before_the_claim(
    casino: Casino, code: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """From now on, paying with `code` starts from the code as it is read now (payable)."""
    seen = redemption.presentable(casino.ctx, code, casino.clock.now())
    monkeypatch.setattr(redemption, "presentable", lambda ctx, code, now: seen)


def test_the_second_phone_is_told_the_code_was_used_and_is_not_charged(
    casino: Casino, monkeypatch: pytest.MonkeyPatch,
) -> None:
    code = casino.show_qr()
    read_before_the_claim(casino, code, monkeypatch)
    first = casino.pay(code)
    assert first.status == "CREDITED"
    with pytest.raises(QrCodeUsed) as refused:
        casino.pay(code, username=unique_user())
    assert refused.value.http_status == 409
    assert [row.id for row in payments.list_payments(casino.ctx.db)] == [first.payment_id]
    assert casino.meter() == 2000


def test_a_code_that_expired_between_the_check_and_the_claim_is_refused_as_expired(
    casino: Casino, monkeypatch: pytest.MonkeyPatch,
) -> None:
    code = casino.show_qr()
    read_before_the_claim(casino, code, monkeypatch)
    casino.clock.advance(24 * 3600)  # the code's expiry has long passed
    with pytest.raises(QrCodeExpired) as refused:
        casino.pay(code)
    assert refused.value.http_status == 410
    assert payments.list_payments(casino.ctx.db) == []
    assert casino.meter() == 0
