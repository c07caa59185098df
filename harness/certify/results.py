"""What a certification run found: the data every report (console, JSON, JUnit, HTML) is drawn from.

The runner (`harness.certify.runner`) fills these; the report writers (`harness.report`)
only read them, so a report can never say more than the run observed. Everything here is
plain data that round-trips through JSON (`to_json` / `from_json`), which is also the schema of
`report.json`.

The run's *verdict* is decided here, once, so every report says the same: PASSED only when
every scenario ran and passed, FAILED when any failed or errored, INCOMPLETE when none failed
but some were skipped (a green verdict would claim what was never tested), and ERROR when the
run could not start (the preflight's diagnosis says why). `EXIT_CODES` maps each to the exit
code of `scanpay certify`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Outcome = Literal["passed", "failed", "skipped", "error"]
OUTCOMES: tuple[Outcome, ...] = ("passed", "failed", "skipped", "error")
Verdict = Literal["PASSED", "FAILED", "INCOMPLETE", "ERROR"]
EXIT_CODES: dict[Verdict, int] = {"PASSED": 0, "FAILED": 1, "ERROR": 2, "INCOMPLETE": 3}
# Money checks (a meter, a ledger, a limit: what the player or the casino loses) come before
# protocol checks (status codes, error codes, shapes) when a failed scenario names its reason.
CheckKind = Literal["money", "protocol"]
CHECK_KINDS: tuple[CheckKind, ...] = ("money", "protocol")
REPORT_VERSION = 2
DISCLAIMER = ("Dry run against scanpay-sim's model of Trustly Scan and Pay, not a Trustly "
              "certification: passing it does not mean Trustly has tested or approved this CMS.")


@dataclass(frozen=True)
class Check:
    """One assertion a scenario made: what it expected, what it saw, and whether they agree.

    `kind` is "money" for a check of what money did (a meter, the ledger, a limit's use) and
    "protocol" (the default) for the shape of an answer; a failed scenario's reason names its
    first failed money check, if any (`headline`).
    """

    description: str
    passed: bool
    expected: str = ""
    observed: str = ""
    kind: CheckKind = "protocol"

    def to_json(self) -> dict[str, Any]:
        """The check as `report.json` holds it."""
        return {"description": self.description, "passed": self.passed,
                "expected": self.expected, "observed": self.observed, "kind": self.kind}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Check:
        """Parse one item of `checks[]` (a report without `kind` holds protocol checks)."""
        kind = raw.get("kind", "protocol")
        return cls(str(raw["description"]), bool(raw["passed"]), str(raw.get("expected", "")),
                   str(raw.get("observed", "")), kind if kind in CHECK_KINDS else "protocol")

    def summary(self) -> str:
        """`description: expected X, observed Y` (a failed scenario's reason)."""
        return f"{self.description}: expected {self.expected}, observed {self.observed}"


def headline(checks: Sequence[Check]) -> Check | None:
    """The failed check that matters most: the first failed money check, else the first
    failed check (None when every check held)."""
    failed = [check for check in checks if not check.passed]
    for check in failed:
        if check.kind == "money":
            return check
    return failed[0] if failed else None


@dataclass(frozen=True)
class Exchange:
    """One line of the observed message sequence (see `harness.sequence.messages.Message.to_json`).

    `request_excerpt` and `response_excerpt` are the start of the bodies as the journals hold
    them: the sims redact secrets before they journal, and the runner truncates. `fault` is
    the label of the fault the target injected into the exchange (`apply_then_drop (rule 3)`),
    as its journal says; `status` is then what the app answered, not always what the caller
    got (`harness.sequence.faults` words the difference).
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
    fault: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The exchange as `report.json` holds it."""
        return {"n": self.n, "from": self.sender, "to": self.receiver, "method": self.method,
                "path": self.path, "status": self.status, "latencyMs": self.latency_ms,
                "note": self.note, "depth": self.depth, "kind": self.kind,
                "request": self.request_excerpt, "response": self.response_excerpt,
                "fault": self.fault}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Exchange:
        """Parse one item of `sequence[]`."""
        return cls(n=int(raw["n"]), sender=str(raw["from"]), receiver=str(raw["to"]),
                   method=str(raw["method"]), path=str(raw["path"]), status=raw.get("status"),
                   latency_ms=raw.get("latencyMs"), note=str(raw.get("note") or ""),
                   depth=int(raw.get("depth") or 0), kind=str(raw.get("kind") or "call"),
                   request_excerpt=str(raw.get("request") or ""),
                   response_excerpt=str(raw.get("response") or ""),
                   fault=str(raw["fault"]) if raw.get("fault") else None)


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
    diagnosis: str = ""  # why the run could not start (verdict ERROR); empty when it ran
    server_log: str = ""  # where the harness's own servers logged, if anywhere
    clock_moved_s: float | None = None  # how far the run moved the CMS's clock (None: no hook)

    def counts(self) -> dict[str, int]:
        """How many scenarios ended in each outcome (every outcome present, maybe 0)."""
        totals: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        for result in self.scenarios:
            totals[result.outcome] += 1
        return totals

    @property
    def verdict(self) -> Verdict:
        """The run's verdict (see the module docstring); a run of no scenarios proved nothing."""
        counts = self.counts()
        if self.diagnosis:
            return "ERROR"
        if counts["failed"] or counts["error"]:
            return "FAILED"
        if counts["skipped"] or not self.scenarios:
            return "INCOMPLETE"
        return "PASSED"

    @property
    def ok(self) -> bool:
        """The verdict is PASSED: every scenario ran, and every one passed."""
        return self.verdict == "PASSED"

    @property
    def exit_code(self) -> int:
        """`scanpay certify`'s exit code for this run (`EXIT_CODES`)."""
        return EXIT_CODES[self.verdict]

    def to_json(self) -> dict[str, Any]:
        """`report.json`."""
        return {"reportVersion": REPORT_VERSION, "tool": "scanpay-sim",
                "toolVersion": self.tool_version, "disclaimer": DISCLAIMER,
                "target": self.target, "targetKind": self.target_kind,
                "startedAt": self.started_at, "durationS": round(self.duration_s, 3),
                "verdict": self.verdict, "exitCode": self.exit_code, "ok": self.ok,
                "diagnosis": self.diagnosis, "serverLog": self.server_log,
                "clockMovedS": self.clock_moved_s, "counts": self.counts(),
                "scenarios": [s.to_json() for s in self.scenarios]}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> RunResult:
        """Parse `report.json`."""
        return cls(target=str(raw["target"]), target_kind=str(raw["targetKind"]),
                   started_at=str(raw["startedAt"]), duration_s=float(raw["durationS"]),
                   scenarios=[ScenarioResult.from_json(s) for s in raw.get("scenarios", [])],
                   tool_version=str(raw.get("toolVersion", "0.1")),
                   diagnosis=str(raw.get("diagnosis") or ""),
                   server_log=str(raw.get("serverLog") or ""),
                   clock_moved_s=_optional_float(raw.get("clockMovedS")))


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def clock_note(run: RunResult) -> str:
    """What the run did to the target's clock, in one sentence ("" when it has no clock hook).

    The harness only moves a CMS's clock forward, and leaves it there: a partner reading the
    report must know how far, to re-align it (docs/partner-contract.md, the clock hook).
    """
    moved = run.clock_moved_s
    if moved is None:
        return ""
    if moved == 0:
        return "The run did not move the CMS's clock."
    return (f"The run moved the CMS's clock {moved:,.0f} s ({_span(moved)}) forward and left it "
            "there; docs/partner-contract.md (the clock hook) says how to re-align it.")


def _span(seconds: float) -> str:
    whole = round(seconds)
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days} d"] if days else []
    parts += [f"{hours} h"] if hours or days else []
    parts.append(f"{minutes} min {secs} s" if minutes or hours or days else f"{secs} s")
    return " ".join(parts)
