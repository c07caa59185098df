"""A sim's control API (`/_sim/*`) as the harness calls it: one class for every sim.

The CMS's control API (the hooks a target declares) and the harness's Trustly's (always
there) are the same API on different base URLs, so one `ControlApi` serves both: the clock,
the journal, the hooks' calls. Every call sends the admin token. By default each call opens a
short-lived client; `kept_open()` gives a copy that keeps one client for many calls (a
scenario's journal marks, before every request it makes) until `close`.

The journal is read two ways: `journal` takes whatever entries the answer holds (a scenario's
recorder, which notes a journal it cannot read), `checked_journal` raises `JournalUnavailable`
with the reason (`harness.sequence.messages.Journals`, for `scanpay flow`).
"""

from __future__ import annotations

from typing import Any

from harness.clients.http import Client, HTTPError, Response, Transport, open_client

USER_AGENT = "scanpay-certify/0.1"
TIMEOUT_S = 30.0
JOURNAL_PAGE = 1000
MAX_JOURNAL_PAGES = 20


class JournalUnavailable(Exception):
    """A journal could not be read: unreachable, no control API, or the admin token refused."""


class ControlApi:
    """One sim's `/_sim` control API: base URL, admin token, and the in-process transport."""

    def __init__(self, base_url: str, admin_token: str, transport: Transport | None = None, *,
                 user_agent: str = USER_AGENT, timeout_s: float = TIMEOUT_S) -> None:
        self.base_url = base_url
        self.admin_token = admin_token
        self.transport = transport
        self.user_agent = user_agent
        self.timeout_s = timeout_s
        self._kept: Client | None = None

    def __repr__(self) -> str:  # never print the admin token
        return f"ControlApi({self.base_url!r})"

    def _client(self, timeout_s: float | None = None) -> Client:
        return open_client(self.base_url, transport=self.transport,
                           timeout=self.timeout_s if timeout_s is None else timeout_s,
                           headers={"Authorization": f"Bearer {self.admin_token}",
                                    "User-Agent": self.user_agent})

    def kept_open(self) -> ControlApi:
        """A copy whose calls share one client until `close` (many calls in a row)."""
        copy = ControlApi(self.base_url, self.admin_token, self.transport,
                          user_agent=self.user_agent, timeout_s=self.timeout_s)
        copy._kept = copy._client()
        return copy

    def close(self) -> None:
        """Close the kept client, if any."""
        if self._kept is not None:
            self._kept.close()
            self._kept = None

    def call(self, method: str, path: str, *, timeout_s: float | None = None,
             **kwargs: Any) -> Response:
        """One control call: the answer as it came (the library's errors when none came)."""
        if self._kept is not None and timeout_s is None:
            return self._kept.request(method, path, **kwargs)
        with self._client(timeout_s) as client:
            return client.request(method, path, **kwargs)

    # --- the journal ----------------------------------------------------------------------

    def journal(self, **params: Any) -> list[dict[str, Any]]:
        """`GET /_sim/journal`: the entries the answer holds (none when it holds none)."""
        entries: list[dict[str, Any]] = self.call(
            "GET", "/_sim/journal", params=params).json().get("entries", [])
        return entries

    def checked_journal(self, source: str, **params: Any) -> list[dict[str, Any]]:
        """`GET /_sim/journal`, or JournalUnavailable saying why `source`'s cannot be read."""
        try:
            response = self.call("GET", "/_sim/journal", params=params)
        except HTTPError as exc:
            raise JournalUnavailable(f"cannot read {source}'s journal ({exc})") from exc
        if response.status_code in (401, 403):
            raise JournalUnavailable(f"{source} refused the admin token ({_status(response)})")
        if response.status_code == 404:
            raise JournalUnavailable(
                f"{source} serves no control API (started without --admin-token?)")
        if response.status_code != 200:
            raise JournalUnavailable(f"{source}: {_status(response)}")
        entries: list[dict[str, Any]] = response.json().get("entries", [])
        return entries

    def last_journal_id(self) -> int:
        """The id of the journal's latest entry (0 when empty)."""
        entries = self.journal(limit=1)
        return int(entries[-1]["id"]) if entries else 0

    def journal_since(self, mark: int, source: str | None = None) -> list[dict[str, Any]]:
        """Every entry after `mark` (paged, bounded); checked when `source` names the sim."""
        entries: list[dict[str, Any]] = []
        for _ in range(MAX_JOURNAL_PAGES):
            params = {"since": mark, "limit": JOURNAL_PAGE}
            page = self.journal(**params) if source is None else \
                self.checked_journal(source, **params)
            entries += page
            if len(page) < JOURNAL_PAGE:
                break
            mark = int(page[-1]["id"])
        return entries


def _status(response: Response) -> str:
    try:
        code = response.json().get("code")
    except (ValueError, AttributeError):
        code = None
    return f"HTTP {response.status_code}" + (f" {code}" if isinstance(code, str) else "")
