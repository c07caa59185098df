"""Pay: the player's scan-then-pay through Trustly into the CMS, replays and races."""

from __future__ import annotations

from typing import Any

from harness.certify.scenarios.context import Context, trustly_error
from harness.certify.scenarios.model import scenario
from harness.clients.http import Client, Response

FUNDINGS_PATH = "/cws/v1/fundings"


@scenario(
    "PAY-001", "Scan-then-pay credits the EGM at once and the CMS reports it applied",
    requirement="Trustly Scan and Pay CMS duty: apply the credit to the EGM immediately and "
                "return the outcome; docs/architecture.md §2 (The flow: Scan then Pay), "
                "docs/architecture.md §15 (Funding API)",
    tags=("pay", "funding"),
    steps=("Make the EGM show a fresh QR; a phone scans it and pays 20.00 at the demo bank.",
           "The payment is CREDITED with a transactionId.",
           "The EGM's meter went up by exactly the amount.",
           "The CMS's status inquiry for the transactionId says APPLIED, same EGM and amount."))
def pay_001(ctx: Context) -> None:
    egm_id = ctx.egm()
    before = ctx.meters([egm_id])
    shown = ctx.qr(egm_id)
    ctx.scan(shown.url)
    payment = ctx.pay(shown.url, 2000, username=ctx.player())
    ctx.expect("the payment is CREDITED", "CREDITED", payment.get("status"))
    ctx.expect_rise("the meter went up by the amount", before, 2000)
    status = ctx.cms.get_funding(str(payment.get("transactionId")))
    ctx.expect("the status inquiry answers 200", 200, status.status_code)
    body = status.json() if status.status_code == 200 else {}
    ctx.expect("APPLIED, same EGM and amount", ("APPLIED", egm_id, 2000),
               (body.get("status"), body.get("egmId"), body.get("amount")))


@scenario(
    "PAY-002", "A replayed QR is refused after its credit",
    requirement="Trustly Scan and Pay: single-use QR tokens; docs/architecture.md §12 (TPAS: the "
                "QR token is claimed atomically, one success per token, ever)",
    tags=("pay", "replay"),
    steps=("Pay with a fresh QR: CREDITED.",
           "Pay again with the same QR: 409 QR_CODE_USED.",
           "The meter went up once."))
def pay_002(ctx: Context) -> None:
    egm_id = ctx.egm()
    before = ctx.meters([egm_id])
    shown = ctx.qr(egm_id)
    first = ctx.pay(shown.url, 1500, username=ctx.player())
    ctx.expect("the first payment is CREDITED", "CREDITED", first.get("status"))
    again = ctx.pay_response(shown.url, 1500, username=ctx.player())
    ctx.expect("the replay is refused 409", 409, again.status_code)
    ctx.expect("with QR_CODE_USED", "QR_CODE_USED", trustly_error(again).get("reason"))
    ctx.expect_rise("the meter went up once", before, 1500)


@scenario(
    "PAY-003", "Several phones paying the same QR at once: exactly one is credited",
    requirement="docs/architecture.md §22 (Guarantees: exactly-once crediting under "
                "concurrency); docs/architecture.md §12 (TPAS: single use)",
    tags=("pay", "concurrency", "replay"),
    steps=("Make the EGM show a fresh QR.",
           "Six phones pay it at the same moment (threads, each its own connection).",
           "Exactly one payment is CREDITED; every other phone gets 409 QR_CODE_USED.",
           "The meter went up by one amount."))
