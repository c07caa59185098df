"""The baseline: a bare Flask endpoint that does what any JSON endpoint must, and nothing more.

It parses the same JSON body as the QR token endpoint and answers a JSON object of about the
same size, so the gap between the two under the same server is what sim_trustly itself costs
(authentication, database, signing), not Flask, gunicorn or HTTP.
"""

from __future__ import annotations

import secrets

from flask import Flask, Response, jsonify, request

BARE_PATH = "/bare/token"
# About the size of an HS256 QR JWT, so both endpoints send similar bytes.
_TOKEN_CHARS = 300


def create_app() -> Flask:
    """A Flask app with one POST route that echoes a token-shaped JSON answer."""
    app = Flask(__name__)

    @app.post(BARE_PATH)
    def bare_token() -> tuple[Response, int]:
        body = request.get_json()
        code = secrets.token_urlsafe(16)
        return jsonify({
            "url": f"http://127.0.0.1/scan/{code}",
            "token": f"{body['merchantId']}.{body['egmId']}.".ljust(_TOKEN_CHARS, "x"),
            "expiresAt": "2026-11-25T21:10:00.000Z",
        }), 200

    return app
