"""Several processes starting on one empty database at once all come up, on one schema.

Replicas and servers without `--preload` build the app in every process; the start-up lock
(simkit/startup_lock.py) makes migrations and seeding run one process at a time.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from sim_trustly.models import Merchant, SigningKeyRow
from simkit.db import Database
from tests.conftest import DatabaseFactory

pytestmark = [pytest.mark.db, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
STARTERS = 4

_STARTERS = {
    "trustly": "from sim_trustly.app import create_app\n"
               "from sim_trustly.settings import TrustlySettings as Settings\n",
    "cms": "from sim_cms.app import create_app\n"
           "from sim_cms.settings import CmsSettings as Settings\n",
}


def _start_together(sim: str, url: str) -> None:
    program = _STARTERS[sim] + "import sys\ncreate_app(Settings(database_url=sys.argv[1]))\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCANPAY_")}
    env["PYTHONPATH"] = str(REPO)
    starters = [
        subprocess.Popen([sys.executable, "-c", program, url], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO)
        for _ in range(STARTERS)
    ]
    outputs = [starter.communicate(timeout=180)[0].decode(errors="replace")
               for starter in starters]
    failed = [out for starter, out in zip(starters, outputs, strict=True) if starter.returncode]
    assert not failed, f"{len(failed)} of {STARTERS} failed to start:\n{failed[0][-3000:]}"


def test_trustlys_starting_together_on_an_empty_database_all_come_up(
    databases: DatabaseFactory,
) -> None:
    url = databases.new("trustly")
    _start_together("trustly", url)
    db = Database(url)
    try:
        with db.read() as session:
            assert session.scalar(select(func.count()).select_from(Merchant)) == 1
            active = select(func.count()).select_from(SigningKeyRow).where(
                SigningKeyRow.active.is_(True))
            assert session.scalar(active) == 1
    finally:
        db.dispose()


def test_cmss_starting_together_on_an_empty_database_all_come_up(
    databases: DatabaseFactory,
) -> None:
    _start_together("cms", databases.new("cms"))
