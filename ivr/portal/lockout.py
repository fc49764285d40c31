"""Consecutive PIN failures across calls, and the lockout they cause.

A small store interface with two implementations: :class:`SqliteLockoutStore` (the
default: survives a restart, one file shared by the processes of one host) and
:class:`MemoryLockoutStore` (tests, the simulator). Times are seconds from the
runtime's clock (virtual in the simulator). Each failure keeps where it came from (the
caller number as presented, and the call), so an operator can see who is guessing
(``ivr portal locks``); never the digits.

Lockouts escalate: each one lasts ``escalation`` times the one before, and after
``temporary_lockouts`` of them the next lock is permanent (``locked_until`` is
infinite) until an administrator's ``ivr portal unlock`` — a locked employee is not
asked for a PIN — so a spoofed A-number gets a bounded number of guesses, not a steady
stream. The lockout count is forgotten only by a correct PIN or an unlock.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ivr.errors import IvrError

#: failures remembered per employee, for the operator's listing
KEPT_FAILURES = 20
#: the longest temporary lockout, however often it escalated (one year)
LONGEST_LOCK = 365 * 24 * 3600.0
#: ``locked_until`` of a permanent lock
PERMANENT = math.inf


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    """``failures`` consecutive wrong PINs lock an employee: the first time for
    ``seconds``, each further time ``escalation`` times longer; after
    ``temporary_lockouts`` temporary locks the next one is permanent (None: never)."""

    failures: int = 5
    seconds: float = 15 * 60
    escalation: float = 2.0
    temporary_lockouts: int | None = 4

    def lock_seconds(self, lockout: int) -> float:
        """How long the ``lockout``-th lock (1 for the first) lasts; PERMANENT after
        the temporary ones."""
        if self.temporary_lockouts is not None and lockout > self.temporary_lockouts:
            return PERMANENT
        seconds = self.seconds
        for _ in range(lockout - 1):
            seconds = min(seconds * self.escalation, LONGEST_LOCK)
        return seconds

    def guesses_before_permanent(self) -> int | None:
        """Wrong PINs an attacker gets before the permanent lock (None: unbounded)."""
        if self.temporary_lockouts is None:
            return None
        return self.failures * (self.temporary_lockouts + 1)


@dataclass(frozen=True, slots=True)
class Failure:
    """One wrong PIN: when, and from where (caller number and call id)."""

    at: float
    source: str


@dataclass(frozen=True, slots=True)
class LockState:
    """An employee with failures or a lockout, for the operator."""

    employee: str
    failures: int  # consecutive, since the last lock or correct PIN
    locked_until: float  # PERMANENT: until an administrator unlocks
    recent: tuple[Failure, ...] = field(default=())
    lockouts: int = 0  # since the last correct PIN or unlock

    @property
    def permanent(self) -> bool:
        """Locked until an administrator unlocks."""
        return self.locked_until == PERMANENT


class LockoutStoreUnavailable(IvrError):
    """The store's database cannot be reached (or did not answer in time). The portal
    then refuses PIN entry ("temporarily unavailable") rather than allow guesses it
    cannot count."""


class LockoutStore(Protocol):
    """Where failure counts and lockouts live. Every method may raise
    :class:`LockoutStoreUnavailable`."""

    def locked_until(self, employee: str) -> float:
        """When the employee's lockout ends (0 when never locked, PERMANENT)."""

    def lockouts(self, employee: str) -> int:
        """How many times the employee was locked since the last reset."""

    def record_failure(
        self, employee: str, now: float, policy: LockoutPolicy, source: str = ""
    ) -> int:
        """Count one failure from ``source``; lock when the policy's count is reached,
        for as long as the policy says for this lockout. Returns the count (0 right
        after locking)."""

    def reset(self, employee: str) -> None:
        """A correct PIN (or an admin's unlock): forget failures and lockout."""

    def states(self) -> list[LockState]:
        """Every employee with failures or a lockout (locked or not any more)."""


class MemoryLockoutStore:
    """Lockouts in a dict (per process; for tests and the simulator)."""

    def __init__(self) -> None:
        self._failures: dict[str, int] = {}
        self._locked: dict[str, float] = {}
        self._lockouts: dict[str, int] = {}
        self._recent: dict[str, list[Failure]] = {}

    def locked_until(self, employee: str) -> float:
        return self._locked.get(employee, 0.0)

    def lockouts(self, employee: str) -> int:
        return self._lockouts.get(employee, 0)

    def record_failure(
        self, employee: str, now: float, policy: LockoutPolicy, source: str = ""
    ) -> int:
        recent = self._recent.setdefault(employee, [])
        recent.append(Failure(now, source))
        del recent[:-KEPT_FAILURES]
        count = self._failures.get(employee, 0) + 1
        if count >= policy.failures:
            lockouts = self._lockouts[employee] = self._lockouts.get(employee, 0) + 1
            until = now + policy.lock_seconds(lockouts)
            # never shorten a lock (a clock stepped back, a late failure): as SQLite does
            self._locked[employee] = max(self._locked.get(employee, 0.0), until)
            count = 0
        self._failures[employee] = count
        return count

    def reset(self, employee: str) -> None:
        self._failures.pop(employee, None)
        self._locked.pop(employee, None)
        self._lockouts.pop(employee, None)
        self._recent.pop(employee, None)

    def states(self) -> list[LockState]:
        return [
            LockState(
                e,
                self._failures.get(e, 0),
                self._locked.get(e, 0.0),
                tuple(recent),
                self._lockouts.get(e, 0),
            )
            for e, recent in sorted(self._recent.items())
        ]


