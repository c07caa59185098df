"""A tiny Flask app wired with the kernel (journal, faults, control API), for the kernel's tests.

It stands in for a sim: a counter whose increments are committed by a view, so a test can
tell whether a request was applied, and a login echo that carries secrets both ways.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request
from sqlalchemy import Integer
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from werkzeug.serving import make_server

from simkit.clock import Clock, ManualClock
from simkit.clock_store import DatabaseClockStore
from simkit.control import ControlHooks, enable_control, make_control_blueprint
from simkit.db import Database, sqlite_url
from simkit.errors import BadRequest, SimError, install_error_handler
from simkit.faults import FaultPlan, install_faults
from simkit.journal import Journal, install_journal
from simkit.models import KernelBase

ADMIN_TOKEN = "admin-token-for-tests"
START = datetime(2031, 3, 1, 12, 0, tzinfo=UTC)


class AppBase(DeclarativeBase):
    """The test app's own tables (a sim's tables live apart from the kernel's)."""


class Counter(AppBase):
    """One row counting applied POST /counter requests."""

    __tablename__ = "test_counter"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


@dataclass
class Kernel:
    """The app and the kernel pieces a test inspects."""

    app: Flask
    db: Database
    clock: Clock
    journal: Journal
    faults: FaultPlan
    resets: list[int] = field(default_factory=list)
    seeds: list[dict[str, Any]] = field(default_factory=list)

    def counter(self) -> int:
        """How many POST /counter requests were applied."""
        with self.db.read() as session:
            row = session.get(Counter, 1)
            return row.value if row is not None else 0


def make_database(tmp_path: Path, name: str = "kernel.db") -> Database:
    """A SQLite database file with the kernel's and the test app's tables."""
    db = Database(sqlite_url(str(tmp_path / name)))
    KernelBase.metadata.create_all(db.engine)
    AppBase.metadata.create_all(db.engine)
    return db


def _render(error: SimError) -> Response:
    return jsonify(code=error.code, message=error.message)


def make_kernel_app(
    tmp_path: Path, *, clock: Clock | None = None, faults: FaultPlan | None = None,
    control: bool = True, seed_hook: bool = True,
) -> Kernel:
    """Build the test app; by default a ManualClock on the database, control enabled."""
    db = make_database(tmp_path)
    clock = clock if clock is not None else ManualClock(START, DatabaseClockStore(db))
    app = Flask("kernel_test_app")
    app.config["PROPAGATE_EXCEPTIONS"] = True
    kernel = Kernel(app, db, clock, Journal(db, clock), faults or FaultPlan(db))
    install_error_handler(app, _render)
    install_journal(app, kernel.journal)
    install_faults(app, kernel.faults)
    _add_views(kernel)
    if control:
        enable_control(app, _control_blueprint(kernel, seed_hook=seed_hook))
    return kernel


def _control_blueprint(kernel: Kernel, *, seed_hook: bool) -> Any:
    def seed(body: dict[str, Any]) -> dict[str, Any]:
        kernel.seeds.append(body)
        return {"seeded": body}

    hooks = ControlHooks(
        reset=lambda: kernel.resets.append(1),
        seed=seed if seed_hook else None,
        state=lambda: {"counter": kernel.counter()},
    )
    blueprint = make_control_blueprint(
        admin_token=ADMIN_TOKEN, clock=kernel.clock, journal=kernel.journal,
        faults=kernel.faults, hooks=hooks,
    )

    @blueprint.post("/poke")
    def poke() -> Response:  # a sim's own control route, added after the kernel's
        return jsonify(poked=True)

    return blueprint


def _add_views(kernel: Kernel) -> None:
    app = kernel.app

    @app.get("/ping")
    def ping() -> Response:
        return jsonify(pong=True)

    @app.post("/counter")
    def increment() -> tuple[Response, int]:
        with kernel.db.write() as session:
            row = session.get(Counter, 1)
            if row is None:
                row = Counter(id=1, value=0)
                session.add(row)
            row.value += 1
            value = row.value
        return jsonify(value=value), 201

    @app.get("/counter")
    def read_counter() -> Response:
        return jsonify(value=kernel.counter())

    @app.post("/login")
    def login() -> Response:
        body = request.get_json(silent=True) or {}
        return jsonify(user=body.get("user"), access_token="server-issued-secret")

    @app.post("/refuse")
    def refuse() -> Response:
        raise BadRequest("refused on purpose")


@contextmanager
def serve(app: Flask) -> Iterator[str]:
    """Run `app` on a real threaded werkzeug server on a free port; yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
