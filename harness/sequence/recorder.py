"""Each scenario's observed message sequence, cut from both sims' journals.

The recorder notes how far each journal goes before every request a scenario makes (`mark`,
hooked into the scenario's clients), then reads what came after and merges it with
`harness.sequence.messages.build_sequence`, keeping the scenario's own correlation id and the
sim-to-sim calls nested in its requests. The CMS's journal is read only when the target
offers the `journal` hook; Trustly's always is (the harness can always read its Trustly).

Request and response excerpts are cut to `EXCERPT_CHARS`. The sims redact secrets before they
journal; `scrub` removes, as a second line of defence, every secret value the run knows of
(accessKey, client secret, API key, Basic password, bank passwords, admin tokens).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from harness.certify.results import Exchange
from harness.clients.control import ControlApi
from harness.clients.http import HTTPError, Request
from harness.sequence.messages import Marks, Message, build_sequence
from harness.targets import Target

EXCERPT_CHARS = 400
MASK = "***"


def target_secrets(target: Target) -> set[str]:
    """Every credential of the target the reports must never show."""
    values = {target.merchant.access_key, target.trustly_control.admin_token}
    for auth in (target.cms_profile.auth, target.limits_auth):
        values |= {auth.client_secret, auth.password, auth.key}
    if target.cms_control is not None:
        values.add(target.cms_control.admin_token)
    return {value for value in values if value and len(value) >= 4}


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every known secret value masked."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


class SequenceRecorder:
    """Journal marks of one scenario and, at the end, its sequence."""

    def __init__(self, target: Target) -> None:
        self._trustly = target.trustly_control.kept_open()
        cms: ControlApi | None = target.cms_control if target.has("journal") else None
        self._cms = cms.kept_open() if cms is not None else None
        self._lock = threading.Lock()
        self.marks: list[Marks] = []
        self.note = "" if self._cms is not None else \
            "the CMS offers no journal hook: only Trustly's side of the exchanges is shown"

    def close(self) -> None:
        """Close the control clients."""
        self._trustly.close()
        if self._cms is not None:
            self._cms.close()

    @staticmethod
    def _last(control: ControlApi | None) -> int:
        return 0 if control is None else control.last_journal_id()

    def mark(self, _request: Request | None = None) -> None:
        """Note both journals' ends (before one of the scenario's requests)."""
        try:
            marks = Marks(self._last(self._trustly), self._last(self._cms))
        except (HTTPError, ValueError, KeyError) as exc:
            self.note = f"a journal could not be read ({exc})"
            return
        with self._lock:
            if not self.marks or (marks.trustly >= self.marks[-1].trustly
                                  and marks.cms >= self.marks[-1].cms):
                self.marks.append(marks)

    @staticmethod
    def _since(control: ControlApi | None, mark: int) -> list[dict[str, Any]]:
        return [] if control is None else control.journal_since(mark)

    def messages(self, correlation_id: str) -> list[Message]:
        """The messages since the first mark that belong to `correlation_id`, numbered."""
        if not self.marks:
            return []
        self.mark()
        first = self.marks[0]
        try:
            trustly = self._since(self._trustly, first.trustly)
            cms = self._since(self._cms, first.cms)
        except (HTTPError, ValueError) as exc:
            self.note = f"a journal could not be read ({exc})"
            return []
        return build_sequence(trustly, cms, boundaries=self.marks,
                              correlation_id=correlation_id)

    def sequence(self, correlation_id: str, secrets: Iterable[str]) -> list[Exchange]:
        """The scenario's exchanges, numbered, excerpts cut and scrubbed."""
        known = set(secrets)
        return [exchange(message, known) for message in self.messages(correlation_id)]


def _excerpt(text: str, secrets: set[str]) -> str:
    text = scrub(text, secrets)
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS - 1] + "…"


def exchange(message: Message, secrets: set[str]) -> Exchange:
    """One message as the reports hold it."""
    entry = message.entry
    return Exchange(
        n=message.number, sender=message.sender, receiver=message.receiver,
        method=entry.method, path=scrub(entry.target, secrets), status=message.status,
        latency_ms=None if message.kind == "request" else entry.latency_ms,
        note=message.note, depth=message.depth, kind=message.kind,
        request_excerpt="" if message.kind == "response"
        else _excerpt(entry.request_body, secrets),
        response_excerpt="" if message.kind == "request"
        else _excerpt(entry.response_body, secrets),
        fault=None if message.fault is None else scrub(message.fault, secrets))
