"""WireMock serving a canned QR token reply: the "how fast can a mock be" reference.

WireMock comes from the npm package `wiremock` (it ships the standalone jar), installed into a
cache outside the checkout (`~/.cache/scanpay-bench`, or `SCANPAY_BENCH_CACHE`) the first time
it is needed; nothing else is downloaded. Without `java`, or without `npm` and no cached jar,
the reference is skipped with a message saying which.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.common import Pinning, free_port, scrubbed_env
from bench.servers import Ready, Server, run_server

NPM_PACKAGE = "wiremock@3"
INSTALL_TIMEOUT_S = 300


class WireMockUnavailable(Exception):
    """Java or the jar cannot be had here; the message says why."""


def cache_dir() -> Path:
    """Where the npm package is installed (outside git)."""
    default = Path.home() / ".cache" / "scanpay-bench"
    return Path(os.environ.get("SCANPAY_BENCH_CACHE") or default)


def _cached_jar(root: Path) -> Path | None:
    jars = sorted((root / "node_modules" / "wiremock" / "build").glob("wiremock-standalone-*.jar"))
    return jars[-1] if jars else None


def find_jar(install: bool = True) -> Path:
    """The standalone jar, installing the npm package into the cache when allowed."""
    if shutil.which("java") is None:
        raise WireMockUnavailable("java is not installed (apt-get install default-jre-headless)")
    root = cache_dir()
    jar = _cached_jar(root)
    if jar is not None:
        return jar
    npm = shutil.which("npm")
    if npm is None or not install:
        raise WireMockUnavailable(f"no WireMock jar under {root} and npm is not available")
    root.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--prefix", str(root), NPM_PACKAGE],
        capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False)
    jar = _cached_jar(root)
    if done.returncode != 0 or jar is None:
        raise WireMockUnavailable(f"npm install {NPM_PACKAGE} failed: {done.stderr[-500:]}")
    return jar


def _mapping(path: str, reply: dict[str, str]) -> dict[str, object]:
    return {"request": {"method": "POST", "urlPath": path},
            "response": {"status": 200, "jsonBody": reply,
                         "headers": {"Content-Type": "application/json"}}}


@contextmanager
def wiremock(path: str, reply: dict[str, str], ready: bytes, pinning: Pinning,
             install: bool = True) -> Iterator[Server]:
    """WireMock on the server cores answering `reply` to every POST on `path`."""
    jar = find_jar(install)
    with tempfile.TemporaryDirectory(prefix="bench-wiremock-") as root:
        mappings = Path(root) / "mappings"
        mappings.mkdir()
        (mappings / "qr-token.json").write_text(json.dumps(_mapping(path, reply)))
        port = free_port()
        argv = ["java", "-Xmx256m", "-jar", str(jar), "--port", str(port),
                "--bind-address", "127.0.0.1", "--root-dir", root, "--disable-banner",
                "--no-request-journal", "--disable-request-logging",
                "--use-chunked-encoding", "never"]
        with run_server("wiremock", argv, scrubbed_env(), Ready(ready), pinning, port) as server:
            yield server
