"""What a refused funding names: the field at fault, and a human sentence about it.

A partner's TPAS integration (and a person reading its logs) acts on `field`; the OpenAPI
document requires `detail` to be a string. Mutation testing found both unchecked for an
amount of zero or less and for a missing identifier.
"""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.api.test_funding_api import app, auth, client, funding, post

pytestmark = pytest.mark.db
__all__ = ["app", "auth", "client"]  # the fixtures, used by name


@pytest.mark.parametrize("amount", [0, -1, -2000])
def test_an_amount_of_zero_or_less_is_a_decided_refusal_naming_the_amount(
    client: FlaskClient, auth: dict[str, str], amount: int,
) -> None:
    body = funding(f"tx-amount-{-amount}", amount=amount)
    response = post(client, auth, body)
    assert response.status_code == 422, response.get_data(as_text=True)
    problem = response.get_json()
    assert (problem["code"], problem["field"]) == ("INVALID_AMOUNT", "amount")
    assert isinstance(problem["detail"], str) and "amount" in problem["detail"]
    again = post(client, auth, body)  # decided: the same answer again, nothing credited
    assert (again.status_code, again.get_json()["field"]) == (422, "amount")


@pytest.mark.parametrize("missing", ["transactionId", "egmId", "ubai", "qrTokenId"])
def test_a_missing_identifier_is_refused_with_a_detail_naming_it(
    client: FlaskClient, auth: dict[str, str], missing: str,
) -> None:
    body = funding(f"tx-without-{missing}")
    del body[missing]
    response = client.post("/cws/v1/fundings", json=body, headers=auth)
    assert response.status_code == 400, response.get_data(as_text=True)
    problem = response.get_json()
    assert (problem["code"], problem["field"]) == ("VALIDATION_ERROR", missing)
    assert problem["detail"] == f"{missing} is required"
