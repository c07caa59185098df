"""Exactly once: the same funding arriving several times at once, on two EGMs, or late.

FUND-013 closes the last case from the other side: an answer later than TPAS's read timeout
is a lost answer, so a CMS must answer in time, not only survive the retry a late answer
causes.

These are the costliest defects a CMS can have: each one credits an EGM more than once for
one bank payment. Every scenario here records its money check first (how far the meters
went up, in multiples of the amount), then the statuses and codes, so a failure's reason
names the money effect ("+8800 (8x the amount)").
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

from harness.certify.scenarios.context import POLL_S, Context, problem_code
from harness.certify.scenarios.model import scenario
from harness.clients.http import Response
from simkit.clock import monotonic
from simkit.wait import poll_until

EXACTLY_ONCE = ("Trustly Scan and Pay CMS duty: apply the credit at once and return the "
                "outcome, exactly once per transactionId; docs/architecture.md §16 "
                "(Exactly once and the ledger: idempotency, 409 FUNDING_IN_PROGRESS), "
                "docs/architecture.md §22 (Guarantees: exactly-once crediting under "
                "concurrency)")
COPIES = 8
READ_TIMEOUT_S = 0.25  # when the harness, as TPAS, stops waiting for the first answer
LATE_MS = 700  # how late the CMS is made to answer (faults hook): well past READ_TIMEOUT_S
RETRY_FOR_S = 10.0  # how long TPAS keeps resending while the CMS says FUNDING_IN_PROGRESS
REPLAYED = "idempotent-replayed"
TIMED = 3  # fundings FUND-013 times (it stops at the first late one)
TIMED_AMOUNT = 300


def _applied(answer: Response) -> bool:
    """A first application: 201 without the replay mark."""
    return answer.status_code == 201 and answer.headers.get(REPLAYED) != "true"


def _replay(answer: Response) -> bool:
    """A replay of a stored outcome: 201 with `Idempotent-Replayed: true`."""
    return answer.status_code == 201 and answer.headers.get(REPLAYED) == "true"


def _in_progress(answer: Response) -> bool:
    return answer.status_code == 409 and problem_code(answer) == "FUNDING_IN_PROGRESS"


def _summary(answers: list[Response]) -> str:
    """`201 x1, 201 replayed x7` style counts, for the observed side of a check."""
    kinds = ["201" if _applied(a) else "201 replayed" if _replay(a)
             else f"{a.status_code} {problem_code(a) or ''}".strip() for a in answers]
    return ", ".join(f"{kind} x{kinds.count(kind)}" for kind in dict.fromkeys(kinds))


@scenario(
    "FUND-009", f"{COPIES} identical fundings at the same moment: applied once, the others "
    "replayed",
    requirement=f"{EXACTLY_ONCE}. A network, a load balancer or TPAS itself may deliver one "
                "funding several times at once; the CMS must look the transactionId up "
                "inside the same lock or transaction that applies it.",
    tags=("funding", "idempotency", "concurrency"),
    steps=("As TPAS, build one funding for a QR the EGM shows.",
           f"Send it {COPIES} times at the same moment over HTTP (threads released together "
           "by a barrier, each on its own connection).",
           "The EGM's meter went up by exactly the amount, once.",
           "Exactly one answer is the application (201); every other is its replay (201, "
           "Idempotent-Replayed: true, the same body) or 409 FUNDING_IN_PROGRESS.",
           "The status inquiry says APPLIED with the amount."))
def fund_009(ctx: Context) -> None:
    egm_id, amount = ctx.egm(), 1700
    before = ctx.meters([egm_id])
    body = ctx.funding(egm_id, amount, ubai=ctx.unique("ubai"))
    ctx.cms.token()  # one access token for every copy, fetched before the race
    answers = ctx.concurrently([lambda: ctx.cms.post_funding(body)] * COPIES)
    ctx.expect_rise(f"the meter went up once for {COPIES} copies of one funding", before,
                    amount)
    applied = [a for a in answers if _applied(a)]
    ctx.expect("exactly one copy is applied (201)", 1, len(applied))
    ctx.expect(f"the other {COPIES - 1} are replays or 409 FUNDING_IN_PROGRESS",
               f"201 x1, then replays/409 x{COPIES - 1}", _summary(answers),
               ok=sum(_replay(a) or _in_progress(a) for a in answers) == COPIES - 1)
    if applied:
        replays = [a for a in answers if _replay(a)]
        ctx.expect("every replay carries the applied answer byte for byte", True,
                   all(r.content == applied[0].content for r in replays))
    inquiry = ctx.cms.get_funding(body["transactionId"])
    found = inquiry.json() if inquiry.status_code == 200 else {}
    ctx.expect("the inquiry says APPLIED with the amount", ("APPLIED", amount),
               (found.get("status"), found.get("amount")))


@scenario(
    "FUND-010", "The same transactionId on another EGM is refused, also when both arrive at once",
    requirement=f"{EXACTLY_ONCE}; the same transactionId with another body (here another "
                "EGM) is 422 IDEMPOTENCY_KEY_REUSED and applies nothing.",
    tags=("funding", "idempotency", "concurrency"),
    steps=("As TPAS, fund EGM A: 201.",
           "Send the same transactionId for EGM B (B's own QR): refused 422 "
           "IDEMPOTENCY_KEY_REUSED; B's meter did not move, A's went up once.",
           "Under a fresh transactionId, send the funding for A and for B at the same moment.",
           "The two meters together went up by one amount; exactly one of the two is applied, "
           "the other refused (422 IDEMPOTENCY_KEY_REUSED or 409 FUNDING_IN_PROGRESS)."))
def fund_010(ctx: Context) -> None:
    ctx.need(len(ctx.target.egm_ids) >= 2, "the target names only one EGM")
    egm_a, egm_b = ctx.egms(2)
    amount, ubai = 900, ctx.unique("ubai")
    meter_a, meter_b = ctx.meters([egm_a]), ctx.meters([egm_b])
    first = ctx.funding(egm_a, amount, ubai=ubai)
    applied = ctx.cms.post_funding(first)
    moved = ctx.funding(egm_b, amount, ubai=ubai, transaction_id=first["transactionId"])
    refused = ctx.cms.post_funding(moved)
    ctx.expect_rise("EGM B's meter did not move for A's transactionId", meter_b, amount, 0)
    ctx.expect_rise("EGM A's meter went up once", meter_a, amount)
    ctx.expect("A's funding is applied (201)", 201, applied.status_code)
    ctx.expect("B's copy is refused 422 IDEMPOTENCY_KEY_REUSED", (422, "IDEMPOTENCY_KEY_REUSED"),
               (refused.status_code, problem_code(refused)))
    both = ctx.meters([egm_a, egm_b])
    racing = ctx.funding(egm_a, amount, ubai=ubai)
    twins = [racing, ctx.funding(egm_b, amount, ubai=ubai,
                                 transaction_id=racing["transactionId"])]
    answers = ctx.concurrently([lambda b=b: ctx.cms.post_funding(b)  # type: ignore[misc]
                                for b in twins])
    ctx.expect_rise("sent to both EGMs at once, the meters went up by one amount in total",
                    both, amount)
    ctx.expect("exactly one of the two is applied; the other refused",
               "201 x1, 422/409 x1", _summary(answers),
               ok=sum(_applied(a) for a in answers) == 1
               and sum(a.status_code in (409, 422) for a in answers) == 1)


def _resend_until_definite(ctx: Context, body: dict[str, Any]) -> Response:
    """TPAS's retry: the identical request again, again while the CMS says it is in progress."""
    answers: list[Response] = []

    def resend() -> Response | None:
        answers.append(ctx.cms.post_funding(body))
        return None if _in_progress(answers[-1]) else answers[-1]

    poll_until(resend, timeout_s=RETRY_FOR_S, interval_s=POLL_S)
    return answers[-1]


