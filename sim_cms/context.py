"""What sim_cms's views reach through `current_app`: settings, database, clock, Trustly link."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import current_app

from sim_cms.access_tokens import TokenCache
from sim_cms.settings import CmsSettings
from simkit.clock import Clock
from simkit.db import Database

EXTENSION = "sim_cms"


@dataclass(frozen=True)
class CmsContext:
    """The collaborators `create_app` was given or built, kept in `app.extensions`.

    `trustly_transport` is the httpx transport used to reach Trustly (None: real network),
    so tests and the embedded harness can wire sim_cms to an in-process sim_trustly.
    `tokens` remembers valid Bearer tokens (see `access_tokens.TokenCache`); `known_egms`
    the ids of EGMs seen to exist (EGMs are only ever removed by a reset, which clears it;
    a stale id after another process's reset costs one needless Trustly call, never a
    wrong answer, because recording the QR checks the EGM again).
    """

    settings: CmsSettings
    db: Database
    clock: Clock
    trustly_transport: Any = None
    tokens: TokenCache = field(default_factory=TokenCache)
    known_egms: set[str] = field(default_factory=set)

    def close(self) -> None:
        """Release the connections this context holds (the database's pool). Every teardown
        calls this (tests, the harness, a server before it forks); a later request opens new
        connections.
        """
        self.db.dispose()


def cms() -> CmsContext:
    """The running app's context."""
    context: CmsContext = current_app.extensions[EXTENSION]
    return context
