"""One PostgreSQL connection driven at the libpq level, for the statements of the hot paths.

psycopg's cursor API costs 25 to 100 us of Python per statement (its generators, adapters
and result wrapping, and a transaction's autocommit switches), several times what the few
primary-key statements of a funding cost the database, and a funding made three such round
trips. Here the same connection is driven through psycopg's libpq wrapper (`pgconn`), which
costs a few microseconds per statement:

- every statement is prepared once per connection (keyed by its SQL and its parameters'
  types), with `:name` parameters turned into `$n`;
- parameters travel as text, with a type only where the text alone would be ambiguous (dates
  and instants; strings and NULLs are left for the server to infer from where they go);
- rows are loaded by psycopg's own loaders (`Transformer`), so values come back exactly as
  the cursor API returns them;
- several statements can go in one round trip (libpq's pipeline mode, ended by a sync), e.g.
  BEGIN with the first statement, or the last statement with its COMMIT.

Waiting for the server is done with `select` (the interpreter lock is released); libpq's
blocking calls that would hold the lock while the server works are not used.
"""

from __future__ import annotations

import re
import select
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from psycopg import pq
from psycopg.adapt import Transformer

_NAMED_PARAM = re.compile(r"(?<!:):([A-Za-z_][A-Za-z0-9_]*)")
_BOOL, _INT8, _FLOAT8, _DATE, _TIMESTAMP, _TIMESTAMPTZ = 16, 20, 701, 1082, 1114, 1184
_UNKNOWN = 0
# How long a wait for the server may last before the connection is given up (a statement of
# a hot path takes milliseconds; this bounds a server that stopped answering).
_WAIT_S = 60.0
_INTEGRITY_CLASS = "23"  # SQLSTATE class of unique, foreign-key and check refusals


class PgIntegrityError(Exception):
    """A constraint refused a statement (SQLSTATE class 23)."""


class PgStatementError(Exception):
    """The server refused a statement for another reason, with its SQLSTATE."""

    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(f"{sqlstate}: {message}")
        self.sqlstate = sqlstate


class PgConnectionLost(Exception):
    """The connection broke or its state is unknown: it must be closed, never reused."""


@dataclass(frozen=True)
class Command:
    """One statement to send: SQL with `:name` parameters and their values."""

    sql: str
    params: Mapping[str, Any] = field(default_factory=dict)


def _text(value: Any) -> bytes | None:
    """A parameter as the text PostgreSQL parses for its type."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool):
        return b"t" if value else b"f"
    if isinstance(value, int | float):
        return str(value).encode()
    if isinstance(value, date):  # datetime too: ISO 8601, with its offset when it has one
        return value.isoformat().encode()
    raise TypeError(f"no text form for a hot statement parameter of type {type(value)!r}")


def _int_text(value: int) -> bytes:
    return str(value).encode()


# The common parameter types' text forms, looked up by exact type; anything else (a subclass)
# takes `_text`'s checks.
_ENCODE: dict[type, Callable[[Any], bytes | None]] = {
    str: str.encode, int: _int_text, type(None): lambda _: None,
}


def _type_oid(value: Any) -> int:
    if isinstance(value, bool):
        return _BOOL
    if isinstance(value, int):
        return _INT8
    if isinstance(value, float):
        return _FLOAT8
    if isinstance(value, datetime):
        return _TIMESTAMP if value.tzinfo is None else _TIMESTAMPTZ
    if isinstance(value, date):
        return _DATE
    return _UNKNOWN  # text and NULL: the server infers the type from the statement


@dataclass
class _Prepared:
    name: bytes
    sql: bytes
    names: tuple[str, ...]
    types: tuple[int, ...]
    row_type: Any = None  # the named tuple of its result columns, made on first use


def _numbered(sql: str) -> tuple[str, tuple[str, ...]]:
    """`sql` with each `:name` turned into `$n` (a repeated name keeps its number)."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    return _NAMED_PARAM.sub(number, sql), tuple(names)