@scenario(
    "FUND-011", "A funding answered after TPAS's read timeout, then retried, is applied once",
    requirement=f"{EXACTLY_ONCE}; docs/architecture.md §12 (TPAS: on a timeout it retries with the "
                "same transactionId until the outcome is definite). A slow answer must never "
                "turn TPAS's retry into a second credit.",
    tags=("funding", "idempotency", "faults"), needs=("faults",),
    steps=(f"Declare a fault on the CMS: the next POST of a funding is answered {LATE_MS} ms "
           "late (faults hook, action delay).",
           f"As TPAS, POST a funding and stop waiting after {READ_TIMEOUT_S} s (the read "
           "timeout); the request stays in flight.",
           "Send the identical request again (the retry), again while the CMS answers 409 "
           "FUNDING_IN_PROGRESS, until it is definite.",
           "Once the late answer arrives: the meter went up by the amount once; one of the two "
           "answers is the application (201), the other its replay (Idempotent-Replayed: "
           "true, the same body); the status inquiry says APPLIED."))
def fund_011(ctx: Context) -> None:
    egm_id, amount = ctx.egm(), 1400
    before = ctx.meters([egm_id])
    body = ctx.funding(egm_id, amount, ubai=ctx.unique("ubai"))
    rule = {"method": "POST", "path": ctx.cms.paths.fundings, "action": "delay",
            "delayMs": LATE_MS, "times": 1}
    declared = ctx.cms_control("POST", "/_sim/faults", json=rule)
    ctx.require("the faults hook takes the rule", 201, declared.status_code)
    ctx.cms.token()
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            first = pool.submit(lambda: _quiet_post(ctx, body))
            wait([first], timeout=READ_TIMEOUT_S)
            timed_out = not first.done()
            retry = _resend_until_definite(ctx, body)
            late = first.result(timeout=RETRY_FOR_S + LATE_MS / 1000)
    finally:
        ctx.cms_control("DELETE", "/_sim/faults")
    ctx.expect_rise("the meter went up once for the late funding and its retry", before, amount)
    ctx.expect("the first answer came after the read timeout", True, timed_out)
    ctx.expect("one answer is the application, the other its replay",
               "201 x1, 201 replayed x1", _summary([late, retry]),
               ok=sorted((_applied(a), _replay(a)) for a in (late, retry))
               == [(False, True), (True, False)])
    ctx.expect("both carry the same body", True, late.content == retry.content)
    inquiry = ctx.cms.get_funding(body["transactionId"])
    found = inquiry.json() if inquiry.status_code == 200 else {}
    ctx.expect("the inquiry says APPLIED with the amount", ("APPLIED", amount),
               (found.get("status"), found.get("amount")))


