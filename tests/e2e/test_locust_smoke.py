"""The Locust journeys run clean against real sims: `scanpay serve` on free ports, `scanpay load`
headless for a few seconds with two users, and Locust's own statistics read back."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.cli.load import JOURNEYS, LoadOptions, default_locustfile
from tests.e2e.processes import SCANPAY, scanpay_serve

# Only looked up, never imported: importing Locust monkey-patches this process with gevent.
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("locust") is None,
                                 reason="Locust is not installed (pip install -e '.[dev]')")]

RUN_TIME_S = 5
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sims(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    with scanpay_serve(tmp_path_factory.mktemp("load-sims")) as urls:
        yield urls


def test_load_command_is_bounded_and_names_the_journeys() -> None:
    command = LoadOptions(users=3, run_time_s=7, journeys=("scan-pay",)).command()
    assert command[command.index("-f") + 1] == str(default_locustfile())
    assert default_locustfile().exists()
    assert command[command.index("--users") + 1] == "3"
    assert command[command.index("--run-time") + 1] == "7s"
    assert "--headless" in command
    assert command[-1:] == list(JOURNEYS["scan-pay"])
    assert LoadOptions().user_classes() == ["PlayerUser", "PartnerOpsUser"]  # the floor


def test_compose_load_services_pass_only_options_the_locustfile_reads() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    sources = "".join(path.read_text() for path in default_locustfile().parent.glob("*.py"))
    read = set(re.findall(r'env_var="(SCANPAY_LOAD_\w+)"', sources))
    assert {"SCANPAY_LOAD_TRUSTLY_URL", "SCANPAY_LOAD_CMS_URL"} <= read
    for name in ("locust-master", "locust-worker"):
        service = compose["services"][name]
        given = {key for key in service["environment"] if key.startswith("SCANPAY_LOAD_")}
        assert given and given <= read, (name, given - read)
        assert service["command"][:3] == ["locust", "-f", "loadtests/locustfile.py"]


def test_two_users_run_both_journeys_without_a_failure(
        sims: tuple[str, str], tmp_path: Path) -> None:
    trustly, cms = sims
    stats = tmp_path / "stats.json"
    done = subprocess.run(
        [SCANPAY, "load", "--trustly-url", trustly, "--cms-url", cms, "--users", "2",
         "--spawn-rate", "2", "--run-time", str(RUN_TIME_S), "--stats-file", str(stats),
         "--journey", "qr-token", "--journey", "scan-pay", "--results-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=RUN_TIME_S + 40,
        env={**os.environ, "PYTHONUNBUFFERED": "1"}, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    entries: list[dict[str, Any]] = json.loads(stats.read_text())
    by_name = {entry["name"]: entry for entry in entries}
    assert sum(entry["num_failures"] for entry in entries) == 0, by_name
    qr_tokens = by_name["CMS->Trustly POST /auth-service/api/oauth2/qrcode/token"]
    journeys = by_name["scan-then-pay (QR to CREDITED)"]
    assert qr_tokens["num_requests"] >= 3
    assert journeys["num_requests"] >= 3
    for step in ("EGM->CMS POST /cws/v1/egms/[egm]/qr", "Phone->Trustly GET /api/v1/scan/[code]",
                 "Phone->Trustly POST /api/v1/scan/[code]/payments"):
        assert by_name[step]["num_requests"] >= journeys["num_requests"], step
    assert "--run-time limit reached" in done.stderr  # it stopped by itself, on time