class SqliteLockoutStore:
    """Lockouts in an SQLite file; each operation is its own short transaction on a
    connection that is closed right after (no descriptor waits for the collector)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._transaction() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS lockout ("
                " employee TEXT PRIMARY KEY, failures INTEGER NOT NULL DEFAULT 0,"
                " locked_until REAL NOT NULL DEFAULT 0,"
                " lockouts INTEGER NOT NULL DEFAULT 0)"
            )
            columns = {row[1] for row in db.execute("PRAGMA table_info(lockout)")}
            if "lockouts" not in columns:  # a file written before escalation existed
                db.execute("ALTER TABLE lockout ADD COLUMN lockouts INTEGER NOT NULL DEFAULT 0")
            db.execute(
                "CREATE TABLE IF NOT EXISTS failure ("
                " employee TEXT NOT NULL, at REAL NOT NULL, source TEXT NOT NULL)"
            )
            db.execute("CREATE INDEX IF NOT EXISTS failure_employee ON failure (employee, at)")

    @contextmanager
    def _transaction(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction. A write one takes the file's write lock before its first
        read (``BEGIN IMMEDIATE``), so concurrent read-modify-writes (processes of one
        host, threads) queue instead of overwriting each other's counts
        (``isolation_level="IMMEDIATE"`` would begin only at the first write); a read
        one (``BEGIN``) shares the file with other readers. A database that stays
        locked or cannot be opened is LockoutStoreUnavailable."""
        try:
            db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        except sqlite3.Error as exc:
            raise LockoutStoreUnavailable(f"SQLite {self.path}: {exc}") from None
        try:
            db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield db
            except BaseException:
                db.rollback()
                raise
            db.commit()
        except sqlite3.DatabaseError as exc:  # locked past the timeout, not a database, disk I/O
            raise LockoutStoreUnavailable(f"SQLite {self.path}: {exc}") from None
        finally:
            db.close()

    def locked_until(self, employee: str) -> float:
        return self._lock_row(employee)[0]

    def lockouts(self, employee: str) -> int:
        return self._lock_row(employee)[1]

    def _lock_row(self, employee: str) -> tuple[float, int]:
        """``locked_until`` and ``lockouts`` of ``employee`` (0, 0: no row)."""
        with self._transaction(write=False) as db:
            row = db.execute(
                "SELECT locked_until, lockouts FROM lockout WHERE employee = ?", (employee,)
            ).fetchone()
        return (float(row[0]), int(row[1])) if row else (0.0, 0)

    def record_failure(
        self, employee: str, now: float, policy: LockoutPolicy, source: str = ""
    ) -> int:
        with self._transaction() as db:
            row = db.execute(
                "SELECT failures, lockouts FROM lockout WHERE employee = ?", (employee,)
            ).fetchone()
            count, lockouts = (row[0] + 1, row[1]) if row else (1, 0)
            locked = 0.0
            if count >= policy.failures:
                lockouts += 1
                locked, count = now + policy.lock_seconds(lockouts), 0
            db.execute(
                "INSERT INTO lockout (employee, failures, locked_until, lockouts)"
                " VALUES (?, ?, ?, ?) ON CONFLICT(employee) DO UPDATE SET"
                " failures = excluded.failures, lockouts = excluded.lockouts,"
                " locked_until = MAX(lockout.locked_until, excluded.locked_until)",
                (employee, count, locked, lockouts),
            )
            db.execute("INSERT INTO failure VALUES (?, ?, ?)", (employee, now, source))
            db.execute(
                "DELETE FROM failure WHERE employee = ? AND rowid NOT IN (SELECT rowid"
                " FROM failure WHERE employee = ? ORDER BY at DESC LIMIT ?)",
                (employee, employee, KEPT_FAILURES),
            )
        return count

    def reset(self, employee: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM lockout WHERE employee = ?", (employee,))
            db.execute("DELETE FROM failure WHERE employee = ?", (employee,))

    def states(self) -> list[LockState]:
        with self._transaction(write=False) as db:
            rows = db.execute(
                "SELECT employee, failures, locked_until, lockouts FROM lockout ORDER BY employee"
            ).fetchall()
            recent = db.execute(
                "SELECT employee, at, source FROM failure ORDER BY employee, at"
            ).fetchall()
        failures: dict[str, list[Failure]] = {}
        for employee, at, source in recent:
            failures.setdefault(employee, []).append(Failure(float(at), str(source)))
        return [
            LockState(str(e), int(n), float(until), tuple(failures.get(e, ())), int(lockouts))
            for e, n, until, lockouts in rows
        ]
