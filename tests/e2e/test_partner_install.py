"""A partner's install works exactly as README.md writes it.

The README's partner-install block is run line by line from an empty directory (only
`path/to/scanpay-sim` is replaced, by a copy of this checkout, so the build leaves nothing in
the shared tree): it builds the wheel, installs it into a fresh virtual environment and lists
the catalogue. Then examples/partner_ci/test_partner_cms.py, copied alone into another empty
directory, passes with that environment's pytest, as examples/partner_ci/README.md says.
Nothing of this project is on the path: the environment is a partner's shell.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.certify.scenarios import CATALOGUE

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
EXAMPLE = REPO / "examples" / "partner_ci" / "test_partner_cms.py"
CHECKOUT = "path/to/scanpay-sim"
BLOCK = re.compile(r"<!-- partner-install:[^>]*-->\n```sh\n(?P<body>.*?)```", re.DOTALL)
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__",
                                    ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis",
                                    "data", "reports", "load-results", "*.db", "*.db-*")


def install_commands() -> list[str]:
    """The README's partner-install block, one command a line."""
    found = BLOCK.search(README.read_text(encoding="utf-8"))
    assert found, "README.md lost its partner-install block"
    return [line for line in found.group("body").splitlines() if line.strip()]


def partner_env() -> dict[str, str]:
    """A partner's shell: Python 3.11 first on PATH, nothing of ours in the environment."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("SCANPAY_", "PYTEST_", "PYTHONPATH", "VIRTUAL_ENV"))}
    python_dir = str(Path(getattr(sys, "_base_executable", sys.executable)).parent)
    path = [entry for entry in env.get("PATH", "").split(os.pathsep)
            if not entry.startswith(str(REPO))]
    env["PATH"] = os.pathsep.join([python_dir, *path])
    return env


def run(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """One shell line, as a partner would type it."""
    done = subprocess.run(command, shell=True, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def test_the_readme_and_the_ci_examples_name_the_wheel_this_checkout_builds() -> None:
    version = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(),
                        re.MULTILINE)
    assert version
    wheel = f"scanpay_sim-{version.group(1)}-py3-none-any.whl"
    assert any(wheel in line for line in install_commands())
    for snippet in ("github-actions.yml", "gitlab-ci.yml"):  # the CI jobs install that wheel
        text = (EXAMPLE.parent / snippet).read_text(encoding="utf-8")
        assert f"pip install ci/wheels/{wheel}" in text, snippet


@pytest.mark.slow
def test_a_partner_installs_the_wheel_and_runs_certify_and_the_example(tmp_path: Path) -> None:
    source = tmp_path / "scanpay-sim"
    shutil.copytree(REPO, source, ignore=NOT_SOURCE)
    home, elsewhere = tmp_path / "partner", tmp_path / "partner-tests"
    home.mkdir()
    elsewhere.mkdir()
    env = partner_env()

    outputs = [run(line.replace(CHECKOUT, str(source)), home, env).stdout
               for line in install_commands()]

    listed = outputs[-1]
    assert all(item.id in listed for item in CATALOGUE), listed[-2000:]
    (elsewhere / EXAMPLE.name).write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    tests = run(f"{home / 'scanpay-venv' / 'bin' / 'pytest'} -q -rs -p no:cacheprovider "
                f"{EXAMPLE.name}", elsewhere, env).stdout
    assert re.search(r"\b\d+ passed\b", tests) and "failed" not in tests, tests[-3000:]
    where = run(f"{home / 'scanpay-venv' / 'bin' / 'python'} -c "
                "'import harness; print(harness.__file__)'", elsewhere, env).stdout
    assert where.startswith(str(home / "scanpay-venv")), where  # the wheel, not a checkout
