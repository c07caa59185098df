"""The `/_sim/*` control API every sim offers when control is enabled.

Tests and the harness drive a sim through it: reset, move the clock, read the journal,
declare faults, seed data and dump state. It is a separate surface from the simulated API
(as moto keeps `/moto-api/` apart from the services it fakes), off unless the sim registers
it (`enable_control`), and guarded by an admin token on every route, including routes a sim
adds to the blueprint itself. Errors are raised as `SimError`s and rendered by the sim's own
app-level handler, so the control API speaks the sim's error dialect.
"""

from __future__ import annotations

import hmac
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request

from simkit.clock import (
    EARLIEST,
    LATEST,
    Clock,
    ClockRangeError,
    ManualClock,
    format_instant,
    parse_instant,
)
from simkit.errors import BadRequest, NotFound, SimError, Unauthorized
from simkit.faults import FaultPlan, FaultRule
from simkit.journal import MAX_QUERY_LIMIT, Journal

CHALLENGE = 'Bearer realm="scanpay-control"'
MAX_CLOCK_MOVE_S = 10 * 366 * 86_400  # ten years, leap days included
MAX_RULES_PER_REQUEST = 100
# Text no database column can hold: NUL (PostgreSQL refuses it in any text) and unpaired
# UTF-16 surrogates (not encodable as UTF-8, so neither driver can send them).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


@dataclass
class ControlHooks:
    """What a sim plugs into the control API: its own reset, and optional seed and state."""

    reset: Callable[[], None]
    seed: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    state: Callable[[], dict[str, Any]] | None = None


def enable_control(app: Flask, blueprint: Blueprint) -> None:
    """Serve the control API on `app`.

    Sims call this only when control is enabled; otherwise `/_sim/*` is a plain 404 and a
    production-like deployment shows no trace of it.
    """
    app.register_blueprint(blueprint)


def make_control_blueprint(
    *, admin_token: str, clock: Clock, journal: Journal, faults: FaultPlan, hooks: ControlHooks,
) -> Blueprint:
    """Build the `/_sim` blueprint; a sim may add routes to it before registering it."""
    if not admin_token:
        raise ValueError("the control API needs a non-empty admin token")
    blueprint = Blueprint("sim_control", __name__, url_prefix="/_sim")
    blueprint.before_request(_make_guard(admin_token))
    blueprint.before_request(refuse_unstorable_text)
    _add_kernel_routes(blueprint, clock, journal, faults, hooks)
    _add_clock_routes(blueprint, clock)
    _add_journal_routes(blueprint, journal)
    _add_fault_routes(blueprint, faults)
    return blueprint


def _make_guard(admin_token: str) -> Callable[[], None]:
    """A before-request check of `Authorization: Bearer <admin token>`, constant-time."""
    expected = admin_token.encode()

    def guard() -> None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected):
            raise Unauthorized(
                "the control API needs Authorization: Bearer <admin token>",
                challenge=CHALLENGE, code="ADMIN_TOKEN_REQUIRED",
            )

    return guard


def refuse_unstorable_text() -> None:
    """Refuse (400 INVALID_CHARACTERS) a request whose path, query or JSON body holds text
    that cannot be stored, before any route reads it.

    One check for every control route, including those a sim adds: each of them may compare
    or store what it is given, and a NUL reaching PostgreSQL is a 500.
    """
    texts: list[tuple[str | None, str]] = [("path", request.path)]
    texts += [(name, value) for name, values in request.args.lists()
              for value in (name, *values)]
    if request.mimetype == "application/json":
        texts += _body_texts()
    for field, text in texts:
        if _UNSTORABLE.search(text):
            extra = {"field": field} if field else {}
            raise BadRequest(f"{field or 'the body'} holds a NUL character or an unpaired "
                             "surrogate, which no sim can store",
                             code="INVALID_CHARACTERS", **extra)


def _body_texts() -> list[tuple[str | None, str]]:
    """Every string in the JSON body (keys too), each with the top-level member it is under.

    A body that is not JSON yields nothing here: the route refuses it in its own words.
    """
    try:
        body = json.loads(request.get_data(cache=True))
    except (ValueError, RecursionError):
        return []
    found: list[tuple[str | None, str]] = []
    pending: list[tuple[str | None, Any]] = [(None, body)]
    while pending:  # iterative: a deeply nested body must not exhaust the stack
        field, value = pending.pop()
        if isinstance(value, str):
            found.append((field, value))
        elif isinstance(value, list):
            pending.extend((field, item) for item in value)
        elif isinstance(value, dict):
            for key, item in value.items():
                member = key if field is None else field
                found.append((member, key))
                pending.append((member, item))
    return found


def _add_kernel_routes(
    blueprint: Blueprint, clock: Clock, journal: Journal, faults: FaultPlan, hooks: ControlHooks,
) -> None:
    @blueprint.post("/reset")
    def reset() -> Response:
        # The clock is left where it is: a reset between scenarios must not jump time.
        journal.clear()
        faults.clear()
        hooks.reset()
        return jsonify(reset=True)

    @blueprint.post("/seed")
    def seed() -> Response:
        if hooks.seed is None:
            raise NotFound("this sim has no seed hook")
        body = _json_body(empty_ok=True)
        if not isinstance(body, dict):
            raise BadRequest("seed body must be a JSON object")
        return jsonify(hooks.seed(body))

    @blueprint.get("/state")
    def state() -> Response:
        dump = hooks.state() if hooks.state is not None else {}
        return jsonify({**dump, "clock": clock_json(clock), "faults": faults.list()})