def _quiet_post(ctx: Context, body: dict[str, Any]) -> Response:
    with ctx.quietly():
        return ctx.cms.post_funding(body)


def _seconds(values: list[float]) -> str:
    return ", ".join(f"{value:.2f} s" for value in values)


@scenario(
    "FUND-013", "The CMS answers a funding within TPAS's read timeout",
    requirement="Trustly Scan and Pay CMS duty: apply the credit at once and return the "
                "outcome (the Funding API's documentation names its timeouts); "
                "docs/architecture.md §12 (TPAS: a timeout is never taken as a refusal: TPAS "
                "asks the status inquiry, then retries the same transactionId). An answer "
                "later than TPAS's read timeout (the target file's `[cms].read_timeout_s`, 5 s "
                "by default) is a lost answer: an idempotent CMS still credits once, but each "
                "payment then costs a timeout, an inquiry and a retry while the player waits.",
    tags=("funding", "latency"),
    steps=("Read TPAS's read timeout from the target file (`[cms].read_timeout_s`).",
           "As TPAS, with an access token fetched beforehand and a QR the EGM shows, POST "
           f"a funding and time it, from the request until the whole answer is in; up to "
           f"{TIMED} fundings, one after the other, each under its own transactionId and QR "
           "(it stops at the first late answer).",
           "The meter went up by the amount of each funding sent, once.",
           "Every funding is applied (201).",
           "Every answer came within the read timeout; a failure names the latencies and "
           "the timeout."))
def fund_013(ctx: Context) -> None:
    egm_id, timeout_s = ctx.egm(), ctx.target.cms_profile.read_timeout_s
    before = ctx.meters([egm_id])
    ctx.cms.token()  # the token round trip is not the funding's latency
    latencies: list[float] = []
    statuses: list[int] = []
    for _ in range(TIMED):
        body = ctx.funding(egm_id, TIMED_AMOUNT, ubai=ctx.unique("ubai"))  # QR asked first
        started = monotonic()
        statuses.append(ctx.cms.post_funding(body).status_code)
        latencies.append(monotonic() - started)
        if latencies[-1] > timeout_s:
            break
    ctx.expect_rise(f"the meter went up once for each of the {len(statuses)} fundings", before,
                    TIMED_AMOUNT, len(statuses))
    ctx.expect("every funding is applied (201)", [201] * len(statuses), statuses)
    slowest = max(latencies)
    ctx.expect(f"every funding is answered within TPAS's read timeout ({timeout_s:g} s)",
               f"each answer in at most {timeout_s:g} s",
               f"slowest {slowest:.2f} s, past the {timeout_s:g} s read timeout: TPAS would "
               f"have taken it for lost ({_seconds(latencies)})" if slowest > timeout_s
               else f"slowest {slowest:.2f} s ({_seconds(latencies)})",
               ok=slowest <= timeout_s)


SCENARIOS = (fund_009, fund_010, fund_011, fund_013)