def pay_003(ctx: Context) -> None:
    egm_id = ctx.egm()
    before = ctx.meters([egm_id])
    shown = ctx.qr(egm_id)
    phones = [ctx.phone() for _ in range(6)]
    player = ctx.player()

    def one(phone: Client) -> Response:
        return ctx.pay_response(shown.url, 1000, username=player, phone=phone)

    answers = ctx.concurrently([lambda p=p: one(p) for p in phones])  # type: ignore[misc]
    bodies: list[dict[str, Any]] = [a.json() for a in answers]
    settled = [ctx.settle(shown.url, b) for a, b in zip(answers, bodies, strict=True)
               if a.status_code in (201, 202)]
    credited = [p for p in settled if p.get("status") == "CREDITED"]
    ctx.expect("exactly one phone is credited", 1, len(credited))
    refused = [a for a in answers if a.status_code == 409
               and trustly_error(a).get("reason") == "QR_CODE_USED"]
    ctx.expect("the others get 409 QR_CODE_USED", len(phones) - 1, len(refused))
    ctx.expect_rise("the meter went up by one amount", before, 1000)


@scenario(
    "PAY-004", "TPAS keeps paying after its CMS access token expired",
    requirement="Trustly Scan and Pay: the CMS documents auth with token refresh and TTL; "
                "docs/architecture.md §12 (TPAS: it refreshes the CMS access token), "
                "docs/architecture.md §14 (CMS authentication: 401 TOKEN_EXPIRED)",
    tags=("pay", "auth", "token-expiry"), needs=("clock",),
    steps=("Pay once (TPAS gets an access token from the CMS).",
           "Move both clocks past the token's lifetime.",
           "Pay again: CREDITED (TPAS got a new token); both credits are on the meters."))
def pay_004(ctx: Context) -> None:
    ctx.need(ctx.cms.uses_oauth, "the CMS does not use OAuth2 access tokens")
    first_egm, second_egm = ctx.egms(2)
    before = ctx.meters([first_egm, second_egm])
    first = ctx.pay(ctx.qr(first_egm).url, 800, username=ctx.player())
    ctx.expect("the first payment is CREDITED", "CREDITED", first.get("status"))
    ttl = ctx.cms.fetch_token().json().get("expires_in", 300)
    ctx.advance(float(ttl) + 60)
    second = ctx.pay(ctx.qr(second_egm).url, 900, username=ctx.player())
    ctx.expect("the payment after the expiry is CREDITED", "CREDITED", second.get("status"))
    ctx.expect_rise("both credits (800 + 900) are on the meters", before, 1700)


@scenario(
    "PAY-005", "A funding whose answer is lost is credited once (TPAS retries the same id)",
    requirement="docs/architecture.md §12 (TPAS: on a lost answer it asks GET fundings/{id} and "
                "retries with the same transactionId); docs/architecture.md §16 (Exactly once and "
                "the ledger: idempotency); docs/architecture.md §22 (Guarantees: exactly once)",
    tags=("pay", "funding", "idempotency", "faults"), needs=("faults",),
    steps=("Declare a fault on the CMS: the next POST /cws/v1/fundings is applied, then its "
           "connection dropped.",
           "Pay with a fresh QR: the payment ends CREDITED.",
           "The meter went up once; the CMS's status inquiry says APPLIED."))
def pay_005(ctx: Context) -> None:
    egm_id = ctx.egm()
    before = ctx.meters([egm_id])
    shown = ctx.qr(egm_id)
    rule = {"method": "POST", "path": FUNDINGS_PATH, "action": "apply_then_drop", "times": 1}
    declared = ctx.cms_control("POST", "/_sim/faults", json=rule)
    ctx.require("the faults hook takes the rule", 201, declared.status_code)
    try:
        payment = ctx.pay(shown.url, 1200, username=ctx.player())
    finally:
        ctx.cms_control("DELETE", "/_sim/faults")
    ctx.expect("the payment ends CREDITED", "CREDITED", payment.get("status"))
    ctx.expect_rise("the meter went up once", before, 1200)
    status = ctx.cms.get_funding(str(payment.get("transactionId")))
    ctx.expect("the status inquiry says APPLIED", "APPLIED",
               status.json().get("status") if status.status_code == 200 else status.status_code)


SCENARIOS = (pay_001, pay_002, pay_003, pay_004, pay_005)
