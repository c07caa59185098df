"""The docs-built CMS as a Flask app: the CWS API TPAS calls, the EGM calls, the control hooks.

Views are thin: they check credentials, read the request and hand it to a service
(`FundingDesk`, `LimitBook`, `QrDesk`, `TokenIssuer`, `Faults`, `Journal`), which answer
with an `Answer`. Every decision reads one clock, the one the `clock` hook moves.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from threading import Event
from time import monotonic
from typing import Any

from flask import Flask, Response, g, request

from tests.docs_cms.auth import TokenIssuer, check_admin
from tests.docs_cms.clock import OffsetClock, iso, parse_instant
from tests.docs_cms.control import Faults, Journal, drop_connection
from tests.docs_cms.defects import check
from tests.docs_cms.fundings import PATTERNS, FundingDesk, parse_request
from tests.docs_cms.limits import LimitBook, check_ubai
from tests.docs_cms.problems import Answer, Refused, ok, problem
from tests.docs_cms.store import Store
from tests.docs_cms.trustly import Merchant, QrDesk, TrustlyUnavailable, png

MAX_BODY = 16_384
EGM_STATES = {"IDLE", "IN_GAME", "DOOR_OPEN", "TILT", "OFFLINE"}


@dataclass
class Config:
    """Everything the CMS needs to start."""

    database: Path
    trustly_url: str
    admin_token: str
    merchant_id: str = "demo-merchant"
    access_id: str = "demo-access-id"
    access_key: str = "demo-access-key"
    client_id: str = "tpas-client"
    client_secret: str = "tpas-secret"
    egm_ids: list[str] = field(default_factory=lambda: [f"EGM-{n:03d}" for n in range(1, 6)])
    credit_limit: int = 500_000
    currency: str = "USD"
    defect: str | None = None


def respond(answer: Answer) -> Response:
    """An Answer as an HTTP response."""
    return Response(answer.body, answer.status, headers=answer.headers,
                    content_type=answer.content_type)


def create_app(config: Config) -> Flask:
    """Build the CMS; `config.defect` plants one of `defects.DEFECTS`."""
    defect = check(config.defect)
    store = Store(config.database)
    store.seed(config.egm_ids, config.credit_limit, config.currency)
    clock = OffsetClock()
    limits = LimitBook(store, clock)
    desk = FundingDesk(store, clock, limits, defect)
    qrs = QrDesk(store, clock, Merchant(config.trustly_url, config.merchant_id,
                                        config.access_id, config.access_key),
                 replace_used=defect != "no-qr-replacement")
    tokens = TokenIssuer(store, clock, config.client_id, config.client_secret)
    faults, journal = Faults(store), Journal(store)
    app = Flask(__name__)

    @app.errorhandler(Refused)
    def refused(exc: Refused) -> Response:
        return respond(exc.answer)

    @app.errorhandler(404)
    def not_found(_: Exception) -> Response:
        return respond(problem(404, "NOT_FOUND", "The URL names no operation."))

    @app.errorhandler(405)
    def not_allowed(_: Exception) -> Response:
        return respond(problem(405, "METHOD_NOT_ALLOWED", "Method not allowed."))

    @app.errorhandler(500)
    def internal(_: Exception) -> Response:
        return respond(problem(500, "INTERNAL_ERROR", "A defect."))

    @app.before_request
    def before() -> Response | None:
        g.started, g.fault = monotonic(), None
        if not request.path.startswith("/cws/"):
            return None
        rule = faults.take(request.method, request.path)
        if rule is None:
            return None
        g.fault = rule["action"]
        if rule["action"] == "delay":
            Event().wait(rule["delayMs"] / 1000)  # answer that much later, held before handling
        elif rule["action"] == "status":
            return respond(problem(rule["status"], "FAULT_INJECTED", "An injected fault."))
        elif rule["action"] == "drop":
            drop_connection(request.environ)
            return Response(status=500)
        return None

    @app.after_request
    def after(response: Response) -> Response:
        if not request.path.startswith("/_sim/"):
            journal.record({
                "at": clock.now(), "method": request.method, "path": request.path,
                "query": request.query_string.decode("latin-1"), "status": response.status_code,
                "latency_ms": int((monotonic() - g.get("started", monotonic())) * 1000),
                "correlation_id": request.headers.get("X-Correlation-Id"),
                "request_headers": dict(request.headers),
                "request_body": request.get_data(as_text=True)[:4000],
                "response_body": (response.get_data(as_text=True)[:4000]
                                  if response.mimetype != "image/png" else "<png>"),
                "fault": g.get("fault")})
        if g.get("fault") == "apply_then_drop":
            drop_connection(request.environ)
        return response

    def tpas() -> None:
        tokens.check(request.headers.get("Authorization"))

    def admin() -> None:
        check_admin(request.headers.get("Authorization"), config.admin_token)

    def json_body() -> bytes:
        if request.content_length and request.content_length > MAX_BODY:
            raise Refused(problem(413, "PAYLOAD_TOO_LARGE", "Body over 16384 bytes."))
        if request.mimetype != "application/json":
            raise Refused(problem(415, "UNSUPPORTED_MEDIA_TYPE", "Send application/json."))
        raw = request.get_data()
        if len(raw) > MAX_BODY:
            raise Refused(problem(413, "PAYLOAD_TOO_LARGE", "Body over 16384 bytes."))
        return raw

    def egm_row(egm_id: str) -> dict[str, Any]:
        with store.read() as db:
            row = db.execute("SELECT * FROM egms WHERE id = ?", (egm_id,)).fetchone()
        if row is None:
            raise Refused(problem(404, "EGM_NOT_FOUND", "No such EGM.", egmId=egm_id))
        return {"id": row["id"], "name": row["name"], "state": row["state"],
                "creditMeter": row["credit_meter"], "creditLimit": row["credit_limit"],
                "currency": row["currency"]}

    def trustly_failed(egm_id: str, exc: TrustlyUnavailable) -> Response:
        return respond(problem(502, "TRUSTLY_UNAVAILABLE", str(exc), egmId=egm_id,
                               retryAfter=5, trustlyStatus=exc.status, reason=exc.reason))

    # --- The CWS API, as TPAS calls it -------------------------------------------------
    @app.post("/cws/v1/oauth/token")
    def token() -> Response:
        if request.content_length and request.content_length > MAX_BODY:
            return respond(problem(413, "PAYLOAD_TOO_LARGE", "Body over 16384 bytes."))
        return respond(tokens.issue(request.headers.get("Authorization"), request.get_data()))

    @app.post("/cws/v1/fundings")
    def create_funding() -> Response:
        tpas()
        return respond(desk.fund(parse_request(json_body())))

    @app.get("/cws/v1/fundings/<transaction_id>")
    def funding_status(transaction_id: str) -> Response:
        tpas()
        if PATTERNS["transactionId"].fullmatch(transaction_id):
            return respond(desk.status(transaction_id))
        return respond(problem(400, "VALIDATION_ERROR", "Not a transactionId.",
                               field="transactionId"))

    @app.route("/cws/v1/limits/<ubai>", methods=["GET", "PUT", "PATCH", "DELETE"])
    def daily_limit(ubai: str) -> Response:
        tpas()
        if request.method == "GET":
            return respond(limits.get(ubai))
        if request.method == "DELETE":
            return respond(limits.delete(ubai))
        check_ubai(ubai)
        raw = json_body()
        return respond(limits.put(ubai, raw) if request.method == "PUT"
                       else limits.patch(ubai, raw))

    @app.get("/cws/v1/egms")
    def list_egms() -> Response:
        tpas()
        return respond(ok(200, {"egms": [egm_row(e) for e in config.egm_ids]}))

    @app.get("/cws/v1/egms/<egm_id>")
    def read_egm(egm_id: str) -> Response:
        tpas()
        return respond(ok(200, egm_row(egm_id)))

    @app.post("/cws/v1/egms/<egm_id>/qr")
    def acquire_qr(egm_id: str) -> Response:
        tpas()
        egm_row(egm_id)
        try:
            return respond(ok(200, qrs.acquire(egm_id, request.headers.get("X-Correlation-Id"))))
        except TrustlyUnavailable as exc:
            return trustly_failed(egm_id, exc)

    # --- The EGM's screen (no credentials) -----------------------------------------------
    @app.get("/egm/<egm_id>/qr.png")
    def qr_png(egm_id: str) -> Response:
        egm_row(egm_id)
        try:
            shown = qrs.shown(egm_id)
        except TrustlyUnavailable as exc:
            return trustly_failed(egm_id, exc)
        return Response(png(shown["url"]), 200, content_type="image/png",
                        headers={"Cache-Control": "no-store"})

    @app.get("/egm/<egm_id>")
    def screen(egm_id: str) -> Response:
        egm = egm_row(egm_id)
        meter = f"{egm['creditMeter'] // 100}.{egm['creditMeter'] % 100:02d}"
        page = (f"<!doctype html><title>{html.escape(egm_id)}</title>"
                f"<h1>{html.escape(egm['name'])}</h1><p>Credit: {meter} {egm['currency']}</p>"
                f"<p>State: {egm['state']}</p>"
                f'<img alt="Scan to pay" src="/egm/{html.escape(egm_id)}/qr.png">')
        return Response(page, 200, content_type="text/html; charset=utf-8")

    @app.get("/health")
    def health() -> Response:
        return respond(ok(200, {"status": "ok"}))

    # --- Control hooks ------------------------------------------------------------------
    @app.post("/_sim/egms/<egm_id>")
    def set_state(egm_id: str) -> Response:
        admin()
        body = request.get_json(silent=True)
        state = body.get("state") if isinstance(body, dict) else None
        if state not in EGM_STATES:
            return respond(problem(400, "INVALID_REQUEST", "Unknown state.", field="state"))
        egm_row(egm_id)
        with store.write() as db:
            db.execute("UPDATE egms SET state = ? WHERE id = ?", (state, egm_id))
        return respond(ok(200, egm_row(egm_id)))

    @app.route("/_sim/clock", methods=["GET", "POST"])
    def clock_hook() -> Response:
        admin()
        if request.method == "POST":
            body = request.get_json(silent=True)
            body = body if isinstance(body, dict) else {}
            advance = body.get("advance")
            if isinstance(advance, int | float) and not isinstance(advance, bool) \
                    and advance > 0 and len(body) == 1:
                clock.advance(float(advance))
            elif "set" in body and len(body) == 1:
                try:
                    clock.set(parse_instant(body["set"]))
                except ValueError:
                    return respond(problem(400, "INVALID_REQUEST", "set takes an instant."))
            else:
                return respond(problem(400, "INVALID_REQUEST", 'Send {"advance": seconds > 0} '
                                       'or {"set": instant}.'))
        return respond(ok(200, {"now": iso(clock.now()), "controllable": True,
                                "frozen": False}))

    @app.route("/_sim/faults", methods=["GET", "POST", "DELETE"])
    def faults_hook() -> Response:
        admin()
        if request.method == "GET":
            return respond(faults.list())
        if request.method == "DELETE":
            return respond(faults.clear())
        return respond(faults.add(request.get_json(silent=True)))

    @app.get("/_sim/journal")
    def journal_hook() -> Response:
        admin()
        return respond(journal.read(request.args.to_dict()))

    @app.post("/_sim/reset")
    def reset() -> Response:
        admin()
        with store.write() as db:
            for table in ("fundings", "limits", "ledger", "journal", "faults", "qrs"):
                db.execute(f"DELETE FROM {table}")
            db.execute("UPDATE egms SET credit_meter = 0, state = 'IDLE', current_qr = NULL")
        return respond(ok(200, {"reset": True}))

    @app.get("/_sim/fundings")
    def fundings_hook() -> Response:
        admin()
        since = request.args.get("since")
        try:
            floor = iso(parse_instant(since)) if since else ""
        except ValueError:
            return respond(problem(400, "INVALID_REQUEST", "since is not an instant.",
                                   field="since"))
        with store.read() as db:
            rows = db.execute("SELECT * FROM fundings WHERE decided_at >= ? "
                              "ORDER BY decided_at, rowid", (floor,)).fetchall()
        return respond(ok(200, {"fundings": [
            {"transactionId": r["transaction_id"], "egmId": r["egm_id"], "amount": r["amount"],
             "currency": r["currency"], "outcome": r["outcome"], "httpStatus": r["http_status"],
             "code": r["code"], "ubai": r["ubai"], "qrTokenId": r["qr_token_id"],
             "decidedAt": r["decided_at"]} for r in rows]}))

    @app.get("/_sim/state")
    def state() -> Response:
        admin()
        with store.read() as db:
            unbalanced = db.execute("SELECT COUNT(*) FROM (SELECT txn FROM ledger GROUP BY txn "
                                    "HAVING SUM(amount) != 0)").fetchone()[0]
            entries = db.execute("SELECT COUNT(*) FROM ledger").fetchone()[0]
        return respond(ok(200, {"egms": [egm_row(e) for e in config.egm_ids],
                                "ledger": {"balanced": unbalanced == 0, "entries": entries}}))

    @app.post("/_sim/qr/rotate")
    def rotate() -> Response:
        admin()
        return respond(ok(200, qrs.rotate_all()))

    return app
