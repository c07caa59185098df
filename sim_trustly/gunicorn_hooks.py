"""gunicorn hooks for sim_trustly (`-c python:sim_trustly.gunicorn_hooks`).

Each worker runs the TPAS recovery sweep on a timer, so a payment left in FUNDING by a worker
that died is finished by the others.
"""

from __future__ import annotations

from typing import Any

from sim_trustly.tpas.recovery import start_recovery_worker


def post_fork(server: Any, worker: Any) -> None:
    """Start the periodic recovery sweep in the new worker (the preloaded app is shared)."""
    start_recovery_worker(server.app.wsgi())
