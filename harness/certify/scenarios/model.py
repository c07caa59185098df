"""A conformance scenario as data: id, what it checks and why, what it needs, and its run.

Scenarios are declarative records so the catalogue can be listed, filtered, documented
(docs/conformance.md is generated from them) and checked for coverage without running
anything. The run function gets a `Context` (harness.certify.scenarios.context) and records checks
through `ctx.expect`; it returns nothing. A scenario never decides its own outcome: the
runner does, from the checks (failed if any check failed), from `ScenarioSkipped` (skipped)
and from any other exception (error).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.certify.scenarios.context import Context

ID_PATTERN = re.compile(r"[A-Z]{2,5}-\d{3}")
RunFunction = Callable[["Context"], None]


class ScenarioSkipped(Exception):
    """Raised by a scenario that finds at run time that the target cannot support it."""


class CheckFailed(Exception):
    """Raised by `Context.require` when a check failed and the scenario cannot go on."""


@dataclass(frozen=True)
class Scenario:
    """One entry of the catalogue.

    `requirement` says where the duty comes from (Trustly's CMS duties, a regulation, a
    section cited as "docs/architecture.md §N (Title)"); `needs` names the target hooks it
    cannot run without; `steps` are what a person would do by hand to check the same thing.
    """

    id: str
    title: str
    requirement: str
    tags: tuple[str, ...]
    needs: tuple[str, ...]
    steps: tuple[str, ...]
    run: RunFunction

    def __post_init__(self) -> None:
        if not ID_PATTERN.fullmatch(self.id):
            raise ValueError(f"scenario id {self.id!r} must look like ABC-001")
        if not (self.title and self.requirement and self.steps):
            raise ValueError(f"scenario {self.id} needs a title, a requirement and steps")


def scenario(
    id: str, title: str, *, requirement: str, tags: tuple[str, ...] = (),
    needs: tuple[str, ...] = (), steps: tuple[str, ...],
) -> Callable[[RunFunction], Scenario]:
    """Decorate a run function into a `Scenario` record (the module lists them in order)."""

    def wrap(run: RunFunction) -> Scenario:
        return Scenario(id=id, title=title, requirement=requirement, tags=tags, needs=needs,
                        steps=steps, run=run)

    return wrap
