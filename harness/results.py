"""What a certification run found: the data every report (console, JSON, JUnit, HTML) is drawn from.

The runner (`harness.certify`) fills these; the report writers (`harness.report`) only read
them, so a report can never say more than the run observed. Everything here is plain data
that round-trips through JSON (`to_json` / `from_json`), which is also the schema of
`report.json`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Outcome = Literal["passed", "failed", "skipped", "error"]
OUTCOMES: tuple[Outcome, ...] = ("passed", "failed", "skipped", "error")
REPORT_VERSION = 1


@dataclass(frozen=True)
class Check:
    """One assertion a scenario made: what it expected, what it saw, and whether they agree."""

    description: str
    passed: bool
    expected: str = ""
    observed: str = ""

    def to_json(self) -> dict[str, Any]:
        """The check as `report.json` holds it."""
        return {"description": self.description, "passed": self.passed,
                "expected": self.expected, "observed": self.observed}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Check:
        """Parse one item of `checks[]`."""
        return cls(str(raw["description"]), bool(raw["passed"]), str(raw.get("expected", "")),
                   str(raw.get("observed", "")))


@dataclass(frozen=True)
class Exchange:
    """One line of the observed message sequence (see `harness.sequence.Message.to_json`).

    `request_excerpt` and `response_excerpt` are the start of the bodies as the journals hold
    them: the sims redact secrets before they journal, and the runner truncates.
    """

    n: int
    sender: str
    receiver: str
    method: str
    path: str
    status: int | None
    latency_ms: int | None
    note: str = ""
    depth: int = 0
    kind: str = "call"
    request_excerpt: str = ""
    response_excerpt: str = ""

    def to_json(self) -> dict[str, Any]:
        """The exchange as `report.json` holds it."""
        return {"n": self.n, "from": self.sender, "to": self.receiver, "method": self.method,
                "path": self.path, "status": self.status, "latencyMs": self.latency_ms,
                "note": self.note, "depth": self.depth, "kind": self.kind,
                "request": self.request_excerpt, "response": self.response_excerpt}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Exchange:
        """Parse one item of `sequence[]`."""
        return cls(n=int(raw["n"]), sender=str(raw["from"]), receiver=str(raw["to"]),
                   method=str(raw["method"]), path=str(raw["path"]), status=raw.get("status"),
                   latency_ms=raw.get("latencyMs"), note=str(raw.get("note") or ""),
                   depth=int(raw.get("depth") or 0), kind=str(raw.get("kind") or "call"),
                   request_excerpt=str(raw.get("request") or ""),
                   response_excerpt=str(raw.get("response") or ""))


@dataclass
class ScenarioResult:
    """One scenario's run: outcome, why (for skipped, failed and error), checks and sequence."""

    id: str
    title: str
    requirement: str
    tags: tuple[str, ...]
    outcome: Outcome
    duration_s: float
    reason: str = ""  # skip reason, first failed check, or the error
    checks: list[Check] = field(default_factory=list)
    sequence: list[Exchange] = field(default_factory=list)
    sequence_note: str = ""  # why the sequence is missing or partial

    def to_json(self) -> dict[str, Any]:
        """The scenario as `report.json` holds it."""
        return {"id": self.id, "title": self.title, "requirement": self.requirement,
                "tags": list(self.tags), "outcome": self.outcome,
                "durationS": round(self.duration_s, 4), "reason": self.reason,
                "checks": [c.to_json() for c in self.checks],
                "sequence": [e.to_json() for e in self.sequence],
                "sequenceNote": self.sequence_note}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ScenarioResult:
        """Parse one item of `scenarios[]`."""
        return cls(id=str(raw["id"]), title=str(raw["title"]),
                   requirement=str(raw.get("requirement", "")), tags=tuple(raw.get("tags", ())),
                   outcome=raw["outcome"], duration_s=float(raw.get("durationS", 0.0)),
                   reason=str(raw.get("reason", "")),
                   checks=[Check.from_json(c) for c in raw.get("checks", [])],
                   sequence=[Exchange.from_json(e) for e in raw.get("sequence", [])],
                   sequence_note=str(raw.get("sequenceNote", "")))


@dataclass
class RunResult:
    """A whole certification run: which target, when, and every scenario's result."""

    target: str  # e.g. "embedded", or the partner's name from its TOML
    target_kind: str  # "embedded" | "local" | "partner"
    started_at: str  # ISO-8601 UTC, wall clock
    duration_s: float
    scenarios: list[ScenarioResult] = field(default_factory=list)
    tool_version: str = "0.1"

    def counts(self) -> dict[str, int]:
        """How many scenarios ended in each outcome (every outcome present, maybe 0)."""
        totals: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        for result in self.scenarios:
            totals[result.outcome] += 1
        return totals

    @property
    def ok(self) -> bool:
        """No scenario failed or errored (skips do not fail a run)."""
        counts = self.counts()
        return counts["failed"] == 0 and counts["error"] == 0

    def to_json(self) -> dict[str, Any]:
        """`report.json`."""
        return {"reportVersion": REPORT_VERSION, "tool": "scanpay-sim",
                "toolVersion": self.tool_version, "target": self.target,
                "targetKind": self.target_kind, "startedAt": self.started_at,
                "durationS": round(self.duration_s, 3), "ok": self.ok, "counts": self.counts(),
                "scenarios": [s.to_json() for s in self.scenarios]}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> RunResult:
        """Parse `report.json`."""
        return cls(target=str(raw["target"]), target_kind=str(raw["targetKind"]),
                   started_at=str(raw["startedAt"]), duration_s=float(raw["durationS"]),
                   scenarios=[ScenarioResult.from_json(s) for s in raw.get("scenarios", [])],
                   tool_version=str(raw.get("toolVersion", "0.1")))
