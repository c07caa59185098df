"""The observed message sequence: both sims' journals merged into numbered who-called-whom lines.

Each sim journals the requests it *receives*, so every entry is one call into that sim; who
made it is inferred (`caller_of`): the User-Agent when it names a known client (the harness's
phone and EGM, TPAS's CMS client), otherwise the path (calls into Trustly's auth service come
from a CMS, calls to `/scan` and `/api/v1` from a phone; calls to the CMS's fundings, limits
and OAuth come from TPAS, calls to `/cws/v1/egms` and `/egm` from an EGM).

Calls between the sims (CMS -> Trustly for a QR, TPAS -> CMS during a payment) happen while
the sim that makes them is serving another request, so they are shown nested inside it: the
outer request's line, the nested calls, then the outer response. Nesting is found from time
(an entry was received at `at - latencyMs` and answered at `at`) and, more reliably, from
`Marks`: journal positions the harness records between its own requests, which split both
journals into one group per harness request whatever the sims' clocks say (a frozen manual
clock stamps every entry with the same `at`).
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from rich.console import Console
from rich.text import Text

from harness.clients.control import ControlApi
from harness.sequence.faults import caller_saw_no_answer, outcome_text
from simkit.clock import format_instant, parse_instant

Source = Literal["trustly", "cms"]
Kind = Literal["call", "request", "response"]

HARNESS_AGENT = "scanpay-flow"  # the User-Agent prefix of the harness's own requests
TPAS_AGENT = "scanpay-sim-tpas"  # sim_trustly's CMS client
SIM_CALLERS = frozenset({"CMS", "TPAS"})  # callers that are sims serving another request
# `at` has millisecond precision and latencies are whole milliseconds.
TOLERANCE = timedelta(milliseconds=2)
_CALLEE = {"trustly": "Trustly", "cms": "CMS"}
_EGM_IN_PATH = re.compile(r"/egms?/([^/]+)")


@dataclass(frozen=True)
class Marks:
    """The last journal id of each sim at one moment (the harness records one per step)."""

    trustly: int
    cms: int

    def of(self, source: Source) -> int:
        """The mark of one sim's journal."""
        return self.trustly if source == "trustly" else self.cms


@dataclass(frozen=True)
class Entry:
    """One journal entry as the control API serves it, with the parts the sequence needs."""

    source: Source
    id: int
    at: datetime
    latency_ms: int
    method: str
    path: str
    query: str = ""
    status: int = 0
    correlation_id: str = ""
    user_agent: str = ""
    request_body: str = ""
    response_body: str = ""
    fault: str | None = None  # the label of the fault the sim injected here, if one fired

    @classmethod
    def from_json(cls, source: Source, raw: Mapping[str, Any]) -> Entry:
        """Parse one item of `GET /_sim/journal` (`entries[]`)."""
        headers = raw.get("requestHeaders") or {}
        agent = next((str(v) for k, v in headers.items() if k.lower() == "user-agent"), "")
        return cls(
            source=source, id=int(raw["id"]), at=parse_instant(str(raw["at"])),
            latency_ms=int(raw.get("latencyMs") or 0), method=str(raw["method"]),
            path=str(raw["path"]), query=str(raw.get("query") or ""),
            status=int(raw.get("status") or 0), correlation_id=str(raw.get("correlationId") or ""),
            user_agent=agent, request_body=str(raw.get("requestBody") or ""),
            response_body=str(raw.get("responseBody") or ""),
            fault=str(raw["fault"]) if raw.get("fault") else None,
        )

    @property
    def start(self) -> datetime:
        """When the sim received the request (the journal stamps the response)."""
        return self.at - timedelta(milliseconds=self.latency_ms)

    @property
    def callee(self) -> str:
        """The sim whose journal holds the entry."""
        return _CALLEE[self.source]

    @property
    def caller(self) -> str:
        """Who made the call (see `caller_of`)."""
        return caller_of(self)

    @property
    def between_sims(self) -> bool:
        """A call one sim made to the other while serving a request of its own."""
        return self.caller in SIM_CALLERS

    @property
    def target(self) -> str:
        """Path and query string as sent."""
        return f"{self.path}?{self.query}" if self.query else self.path


def _caller_by_agent(agent: str) -> str | None:
    lowered = agent.lower()
    if lowered.startswith(HARNESS_AGENT):
        if "(phone)" in lowered:
            return "Phone"
        if "(egm)" in lowered:
            return "EGM"
        return "Harness"
    return "TPAS" if lowered.startswith(TPAS_AGENT) else None


