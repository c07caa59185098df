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

    def check(self, method: str, path: str, status: int, headers: Any, body: Any) -> None:
        """Assert the response is documented: status, required headers and body schema."""
        template, operation = self._operation(method, path)
        responses = operation["responses"]
        assert str(status) in responses, f"{method} {template} answered undocumented {status}"
        documented = responses[str(status)]
        for name, spec in documented.get("headers", {}).items():
            if spec.get("required"):
                assert name in headers, f"{status} of {template} lacks header {name}"
        content = documented.get("content")
        if content:
            media = next(iter(content))
            schema = content[media]["schema"]
            errors = sorted(self._root.evolve(schema=schema).iter_errors(body), key=str)
            assert not errors, f"{method} {template} {status}: " + "; ".join(
                e.message for e in errors)
        self.seen.add((method.upper(), template, str(status)))
