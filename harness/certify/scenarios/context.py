"""What a scenario works with: the target's clients, a check recorder, and the usual steps.

Every scenario run gets a fresh `Context` with its own correlation id (on every request it
makes, so the sims' journals can be cut to its messages), its own references (`unique`: run
id + scenario id + counter, so demo-bank usernames, UBAIs and transactionIds never repeat
across runs or scenarios, as a partner's system is never reset), and EGMs handed out in turn
from the target's list (`egm`). Checks compare *deltas*, never absolute meters.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from typing import Any, TypeVar

from harness import flow
from harness.certify.results import Check
from harness.certify.scenarios.model import CheckFailed, ScenarioSkipped
from harness.clients import phone as phone_api
from harness.clients.cms import CmsApi, ShownQr, token_id_of
from harness.clients.http import Client, Request, Response
from harness.clients.phone import settle_payment
from harness.clients.trustly import TrustlyApi
from harness.sequence.messages import HARNESS_AGENT
from harness.targets import Target
from simkit.clock import parse_instant
from simkit.journal import CORRELATION_HEADER
from simkit.wait import poll_until

T = TypeVar("T")
DEFINITE = phone_api.DEFINITE
SETTLE_S = 20.0
POLL_S = 0.05
AGENT = f"{HARNESS_AGENT}/0.1 certify"
ROTATION_MARGIN_S = 10  # a QR is brought to its rotation this long before it expires
QR_REPLACED_S = 5.0  # how long a CMS may take to show a new QR once it is due
DEMO_PASSWORD = "pw"  # noqa: S105 - the demo bank approves any non-keyphrase password
_egm_turn = itertools.count()  # EGMs are handed out in turn across the whole run


class RunState:
    """What the scenarios of one run share: its id, and what it created, so the whole-run
    reconciliation looks at this run's money and nothing else (a partner's CMS lives on
    between runs): the transactionIds the harness posted as TPAS, the payments it made
    through Trustly, and the EGMs' meters before its first scenario."""

    def __init__(self, run_id: str, since: str | None = None) -> None:
        self.run_id = run_id
        self.since = since  # the run's start on the target's clock (informative only)
        self._direct: set[str] = set()
        self._payments: set[str] = set()
        self._spent_qrs: set[str] = set()
        self._start_meters: dict[str, int] | None = None
        self._lock = threading.Lock()

    def posted_directly(self, transaction_id: str) -> None:
        """Note a transactionId the harness sent to the Funding API itself."""
        with self._lock:
            self._direct.add(transaction_id)

    def direct(self) -> frozenset[str]:
        """Every transactionId the harness sent as TPAS in this run."""
        with self._lock:
            return frozenset(self._direct)

    def spend_qr(self, qr_token_id: str) -> None:
        """Note a QR token this run paid or funded with (a CMS shows it no longer)."""
        with self._lock:
            self._spent_qrs.add(qr_token_id)

    def is_spent(self, qr_token_id: str) -> bool:
        """Whether this run already paid or funded with the QR token."""
        with self._lock:
            return qr_token_id in self._spent_qrs

    def paid(self, payment_id: str) -> None:
        """Note a payment this run started at Trustly (whatever its outcome)."""
        with self._lock:
            self._payments.add(payment_id)

    def payments(self) -> frozenset[str]:
        """Every payment this run started."""
        with self._lock:
            return frozenset(self._payments)

    def note_start_meters(self, read: Callable[[], dict[str, int]]) -> None:
        """Keep the meters as they were before the run's first scenario (read once)."""
        with self._lock:
            if self._start_meters is None:
                self._start_meters = read()

    def start_meters(self) -> dict[str, int]:
        """The meters before the run's first scenario (empty if none ran)."""
        with self._lock:
            return dict(self._start_meters or {})


