"""A partner's CMS whose API looks nothing like the reference one (for partner-adapter tests).

- Auth: an API key in `X-Partner-Key` (401 `{"error": "unauthorized"}` without it).
- `POST /api/credits` `{"ref", "machine", "cents", "player_token"}` -> 200
  `{"ref", "result": "credited", "machine", "cents", "balance_cents"}` or 200
  `{"ref", "result": "declined", "reason": "UNKNOWN_MACHINE"|"MACHINE_DOWN"|"OVER_ALLOWANCE"}`.
  The same ref and body again answers the stored result with `"duplicate": true`; the same
  ref with another body is 409 `{"error": "ref reused"}`; a bad body is 400.
- `GET /api/credits/<ref>` -> the stored result, or 404 `{"error": "unknown ref"}`.
- `GET /api/players/<player_token>/allowance` -> `{"player_token", "left_cents"}`.

State is in memory, per app: this stands in for someone else's system, not for ours.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, jsonify, request

API_KEY_HEADER = "X-Partner-Key"
API_KEY = "partner-key-123"
ALLOWANCE_CENTS = 50_000


@dataclass
class PartnerState:
    """Machines (balance, up or down), stored credits by ref, and spend per player."""

    machines: dict[str, int] = field(default_factory=lambda: {"SLOT-1": 0, "SLOT-2": 0,
                                                              "SLOT-9": 0})
    down: set[str] = field(default_factory=lambda: {"SLOT-9"})
    credits: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = field(default_factory=dict)
    spent: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def decide(self, ref: str, machine: str, cents: int, player: str) -> dict[str, Any]:
        """Credit the machine, or decline with a reason; decisions are stored under `ref`."""
        if machine not in self.machines:
            return {"ref": ref, "result": "declined", "reason": "UNKNOWN_MACHINE"}
        if machine in self.down:
            return {"ref": ref, "result": "declined", "reason": "MACHINE_DOWN"}
        if self.spent.get(player, 0) + cents > ALLOWANCE_CENTS:
            return {"ref": ref, "result": "declined", "reason": "OVER_ALLOWANCE"}
        self.spent[player] = self.spent.get(player, 0) + cents
        self.machines[machine] += cents
        return {"ref": ref, "result": "credited", "machine": machine, "cents": cents,
                "balance_cents": self.machines[machine]}


def _bad(message: str, status: int = 400) -> tuple[Response, int]:
    return jsonify(error=message), status


def create_partner_app(api_key: str = API_KEY) -> Flask:
    """The partner CMS; its state is `app.extensions["partner"]` (a PartnerState)."""
    app = Flask(__name__)
    state = PartnerState()
    app.extensions["partner"] = state

    @app.before_request
    def check_key() -> tuple[Response, int] | None:
        if request.headers.get(API_KEY_HEADER) != api_key:
            return _bad("unauthorized", 401)
        return None

    @app.post("/api/credits")
    def credit() -> tuple[Response, int] | Response:
        body = request.get_json(silent=True)
        keys = ("ref", "machine", "cents", "player_token")
        if not isinstance(body, dict) or any(k not in body for k in keys):
            return _bad(f"need {list(keys)}")
        if not isinstance(body["cents"], int) or body["cents"] <= 0:
            return _bad("cents must be a positive integer")
        fields = tuple(body[k] for k in keys)
        with state.lock:
            stored = state.credits.get(body["ref"])
            if stored is not None:
                if stored[0] != fields:
                    return _bad("ref reused", 409)
                return jsonify({**stored[1], "duplicate": True})
            result = state.decide(*fields)
            state.credits[body["ref"]] = (fields, result)
        return jsonify(result)

    @app.get("/api/credits/<ref>")
    def credit_status(ref: str) -> tuple[Response, int] | Response:
        with state.lock:
            stored = state.credits.get(ref)
        return jsonify(stored[1]) if stored else _bad("unknown ref", 404)

    @app.get("/api/players/<player>/allowance")
    def allowance(player: str) -> Response:
        with state.lock:
            left = ALLOWANCE_CENTS - state.spent.get(player, 0)
        return jsonify(player_token=player, left_cents=left)

    return app
