"""Lockouts in PostgreSQL (psycopg 3): one store shared by every portal node.

The same :class:`~ivr.portal.lockout.LockoutStore` interface as SQLite. A failure is
counted by ``INSERT … ON CONFLICT … DO UPDATE … RETURNING`` in one transaction: the
row stays locked until the commit, so concurrent wrong PINs on different nodes are
serialized and none is lost, and only one of them starts a lockout.

Each thread keeps one connection (the portal's hooks run on one dialogue thread),
opened on first use and again after PostgreSQL went away. Every wait is bounded —
``connect_timeout`` and ``statement_timeout`` are ``timeout`` — and a database that
cannot be reached raises :class:`~ivr.portal.lockout.LockoutStoreUnavailable`, so the
portal refuses PIN entry instead of allowing guesses it cannot count. After a failed
connect the store is *down*: every operation fails at once, and a background thread
tries to connect every ``retry_interval`` seconds until one succeeds — so an
unreachable host (a connect that waits its full timeout) stalls the caller's thread
once per outage, not once per call.

The schema is created and migrated by :func:`init_schema` (``ivr portal db init``),
not by the store: a node never alters the database on its own.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import TypeVar

import psycopg
from psycopg.rows import TupleRow

from ivr.portal.lockout import (
    KEPT_FAILURES,
    Failure,
    LockoutPolicy,
    LockoutStoreUnavailable,
    LockState,
)

log = logging.getLogger(__name__)

#: the schema version :func:`init_schema` creates
SCHEMA_VERSION = 1
#: the advisory lock key ``init_schema`` holds while it migrates ("ivr-lock" in ASCII)
MIGRATION_LOCK = 0x6976722D6C6F636B
#: statements per version: migrating from version n runs MIGRATIONS[n:]
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE IF NOT EXISTS ivr_lockout ("
        " employee text PRIMARY KEY,"
        " failures integer NOT NULL DEFAULT 0,"
        " locked_until double precision NOT NULL DEFAULT 0,"
        " lockouts integer NOT NULL DEFAULT 0)",
        "CREATE TABLE IF NOT EXISTS ivr_lockout_failure ("
        " id bigserial PRIMARY KEY,"
        " employee text NOT NULL,"
        " at double precision NOT NULL,"
        " source text NOT NULL)",
        "CREATE INDEX IF NOT EXISTS ivr_lockout_failure_employee"
        " ON ivr_lockout_failure (employee, at)",
    ),
)

T = TypeVar("T")
Cursor = psycopg.Cursor[TupleRow]


def init_schema(dsn: str, timeout: float = 10.0) -> str:
    """Create or migrate the lockout tables (idempotent; safe while nodes run).
    Returns what it did, for the operator."""
    try:
        with psycopg.connect(dsn, connect_timeout=max(1, round(timeout))) as conn:
            # one migrator at a time, even from several machines: a transaction-wide
            # advisory lock, taken before anything is created
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS ivr_schema ("
                " component text PRIMARY KEY, version integer NOT NULL)"
            )
            row = conn.execute(
                "SELECT version FROM ivr_schema WHERE component = 'lockout'"
            ).fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise LockoutStoreUnavailable(
                    f"the database's lockout schema is version {version}, newer than this "
                    f"ivr's {SCHEMA_VERSION}: upgrade ivr"
                )
            for statements in MIGRATIONS[version:]:
                for statement in statements:
                    conn.execute(statement.encode())
            conn.execute(
                "INSERT INTO ivr_schema VALUES ('lockout', %s) ON CONFLICT (component)"
                " DO UPDATE SET version = excluded.version",
                (SCHEMA_VERSION,),
            )
    except psycopg.Error as exc:
        raise LockoutStoreUnavailable(f"PostgreSQL: {_reason(exc)}") from None
    if version == SCHEMA_VERSION:
        return f"lockout schema is up to date (version {SCHEMA_VERSION})"
    return f"lockout schema migrated from version {version} to {SCHEMA_VERSION}"


class PostgresLockoutStore:
    """Lockouts in PostgreSQL at ``dsn`` (a ``postgresql://`` URL or libpq string).
    Creating it does not connect."""

    def __init__(self, dsn: str, *, timeout: float = 2.0, retry_interval: float = 1.0) -> None:
        self.dsn = dsn
        self.timeout = timeout
        self.retry_interval = retry_interval
        self._local = threading.local()
        #: set while the database is believed out of reach (a prober is running)
        self._down = threading.Event()
        self._closed = threading.Event()
        self._prober: threading.Thread | None = None
        #: every thread's connection, so that close() reaches them all
        self._connections: list[psycopg.Connection[TupleRow]] = []
        self._lock = threading.Lock()

    # --- connections ----------------------------------------------------------------
    def _connection(self) -> psycopg.Connection[TupleRow]:
        conn: psycopg.Connection[TupleRow] | None = getattr(self._local, "conn", None)
        if conn is not None and not conn.closed:
            return conn
        if self._down.is_set():
            raise LockoutStoreUnavailable("PostgreSQL: not reachable (retrying in the background)")
        try:
            conn = self._connect()
        except psycopg.Error as exc:
            self._went_down()
            raise LockoutStoreUnavailable(f"PostgreSQL: {_reason(exc)}") from None
        self._local.conn = conn
        with self._lock:
            self._connections.append(conn)
        return conn

    def _connect(self) -> psycopg.Connection[TupleRow]:
        conn = psycopg.connect(
            self.dsn,
            autocommit=True,
            connect_timeout=max(1, round(self.timeout)),
            application_name="ivr-portal",
        )
        try:
            conn.execute(f"SET statement_timeout = {int(self.timeout * 1000)}".encode())
        except psycopg.Error:
            conn.close()
            raise
        return conn

    def _went_down(self) -> None:
        """Fail fast from now on; probe in the background until a connect succeeds."""
        with self._lock:
            if self._down.is_set():
                return
            self._down.set()
        log.warning("PostgreSQL lockout store out of reach; PIN entry refused until it is back")
        self._prober = threading.Thread(target=self._probe, name="ivr-lockout-probe", daemon=True)
        self._prober.start()

    def _probe(self) -> None:
        while not self._closed.wait(self.retry_interval):
            try:
                self._connect().close()
            except psycopg.Error:
                continue
            log.warning("PostgreSQL lockout store reachable again")
            self._down.clear()
            return

    @property
    def reachable(self) -> bool:
        """False from a failed connect until the background probe connected again."""
        return not self._down.is_set()

    def _drop_connection(self) -> None:
        """Close this thread's connection (it died, or it may be in a bad state)."""
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            self._close(conn)

    def _close(self, conn: psycopg.Connection[TupleRow]) -> None:
        with self._lock:
            if conn in self._connections:
                self._connections.remove(conn)
        with suppress(psycopg.Error):
            conn.close()

    @contextmanager
    def _cursor(self, transaction: bool) -> Iterator[Cursor]:
        conn = self._connection()
        if not transaction:  # one statement: autocommit, one round trip
            with conn.cursor() as cursor:
                yield cursor
            return
        with conn.transaction(), conn.cursor() as cursor:
            yield cursor

    def _run(self, operation: Callable[[Cursor], T], *, transaction: bool = True) -> T:
        """``operation`` in one transaction (a single read needs none); once more on a
        new connection when the old one died (PostgreSQL restarted);
        LockoutStoreUnavailable when it cannot."""
        for attempt in (1, 2):
            try:
                with self._cursor(transaction) as cursor:
                    return operation(cursor)
            except psycopg.errors.UndefinedTable:
                raise LockoutStoreUnavailable(
                    "PostgreSQL: the lockout tables do not exist (run `ivr portal db init`)"
                ) from None
            except psycopg.OperationalError as exc:
                self._drop_connection()
                if attempt == 2:
                    raise LockoutStoreUnavailable(f"PostgreSQL: {_reason(exc)}") from None
            except psycopg.Error as exc:
                self._drop_connection()
                raise LockoutStoreUnavailable(f"PostgreSQL: {_reason(exc)}") from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close every thread's connection and stop the background probe (it ends
        after its current connect attempt; this never waits for it). For a store
        nobody uses any more, e.g. the one a reload replaced."""
        self._closed.set()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            self._close(conn)

    # --- the store ------------------------------------------------------------------
    def locked_until(self, employee: str) -> float:
        return self._lock_row(employee)[0]

    def lockouts(self, employee: str) -> int:
        return self._lock_row(employee)[1]

    def _lock_row(self, employee: str) -> tuple[float, int]:
        """``locked_until`` and ``lockouts`` of ``employee`` (0, 0: no row)."""

        def read(cur: Cursor) -> tuple[float, int]:
            row = cur.execute(
                "SELECT locked_until, lockouts FROM ivr_lockout WHERE employee = %s",
                (employee,),
            ).fetchone()
            return (float(row[0]), int(row[1])) if row else (0.0, 0)

        return self._run(read, transaction=False)

    def record_failure(
        self, employee: str, now: float, policy: LockoutPolicy, source: str = ""
    ) -> int:
        def record(cur: Cursor) -> int:
            # the row stays locked until the commit: concurrent failures queue here
            row = cur.execute(
                "INSERT INTO ivr_lockout (employee, failures) VALUES (%s, 1)"
                " ON CONFLICT (employee) DO UPDATE SET failures = ivr_lockout.failures + 1"
                " RETURNING failures, lockouts",
                (employee,),
            ).fetchone()
            assert row is not None
            count, lockouts = int(row[0]), int(row[1])
            if count >= policy.failures:
                lockouts += 1
                count = 0
                cur.execute(
                    "UPDATE ivr_lockout SET failures = 0, lockouts = %s,"
                    " locked_until = GREATEST(locked_until, %s) WHERE employee = %s",
                    (lockouts, now + policy.lock_seconds(lockouts), employee),
                )
            cur.execute(
                "INSERT INTO ivr_lockout_failure (employee, at, source) VALUES (%s, %s, %s)",
                (employee, now, source),
            )
            cur.execute(
                "DELETE FROM ivr_lockout_failure WHERE employee = %s AND id NOT IN"
                " (SELECT id FROM ivr_lockout_failure WHERE employee = %s"
                " ORDER BY at DESC, id DESC LIMIT %s)",
                (employee, employee, KEPT_FAILURES),
            )
            return count

        return self._run(record)

    def reset(self, employee: str) -> None:
        def reset(cur: Cursor) -> None:
            cur.execute("DELETE FROM ivr_lockout WHERE employee = %s", (employee,))
            cur.execute("DELETE FROM ivr_lockout_failure WHERE employee = %s", (employee,))

        self._run(reset)

    def states(self) -> list[LockState]:
        def read(cur: Cursor) -> list[LockState]:
            rows = cur.execute(
                "SELECT employee, failures, locked_until, lockouts FROM ivr_lockout"
                " ORDER BY employee"
            ).fetchall()
            recent = cur.execute(
                "SELECT employee, at, source FROM ivr_lockout_failure ORDER BY employee, at, id"
            ).fetchall()
            failures: dict[str, list[Failure]] = {}
            for employee, at, source in recent:
                failures.setdefault(str(employee), []).append(Failure(float(at), str(source)))
            return [
                LockState(
                    str(e),
                    int(n),
                    float(until),
                    tuple(failures.get(str(e), ())),
                    int(lockouts),
                )
                for e, n, until, lockouts in rows
            ]

        return self._run(read)


def _reason(exc: psycopg.Error) -> str:
    """The first line of PostgreSQL's message (never the DSN and its password)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
