"""Daily limits per UBAI: CRUD, enforcement at the boundary, the gaming day, races, bad input."""

from __future__ import annotations

from typing import Any

from harness.certify.scenarios.context import Context, problem_code
from harness.certify.scenarios.model import scenario
from harness.clients.http import Response

LIMITS_DUTY = ("Trustly Scan and Pay CMS duty: create, modify, enforce and delete daily limits "
               "per UBAI; Nevada Technical Standard 3.150; docs/architecture.md §17 "
               "(Daily Limits API)")
MALFORMED = ("INVALID_REQUEST", "VALIDATION_ERROR")
RACERS = 16


def _view(response: Response) -> dict[str, Any]:
    body = response.json() if response.headers.get("content-type", "").find("json") >= 0 else {}
    return body if isinstance(body, dict) else {}


@scenario(
    "LIM-001", "Daily limits are created, read, modified and deleted per UBAI",
    requirement=f"{LIMITS_DUTY} (validation against the UBAI, PATCH modifies, PUT creates)",
    tags=("limits",),
    steps=("GET a fresh UBAI's limit: the configured default, nothing used.",
           "PUT 5000: created (201), GET shows dailyLimit 5000 and remainingToday 5000.",
           "PUT 6000: replaced (200). PATCH 7000: 200, GET shows 7000.",
           "DELETE: 200 and the default applies again; PATCH now: 404 LIMIT_NOT_FOUND."))
def lim_001(ctx: Context) -> None:
    ubai = ctx.unique("ubai")
    fresh = ctx.cms.limit("GET", ubai)
    default = _view(fresh)
    ctx.expect("a fresh UBAI has a limit view (200)", 200, fresh.status_code)
    ctx.expect("with nothing used", (0, default.get("dailyLimit")),
               (default.get("usedToday"), default.get("remainingToday")))
    created = ctx.cms.limit("PUT", ubai, {"dailyLimit": 5000})
    ctx.expect("PUT creates it (201)", 201, created.status_code)
    seen = _view(ctx.cms.limit("GET", ubai))
    ctx.expect("GET shows it", (ubai, 5000, 5000),
               (seen.get("ubai"), seen.get("dailyLimit"), seen.get("remainingToday")))
    ctx.expect("PUT again replaces it (200)", 200,
               ctx.cms.limit("PUT", ubai, {"dailyLimit": 6000}).status_code)
    ctx.expect("PATCH modifies it (200)", 200,
               ctx.cms.limit("PATCH", ubai, {"dailyLimit": 7000}).status_code)
    ctx.expect("GET shows the change", 7000, _view(ctx.cms.limit("GET", ubai)).get("dailyLimit"))
    deleted = ctx.cms.limit("DELETE", ubai)
    ctx.expect("DELETE answers 200", 200, deleted.status_code)
    ctx.expect("and the default applies again", default.get("dailyLimit"),
               _view(ctx.cms.limit("GET", ubai)).get("dailyLimit"))
    patched = ctx.cms.limit("PATCH", ubai, {"dailyLimit": 1000})
    ctx.expect("PATCH without a limit set: 404 LIMIT_NOT_FOUND", (404, "LIMIT_NOT_FOUND"),
               (patched.status_code, problem_code(patched)))


@scenario(
    "LIM-002", "Exactly the remaining amount passes; one minor unit more is refused",
    requirement=f"{LIMITS_DUTY} (a funding over remainingToday is refused: 422 "
                "DAILY_LIMIT_EXCEEDED with remaining)",
    tags=("limits", "funding", "boundary"),
    steps=("PUT a limit of 5000 for a fresh UBAI.", "As TPAS, fund 3000: applied; the limit "
           "shows 2000 remaining.", "Fund 2001: 422 DAILY_LIMIT_EXCEEDED, remaining 2000.",
           "Fund 2000: applied; 0 remaining.", "The meter went up by 5000."))
