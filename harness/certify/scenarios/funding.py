"""Funding API: the harness plays TPAS and calls the CMS's Funding API directly."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from harness.certify.scenarios.context import Context, problem_code
from harness.certify.scenarios.model import scenario

FUNDING_DUTY = ("Trustly Scan and Pay CMS duty: Funding API that applies credit at once and "
                "returns the outcome; docs/architecture.md §15 (Funding API)")
MALFORMED = ("INVALID_REQUEST", "VALIDATION_ERROR")


@scenario(
    "FUND-001", "The same funding delivered twice credits once; the replay is identical",
    requirement=f"{FUNDING_DUTY} (idempotency by transactionId, Idempotent-Replayed)",
    tags=("funding", "idempotency"),
    steps=("As TPAS, POST a funding for a QR the EGM shows.",
           "POST exactly the same body again.",
           "Both answers are 201 and byte for byte the same; the second says "
           "Idempotent-Replayed: true.",
           "The meter went up once."))
def fund_001(ctx: Context) -> None:
    egm_id = ctx.egm()
    before = ctx.meters([egm_id])
    body = ctx.funding(egm_id, 1100, ubai=ctx.unique("ubai"))
    first = ctx.cms.post_funding(body)
    second = ctx.cms.post_funding(body)
    ctx.expect_rise("the meter went up once for two deliveries", before, 1100)
    ctx.expect("the first delivery is applied (201)", 201, first.status_code)
    ctx.expect("the second gets the stored outcome (201)", 201, second.status_code)
    ctx.expect("byte for byte the same body", first.content, second.content,
               ok=first.content == second.content)
    ctx.expect("marked Idempotent-Replayed: true", "true",
               second.headers.get("idempotent-replayed"))


@scenario(
    "FUND-002", "A funding whose answer was lost: inquiry, then the retry gets the same outcome",
    requirement=f"{FUNDING_DUTY} (status inquiry, idempotent retry); docs/architecture.md §12 "
                "(TPAS: it asks, then retries with the same transactionId)",
    tags=("funding", "idempotency", "status-inquiry"),
    steps=("As TPAS, POST a funding and throw the answer away (as if the connection broke).",
           "Ask GET /cws/v1/fundings/{transactionId}: APPLIED with the amount.",
           "POST the same body again: 201 with the outcome the inquiry reported.",
           "The meter went up once."))
def fund_002(ctx: Context) -> None:
    egm_id = ctx.egm()
    before = ctx.meters([egm_id])
    body = ctx.funding(egm_id, 1300, ubai=ctx.unique("ubai"))
    ctx.cms.post_funding(body)  # the answer is "lost": never looked at
    inquiry = ctx.cms.get_funding(body["transactionId"])
    found = inquiry.json() if inquiry.status_code == 200 else {}
    retry = ctx.cms.post_funding(body)
    ctx.expect_rise("the meter went up once for the lost answer and its retry", before, 1300)
    ctx.expect("the inquiry finds it APPLIED", (200, "APPLIED", 1300),
               (inquiry.status_code, found.get("status"), found.get("amount")))
    ctx.expect("the retry gets 201", 201, retry.status_code)
    if "response" in found and retry.status_code == 201:
        ctx.expect("with the outcome the inquiry reported", found["response"], retry.json())


@scenario(
    "FUND-003", "A transactionId reused with a different body is refused",
    requirement=f"{FUNDING_DUTY} (422 IDEMPOTENCY_KEY_REUSED)",
    tags=("funding", "idempotency"),
    steps=("POST a funding: 201.", "POST the same transactionId with another amount: 422 "
           "IDEMPOTENCY_KEY_REUSED.", "The meter went up by the first amount only."))
def fund_003(ctx: Context) -> None:
    egm_id = ctx.egm()
    before = ctx.meters([egm_id])
    body = ctx.funding(egm_id, 600, ubai=ctx.unique("ubai"))
    first = ctx.cms.post_funding(body)
    changed = ctx.cms.post_funding({**body, "amount": 601})
    ctx.expect_rise("the meter went up by the first amount only", before, 600)
    ctx.expect("the first is applied", 201, first.status_code)
    ctx.expect("the changed body is refused 422 IDEMPOTENCY_KEY_REUSED",
               (422, "IDEMPOTENCY_KEY_REUSED"), (changed.status_code, problem_code(changed)))


@scenario(
    "FUND-004", "Status inquiry: never decided, applied, rejected",
    requirement=f"{FUNDING_DUTY} (GET /cws/v1/fundings/{{transactionId}}; 404 "
                "FUNDING_NOT_FOUND means safe to retry)",
    tags=("funding", "status-inquiry"),
    steps=("GET a transactionId never sent: 404 FUNDING_NOT_FOUND.",
           "POST a funding under it: 201 (it was safe to retry); GET: APPLIED with EGM and "
           "amount.",
           "POST a funding for an EGM that does not exist; GET: REJECTED with EGM_NOT_FOUND."))
def fund_004(ctx: Context) -> None:
    egm_id = ctx.egm()
    body = ctx.funding(egm_id, 400, ubai=ctx.unique("ubai"))
    unknown = ctx.cms.get_funding(body["transactionId"])
    ctx.expect("an id never sent: 404 FUNDING_NOT_FOUND", (404, "FUNDING_NOT_FOUND"),
               (unknown.status_code, problem_code(unknown)))
    ctx.expect("posting it then is applied", 201, ctx.cms.post_funding(body).status_code)
    applied = ctx.cms.get_funding(body["transactionId"])
    seen = applied.json() if applied.status_code == 200 else {}
    ctx.expect("the inquiry says APPLIED, EGM, amount", ("APPLIED", egm_id, 400),
               (seen.get("status"), seen.get("egmId"), seen.get("amount")))
    ghost = {**ctx.funding(egm_id, 400, ubai=body["ubai"]), "egmId": ctx.unique("NO-EGM")}
    posted = ctx.cms.post_funding(ghost)
    ctx.expect("a funding for an unknown EGM: 404 EGM_NOT_FOUND", (404, "EGM_NOT_FOUND"),
               (posted.status_code, problem_code(posted)))
    rejected = ctx.cms.get_funding(ghost["transactionId"])
    seen = rejected.json() if rejected.status_code == 200 else {}
    ctx.expect("its inquiry says REJECTED with EGM_NOT_FOUND", (200, "REJECTED", "EGM_NOT_FOUND"),
               (rejected.status_code, seen.get("status"), seen.get("code")))


@scenario(
    "FUND-005", "The CMS's access tokens expire: 401 TOKEN_EXPIRED, then a new one works",
    requirement="Trustly Scan and Pay: the CMS documents auth with token refresh and TTL; "
                "docs/architecture.md §14 (CMS authentication: expires_in, 401 TOKEN_EXPIRED)",
    tags=("funding", "auth", "token-expiry"), needs=("clock",),
    steps=("Get an access token (client credentials); note expires_in.",
           "Move both clocks past it.",
           "A call with the old token: 401 TOKEN_EXPIRED with WWW-Authenticate.",
           "Get a new token: the same call answers 200."))
def fund_005(ctx: Context) -> None:
    ctx.need(ctx.cms.uses_oauth, "the CMS does not use OAuth2 access tokens")
    egm_id = ctx.egm()
    issued = ctx.cms.fetch_token()
    ctx.require("the token endpoint answers 200", 200, issued.status_code)
    grant = issued.json()
    ctx.expect("a Bearer token with a lifetime", ("Bearer", True),
               (grant.get("token_type"), isinstance(grant.get("expires_in"), int)))
    old = f"Bearer {grant['access_token']}"
    ctx.advance(float(grant.get("expires_in", 300)) + 1)
    stale = ctx.cms.read_egm_raw(egm_id, auth_header=old)
    ctx.expect("the expired token: 401 TOKEN_EXPIRED", (401, "TOKEN_EXPIRED"),
               (stale.status_code, problem_code(stale)))
    ctx.expect("with a WWW-Authenticate challenge", True, "www-authenticate" in stale.headers)
    fresh = ctx.cms.read_egm_raw(egm_id, auth_header=f"Bearer {ctx.cms.token(fresh=True)}")
    ctx.expect("a new token works", 200, fresh.status_code)


@scenario(
    "FUND-006", "Calls without valid credentials are refused with a challenge",
    requirement="Trustly Scan and Pay: the CMS's Funding API authenticates TPAS; "
                "docs/architecture.md §7 (Errors: every 401 carries WWW-Authenticate)",
    tags=("funding", "auth"),
    steps=("POST a funding without credentials: 401 with WWW-Authenticate.",
           "With a made-up Bearer token: 401.",
           "Ask the token endpoint with a wrong client secret: 401.", "Nothing was applied."))
def fund_006(ctx: Context) -> None:
    egm_id = ctx.egm()
    before = ctx.meters([egm_id])
    body = ctx.funding(egm_id, 300, ubai=ctx.unique("ubai"))
    bare = ctx.cms.post_funding_raw(body)
    ctx.expect("no credentials: 401", 401, bare.status_code)
    ctx.expect("with WWW-Authenticate", True, "www-authenticate" in bare.headers)
    made_up = ctx.cms.post_funding_raw(body, auth_header="Bearer not-a-token")
    ctx.expect("a made-up Bearer token: 401", 401, made_up.status_code)
    if ctx.cms.uses_oauth:
        wrong_secret = replace(ctx.cms.profile.auth, client_secret="wrong-secret")  # noqa: S106
        wrong = ctx.cms.fetch_token(wrong_secret)
        ctx.expect("a wrong client secret: 401", 401, wrong.status_code)
    ctx.expect_rise("nothing was applied", before, 300, 0)


@scenario(
    "FUND-007", "A funding naming a QR the EGM never showed is refused",
    requirement=f"{FUNDING_DUTY} (422 QR_TOKEN_MISMATCH: the token was not displayed on "
                "that EGM)",
    tags=("funding", "qr"),
    steps=("Make EGM A show a QR.", "POST a funding for EGM B naming A's QR: 422 "
           "QR_TOKEN_MISMATCH.", "Neither meter moved."))
def fund_007(ctx: Context) -> None:
    ctx.need(len(ctx.target.egm_ids) >= 2, "the target names only one EGM")
    shown_on, paid_on = ctx.egms(2)
    before = ctx.meters([shown_on, paid_on])
    body = ctx.funding(paid_on, 500, ubai=ctx.unique("ubai"), qr=ctx.qr(shown_on))
    refused = ctx.cms.post_funding(body)
    ctx.expect_rise("neither meter moved", before, 500, 0)
    ctx.expect("422 QR_TOKEN_MISMATCH", (422, "QR_TOKEN_MISMATCH"),
               (refused.status_code, problem_code(refused)))


def _malformed_bodies(good: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(what, request kwargs) pairs of bodies the Funding API must refuse as malformed."""
    without = {key: {k: v for k, v in good.items() if k != key}
               for key in ("transactionId", "egmId", "amount", "currency", "ubai")}
    return [
        ("a body that is not JSON", {"content": b"{not json",
                                     "headers": {"Content-Type": "application/json"}}),
        ("a JSON array", {"json": [good]}),
        *((f"no {key}", {"json": body}) for key, body in without.items()),
        ("amount as a float", {"json": {**good, "amount": 20.0}}),
        ("amount as a string", {"json": {**good, "amount": "20"}}),
        ("amount as a boolean", {"json": {**good, "amount": True}}),
        ("a lower-case currency", {"json": {**good, "currency": "usd"}}),
    ]


