"""Both sims in this process, wired to each other without sockets.

`embedded_sims()` builds sim_trustly and sim_cms on SQLite files in a temporary directory,
with the control API and the journal on (a generated admin token), and connects them through
WSGI transports (`harness.clients.http.LateWSGITransport`) both ways: TPAS pays into this CMS,
the CMS gets its QR codes from this Trustly. The harness then drives them over HTTP exactly as
it drives running sims, only through the transports instead of base URLs.

Where the harness imports sim code, it is to run a sim (here, `cli.serve`, `cli.rotate`, and
the partner target's own Trustly in `targets`) or to share a definition both sides must agree on
(partner profiles, the demo bank's UBAI rule, demo credentials, the contract's generator);
no scenario judges a target by reading a sim's internals: it asks over HTTP.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from flask import Flask

from harness.clients.http import LateWSGITransport, Transport
from sim_cms.app import create_app as create_cms
from sim_cms.settings import CmsSettings, TrustlyLink
from sim_trustly.app import create_app as create_trustly
from sim_trustly.cms_client.adapters import close_adapters
from sim_trustly.cms_client.partner_profiles import DEFAULT_CMS_PROFILE
from sim_trustly.settings import TrustlySettings
from simkit.batch_writer import writer_for
from simkit.clock import Clock
from simkit.db import sqlite_url

# Names, not addresses: nothing listens there. They appear in the QR urls and journals, and
# say plainly that the sims run in-process.
TRUSTLY_URL = "http://trustly.embedded"
CMS_URL = "http://cms.embedded"
__all__ = ["CMS_URL", "TRUSTLY_URL", "EmbeddedSims", "build_pair", "close_pair", "embedded_sims"]


@dataclass(frozen=True)
class EmbeddedSims:
    """The two in-process sims, how to reach each, and the admin token of their control APIs."""

    trustly: Flask
    cms: Flask
    admin_token: str
    trustly_transport: Transport
    cms_transport: Transport
    data_dir: Path
    trustly_url: str = TRUSTLY_URL
    cms_url: str = CMS_URL


def _trustly_settings(data_dir: Path, admin_token: str, cms_url: str) -> TrustlySettings:
    return TrustlySettings(
        database_url=sqlite_url(str(data_dir / "trustly.db")), public_base_url=TRUSTLY_URL,
        admin_token=admin_token, journal=True,
        cms=replace(DEFAULT_CMS_PROFILE, base_url=cms_url),
    )


def _cms_settings(data_dir: Path, admin_token: str) -> CmsSettings:
    return CmsSettings(database_url=sqlite_url(str(data_dir / "cms.db")),
                       admin_token=admin_token, journal=True,
                       trustly=TrustlyLink(base_url=TRUSTLY_URL))


def build_pair(
    data_dir: Path, *, admin_token: str | None = None, clock: Clock | None = None,
    trustly_clock: Clock | None = None, cms_clock: Clock | None = None,
) -> EmbeddedSims:
    """Build both sims on SQLite files in `data_dir`, each reaching the other in-process.

    Without `admin_token` a random one is made. `clock` (e.g. a ManualClock) is given to
    both; `trustly_clock` and `cms_clock` give each sim its own (two systems, two clocks,
    as the certification harness runs them). By default each runs on the system clock. The
    caller closes them with `close_pair`.
    """
    token = admin_token or secrets.token_urlsafe(24)
    to_cms = LateWSGITransport()
    trustly = create_trustly(_trustly_settings(data_dir, token, CMS_URL),
                             clock=trustly_clock or clock, cms_transport=to_cms)
    to_trustly = LateWSGITransport(trustly)
    cms = create_cms(_cms_settings(data_dir, token), clock=cms_clock or clock,
                     trustly_transport=to_trustly)
    to_cms.bind(cms)
    return EmbeddedSims(trustly=trustly, cms=cms, admin_token=token,
                        trustly_transport=LateWSGITransport(trustly),
                        cms_transport=LateWSGITransport(cms), data_dir=data_dir)


def close_pair(sims: EmbeddedSims) -> None:
    """Release what the sims hold: TPAS's CMS clients and both connection pools.

    Rows still queued for the background writer (the journal's last entries) are stored
    first: written after the data directory is gone, they would fail with a traceback on
    stderr.
    """
    close_adapters(sims.trustly.extensions["sim_trustly"])
    for db in (sims.trustly.extensions["sim_trustly"].db, sims.cms.extensions["sim_cms"].db):
        writer_for(db).flush()
        db.dispose()


@contextmanager
def embedded_sims(
    *, data_dir: Path | None = None, admin_token: str | None = None, clock: Clock | None = None,
    trustly_clock: Clock | None = None, cms_clock: Clock | None = None,
) -> Iterator[EmbeddedSims]:
    """Both sims for the length of the block, on a temporary directory unless `data_dir`.

    Clocks as in `build_pair`. The temporary directory (and so every record of the run) is
    deleted afterwards.
    """
    with ExitStack() as stack:
        if data_dir is None:
            data_dir = Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix="scanpay-embedded-")))
        sims = build_pair(data_dir, admin_token=admin_token, clock=clock,
                          trustly_clock=trustly_clock, cms_clock=cms_clock)
        stack.callback(close_pair, sims)
        yield sims