def lim_002(ctx: Context) -> None:
    egm_id, ubai = ctx.egm(), ctx.unique("ubai")
    before = ctx.meters([egm_id])
    ctx.require("the limit is set", True,
                ctx.cms.limit("PUT", ubai, {"dailyLimit": 5000}).status_code in (200, 201))
    applied = ctx.cms.post_funding(ctx.funding(egm_id, 3000, ubai=ubai))
    remaining = _view(ctx.cms.limit("GET", ubai)).get("remainingToday")
    over = ctx.cms.post_funding(ctx.funding(egm_id, 2001, ubai=ubai))
    exact = ctx.cms.post_funding(ctx.funding(egm_id, 2000, ubai=ubai))
    ctx.expect_rise("the meter went up by 3000 + 2000, never by the 2001", before, 5000)
    ctx.expect("3000 is applied", 201, applied.status_code)
    ctx.expect("2000 remain", 2000, remaining)
    ctx.expect("2001 is refused 422 DAILY_LIMIT_EXCEEDED", (422, "DAILY_LIMIT_EXCEEDED"),
               (over.status_code, problem_code(over)))
    ctx.expect("saying 2000 remain", 2000, _view(over).get("remaining"))
    ctx.expect("exactly 2000 is applied", 201, exact.status_code)
    ctx.expect("nothing remains", 0, _view(ctx.cms.limit("GET", ubai)).get("remainingToday"))


@scenario(
    "LIM-003", "A player's payment over the remaining limit is refused and voided",
    requirement=f"{LIMITS_DUTY}; docs/architecture.md §12 (TPAS: it checks the limit; a rejection "
                "voids the bank payment)",
    tags=("limits", "pay", "boundary"),
    steps=("A new player pays 1000: CREDITED; note the UBAI TPAS derived.",
           "PUT that UBAI's limit to 1500 (500 remain).",
           "The player pays 501: REJECTED_VOIDED, reason DAILY_LIMIT_EXCEEDED.",
           "The player pays 500: CREDITED. The meters went up by 1500."))
def lim_003(ctx: Context) -> None:
    egm_id, player = ctx.egm(), ctx.player()
    before = ctx.meters([egm_id])
    first = ctx.pay(ctx.qr(egm_id).url, 1000, username=player)
    ctx.require("the first payment is CREDITED", "CREDITED", first.get("status"))
    ubai = str(ctx.payment_record(str(first["paymentId"])).get("ubai"))
    ctx.require("the limit is set", True,
                ctx.cms.limit("PUT", ubai, {"dailyLimit": 1500}).status_code in (200, 201))
    over = ctx.pay(ctx.qr(egm_id).url, 501, username=player)
    ctx.expect("501 is REJECTED_VOIDED for DAILY_LIMIT_EXCEEDED",
               ("REJECTED_VOIDED", "DAILY_LIMIT_EXCEEDED"), (over.get("status"),
                                                            over.get("reason")))
    exact = ctx.pay(ctx.qr(egm_id).url, 500, username=player)
    ctx.expect("exactly 500 is CREDITED", "CREDITED", exact.get("status"))
    ctx.expect_rise("the meter went up by 1000 + 500", before, 1500)


@scenario(
    "LIM-004", "The next gaming day restores the whole limit",
    requirement=f"{LIMITS_DUTY} (usage per gaming day: casino time zone and day start)",
    tags=("limits", "gaming-day"), needs=("clock",),
    steps=("PUT a limit of 1000 for a fresh UBAI; fund 1000: applied; fund 1: refused.",
           "Move both clocks 24 hours on.",
           "The limit view shows another gaming day, nothing used, 1000 remaining.",
           "Fund 1000: applied."))
