"""The casino floor: players at EGMs whose screens show a QR, and partner-ops staff reading
daily limits.

Each `PlayerUser` has a seat at its own EGM. With an admin token the EGM is created for the
run (`{run id}-{worker}-{seat}`, through the CMS's control API), so no two users, workers or
runs ever share a machine, and the gates can reconcile exactly what this run did; without one
the seats take the `--egms` list in turns, sliced by worker index.

The EGM's screen polls its status feed at the page's own cadence (a greenlet per seat) and
shows the current QR; after each payment the EGM asks its CMS for a fresh QR (a QR pays once),
as a CMS does after a funding. The player scans what the screen shows and pays an amount drawn
from `--amounts` with a bank outcome drawn from `--bank-outcomes`, and sometimes tries to pay
a spent QR (one whose payment was credited) again, which must be refused; a QR whose payment
the bank refused is handed back, so it is not spent. A player who has spent `--player-budget`
leaves and a new one (a new bank account) sits down, so the daily limit per account never
decides a run.

What each process did is tallied in `TALLY`, which the hooks send to the master at stop.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import gevent
from base import CORRELATION_HEADER, ScanPayUser, pick, problem
from locust import between, task
from locust.exception import StopUser

BANK_REASONS = {"notenoughfunds": "BANK_NOT_ENOUGH_FUNDS", "loginerror": "BANK_LOGIN_ERROR",
                "accountlocked": "BANK_ACCOUNT_LOCKED", "unavailable": "BANK_UNAVAILABLE",
                "timeouterror": "BANK_TIMEOUT"}
JOURNEY = "player: scan to a definite outcome"
_seats = itertools.count()  # seats taken in this process, so users never share an EGM


@dataclass
class FloorTally:
    """What the floor's users of this process did, reported to the master at stop."""

    players: int = 0
    ops: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    unexpected: int = 0
    replays_refused: int = 0
    replays_accepted: int = 0
    credited_ids: list[str] = field(default_factory=list)
    usernames: list[str] = field(default_factory=list)

    def report(self, worker: int) -> dict[str, Any]:
        """The JSON-able report of this process."""
        return {"worker": worker, "players": self.players, "ops": self.ops,
                "outcomes": dict(self.outcomes), "unexpected": self.unexpected,
                "replaysRefused": self.replays_refused, "replaysAccepted": self.replays_accepted,
                "creditedIds": list(self.credited_ids)}

    def reset(self) -> None:
        """Start a new run's tally (Locust's web UI can run several tests per process)."""
        self.__init__()  # type: ignore[misc]


TALLY = FloorTally()


def worker_index(environment: Any) -> int:
    """This process's index among the workers (0 for a single process)."""
    return max(0, int(getattr(environment.runner, "worker_index", 0) or 0))


def ubai_for(username: str) -> str:
    """The UBAI the demo bank derives for a username (sim_trustly/microsite/demo_bank.py's rule), so
    partner ops read the limits of the floor's own players."""
    digest = hashlib.sha256(("demo-bank:" + username.casefold()).encode("utf-8")).hexdigest()
    return "ubai-" + digest[:32]


def qr_code_of(url: str) -> str:
    """The code of a QR url. The code, not the url, is what the phone uses: the url names
    Trustly as phones reach it, which from a load generator may be another address."""
    return urlsplit(url).path.rpartition("/scan/")[2]


