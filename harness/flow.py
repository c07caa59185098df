"""One scan-then-pay, as plain functions over HTTP (the `scanpay flow` command and the tests).

The harness plays two parts: the EGM, which asks its CMS for a QR (`POST /cws/v1/egms/<id>/qr`,
with the CMS's OAuth2 client credentials) and reads its meter, and the player's phone, which
opens the QR's url (`GET /api/v1/scan/<code>`) and pays (`POST /api/v1/scan/<code>/payments`).
The EGM's calls go through the harness's CMS client (`harness.clients.cms`), the phone's
through `harness.clients.phone`'s rules, the journals' reads through the control API's client
(`harness.clients.control`).
Every request carries one `X-Correlation-Id` for the run. Before each request the harness
notes how far both journals go (`Marks`), so the sequence can be rebuilt step by step from
the journals afterwards (`harness.sequence.messages`), which needs the control API's admin token.

The sims are reached only over HTTP: by base URL, or in-process through transports
(`FlowTarget.in_process`); nothing here imports a sim.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from harness.clients import phone as phone_api
from harness.clients.cms import CmsApi, ReferenceCms
from harness.clients.control import ControlApi, JournalUnavailable
from harness.clients.http import (
    Client,
    ConnectError,
    HTTPError,
    HTTPStatusError,
    Response,
    Transport,
    open_client,
)
from harness.sequence.messages import (
    Journals,
    Marks,
    Message,
    build_sequence,
    render_sequence,
)
from simkit.errors import SimError
from simkit.journal import CORRELATION_HEADER
from simkit.money import Money

if TYPE_CHECKING:
    from harness.embedded import EmbeddedSims

USER_AGENT = "scanpay-flow/0.1"


@dataclass(frozen=True)
class Endpoint:
    """How to reach one sim: its base URL, and a transport when it runs in this process."""

    base_url: str
    transport: Transport | None = None


@dataclass(frozen=True)
class FlowTarget:
    """The two systems a flow drives, and the admin token that opens their journals."""

    trustly: Endpoint
    cms: Endpoint
    admin_token: str | None = None

    @classmethod
    def over_http(cls, trustly_url: str, cms_url: str, admin_token: str | None) -> FlowTarget:
        """Running sims (e.g. `scanpay serve`), by base URL."""
        return cls(Endpoint(trustly_url.rstrip("/")), Endpoint(cms_url.rstrip("/")), admin_token)

    @classmethod
    def in_process(cls, sims: EmbeddedSims) -> FlowTarget:
        """The embedded sims (`harness.embedded`), through their WSGI transports."""
        return cls(Endpoint(sims.trustly_url, sims.trustly_transport),
                   Endpoint(sims.cms_url, sims.cms_transport), sims.admin_token)

    def phone_transport(self) -> Transport | None:
        """What a phone opening a QR url uses: the network, or in-process Trustly."""
        return self.trustly.transport


@dataclass(frozen=True)
class FlowOptions:
    """What to pay onto which EGM, and the credentials of the EGM's CMS client."""

    egm_id: str = "EGM-001"
    amount: int = 2000
    currency: str = "USD"
    username: str = "demo-player"
    password: str = "demo-password"  # noqa: S105 - the demo bank approves any other phrase
    client_id: str = "tpas-client"
    client_secret: str = "tpas-secret"  # noqa: S105 - the published demo credential
    timeout_s: float = 30.0
    settle_s: float = 10.0  # how long to wait for a payment answered 202 to settle

    def __repr__(self) -> str:  # never print the secrets
        return f"FlowOptions(egm_id={self.egm_id!r}, amount={self.amount}, ...)"


class FlowError(Exception):
    """A step could not be completed; `unreachable` when a sim could not be reached at all."""

    def __init__(self, step: str, message: str, *, unreachable: bool = False) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step
        self.unreachable = unreachable


@dataclass
class FlowResult:
    """What a run did: each step's answer, the meter before and after, and the sequence."""

    correlation_id: str
    egm_id: str
    currency: str = "USD"
    meter_before: int | None = None
    meter_after: int | None = None
    qr: dict[str, Any] | None = None
    scan: dict[str, Any] | None = None
    payment: dict[str, Any] | None = None
    error: FlowError | None = None
    sequence: list[Message] = field(default_factory=list)
    sequence_note: str | None = None  # why the sequence is missing or partial

    @property
    def credited(self) -> bool:
        """The payment ended CREDITED."""
        return self.payment is not None and self.payment.get("status") == "CREDITED"

    def to_json(self) -> dict[str, Any]:
        """The machine-readable result `scanpay flow --json` prints."""
        return {
            "correlationId": self.correlation_id, "egmId": self.egm_id,
            "credited": self.credited, "qr": self.qr, "scan": self.scan,
            "payment": self.payment,
            "meter": {"before": self.meter_before, "after": self.meter_after,
                      "currency": self.currency},
            "error": str(self.error) if self.error else None,
            "sequence": [message.to_json() for message in self.sequence],
            "sequenceNote": self.sequence_note,
        }


