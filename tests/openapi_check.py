"""Check real responses against an OpenAPI 3.1 document (schemas are JSON Schema 2020-12)."""

from __future__ import annotations

import re
from typing import Any

from jsonschema import Draft202012Validator


class OpenApiContract:
    """The operations of one document, able to validate a response of any of them."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self._root = Draft202012Validator(document)
        self.seen: set[tuple[str, str, str]] = set()

    def _operation(self, method: str, path: str) -> tuple[str, dict[str, Any]]:
        for template, item in self.document["paths"].items():
            pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
            if re.match(pattern, path) and method.lower() in item:
                return template, item[method.lower()]
        raise AssertionError(f"{method} {path} is not in the OpenAPI document")

    def check(self, method: str, path: str, status: int, headers: Any, body: Any) -> str:
        """Assert the response is documented: status, required headers, media type and body.

        The body is validated against the schema of the response's own media type (a status
        may document application/problem+json rather than application/json); returns the
        path template the request matched.
        """
        template, operation = self._operation(method, path)
        responses = operation["responses"]
        assert str(status) in responses, f"{method} {template} answered undocumented {status}"
        documented = responses[str(status)]
        for name, spec in documented.get("headers", {}).items():
            if spec.get("required"):
                assert name in headers, f"{status} of {template} lacks header {name}"
        content = documented.get("content")
        if content:
            schema = content[_media_type(content, headers, f"{method} {template} {status}")]
            errors = sorted(self._root.evolve(schema=schema["schema"]).iter_errors(body), key=str)
            assert not errors, f"{method} {template} {status}: " + "; ".join(
                e.message for e in errors)
        self.seen.add((method.upper(), template, str(status)))
        return template


def _media_type(content: dict[str, Any], headers: Any, where: str) -> str:
    """The documented media type the response carries (the first one if it names none)."""
    sent = str(headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if not sent:
        return next(iter(content))
    assert sent in content, f"{where} answered {sent}, documented {sorted(content)}"
    return sent
