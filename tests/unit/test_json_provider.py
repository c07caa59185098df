"""Responses made through orjson read exactly as Flask's own provider would write them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import Flask, jsonify

from simkit.json_provider import OrjsonProvider, install_orjson


@dataclass
class _Point:
    x: int
    y: int


SAMPLE = {"b": 1, "a": [1, 2, {"z": None, "y": True}], "when": datetime(2026, 12, 6, tzinfo=UTC),
          "point": _Point(1, 2), "text": "café"}


def _body(app: Flask) -> bytes:
    with app.app_context():
        return jsonify(SAMPLE).get_data()


def test_orjson_responses_parse_to_what_flask_writes() -> None:
    plain, fast = Flask("plain"), Flask("fast")
    install_orjson(fast)
    assert isinstance(fast.json, OrjsonProvider)
    assert json.loads(_body(fast)) == json.loads(_body(plain))
    assert _body(fast).endswith(b"}\n")


def test_members_come_sorted_as_with_flask() -> None:
    app = Flask("fast")
    install_orjson(app)
    assert list(json.loads(_body(app))) == sorted(SAMPLE)
    with app.app_context():
        assert app.json.dumps({2: "x", 1: "y"}) == '{"1":"y","2":"x"}'


def test_integers_beyond_64_bits_are_written_as_flask_would() -> None:
    app = Flask("fast")
    install_orjson(app)
    with app.app_context():
        assert json.loads(jsonify({"amount": 10**30}).get_data()) == {"amount": 10**30}
        assert app.json.dumps([2**70]) == "[1180591620717411303424]"
