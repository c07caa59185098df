"""Start-up checks that turn the usual set-up mistakes into one clear paragraph.

A sim that starts on a database that does not exist, on a URL it cannot use, on the other
sim's database, or on a clock nothing can move would otherwise fail deep inside SQLAlchemy or
Alembic with a traceback (or, for the clock, not fail at all). These checks run before the app
is built, in every entry point (`scanpay serve`, the WSGI factories), and raise `ConfigError`
with what is wrong and how to fix it; the entry point prints it and exits 2 (the WSGI
factories through `refusing_start`).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import MetaData, create_engine, inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from simkit.db import normalise_url
from simkit.settings import ConfigError

SUPPORTED = ("sqlite", "postgresql")
ALEMBIC_TABLE = "alembic_version"
_PASSWORD = re.compile(r"(://[^:/@]*:)[^@/]*@")


def shown(url: str) -> str:
    """`url` fit for a message: its password, if any, masked."""
    return _PASSWORD.sub(r"\1***@", url)


def parse_database_url(url: str, *, sim: str, setting: str) -> URL:
    """The parsed URL, or ConfigError when it is not a SQLite or PostgreSQL database URL."""
    fix = (f"Give {sim} a URL like sqlite:///data/{sim.removeprefix('sim_')}.db or "
           f"postgresql://USER@HOST:5432/DATABASE ({setting}).")
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"{sim}'s database URL {shown(url)!r} is not a URL. {fix}") from None
    if parsed.get_backend_name() not in SUPPORTED:
        raise ConfigError(f"{sim}'s database URL {shown(url)!r} is not supported: {sim} runs "
                          f"on SQLite or PostgreSQL only. {fix}")
    return parsed


def same_database(a: str, b: str) -> bool:
    """Whether two database URLs name the same database (same SQLite file, or same
    PostgreSQL server and database)."""
    first, second = make_url(a), make_url(b)
    if first.get_backend_name() != second.get_backend_name():
        return False
    if first.get_backend_name() == "sqlite":
        if not first.database or not second.database or ":memory:" in (first.database,
                                                                          second.database):
            return False
        return Path(first.database).resolve() == Path(second.database).resolve()
    return ((first.host or "localhost", first.port or 5432, first.database)
            == (second.host or "localhost", second.port or 5432, second.database))


def check_database(url: str, *, sim: str, metadata: Iterable[MetaData], setting: str) -> None:
    """Refuse a database `sim` cannot open, or one that holds another system's tables.

    `metadata` is every table `sim` has (its own and the kernel's); a database holding any
    other table is not this sim's: most likely the other sim's, whose migrations would clash
    with this one's (both number their revisions 0001, 0002, ...).
    """
    parsed = parse_database_url(url, sim=sim, setting=setting)
    try:
        engine = create_engine(normalise_url(url), poolclass=NullPool)
    except (NoSuchModuleError, ImportError, ArgumentError) as exc:
        raise ConfigError(f"{sim}'s database URL {shown(url)!r} names a driver this install "
                          f"does not have ({exc}). Use postgresql://... (psycopg 3) or "
                          f"sqlite:///... ({setting}).") from None
    try:
        with engine.connect() as connection:
            tables = set(inspect(connection).get_table_names())
    except SQLAlchemyError as exc:
        raise ConfigError(_cannot_open(parsed, url, exc, sim=sim, setting=setting)) from None
    finally:
        engine.dispose()
    own = {name for meta in metadata for name in meta.tables} | {ALEMBIC_TABLE}
    foreign = sorted(tables - own)
    if foreign:
        listed = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise ConfigError(
            f"{sim}'s database {shown(url)} holds tables {sim} does not have ({listed}): it "
            f"belongs to another system, most likely the other sim. Each sim needs a database "
            f"of its own: give {sim} an empty database, or the one it used before ({setting}).")


def _cannot_open(parsed: URL, url: str, exc: SQLAlchemyError, *, sim: str,
                 setting: str) -> str:
    """The paragraph for a database that would not open: what the server said, and the fix."""
    reason = driver_reason(exc)
    start = f"{sim} cannot open its database {shown(url)}: {reason}."
    if parsed.get_backend_name() == "sqlite":
        return (f"{start} Check that the directory of {parsed.database} exists and this user "
                f"may write there, or give another URL ({setting}).")
    where = f"{parsed.host or 'localhost'}:{parsed.port or 5432}"
    if "does not exist" in reason and parsed.database and f'"{parsed.database}"' in reason:
        user = f" -U {parsed.username}" if parsed.username else ""
        return (f"{start} Create it (createdb -h {parsed.host or 'localhost'} -p "
                f"{parsed.port or 5432}{user} {parsed.database}) or give {sim} an existing "
                f"database ({setting}).")
    return (f"{start} Check that PostgreSQL runs at {where} and lets this user in, or fix "
            f"the URL ({setting}).")


def driver_reason(exc: Exception) -> str:
    """The driver's own reason in a few words: psycopg's 'connection failed: connection to
    server at "h", port p failed: FATAL:  database "x" does not exist' becomes 'database "x"
    does not exist'."""
    said = str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__]
    reason = said[0].rsplit("failed:", 1)[-1].strip().removeprefix("FATAL:")
    return " ".join(reason.split()).rstrip(".") or type(exc).__name__


def check_separate_databases(first: tuple[str, str], second: tuple[str, str], *,
                             settings: str) -> None:
    """Refuse two sims (each given as name and database URL) on one database."""
    (sim_a, url_a), (sim_b, url_b) = first, second
    if same_database(url_a, url_b):
        raise ConfigError(
            f"{sim_a} and {sim_b} were both given the database {shown(url_a)}: they are two "
            f"systems and each needs its own (their tables and migrations would collide). "
            f"Give them different databases ({settings}).")


def check_clock_movable(controllable_clock: bool, admin_token: str | None, *,
                        clock_setting: str, admin_setting: str) -> None:
    """Refuse a controllable clock without the admin token that moves it.

    A controllable clock starts frozen and only `POST /_sim/clock` moves it; `/_sim/` exists
    only with an admin token, so without one the sim would run on a clock nothing can move.
    """
    if controllable_clock and not admin_token:
        raise ConfigError(
            f"{clock_setting} needs an admin token: a controllable clock stands still until "
            f"POST /_sim/clock moves it, and /_sim/ is served only with an admin token, so "
            f"nothing could ever move this one. Give {admin_setting}, or leave "
            f"{clock_setting} out to run on the system clock.")


@contextmanager
def refusing_start(sim: str) -> Iterator[None]:
    """For a WSGI app factory: a ConfigError in the block becomes its paragraph on stderr and
    exit code 2, not a traceback (gunicorn --preload then exits 2; granian names the worker's
    exit and stops)."""
    try:
        yield
    except ConfigError as exc:
        sys.stderr.write(f"{sim}: cannot start: {exc}\n")
        sys.stderr.flush()
        raise SystemExit(2) from None