@scenario(
    "FUND-008", "Malformed funding bodies are refused with 400 and change nothing",
    requirement=f"{FUNDING_DUTY} (documented error codes); docs/architecture.md §6 (Money: "
                "floats, NaN, negatives and zero are rejected), docs/architecture.md §22 "
                "(Guarantees: no 5xx for any input)",
    tags=("funding", "bad-input"),
    steps=("POST, under one transactionId, bodies that are not JSON, arrays, miss a field, or "
           "give the amount as a float, string or boolean, or a lower-case currency: each "
           "400 (INVALID_REQUEST or VALIDATION_ERROR).",
           "POST amounts 0 and -100 under fresh ids, on the same QR: 422 INVALID_AMOUNT (a "
           "decided refusal, not a 400).",
           "POST the good body under the first transactionId: 201 (it was never taken, and "
           "the refused fundings did not consume the QR).",
           "The meter went up by that amount only."))
def fund_008(ctx: Context) -> None:
    egm_id = ctx.egm()
    before = ctx.meters([egm_id])
    good = ctx.funding(egm_id, 250, ubai=ctx.unique("ubai"))
    for what, kwargs in _malformed_bodies(good):
        answer = ctx.cms.post_funding(None, **kwargs)
        ctx.expect(f"{what}: 400", (400, True), (answer.status_code,
                                                 problem_code(answer) in MALFORMED))
    for amount in (0, -100):
        answer = ctx.cms.post_funding({**good, "transactionId": ctx.unique("tx"),
                                       "amount": amount})
        ctx.expect(f"amount {amount}: 422 INVALID_AMOUNT", (422, "INVALID_AMOUNT"),
                   (answer.status_code, problem_code(answer)))
    ctx.expect("the good body under the same id is then applied", 201,
               ctx.cms.post_funding(good).status_code)
    ctx.expect_rise("the meter went up by that amount only", before, 250)


