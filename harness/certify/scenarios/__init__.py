"""The conformance catalogue: every scenario `scanpay certify` runs, in order.

Each scenario is a `Scenario` record (harness.certify.scenarios.model); `CATALOGUE` lists
them in the order a run takes them (the whole-run reconciliation last), `select` filters by id
and tag, and `COVERAGE` maps each item docs/architecture.md §21 (Catalogue coverage) says the
catalogue covers to the scenarios that cover it (a unit test holds it to that).
docs/conformance.md is generated from all of this by `harness.certify.scenarios.docs`.
"""

from __future__ import annotations

from collections.abc import Iterable

from harness.certify.scenarios import (
    egm,
    exactly_once,
    funding,
    limits,
    pay,
    qr_use,
    reconcile,
    scan,
)
from harness.certify.scenarios.model import Scenario

CATALOGUE: tuple[Scenario, ...] = (
    *scan.SCENARIOS, *pay.SCENARIOS, *funding.SCENARIOS, *exactly_once.SCENARIOS,
    *qr_use.SCENARIOS, *limits.SCENARIOS, *egm.SCENARIOS, *reconcile.SCENARIOS,
)

# docs/architecture.md §21 (Catalogue coverage), item by item.
COVERAGE: dict[str, tuple[str, ...]] = {
    "token issue and auth errors": ("SCAN-001", "SCAN-002"),
    "QR decode equals url": ("SCAN-003",),
    "rotation before expiry": ("SCAN-004", "SCAN-005"),
    "expired scan": ("SCAN-006", "QR-002"),
    "replayed QR": ("PAY-002", "QR-001"),
    "concurrent double scan": ("PAY-003",),
    "duplicate funding delivery": ("FUND-001", "FUND-003", "FUND-009", "FUND-010"),
    "lost-response retry": ("FUND-002", "PAY-005", "FUND-011", "FUND-013"),
    "status inquiry": ("FUND-004", "FUND-002"),
    "CMS token expiry and refresh": ("FUND-005", "PAY-004", "FUND-006"),
    "limit CRUD": ("LIM-001",),
    "limit enforcement at the boundary": ("LIM-002", "LIM-003", "LIM-007"),
    "limit enforcement across the gaming-day change": ("LIM-004",),
    "limit race": ("LIM-005",),
    "every EGM rejection": ("EGM-001", "EGM-002", "EGM-003", "EGM-004", "FUND-004",
                            "FUND-007"),
    "credit meter cap": ("EGM-005",),
    "bad input": ("FUND-008", "FUND-012", "LIM-006", "SCAN-002", "SCAN-007"),
    "ledger reconciliation": ("REC-001", "REC-002"),
}


class UnknownScenario(ValueError):
    """Raised when `--only` names an id the catalogue does not have."""


def by_id() -> dict[str, Scenario]:
    """The catalogue by scenario id."""
    return {item.id: item for item in CATALOGUE}


def select(only: Iterable[str] = (), tags: Iterable[str] = ()) -> list[Scenario]:
    """The scenarios named in `only` (all if empty) that carry every tag of `tags`, in order."""
    wanted = {item.strip().upper() for item in only if item.strip()}
    unknown = sorted(wanted - set(by_id()))
    if unknown:
        raise UnknownScenario(f"unknown scenario id(s) {unknown}; see `scanpay certify --list`")
    tag_set = {tag.strip() for tag in tags if tag.strip()}
    return [item for item in CATALOGUE
            if (not wanted or item.id in wanted) and tag_set <= set(item.tags)]


__all__ = ["CATALOGUE", "COVERAGE", "Scenario", "UnknownScenario", "by_id", "select"]