class PlayerUser(ScanPayUser):
    """A seat at one EGM: the screen, the player, the EGM's QR refresh after a payment."""

    weight = 8
    wait_time = between(0.2, 1.0)

    def on_start(self) -> None:
        """Take a seat (create its EGM for the run when allowed) and start the screen."""
        super().on_start()
        s = self.settings
        self.rng = random.Random()  # noqa: S311 - load mix, not security
        self.seat = next(_seats)
        worker = worker_index(self.environment)
        self.tag = f"{s.run_id or 'load'}-{worker}-{self.seat}"
        if s.admin_token:
            self.egm_id = self.tag
            self.define_egm()
        else:
            workers = max(1, int(getattr(self.environment.parsed_options, "expect_workers", 1)
                                 or 1))
            self.egm_id = s.egms[(self.seat * workers + worker) % len(s.egms)]
        self.token: str | None = None
        self.shown: dict[str, Any] | None = None
        self.spent: set[str] = set()
        self.visit, self.spent_by_player = 0, 0
        self.username = self.new_player()
        TALLY.players += 1
        self.screen = gevent.spawn(self.watch_screen)

    def on_stop(self) -> None:
        """Switch the screen off with the seat."""
        self.screen.kill(block=False)

    def define_egm(self) -> None:
        """Create this run's EGM through the CMS's control API (create-or-replace)."""
        s = self.settings
        with self.client.request("PUT", f"{s.cms_url}/_sim/egms/{self.egm_id}",
                                 json={"name": f"Load {self.egm_id}"},
                                 headers={"Authorization": f"Bearer {s.admin_token}"},
                                 name="Setup->CMS PUT /_sim/egms/[egm]",
                                 catch_response=True) as response:
            if self.expect(response, 200, 201, keys=("id",)) is None:
                raise StopUser()

    def new_player(self) -> str:
        """A new player (a new bank account) sits down at the seat."""
        self.visit += 1
        self.spent_by_player = 0
        self.username = f"{self.tag}-v{self.visit}"
        TALLY.usernames.append(self.username)
        return self.username

    def watch_screen(self) -> None:
        """Poll the EGM's status feed like its screen page does and keep the QR it shows."""
        url = f"{self.settings.cms_url}/egm/{self.egm_id}/status.json"
        while True:
            with self.client.get(url, name="Screen->CMS GET /egm/[egm]/status.json",
                                 catch_response=True) as response:
                status = self.expect(response, 200, keys=("qrTokenId", "url"))
            if status and status["url"] and status["qrTokenId"] not in self.spent:
                self.shown = status
            gevent.sleep(self.settings.screen_poll_s)

    def refresh_qr(self) -> dict[str, Any] | None:
        """`POST /cws/v1/egms/{id}/qr`: the EGM shows a fresh QR (one retry on token expiry)."""
        shown = self.cms_call("POST", f"{self.settings.cms_url}/cws/v1/egms/{self.egm_id}/qr",
                              "EGM->CMS POST /cws/v1/egms/[egm]/qr", ("url", "qrTokenId"))
        if shown is not None:
            self.shown = shown
        return shown

    @task
    def play(self) -> None:
        """Scan the QR on screen, pay, see the outcome; maybe replay the spent QR."""
        started = time.perf_counter()
        shown = self.shown if self.shown and self.shown["qrTokenId"] not in self.spent \
            else self.refresh_qr()
        if shown is None:
            return
        code = qr_code_of(str(shown["url"]))
        headers = {CORRELATION_HEADER: f"{self.tag}-{uuid.uuid4().hex[:12]}"}
        if self.scan(code, headers) is None:
            self.shown = None
            return
        amount = int(pick(self.settings.amounts, self.rng))
        outcome = pick(self.settings.bank_outcomes, self.rng)
        if self.spent_by_player + amount > self.settings.player_budget:
            self.new_player()
        payment = self.pay(code, amount, outcome, headers)
        self.spent.add(str(shown["qrTokenId"]))
        self.shown = None
        self.record(payment, outcome, started)
        # Only a credited payment spends its QR: one the bank refused hands the QR back
        # (sim_trustly's tpas_release_qr_on_bank_refusal), so paying it again is a new payment.
        if (payment is not None and payment["status"] == "CREDITED"
                and self.rng.random() < self.settings.replay_share):
            self.replay(code, amount, headers)
        self.refresh_qr()

    def scan(self, code: str, headers: dict[str, str]) -> dict[str, Any] | None:
        """The phone opens the QR: it must be ACTIVE (the screen shows no spent QR)."""
        return self.scan_code(code, headers)

    def pay(self, code: str, amount: int, outcome: str,
            headers: dict[str, str]) -> dict[str, Any] | None:
        """Pay at the demo bank (the keyphrase in the password picks the outcome); poll a
        payment answered 202 until it settles."""
        api = f"{self.settings.trustly_url}/api/v1"
        password = "load" if outcome.casefold() == "ok" else f"load-{outcome}"
        body = {"amount": amount, "currency": self.settings.currency,
                "bank": {"username": self.username, "password": password}}
        return self.pay_and_settle(api, code, body, headers)

    def record(self, payment: dict[str, Any] | None, outcome: str, started: float) -> None:
        """One journey entry per payment: failed unless it ended as the bank outcome says."""
        if payment is None:
            return  # the failed request is already counted
        status, reason = payment["status"], payment.get("reason")
        expected = BANK_REASONS.get(outcome.casefold())
        ok = status == "CREDITED" if expected is None else (
            status == "FAILED_VOIDED" and reason == expected)
        TALLY.outcomes[status] += 1
        if status == "CREDITED":
            TALLY.credited_ids.append(str(payment.get("transactionId")))
            self.spent_by_player += int(payment.get("amount") or 0)
        failure = None
        if not ok:
            TALLY.unexpected += 1
            failure = AssertionError(f"bank outcome {outcome}: payment ended {status} {reason}")
        self.environment.events.request.fire(
            request_type="JOURNEY", name=JOURNEY, context={}, exception=failure,
            response_time=(time.perf_counter() - started) * 1000, response_length=0)

    def replay(self, code: str, amount: int, headers: dict[str, str]) -> None:
        """Pay the spent QR again: anything but 409 QR_CODE_USED is a failure."""
        body = {"amount": amount, "currency": self.settings.currency,
                "bank": {"username": self.username, "password": "load"}}
        with self.client.post(f"{self.settings.trustly_url}/api/v1/scan/{code}/payments",
                              json=body, headers=headers, catch_response=True,
                              name="Phone->Trustly POST /api/v1/scan/[code]/payments (replay)"
                              ) as response:
            if response.status_code == 409 and "QR_CODE_USED" in problem(response):
                response.success()
                TALLY.replays_refused += 1
                return
            if 200 <= response.status_code < 300:
                TALLY.replays_accepted += 1
                response.failure(f"a spent QR was accepted again: HTTP {response.status_code}")
            else:
                response.failure(f"replay: {problem(response)}, not HTTP 409 QR_CODE_USED")


class PartnerOpsUser(ScanPayUser):
    """Partner operations reading the daily limits of the floor's players: one back office
    per run, whatever the number of players."""

    fixed_count = 1
    wait_time = between(1.0, 3.0)

    def on_start(self) -> None:
        """An OAuth2 token of the CMS client, as the partner's back office holds one."""
        super().on_start()
        self.rng = random.Random()  # noqa: S311 - load mix, not security
        self.token: str | None = None
        TALLY.ops += 1

    @task
    def read_limit(self) -> None:
        """`GET /cws/v1/limits/{ubai}` of a player of this process (one renewal on 401)."""
        username = self.rng.choice(TALLY.usernames) if TALLY.usernames else "load-nobody"
        url = f"{self.settings.cms_url}/cws/v1/limits/{ubai_for(username)}"

        def within_limit(view: dict[str, Any]) -> str | None:
            if int(view["usedToday"]) > int(view["dailyLimit"]):
                return f"used {view['usedToday']} over the limit {view['dailyLimit']}"
            return None

        self.cms_call("GET", url, "Ops->CMS GET /cws/v1/limits/[ubai]",
                      ("dailyLimit", "usedToday"), check=within_limit)