class Context:
    """One scenario's run against one target (see the module docstring)."""

    def __init__(self, target: Target, run: RunState, scenario_id: str,
                 on_request: Callable[[Request], None] | None = None) -> None:
        self.target = target
        self.run = run
        run_id = run.run_id
        self.run_id = run_id
        self.scenario_id = scenario_id
        self.correlation_id = f"cert-{run_id}-{scenario_id}"
        self.checks: list[Check] = []
        self.secrets: set[str] = set()  # values no report may show (bank passwords)
        self._counter = itertools.count(1)
        self._on_request = on_request
        self._quiet = threading.local()
        self._stack = ExitStack()
        self.cms = CmsApi(target, self._client(target.cms_client, "tpas"),
                          self._client(target.cms_client, "egm"))
        self.trustly = TrustlyApi(self._client(target.trustly_client, "merchant"))
        run.note_start_meters(lambda: self.meters(target.egm_ids))

    # --- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Close every client the scenario opened."""
        self._stack.close()

    def _note(self, request: Request) -> None:
        """Hand a request of the scenario to `on_request` (unless this thread is quiet)."""
        if self._on_request is not None and not getattr(self._quiet, "on", False):
            self._on_request(request)

    def _client(self, factory: Callable[..., Client], role: str) -> Client:
        client = factory(self._note, **{"User-Agent": f"{AGENT} ({role})",
                                        CORRELATION_HEADER: self.correlation_id})
        return self._stack.enter_context(client)

    def phone(self) -> Client:
        """A new phone (its own client, usable from one thread)."""
        client = self.target.phone_client(self._note, **{
            "User-Agent": f"{AGENT} (phone)", CORRELATION_HEADER: self.correlation_id})
        return self._stack.enter_context(client)

    # --- checks ---------------------------------------------------------------------------

    def expect(self, description: str, expected: Any, observed: Any,
               ok: bool | None = None, *, money: bool = False) -> bool:
        """Record one check; `ok` defaults to `expected == observed`. Returns whether it held.

        `money` marks a check of what money did (a meter, a limit's use, a reconciliation):
        a failed scenario's reason names its first failed money check before any other.
        """
        passed = bool(expected == observed) if ok is None else bool(ok)
        self.checks.append(Check(description, passed, _show(expected), _show(observed),
                                 kind="money" if money else "protocol"))
        return passed

    def require(self, description: str, expected: Any, observed: Any,
                ok: bool | None = None) -> None:
        """`expect`, and stop the scenario (as failed) if the check did not hold."""
        if not self.expect(description, expected, observed, ok):
            raise CheckFailed(description)

    def need(self, condition: bool, reason: str) -> None:
        """Skip the scenario (with `reason`) when the target cannot support it."""
        if not condition:
            raise ScenarioSkipped(reason)

    # --- references -----------------------------------------------------------------------

    def unique(self, prefix: str) -> str:
        """A reference nobody else uses: `<prefix>-<run>-<scenario>-<n>`."""
        reference = f"{prefix}-{self.run_id}-{self.scenario_id}-{next(self._counter)}"
        if prefix == "tx":
            self.run.posted_directly(reference)
        return reference

    def egm(self) -> str:
        """The next EGM of the target's list, in turn across the run."""
        ids = self.target.egm_ids
        return ids[next(_egm_turn) % len(ids)]

    def egms(self, count: int) -> list[str]:
        """`count` EGMs, distinct when the target has that many."""
        return [self.egm() for _ in range(count)]

    # --- the clock and the hooks ----------------------------------------------------------

    def advance(self, seconds: float) -> None:
        """Move both systems' clocks (the scenario declared the clock hook)."""
        self.target.advance(seconds)

    def cms_control(self, method: str, path: str, **kwargs: Any) -> Response:
        """A call to the CMS's control API (the scenario declared the hook it uses)."""
        control = self.target.cms_control
        if control is None:
            raise ScenarioSkipped("the CMS offers no control API")
        return control.call(method, path, **kwargs)

    def set_egm_state(self, egm_id: str, state: str) -> None:
        """Put an EGM into `state` through the egm-state hook."""
        response = self.cms_control("POST", f"/_sim/egms/{egm_id}", json={"state": state})
        self.require(f"the egm-state hook puts {egm_id} into {state}", 200,
                     response.status_code)

    def trustly_admin(self, route: str, **params: Any) -> Any:
        """GET on the harness's Trustly control API (always there)."""
        response = self.target.trustly_control.call("GET", route, params=params)
        response.raise_for_status()
        return response.json()

    def trustly_journal_mark(self) -> int:
        """The id of Trustly's latest journal entry (0 when empty)."""
        entries = self.trustly_admin("/_sim/journal", limit=1)["entries"]
        return int(entries[-1]["id"]) if entries else 0

    def trustly_journal_since(self, mark: int, path: str) -> list[dict[str, Any]]:
        """Trustly's journal entries after `mark` under `path`."""
        found: list[dict[str, Any]] = self.trustly_admin(
            "/_sim/journal", since=mark, path=path, limit=1000)["entries"]
        return found

    def meters(self, egm_ids: Sequence[str]) -> dict[str, int]:
        """The credit meter of each EGM (for deltas)."""
        return {egm_id: self.cms.meter(egm_id) for egm_id in dict.fromkeys(egm_ids)}

    def delta(self, before: dict[str, int]) -> int:
        """How much the meters of `before`'s EGMs went up since, in total."""
        after = self.meters(list(before))
        return sum(after[egm] - before[egm] for egm in before)

    def expect_rise(self, description: str, before: dict[str, int], amount: int,
                    times: int = 1) -> bool:
        """The money check: the meters of `before` went up by exactly `times` x `amount`.

        Expected and observed are said in multiples of the amount ("+8800 (8x the amount)"),
        so a failure names its money effect. Record it before any status or shape check: the
        first failed check is the reason a report gives.
        """
        rise = self.delta(before)
        return self.expect(description, money_rise(times * amount, amount),
                           money_rise(rise, amount), ok=rise == times * amount, money=True)

    # --- scan-then-pay steps (harness.flow) -------------------------------------------------

    def qr(self, egm_id: str) -> ShownQr:
        """A fresh QR on the EGM (the CMS asked now, or its screen read).

        Without the acquire_qr path the screen may still show a QR this run already paid or
        funded with: then the CMS is given the time to replace it (see `_replaced_on_screen`).
        """
        shown = self.cms.acquire_qr(egm_id)
        if self.target.egm_paths.acquire_qr is None and self.run.is_spent(shown.qr_token_id):
            shown = self._replaced_on_screen(egm_id, shown)
        return shown

    def _replaced_on_screen(self, egm_id: str, spent: ShownQr) -> ShownQr:
        """The EGM's next QR, once the screen no longer shows `spent`.

        A CMS replaces a used QR at once (docs/architecture.md §15 (Funding API)); one that
        only rotates gets there when the clocks are moved (clock hook) to 10 s before the
        spent QR's expiry, past its rotation. Deadline-bound: a screen that keeps the spent
        QR skips the scenario (QR-003 is the one that judges it).
        """
        if self.target.has("clock"):
            expires = parse_instant(str(self.scan(spent.url)["expiresAt"]))
            self.advance(max(0.0, expires.timestamp() - ROTATION_MARGIN_S
                             - self.target.now().timestamp()))
            if self.target.has("qr-rotate"):
                self.cms_control("POST", "/_sim/qr/rotate")

        def unspent() -> ShownQr | None:
            shown = self.cms.shown_qr(egm_id)
            return None if self.run.is_spent(shown.qr_token_id) else shown

        found = poll_until(unspent, timeout_s=QR_REPLACED_S, interval_s=POLL_S)
        if found is None:
            raise ScenarioSkipped(
                f"{egm_id} still shows QR {spent.qr_token_id}, which this run already "
                "used, and the target names no acquire_qr path to get another")
        return found

    def scan(self, url: str, phone: Client | None = None) -> dict[str, Any]:
        """What a phone sees when it opens the QR's url."""
        return flow.scan(phone or self.phone(), url)

    def player(self) -> str:
        """A demo-bank username of this scenario (so a UBAI of its own)."""
        return self.unique("player")

    def pay_response(self, url: str, amount: int, *, username: str, password: str = DEMO_PASSWORD,
                     phone: Client | None = None) -> Response:
        """The phone's approve, answered as it came (for refusals)."""
        self.secrets.add(password)
        self.run.spend_qr(token_id_of(url))
        answer = phone_api.approve(phone or self.phone(), url, amount=amount,
                                   currency=self.currency(), username=username,
                                   password=password)
        self._note_payment(answer)
        return answer

    def _note_payment(self, answer: Response) -> None:
        """Keep the id of a payment Trustly started (the whole-run reconciliation's scope)."""
        if answer.status_code in (200, 201, 202):
            try:
                payment_id = answer.json().get("paymentId")
            except (ValueError, AttributeError):
                return
            if payment_id:
                self.run.paid(str(payment_id))

    def pay(self, url: str, amount: int, *, username: str, password: str = DEMO_PASSWORD,
            phone: Client | None = None) -> dict[str, Any]:
        """Scan-then-pay's pay step (harness.flow.pay), settled to a definite outcome."""
        phone = phone or self.phone()
        options = flow.FlowOptions(amount=amount, currency=self.currency(), username=username,
                                   password=password)
        self.run.spend_qr(token_id_of(url))
        payment = flow.pay(phone, url, options)
        if payment.get("paymentId"):
            self.run.paid(str(payment["paymentId"]))
        return self.settle(url, payment, phone)

    def settle(self, url: str, payment: dict[str, Any],
               phone: Client | None = None) -> dict[str, Any]:
        """Wait, bounded, for a payment answered 202 (asking Trustly to recover it)."""
        def recover() -> None:
            self.target.trustly_control.call("POST", "/_sim/payments/recover", json={})

        return settle_payment(phone or self.phone(), url, payment, timeout_s=SETTLE_S,
                              before_poll=recover, interval_s=POLL_S)

    def payment_record(self, payment_id: str) -> dict[str, Any]:
        """Trustly's own record of a payment (with the `ubai` TPAS derived)."""
        record: dict[str, Any] = self.trustly_admin(f"/_sim/payments/{payment_id}")
        return record

    def currency(self) -> str:
        """The casino's currency (from the first EGM; USD if it does not say)."""
        if not hasattr(self, "_currency"):
            self._currency = str(self.cms.egm(self.target.egm_ids[0]).get("currency", "USD"))
        return self._currency

    # --- the harness as TPAS ----------------------------------------------------------------

    def funding(self, egm_id: str, amount: int, *, ubai: str, qr: ShownQr | None = None,
                transaction_id: str | None = None) -> dict[str, Any]:
        """A Funding API body as TPAS sends it, with a fresh transactionId."""
        transaction_id = transaction_id or self.unique("tx")
        self.run.posted_directly(transaction_id)
        qr_token_id = qr.qr_token_id if qr else token_id_of(self.qr(egm_id).url)
        self.run.spend_qr(qr_token_id)
        return {"transactionId": transaction_id, "egmId": egm_id,
                "amount": amount, "currency": self.currency(), "ubai": ubai,
                "qrTokenId": qr_token_id}

    @contextmanager
    def quietly(self) -> Iterator[None]:
        """No sequence marks from this thread for the block (concurrent calls)."""
        self._quiet.on = True
        try:
            yield
        finally:
            self._quiet.on = False

    def concurrently(self, calls: Sequence[Callable[[], T]]) -> list[T]:
        """Run the calls at once in threads (real concurrency against the target)."""
        barrier = threading.Barrier(len(calls))

        def run(call: Callable[[], T]) -> T:
            with self.quietly():
                barrier.wait(timeout=30)
                return call()

        with ThreadPoolExecutor(max_workers=len(calls)) as pool:
            return list(pool.map(run, calls))


