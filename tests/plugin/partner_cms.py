"""sim_cms served over HTTP as if it were a partner's CMS, for the plugin's partner-target runs.

The harness's partner target runs its own sim_trustly on a configured port and reaches the
CMS by base URL; here the "partner" is our reference CMS on a free port, whose QR requests
go to that Trustly port. Nothing of the plugin knows it is ours.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from werkzeug.serving import make_server

from sim_cms.app import create_app
from sim_cms.settings import CmsSettings, TrustlyLink
from simkit.db import sqlite_url


def free_port() -> int:
    """A port nothing listens on right now (the OS's choice of an ephemeral one)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class PartnerCms:
    """Where the stand-in partner CMS listens and where it expects Trustly."""

    base_url: str
    trustly_port: int
    admin_token: str | None = None  # the control API's token, when it is served

    def target_toml(self, name: str = "Stand-in partner CMS",
                    hooks: tuple[str, ...] = ()) -> str:
        """A partner target file for this CMS: reference API, OAuth2, and `hooks` declared
        (none by default; any needs `serve_partner_cms(..., admin_token=...)`)."""
        control = ""
        if hooks:
            assert self.admin_token is not None, "hooks need the control API"
            declared = ", ".join(f'"{hook}"' for hook in hooks)
            control = f'[control]\nadmin_token = "{self.admin_token}"\nhooks = [{declared}]\n'
        return f"""
kind = "partner"
name = "{name}"

[cms]
base_url = "{self.base_url}"
egm_ids = ["EGM-001", "EGM-002"]
limits_auth = {{ client_id = "casino-desk", client_secret = "casino-desk-secret" }}

[cms.auth]
kind = "oauth2_client_credentials"
client_id = "tpas-client"
client_secret = "tpas-secret"

[trustly]
host = "127.0.0.1"
port = {self.trustly_port}
{control}"""


@contextmanager
def serve_partner_cms(data_dir: Path, admin_token: str | None = None) -> Iterator[PartnerCms]:
    """sim_cms on 127.0.0.1 (threaded werkzeug) for the block; its control API (and journal)
    only with `admin_token`."""
    trustly_port = free_port()
    settings = CmsSettings(database_url=sqlite_url(str(data_dir / "partner-cms.db")),
                           trustly=TrustlyLink(base_url=f"http://127.0.0.1:{trustly_port}"),
                           admin_token=admin_token)
    app = create_app(settings)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="partner-cms")
    thread.start()
    try:
        yield PartnerCms(f"http://127.0.0.1:{server.server_port}", trustly_port, admin_token)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        app.extensions["sim_cms"].close()
