"""PostgreSQL for the benchmarks: scratch databases made and dropped, and `pgbench -N`.

Every benchmark database is new (a unique name) and dropped at the end, so a run never touches
a database someone else uses and leaves nothing behind.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy.engine import make_url

from bench.common import Pinning

_TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.MULTILINE)


class PostgresUnavailable(Exception):
    """No server at the admin URL, or no pgbench."""


def _plain(url: str) -> str:
    """The URL as libpq reads it (no SQLAlchemy driver suffix)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def scratch_database(admin_url: str, prefix: str) -> Iterator[str]:
    """A new empty database for the block, dropped afterwards; yields its URL."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        admin = psycopg.connect(_plain(admin_url), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise PostgresUnavailable(f"PostgreSQL at {admin_url}: {exc}") from exc
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield _plain(str(make_url(admin_url).set(database=name)))
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pgbench_tps(url: str, clients: int, duration_s: float, pinning: Pinning) -> float:
    """`pgbench -N` (simple update) with `clients` clients on a database it initialises."""
    if shutil.which("pgbench") is None:
        raise PostgresUnavailable("pgbench is not installed (apt-get install postgresql-client)")
    parsed = make_url(url)
    where = ["-h", parsed.host or "127.0.0.1", "-p", str(parsed.port or 5432),
             "-U", parsed.username or "postgres"]
    db = parsed.database or ""
    subprocess.run(["pgbench", *where, "-i", "-q", "-s", "1", db],
                   check=True, capture_output=True, timeout=120)
    seconds = max(1, math.ceil(duration_s))
    done = subprocess.run(
        pinning.taskset(["pgbench", *where, "-N", "-c", str(clients), "-j", "1",
                         "-T", str(seconds), db], which="load"),
        check=True, capture_output=True, text=True, timeout=seconds + 120)
    match = _TPS.search(done.stdout)
    if match is None:
        raise PostgresUnavailable(f"no tps in pgbench's output:\n{done.stdout[-1000:]}")
    return float(match.group(1))
