"""Answers as (status, JSON body, headers), and RFC 9457 problems with a stable `code`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any


@dataclass
class Answer:
    """What a service decided to answer; the views turn it into an HTTP response."""

    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


def dump(body: Any) -> str:
    """The one JSON encoding of every answer, so a stored answer replays byte for byte."""
    return json.dumps(body, separators=(",", ":"))


def ok(status: int, body: Any, **headers: str) -> Answer:
    """A JSON answer."""
    return Answer(status, dump(body), dict(headers))


def problem_body(status: int, code: str, detail: str, **extra: Any) -> dict[str, Any]:
    """The problem document for `code`."""
    return {"type": "https://docs-cms.example/problems/" + code.lower().replace("_", "-"),
            "title": HTTPStatus(status).phrase, "status": status, "detail": detail,
            "code": code, **extra}


def problem(status: int, code: str, detail: str, headers: dict[str, str] | None = None,
            **extra: Any) -> Answer:
    """A problem+json answer."""
    return Answer(status, dump(problem_body(status, code, detail, **extra)), headers or {},
                  "application/problem+json")


class Refused(Exception):
    """A request refused before it reached a decision (nothing stored)."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.body)
        self.answer = answer
