"""`POST /cws/v1/oauth/token` (client credentials, RFC 6749 §4.4) and the Bearer guard.

Client authentication is HTTP Basic (`client_id:client_secret`, form-urlencoded inside as
RFC 6749 §2.3.1 asks; unencoded values are accepted too) or, alternatively, `client_id` and
`client_secret` in the body. The body is `application/x-www-form-urlencoded`; a JSON object
with the same fields is accepted for convenience. Errors are problem+json whose `error`
member also carries the RFC 6749 §5.2 error name, so plain OAuth2 clients understand them.

The optional `scope` parameter (space-separated, RFC 6749 §3.3) asks for a subset of the
scopes the client is allowed; without it the token gets all of them (`sim_cms.scopes`).
Failed client authentications count towards a lockout (`sim_cms.client_lockout`): past the
threshold the endpoint answers 429 TOO_MANY_ATTEMPTS with Retry-After, right secret or not.

`require_access_token` is the `before_request` guard of every other CWS blueprint: a valid
token, granted the scope the view declares with `scopes.requires`.
"""

from __future__ import annotations

import json
from urllib.parse import unquote_plus

from flask import Blueprint, Response, request

from sim_cms import scopes
from sim_cms.access_tokens import (
    authenticate_client,
    bearer_error,
    check_token,
    granted_scopes,
    invalid_client,
    issue_token,
    missing_token,
)
from sim_cms.context import cms
from simkit.errors import BadRequest, SimError
from simkit.http import parse_basic_auth, parse_bearer, read_json_body

bp = Blueprint("cms_oauth", __name__, url_prefix="/cws/v1/oauth")

FORM = "application/x-www-form-urlencoded"
GRANT = "client_credentials"


def invalid_request(message: str, field: str | None = None) -> BadRequest:
    """400 INVALID_REQUEST, also named `invalid_request` for OAuth2 clients."""
    extra = {"field": field} if field else {}
    return BadRequest(message, code="INVALID_REQUEST", error="invalid_request", **extra)


@bp.post("/token")
def issue_access_token() -> Response:
    """Issue a Bearer token to an authenticated client; the token is never cached."""
    ctx = cms()
    params = _token_params()
    client_id = _authenticate(params)
    _check_grant(params.get("grant_type"))
    granted = granted_scopes(client_id, params.get("scope"), ctx.settings)
    issued = issue_token(ctx.db, client_id, granted, ctx.settings, ctx.clock.now())
    response = Response(json.dumps(issued.to_json()), mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


def _token_params() -> dict[str, str]:
    """The request's parameters, each present at most once and a string (RFC 6749 §3.2)."""
    if request.mimetype == "application/json":
        try:
            body = read_json_body(request, cms().settings.max_body_bytes)
        except BadRequest as exc:  # malformed JSON: still an RFC 6749 invalid_request
            raise invalid_request(exc.message) from exc
        if not isinstance(body, dict):
            raise invalid_request("the body must be a JSON object")
        for name, value in body.items():
            if not isinstance(value, str):
                raise invalid_request(f"{name} must be a string", field=str(name))
        return dict(body)
    if request.mimetype not in (FORM, "") or (not request.mimetype and request.get_data()):
        raise invalid_request(f"the body must be {FORM}")
    for name in request.form:
        if len(request.form.getlist(name)) > 1:
            raise invalid_request(f"{name} must not be repeated", field=name)
    return request.form.to_dict()


def _authenticate(params: dict[str, str]) -> str:
    """The authenticated client id; Basic values are tried as sent, then form-decoded
    (`access_tokens.authenticate_client` counts failures and locks out)."""
    ctx = cms()
    client_id, secret = _client_credentials(params)
    candidates = [(client_id, secret)]
    decoded = (unquote_plus(client_id), unquote_plus(secret))
    if "Authorization" in request.headers and decoded != (client_id, secret):
        candidates.append(decoded)
    return authenticate_client(ctx.db, candidates, request.remote_addr, ctx.clock.now(),
                               ctx.settings)


def _client_credentials(params: dict[str, str]) -> tuple[str, str]:
    """(client_id, client_secret) from Basic auth or the body; one method only."""
    header = request.headers.get("Authorization")
    if header is None:
        if "client_id" not in params or "client_secret" not in params:
            raise invalid_client("client credentials are required (HTTP Basic)")
        return params["client_id"], params["client_secret"]
    if "client_secret" in params:
        raise invalid_request("use one client authentication method, not two")
    basic = parse_basic_auth(header)
    if basic is None:
        raise invalid_client("the Authorization header is not valid HTTP Basic")
    client_id, secret = basic
    if params.get("client_id", client_id) not in (client_id, unquote_plus(client_id)):
        raise invalid_request("client_id differs from the authenticated client",
                              field="client_id")
    return client_id, secret


def _check_grant(grant_type: str | None) -> None:
    if not grant_type:
        raise invalid_request("grant_type is required", field="grant_type")
    if grant_type != GRANT:
        raise SimError("UNSUPPORTED_GRANT_TYPE", 400, f"only grant_type={GRANT} is supported",
                       error="unsupported_grant_type", field="grant_type")


def require_access_token() -> None:
    """`before_request` guard: a valid, unexpired Bearer token granted the view's scope.

    Missing: 401 INVALID_TOKEN with a bare challenge (RFC 6750 §3.1); malformed or unknown:
    401 INVALID_TOKEN; expired on the clock: 401 TOKEN_EXPIRED (the client should fetch a new
    token); without the scope the view declares (`scopes.requires`): 403 INSUFFICIENT_SCOPE,
    before the view runs, so nothing changes.
    """
    header = request.headers.get("Authorization")
    if not header:
        raise missing_token()
    token = parse_bearer(header)
    if token is None:
        raise bearer_error("INVALID_TOKEN", "the Authorization header is not a Bearer token")
    ctx = cms()
    grant = check_token(ctx.db, token, ctx.clock.now(), ctx.tokens)
    grant.require(scopes.REQUIRED.get(request.endpoint or ""))