def money_rise(rise: int, amount: int) -> str:
    """A meter movement in multiples of one funding's amount: "+2200 (2x the amount)"."""
    if rise == 0:
        return "+0 (unchanged)"
    times = rise / amount if amount else 0.0
    return f"{rise:+d} ({times:g}x the amount)"


def problem_code(response: Response) -> str | None:
    """The `code` of a CMS problem+json answer (None when it has none)."""
    try:
        body = response.json()
    except ValueError:
        return None
    code = body.get("code") if isinstance(body, dict) else None
    return code if isinstance(code, str) else None


def trustly_error(response: Response) -> dict[str, Any]:
    """The first error of a Trustly-dialect answer (`{"errors": [{code, reason, ...}]}`)."""
    try:
        errors = response.json().get("errors") or [{}]
    except (ValueError, AttributeError):
        return {}
    first: dict[str, Any] = errors[0] if isinstance(errors[0], dict) else {}
    return first


def expires_in_s(expires_at: str, now_iso: Any) -> float:
    """Seconds from `now_iso` (datetime or ISO string) to `expires_at`."""
    now = now_iso if not isinstance(now_iso, str) else parse_instant(now_iso)
    return (parse_instant(expires_at) - now).total_seconds()


def _show(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 300 else text[:297] + "..."
