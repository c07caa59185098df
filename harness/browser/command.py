"""The `--browser` side of `scanpay flow`: sims on sockets, a Chromium, rich output, exit code.

Kept apart from `harness.cli.main` so Selenium is imported only when `--browser` is asked for
(it is the `browser` extra, not a core dependency), and apart from `harness.browser.flow` so
the flow stays free of presentation.
"""

from __future__ import annotations

import json
import secrets
import socket
import tempfile
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import click
from flask import Flask
from rich.console import Console
from rich.markup import escape
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from harness.browser.chromium import BrowserPaths, BrowserUnavailable, chromium
from harness.browser.flow import (
    BrowserFlow,
    BrowserFlowError,
    BrowserFlowOptions,
    BrowserFlowResult,
    BrowserStep,
    check_screen_reachable,
)
from harness.cli.serve import ServeOptions, build_cms, build_trustly
from harness.flow import format_money

EXIT_OK, EXIT_FAILED, EXIT_CANNOT_RUN = 0, 1, 2


def print_step(console: Console, step: BrowserStep) -> None:
    """One numbered line per step, with the screenshot it saved."""
    shot = f"  [dim]{escape(str(step.screenshot))}[/]" if step.screenshot else ""
    console.print(f"[bold cyan]{step.number}.[/] [bold]{escape(step.title)}[/]: "
                  f"{escape(step.detail)}{shot}")


def render_browser_result(console: Console, result: BrowserFlowResult) -> None:
    """The outcome line: credited and seen on the screen, or where the flow stopped."""
    if result.error is not None:
        console.print(f"[red]browser flow stopped at {escape(str(result.error))}[/]")
        return
    before = format_money(result.meter_before, result.currency)
    after = format_money(result.meter_after, result.currency)
    style = "green" if result.ok else "red"
    console.print(f"[{style}]{result.payment_status}[/]: [bold]{result.egm_id} meter {after}[/] "
                  f"(was {before}), shown on the EGM screen without a reload")


def _refuse(message: str) -> int:
    Console(stderr=True, soft_wrap=True).print(
        f"[red]scanpay flow --browser: {escape(message)}[/]")
    return EXIT_CANNOT_RUN


def run_browser_command(trustly_url: str | None, cms_url: str | None,
                        options: BrowserFlowOptions, paths: BrowserPaths,
                        as_json: bool) -> int:
    """Run the browser flow against running sims (by URL) or sims served here; the exit code.

    0 when credited and shown on the EGM screen, 1 when a step failed, 2 when it could not
    run at all (no Chromium or chromedriver, or the CMS unreachable). The CMS is checked
    before a browser is started, so a wrong URL fails in milliseconds.
    """
    out = Console(soft_wrap=True, stderr=as_json)  # with --json, stdout is the JSON alone
    try:
        paths.check()
    except BrowserUnavailable as exc:
        return _refuse(str(exc))
    with ExitStack() as stack:
        if cms_url is None:
            sims = stack.enter_context(served_sims())
            cms_url = sims.cms_url
            out.print(f"sims served here: Trustly {sims.trustly_url}, CMS {sims.cms_url}")
        else:
            out.print(f"running sims: CMS {cms_url} (the QR names the Trustly; "
                      f"given {trustly_url})")
        result = BrowserFlowResult(options.egm_id, options.amount, options.currency)
        try:
            check_screen_reachable(cms_url, options.egm_id, options.timeout_s)
            driver = stack.enter_context(chromium(paths))
        except BrowserUnavailable as exc:
            return _refuse(str(exc))
        except BrowserFlowError as exc:
            result.error = exc
        else:
            out.print(f"headless Chromium; screenshots in {escape(str(options.screenshots))}")
            result = BrowserFlow(driver, cms_url, options,
                                 on_step=lambda step: print_step(out, step)).run()
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    render_browser_result(out, result)
    if result.error is not None and result.error.unreachable:
        return EXIT_CANNOT_RUN
    return EXIT_OK if result.ok else EXIT_FAILED


# -- in-process sims on real sockets -------------------------------------------------------

@dataclass(frozen=True)
class ServedSims:
    """Sims running in this process on 127.0.0.1 sockets a browser can open."""

    trustly_url: str
    cms_url: str
    admin_token: str


def _listening_socket() -> socket.socket:
    """A socket bound to a free 127.0.0.1 port and listening (no race for the port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


class _QuietHandler(WSGIRequestHandler):
    """No access log: the flow prints its own steps, and the sims' lines would bury them."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Log nothing (errors are still logged by `log_error`)."""


def _serve(app: Flask, sock: socket.socket) -> BaseWSGIServer:
    host, port = sock.getsockname()
    server = make_server(host, port, app, threaded=True, fd=sock.fileno(),
                         request_handler=_QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True, name=f"flow-{port}").start()
    return server


@contextmanager
def served_sims(data_dir: Path | None = None) -> Iterator[ServedSims]:
    """Both sims, as `scanpay serve` builds them, on free 127.0.0.1 ports for the block.

    The embedded sims have no sockets, and a browser needs real HTTP; the ports are bound
    before the sims are built, so the QR urls name ports that are already ours.
    """
    with ExitStack() as stack:
        if data_dir is None:
            data_dir = Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix="scanpay-browser-")))
        socks = [stack.enter_context(_listening_socket()) for _ in range(2)]
        trustly_port, cms_port = (s.getsockname()[1] for s in socks)
        token = secrets.token_urlsafe(24)
        options = ServeOptions(trustly_port=trustly_port, cms_port=cms_port,
                               data_dir=data_dir, admin_token=token)
        trustly, cms = build_trustly(options), build_cms(options)
        for app, sock in ((trustly, socks[0]), (cms, socks[1])):
            server = _serve(app, sock)
            stack.callback(server.server_close)
            stack.callback(server.shutdown)
        yield ServedSims(f"http://127.0.0.1:{trustly_port}", f"http://127.0.0.1:{cms_port}",
                         token)