def _describe(response: Response) -> str:
    """`HTTP 409 QR_CODE_USED: ...` from a problem+json or Trustly-dialect error body."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code} {response.reason_phrase}"
    if isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"]:
        first = body["errors"][0]
        if isinstance(first, dict):
            body = {"code": first.get("reason") or first.get("code"),
                    "detail": first.get("message")}
    if not isinstance(body, dict):
        return f"HTTP {response.status_code}"
    code, detail = body.get("code"), body.get("detail") or body.get("title")
    return " ".join(str(p) for p in (f"HTTP {response.status_code}", code, detail) if p)


@contextmanager
def _failing_as(step: str, where: str) -> Iterator[None]:
    """A request that raised fails `step`; `unreachable` when `where` could not be reached."""
    try:
        yield
    except ConnectError as exc:
        raise FlowError(step, f"cannot reach {where.rstrip('/')} ({exc})",
                        unreachable=True) from exc
    except HTTPStatusError as exc:
        raise FlowError(step, _describe(exc.response)) from exc
    except HTTPError as exc:
        raise FlowError(step, f"{type(exc).__name__}: {exc}") from exc


def _answer(step: str, where: str, send: Callable[[], Response], *,
            expect: tuple[int, ...]) -> dict[str, Any]:
    """One request of a step; anything but an `expect`ed status with a JSON object fails it."""
    with _failing_as(step, where):
        response = send()
    if response.status_code not in expect:
        raise FlowError(step, _describe(response))
    try:
        body = response.json()
    except ValueError as exc:
        raise FlowError(step, "the answer is not JSON") from exc
    if not isinstance(body, dict):
        raise FlowError(step, "the answer is not a JSON object")
    return body


def cms_token(cms: CmsApi) -> None:
    """Fetch the access token of the CMS's OAuth2 client (client credentials), which the
    client then sends on the EGM's calls."""
    step = "CMS access token"
    with _failing_as(step, str(cms.client.base_url)):
        try:
            cms.token(fresh=True)
        except ValueError as exc:
            raise FlowError(step, "the answer is not JSON") from exc
        except (KeyError, TypeError) as exc:
            raise FlowError(step, "the answer holds no access_token") from exc


def read_egm(cms: CmsApi, egm_id: str) -> dict[str, Any]:
    """The EGM as its CMS sees it: state, `creditMeter`, `currency`."""
    return _answer("read the EGM", str(cms.egm_client.base_url),
                   lambda: cms.read_egm(egm_id), expect=(200,))


def acquire_qr(cms: CmsApi, egm_id: str) -> dict[str, Any]:
    """Make the CMS get a QR from Trustly for the EGM now: `{url, qrTokenId, expiresAt}`."""
    return _answer("acquire a QR", str(cms.egm_client.base_url),
                   lambda: cms.ask_for_qr(egm_id), expect=(200,))


def scan_api_url(qr_url: str) -> str:
    """The JSON twin of a QR's page (`harness.clients.phone.scan_api_url`), or the scan
    step's failure when the QR holds no such url."""
    try:
        return phone_api.scan_api_url(qr_url)
    except phone_api.NotAQrUrl as exc:
        raise FlowError("scan", str(exc)) from exc


def scan(phone: Client, qr_url: str) -> dict[str, Any]:
    """What the phone learns by opening the QR: state, EGM, casino, suggested amounts."""
    return _answer("scan", scan_api_url(qr_url), lambda: phone_api.open_qr(phone, qr_url),
                   expect=(200,))


def pay(phone: Client, qr_url: str, options: FlowOptions) -> dict[str, Any]:
    """Pay with the scanned QR at the demo bank: the payment (201 definite, 202 on its way)."""
    where = f"{scan_api_url(qr_url)}/payments"
    return _answer("pay", where, lambda: phone_api.approve(
        phone, qr_url, amount=options.amount, currency=options.currency,
        username=options.username, password=options.password), expect=(201, 202))


@dataclass
class _Clients:
    cms: CmsApi  # speaks as the EGM
    phone: Client
    journals: Journals | None


@contextmanager
def _clients(target: FlowTarget, correlation_id: str, options: FlowOptions) -> Iterator[_Clients]:
    def client(endpoint: Endpoint | None, headers: dict[str, str]) -> Client:
        base_url = endpoint.base_url if endpoint else None
        transport = endpoint.transport if endpoint else target.phone_transport()
        return stack.enter_context(open_client(base_url, transport=transport, headers=headers,
                                               timeout=options.timeout_s))

    def control(endpoint: Endpoint, admin_token: str) -> ControlApi:
        opened = ControlApi(endpoint.base_url, admin_token, endpoint.transport,
                            user_agent=USER_AGENT, timeout_s=options.timeout_s).kept_open()
        stack.callback(opened.close)
        return opened

    own = {CORRELATION_HEADER: correlation_id}
    with ExitStack() as stack:
        journals = None
        if target.admin_token:
            journals = Journals(control(target.trustly, target.admin_token),
                                control(target.cms, target.admin_token))
        egm = client(target.cms, {**own, "User-Agent": f"{USER_AGENT} (egm)"})
        cms = ReferenceCms.with_client(options.client_id, options.client_secret)
        yield _Clients(cms=CmsApi(cms, egm),
                       phone=client(None, {**own, "User-Agent": f"{USER_AGENT} (phone)"}),
                       journals=journals)