def lim_004(ctx: Context) -> None:
    egm_id, ubai = ctx.egm(), ctx.unique("ubai")
    ctx.require("the limit is set", True,
                ctx.cms.limit("PUT", ubai, {"dailyLimit": 1000}).status_code in (200, 201))
    ctx.expect("1000 is applied", 201,
               ctx.cms.post_funding(ctx.funding(egm_id, 1000, ubai=ubai)).status_code)
    today = _view(ctx.cms.limit("GET", ubai))
    refused = ctx.cms.post_funding(ctx.funding(egm_id, 1, ubai=ubai))
    ctx.expect("1 more is refused today", "DAILY_LIMIT_EXCEEDED", problem_code(refused))
    ctx.advance(24 * 3600)
    tomorrow = _view(ctx.cms.limit("GET", ubai))
    ctx.expect("another gaming day", True, tomorrow.get("gamingDay") != today.get("gamingDay"),
               ok=tomorrow.get("gamingDay") != today.get("gamingDay"))
    ctx.expect("nothing used and 1000 remaining", (0, 1000),
               (tomorrow.get("usedToday"), tomorrow.get("remainingToday")))
    ctx.expect("1000 is applied on the new day", 201, ctx.cms.post_funding(
        ctx.funding(egm_id, 1000, ubai=ubai)).status_code)


@scenario(
    "LIM-005", f"{RACERS} fundings racing for room for one: exactly one is applied",
    requirement=f"{LIMITS_DUTY} (refused atomically, also when many race); "
                "docs/architecture.md §22 (Guarantees: limits are never exceeded, also "
                "under races)",
    tags=("limits", "funding", "concurrency"),
    steps=("PUT a limit of 1000 for a fresh UBAI.",
           f"As TPAS, send {RACERS} fundings of 1000 at the same moment, spread over the "
           "EGMs (threads, real concurrency).",
           f"Exactly one is applied (201); the other {RACERS - 1} are 422 "
           "DAILY_LIMIT_EXCEEDED.",
           "The UBAI used exactly 1000; the meters went up by 1000 in total."))
def lim_005(ctx: Context) -> None:
    ubai = ctx.unique("ubai")
    ctx.require("the limit is set", True,
                ctx.cms.limit("PUT", ubai, {"dailyLimit": 1000}).status_code in (200, 201))
    egm_ids = ctx.egms(RACERS)
    before = ctx.meters(egm_ids)
    bodies = [ctx.funding(egm_id, 1000, ubai=ubai) for egm_id in egm_ids]  # a QR each
    ctx.cms.token()  # one token for all racers, fetched before the race
    answers = ctx.concurrently([lambda b=b: ctx.cms.post_funding(b)  # type: ignore[misc]
                                for b in bodies])
    ctx.expect_rise(f"{RACERS} racers for room for one: the meters went up by one amount",
                    before, 1000)
    statuses = sorted(a.status_code for a in answers)
    ctx.expect("exactly one is applied", 1, statuses.count(201))
    refused = [a for a in answers if problem_code(a) == "DAILY_LIMIT_EXCEEDED"]
    ctx.expect("the others are refused DAILY_LIMIT_EXCEEDED", RACERS - 1, len(refused))
    ctx.expect("the UBAI used exactly 1000", 1000,
               _view(ctx.cms.limit("GET", ubai)).get("usedToday"), money=True)


@scenario(
    "LIM-006", "Malformed or out-of-range limits are refused and change nothing",
    requirement=f"{LIMITS_DUTY} (validation, error codes; a limit above the configured cap is "
                "refused)",
    tags=("limits", "bad-input"),
    steps=("PUT a limit of 4000 for a fresh UBAI.",
           "PUT bodies with a negative, float, string or missing dailyLimit, an unknown field, "
           "a JSON array, or no JSON: each 400.",
           "PUT a limit of 10^12: 422 LIMIT_ABOVE_CAP.", "The limit is still 4000."))
