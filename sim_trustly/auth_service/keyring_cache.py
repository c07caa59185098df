"""A per-process cache of the signing keyring, keyed by the active kid.

Signing needs the active key on every token request; reading and parsing every kept key each
time was a large share of the endpoint's cost. The active kid is read in the same query as the
credential, so a rotation made by any worker is seen by the next request of every worker.
Verification does not use this cache: it reads the keys each time, so a removed key stops
verifying at once.
"""

from __future__ import annotations

import threading

from sim_trustly.auth_service.keys import load_keyring
from sim_trustly.auth_service.tokens import Keyring
from simkit.db import Database


class KeyringCache:
    """Holds the last keyring loaded; reloads when the database names another active kid."""

    def __init__(self) -> None:
        self._keyring: Keyring | None = None
        self._lock = threading.Lock()

    def signing_keyring(self, db: Database, active_kid: str | None) -> Keyring:
        """A keyring whose active key is `active_kid` (loaded again if it changed)."""
        cached = self._keyring
        if cached is not None and cached.active.kid == active_kid:
            return cached
        with self._lock, db.read() as session:
            self._keyring = load_keyring(session)
            return self._keyring
