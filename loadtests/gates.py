"""Business gates of a load run: what must hold when it stops, or the run fails.

- **Reconciliation** of what this run did (payments on its own EGMs, from the sims' control
  APIs): Trustly's credited total = the CMS's applied fundings = the EGMs' meters, EGM by EGM;
  no transactionId (nor QR) credited twice; every payment a player saw CREDITED is on both
  sides; no payment left open; no spent QR accepted again.
- **Error share** of all requests at most `--max-error-share`.
- **p95** of every step at most its limit (`--step-p95`, else `--max-p95-ms`).

`reconcile` and `judge_steps` are pure functions of plain data, so tests can check them
without Locust; `fetch_run_records` is the only part that talks HTTP.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
from waiting import poll_until

OPEN = frozenset({"CREATED", "AUTHORIZED", "FUNDING"})
SETTLE_POLL_S = 0.5  # how often the stop's reconciliation looks for payments still open
# (payments, fundings, EGMs) of one run, as the control APIs list them
RunRecords = tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]
PAGE_LIMIT = 100_000
TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Thresholds:
    """The gates' limits (Locust options `--max-error-share`, `--max-p95-ms`, `--step-p95`)."""

    max_error_share: float = 0.01
    max_p95_ms: float = 5000.0
    step_p95: tuple[tuple[str, float], ...] = ()

    def p95_limit(self, step: str) -> float:
        """The limit of a step: the first `--step-p95` part its name contains, else the max."""
        folded = step.casefold()
        for part, limit in self.step_p95:
            if part.casefold() in folded:
                return limit
        return self.max_p95_ms


def parse_step_p95(text: str) -> tuple[tuple[str, float], ...]:
    """`scan=800,journey=10000` as (("scan", 800.0), ("journey", 10000.0))."""
    limits = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        name, sep, value = item.rpartition("=")
        if not sep or not name.strip():
            raise ValueError(f"--step-p95: {item!r} is not NAME_PART=MS")
        limits.append((name.strip(), float(value)))
    return tuple(limits)


@dataclass(frozen=True)
class Step:
    """One statistics entry as the gates see it."""

    name: str
    requests: int
    failures: int
    p95_ms: float


def judge_steps(steps: Sequence[Step], thresholds: Thresholds) -> tuple[list[str], list[str]]:
    """(passed, failed) gate lines for the error share and every step's p95."""
    passed: list[str] = []
    failed: list[str] = []
    total = sum(step.requests for step in steps)
    failures = sum(step.failures for step in steps)
    share = failures / total if total else 0.0
    ok = share <= thresholds.max_error_share
    (passed if ok else failed).append(f"error share {share:.2%} ({failures} of {total}) "
                                      f"{'<=' if ok else '>'} {thresholds.max_error_share:.2%}")
    if total == 0:
        failed.append("no request was made")
    for step in steps:
        if step.requests == 0:
            continue
        limit = thresholds.p95_limit(step.name)
        ok = step.p95_ms <= limit
        (passed if ok else failed).append(
            f"p95 {step.p95_ms:g} ms {'<=' if ok else '>'} {limit:g} ms  {step.name}")
    return passed, failed


@dataclass
class Reconciliation:
    """Both sides of this run's money and what disagrees (empty problems: exact)."""

    egms: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    trustly_total: int = 0
    trustly_count: int = 0
    cms_total: int = 0
    cms_count: int = 0
    meters_total: int = 0
    currency: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        """True when the three totals agree and nothing was credited twice or left open."""
        return not self.problems

    def lines(self) -> list[str]:
        """The reconciliation as the summary prints it."""
        statuses = ", ".join(f"{n} {status}" for status, n in sorted(self.statuses.items()))
        unit = f" {self.currency}" if self.currency else ""
        out = [f"payments        {sum(self.statuses.values())} on {self.egms} EGMs"
               f" ({statuses or 'none'})",
               f"Trustly credited {self.trustly_total}{unit} minor units in "
               f"{self.trustly_count} payments",
               f"CMS applied     {self.cms_total}{unit} minor units in {self.cms_count} fundings",
               f"EGM meters      {self.meters_total}{unit} minor units",
               f"verdict         {'EXACT' if self.exact else 'MISMATCH'}"]
        return out + [f"  {problem}" for problem in self.problems[:20]]


def _duplicates(values: Iterable[str]) -> list[str]:
    return sorted(value for value, n in Counter(values).items() if n > 1)