def lim_006(ctx: Context) -> None:
    ubai = ctx.unique("ubai")
    ctx.require("the limit is set", True,
                ctx.cms.limit("PUT", ubai, {"dailyLimit": 4000}).status_code in (200, 201))
    bad: list[tuple[str, dict[str, Any]]] = [
        ("a negative limit", {"json": {"dailyLimit": -1}}),
        ("a float limit", {"json": {"dailyLimit": 100.5}}),
        ("a string limit", {"json": {"dailyLimit": "100"}}),
        ("no dailyLimit", {"json": {}}),
        ("an unknown field", {"json": {"dailyLimit": 100, "weekly": 5}}),
        ("a JSON array", {"json": [100]}),
        ("no JSON", {"content": b"dailyLimit=100",
                     "headers": {"Content-Type": "application/json"}}),
    ]
    path = ctx.cms.paths.limit(ubai)
    for what, kwargs in bad:
        answer = ctx.cms.call("PUT", path, **kwargs)
        ctx.expect(f"{what}: 400", (400, True),
                   (answer.status_code, problem_code(answer) in MALFORMED))
    huge = ctx.cms.limit("PUT", ubai, {"dailyLimit": 10**12})
    ctx.expect("above the cap: 422 LIMIT_ABOVE_CAP", (422, "LIMIT_ABOVE_CAP"),
               (huge.status_code, problem_code(huge)))
    ctx.expect("the limit is unchanged", 4000,
               _view(ctx.cms.limit("GET", ubai)).get("dailyLimit"))


@scenario(
    "LIM-007", "The CMS enforces the daily limit itself, on fundings TPAS never pre-checked",
    requirement=f"{LIMITS_DUTY}. TPAS reads the limit before it funds, but the Funding API "
                "is the last line: a funding that reaches it without that pre-check (a "
                "self-excluded player, a limit lowered below today's usage) is refused there "
                "with 422 DAILY_LIMIT_EXCEEDED and applies nothing.",
    tags=("limits", "funding", "boundary"),
    steps=("PUT a daily limit of 0 (self-exclusion) for a fresh UBAI; as TPAS, POST a funding "
           "of 500 for it directly: 422 DAILY_LIMIT_EXCEEDED.",
           "PUT 1000 for another fresh UBAI; fund 1000: applied. Lower it to 500 (below "
           "today's usage): remainingToday 0.",
           "POST a funding of 1 for it directly: 422 DAILY_LIMIT_EXCEEDED.",
           "The meter went up by the 1000 alone."))
def lim_007(ctx: Context) -> None:
    egm_id, excluded, lowered = ctx.egm(), ctx.unique("ubai"), ctx.unique("ubai")
    before = ctx.meters([egm_id])
    ctx.require("the self-exclusion is set", True,
                ctx.cms.limit("PUT", excluded, {"dailyLimit": 0}).status_code in (200, 201))
    ctx.require("the limit is set", True,
                ctx.cms.limit("PUT", lowered, {"dailyLimit": 1000}).status_code in (200, 201))
    on_excluded = ctx.cms.post_funding(ctx.funding(egm_id, 500, ubai=excluded))
    applied = ctx.cms.post_funding(ctx.funding(egm_id, 1000, ubai=lowered))
    ctx.require("the limit can be lowered", 200,
                ctx.cms.limit("PUT", lowered, {"dailyLimit": 500}).status_code)
    remaining = _view(ctx.cms.limit("GET", lowered)).get("remainingToday")
    over = ctx.cms.post_funding(ctx.funding(egm_id, 1, ubai=lowered))
    ctx.expect_rise("the meter went up by the one allowed funding (1000) alone", before, 1000)
    ctx.expect("a self-excluded UBAI's funding: 422 DAILY_LIMIT_EXCEEDED",
               (422, "DAILY_LIMIT_EXCEEDED"), (on_excluded.status_code, problem_code(on_excluded)))
    ctx.expect("1000 within the limit is applied", 201, applied.status_code)
    ctx.expect("lowered below today's usage, nothing remains", 0, remaining)
    ctx.expect("1 more is refused 422 DAILY_LIMIT_EXCEEDED", (422, "DAILY_LIMIT_EXCEEDED"),
               (over.status_code, problem_code(over)))


SCENARIOS = (lim_001, lim_002, lim_003, lim_004, lim_005, lim_006, lim_007)
