"""Names the dead-code check (vulture, run by `make lint`) cannot see used, and why each is.

Vulture reads our code alone: what a framework, a command line, a template or the tests use
by name looks unused to it. Functions registered by decorator (Flask views and error
handlers, SQLAlchemy events, pytest fixtures, click commands, Locust tasks and listeners)
and pytest's `pytest_*` hooks are ignored in pyproject.toml's [tool.vulture]; every other
such name is listed here, as an attribute of `_`, with the reason it is used. A name that
really is unused is deleted, not listed.
"""
# ruff: noqa: B018
from typing import Any

_: Any = None

# --- entry points named in command lines (granian --factory, gunicorn -c), not in Python ---
_.create_rsgi  # sim_cms.wsgi, bench.rsgi_bare_app: granian's RSGI factories
_.create_rsgi_in_worker  # sim_trustly.wsgi: granian's RSGI factory (docker-compose.yml)
_.post_fork  # sim_trustly.gunicorn_hooks: a gunicorn server hook, found by name

# --- alembic: every revision script's protocol ---
_.revision
_.down_revision
_.branch_labels
_.depends_on
_.downgrade  # run by `alembic downgrade` and tests/unit/test_migrations.py

# --- SQLAlchemy ---
_.impl  # simkit.sqltypes.UtcDateTime: the TypeDecorator's underlying type
_.cache_ok  # ... and its statement-cache flag
_.process_bind_param  # ... and the two conversions SQLAlchemy calls
_.process_result_value
_.funded_at  # sim_cms.models: mapped columns, written by keyword (the ORM reads them)
_.last_error_at
_.isolation_level  # simkit.db: set on the sqlite3 connection (the driver reads it)

# --- Flask, the stdlib and libraries calling our overrides and reading our attributes ---
_.journal_started  # simkit.journal: flask.g attribute, read back with g.get("journal_started")
_.log_request  # harness.browser.command: overrides WSGIRequestHandler.log_request
_.connection_made  # bench.loadgen: asyncio.Protocol callbacks
_.data_received
_.connection_lost
_.binary_location  # harness.browser.chromium: read by Selenium's ChromeOptions
_.short_help  # harness.cli.main: read by click when it lists the commands
_.frame  # harness.cli.rotate, loadtests.soak: the signal handler's second parameter

# --- Locust: class attributes and hooks Locust reads by name ---
_.abstract
_.wait_time
_.fixed_count
_.on_stop
_.worker_state  # loadtests.hooks: set on Locust's runner
_.process_exit_code  # loadtests.hooks: set on Locust's environment (the exit status)

# --- Jinja: fields of the report's view, read by harness/report/templates/report.html ---
_.checks_passed
_.faulted_rows
_.diagram

# --- the partner kit's API (harness.plugin.kit), for partners' tests and examples/ ---
_.new_username  # examples/partner_ci/test_partner_cms.py
_.pay_again  # examples/partner_ci/test_partner_cms.py
_.ubai_of  # a second player's UBAI, for a partner's limits test
_.post_raw  # harness.clients.cms: examples/partner_ci/README.md
_.put_limit  # harness.clients.cms: examples/partner_ci/test_partner_cms.py
_.bound  # harness.clients.http.LateWSGITransport: unused yet (a module being written now)

# --- read by the tests (and documents they check), not by product code ---
_.verify_chain  # sim_cms.audit: the audit chain's check (tests/unit/test_audit.py and others)
_.chain_length
_.records_for
_.first_bad_seq  # sim_cms.audit.VerifyResult: where the chain stops being valid
_.meter_matches_entries  # sim_cms.ledger: an invariant docs/architecture.md names
_.in_flight  # sim_trustly.tpas.recovery.RecoverySweeper: lanes busy now (tests/reliability)
_.verify_presented_token  # sim_trustly.auth_service.verifier: verifies as a party would
_.public_pem  # sim_trustly.auth_service.tokens: ES256 public key (tests/unit/test_tokens.py)
_.rotated  # ... Keyring.rotated, a key rotation (tests/unit/test_tokens.py)
_.not_before  # ... QrClaims.not_before, a claim of the token (tests/unit/test_tokens.py)
_.template_pattern  # harness.contract.openapi: tests/unit/test_partner_contract.py
_.run_browser_flow  # harness.browser.flow: tests/browser/test_browser_scan.py
_.half_s  # loadtests.soak.Growth: the sample times (tests/e2e/test_load_soak.py)
_.end_s