def caller_of(entry: Entry) -> str:
    """Who sent the request: from the User-Agent if it names a known client, else the path."""
    known = _caller_by_agent(entry.user_agent)
    if known is not None:
        return known
    path = entry.path
    if entry.source == "trustly":
        if path.startswith("/auth-service/"):
            return "CMS"
        return "Phone" if path.startswith(("/scan/", "/api/v1/")) else "Client"
    if path.startswith(("/cws/v1/fundings", "/cws/v1/limits", "/cws/v1/oauth")):
        return "TPAS"
    return "EGM" if path.startswith(("/cws/v1/egms", "/egm/")) else "Client"


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def egm_of(entry: Entry) -> str | None:
    """The EGM a request is about (path or `egmId` in the body), if it names one."""
    match = _EGM_IN_PATH.search(entry.path)
    if match:
        return match.group(1)
    body = _json(entry.request_body)
    egm = body.get("egmId") if isinstance(body, dict) else None
    return egm if isinstance(egm, str) else None


def note_of(entry: Entry) -> str:
    """The outcome word of a response: its `status` or `state` (CREDITED, APPLIED, ACTIVE),
    or for an error the code (problem+json `code`, Trustly's `errors[0].reason`)."""
    body = _json(entry.response_body)
    if not isinstance(body, dict):
        return ""
    for key in ("status", "state"):
        if isinstance(body.get(key), str):
            return str(body[key])
    if entry.status < 400:
        return ""
    if isinstance(body.get("code"), str):
        return str(body["code"])
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        return str(first.get("reason") or first.get("code") or "")
    return ""


@dataclass(frozen=True)
class Message:
    """One numbered line of the sequence.

    `kind` is `call` (request and response on one line), or `request` and `response` for a
    call with nested calls between them.
    """

    number: int
    kind: Kind
    sender: str
    receiver: str
    entry: Entry
    depth: int = 0

    @property
    def status(self) -> int | None:
        """The HTTP status, except on the request line of a nested call."""
        return None if self.kind == "request" else self.entry.status

    @property
    def note(self) -> str:
        """The outcome word of the response (empty on a request line)."""
        return "" if self.kind == "request" else note_of(self.entry)

    @property
    def fault(self) -> str | None:
        """The label of the fault injected into the exchange (None on a request line, whose
        answer comes on its response line)."""
        return None if self.kind == "request" else self.entry.fault

    def outcome(self) -> str:
        """`201 CREDITED  12 ms`: status, note and latency; a fault is worded after the note
        (`201 APPLIED, response dropped by fault (...): the caller saw no answer  12 ms`)."""
        head = outcome_text(self.entry.status, self.note, self.fault)
        return f"{head}  {self.entry.latency_ms} ms"

    def text(self) -> str:
        """The line as plain text, e.g. `2. Phone -> Trustly  GET /api/v1/scan/x  200  3 ms`."""
        who = f"{self.number}. {self.sender} -> {self.receiver}"
        if self.kind == "response":
            return f"{who}  {self.outcome()}"
        call = f"{who}  {self.entry.method} {self.entry.target}"
        return call if self.kind == "request" else f"{call}  {self.outcome()}"

    def to_json(self) -> dict[str, Any]:
        """The machine-readable form `scanpay flow --json` prints."""
        entry = self.entry
        return {
            "n": self.number, "kind": self.kind, "from": self.sender, "to": self.receiver,
            "method": entry.method, "path": entry.target, "status": self.status,
            "note": self.note or None, "fault": self.fault,
            "latencyMs": None if self.kind == "request" else entry.latency_ms,
            "depth": self.depth, "journal": entry.source, "journalId": entry.id,
            "correlationId": entry.correlation_id, "at": format_instant(entry.at),
            "line": self.text(),
        }


@dataclass
class _Node:
    entry: Entry
    children: list[Entry] = field(default_factory=list)


def _group(entry: Entry, boundaries: Sequence[Marks]) -> int:
    """Index of the harness step whose window holds the entry (-1: before the first mark)."""
    if not boundaries:
        return 0
    marks = [mark.of(entry.source) for mark in boundaries]
    return bisect.bisect_left(marks, entry.id) - 1


def _contains(outer: Entry, inner: Entry) -> bool:
    return outer.start - TOLERANCE <= inner.start and inner.at <= outer.at + TOLERANCE


def _parent(child: Entry, group: Sequence[Entry]) -> Entry | None:
    """The request of the other sim that `child` was made while serving, if any.

    The innermost one containing it in time; failing that (skewed or frozen clocks), the
    only candidate of the group, if there is exactly one.
    """
    candidates = [e for e in group if e.source != child.source and not e.between_sims]
    containing = [e for e in candidates if _contains(e, child)]
    if containing:
        return max(containing, key=lambda e: (e.start, -e.latency_ms))
    return candidates[0] if len(candidates) == 1 else None


