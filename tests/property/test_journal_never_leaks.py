"""Whatever arrives, a journaled exchange is stored, and no secret in it ever is.

The bodies a sim journals are not always well formed: a client cuts its connection mid-body,
a fuzzer sends damaged JSON, a header holds bytes nobody expected. Each case once either
stored a secret in clear or lost the entry. Here every body holds a secret under a secret's
name; it is then cut anywhere and damaged at one place outside that name, journaled through
the real `Journal` (and its background writer, into SQLite), and read back as the control
API shows it.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simkit.clock import ManualClock
from simkit.db import Database, sqlite_url
from simkit.journal import Journal
from simkit.models import KernelBase
from tests.property.test_journal_redaction import SECRET, bodies_with_a_secret
from tests.unit.kernel_app import START

_DAMAGE = '"{}[]:,\\ x'
_WINDOW = 6  # no run of this many characters of the secret may be stored


@pytest.fixture(scope="module")
def journal() -> Iterator[Journal]:
    with tempfile.TemporaryDirectory(prefix="journal-leaks-") as folder:
        db = Database(sqlite_url(str(Path(folder) / "journal.db")))
        KernelBase.metadata.create_all(db.engine)
        yield Journal(db, ManualClock(START))
        db.dispose()


@st.composite
def damaged_bodies(draw: st.DrawFn) -> tuple[str, str]:
    """(secret's field name, a JSON text holding the secret, cut and damaged anywhere else)."""
    body: Any = draw(bodies_with_a_secret())
    text = json.dumps(body)
    name = next(key for key in _secret_keys(body))
    quoted = json.dumps(name)
    name_at = text.index(quoted)
    protected = range(name_at, name_at + len(quoted))
    kind = draw(st.sampled_from(["none", "delete", "insert", "replace"]))
    if kind != "none":
        at = draw(st.integers(0, len(text)).filter(lambda i: i not in protected))
        damage = draw(st.sampled_from(_DAMAGE))
        if kind == "delete" and at < len(text):
            text = text[:at] + text[at + 1:]
        elif kind == "insert":
            text = text[:at] + damage + text[at:]
        elif at < len(text):
            text = text[:at] + damage + text[at + 1:]
    cut = draw(st.integers(0, len(text)))
    return name, text[:cut]


def _secret_keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if item == SECRET:
                yield key
            yield from _secret_keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from _secret_keys(item)


def _leaked_runs(stored: str) -> list[str]:
    return [SECRET[i:i + _WINDOW] for i in range(len(SECRET) - _WINDOW + 1)
            if SECRET[i:i + _WINDOW] in stored]


def _store_and_read(journal: Journal, **exchange: Any) -> dict[str, Any]:
    before = journal.query(limit=1)
    last_id = int(before[0]["id"]) if before else 0
    journal.record(correlation_id="c-leaks", method="POST", path="/login", query="", status=200,
                   latency_ms=1, **exchange)
    entries = journal.query(since_id=last_id)
    assert len(entries) == 1, "the exchange was not stored"
    return entries[0]


@settings(max_examples=300, deadline=None, print_blob=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(damaged=damaged_bodies(), as_response=st.booleans())
def test_a_cut_or_damaged_body_is_stored_without_its_secret(
    journal: Journal, damaged: tuple[str, str], as_response: bool,
) -> None:
    _, text = damaged
    headers = [("Content-Type", "application/json")]
    bodies = {"request_body": b"", "response_body": text.encode()} if as_response else {
        "request_body": text.encode(), "response_body": b""}
    entry = _store_and_read(journal, request_headers=headers, response_headers=headers, **bodies)
    assert _leaked_runs(json.dumps(entry)) == []


@settings(max_examples=150, deadline=None, print_blob=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(password=st.text(min_size=1, max_size=30), user=st.text(max_size=10),
       raw=st.booleans())
def test_any_basic_credential_is_stored_masked_and_never_lost(
    journal: Journal, password: str, user: str, raw: bool,
) -> None:
    import base64

    secret = f"{password}{SECRET}"
    encoded = base64.b64encode(f"{user}:{secret}".encode()).decode()
    # `raw`: the header's value as a careless client sends it, not even base64.
    value = f"Basic {user}:{secret}" if raw else f"Basic {encoded}"
    entry = _store_and_read(journal, request_headers=[("Authorization", value)],
                            request_body=b"", response_headers=[], response_body=b"")
    stored = json.dumps(entry, ensure_ascii=False)
    assert _leaked_runs(stored) == []
    assert encoded not in stored


def test_a_document_nested_deeper_than_python_recurses_is_stored_masked(
    journal: Journal,
) -> None:
    for depth in (900, 1100, 5000):
        text = "[" * depth + json.dumps({"password": SECRET}) + "]" * depth
        entry = _store_and_read(
            journal, request_headers=[("Content-Type", "application/json")],
            request_body=text.encode(), response_headers=[], response_body=b"")
        assert _leaked_runs(json.dumps(entry)) == []
        assert entry["requestBody"].startswith("[[[")  # stored, not summarised away
