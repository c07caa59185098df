"""sim_trustly's own control routes, added to the kernel's guarded `/_sim` blueprint.

Views only: each parses the request and calls one service function with plain values
(`merchants`, `keys`), which owns its transaction.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

from flask import Blueprint, Response, jsonify, request

from sim_trustly.auth_service.keys import Alg, describe_keys, remove_signing_key, rotate_signing_key
from sim_trustly.auth_service.merchants import add_merchant, merchant_from_json
from sim_trustly.context import trustly
from sim_trustly.models import Credential, Merchant, SigningKeyRow
from simkit.errors import BadRequest
from simkit.http import read_json_body


# The longest value each stored field may have: its column's length, so PostgreSQL (which,
# unlike SQLite, enforces it) never sees a value it refuses. NUL and unpaired surrogates are
# refused for every control route by the kernel (`simkit.control.refuse_unstorable_text`).
def _length(column: Any) -> int:
    """The declared length of a String column."""
    length = column.type.length
    assert isinstance(length, int)
    return length


MERCHANT_LIMITS: dict[str, int] = {
    "merchantId": _length(Merchant.__table__.c.id),
    "accessId": _length(Credential.__table__.c.access_id),
    "name": _length(Merchant.__table__.c.name),
}
KID_LIMIT = _length(SigningKeyRow.__table__.c.kid)


def _body() -> Any:
    return read_json_body(request, trustly().settings.max_body_bytes)


def _check_lengths(body: Any, limits: dict[str, int]) -> None:
    """Refuse (400 INVALID_FIELD) a string member longer than its column holds."""
    if not isinstance(body, dict):
        return  # the parser refuses it in its own words
    for field, limit in limits.items():
        value = body.get(field)
        if isinstance(value, str) and len(value) > limit:
            raise BadRequest(f"{field} must be at most {limit} characters",
                             code="INVALID_FIELD", field=field)


def merchants_add() -> tuple[Response, int]:
    """`POST /_sim/merchants`: add or replace a merchant and its credential."""
    ctx = trustly()
    body = _body()
    _check_lengths(body, MERCHANT_LIMITS)
    config = merchant_from_json(body)
    add_merchant(ctx.db, config, ctx.clock.now())
    return jsonify({"merchantId": config.merchant_id, "accessId": config.access_id}), 201


def signing_keys_list() -> Response:
    """`GET /_sim/signing-keys`: kids, algorithms and which one signs (never secrets)."""
    return jsonify({"keys": describe_keys(trustly().db)})


def signing_keys_rotate() -> tuple[Response, int]:
    """`POST /_sim/signing-keys`: add a key and sign with it from now on."""
    ctx = trustly()
    body = _body()
    if not isinstance(body, dict) or not isinstance(body.get("kid"), str) or not body["kid"]:
        raise BadRequest("kid must be a non-empty string", field="kid")
    _check_lengths(body, {"kid": KID_LIMIT})
    alg = body.get("alg", ctx.settings.signing_alg)
    secret = body.get("secret")
    if alg not in ("HS256", "ES256") or (secret is not None and not isinstance(secret, str)):
        raise BadRequest("alg must be HS256 or ES256 and secret a string")
    keep_for = timedelta(seconds=86_400 + ctx.settings.leeway_s)
    try:
        key = rotate_signing_key(
            ctx.db, kid=body["kid"], alg=cast(Alg, alg),
            secret=secret.encode() if secret else None, now=ctx.clock.now(), keep_for=keep_for,
        )
    except ValueError as exc:  # a weak or malformed key
        raise BadRequest(str(exc), field="secret") from exc
    return jsonify({"kid": key.kid, "alg": key.alg, "active": True}), 201


def signing_keys_remove(kid: str) -> Response:
    """`DELETE /_sim/signing-keys/<kid>`: drop a retired key; its tokens stop verifying."""
    remove_signing_key(trustly().db, kid)
    return jsonify({"removed": kid})


def add_admin_routes(bp: Blueprint) -> None:
    """Attach sim_trustly's routes to the control blueprint before it is registered."""
    bp.add_url_rule("/merchants", view_func=merchants_add, methods=["POST"])
    bp.add_url_rule("/signing-keys", view_func=signing_keys_list, methods=["GET"])
    bp.add_url_rule("/signing-keys", view_func=signing_keys_rotate, methods=["POST"])
    bp.add_url_rule(
        "/signing-keys/<kid>", view_func=signing_keys_remove, methods=["DELETE"]
    )
