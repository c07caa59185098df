"""What sim_trustly's views reach through `current_app`: settings, database and clock, and the
per-process caches built on them (signing keyring, CMS adapters), released by `close`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import current_app

from sim_trustly.auth_service.credentials import LockoutPolicy
from sim_trustly.auth_service.keyring_cache import KeyringCache
from sim_trustly.cms_client.adapters import AdapterCache
from sim_trustly.settings import TrustlySettings
from simkit.clock import Clock
from simkit.db import Database

EXTENSION = "sim_trustly"


@dataclass(frozen=True)
class TrustlyContext:
    """The collaborators `create_app` was given or built, kept in `app.extensions`."""

    settings: TrustlySettings
    db: Database
    clock: Clock
    keyrings: KeyringCache = field(default_factory=KeyringCache)
    adapters: AdapterCache = field(default_factory=AdapterCache)  # see adapters.adapter_for
    cms_transport: Any = None  # an httpx transport to reach CMSs in-process (tests, harness)

    @property
    def lockout(self) -> LockoutPolicy:
        """The lockout policy the settings describe."""
        s = self.settings
        return LockoutPolicy(s.lockout_threshold, s.lockout_window_s, s.lockout_s,
                             s.lockout_scope)

    def close(self) -> None:
        """Release the connections this context holds: the CMS adapters' HTTP pools and the
        database's pool. Every teardown calls this (tests, the harness, a server before it
        forks); a later request opens new connections.
        """
        self.adapters.close()
        self.db.dispose()


def trustly() -> TrustlyContext:
    """The running app's context."""
    context: TrustlyContext = current_app.extensions[EXTENSION]
    return context
