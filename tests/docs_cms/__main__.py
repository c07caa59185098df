"""Serve the docs-built CMS: `python -m tests.docs_cms --port 9720 --trustly-url URL ...`.

A threaded Werkzeug server (each request on its own thread, so concurrent fundings really
race), bound to 127.0.0.1 by default.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from werkzeug.serving import make_server

from tests.docs_cms.app import Config, create_app
from tests.docs_cms.defects import DEFECTS


def main() -> None:
    """Parse the command line and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m tests.docs_cms", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--trustly-url", required=True, help="the QR Code API's base URL")
    parser.add_argument("--database", type=Path, required=True, help="SQLite file")
    parser.add_argument("--admin-token", required=True)
    parser.add_argument("--defect", choices=sorted(DEFECTS), default=None)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app = create_app(Config(database=args.database, trustly_url=args.trustly_url,
                            admin_token=args.admin_token, defect=args.defect))
    server = make_server(args.host, args.port, app, threaded=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
