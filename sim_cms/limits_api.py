"""The Daily Limits API: `GET|PUT|PATCH|DELETE /cws/v1/limits/<ubai>` (Bearer token required).

Reading needs the scope `limits:read`; every change needs `limits:write`, which TPAS's client
is not given: a limit of 0 is a player's self-exclusion, and only the casino lifts it.

- GET: the view; a UBAI with no limit set shows the configured default (`source: DEFAULT`).
- PUT `{"dailyLimit", "currency"?}`: sets the limit; 201 with `Location` when it creates one,
  200 when it replaces one.
- PATCH `{"dailyLimit", "currency"?}`: changes a limit that is set; 404 LIMIT_NOT_FOUND on a
  UBAI that has only the default (PATCH modifies, PUT creates).
- DELETE: back to the default; 200 with the new view, also when nothing was set (idempotent).

Every answer is the limit view (see `limits.LimitView.to_json`); every rejection changes nothing.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from sim_cms import limits
from sim_cms.context import cms
from sim_cms.oauth_api import require_access_token
from sim_cms.scopes import LIMITS_READ, LIMITS_WRITE, requires
from simkit.http import read_json_body

bp = Blueprint("cms_limits_api", __name__, url_prefix="/cws/v1/limits")
bp.before_request(require_access_token)


def _change() -> limits.LimitChange:
    body = read_json_body(request, cms().settings.max_body_bytes)
    return limits.parse_limit_change(body, cms().settings)


@bp.get("/<ubai>")
@requires(bp.name, LIMITS_READ)
def get_limit(ubai: str) -> Response:
    """Read the limit, today's usage and what remains of it."""
    ctx = cms()
    return jsonify(limits.get_limit(ctx.db, ubai, ctx.settings, ctx.clock.now()).to_json())


@bp.put("/<ubai>")
@requires(bp.name, LIMITS_WRITE)
def put_limit(ubai: str) -> tuple[Response, int] | Response:
    """Set (create or replace) the limit of a UBAI."""
    ctx = cms()
    limits.validate_ubai(ubai)
    view, created = limits.set_limit(ctx.db, ubai, _change(), ctx.settings, ctx.clock.now())
    if not created:
        return jsonify(view.to_json())
    response = jsonify(view.to_json())
    response.headers["Location"] = request.path
    return response, 201


@bp.patch("/<ubai>")
@requires(bp.name, LIMITS_WRITE)
def patch_limit(ubai: str) -> Response:
    """Change the limit already set for a UBAI."""
    ctx = cms()
    limits.validate_ubai(ubai)
    view = limits.update_limit(ctx.db, ubai, _change(), ctx.settings, ctx.clock.now())
    return jsonify(view.to_json())


@bp.delete("/<ubai>")
@requires(bp.name, LIMITS_WRITE)
def delete_limit(ubai: str) -> Response:
    """Remove the limit set for a UBAI so the default applies again."""
    ctx = cms()
    return jsonify(limits.delete_limit(ctx.db, ubai, ctx.settings, ctx.clock.now()).to_json())