class _Run:
    """One flow in progress: its clients, its result, and the journal marks of its steps."""

    def __init__(self, clients: _Clients, result: FlowResult, options: FlowOptions) -> None:
        self.clients = clients
        self.result = result
        self.options = options
        self.marks: list[Marks] = []

    def mark(self) -> None:
        """Note the journals' ends before a step (skipped without journal access)."""
        if self.clients.journals is None or self.result.sequence_note:
            return
        try:
            self.marks.append(self.clients.journals.mark())
        except JournalUnavailable as exc:
            self.result.sequence_note = str(exc)

    def steps(self) -> None:
        """Setup (token, meter before), then QR, scan, pay, settle, meter after."""
        cms, phone, result = self.clients.cms, self.clients.phone, self.result
        cms_token(cms)
        before = read_egm(cms, result.egm_id)
        result.meter_before, result.currency = before.get("creditMeter"), before.get(
            "currency", result.currency)
        self.mark()
        result.qr = acquire_qr(cms, result.egm_id)
        url = str(result.qr.get("url", ""))
        self.mark()
        result.scan = scan(phone, url)
        self.mark()
        result.payment = pay(phone, url, self.options)
        self.settle(url)
        self.mark()
        result.meter_after = read_egm(cms, result.egm_id).get("creditMeter")

    def settle(self, url: str) -> None:
        """Wait, bounded, for a payment answered 202 to reach a definite outcome."""
        self.result.payment = phone_api.settle_payment(
            self.clients.phone, url, self.result.payment or {},
            timeout_s=self.options.settle_s, before_poll=self.mark)

    def sequence(self) -> None:
        """Rebuild the run's message sequence from both journals."""
        journals = self.clients.journals
        if journals is None:
            self.result.sequence_note = ("the message sequence needs the sims' admin token "
                                         "(--admin-token, as given to `scanpay serve`)")
            return
        if not self.marks or self.result.sequence_note:
            self.result.sequence_note = self.result.sequence_note or "no step was taken"
            return
        self.mark()
        try:
            first = self.marks[0]
            trustly = journals.since("trustly", first.trustly)
            cms = journals.since("cms", first.cms)
        except JournalUnavailable as exc:
            self.result.sequence_note = str(exc)
            return
        self.result.sequence = build_sequence(trustly, cms, boundaries=self.marks,
                                              correlation_id=self.result.correlation_id)


def run_flow(target: FlowTarget, options: FlowOptions | None = None) -> FlowResult:
    """Run one scan-then-pay against `target` and rebuild its message sequence.

    Never raises for a failed step: the result records the error (and the sequence up to
    it), so a caller can show what was said on the wire before things went wrong.
    """
    options = options or FlowOptions()
    result = FlowResult(correlation_id=f"flow-{uuid.uuid4().hex[:16]}", egm_id=options.egm_id,
                        currency=options.currency)
    with _clients(target, result.correlation_id, options) as clients:
        run = _Run(clients, result, options)
        try:
            run.steps()
        except FlowError as exc:
            result.error = exc
        run.sequence()
    return result


_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£"}


def format_money(minor: int | None, currency: str) -> str:
    """`$20.00` for USD (and EUR, GBP), `SEK 20.00` otherwise; `?` when unknown."""
    if minor is None:
        return "?"
    try:
        shown = Money(minor, currency).display()
    except (SimError, TypeError):
        return f"{minor} {currency} minor units"
    symbol = _SYMBOLS.get(currency)
    return shown.replace(f"{currency} ", symbol, 1) if symbol else shown


def render_result(console: Console, result: FlowResult) -> None:
    """Print the sequence, the payment's outcome and the EGM's meter after and before."""
    if result.sequence:
        console.print(f"[bold]Message sequence[/] (correlation id {result.correlation_id})")
        render_sequence(console, result.sequence)
    if result.sequence_note:
        gap = "message sequence incomplete" if result.sequence else "no message sequence"
        console.print(f"[yellow]{gap}:[/] {result.sequence_note}")
    if result.error is not None:
        console.print(f"[red]flow stopped at {escape(str(result.error))}[/]")
    if result.payment is not None:
        payment = result.payment
        reason = f" ({payment['reason']})" if payment.get("reason") else ""
        style = "green" if result.credited else "red"
        console.print(f"payment {payment.get('paymentId')}: [{style}]{payment.get('status')}"
                      f"{escape(reason)}[/]")
    if result.meter_after is not None or result.meter_before is not None:
        console.print(f"[bold]{result.egm_id} meter: "
                      f"{format_money(result.meter_after, result.currency)}[/] "
                      f"(was {format_money(result.meter_before, result.currency)})")