def _foreign_currency(held: str) -> str:
    """A well-formed ISO 4217 currency the EGM does not hold."""
    return "EUR" if held != "EUR" else "USD"


@scenario(
    "FUND-012", "A funding in a currency the EGM does not hold is refused and applies nothing",
    requirement=f"{FUNDING_DUTY}; docs/architecture.md §6 (Money: minor units plus an ISO 4217 "
                "currency): "
                "2000 EUR is not 2000 USD, so a funding in another currency than the EGM's "
                "is a decided refusal (4xx), never a credit.",
    tags=("funding", "bad-input"),
    steps=("As TPAS, POST a well-formed funding for a QR the EGM shows, in a currency the EGM "
           "does not hold (EUR on a USD EGM).",
           "The meter did not move.",
           "The answer is a refusal (4xx, not 201); if the status inquiry knows the id, it "
           "says REJECTED."))
def fund_012(ctx: Context) -> None:
    egm_id = ctx.egm()
    before = ctx.meters([egm_id])
    held = str(ctx.cms.egm(egm_id).get("currency") or ctx.currency())
    body = {**ctx.funding(egm_id, 2000, ubai=ctx.unique("ubai")),
            "currency": _foreign_currency(held)}
    refused = ctx.cms.post_funding(body)
    ctx.expect_rise(f"the meter did not move for 2000 {body['currency']} on a {held} EGM",
                    before, 2000, 0)
    ctx.expect("the funding is refused (4xx)", "4xx", f"{refused.status_code} "
               f"{problem_code(refused) or ''}".strip(), ok=400 <= refused.status_code < 500)
    inquiry = ctx.cms.get_funding(body["transactionId"])
    if inquiry.status_code == 200:
        ctx.expect("the status inquiry says REJECTED", "REJECTED", inquiry.json().get("status"))


SCENARIOS = (fund_001, fund_002, fund_003, fund_004, fund_005, fund_006, fund_007, fund_008,
             fund_012)
