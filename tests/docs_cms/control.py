"""The control hooks (`/_sim/*`, admin Bearer) and the two things they steer on every request:
the journal of the CMS's requests and answers, and the declared faults.

Faults hold only on the CMS's own API (`/cws/`); a rule hits the next `times` matching
requests. `delay` holds the request before it is handled; `apply_then_drop` handles it in full
and then closes the connection without an answer; `drop` closes it unhandled; `status` answers
that status unhandled.
"""

from __future__ import annotations

import json
import random
import socket
import sqlite3
from typing import Any

from tests.docs_cms.clock import iso
from tests.docs_cms.problems import Answer, Refused, ok, problem
from tests.docs_cms.store import Store

ACTIONS = {"status", "delay", "drop", "apply_then_drop"}
METHODS = {"*", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"}
MASKED = {"authorization", "cookie", "x-api-key"}


def parse_fault(body: Any) -> tuple[str, str, str, int | None, int | None, float, int | None]:
    """A fault rule's columns, or Refused (400) when the CMS cannot honour it."""
    if not isinstance(body, dict):
        raise Refused(problem(400, "INVALID_REQUEST", "A rule is a JSON object."))
    method = str(body.get("method", "*")).upper()
    path, action = body.get("path"), body.get("action")
    status, delay, times = body.get("status"), body.get("delayMs"), body.get("times")
    probability = body.get("probability", 1.0)
    if method not in METHODS or not isinstance(path, str) or not path.startswith("/"):
        raise Refused(problem(400, "INVALID_REQUEST", "method or path.", field="path"))
    if action not in ACTIONS:
        raise Refused(problem(400, "INVALID_REQUEST", "Unknown action.", field="action"))
    ints_ok = all(v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0)
                  for v in (status, delay, times))
    if not ints_ok or (times is not None and times < 1):
        raise Refused(problem(400, "INVALID_REQUEST", "status, delayMs, times.", field="times"))
    if action == "status" and (status is None or not 400 <= status <= 599):
        raise Refused(problem(400, "INVALID_REQUEST", "status needs 400..599.", field="status"))
    if action == "delay" and delay is None:
        raise Refused(problem(400, "INVALID_REQUEST", "delay needs delayMs.", field="delayMs"))
    if not isinstance(probability, int | float) or not 0 <= probability <= 1:
        raise Refused(problem(400, "INVALID_REQUEST", "probability in 0..1.",
                              field="probability"))
    return method, path, action, status, delay, float(probability), times


def _rule_view(row: sqlite3.Row) -> dict[str, Any]:
    return {"id": row["id"], "method": row["method"], "path": row["path"],
            "action": row["action"], "status": row["status"], "delayMs": row["delay_ms"],
            "probability": row["probability"], "times": row["remaining"]}


class Faults:
    """The declared fault rules."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, body: Any) -> Answer:
        """POST /_sim/faults: 201 with the rules in force."""
        rule = parse_fault(body)
        with self.store.write() as db:
            db.execute("INSERT INTO faults (method, path, action, status, delay_ms, "
                       "probability, remaining) VALUES (?, ?, ?, ?, ?, ?, ?)", rule)
        return ok(201, self._list())

    def _list(self) -> dict[str, Any]:
        with self.store.read() as db:
            return {"faults": [_rule_view(r) for r in db.execute("SELECT * FROM faults")]}

    def list(self) -> Answer:
        """GET /_sim/faults."""
        return ok(200, self._list())

    def clear(self) -> Answer:
        """DELETE /_sim/faults."""
        with self.store.write() as db:
            deleted = db.execute("DELETE FROM faults").rowcount
        return ok(200, {"deleted": deleted})

    def take(self, method: str, path: str) -> dict[str, Any] | None:
        """The first rule matching this request, counted as used (atomically), if one hits."""
        with self.store.read() as db:  # no rule, no write lock: requests never queue on it
            if db.execute("SELECT 1 FROM faults LIMIT 1").fetchone() is None:
                return None
        with self.store.write() as db:
            for row in db.execute("SELECT * FROM faults ORDER BY id").fetchall():
                pattern = row["path"]
                matches = (path.startswith(pattern[:-1]) if pattern.endswith("*")
                           else path == pattern)
                if not matches or row["method"] not in ("*", method):
                    continue
                if random.random() >= row["probability"]:
                    continue
                if row["remaining"] is not None:
                    if row["remaining"] <= 1:
                        db.execute("DELETE FROM faults WHERE id = ?", (row["id"],))
                    else:
                        db.execute("UPDATE faults SET remaining = remaining - 1 WHERE id = ?",
                                   (row["id"],))
                return _rule_view(row)
        return None


def drop_connection(environ: dict[str, Any]) -> None:
    """Close the client's connection so it gets no answer (a lost answer, as TPAS sees it)."""
    sock = environ.get("werkzeug.socket")
    if isinstance(sock, socket.socket):
        sock.shutdown(socket.SHUT_RDWR)


class Journal:
    """Every request the CMS answered, with its answer (secrets masked)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def record(self, entry: dict[str, Any]) -> None:
        """Append one exchange."""
        headers = {k: ("***" if k.lower() in MASKED else v)
                   for k, v in entry["request_headers"].items()}
        body = entry["request_body"]
        if entry["path"].endswith("/oauth/token"):
            body = "***"  # may carry client_secret
        with self.store.write() as db:
            db.execute("INSERT INTO journal (at, method, path, query, status, latency_ms, "
                       "correlation_id, request_headers, request_body, response_body, fault) "
                       "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                       (iso(entry["at"]), entry["method"], entry["path"], entry["query"],
                        entry["status"], entry["latency_ms"], entry["correlation_id"],
                        json.dumps(headers), body, entry["response_body"], entry["fault"]))

    def read(self, args: dict[str, str]) -> Answer:
        """GET /_sim/journal: `limit`, `since`, `path`, `correlationId`."""
        try:
            limit = int(args.get("limit", "200"))
            since = int(args["since"]) if "since" in args else None
        except ValueError as exc:
            raise Refused(problem(400, "INVALID_REQUEST", "limit and since are integers.")) \
                from exc
        if not 1 <= limit <= 1000 or (since is not None and since < 0):
            raise Refused(problem(400, "INVALID_REQUEST", "limit 1..1000, since >= 0."))
        where: list[str] = ["1 = 1"]
        params: list[object] = []
        if since is not None:
            where.append("id > ?")
            params.append(since)
        if "path" in args:
            where.append("substr(path, 1, ?) = ?")
            params += [len(args["path"]), args["path"]]
        if "correlationId" in args:
            where.append("correlation_id = ?")
            params.append(args["correlationId"])
        order = "ASC" if since is not None else "DESC"
        with self.store.read() as db:
            rows = db.execute(f"SELECT * FROM journal WHERE {' AND '.join(where)} "
                              f"ORDER BY id {order} LIMIT ?", (*params, limit)).fetchall()
        entries = [{"id": r["id"], "at": r["at"], "method": r["method"], "path": r["path"],
                    "query": r["query"], "status": r["status"], "latencyMs": r["latency_ms"],
                    "correlationId": r["correlation_id"],
                    "requestHeaders": json.loads(r["request_headers"]),
                    "requestBody": r["request_body"], "responseBody": r["response_body"],
                    "fault": r["fault"]} for r in rows]
        entries.sort(key=lambda e: e["id"])
        return ok(200, {"entries": entries})