class PgWire:
    """A psycopg connection (in autocommit) whose hot statements bypass the cursor API."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self._pgconn: Any = connection.pgconn
        self._loader = Transformer(connection)
        self._prepared: dict[tuple[str, tuple[type, ...]], _Prepared] = {}
        self._native: dict[str, tuple[str, tuple[str, ...]]] = {}
        self._serial = 0

    @property
    def in_transaction(self) -> bool:
        """True between a BEGIN and its COMMIT or ROLLBACK (or after a failed statement)."""
        return bool(self._pgconn.transaction_status != pq.TransactionStatus.IDLE)

    def round_trip(self, commands: Sequence[Command | bytes]) -> list[list[Any]]:
        """Send `commands` in one round trip; the rows (named tuples) of each, in order.

        A `bytes` command is plain SQL without parameters (BEGIN, COMMIT, ROLLBACK). Each round
        trip ends with a sync: without an explicit BEGIN its commands form one implicit
        transaction, committed at the sync; a transaction begun with BEGIN stays open across
        round trips until its COMMIT. (A flush without a sync would not do: after a refusal the
        server holds its error back until the next sync.) A refused statement raises
        (`PgIntegrityError`, `PgStatementError`) once every result is read: an explicit
        transaction is then failed and must be rolled back.
        """
        pg = self._pgconn
        sent: list[tuple[_Prepared | None, bool]] = []
        try:
            pg.enter_pipeline_mode()
            for command in commands:
                if isinstance(command, bytes):
                    pg.send_query_params(command, None)
                    sent.append((None, False))
                    continue
                prepared, values, fresh = self._statement(command)
                if fresh:
                    pg.send_prepare(prepared.name, prepared.sql, prepared.types or None)
                pg.send_query_prepared(
                    prepared.name, [_ENCODE.get(type(v), _text)(v) for v in values])
                sent.append((prepared, fresh))
            pg.pipeline_sync()
            self._flush()
            return self._collect(sent)
        except (PgIntegrityError, PgStatementError):
            raise
        except Exception as exc:  # the protocol state is unknown
            raise PgConnectionLost(str(exc)) from exc

    def _statement(self, command: Command) -> tuple[_Prepared, list[Any], bool]:
        """The prepared statement for `command` (True: prepare it now) and its values."""
        native = self._native.get(command.sql)
        if native is None:
            native = self._native[command.sql] = _numbered(command.sql)
        text, names = native
        values = [command.params[name] for name in names]
        key = (command.sql, tuple(map(type, values)))
        prepared = self._prepared.get(key)
        if prepared is not None:
            return prepared, values, False
        self._serial += 1
        prepared = self._prepared[key] = _Prepared(
            f"hot_{self._serial}".encode(), text.encode(), names,
            tuple(_type_oid(value) for value in values))
        return prepared, values, True

    def _flush(self) -> None:
        pg = self._pgconn
        while pg.flush() != 0:  # the socket's buffer was full: wait until it drains
            self._wait(write=True)

    def _wait(self, *, write: bool = False) -> None:
        # poll(), not select(): select() refuses descriptors above 1023, which a process
        # holding many connections reaches, and every hot statement would then fail.
        poller = select.poll()
        poller.register(self._pgconn.socket, (select.POLLOUT if write else select.POLLIN)
                        | select.POLLERR | select.POLLHUP)
        if not poller.poll(_WAIT_S * 1000):
            raise PgConnectionLost("the database did not answer in time")

    def _next_result(self) -> Any:
        pg = self._pgconn
        while pg.is_busy():
            self._wait()
            pg.consume_input()
        return pg.get_result()

    def _collect(self, sent: list[tuple[_Prepared | None, bool]]) -> list[list[Any]]:
        """Every result of the round trip, read to its end even past a refusal."""
        rows: list[list[Any]] = []
        failure: Exception | None = None
        for prepared, fresh in sent:
            if prepared is not None and fresh:
                problem = self._check(self._result_of_one())
                if problem is not None:  # not prepared after all: prepare it next time
                    self._forget(prepared)
                failure = failure or problem
            result = self._result_of_one()
            problem = self._check(result)
            failure = failure or problem
            rows.append([] if problem is not None or prepared is None
                        else self._rows(result, prepared))
        result = self._next_result()
        if result is None or result.status != pq.ExecStatus.PIPELINE_SYNC:
            raise PgConnectionLost("the pipeline did not end where it should")
        self._pgconn.exit_pipeline_mode()
        if failure is not None:
            raise failure
        return rows

    def _forget(self, prepared: _Prepared) -> None:
        for key, known in list(self._prepared.items()):
            if known is prepared:
                del self._prepared[key]

    def _result_of_one(self) -> Any:
        result = self._next_result()
        if result is None:
            raise PgConnectionLost("a statement gave no result")
        if self._next_result() is not None:  # each command ends with an empty result
            raise PgConnectionLost("a statement gave more than one result")
        return result

    def _check(self, result: Any) -> Exception | None:
        status = result.status
        if status in (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK):
            return None
        if status == pq.ExecStatus.PIPELINE_ABORTED:
            return PgStatementError("25P02", "an earlier statement of the pipeline failed")
        if status == pq.ExecStatus.FATAL_ERROR:
            sqlstate = (result.error_field(pq.DiagnosticField.SQLSTATE) or b"").decode()
            message = (result.error_message or b"").decode(errors="replace").strip()
            if sqlstate.startswith(_INTEGRITY_CLASS):
                return PgIntegrityError(message)
            return PgStatementError(sqlstate, message)
        raise PgConnectionLost(f"unexpected result status {status}")

    def _rows(self, result: Any, prepared: _Prepared) -> list[Any]:
        count = result.ntuples
        if not count or not result.nfields:
            return []
        if prepared.row_type is None:
            fields = [result.fname(i).decode() for i in range(result.nfields)]
            prepared.row_type = namedtuple("Row", fields, rename=True)  # type: ignore[misc]
        self._loader.set_pgresult(result)
        return list(self._loader.load_rows(0, count, prepared.row_type._make))

    def rollback(self) -> None:
        """End a failed or abandoned transaction (one round trip)."""
        self.round_trip([b"ROLLBACK"])

