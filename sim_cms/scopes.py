"""OAuth2 scopes of the CWS API: what each client may do, and what each operation needs.

A client is allowed a set of scopes (its `scopes` in the settings); a token carries the scopes
granted when it was issued (all the client's, or the subset it asked for with `scope`). Every
Bearer-protected view names the one scope it needs with `@requires`, and the guard refuses a
token without it (403 INSUFFICIENT_SCOPE, nothing done). A view that names no scope is refused
to every token, so a new endpoint is closed until someone decides who may call it.

TPAS needs to fund EGMs and read daily limits; changing a limit lifts or sets a player's
self-exclusion, so it is a scope of its own that TPAS's client is not given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

FUNDINGS = "fundings"
LIMITS_READ = "limits:read"
LIMITS_WRITE = "limits:write"
EGMS = "egms"

# Every scope, with the sentence the OpenAPI document shows for it.
SCOPES: dict[str, str] = {
    FUNDINGS: "Credit EGMs and read funding outcomes (POST /fundings, GET /fundings/{id}).",
    LIMITS_READ: "Read a UBAI's daily limit (GET /limits/{ubai}).",
    LIMITS_WRITE: "Set, change or remove a daily limit (PUT, PATCH, DELETE /limits/{ubai}): "
                  "this lifts or sets a player's self-exclusion.",
    EGMS: "Read EGMs and make one show a new QR (GET /egms, GET /egms/{id}, "
          "POST /egms/{id}/qr).",
}
# What a configured client without `scopes` gets: what TPAS needs, nothing more.
TPAS_SCOPES: tuple[str, ...] = (FUNDINGS, LIMITS_READ)

# Flask endpoint name ("blueprint.view") -> the scope it requires; filled by `requires`.
REQUIRED: dict[str, str] = {}

View = TypeVar("View", bound=Callable[..., object])


def requires(blueprint: str, scope: str) -> Callable[[View], View]:
    """Declare that the view `blueprint.<function name>` needs `scope`."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    def declare(view: View) -> View:
        REQUIRED[f"{blueprint}.{view.__name__}"] = scope
        return view

    return declare


def unknown(scopes: Iterable[str]) -> list[str]:
    """The names in `scopes` that are no scope of this API."""
    return [name for name in scopes if name not in SCOPES]


def parse(value: str) -> frozenset[str]:
    """The scopes of a space-separated `scope` value (RFC 6749 §3.3)."""
    return frozenset(value.split())


def render(scopes: Iterable[str]) -> str:
    """The space-separated form of `scopes`, in a stable order (stored and answered)."""
    return " ".join(sorted(scopes))
