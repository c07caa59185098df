"""The broken CMS and a sim_trustly in this process, as a certify `Target`, to run scenarios fast.

The same wiring as `harness.embedded` (two apps joined by WSGI transports both ways, each on
its own manual clock, control APIs and journals on), with the broken CMS in place of the
product. Scenarios then run through `harness.certify.runner.run_scenario` exactly as certify runs
them, in milliseconds instead of a gunicorn start; the acceptance test
(`tests/e2e/test_certify_broken_cms.py`) does the same over real sockets.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path

from harness.clients.control import ControlApi
from harness.clients.http import LateWSGITransport
from harness.embedded import CMS_URL, TRUSTLY_URL
from harness.flow import Endpoint
from harness.target_config import DEMO_LIMITS_AUTH, HOOKS, embedded_spec
from harness.targets import Target
from sim_cms.settings import CmsSettings, TrustlyLink
from sim_trustly.app import create_app as create_trustly
from sim_trustly.cms_client.partner_profiles import DEFAULT_CMS_PROFILE, CmsProfile
from sim_trustly.settings import TrustlySettings
from simkit.clock import ManualClock, system_now
from simkit.db import sqlite_url
from tests.broken_cms.app import create_broken_app
from tests.broken_cms.defects import Defect
from tests.broken_cms.rotation import swapped_due_clause

ADMIN_TOKEN = "broken-inprocess-admin-token"  # a test's control token


@contextmanager
def broken_target(defects: frozenset[Defect], data_dir: Path) -> Iterator[Target]:
    """A target whose CMS is the broken CMS with `defects` (none: sim_cms as shipped)."""
    with ExitStack() as stack:
        stack.enter_context(swapped_due_clause(defects))
        start = system_now()
        to_cms = LateWSGITransport()
        trustly = create_trustly(TrustlySettings(
            database_url=sqlite_url(str(data_dir / "trustly.db")), public_base_url=TRUSTLY_URL,
            admin_token=ADMIN_TOKEN, journal=True,
            cms=replace(DEFAULT_CMS_PROFILE, base_url=CMS_URL)),
            clock=ManualClock(start), cms_transport=to_cms)
        stack.callback(trustly.extensions["sim_trustly"].close)
        cms = create_broken_app(CmsSettings(
            database_url=sqlite_url(str(data_dir / "cms.db")), admin_token=ADMIN_TOKEN,
            journal=True, trustly=TrustlyLink(base_url=TRUSTLY_URL)),
            defects, clock=ManualClock(start), trustly_transport=LateWSGITransport(trustly))
        stack.callback(cms.extensions["sim_cms"].close)
        to_cms.bind(cms)
        yield _target(defects, LateWSGITransport(trustly), LateWSGITransport(cms))


def _target(defects: frozenset[Defect], to_trustly: LateWSGITransport,
            to_cms: LateWSGITransport) -> Target:
    spec = embedded_spec()
    return Target(
        kind="embedded", name=f"broken-cms[{','.join(sorted(defects)) or 'none'}]",
        trustly=Endpoint(TRUSTLY_URL, to_trustly), cms=Endpoint(CMS_URL, to_cms),
        cms_profile=CmsProfile(name="default", base_url=CMS_URL, auth=spec.cms_profile.auth),
        egm_paths=spec.egm_paths, egm_ids=spec.egm_ids, hooks=frozenset(HOOKS),
        merchant=spec.merchant, trustly_control=ControlApi(TRUSTLY_URL, ADMIN_TOKEN, to_trustly),
        cms_control=ControlApi(CMS_URL, ADMIN_TOKEN, to_cms), cms_limits_auth=DEMO_LIMITS_AUTH)
