"""What a partner and a player see in two corners mutation testing found untested.

- A funding whose currency is not three upper-case letters is refused 400 VALIDATION_ERROR
  naming `currency`, with a human `detail` that says what is wrong (the OpenAPI document
  requires `detail` to be a string).
- A sweep that takes an authorized payment over while the live request is reading the
  UBAI's daily limit funds it once; the live request then finds the payment no longer its
  own, sends nothing and answers the sweep's outcome.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.api.test_funding_api import app, auth, client, funding, post
from tests.api.test_tpas_payment_records import kinds, record
from tests.api.test_tpas_retry_and_events import details, on_cms_request, pay_body, recover
from tests.api.tpas_support import CasinoFactory, make_casino

pytestmark = pytest.mark.db
__all__ = ["app", "auth", "client", "make_casino"]  # the fixtures, used by name


@pytest.mark.parametrize("currency", ["usd", "USDT", "U$D"])
def test_a_malformed_currency_is_refused_with_a_detail_naming_the_field(
    client: FlaskClient, auth: dict[str, str], currency: str,
) -> None:
    response = post(client, auth, funding("tx-bad-currency", currency=currency))
    assert response.status_code == 400, response.get_data(as_text=True)
    problem = response.get_json()
    assert (problem["code"], problem["field"]) == ("VALIDATION_ERROR", "currency")
    assert isinstance(problem["detail"], str) and "currency" in problem["detail"]


def test_a_sweep_that_takes_an_authorized_payment_over_during_the_limit_check_decides_it(
    make_casino: CasinoFactory,
) -> None:
    """The live request stalls past its lease while the CMS answers its limit check; a sweep
    takes the AUTHORIZED payment over, checks the limit itself and credits it. The live
    request's move to FUNDING then finds the payment gone from AUTHORIZED: it sends no
    funding and answers 201 CREDITED, the sweep's outcome."""
    casino = make_casino()
    code = casino.show_qr()
    swept: list[dict[str, Any]] = []

    def stall_then_sweep() -> None:
        casino.clock.advance(casino.ctx.settings.tpas_lease_s + 1)
        swept.append(recover(casino))

    on_cms_request(casino, "GET", "/cws/v1/limits/", 1, after=stall_then_sweep)
    response = casino.trustly.post(f"/api/v1/scan/{code}/payments", json=pay_body())
    assert swept == [{"finished": 1, "open": 0}]
    assert response.status_code == 201, response.get_data(as_text=True)
    answer = response.get_json()
    assert (answer["status"], answer["creditMeter"]) == ("CREDITED", 2000)
    assert casino.meter() == 2000
    assert [f["outcome"] for f in casino.cms_fundings()] == ["APPLIED"]
    body = record(casino, answer["paymentId"])
    assert kinds(body) == ["CREATED", "BANK_AUTHORIZED", "RECOVERY_LEASE", "LIMIT_CHECKED",
                           "FUNDING_SENT", "CREDITED"]  # the sweep's check and send only
    assert details(body, "FUNDING_SENT") == [{"attempt": 1}]
    assert (body["status"], body["attempts"]) == ("CREDITED", 1)
