"""`junit.xml`: the run in the JUnit XML shape that CI systems (Jenkins, GitLab, GitHub's test
reporters) read.

One `<testsuite>` inside `<testsuites>`, one `<testcase>` per scenario, with `<failure>`,
`<error>` or `<skipped>` and the observed message sequence in `<system-out>`. Skips stay
skips (CI tools count them as such); the run's verdict, its exit code and the disclaimer are
`<property>`s of the suite, so an INCOMPLETE run does not read as a pass. A run that never
started (verdict ERROR) holds one `preflight` test case with the diagnosis as its `<error>`.
The tree is built with `xml.etree`, never by concatenating strings, so every text and
attribute is escaped, and every string passes `clean_text` first, so nothing XML 1.0 forbids
can reach the file.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from harness.certify.results import DISCLAIMER, RunResult, ScenarioResult, clock_note, headline
from harness.report.text import clean_text, failure_text, one_line, sequence_text
from simkit.clock import parse_instant

SUITE_NAME = "scanpay-certify"
_NOT_NAME = re.compile(r"[^A-Za-z0-9_-]+")


def _seconds(value: float) -> str:
    return f"{max(value, 0.0):.3f}"


def _timestamp(started_at: str) -> str:
    """The schema's `xs:dateTime` without a zone (the run records UTC); as given if unparsable."""
    try:
        return parse_instant(started_at).strftime("%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return clean_text(started_at)


def classname_of(result: ScenarioResult) -> str:
    """`scanpay.<area>`: the first tag, else the id's prefix (`QR` of `QR-003`), lower case.

    CI reporters group test cases by class name, so a stable, dot-free area groups a
    catalogue's scenarios the way its tags do.
    """
    area = result.tags[0] if result.tags else re.split(r"[-_.\s\d]", result.id, maxsplit=1)[0]
    area = _NOT_NAME.sub("_", area).strip("_").lower()
    return f"scanpay.{area or 'catalogue'}"


def _system_out(result: ScenarioResult) -> str:
    lines = []
    if result.requirement:
        lines.append(f"Requirement: {result.requirement}")
    if result.tags:
        lines.append("Tags: " + ", ".join(result.tags))
    if result.sequence:
        lines += ["", "Observed message sequence:", sequence_text(result.sequence)]
    if result.sequence_note:
        lines += ["", f"Sequence note: {result.sequence_note}"]
    return clean_text("\n".join(lines))


def _testcase(suite: ET.Element, result: ScenarioResult) -> None:
    case = ET.SubElement(suite, "testcase", {
        "classname": classname_of(result),
        "name": one_line(f"{result.id} {result.title}", limit=300),
        "time": _seconds(result.duration_s),
    })
    if result.outcome == "failed":
        head = headline(result.checks)
        message = head.summary() if head else result.reason or "failed"
        node = ET.SubElement(case, "failure", {"message": one_line(message, limit=500),
                                               "type": "CheckFailed"})
        node.text = failure_text(result)
    elif result.outcome == "error":
        node = ET.SubElement(case, "error", {"message": one_line(result.reason or "error",
                                                                 limit=500),
                                             "type": "ScenarioError"})
        node.text = clean_text(result.reason)
    elif result.outcome == "skipped":
        ET.SubElement(case, "skipped", {"message": one_line(result.reason, limit=500)})
    out = _system_out(result)
    if out:
        ET.SubElement(case, "system-out").text = out


def junit_tree(run: RunResult) -> ET.ElementTree[ET.Element]:
    """The run as a JUnit XML tree."""
    counts = run.counts()
    not_run = 1 if run.diagnosis else 0
    totals = {
        "tests": str(len(run.scenarios) + not_run), "failures": str(counts["failed"]),
        "errors": str(counts["error"] + not_run), "skipped": str(counts["skipped"]),
        "time": _seconds(run.duration_s),
    }
    root = ET.Element("testsuites", {"name": SUITE_NAME, **totals})
    suite = ET.SubElement(root, "testsuite", {
        "name": SUITE_NAME, **totals, "timestamp": _timestamp(run.started_at),
        "hostname": "localhost", "id": "0"})
    properties = ET.SubElement(suite, "properties")
    for name, value in (("target", run.target), ("targetKind", run.target_kind),
                        ("startedAt", run.started_at), ("toolVersion", run.tool_version),
                        ("verdict", run.verdict), ("exitCode", str(run.exit_code)),
                        ("disclaimer", DISCLAIMER), ("diagnosis", run.diagnosis),
                        ("serverLog", run.server_log), ("clockMoved", clock_note(run))):
        if value:
            ET.SubElement(properties, "property", {"name": name, "value": clean_text(value)})
    if run.diagnosis:
        case = ET.SubElement(suite, "testcase", {"classname": "scanpay.preflight",
                                                 "name": "preflight", "time": "0.000"})
        ET.SubElement(case, "error", {"message": one_line(run.diagnosis, limit=500),
                                      "type": "PreflightError"}).text = clean_text(run.diagnosis)
    for result in run.scenarios:
        _testcase(suite, result)
    ET.indent(root, space="  ")
    return ET.ElementTree(root)


def write_junit(run: RunResult, path: Path) -> Path:
    """Write `junit.xml` (UTF-8, with an XML declaration) and return its path."""
    junit_tree(run).write(path, encoding="utf-8", xml_declaration=True)
    return path