def reconcile(payments: Sequence[Mapping[str, Any]], fundings: Sequence[Mapping[str, Any]],
              egms: Sequence[Mapping[str, Any]], observed_credited: Iterable[str] = (),
              replays_accepted: int = 0) -> Reconciliation:
    """Reconcile this run's payments (TPAS), fundings (CMS) and EGMs (fresh for the run, so
    their meters are this run's credits alone)."""
    result = Reconciliation(egms=len(egms), statuses=Counter(p["status"] for p in payments))
    credited = [p for p in payments if p["status"] == "CREDITED"]
    applied = [f for f in fundings if f["outcome"] == "APPLIED"]
    result.trustly_total, result.trustly_count = sum(int(p["amount"]) for p in credited), \
        len(credited)
    result.cms_total, result.cms_count = sum(int(f["amount"]) for f in applied), len(applied)
    result.meters_total = sum(int(e["creditMeter"]) for e in egms)
    result.currency = str(next((e.get("currency") for e in egms), "") or "")
    problems = result.problems
    for kind, ids in (("transactionId credited twice at Trustly", _duplicates(
            str(p["transactionId"]) for p in credited)),
            ("transactionId applied twice at the CMS", _duplicates(
                str(f["transactionId"]) for f in applied)),
            ("QR credited twice", _duplicates(str(p.get("qrCode")) for p in credited))):
        problems += [f"DOUBLE CREDIT: {kind}: {value}" for value in ids]
    if replays_accepted:
        problems.append(f"DOUBLE CREDIT: {replays_accepted} spent QR(s) accepted again")
    if not result.trustly_total == result.cms_total == result.meters_total:
        problems.append(f"totals differ: Trustly {result.trustly_total}, CMS "
                        f"{result.cms_total}, meters {result.meters_total}")
    problems += _per_egm(credited, applied, egms)
    problems += _per_transaction(credited, applied)
    still_open = [p for p in payments if p["status"] in OPEN]
    if still_open:
        problems.append(f"{len(still_open)} payment(s) still open, e.g. "
                        f"{still_open[0].get('paymentId')} {still_open[0]['status']}")
    missing = set(observed_credited) - {str(p["transactionId"]) for p in credited}
    if missing:
        problems.append(f"{len(missing)} payment(s) players saw CREDITED are not credited "
                        f"at Trustly, e.g. {sorted(missing)[0]}")
    return result


def _per_egm(credited: Sequence[Mapping[str, Any]], applied: Sequence[Mapping[str, Any]],
             egms: Sequence[Mapping[str, Any]]) -> list[str]:
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for p in credited:
        sums[str(p["egmId"])][0] += int(p["amount"])
    for f in applied:
        sums[str(f["egmId"])][1] += int(f["amount"])
    for e in egms:
        sums[str(e["id"])][2] += int(e["creditMeter"])
    return [f"{egm}: Trustly {t}, CMS {c}, meter {m}"
            for egm, (t, c, m) in sorted(sums.items()) if not t == c == m]


def _per_transaction(credited: Sequence[Mapping[str, Any]],
                     applied: Sequence[Mapping[str, Any]]) -> list[str]:
    by_tid = {str(f["transactionId"]): f for f in applied}
    seen = {str(p["transactionId"]) for p in credited}
    out = [f"{tid}: applied at the CMS, not CREDITED at Trustly"
           for tid in sorted(set(by_tid) - seen)]
    for p in credited:
        f = by_tid.get(str(p["transactionId"]))
        if f is None:
            out.append(f"{p['transactionId']}: CREDITED at Trustly, no applied funding")
        elif (f["amount"], f.get("currency"), f["egmId"]) != (p["amount"], p.get("currency"),
                                                              p["egmId"]):
            out.append(f"{p['transactionId']}: Trustly {p['amount']} on {p['egmId']}, "
                       f"CMS {f['amount']} on {f['egmId']}")
    return out


class ControlApi:
    """The sims' control APIs (`/_sim`, admin token), as the gates read them."""

    def __init__(self, trustly_url: str, cms_url: str, token: str) -> None:
        self.trustly_url, self.cms_url = trustly_url.rstrip("/"), cms_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def get(self, url: str, **params: Any) -> dict[str, Any]:
        """One control-API read; raises on any answer but 200."""
        response = self.session.get(url, params=params, timeout=TIMEOUT_S)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def clocks(self) -> tuple[str, str]:
        """Both sims' `now`, taken when the run starts: where this run's records begin."""
        return (str(self.get(f"{self.trustly_url}/_sim/clock")["now"]),
                str(self.get(f"{self.cms_url}/_sim/clock")["now"]))

    def run_records(self, prefix: str, since: tuple[str, str]) -> RunRecords:
        """(payments, fundings, EGMs) of the run's EGMs (ids starting with `prefix`)."""
        def ours(item: dict[str, Any], key: str = "egmId") -> bool:
            return str(item.get(key, "")).startswith(prefix)

        payments = self.get(f"{self.trustly_url}/_sim/payments", since=since[0],
                            limit=PAGE_LIMIT)["payments"]
        fundings = self.get(f"{self.cms_url}/_sim/fundings", since=since[1])["fundings"]
        egms = self.get(f"{self.cms_url}/_sim/egms")["egms"]
        return ([p for p in payments if ours(p)], [f for f in fundings if ours(f)],
                [e for e in egms if ours(e, "id")])

    def settled_records(self, prefix: str, since: tuple[str, str],
                        timeout_s: float) -> RunRecords:
        """The run's records once no payment is open, or as they are when `timeout_s` ends
        (TPAS's recovery sweep finishes a payment whose CMS call was cut by the stop)."""
        last: list[RunRecords] = []

        def settled() -> RunRecords | None:
            last[:] = [self.run_records(prefix, since)]
            return None if any(p["status"] in OPEN for p in last[0][0]) else last[0]

        found = poll_until(settled, timeout_s=timeout_s, interval_s=SETTLE_POLL_S)
        return found if found is not None else last[0]