def _same_egm(parent: Entry, child: Entry) -> bool:
    ours, theirs = egm_of(parent), egm_of(child)
    return ours is None or theirs is None or ours == theirs


def _belongs(entry: Entry, parent: Entry | None, correlation_id: str | None) -> bool:
    """Part of the run: its correlation id, or a sim-to-sim call nested in one of the run's
    requests (a sim that does not pass the id on) and about the same EGM."""
    if correlation_id is None or entry.correlation_id == correlation_id:
        return True
    return (entry.between_sims and parent is not None
            and parent.correlation_id == correlation_id and _same_egm(parent, entry))


def _tree(group: Sequence[Entry], correlation_id: str | None) -> list[_Node]:
    """The group's top-level calls in time order, each with its nested calls in id order."""
    nodes = {entry: _Node(entry) for entry in group if not entry.between_sims
             and _belongs(entry, None, correlation_id)}
    for entry in sorted(group, key=lambda e: e.id):
        if not entry.between_sims:
            continue
        parent = _parent(entry, group)
        if not _belongs(entry, parent, correlation_id):
            continue
        if parent is not None and parent in nodes:
            nodes[parent].children.append(entry)
        else:
            nodes[entry] = _Node(entry)
    return sorted(nodes.values(), key=lambda node: (node.entry.start, node.entry.id))


def _flatten(nodes: Iterable[_Node], start: int) -> list[Message]:
    messages: list[Message] = []
    for node in nodes:
        entry = node.entry
        if not node.children:
            messages.append(Message(start + len(messages), "call", entry.caller, entry.callee,
                                    entry))
            continue
        messages.append(Message(start + len(messages), "request", entry.caller, entry.callee,
                                entry))
        for child in node.children:
            messages.append(Message(start + len(messages), "call", child.caller, child.callee,
                                    child, depth=1))
        messages.append(Message(start + len(messages), "response", entry.callee, entry.caller,
                                entry))
    return messages


def build_sequence(
    trustly: Iterable[Mapping[str, Any]], cms: Iterable[Mapping[str, Any]], *,
    correlation_id: str | None = None, boundaries: Sequence[Marks] = (),
) -> list[Message]:
    """Merge both journals (control-API JSON entries) into numbered messages.

    `correlation_id` keeps the run's own entries (and the sim-to-sim calls nested in them);
    `boundaries` are the marks taken before each harness request (and one at the end): each
    window between two marks is ordered on its own, windows in order. Without them, the whole
    journal is one window ordered by time.
    """
    entries = [Entry.from_json("trustly", raw) for raw in trustly]
    entries += [Entry.from_json("cms", raw) for raw in cms]
    groups: dict[int, list[Entry]] = {}
    for entry in entries:
        index = _group(entry, boundaries)
        if index >= 0:
            groups.setdefault(index, []).append(entry)
    messages: list[Message] = []
    for index in sorted(groups):
        messages += _flatten(_tree(groups[index], correlation_id), len(messages) + 1)
    return messages


class Journals:
    """Both sims' journals through their control APIs (`GET /_sim/journal`), read strictly:
    a journal that cannot be read raises `JournalUnavailable` with the reason."""

    def __init__(self, trustly: ControlApi, cms: ControlApi) -> None:
        self._controls = {"trustly": trustly, "cms": cms}

    def mark(self) -> Marks:
        """How far both journals go now."""
        last = {source: control.checked_journal(source, limit=1)
                for source, control in self._controls.items()}
        return Marks(*(int(last[s][-1]["id"]) if last[s] else 0 for s in ("trustly", "cms")))

    def since(self, source: str, mark: int) -> list[dict[str, Any]]:
        """Every entry after `mark` (paged, bounded)."""
        return self._controls[source].journal_since(mark, source)


_PARTIES_WIDTH = 20


def render_sequence(console: Console, messages: Sequence[Message]) -> None:
    """Print the sequence, one numbered line per message, nested calls indented."""
    width = len(str(len(messages)))
    for message in messages:
        line = Text(f"{message.number:>{width}}. ")
        parties = "   " * message.depth + f"{message.sender} -> {message.receiver}"
        line.append(f"{parties:<{_PARTIES_WIDTH}}", style="bold")
        if message.kind != "response":
            line.append(f"  {message.entry.method} {message.entry.target}")
        if message.kind != "request":
            line.append(f"  {message.outcome()}", style=_outcome_style(message))
        console.print(line)


def _outcome_style(message: Message) -> str:
    """Green for an answer the caller got, red for an error or an answer a fault withheld,
    yellow for a fault that only delayed or replaced it."""
    if caller_saw_no_answer(message.fault) or message.entry.status >= 400:
        return "bold red" if message.fault else "red"
    return "bold yellow" if message.fault else "green"
