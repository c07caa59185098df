"""Racing fundings against real sim_cms servers (gunicorn, 2 workers x 8 threads, 127.0.0.1).

Two scenarios, each a function that fires the race over HTTP and returns what it saw:

- `identical_fundings`: 32 clients post the *same* funding at once, 50 rounds. Exactly one
  credit per round, every 201 byte-identical (one original, the rest replays), no 5xx.
- `limit_race`: 16 clients post *different* fundings on 16 EGMs for one UBAI whose daily limit
  has room for exactly one. Exactly one 201, fifteen 422 DAILY_LIMIT_EXCEEDED, no 5xx.

The normal tests run the product (`sim_cms.wsgi:create()`) and assert no violation. The teeth
tests run the same scenarios against `tests.e2e.unlocked_cms:create()` (EGM and usage rows
read without FOR UPDATE, SQLite writers on a deferred BEGIN) and assert that a bounded number
of attempts shows a violation. What the unlocked app gets wrong depends on the backend:

- SQLite (WAL) never lets a stale reader write: the loser of a read-then-write race fails
  with `database is locked` (SQLITE_BUSY_SNAPSHOT), i.e. 500s, in both scenarios.
- PostgreSQL (READ COMMITTED) lets it write: in the limit race, fundings that read the usage
  row before the first one committed all pass the check and overwrite `used` (lost update),
  so several 201s land (typically 7-14 of 16) and the meters take several times the limit,
  while `usedToday` still claims the limit was met exactly. The usage row must already exist
  for that (a first top-up earlier in the day), because inserting a missing row with ON
  CONFLICT DO NOTHING makes racers wait for the first insert's commit, lock or no lock;
  `limit_race(..., topped_up=True)` is that case. The identical-fundings scenario is *not*
  broken there: the unique keys on the transactionId turn every loser into a retry that
  replays the winner, so on PostgreSQL its teeth test asserts it still passes.

All setup goes through HTTP (OAuth token, control API for QR displays, Daily Limits API),
with unique references per run; the CMS runs on its controllable clock so a gaming day cannot
end mid-test.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, DatabaseFactory
from tests.e2e.cms_driver import KEEP_ALIVE, TIMEOUT_S, CmsDriver
from tests.e2e.processes import gunicorn

pytestmark = [pytest.mark.db, pytest.mark.slow]

PRODUCT = "sim_cms.wsgi:create()"
UNLOCKED = "tests.e2e.unlocked_cms:create()"
AMOUNT = 500
ROUNDS, SAME_CLIENTS = 50, 32
RACERS = 16
TEETH_ATTEMPTS = 5
EGM_IDS = [f"RACE-{n:02d}" for n in range(RACERS + 2)]  # +1 for the top-up, +1 for scenario A
CONFIG = "\n".join([
    "[cms]", "journal = false", "default_daily_limit = 10000000", "max_daily_limit = 100000000",
    *(f'[[cms.egms]]\nid = "{egm}"\ncredit_limit = 1000000000' for egm in EGM_IDS),
]) + "\n"


@dataclass(frozen=True)
class Reply:
    """One HTTP answer as a racer saw it (status 0: no answer, `error` says why)."""

    status: int
    body: bytes = b""
    replayed: bool = False
    code: str | None = None
    error: str | None = None


@dataclass
class RaceResult:
    """Every answer of a scenario, and each broken rule in words (empty when all held)."""

    replies: list[Reply] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def check(self, ok: bool, what: str) -> None:
        """Record `what` as a violation unless `ok`."""
        if not ok:
            self.violations.append(what)

    @property
    def server_errors(self) -> int:
        """Answers that were 5xx or no answer at all."""
        return sum(1 for reply in self.replies if reply.status >= 500 or reply.status == 0)


def _post(client: httpx.Client, body: dict[str, Any], barrier: threading.Barrier) -> Reply:
    barrier.wait()
    try:
        response = client.post("/cws/v1/fundings", json=body)
    except httpx.HTTPError as exc:
        return Reply(0, error=repr(exc))
    return Reply(response.status_code, response.content,
                 response.headers.get("Idempotent-Replayed") == "true", _code(response))


def _code(response: httpx.Response) -> str | None:
    """The problem document's `code` (None for a success, or a body that is not JSON)."""
    if response.status_code < 400:
        return None
    try:
        code = response.json().get("code")
    except (ValueError, AttributeError):
        return None
    return code if isinstance(code, str) else None


