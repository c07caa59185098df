"""What the pytest plugin's fixtures hand to a partner's tests (see `harness.plugin.pytest_plugin`).

Everything here talks HTTP to a `harness.targets.Target`, so the same test runs against the
embedded sims, sims served locally, and a partner's CMS:

- `CmsApi` (`harness.clients.cms`, the harness's one CMS client): the CMS's Funding and
  Daily Limits APIs as TPAS calls them, with the credentials of the target's partner profile
  (`scanpay_cms`); daily limits are changed with the target's limits credentials.
- `FlowDriver`: one scan-then-pay on an EGM, playing the EGM and the player's phone
  (`scanpay_flow`), returning a `FlowRun` with the meter before and after.
- `CleanState`: a fresh player (username, UBAI) per test, after a reset when the target
  offers one (`scanpay_clean`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from harness.clients.cms import CmsApi
from harness.clients.http import Client, HTTPError, Response
from harness.clients.phone import approve, settle_payment
from harness.flow import (
    FlowError,
    FlowOptions,
    FlowResult,
    FlowTarget,
    pay,
    run_flow,
    scan,
)
from harness.sequence.recorder import SequenceRecorder
from harness.targets import Target
from sim_trustly.microsite.demo_bank import ubai_for
from simkit.journal import CORRELATION_HEADER

USER_AGENT = "scanpay-pytest/0.1"
DEMO_PASSWORD = "demo-password"  # noqa: S105 - the demo bank approves any non-keyphrase


@dataclass
class CleanState:
    """A test's own player: a username no other test uses, and the UBAI TPAS derives from it.

    `reset` says whether the target's state was reset before the test; when it was not
    (a partner without the reset hook), tests stay apart through fresh players and by
    comparing meters before and after, never absolute counts.
    """

    run_id: str
    reset: bool
    _count: int = 0

    @property
    def username(self) -> str:
        """The test's demo-bank username (the first one `new_username` made)."""
        return f"player-{self.run_id}-0"

    @property
    def ubai(self) -> str:
        """The UBAI the demo bank derives for `username`."""
        return ubai_for(self.username)

    def new_username(self) -> str:
        """Another fresh username of this test (a second player, a second UBAI)."""
        self._count += 1
        return f"player-{self.run_id}-{self._count}"

    @staticmethod
    def ubai_of(username: str) -> str:
        """The UBAI of any demo-bank username."""
        return ubai_for(username)


def reset_target(target: Target) -> bool:
    """Reset through the control API if the target offers it; whether it did.

    On the sims both are reset (journals, faults, payments, meters, limits; clocks stay); on
    a partner target only its CMS, through its declared reset hook.
    """
    if not target.has("reset") or target.cms_control is None:
        return False
    controls = [target.cms_control]
    if target.kind != "partner":
        controls.insert(0, target.trustly_control)
    for control in controls:
        response = control.call("POST", "/_sim/reset")
        if response.status_code != 200:
            raise FlowError("reset", f"{control.base_url}/_sim/reset answered "
                                     f"HTTP {response.status_code}")
    return True


def new_clean_state(target: Target) -> CleanState:
    """Reset if possible, then a fresh run id for the test's players."""
    return CleanState(run_id=uuid.uuid4().hex[:12], reset=reset_target(target))


@dataclass(frozen=True)
class FlowRun:
    """One scan-then-pay: the flow's result and what was asked of it."""

    result: FlowResult
    amount: int
    username: str
    password: str = field(repr=False)

    @property
    def egm_id(self) -> str:
        """The EGM paid onto."""
        return self.result.egm_id

    @property
    def status(self) -> str | None:
        """CREDITED, REJECTED_VOIDED, FAILED_VOIDED; None when no payment was made."""
        return None if self.result.payment is None else self.result.payment.get("status")

    @property
    def reason(self) -> str | None:
        """Why a payment was not credited (e.g. EGM_BUSY, BANK_NOT_ENOUGH_FUNDS)."""
        return None if self.result.payment is None else self.result.payment.get("reason")

    @property
    def credited(self) -> bool:
        """The payment ended CREDITED."""
        return self.result.credited

    @property
    def meter_before(self) -> int | None:
        """The EGM's credit meter before the QR was acquired."""
        return self.result.meter_before

    @property
    def meter_after(self) -> int | None:
        """The EGM's credit meter after the payment settled."""
        return self.result.meter_after

    @property
    def qr_url(self) -> str | None:
        """The url of the QR the EGM showed (what the phone scanned)."""
        return None if self.result.qr is None else self.result.qr.get("url")

    @property
    def error(self) -> FlowError | None:
        """The step that could not be completed, if any."""
        return self.result.error


