"""EGM states and caps: every state that refuses credit, with its own code, and the meter cap."""

from __future__ import annotations

from harness.certify.scenarios.context import Context, problem_code
from harness.certify.scenarios.model import Scenario, scenario

REJECTION_DUTY = ("Trustly Scan and Pay CMS duty: return the funding outcome; "
                  "docs/architecture.md §15 (Funding API: rejections are decided outcomes, nothing "
                  "applied)")
# state -> (HTTP status, code) the reference API answers (docs/architecture.md §15 (Funding API)).
REJECTIONS: dict[str, tuple[int, str]] = {
    "IN_GAME": (409, "EGM_BUSY"),
    "DOOR_OPEN": (409, "EGM_DOOR_OPEN"),
    "TILT": (409, "EGM_TILT"),
    "OFFLINE": (503, "EGM_OFFLINE"),
}


def _refused_in_state(state: str) -> Scenario:
    status, code = REJECTIONS[state]
    number = list(REJECTIONS).index(state) + 1

    @scenario(
        f"EGM-{number:03d}", f"An EGM that is {state} refuses credit with {status} {code}",
        requirement=f"{REJECTION_DUTY}: {status} {code}",
        tags=("egm", "rejection"), needs=("egm-state",),
        steps=("Make the EGM show two fresh QRs while IDLE (one for TPAS, one for a player).",
               f"Put the EGM into {state} (egm-state hook).",
               f"As TPAS, fund it with the first QR: {status} {code}.",
               f"A player pays with the second QR: REJECTED_VOIDED, reason {code}.",
               "The meter did not move. Put the EGM back to IDLE."))
    def run(ctx: Context) -> None:
        egm_id = ctx.egm()
        before = ctx.meters([egm_id])
        for_tpas, for_player = ctx.qr(egm_id), ctx.qr(egm_id)
        ctx.set_egm_state(egm_id, state)
        try:
            direct = ctx.cms.post_funding(ctx.funding(egm_id, 500, ubai=ctx.unique("ubai"),
                                                      qr=for_tpas))
            payment = ctx.pay(for_player.url, 500, username=ctx.player())
        finally:
            ctx.set_egm_state(egm_id, "IDLE")
        ctx.expect_rise(f"the meter did not move while {state}", before, 500, 0)
        ctx.expect(f"a funding is refused {status} {code}", (status, code),
                   (direct.status_code, problem_code(direct)))
        ctx.expect(f"the player's payment is REJECTED_VOIDED for {code}",
                   ("REJECTED_VOIDED", code), (payment.get("status"), payment.get("reason")))

    return run


@scenario(
    "EGM-005", "A funding that would pass the EGM's credit limit is refused",
    requirement=f"{REJECTION_DUTY}: 422 CREDIT_LIMIT_EXCEEDED (EGM meter cap)",
    tags=("egm", "rejection", "boundary"),
    steps=("Read the EGM's creditLimit and creditMeter.",
           "Give a fresh UBAI a daily limit of creditLimit - creditMeter + 1 (with the "
           "target's limits credentials); when the CMS refuses it (above its daily-limit cap), "
           "the scenario is skipped and the verdict is INCOMPLETE, so the cap must admit it.",
           "As TPAS, fund creditLimit - creditMeter + 1: 422 CREDIT_LIMIT_EXCEEDED.",
           "The meter did not move."))
def egm_005(ctx: Context) -> None:
    egm_id, ubai = ctx.egm(), ctx.unique("ubai")
    egm = ctx.cms.egm(egm_id)
    ctx.need(isinstance(egm.get("creditLimit"), int), "the CMS does not report creditLimit")
    amount = int(egm["creditLimit"]) - int(egm["creditMeter"]) + 1
    limit = ctx.cms.limit("PUT", ubai, {"dailyLimit": amount})
    ctx.need(limit.status_code in (200, 201),
             f"no daily limit can be as large as {amount} (HTTP {limit.status_code})")
    before = ctx.meters([egm_id])
    over = ctx.cms.post_funding(ctx.funding(egm_id, amount, ubai=ubai))
    ctx.expect_rise("the meter did not move past its cap", before, amount, 0)
    ctx.expect("one unit over the cap: 422 CREDIT_LIMIT_EXCEEDED",
               (422, "CREDIT_LIMIT_EXCEEDED"), (over.status_code, problem_code(over)))


SCENARIOS = (*(_refused_in_state(state) for state in REJECTIONS), egm_005)