class Racers:
    """N threads, each with its own keep-alive client, that post together (a Barrier)."""

    def __init__(self, base: str, token: str, count: int) -> None:
        auth = {"Authorization": f"Bearer {token}"}
        self.clients = [httpx.Client(base_url=base, headers=auth, timeout=TIMEOUT_S,
                                     limits=KEEP_ALIVE) for _ in range(count)]
        self.pool = ThreadPoolExecutor(max_workers=count, thread_name_prefix="racer")

    def fire(self, bodies: list[dict[str, Any]]) -> list[Reply]:
        """Post `bodies[i]` from client i, all released at the same instant."""
        barrier = threading.Barrier(len(bodies), timeout=TIMEOUT_S)
        futures = [self.pool.submit(_post, client, body, barrier)
                   for client, body in zip(self.clients, bodies, strict=False)]
        return [future.result() for future in futures]

    def close(self) -> None:
        """Stop the threads and close the connections."""
        self.pool.shutdown()
        for client in self.clients:
            client.close()


@dataclass
class Floor:
    """A running CMS on a frozen clock, a TPAS token and the racers."""

    driver: CmsDriver
    token: str
    expires_at: datetime  # of every QR the floor shows: never reached
    racers: Racers
    log: Path

    def funding(self, egm_id: str, transaction_id: str, ubai: str) -> dict[str, Any]:
        """A well-formed funding body of AMOUNT for `egm_id`, naming a QR token shown on it
        for this funding alone (a QR token pays one funding)."""
        qr = self.driver.show_qr(egm_id, f"qr-{transaction_id}", self.expires_at)
        return {"transactionId": transaction_id, "egmId": egm_id, "amount": AMOUNT,
                "currency": "USD", "ubai": ubai, "qrTokenId": qr}

    def server_log(self, last: int = 3000) -> str:
        """The end of the server's log (tracebacks of any 5xx), for failure messages."""
        return self.log.read_text(errors="replace")[-last:] if self.log.exists() else ""


def identical_fundings(floor: Floor, rounds: int = ROUNDS) -> RaceResult:
    """Scenario A: SAME_CLIENTS post one identical funding per round; one credit per round."""
    result, egm, driver = RaceResult(), EGM_IDS[-1], floor.driver
    ledger_before, batch = driver.ledger()["transactions"], uuid.uuid4().hex[:10]
    for n in range(rounds):
        tid = f"same-{batch}-{n}"
        meter = driver.meter(floor.token, egm)
        replies = floor.racers.fire([floor.funding(egm, tid, f"ubai-{batch}")]
                                    * SAME_CLIENTS)
        result.replies += replies
        _check_identical_round(result, replies, tid)
        credited = driver.meter(floor.token, egm) - meter
        result.check(credited == AMOUNT, f"{tid}: meter moved by {credited}")
        status = driver.funding_status(floor.token, tid).get("status")
        result.check(status == "APPLIED", f"{tid}: status inquiry says {status}")
    ledger = driver.ledger()
    added = ledger["transactions"] - ledger_before
    result.check(added == rounds, f"{added} ledger transactions for {rounds} rounds")
    result.check(ledger["balanced"] is True, "the ledger does not balance")
    return result


def _check_identical_round(result: RaceResult, replies: list[Reply], tid: str) -> None:
    kinds = Counter((r.status, r.code) for r in replies)
    unexpected = {k: v for k, v in kinds.items()
                  if k not in ((201, None), (409, "FUNDING_IN_PROGRESS"))}
    result.check(not unexpected, f"{tid}: unexpected answers {unexpected}")
    created = [r for r in replies if r.status == 201]
    result.check(len({r.body for r in created}) == 1, f"{tid}: 201 bodies differ")
    originals = sum(1 for r in created if not r.replayed)
    result.check(originals == 1, f"{tid}: {originals} 201s were not replays")


def limit_race(floor: Floor, *, topped_up: bool) -> RaceResult:
    """Scenario B: one UBAI with room for one funding; RACERS EGMs fund it at once.

    `topped_up`: the UBAI was funded once earlier today (limit 2 x AMOUNT), rather than
    being fresh with a limit of one AMOUNT; only the unlocked app cares (module docstring).
    """
    result, ubai, driver = RaceResult(), f"race-{uuid.uuid4().hex[:12]}", floor.driver
    driver.set_limit(ubai, AMOUNT * (2 if topped_up else 1))
    if topped_up:
        first = driver.fund(floor.token, floor.funding(EGM_IDS[RACERS], f"{ubai}-first", ubai))
        assert first.status_code == 201, first.text
    egms = EGM_IDS[:RACERS]
    meters = {egm: driver.meter(floor.token, egm) for egm in egms}
    result.replies = floor.racers.fire([floor.funding(egm, f"{ubai}-{egm}", ubai)
                                        for egm in egms])
    kinds = Counter((r.status, r.code) for r in result.replies)
    result.check(kinds[(201, None)] == 1, f"{kinds[(201, None)]} fundings applied: {dict(kinds)}")
    refused = kinds[(422, "DAILY_LIMIT_EXCEEDED")]
    result.check(refused == RACERS - 1, f"{refused} DAILY_LIMIT_EXCEEDED: {dict(kinds)}")
    view = driver.limit(floor.token, ubai)
    result.check(view["usedToday"] == view["dailyLimit"],
                 f"used {view['usedToday']} of a limit of {view['dailyLimit']}")
    credited = sum(driver.meter(floor.token, egm) - before for egm, before in meters.items())
    result.check(credited == AMOUNT, f"the meters moved by {credited} in total")
    return result