class FlowDriver:
    """Runs scan-then-pay flows on the target for one test (the `scanpay_flow` fixture)."""

    def __init__(self, target: Target, clean: CleanState, cms: CmsApi) -> None:
        self.target = target
        self.clean = clean
        self._cms = cms
        self.runs: list[FlowRun] = []

    @property
    def default_egm(self) -> str:
        """The first EGM the target lets the harness use."""
        return self.target.egm_ids[0]

    def run(self, *, egm_id: str | None = None, amount: int = 2000,
            username: str | None = None, password: str = DEMO_PASSWORD) -> FlowRun:
        """One scan-then-pay of `amount` minor units on `egm_id` (default: the first EGM) as
        `username` (default: the test's own player). Never raises for a failed step: look
        at `.error`, `.status` and the meters."""
        options = FlowOptions(egm_id=egm_id or self.default_egm, amount=amount,
                              username=username or self.clean.username, password=password)
        if self.target.kind == "partner":
            result = self._partner_flow(options)
        else:  # our own sims: the shared flow, with the message sequence from both journals
            auth = self.target.cms_profile.auth
            result = run_flow(FlowTarget(self.target.trustly, self.target.cms,
                                         self.target.trustly_control.admin_token),
                              replace(options, client_id=auth.client_id,
                                      client_secret=auth.client_secret))
        run = FlowRun(result, amount, options.username, password)
        self.runs.append(run)
        return run

    def pay_again(self, run: FlowRun, *, username: str | None = None) -> Response:
        """Pay once more with the QR `run` already paid with (a replayed QR): the answer."""
        if run.qr_url is None:
            raise FlowError("replay", "that run never got a QR to replay")
        with self.target.phone_client() as phone:
            return approve(phone, run.qr_url, amount=run.amount, currency=run.result.currency,
                           username=username or run.username, password=run.password)

    def egm(self, egm_id: str | None = None) -> dict[str, Any]:
        """The EGM as its CMS shows it (`creditMeter`, `state`, ...)."""
        egm_id = egm_id or self.default_egm
        response = self._cms.read_egm(egm_id)
        if response.status_code != 200:
            raise FlowError("read the EGM", f"HTTP {response.status_code}: {response.text[:200]}")
        body: dict[str, Any] = response.json()
        return body

    def meter(self, egm_id: str | None = None) -> int:
        """The EGM's credit meter now, in minor units."""
        return int(self.egm(egm_id)["creditMeter"])

    def _partner_flow(self, options: FlowOptions) -> FlowResult:
        """The same steps as `harness.flow.run_flow`, on the partner's EGM paths and auth.

        Its message sequence comes from the journals: the harness's own Trustly's always, the
        partner CMS's when it offers the `journal` hook (else only Trustly's side is shown,
        and the result's note says so). Every request of the flow carries its correlation id.
        """
        result = FlowResult(correlation_id=f"pytest-{uuid.uuid4().hex[:16]}",
                            egm_id=options.egm_id, currency=options.currency)
        recorder = SequenceRecorder(self.target)
        try:
            self._partner_steps(options, result, recorder)
        except FlowError as exc:
            result.error = exc
        except HTTPError as exc:
            result.error = FlowError("request", f"{type(exc).__name__}: {exc}")
        finally:
            result.sequence = recorder.messages(result.correlation_id)
            result.sequence_note = recorder.note or None
            recorder.close()
        return result

    def _partner_steps(self, options: FlowOptions, result: FlowResult,
                       recorder: SequenceRecorder) -> None:
        paths = self.target.egm_paths
        if paths.acquire_qr is None:
            raise FlowError("acquire a QR", "the target's CMS names no cms.egm.acquire_qr "
                                            "path, which the flow fixture needs")
        own = {CORRELATION_HEADER: result.correlation_id}
        before = self.egm(options.egm_id)
        result.meter_before = before.get("creditMeter")
        result.currency = str(before.get("currency") or options.currency)
        options = replace(options, currency=result.currency)  # pay in the casino's currency
        recorder.mark()
        answer = self._cms.ask_for_qr(options.egm_id, headers=own)
        if answer.status_code != 200:
            raise FlowError("acquire a QR", f"HTTP {answer.status_code}: {answer.text[:200]}")
        result.qr = answer.json()
        url = str((result.qr or {}).get("url", ""))
        with self.target.phone_client(**own) as phone:
            recorder.mark()
            result.scan = scan(phone, url)
            recorder.mark()
            result.payment = self._settle(phone, url, pay(phone, url, options), options,
                                          recorder)
        recorder.mark()
        result.meter_after = self.egm(options.egm_id).get("creditMeter")

    @staticmethod
    def _settle(phone: Client, url: str, payment: dict[str, Any],
                options: FlowOptions, recorder: SequenceRecorder) -> dict[str, Any]:
        """Wait, bounded, for a payment answered 202 to reach a definite outcome."""
        return settle_payment(phone, url, payment, timeout_s=options.settle_s,
                              before_poll=recorder.mark)
