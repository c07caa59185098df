"""`scanpay rotate`: keep every EGM's QR fresh for a sim_cms served by someone else.

`scanpay serve` rotates QRs in a thread of its own process. Under gunicorn there is no such
thread (each worker would rotate, and forked threads do not survive anyway), so deployments
run this command as a separate process next to the CMS workers, on the same database. Two
rotators at once are harmless: each acquisition is claimed under the EGM's row lock first.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from flask import Flask
from rich.console import Console
from rich.markup import escape

from sim_cms.app import create_app as create_cms
from sim_cms.context import EXTENSION, CmsContext
from sim_cms.qr_display import RotationReport, current_qr, rotate_due
from sim_cms.settings import load_cms_settings
from simkit.clock import format_instant

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass(frozen=True)
class RotateOptions:
    """The flags of `scanpay rotate`."""

    config_file: Path | None = None
    interval_s: float = 1.0
    heartbeat: Path | None = None


def build_rotator(options: RotateOptions) -> Flask:
    """sim_cms built exactly as its WSGI entry point builds it (environment + config file).

    Building the app also migrates and seeds, which is idempotent, so the rotator may start
    before or after the CMS workers.
    """
    return create_cms(load_cms_settings(config_path=options.config_file))


def report_lines(ctx: CmsContext, report: RotationReport) -> list[str]:
    """One console line per acquisition and per failure of a rotation pass."""
    now = format_instant(ctx.clock.now())
    lines = []
    with ctx.db.read() as session:
        for egm_id in report.acquired:
            shown = current_qr(session, egm_id)
            until = format_instant(shown.rotates_at) if shown else "?"
            lines.append(f"{now} [green]acquired[/] {egm_id}: new QR, rotates at {until}")
    for egm_id, error in sorted(report.failed.items()):
        lines.append(f"{now} [red]failed[/]   {egm_id}: {escape(error)}")
    return lines


def rotation_pass(ctx: CmsContext, console: Console) -> None:
    """Run one pass and print what it did; an unexpected error is printed, not raised.

    The rotator must outlive a database restart or a Trustly outage: the next tick retries.
    """
    try:
        report = rotate_due(ctx)
    except Exception as exc:  # keep rotating; the container's restart is the last resort
        console.print(f"[red]rotation pass failed:[/] {escape(repr(exc))}")
        return
    for line in report_lines(ctx, report):
        console.print(line)


def run_rotation(app: Flask, console: Console, stop: threading.Event,
                 options: RotateOptions) -> int:
    """Rotate every `options.interval_s` until `stop` is set; returns the number of passes.

    The heartbeat file, touched after each pass, lets a container health check tell a stuck
    rotator from a live one without an HTTP port.
    """
    ctx: CmsContext = app.extensions[EXTENSION]
    passes = 0
    while not stop.is_set():
        rotation_pass(ctx, console)
        passes += 1
        if options.heartbeat is not None:
            options.heartbeat.touch()
        stop.wait(options.interval_s)
    return passes


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Turn Ctrl-C and SIGTERM (what `docker stop` sends) into `stop.set()` for the block.

    A pass in progress then finishes instead of being cut off between Trustly's answer and
    the database write that records it.
    """

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_rotator(options: RotateOptions, console: Console) -> None:
    """Build sim_cms from the environment and rotate its QRs until interrupted."""
    if options.interval_s <= 0:
        raise ValueError("--interval must be a positive number of seconds")
    app = build_rotator(options)
    settings = app.extensions[EXTENSION].settings
    console.print(
        f"[bold green]scanpay rotate[/]: {len(settings.egms)} configured EGMs of "
        f"{escape(settings.casino_name)}, QR tokens from {settings.trustly.base_url}, a pass "
        f"every {options.interval_s:g}s (rotation {settings.rotation_buffer_s}s before "
        "expiry). Ctrl-C stops."
    )
    stop = threading.Event()
    with stop_on_signals(stop):
        passes = run_rotation(app, console, stop, options)
    console.print(f"stopped after {passes} passes")