def clock_json(clock: Clock) -> dict[str, Any]:
    """The clock as the control API shows it."""
    manual = isinstance(clock, ManualClock)
    return {
        "now": format_instant(clock.now()),
        "controllable": manual,
        "frozen": clock.frozen if isinstance(clock, ManualClock) else None,
    }


def _add_clock_routes(blueprint: Blueprint, clock: Clock) -> None:
    @blueprint.get("/clock")
    def read_clock() -> Response:
        return jsonify(clock_json(clock))

    @blueprint.post("/clock")
    def move_clock() -> Response:
        move = parse_clock_command(_json_body(empty_ok=False))
        if not isinstance(clock, ManualClock):
            raise SimError("CLOCK_NOT_CONTROLLABLE", 409,
                           "this sim runs on the system clock; start it with a controllable clock")
        try:
            move(clock)
        except (ClockRangeError, OverflowError) as exc:
            raise BadRequest(f"the clock must stay between {format_instant(EARLIEST)} and "
                             f"{format_instant(LATEST)}", code="CLOCK_OUT_OF_RANGE") from exc
        return jsonify(clock_json(clock))


def parse_clock_command(body: Any) -> Callable[[ManualClock], object]:
    """Validate a clock move (`advance`, `set` or `resume`) and return it as a function."""
    usage = 'body must be exactly one of {"advance": seconds}, {"set": iso-8601}, {"resume": true}'
    if not isinstance(body, dict) or len(body) != 1:
        raise BadRequest(usage)
    ((key, value),) = body.items()
    if key == "advance":
        seconds = _seconds(value)
        return lambda clock: clock.advance(seconds)
    if key == "set":
        instant = _instant(value)
        return lambda clock: clock.set(instant)
    if key == "resume" and value is True:
        return lambda clock: clock.resume()
    raise BadRequest(usage)


def _seconds(value: Any) -> float:
    number_ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not number_ok or not math.isfinite(value) or abs(value) > MAX_CLOCK_MOVE_S:
        raise BadRequest(f"advance must be a finite number of seconds, |x| <= {MAX_CLOCK_MOVE_S}")
    return float(value)


def _instant(value: Any) -> datetime:
    if not isinstance(value, str) or len(value) > 64:
        raise BadRequest("set must be an ISO-8601 instant string, e.g. 2026-11-25T21:10:00Z")
    try:
        return parse_instant(value)
    except (ValueError, OverflowError) as exc:
        raise BadRequest(f"set is not an ISO-8601 instant: {value!r}") from exc


def _add_journal_routes(blueprint: Blueprint, journal: Journal) -> None:
    @blueprint.get("/journal")
    def read_journal() -> Response:
        entries = journal.query(
            path=request.args.get("path") or None,
            correlation_id=request.args.get("correlationId") or None,
            since_id=_int_arg("since", minimum=0, maximum=2**62),
            limit=_int_arg("limit", minimum=1, maximum=MAX_QUERY_LIMIT) or 200,
        )
        return jsonify(entries=entries)

    @blueprint.delete("/journal")
    def clear_journal() -> Response:
        return jsonify(deleted=journal.clear())


def _int_arg(name: str, *, minimum: int, maximum: int) -> int | None:
    """An optional integer query parameter within bounds."""
    text = request.args.get(name)
    if text is None or text == "":
        return None
    if not text.isdigit() or not minimum <= int(text) <= maximum:
        raise BadRequest(f"{name} must be an integer between {minimum} and {maximum}")
    return int(text)


def _add_fault_routes(blueprint: Blueprint, faults: FaultPlan) -> None:
    @blueprint.get("/faults")
    def list_faults() -> Response:
        return jsonify(faults=faults.list())

    @blueprint.post("/faults")
    def add_faults() -> tuple[Response, int]:
        ids = set(faults.add_all(parse_fault_rules(_json_body(empty_ok=False))))
        return jsonify(faults=[rule for rule in faults.list() if rule["id"] in ids]), 201

    @blueprint.delete("/faults")
    def clear_faults() -> Response:
        return jsonify(deleted=faults.clear())

    @blueprint.delete("/faults/<int:rule_id>")
    def remove_fault(rule_id: int) -> Response:
        if not faults.remove(rule_id):
            raise NotFound(f"no fault rule {rule_id}", code="FAULT_NOT_FOUND")
        return jsonify(deleted=1)


def parse_fault_rules(body: Any) -> list[FaultRule]:
    """One rule object, or `{"faults": [rule, ...]}`, validated as a whole before any is added."""
    if not (isinstance(body, dict) and "faults" in body):
        return [FaultRule.from_json(body)]
    if set(body) != {"faults"}:
        raise BadRequest('a rule list must be sent alone: {"faults": [...]}')
    items = body["faults"]
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_RULES_PER_REQUEST:
        raise BadRequest(f"faults must be a list of 1 to {MAX_RULES_PER_REQUEST} rules")
    rules = []
    for index, item in enumerate(items):
        try:
            rules.append(FaultRule.from_json(item))
        except BadRequest as exc:
            raise BadRequest(f"faults[{index}]: {exc.message}") from exc
    return rules


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_body(*, empty_ok: bool) -> Any:
    """The request body as JSON (NaN and Infinity refused); empty means `{}` when allowed."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        if empty_ok:
            return {}
        raise BadRequest("a JSON body is required")
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise BadRequest("the body is not valid JSON") from exc
