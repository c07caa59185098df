"""TPAS's recovery sweep in the background: open payments carried on, CMS by CMS, by a small
pool of threads, so a CMS that does not answer neither holds up start-up nor anyone else.

Start-up never waits for a CMS. A server builds the app, starts the sweep
(`start_recovery_worker`) and serves at once. A process that alone uses the database
(`scanpay serve`, gunicorn's master before it forks) first ends the leases a dead process
left (`release_leases_at_startup`, a database update and nothing else), so the sweep's first
tick takes those payments over instead of waiting for their leases to run out.

Every tick (`tpas_recovery_interval_s`) finds the merchants with payments due (lease run out)
and groups them into lanes, one per CMS profile: a merchant's own profile, or the default one
that merchants without a profile share (one CMS). A lane is queued for each CMS that has none
queued or running and is not backing off; `tpas_recovery_concurrency` threads run the lanes.
A lane carries its CMS's due payments on one after the other (`state_machine.recover_one`,
with the profile's retries). The first payment it cannot settle (the CMS did not answer)
ends the lane, and that CMS backs off for its profile's `retries.backoff_cap_s` on the
deployment's clock; its other payments wait for a later tick. So a dead CMS costs one
payment's retries at a time, in one thread, while the other CMSs' lanes run in the others;
and a phone's payment never waits for the sweep: it is driven by its own request.

Exactly-once is the funding driver's: a lane takes each payment's lease by compare-and-set
before it sends anything, with the payment's one transactionId, and every state change is a
compare-and-set on the status; so a lane racing a live request's retry, or another worker's
lane, cannot settle a payment twice.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sim_trustly.cms_client.adapters import profile_for
from sim_trustly.cms_client.partner_profiles import CmsProfile
from sim_trustly.context import EXTENSION, TrustlyContext
from sim_trustly.tpas import payments
from sim_trustly.tpas.state_machine import recover_one

log = logging.getLogger(__name__)

Task = Callable[[], None]


class _Pool:
    """A fixed number of daemon threads running queued tasks in order.

    Daemon threads, not a ThreadPoolExecutor: a lane stuck on a CMS that never answers must
    not keep a stopping server alive until its timeouts run out.
    """

    def __init__(self, size: int, name: str) -> None:
        self._tasks: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._run, name=f"{name}-{n}", daemon=True)
                         for n in range(size)]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        while (task := self._tasks.get()) is not None:
            try:
                task()
            except Exception:  # a thread of the pool must outlive any one task
                log.exception("recovery task failed")

    def submit(self, task: Task) -> None:
        """Queue `task`; a free thread runs it."""
        self._tasks.put(task)

    def stop(self, timeout_s: float) -> None:
        """Let each thread finish its task, and wait for them at most `timeout_s` in all."""
        for _ in self._threads:
            self._tasks.put(None)
        for thread in self._threads:
            thread.join(timeout_s / len(self._threads))


@dataclass
class RecoverySweeper:
    """The lanes of one process: which CMS has one queued or running, which backs off."""

    ctx: TrustlyContext
    concurrency: int
    _pool: _Pool = field(init=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _busy: set[CmsProfile] = field(init=False, default_factory=set)
    _resume_at: dict[CmsProfile, datetime] = field(init=False, default_factory=dict)
    _stopping: threading.Event = field(init=False, default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._pool = _Pool(self.concurrency, "sim-trustly-recovery")

    def tick(self) -> int:
        """Queue a lane for every CMS with payments due that is free to take one; how many."""
        now = self.ctx.clock.now()
        lanes: dict[CmsProfile, list[str]] = {}
        for merchant_id in payments.merchants_due(self.ctx.db, now):
            lanes.setdefault(profile_for(self.ctx.settings, merchant_id), []).append(merchant_id)
        queued = 0
        for profile, merchant_ids in lanes.items():
            with self._lock:
                if profile in self._busy or now < self._resume_at.get(profile, now):
                    continue
                self._busy.add(profile)
            self._pool.submit(partial(self._lane, profile, tuple(merchant_ids)))
            queued += 1
        return queued

    def in_flight(self) -> list[str]:
        """The CMSs (profile names) whose lane is queued or running now."""
        with self._lock:
            return sorted(profile.name for profile in self._busy)

    def _lane(self, profile: CmsProfile, merchant_ids: Iterable[str]) -> None:
        """Carry one CMS's due payments on until one cannot be settled; then back off."""
        try:
            due = payments.due_of_merchants(self.ctx.db, self.ctx.clock.now(), merchant_ids)
            for payment_id in due:
                if self._stopping.is_set():
                    return
                view = recover_one(self.ctx, payment_id)
                if view is not None and not view.definite:
                    self._back_off(profile, f"payment {payment_id} is still {view.status}")
                    return
        except Exception:  # a database hiccup or a broken adapter: this CMS waits its turn
            log.exception("recovery lane of CMS %s failed", profile.name)
            self._back_off(profile, "the lane failed")
        finally:
            with self._lock:
                self._busy.discard(profile)

    def _back_off(self, profile: CmsProfile, why: str) -> None:
        pause = profile.retries.backoff_cap_s
        with self._lock:
            self._resume_at[profile] = self.ctx.clock.now() + timedelta(seconds=pause)
        log.warning("recovery: CMS %s gave no answer (%s); its payments wait %.0f s",
                    profile.name, why, pause)

    def stop(self, timeout_s: float) -> None:
        """Start no further payment, and wait (bounded) for the lanes in flight."""
        self._stopping.set()
        self._pool.stop(timeout_s)


@dataclass
class RecoveryWorker:
    """The background thread that ticks the sweep every `interval_s` until stopped."""

    thread: threading.Thread
    stop_event: threading.Event
    sweeper: RecoverySweeper

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the thread and the lanes to finish what they are doing, and wait for them."""
        self.stop_event.set()
        self.thread.join(timeout_s)
        self.sweeper.stop(timeout_s)


def start_recovery_worker(app: Any, interval_s: float | None = None) -> RecoveryWorker:
    """Sweep `app`'s open payments in the background (`tpas_recovery_interval_s` default).

    Returns at once: the first tick runs in the worker's thread. Started by the servers
    (`scanpay serve`, the WSGI entries, the gunicorn hooks), never in `create_app`: tests
    call `recover_payments` directly with a manual clock.
    """
    ctx: TrustlyContext = app.extensions[EXTENSION]
    interval = ctx.settings.tpas_recovery_interval_s if interval_s is None else interval_s
    sweeper = RecoverySweeper(ctx, ctx.settings.tpas_recovery_concurrency)
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                sweeper.tick()
            except Exception:  # the worker must outlive a database hiccup
                log.exception("payment recovery tick failed")
            stop.wait(interval)

    thread = threading.Thread(target=run, name="sim-trustly-recovery", daemon=True)
    thread.start()
    return RecoveryWorker(thread=thread, stop_event=stop, sweeper=sweeper)


def release_leases_at_startup(app: Any) -> int:
    """End the leases a dead process left, so the sweep takes its payments over at once.

    Only for a process that alone uses the database at that moment (`scanpay serve`, or
    gunicorn's master before the fork); a granian worker must not, since its siblings may
    already be paying. A database update, no CMS call: start-up never waits for a CMS.
    """
    ctx: TrustlyContext = app.extensions[EXTENSION]
    return payments.release_leases(ctx.db, ctx.clock.now())

