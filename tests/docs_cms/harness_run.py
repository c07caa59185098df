"""Start the docs-built CMS on free 127.0.0.1 ports and run `scanpay certify` against it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.processes import SCANPAY, free_port, running

REPO = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "docs-cms-admin-token"
HOOKS = ["egm-state", "clock", "faults", "journal", "reset", "fundings", "qr-rotate"]


@dataclass(frozen=True)
class Certified:
    """One certify run: its exit code, console, and report.json."""

    returncode: int
    console: str
    report: dict[str, Any]

    def scenario(self, scenario_id: str) -> dict[str, Any]:
        """The report's entry for `scenario_id`."""
        return next(s for s in self.report["scenarios"] if s["id"] == scenario_id)


def target_toml(cms_url: str, trustly_port: int, read_timeout_s: float) -> str:
    """A partner target file as docs/partner-contract.md describes it, every hook declared."""
    return f"""kind = "partner"
name = "docs-built CMS"

[cms]
base_url = "{cms_url}"
auth = {{ kind = "oauth2_client_credentials", client_id = "tpas-client", \
client_secret = "tpas-secret" }}
read_timeout_s = {read_timeout_s}
egm_ids = ["EGM-001", "EGM-002", "EGM-003", "EGM-004", "EGM-005"]

[cms.egm]
read = "/cws/v1/egms/{{egm_id}}"
acquire_qr = "/cws/v1/egms/{{egm_id}}/qr"
qr_png = "/egm/{{egm_id}}/qr.png"
screen = "/egm/{{egm_id}}"

[control]
admin_token = "{ADMIN_TOKEN}"
hooks = {json.dumps(HOOKS)}

[trustly]
host = "127.0.0.1"
port = {trustly_port}
"""


@contextmanager
def docs_cms_target(work: Path, defect: str | None = None,
                    read_timeout_s: float = 5.0) -> Iterator[Path]:
    """Serve the CMS (with `defect`, if any) until the block ends; yield its target file."""
    trustly_port, cms_port = free_port(), free_port()
    args = [sys.executable, "-m", "tests.docs_cms", "--port", str(cms_port),
            "--trustly-url", f"http://127.0.0.1:{trustly_port}",
            "--database", str(work / "docs-cms.db"), "--admin-token", ADMIN_TOKEN]
    if defect is not None:
        args += ["--defect", defect]
    cms_url = f"http://127.0.0.1:{cms_port}"
    with running(args, cms_url + "/health", cwd=REPO):
        target = work / "docs-cms.toml"
        target.write_text(target_toml(cms_url, trustly_port, read_timeout_s))
        yield target


def certify(target: Path, report_dir: Path, only: list[str] | None = None) -> Certified:
    """`scanpay certify --target` as a partner runs it."""
    args = [SCANPAY, "certify", "--target", str(target), "--report-dir", str(report_dir)]
    if only:
        args += ["--only", ",".join(only)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=240, cwd=REPO,
                          check=False)
    report = json.loads((report_dir / "report.json").read_text())
    return Certified(done.returncode, done.stdout + done.stderr, report)