@contextmanager
def _serve(app_spec: str, databases: DatabaseFactory, workdir: Path) -> Iterator[Floor]:
    """Run `app_spec` under gunicorn on a fresh database; set its floor up over HTTP."""
    config, log = workdir / "cms.toml", workdir / "gunicorn.log"
    config.write_text(CONFIG)
    # The workers' stderr goes to a file: nobody reads the pipe while the test runs, and a
    # burst of tracebacks would fill it and block every worker.
    env = {"SCANPAY_CMS_DATABASE_URL": databases.new("cms"), "SCANPAY_ADMIN_TOKEN": ADMIN_TOKEN,
           "SCANPAY_CONFIG": str(config), "SCANPAY_CONTROLLABLE_CLOCK": "1",
           "GUNICORN_CMD_ARGS": f"--capture-output --error-logfile {log}"}
    with gunicorn(app_spec, env) as base:
        driver = CmsDriver(base, ADMIN_TOKEN)
        expires_at = driver.now() + timedelta(hours=1)  # the clock is frozen: never reached
        token = driver.token()
        racers = Racers(base, token, SAME_CLIENTS)
        try:
            yield Floor(driver, token, expires_at, racers, log)
        finally:
            racers.close()
            driver.close()


# One server per app for the whole module: starting one costs seconds, and the scenarios use
# their own references (transactionIds, UBAIs) and count ledger rows as before/after deltas.
@pytest.fixture(scope="module")
def module_databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseFactory]:
    """Fresh databases for this module's servers (dropped at the end on PostgreSQL)."""
    factory = DatabaseFactory(tmp_path_factory.mktemp("cms-dbs"))
    yield factory
    factory.drop_all()


@pytest.fixture(scope="module")
def product(module_databases: DatabaseFactory,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Floor]:
    """sim_cms as shipped (`sim_cms.wsgi:create()`)."""
    with _serve(PRODUCT, module_databases, tmp_path_factory.mktemp("product")) as floor:
        yield floor


@pytest.fixture(scope="module")
def unlocked(module_databases: DatabaseFactory,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Floor]:
    """sim_cms with its funding locks replaced by plain reads (`tests.e2e.unlocked_cms`)."""
    with _serve(UNLOCKED, module_databases, tmp_path_factory.mktemp("unlocked")) as floor:
        yield floor


@pytest.fixture
def backend(module_databases: DatabaseFactory) -> str:
    """'sqlite' or 'postgresql': what this module's servers run on."""
    return module_databases.backend


def test_32_identical_fundings_give_one_credit_per_round(product: Floor) -> None:
    result = identical_fundings(product)
    assert result.violations == [], (result.violations[:10], product.server_log())
    assert result.server_errors == 0, product.server_log()
    assert len(result.replies) == ROUNDS * SAME_CLIENTS


@pytest.mark.parametrize("topped_up", [False, True], ids=["fresh-ubai", "topped-up-ubai"])
def test_16_fundings_racing_one_ubai_give_one_success_and_daily_limit_exceeded(
    product: Floor, topped_up: bool,
) -> None:
    result = limit_race(product, topped_up=topped_up)
    assert result.violations == [], (result.violations, product.server_log())
    assert result.server_errors == 0, product.server_log()


def _attempts(run: Callable[[], RaceResult]) -> list[RaceResult]:
    """Run a scenario up to TEETH_ATTEMPTS times, stopping at the first violation."""
    results: list[RaceResult] = []
    while len(results) < TEETH_ATTEMPTS and not any(r.violations for r in results):
        results.append(run())
    return results


def test_without_the_locks_racing_fundings_break_the_daily_limit_or_fail(
    unlocked: Floor, backend: str,
) -> None:
    results = _attempts(lambda: limit_race(unlocked, topped_up=True))
    broken = [r for r in results if r.violations]
    assert broken, f"{len(results)} unlocked limit races all passed"
    applied = sum(1 for reply in broken[0].replies if reply.status == 201)
    if backend == "sqlite":  # SQLite refuses the stale writers: 500s, never a second credit
        assert broken[0].server_errors > 0 and applied <= 1, broken[0].violations
    else:  # PostgreSQL lets the stale writers through: the UBAI goes over its limit
        assert applied > 1, broken[0].violations


def test_without_the_locks_identical_fundings_fail_on_sqlite_only(
    unlocked: Floor, backend: str,
) -> None:
    results = _attempts(lambda: identical_fundings(unlocked, rounds=1))
    if backend == "sqlite":
        assert any(r.server_errors for r in results), [r.violations for r in results]
    else:  # the unique keys on the transactionId still turn every loser into a replay
        assert [r.violations for r in results] == [[]] * TEETH_ATTEMPTS
